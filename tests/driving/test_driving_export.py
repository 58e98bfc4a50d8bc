"""`unmask driving export`: the occlusion network (with its softmax) as ONNX, parity-checked."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import core.export as export
from core.cli import cli, main
from core.export import read_parity
from driving.demo import sim_config
from driving.model.predictor import OcclusionPredictor
from driving.schema import read_log
from driving.sim.simulator import simulate_logs


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A predictor trained for a few steps on two short 64x64 logs."""
    root = tmp_path_factory.mktemp("driving_export")
    paths = simulate_logs(root / "logs", 2, 30, seed=4, config=sim_config("tiny"))
    predictor = OcclusionPredictor(history=(2, 5), widths=(8, 16), epochs=1, max_steps_per_epoch=2,
                                   batch_size=8, smooth_s=0.0, random_state=0)
    predictor.fit([read_log(p) for p in paths]).save(root / "model")
    return root / "model"


def test_export_matches_the_predictor_on_new_frames(model_dir, tmp_path):
    out = tmp_path / "occlusion.onnx"
    result = CliRunner().invoke(cli, ["driving", "export", "--model", str(model_dir), "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("grids", "tensor(uint8)"),
                                                                 ("speed", "tensor(float)")]
    predictor = OcclusionPredictor.load(model_dir)
    rng = np.random.default_rng(31)      # 4 frames: a batch size the exporter did not check
    grids = rng.integers(0, 8, (4, 4, 64, 64)).astype(np.uint8)   # current, 2 past, memory
    grids[grids == 7] = 255
    speed = rng.uniform(0, 20, 4).astype(np.float32)
    got = session.run(["probabilities"], {"grids": grids, "speed": speed})[0]
    want = predictor.predict_proba(grids, speed)
    assert got.shape == (4, 7, 64, 64)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    assert read_parity(out)["passed"]
    model = onnx.load(str(out))
    assert json.loads({p.key: p.value for p in model.metadata_props}["unmask.history"]) == [2, 5]
    assert "255 = not observed" in model.doc_string


def test_a_disagreeing_export_exits_2_and_writes_nothing(model_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "occlusion.onnx"
    out.write_bytes(b"kept")
    real = export._run_onnx
    monkeypatch.setattr(export, "_run_onnx", lambda *a: [np.roll(o, 1, axis=1) for o in real(*a)])
    with pytest.raises(SystemExit) as exit_info:
        main(["driving", "export", "--model", str(model_dir), "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: the ONNX graph disagrees with PyTorch") and "\n" not in err
    assert out.read_bytes() == b"kept" and sorted(p.name for p in tmp_path.iterdir()) == [out.name]

