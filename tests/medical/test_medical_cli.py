"""`unmask medical ...` end to end through click, and the demo builder."""
from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
from click.testing import CliRunner

from core.errors import DataValidationError
from core.runs import list_runs
from medical.cli import medical
from medical.io import find_cases


def invoke(*args):
    result = CliRunner().invoke(medical, [str(a) for a in args], catch_exceptions=True)
    return result


def test_cli_end_to_end(tmp_path):
    data, models = tmp_path / "data", tmp_path / "models"
    result = invoke("simulate", "--cases", 4, "--out", data, "--lesions", "--seed", 3,
                    "--shape", "32,32,16")
    assert result.exit_code == 0, result.output
    meta = json.loads((data / "dataset.json").read_text())
    assert meta["labels"]["1"] == "liver" and sum(e["has_lesion"] for e in meta["training"]) == 2
    result = invoke("pretrain", "--data", data, "--out", models / "pre", "--preset", "tiny",
                    "--epochs", 3)
    assert result.exit_code == 0, result.output
    assert "pretrained for 3 epochs" in result.output
    result = invoke("train", "--data", data, "--out", models / "ct", "--pretrained", models / "pre",
                    "--labels", 2, "--preset", "tiny", "--epochs", 2)
    assert result.exit_code == 0, result.output
    assert (models / "ct" / "segmenter" / "config.json").is_file()
    assert (models / "ct" / "anomaly" / "weights.safetensors").is_file()
    run = tmp_path / "run"
    result = invoke("infer", "--model", models / "ct", "--images", data, "--out", run)
    assert result.exit_code == 0, result.output
    # 4 cases leave too few healthy ones for an alert at FDR 0.1: one plain line says so
    assert "warning: " in result.stderr and "nothing can be flagged at FDR 0.1" in result.stderr
    scores = pd.read_parquet(run / "scores.parquet")
    assert len(scores) == 4 and scores["has_lesion"].sum() == 2
    assert (run / f"{scores['case'][0]}_seg.nii.gz").is_file()
    result = invoke("infer", "--model", models / "ct", "--images", data, "--workspace", tmp_path / "ws")
    assert result.exit_code == 0, result.output     # a new run where the dashboard looks
    assert [m["vertical"] for m in list_runs(tmp_path / "ws")] == ["medical"]
    result = invoke("evaluate", "--pred", run, "--data", data, "--out", tmp_path / "report.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["dice"]) == {"liver", "spleen", "kidney_right", "kidney_left", "spine"}
    assert 0 <= report["voxel_ap"] <= 1 and 0 <= report["case_auroc"] <= 1
    assert len(report["per_case"]) == 4


def test_cli_errors_are_one_line(tmp_path, capsys):
    from core.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("infer", "--model", tmp_path / "nomodel", "--images", empty, "--out", tmp_path / "r")
    assert isinstance(result.exception, Exception)
    with pytest.raises(SystemExit) as exit_info:
        main(["medical", "pretrain", "--data", str(empty), "--out", str(tmp_path / "m")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "empty: no cases found" in err
    assert not (tmp_path / "m").exists()
    result = invoke("simulate", "--cases", 0, "--out", tmp_path / "d")
    assert isinstance(result.exception, DataValidationError)
    assert not (tmp_path / "d").exists()


def test_simulate_names_its_cases_with_the_prefix_given(tmp_path):
    """Calibration phantoms named unlike the training ones (README: ``--prefix cal``)."""
    result = invoke("simulate", "--cases", 2, "--out", tmp_path / "cal", "--shape", "32,32,16",
                    "--prefix", "cal")
    assert result.exit_code == 0, result.output
    assert [c.name for c in find_cases(tmp_path / "cal")] == ["cal_000", "cal_001"]
    assert sorted(p.name for p in (tmp_path / "cal" / "labelsTr").iterdir()) == [
        "cal_000.nii.gz", "cal_001.nii.gz"]
    for bad in ("", "../cal", "cal/x", "-cal"):
        result = invoke("simulate", "--cases", 2, "--out", tmp_path / "bad", "--prefix", bad)
        assert isinstance(result.exception, DataValidationError)
        assert str(result.exception).startswith(f"--prefix {bad!r}: expected letters, digits")
    assert not (tmp_path / "bad").exists()


def test_build_demo_tiny(tmp_path):
    from core.runs import list_runs
    from medical.demo import build_demo

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_dir = build_demo(tmp_path / "ws", size="tiny", seed=0)
    assert not [w for w in caught if str(w.message).startswith(("organ calibration",
                                                                 "calibration cases"))]
    assert run_dir.parent == tmp_path / "ws" / "runs" / "medical"
    # organ scoring calibrates on the phantoms simulated for it, none the model trained on
    anomaly = json.loads((tmp_path / "ws/models/medical/ct/anomaly/config.json").read_text())
    assert anomaly["config"]["organ_calibration_cases"] == ["calibration_000", "calibration_001"]
    manifest = list_runs(tmp_path / "ws", "medical")[0]
    assert manifest["summary"]["n_cases"] == 4 and manifest["summary"]["labels"]["2"] == "spleen"
    scores = pd.read_parquet(run_dir / "scores.parquet")
    assert list(scores["rank"]) == sorted(scores["rank"]) and scores["has_lesion"].sum() == 2
    assert (tmp_path / "ws" / "models" / "medical" / "ct" / "segmenter").is_dir()
    assert (tmp_path / "ws" / "data" / "medical" / "test" / "dataset.json").is_file()
