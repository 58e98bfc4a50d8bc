"""Input guard, warning half: a CT unlike the training data gets one `warning:` line each."""
from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from core.cli import main
from medical.guard import InputReference, body_hu_cdf, error_warning, organ_warnings, ras_extent_mm
from medical.io import find_cases, load_volume
from medical.segment import Segmenter


def _reference(train) -> InputReference:
    """The reference fitted the way ``train_segmenter`` fits it, from the tiny phantoms."""
    from medical.training_cases import fit_input_reference

    return fit_input_reference([c for c in find_cases(train) if c.label is not None],
                               {1: "liver", 2: "spleen", 3: "kidney_right", 4: "kidney_left"})


def _volume(case):
    image = load_volume(case.image)
    return image.array[0], np.asarray(image.affine, dtype=np.float64)


def test_a_training_like_ct_gets_no_image_warning(tiny_data):
    train, test = tiny_data
    reference = _reference(train)
    for case in find_cases(test):                       # held-out phantoms, same simulator
        assert reference.image_warnings(*_volume(case)) == []


def test_a_thin_slab_is_flagged_by_its_field_of_view(tiny_data):
    train, test = tiny_data
    reference = _reference(train)
    values, affine = _volume(find_cases(test)[0])
    lines = reference.image_warnings(values[:, :, 6:9], affine)
    assert len(lines) == 1 and lines[0].startswith("field of view unlike the training volumes: S ")
    assert ras_extent_mm(values[:, :, 6:9].shape, affine)[2] < 0.5 * reference.extent_mm[2][0]


def test_a_shifted_intensity_histogram_is_flagged(tiny_data):
    train, test = tiny_data
    reference = _reference(train)
    values, affine = _volume(find_cases(test)[0])
    body = values > -500
    brighter = np.where(body, values + 150.0, values)   # e.g. another scale or contrast
    lines = reference.image_warnings(brighter, affine)
    assert len(lines) == 1 and lines[0].startswith("intensity histogram unlike the training")
    # the threshold is fitted from the training volumes' own spread, not a constant
    assert reference.hu_distance_threshold == pytest.approx(
        max(2.0 * reference.hu_distance_max, 5.0))
    assert reference.hu_distance_max > 0


def test_body_histogram_distance_is_in_hounsfield_units():
    rng = np.random.default_rng(0)
    values = np.full((40, 40, 20), -1000.0)
    values[5:35, 5:35, 2:18] = rng.normal(40.0, 10.0, size=(30, 30, 16))
    shifted = np.where(values > -500, values + 50.0, values)
    distance = np.abs(body_hu_cdf(values) - body_hu_cdf(shifted)).sum() * 10.0
    assert distance == pytest.approx(50.0, abs=2.0)    # Wasserstein-1 of a 50 HU shift


def test_organ_volumes_outside_adult_ranges():
    labels = np.zeros((40, 40, 40), dtype=np.uint8)
    labels[10:30, 10:30, 10:30] = 1                     # 8000 voxels
    names = {1: "liver", 2: "spleen"}
    # 1 ml voxels: an 8 l liver
    lines = organ_warnings(labels, names, 1.0, None)
    assert len(lines) == 1 and "liver 8000 ml (plausible 800-3500)" in lines[0]
    # 0.01 ml voxels: an 80 ml liver inside the scan is implausible too
    assert "liver 80 ml" in organ_warnings(labels, names, 0.01, None)[0]
    # ... but not when it reaches the edge of the field of view (it may be cut off)
    cut = np.zeros_like(labels)
    cut[10:30, 10:30, 0:20] = 1
    assert organ_warnings(cut, names, 0.01, None) == []
    # a plausible liver, no spleen at all: nothing to say
    assert organ_warnings(labels, names, 0.2, None) == []


def test_reconstruction_error_far_above_calibration():
    assert error_warning(0.5, 0.2) == []
    line = error_warning(1.0, 0.2)[0]
    assert line.startswith("reconstruction error far above the calibration range") and "5.0x" in line


def test_infer_warns_prints_and_keeps_the_warning(tiny_models, tiny_data, tmp_path, capsys):
    _, model_dir, _, _ = tiny_models
    assert Segmenter.load(model_dir / "segmenter").input_reference_ is not None
    source = find_cases(tiny_data[1])[0].image
    image = nib.load(str(source))
    slab = nib.Nifti1Image(np.asarray(image.dataobj)[:, :, 6:9], image.affine)
    path = tmp_path / "slab.nii.gz"
    nib.save(slab, str(path))
    run = tmp_path / "workspace" / "runs" / "medical" / "slab-run"
    main(["medical", "infer", "--model", str(model_dir), "--images", str(path), "--out",
          str(run), "--quiet"])
    err = capsys.readouterr().err
    printed = [line for line in err.splitlines() if "field of view" in line]
    assert len(printed) == 1 and printed[0].startswith("warning: slab: field of view unlike")
    manifest = json.loads((run / "manifest.json").read_text())
    assert printed[0].removeprefix("warning: ") in manifest["summary"]["warnings"]
    row = pd.read_parquet(run / "scores.parquet").iloc[0]
    assert "field of view unlike the training volumes" in row["warnings"]


def ct_page(workspace, monkeypatch):
    """The CT review page over ``workspace`` (AppTest), checked to have raised nothing."""
    from streamlit.testing.v1 import AppTest

    import dashboard
    from dashboard.workspace import ENV_VAR

    monkeypatch.setenv(ENV_VAR, str(workspace))
    app = AppTest.from_file(str(Path(dashboard.__file__).with_name("app.py")), default_timeout=60).run()
    app.switch_page("views/medical.py").run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def banners(app) -> list[str]:
    return [re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", w.value) for w in app.warning]  # unescaped


def test_the_ct_page_shows_the_warning(tiny_models, tiny_data, tmp_path, monkeypatch):
    _, model_dir, _, _ = tiny_models
    source = find_cases(tiny_data[1])[0].image
    image = nib.load(str(source))
    path = tmp_path / "slab.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj)[:, :, 6:9], image.affine), str(path))
    workspace = tmp_path / "workspace"
    main(["medical", "infer", "--model", str(model_dir), "--images", str(path), "--out",
          str(workspace / "runs" / "medical" / "slab-run"), "--quiet"])
    shown = banners(ct_page(workspace, monkeypatch))
    # the run names the case once; the case's own lines show with it, not twice on the page
    assert "1 of 1 case carries warnings (slab); each case shows its own above its slices" in shown
    assert any(w.startswith("This case: field of view unlike") for w in shown), shown
    assert sum("field of view unlike" in w for w in shown) == 1, shown


def test_a_segmenter_without_anomaly_model_says_so_on_the_cli_and_the_page(
        tiny_models, tiny_data, tmp_path, monkeypatch, capsys):
    """`train` without --pretrained gives segmentations only: the run says so once, and the
    page does not blame an old run for the missing calibration reference."""
    _, model_dir, _, _ = tiny_models
    workspace = tmp_path / "workspace"
    main(["medical", "infer", "--model", str(model_dir / "segmenter"), "--images",
          str(find_cases(tiny_data[1])[0].image), "--out",
          str(workspace / "runs" / "medical" / "seg-run"), "--quiet"])
    expected = ("no anomaly model: segmentations only, no anomaly scores, heat maps or alerts; "
                "train with --pretrained, or give infer --anomaly-model")
    assert f"warning: {model_dir / 'segmenter'}: {expected}" in capsys.readouterr().err
    app = ct_page(workspace, monkeypatch)
    assert banners(app)[0] == expected
    assert not any("scored before runs recorded" in c.value for c in app.caption)


def _listed_twice(tiny_data, folder: Path, link_files) -> tuple[Path, str]:
    """``folder`` with one test phantom's image and a link beside it (one image listed
    twice), and the warning find_cases gives for it."""
    source = find_cases(tiny_data[1])[0].image
    link_files(folder, [source], "a_{}.nii.gz")
    link_files(folder, [folder / "a_0.nii.gz"], "b_{}.nii.gz")
    return folder, (f"{folder.resolve()}: left out 1 case, each the image file of an earlier "
                    "one: b_0 (the image of a_0)")


def test_infer_keeps_the_listing_warning_in_the_run_and_on_the_page(
        tiny_models, tiny_data, tmp_path, monkeypatch, capsys, link_files):
    """A warning about the input as a whole (find_cases: an image file listed twice) is one
    `warning:` line, a line of the manifest's `input_warnings` (apart from the cases' own
    `warnings`) and its own banner on the CT page."""
    _, model_dir, _, _ = tiny_models
    images, expected = _listed_twice(tiny_data, tmp_path / "images", link_files)
    workspace = tmp_path / "workspace"
    main(["medical", "infer", "--model", str(model_dir), "--images", str(images), "--out",
          str(workspace / "runs" / "medical" / "twice-run"), "--quiet"])
    printed = [line for line in capsys.readouterr().err.splitlines() if "left out" in line]
    assert printed == [f"warning: {expected}"]
    manifest = json.loads((workspace / "runs" / "medical" / "twice-run" / "manifest.json").read_text())
    assert manifest["summary"]["input_warnings"] == [expected]
    assert expected not in manifest["summary"]["warnings"]
    assert expected in banners(ct_page(workspace, monkeypatch))


def test_batch_score_prints_our_warnings_as_warning_lines(tiny_models, tiny_data, tmp_path,
                                                          capsys, link_files):
    _, model_dir, _, _ = tiny_models
    images, expected = _listed_twice(tiny_data, tmp_path / "images", link_files)
    main(["medical", "batch-score", "--model", str(model_dir), "--images", str(images), "--out",
          str(tmp_path / "cases.parquet")])
    out, err = capsys.readouterr()
    assert [line for line in err.splitlines() if "left out" in line] == [f"warning: {expected}"]
    assert "UnmaskWarning" not in err
    summary = json.loads(out)
    assert summary["cases"] == 1 and summary["input_warnings"] == [expected]
