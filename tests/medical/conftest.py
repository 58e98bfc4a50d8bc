"""Tiny phantoms (32x32x16) and models trained on them once per session."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TINY = (32, 32, 16)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """``(train_root, test_root)``: 6 healthy labelled cases; 4 cases, 2 with lesions."""
    from medical.phantom import simulate_dataset

    root = tmp_path_factory.mktemp("medical_data")
    train = simulate_dataset(root / "train", 6, lesions=False, seed=0, shape=TINY)
    test = simulate_dataset(root / "test", 4, lesions=True, seed=1, shape=TINY)
    return train, test


@pytest.fixture(scope="session")
def tiny_models(tiny_data, tmp_path_factory):
    """``(pretrained_bundle, model_dir, scorer, segmenter)`` from the tiny preset."""
    from medical.presets import preset
    from medical.pretrain import pretrain
    from medical.segment import train_segmenter

    train, _ = tiny_data
    root = tmp_path_factory.mktemp("medical_models")
    pretrain_config, segment_config = preset("tiny")
    scorer = pretrain(train, root / "pretrained", pretrain_config)
    segmenter = train_segmenter(train, root / "ct", root / "pretrained", 4, segment_config)
    return root / "pretrained", root / "ct", scorer, segmenter


@pytest.fixture(scope="session")
def tiny_run(tiny_models, tiny_data, tmp_path_factory):
    from medical.infer import infer

    _, model_dir, _, _ = tiny_models
    return infer(model_dir, tiny_data[1], tmp_path_factory.mktemp("medical_runs") / "run")


def _write_nifti(path, array, affine=None):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4) if affine is None else affine), str(path))
    return path


@pytest.fixture
def write_nifti():
    """``write_nifti(path, array, affine=None) -> path`` (plain nibabel, for bad inputs)."""
    return _write_nifti


def _link_files(folder: Path, targets, name: str = "volume_{}.nii.gz") -> list[Path]:
    """Links ``folder/<name.format(i)>`` -> each of ``targets`` (``folder`` made if missing):
    another name and another path for each file, so only the resolved paths match."""
    folder.mkdir(parents=True, exist_ok=True)
    links = [folder / name.format(i) for i in range(len(targets))]
    for link, target in zip(links, targets):
        link.symlink_to(target)
    return links


@pytest.fixture
def link_files():
    """``link_files(folder, targets, name="volume_{}.nii.gz") -> links`` (one per target)."""
    return _link_files


def _lesion_twin(key, drop_hu: float):
    """A fresh tiny phantom (``default_rng(key)``) and its twin with one liver lesion: a
    3x3x2-voxel block ``drop_hu`` below the parenchyma at the liver's deepest point
    (``medical.phantom_twins``). Returns ``(case, sick, lesion)``."""
    from medical.phantom_twins import lesion_twin

    return lesion_twin(np.random.default_rng(key), TINY, drop_hu)


@pytest.fixture
def lesion_twin():
    """``lesion_twin(key, drop_hu) -> (case, sick_image, lesion_mask)`` (tiny phantoms)."""
    return _lesion_twin
