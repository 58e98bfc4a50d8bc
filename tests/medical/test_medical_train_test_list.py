"""`medical train` reads the test list of an MSD ``--data`` only where it reads those cases
(``medical.training_cases.listed_for_training``): without a default organ calibration it
lists the training split alone, so a fault in a test list it never uses (a missing file, a
test image also listed for training, a test case named as a training one with another file)
does not refuse it; the default organ calibration reads every split, so there the fault is
refused as ``medical.io.find_cases`` says it."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from core.errors import DataValidationError
from medical.cli import medical
from medical.io import find_cases


def _with_test_list(train, root, fault: str):
    """A copy of the MSD root ``train`` at ``root`` whose ``test`` list has ``fault``."""
    shutil.copytree(train, root)
    meta = json.loads((root / "dataset.json").read_text())
    first = meta["training"][0]["image"]                     # imagesTr/case_000.nii.gz
    if fault == "missing file":
        meta["test"] = ["imagesTs/gone.nii.gz"]
    elif fault == "training image":
        meta["test"] = [first]
    else:                                                    # a training case's name
        (root / "imagesTs").mkdir()
        shutil.copy(root / first, root / "imagesTs" / (root / first).name)
        meta["test"] = [f"imagesTs/{(root / first).name}"]
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _train(data, out, *pretrained):
    return CliRunner().invoke(medical, [str(a) for a in (
        "train", "--data", data, "--out", out, "--labels", 2, "--preset", "tiny", "--epochs", 1,
        *pretrained)])


FAULTS = ("missing file", "training image", "training name")


@pytest.mark.parametrize("fault", FAULTS)
def test_a_fault_in_the_unused_test_list_does_not_refuse_training(tiny_data, tmp_path, fault):
    data = _with_test_list(tiny_data[0], tmp_path / "msd", fault)
    with pytest.raises(DataValidationError):               # the fault is there, read whole
        find_cases(data)
    result = _train(data, tmp_path / "ct")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ct" / "segmenter").is_dir()


@pytest.mark.parametrize("fault", FAULTS)
def test_the_default_organ_calibration_reads_the_test_list_and_refuses_its_fault(
        tiny_data, tiny_models, tmp_path, fault):
    data = _with_test_list(tiny_data[0], tmp_path / "msd", fault)
    with pytest.raises(DataValidationError) as whole:
        find_cases(data)
    result = _train(data, tmp_path / "ct", "--pretrained", tiny_models[0])
    assert isinstance(result.exception, DataValidationError), result.output
    assert str(result.exception) == str(whole.value)
    assert not (tmp_path / "ct").exists()
