"""`unmask medical export`: a CT model's UNets as ONNX with dynamic batch and spatial axes."""
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

import core.export as export
from core.cli import cli, main
from core.export import read_parity
from medical.anomaly import AnomalyScorer
from medical.phantom import simulate_dataset
from medical.presets import preset
from medical.pretrain import pretrain
from medical.segment import Segmenter, train_segmenter


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``(pretrained bundle, train's model dir)``: tiny preset, one short epoch each."""
    root = tmp_path_factory.mktemp("medical_export")
    data = simulate_dataset(root / "data", 3, lesions=False, seed=0, shape=(32, 32, 16))
    pre_config, seg_config = preset("tiny")
    pretrain(data, root / "pre", replace(pre_config, max_epochs=1, samples_per_epoch=4))
    train_segmenter(data, root / "ct", root / "pre", 2,
                    replace(seg_config, max_epochs=1, samples_per_epoch=4))
    return root / "pre", root / "ct"


def _export(*args):
    result = CliRunner().invoke(cli, ["medical", "export", *map(str, args)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _new_windows(shape, segmentation):
    """Fresh inputs: a batch size and a spatial size the exporter's check did not use."""
    rng = np.random.default_rng(99)
    image = rng.random((3, 1) + shape, dtype=np.float32)
    hidden = np.zeros_like(image) if segmentation else (rng.random(image.shape) < 0.3).astype(np.float32)
    return np.concatenate([image * (1 - hidden), hidden], axis=1)


def test_segmenter_export_matches_torch_at_new_sizes(models, tmp_path):
    out = tmp_path / "seg.onnx"
    assert "(ct-segmenter); parity: max abs diff" in _export("--model", models[1], "--out", out)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (graph_input,), (graph_output,) = session.get_inputs(), session.get_outputs()
    assert (graph_input.name, graph_output.name) == ("input", "logits")
    assert graph_input.shape[:2] == ["batch", 2]        # roi 32x32x16, strides (2, 2): any 4k
    segmenter = Segmenter.load(models[1] / "segmenter")
    for shape in [(32, 32, 16), (20, 36, 8)]:
        x = _new_windows(shape, segmentation=True)
        got = session.run(None, {"input": x})[0]
        with torch.no_grad():
            want = segmenter.network(torch.from_numpy(x)).numpy()
        assert got.shape == (3, 6) + shape
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    parity = read_parity(out)
    assert parity["passed"] and [c["batch"] for c in parity["checks"]] == [1, 2, 5, 1]
    assert parity["checks"][-1] == {"batch": 1, "x": 36, "y": 36, "z": 20}
    assert "class 0 = background, 1 = liver" in onnx.load(str(out)).doc_string


def test_anomaly_network_of_a_pretrain_bundle(models, tmp_path):
    out = tmp_path / "anomaly.onnx"
    assert "(ct-anomaly)" in _export("--model", models[0], "--out", out)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    scorer = AnomalyScorer.load(models[0])
    x = _new_windows((24, 28, 12), segmentation=False)
    with torch.no_grad():
        want = scorer.network(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(["output"], {"input": x})[0], want, rtol=1e-3, atol=1e-4)


def test_refusals_are_one_line_and_write_nothing(models, tmp_path, monkeypatch, capsys):
    out = tmp_path / "x.onnx"
    with pytest.raises(SystemExit) as exit_info:
        main(["medical", "export", "--model", str(models[0]), "--network", "segmenter",
              "--out", str(out)])
    assert exit_info.value.code == 2
    assert "has no segmenter network (it holds: anomaly)" in capsys.readouterr().err

    real = export._run_onnx
    monkeypatch.setattr(export, "_run_onnx", lambda *a: [o + np.float32(1e-3) for o in real(*a)])
    with pytest.raises(SystemExit) as exit_info:
        main(["medical", "export", "--model", str(models[1]), "--network", "anomaly",
              "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: the ONNX graph disagrees with PyTorch: max abs diff 0.001")
    assert "\n" not in err and not any(tmp_path.iterdir())
