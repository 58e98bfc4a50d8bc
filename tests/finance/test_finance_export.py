"""`unmask finance export`: the detector's network as ONNX, parity-checked, refused when off."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

import core.export as export
from core.cli import cli, main
from core.export import DEFAULT_ATOL, DEFAULT_RTOL, read_parity
from finance.detector import FinanceModel, FinanceModelConfig
from finance.simulator import SimulatorConfig, simulate_to_parquet
from finance.train import train

NETWORK_ONLY = {"components": ["network"], "n_learned_masks": 3, "hidden": 16, "latent": 4,
                "max_steps": 20, "max_epochs": 2}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("finance_export")
    tx = simulate_to_parquet(root / "tx.parquet", SimulatorConfig(n_customers=40, n_terminals=80,
                                                                   n_days=10, seed=1))
    train(tx, root / "model", config=FinanceModelConfig(detector_params=NETWORK_ONLY))
    return root / "model"


def test_export_matches_the_network_on_new_rows(model_dir, tmp_path):
    out = tmp_path / "finance.onnx"
    result = CliRunner().invoke(cli, ["finance", "export", "--model", str(model_dir), "--format",
                                      "onnx", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}; parity: max abs diff" in result.output

    model = FinanceModel.load(model_dir)
    n = len(model.detector_features_)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape[1]) for i in session.get_inputs()] == [("numeric", "tensor(float)", n)]
    numeric = np.random.default_rng(2024).normal(size=(23, n)).astype(np.float32)  # not checked before
    got = session.run(None, {"numeric": numeric})[0]
    with torch.no_grad():
        want = model.detector_.modules_["network"](torch.from_numpy(numeric),
                                                   torch.zeros(23, 0, dtype=torch.long)).numpy()
    assert got.shape == (23, n)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)

    parity = read_parity(out)
    assert parity["passed"] and (parity["atol"], parity["rtol"]) == (DEFAULT_ATOL, DEFAULT_RTOL)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["unmask.columns"]) == model.detector_features_
    assert json.loads(props["unmask.preprocess"])["mean"] == model.detector_.preprocessor_.mean_


def test_a_disagreeing_export_exits_2_and_writes_nothing(model_dir, tmp_path, monkeypatch, capsys):
    real = export._run_onnx
    monkeypatch.setattr(export, "_run_onnx", lambda *a: [o * np.float32(1.01) for o in real(*a)])
    out = tmp_path / "finance.onnx"
    with pytest.raises(SystemExit) as exit_info:
        main(["finance", "export", "--model", str(model_dir), "--out", str(out), "--rtol", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: the ONNX graph disagrees with PyTorch") and "\n" not in err
    assert "rtol 0 x |torch|" in err and "nothing written" in err
    assert not any(tmp_path.iterdir())
