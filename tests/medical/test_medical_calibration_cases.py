"""Calibration cases stay unseen by the model they calibrate (``medical.training_cases.
unseen_calibration``): `medical train --calibration-data` and `medical pretrain`'s own split
leave out cases the model trained on with one `warning:` line, and refuse (writing nothing)
when too few remain."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from core.errors import DataValidationError, UnmaskWarning
from medical.cli import medical
from medical.io import Case, find_cases
from medical.training_cases import labelled_cases, unseen_calibration
from read_counter import count_reads


def _train(train, out, pretrained, calibration):
    """`medical train` on the first 2 labelled cases of ``train`` for 1 tiny epoch."""
    return CliRunner().invoke(medical, [str(a) for a in (
        "train", "--data", train, "--out", out, "--labels", 2, "--preset", "tiny", "--epochs", 1,
        "--pretrained", pretrained, "--calibration-data", calibration)])


def _bundle_config(bundle) -> dict:
    return json.loads((Path(bundle) / "config.json").read_text())["config"]


def _organ_calibration_cases(model_dir) -> list[str]:
    return _bundle_config(Path(model_dir) / "anomaly")["organ_calibration_cases"]


def _links(folder, images) -> Path:
    """``folder/volume_<i>.nii.gz`` -> each of ``images``: only the resolved paths match."""
    folder.mkdir()
    for i, image in enumerate(images):
        (folder / f"volume_{i}.nii.gz").symlink_to(image)
    return folder


def test_the_training_folder_as_calibration_data_calibrates_on_the_others_and_says_so(
        tiny_data, tiny_models, tmp_path):
    train, _ = tiny_data                       # 6 healthy labelled phantoms: 2 trained on
    result = _train(train, tmp_path / "ct", tiny_models[0], train)
    assert result.exit_code == 0, result.output
    assert ("warning: calibration cases: left out 2 of the 6 given: 2 training cases (trained on "
            "with their labels); calibrating on the 4 left") in result.output
    assert _organ_calibration_cases(tmp_path / "ct") == [f"case_00{i}" for i in range(2, 6)]


def test_calibration_data_with_too_few_unseen_cases_is_refused_before_anything_is_read(
        tiny_data, tiny_models, tmp_path, monkeypatch):
    train, _ = tiny_data
    trained = [c.image for c in labelled_cases(train, 2)]
    folder = _links(tmp_path / "calibration", [*trained, labelled_cases(train)[4].image])
    reads = count_reads(monkeypatch)
    result = _train(train, tmp_path / "ct", tiny_models[0], folder)
    assert isinstance(result.exception, DataValidationError), result.output
    assert str(result.exception) == (
        "calibration cases: 1 unseen of the 3 given, 2 needed; left out 2: 2 training cases "
        "(trained on with their labels): volume_0, volume_1")
    assert not reads and not (tmp_path / "ct").exists()


def test_disjoint_calibration_data_is_used_whole_without_a_warning(tiny_data, tiny_models,
                                                                   tmp_path):
    train, other = tiny_data                   # other: 4 phantoms, 2 of them lesion-free
    result = _train(train, tmp_path / "ct", tiny_models[0], other)
    assert result.exit_code == 0, result.output
    assert "warning:" not in result.output
    healthy = [c.name for c in find_cases(other) if not c.has_lesion]
    assert len(healthy) == 2 and _organ_calibration_cases(tmp_path / "ct") == healthy


def test_unseen_calibration_keeps_disjoint_cases_as_given_and_counts_the_others():
    a, b, c, d = (Case(n, Path(f"/data/{n}.nii.gz")) for n in "abcd")
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # a disjoint set: no warning at all
        assert unseen_calibration([c, d, a], {"training": [b]}) == [c, d, a]
    with pytest.warns(UnmaskWarning, match=r"left out 1 of the 3 given: 1 training case .*"
                                         r"calibrating on the 2 left"):
        assert unseen_calibration([a, b, c], {"training": [b, d]}) == [a, c]
    with pytest.raises(DataValidationError, match="0 unseen of the 1 given, 1 needed"):
        unseen_calibration([a], {"pretraining": [a]}, minimum=1)


def test_pretrain_leaves_a_calibration_case_that_is_also_a_training_case_out(tiny_data, tmp_path):
    train, other = tiny_data
    images = [c.image for c in find_cases(train)] + [c.image for c in find_cases(other)
                                                     if not c.has_lesion]   # 8 healthy images
    # pretrain's seeded split (seed 0, a fifth of 8): order[:2] calibrate, the rest train;
    # make the first calibration case a link to a training one's image
    order = np.random.default_rng(0).permutation(8)
    images[order[0]] = images[order[2]]
    folder = _links(tmp_path / "healthy", images)
    result = CliRunner().invoke(medical, [str(a) for a in (
        "pretrain", "--data", folder, "--out", tmp_path / "pretrained", "--preset", "tiny",
        "--epochs", 1)])
    assert result.exit_code == 0, result.output
    assert ("warning: calibration cases: left out 1 of the 2 given: 1 pretraining case (the "
            "anomaly model trained on them); calibrating on the 1 left") in result.output
    training = _bundle_config(tmp_path / "pretrained")["training"]
    assert training["calibration_cases"] == [f"volume_{order[1]}"]
