"""Keep-the-largest-part post-processing (nnU-Net) and the fragmentation warning."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy.ndimage import label

from core.cli import main
from core.errors import BundleError
from medical.guard import fragmentation_warnings
from medical.io import find_cases
from medical.postprocess import PostProcessing, largest_part
from medical.segment import Segmenter

NAMES = {1: "liver", 2: "kidney_right"}


def _labels() -> np.ndarray:
    """A liver block with a far 8-voxel stray, a kidney block with one too."""
    labels = np.zeros((24, 24, 24), dtype=np.uint8)
    labels[2:10, 2:10, 2:10] = 1                 # liver, 512 voxels
    labels[20:22, 20:22, 20:22] = 1              # stray "liver", 8 voxels
    labels[2:8, 14:20, 14:20] = 2                # kidney, 216 voxels
    labels[20:22, 2:4, 20:22] = 2                # stray "kidney", 8 voxels
    return labels


def _softmax(labels: np.ndarray, classes: int = 3) -> torch.Tensor:
    """A ``(C, x, y, z)`` softmax whose argmax is ``labels``."""
    probs = torch.full((classes, *labels.shape), 0.1 / (classes - 1))
    probs.scatter_(0, torch.from_numpy(labels.astype(np.int64))[None], 0.9)
    return probs


def test_a_stray_part_is_removed_only_for_organs_whose_decision_is_on():
    labels = _labels()
    probs = _softmax(labels)
    post = PostProcessing(["liver"], {}, {"liver": 0.0, "kidney_right": 0.0}, 1)
    out, shares = post.apply(probs.numpy(), NAMES)
    assert not out[20:22, 20:22, 20:22].any()               # the liver's stray part: background
    assert (out[2:10, 2:10, 2:10] == 1).all()
    assert (out[20:22, 2:4, 20:22] == 2).all()              # kidney's decision is off: kept
    assert (out[2:8, 14:20, 14:20] == 2).all()
    # the softmax agrees, so resampling it onto the input's grid removes the stray part too
    np.testing.assert_array_equal(probs.argmax(0).numpy(), out)
    assert shares == pytest.approx({"liver": 8 / 520, "kidney_right": 8 / 224})


def test_voxels_touching_at_a_corner_are_one_part():
    mask = np.zeros((6, 6, 6), dtype=bool)
    mask[1, 1, 1] = mask[2, 2, 2] = True
    mask[5, 5, 5] = True
    np.testing.assert_array_equal(np.argwhere(largest_part(mask)), [[1, 1, 1], [2, 2, 2]])


def test_the_decision_is_fitted_from_validation_dice():
    """Keeping the largest part helps the liver; it would cut a true two-piece organ."""
    truth = np.zeros((24, 24, 24), dtype=np.uint8)
    truth[2:10, 2:10, 2:10] = 1                  # one liver
    truth[2:8, 14:20, 14:20] = 2                 # a "kidney" in two true pieces
    truth[14:18, 14:20, 14:20] = 2
    predicted = truth.copy()
    predicted[20:22, 2:4, 20:22] = 1             # a stray liver part far away
    post = PostProcessing.fit([predicted], [truth], NAMES)
    assert post.keep_largest == ["liver"]
    assert post.dice_change["liver"] > 0 > post.dice_change["kidney_right"]
    assert post.fragment_max == pytest.approx({"liver": 8 / 520, "kidney_right": 144 / 360})
    assert post.cases == 1
    assert PostProcessing.fit([], [], NAMES) == PostProcessing.none()


def test_an_organ_never_in_pieces_on_validation_is_left_as_predicted():
    """No evidence, no change (nnU-Net adopts only on a Dice gain): a kidney the validation
    cases show in one piece keeps whatever parts it has at inference."""
    truth = _labels()
    truth[20:22, 20:22, 20:22] = 0
    truth[20:22, 2:4, 20:22] = 0                 # one liver, one kidney
    predicted = truth.copy()
    predicted[20:22, 20:22, 20:22] = 1           # only the liver is predicted in pieces
    post = PostProcessing.fit([predicted], [truth], NAMES)
    assert post.dice_change["kidney_right"] == 0.0
    assert post.keep_largest == ["liver"]


def test_the_fragmentation_warning_fires_for_pieces_only():
    reference = {"liver": 0.02, "kidney_right": 0.03}
    fragmented = np.zeros((24, 24, 24), dtype=np.uint8)
    fragmented[2:10, 2:10, 2:10] = 1             # 512 voxels ...
    fragmented[14:22, 14:22, 14:22] = 1          # ... and as many apart from them
    fragmented[2:8, 14:20, 14:20] = 2
    _, shares = PostProcessing([], {}, reference, 1).apply(_softmax(fragmented).numpy(), NAMES)
    lines = fragmentation_warnings(shares, reference)
    assert lines == ["segmentation in pieces: liver 50% outside its largest part (validation "
                     "cases up to 2%); labels lie apart from the organ, where it cannot be"]
    clean = fragmented.copy()
    clean[14:22, 14:22, 14:22] = 0
    _, shares = PostProcessing([], {}, reference, 1).apply(_softmax(clean).numpy(), NAMES)
    assert fragmentation_warnings(shares, reference) == []
    assert fragmentation_warnings({"liver": 0.5}, None) == []          # no validation cases


def test_the_decisions_travel_in_the_bundle_and_older_bundles_are_refused(tiny_models, tmp_path):
    _, model_dir, _, segmenter = tiny_models
    fitted = segmenter.postprocessing_
    assert fitted is not None and fitted.cases == 2        # 6 labelled phantoms, 4 trained on
    assert set(fitted.fragment_max) == set(segmenter.labels.values())
    loaded = Segmenter.load(model_dir / "segmenter")
    assert loaded.postprocessing_ == fitted
    shutil.copytree(model_dir / "segmenter", tmp_path / "old")
    meta_path = tmp_path / "old" / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 2                  # saved before the decisions were
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(BundleError) as err:
        Segmenter.load(tmp_path / "old")
    assert "\n" not in str(err.value) and "retrain" in str(err.value)
    # every labelled case trained on: nothing to decide on, so nothing is post-processed
    none = Segmenter.load(model_dir / "segmenter").fit_postprocessing([])
    assert none.postprocessing_ is None


def _two_bodies(case, path):
    """The phantom twice, side by side: every organ the segmenter finds is in two parts."""
    image = nib.load(str(case.image))
    values = np.asarray(image.dataobj)
    nib.save(nib.Nifti1Image(np.concatenate([values, values], axis=0), image.affine), str(path))
    return path


def _model_with(model_dir, out, post: PostProcessing):
    shutil.copytree(model_dir, out)
    segmenter = Segmenter.load(model_dir / "segmenter")
    segmenter.postprocessing_ = post
    shutil.rmtree(out / "segmenter")
    segmenter.save(out / "segmenter")
    return out


def _parts(mask: np.ndarray) -> int:
    return label(mask, structure=np.ones((3, 3, 3)))[1]


def test_infer_removes_the_far_part_warns_and_keeps_the_grid(tiny_models, tiny_data, tmp_path,
                                                             capsys):
    _, model_dir, _, segmenter = tiny_models
    path = _two_bodies(find_cases(tiny_data[1])[0], tmp_path / "twins.nii.gz")
    runs = {}
    for name, keep in (("raw", []), ("kept", ["liver"])):
        post = replace(segmenter.postprocessing_, keep_largest=keep)
        model = _model_with(model_dir, tmp_path / f"model-{name}", post)
        runs[name] = tmp_path / "runs" / name
        main(["medical", "infer", "--model", str(model), "--images", str(path), "--out",
              str(runs[name]), "--quiet"])
    printed = [line for line in capsys.readouterr().err.splitlines() if "in pieces" in line]
    assert len(printed) == 2 and all(p.startswith("warning: twins: segmentation in pieces: ")
                                     and "liver" in p for p in printed)
    manifest = json.loads((runs["kept"] / "manifest.json").read_text())
    assert printed[1].removeprefix("warning: ") in manifest["summary"]["warnings"]
    source = nib.load(str(path))
    seg = {name: nib.load(str(run / "twins_seg.nii.gz")) for name, run in runs.items()}
    for image in seg.values():                   # the input's grid, whatever was removed
        assert image.shape == source.shape
        np.testing.assert_allclose(image.affine, source.affine)
    raw, kept = (np.asarray(seg[name].dataobj) for name in ("raw", "kept"))
    assert _parts(raw == 1) >= 2 and _parts(kept == 1) == 1
    assert np.count_nonzero(kept == 1) < np.count_nonzero(raw == 1)
    np.testing.assert_array_equal(kept == 2, raw == 2)       # the spleen's decision is off
