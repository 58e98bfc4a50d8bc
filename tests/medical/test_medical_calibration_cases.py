"""Calibration cases stay unseen by the model they calibrate (``medical.training_cases.
unseen_calibration``, ``organ_calibration_cases``): `medical train --calibration-data` and
`medical pretrain`'s own split leave out cases the model trained on (the segmenter's and the
pretrained anomaly model's, by the files its bundle records) with one `warning:` line, and
refuse (writing nothing) when too few remain; by default `medical train` leaves the
pretraining cases out too, and calibrates on them with a `warning:` line when fewer than 2
others remain or when the bundle does not record its training files. An image listed twice
(two links to it) is one case (``medical.io.find_cases``, one `warning:` line)."""
from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from core.errors import DataValidationError, UnmaskWarning
import medical.io as medical_io
from medical.cli import medical
from medical.io import Case, find_cases
from medical.presets import preset
from medical.pretrain import pretrain
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


def _pretraining(bundle) -> list[str]:
    return _bundle_config(bundle)["training"]["cases"]


def _bundle_recording(tmp_path, bundle, images) -> Path:
    """A copy of the pretrained ``bundle`` whose record of training files is ``images``
    (``None``: no such record, as bundles saved before it was kept)."""
    copy = tmp_path / "pretrained"
    shutil.copytree(bundle, copy)
    meta = json.loads((copy / "config.json").read_text())
    training = meta["config"]["training"]
    training.pop("images")
    if images is not None:
        training["images"] = [str(Path(image).resolve()) for image in images]
    (copy / "config.json").write_text(json.dumps(meta))
    return copy


def test_the_pretrained_bundle_records_the_files_it_trained_on(tiny_data, tiny_models):
    train, _ = tiny_data
    training = _bundle_config(tiny_models[0])["training"]
    by_name = {c.name: str(c.key) for c in find_cases(train)}
    assert training["images"] == [by_name[name] for name in training["cases"]]


def test_the_training_folder_as_calibration_data_is_refused_when_pretraining_leaves_too_few(
        tiny_data, tiny_models, tmp_path):
    train, _ = tiny_data                       # 6 healthy labelled phantoms: 2 trained on
    pretraining = _pretraining(tiny_models[0])
    seen = [f"case_00{i}" for i in range(2, 6) if f"case_00{i}" in pretraining]
    assert len(pretraining) == 5 and len(seen) >= 3      # a fifth of 6 calibrates the scorer
    result = _train(train, tmp_path / "ct", tiny_models[0], train)
    assert isinstance(result.exception, DataValidationError), result.output
    assert str(result.exception) == (
        f"calibration cases: {4 - len(seen)} unseen of the 6 given, 2 needed; left out "
        f"{2 + len(seen)}: 2 training cases (trained on with their labels), {len(seen)} "
        f"pretraining cases (the anomaly model trained on them): case_000, case_001, "
        + ", ".join(seen))
    assert not (tmp_path / "ct").exists()


def test_calibration_data_leaves_the_pretraining_cases_out_and_says_so(tiny_data, tiny_models,
                                                                     tmp_path, link_files):
    train, other = tiny_data
    by_name = {c.name: c.image for c in find_cases(train)}
    seen = [by_name[name] for name in _pretraining(tiny_models[0])[:2]]
    healthy = [c.image for c in find_cases(other) if not c.has_lesion]
    folder = tmp_path / "calibration"
    link_files(folder, [*seen, *healthy])                         # linked: matched by file
    result = _train(train, tmp_path / "ct", tiny_models[0], folder)
    assert result.exit_code == 0, result.output
    assert ("warning: calibration cases: left out 2 of the 4 given: 2 pretraining cases (the "
            "anomaly model trained on them); calibrating on the 2 left") in result.output
    assert _organ_calibration_cases(tmp_path / "ct") == ["volume_2", "volume_3"]


def _recording(calls: list, function):
    """``function``, appending the arguments of each call to ``calls``."""
    def recorded(*args):
        calls.append(args)
        return function(*args)
    return recorded


def _train_by_default(train, out, pretrained):
    """`medical train` as :func:`_train`, calibrating on ``train``'s cases by default."""
    return CliRunner().invoke(medical, [str(a) for a in (
        "train", "--data", train, "--out", out, "--labels", 2, "--preset", "tiny", "--epochs", 1,
        "--pretrained", pretrained)])


def test_calibration_data_linking_one_image_twice_calibrates_on_it_once(tiny_data, tiny_models,
                                                                      tmp_path, link_files):
    train, other = tiny_data
    healthy = [c.image for c in find_cases(other) if not c.has_lesion]
    folder = tmp_path / "calibration"
    link_files(folder, [*healthy, healthy[0]])                   # volume_2 -> volume_0's image
    result = _train(train, tmp_path / "ct", tiny_models[0], folder)
    assert result.exit_code == 0, result.output
    assert result.output.count("warning:") == 1
    assert (f"warning: {folder.resolve()}: left out 1 case, each the image file of an earlier "
            "one: volume_2 (the image of volume_0)") in result.output
    assert _organ_calibration_cases(tmp_path / "ct") == ["volume_0", "volume_1"]


def test_by_default_the_cases_the_bundle_pretrained_on_are_left_out(tiny_data, tiny_models,
                                                                    tmp_path, monkeypatch):
    train, _ = tiny_data                       # beyond the 2 labelled: case_002 ... case_005
    images = [c.image for c in find_cases(train)]
    bundle = _bundle_recording(tmp_path, tiny_models[0], [images[0], images[2], images[3]])
    listings = []                              # --data is listed once, for both roles
    monkeypatch.setattr(medical_io, "_msd_cases", _recording(listings, medical_io._msd_cases))
    result = _train_by_default(train, tmp_path / "ct", bundle)
    assert result.exit_code == 0, result.output
    assert len(listings) == 1
    assert (f"warning: organ calibration: left out 2 pretraining cases (the anomaly model "
            f"trained on them) of the 4 lesion-free cases of {train} beyond the training ones; "
            "calibrating on the 2 left") in result.output
    assert _organ_calibration_cases(tmp_path / "ct") == ["case_004", "case_005"]


def test_by_default_too_few_unseen_cases_calibrate_with_the_seen_ones_and_a_warning(
        tiny_data, tiny_models, tmp_path):
    train, _ = tiny_data
    images = [c.image for c in find_cases(train)]
    bundle = _bundle_recording(tmp_path, tiny_models[0], images[1:])   # all but case_000
    result = _train_by_default(train, tmp_path / "ct", bundle)
    assert result.exit_code == 0, result.output
    assert (f"warning: organ calibration: 4 of its 4 cases (the lesion-free ones of {train} "
            "beyond the training ones) are pretraining cases (the anomaly model trained on "
            "them), only 0 unseen; calibrating on all of them: give --calibration-data with "
            "healthy cases it never trained on") in result.output
    assert _organ_calibration_cases(tmp_path / "ct") == [f"case_00{i}" for i in range(2, 6)]


@pytest.mark.parametrize("given", [False, True])
def test_a_bundle_that_does_not_record_its_training_files_says_so(tiny_data, tiny_models,
                                                                  tmp_path, given):
    train, other = tiny_data
    bundle = _bundle_recording(tmp_path, tiny_models[0], None)
    result = (_train(train, tmp_path / "ct", bundle, other) if given
              else _train_by_default(train, tmp_path / "ct", bundle))
    assert result.exit_code == 0, result.output
    which = "given" if given else f"lesion-free of {train} beyond the training ones"
    assert (f"warning: organ calibration: the pretrained bundle does not record its training "
            f"cases' files, so whether any of the {2 if given else 4} calibration cases ({which}) "
            "trained the anomaly model is unknown; run medical pretrain again, or give "
            "--calibration-data with healthy cases it never trained on") in result.output
    assert len(_organ_calibration_cases(tmp_path / "ct")) == (2 if given else 4)


def test_a_bundle_whose_training_files_are_not_here_says_so(tiny_data, tiny_models, tmp_path):
    """Data or bundle moved: no recorded file matches, so that is said, not taken for 'unseen'."""
    train, _ = tiny_data
    moved = [tmp_path / "elsewhere" / f"case_00{i}.nii.gz" for i in range(6)]
    result = _train_by_default(train, tmp_path / "ct", _bundle_recording(tmp_path, tiny_models[0], moved))
    assert result.exit_code == 0, result.output
    assert ("warning: organ calibration: the pretrained bundle records 6 training files, none of "
            "them on this machine (moved?), so whether any of the 4 calibration cases") in result.output


def test_calibration_data_with_one_case_names_the_option(tiny_data, tiny_models, tmp_path,
                                                         link_files):
    train, _ = tiny_data
    folder = tmp_path / "calibration"
    link_files(folder, [find_cases(train)[-1].image])
    result = _train(train, tmp_path / "ct", tiny_models[0], folder)
    assert isinstance(result.exception, DataValidationError), result.output
    assert str(result.exception) == (f"{folder}: --calibration-data needs at least 2 "
                                     "lesion-free cases, found 1")
    assert not (tmp_path / "ct").exists()


def test_calibration_data_with_too_few_unseen_cases_is_refused_before_anything_is_read(
        tiny_data, tiny_models, tmp_path, monkeypatch, link_files):
    train, _ = tiny_data
    trained = [c.image for c in labelled_cases(train, 2)]
    unseen = _bundle_config(tiny_models[0])["training"]["calibration_cases"][0]   # by neither
    assert unseen not in ("case_000", "case_001")
    folder = tmp_path / "calibration"
    link_files(folder, [*trained, *(c.image for c in find_cases(train) if c.name == unseen)])
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


def _healthy_images(tiny_data) -> list[Path]:
    """The 8 lesion-free images of ``tiny_data`` (6 of train, 2 of the other)."""
    train, other = tiny_data
    return [c.image for c in find_cases(train)] + [c.image for c in find_cases(other)
                                                   if not c.has_lesion]


def test_pretrain_leaves_a_calibration_case_that_is_also_a_training_case_out(tiny_data, tmp_path):
    """Cases given to ``pretrain`` may list one image twice (``find_cases`` lists it once)."""
    images = _healthy_images(tiny_data)
    # pretrain's seeded split (seed 0, a fifth of 8): order[:2] calibrate, the rest train;
    # make the first calibration case another listing of a training one's image
    order = np.random.default_rng(0).permutation(8)
    images[order[0]] = images[order[2]]
    cases = [Case(f"volume_{i}", image) for i, image in enumerate(images)]
    config, _ = preset("tiny")
    with pytest.warns(UnmaskWarning) as caught:
        pretrain(tmp_path, tmp_path / "pretrained", replace(config, max_epochs=1), progress=False,
                 cases=cases)
    assert [str(w.message) for w in caught] == [
        "calibration cases: left out 1 of the 2 given: 1 pretraining case (the anomaly model "
        "trained on them); calibrating on the 1 left"]
    training = _bundle_config(tmp_path / "pretrained")["training"]
    assert training["calibration_cases"] == [f"volume_{order[1]}"]


def test_pretrain_cli_lists_an_image_linked_twice_once_and_says_so(tiny_data, tmp_path, link_files):
    """A folder with two links to one image: trained or calibrated on once, one warning line."""
    images = _healthy_images(tiny_data)
    folder = tmp_path / "healthy"
    link_files(folder, [*images, images[3]])                 # volume_8 -> volume_3's image
    result = CliRunner().invoke(medical, [str(a) for a in (
        "pretrain", "--data", folder, "--out", tmp_path / "pretrained", "--preset", "tiny",
        "--epochs", 1)])
    assert result.exit_code == 0, result.output
    assert (f"warning: {folder.resolve()}: left out 1 case, each the image file of an earlier "
            "one: volume_8 (the image of volume_3)") in result.output
    assert result.output.count("warning:") == 1
    training = _bundle_config(tmp_path / "pretrained")["training"]
    assert sorted(training["cases"] + training["calibration_cases"]) == [
        f"volume_{i}" for i in range(8)]
