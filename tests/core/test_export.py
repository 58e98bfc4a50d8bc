"""ONNX export of the tabular network: parity on new inputs, refusal, metadata, missing extra."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tabular_data import mixed_frame

import core.export as export
from core import TabularDetector
from core.errors import UnmaskError
from core.export import ExportError, ParityError, export_onnx, read_parity

NETWORK_ONLY = dict(components=("network",), n_learned_masks=3, hidden=16, latent=4,
                    max_epochs=2, max_steps=20, batch_size=128)


@pytest.fixture(scope="module")
def detector():
    """Numeric and categorical columns, so the graph has both inputs."""
    return TabularDetector(random_state=0, **NETWORK_ONLY).fit(mixed_frame(np.random.default_rng(1), 300))


def test_exported_network_matches_torch_on_new_rows(detector, tmp_path):
    path = tmp_path / "tabular.onnx"
    report = export_onnx(detector, path)
    assert report.passed and report.max_abs_diff <= report.atol
    assert [c["batch"] for c in report.checks] == [1, 2, 5]

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["numeric", "codes"]
    assert [i.type for i in session.get_inputs()] == ["tensor(float)", "tensor(int64)"]
    # new rows, a batch size the exporter never checked, through the detector's own encoding
    table = detector._transform(mixed_frame(np.random.default_rng(7), 37))
    got = session.run(["column_errors"], {"numeric": table.numeric, "codes": table.codes})[0]
    with torch.no_grad():
        want = detector.modules_["network"](torch.from_numpy(table.numeric),
                                            torch.from_numpy(table.codes)).numpy()
    assert got.shape == (37, 5)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)

    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    assert read_parity(path) == json.loads(props["unmask.parity"]) == report.to_dict()
    assert json.loads(props["unmask.columns"]) == ["amount", "hour", "kind", "channel", "flag"]
    assert "column_errors" in model.doc_string


def test_a_disagreeing_graph_is_refused_and_nothing_is_written(detector, tmp_path, monkeypatch):
    path = tmp_path / "tabular.onnx"
    path.write_bytes(b"an older export")
    real = export._run_onnx
    monkeypatch.setattr(export, "_run_onnx",
                        lambda *a: [out + np.float32(1e-2) for out in real(*a)])
    with pytest.raises(ParityError, match=r"max abs diff 0\.01.*atol 0\.0001"):
        export_onnx(detector, path)
    assert path.read_bytes() == b"an older export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tabular.onnx"]  # no temporary left


def test_a_detector_without_the_network_says_so(tmp_path):
    X = np.random.default_rng(0).normal(size=(200, 3))
    det = TabularDetector(random_state=0, components=("knn",), n_reference=64).fit(X)
    with pytest.raises(ExportError, match="no 'network' component.*components: knn"):
        export_onnx(det, tmp_path / "x.onnx")
    with pytest.raises(UnmaskError, match="not a fitted"):
        export_onnx(TabularDetector(), tmp_path / "x.onnx")
    assert not any(tmp_path.iterdir())


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    real = export.importlib.util.find_spec
    monkeypatch.setattr(export.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ExportError, match=r"needs onnxruntime: pip install 'unmask\[export\]'"):
        export_onnx(object(), tmp_path / "x.onnx")
