"""Generic bundles: round trip, checksum, version, kind; no pickle."""
import json

import pytest
import torch

from core import BundleError
from core.bundle import FORMAT_VERSION, load_bundle, read_bundle_config, save_bundle


def test_round_trip(tmp_path):
    tensors = {"w": torch.arange(6.0).view(2, 3), "b": torch.zeros(2, dtype=torch.int64)}
    path = save_bundle(tmp_path / "m", "tabular", {"alpha": 0.5, "names": ["a"]}, tensors)
    config, loaded = load_bundle(path, "tabular")
    assert config == {"alpha": 0.5, "names": ["a"]}
    assert torch.equal(loaded["w"], tensors["w"]) and loaded["b"].dtype == torch.int64
    meta = read_bundle_config(path)
    assert meta["format_version"] == FORMAT_VERSION and "torch" in meta["versions"]
    assert not list(path.glob("*.pkl")) and not list(path.glob("*.pt"))


def test_damaged_bundles(tmp_path):
    path = save_bundle(tmp_path / "m", "tabular", {}, {"w": torch.ones(100)})
    weights = path / "weights.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original[:-8])
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(path)
    weights.write_bytes(original)
    meta = json.loads((path / "config.json").read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="newer than this unmask supports"):
        load_bundle(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(path)
    weights.unlink()
    (path / "config.json").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(path)


def test_overwrite_is_atomic(tmp_path):
    path = save_bundle(tmp_path / "m", "a", {"v": 1}, {"w": torch.ones(1)})
    save_bundle(path, "a", {"v": 2}, {"w": torch.ones(1)})
    assert load_bundle(path, "a")[0] == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_a_folder_of_bundles_is_named_for_what_it_holds(tmp_path):
    """Given a model folder of bundles (a medical model: segmenter/ and anomaly/) where one
    bundle is expected, the error says what the folder holds, so the user sees the mix-up."""
    folder = tmp_path / "ct"
    save_bundle(folder / "segmenter", "ct-segmenter", {}, {"w": torch.ones(1)})
    save_bundle(folder / "anomaly", "ct-anomaly", {}, {"w": torch.ones(1)})
    (folder / "notes").mkdir()
    with pytest.raises(BundleError) as raised:
        read_bundle_config(folder, "occlusion")
    assert str(raised.value).endswith("is not a model bundle (it holds bundles: "
                                      "anomaly/ ('ct-anomaly'), segmenter/ ('ct-segmenter'))")
    with pytest.raises(BundleError, match=r"is not a model bundle$"):
        read_bundle_config(folder / "notes")


def test_a_reader_of_a_range_of_formats_takes_each_and_refuses_either_side(tmp_path):
    """A model that still reads older bundles (``oldest``) loads every format from it to its
    own, and refuses an older one naming the oldest it reads, and a newer one."""
    for found in (3, 4, 5):
        save_bundle(tmp_path / f"m{found}", "a", {"v": found}, {"w": torch.ones(1)}, found)
    for found in (4, 5):
        assert load_bundle(tmp_path / f"m{found}", "a", version=5, oldest=4)[0] == {"v": found}
    with pytest.raises(BundleError, match=r"format version 3 .* older than this unmask reads \(4\)"):
        load_bundle(tmp_path / "m3", "a", version=5, oldest=4)
    with pytest.raises(BundleError, match="format version 5 is newer than this unmask supports"):
        load_bundle(tmp_path / "m5", "a", version=4, oldest=3)
    with pytest.raises(BundleError, match=r"older than this unmask reads \(5\)"):
        load_bundle(tmp_path / "m4", "a", version=5)           # no range: only its own format
