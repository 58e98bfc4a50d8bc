"""The inference shortcuts give the same numbers as the plain computations."""
import numpy as np
import pytest
import torch

from driving.model.network import OcclusionNet, OcclusionNetConfig
from driving.schema import LogMeta
from driving.warp import cell_offsets


def _plain_patch_indices(grids, vocab):
    """The embedding rows computed in int64 throughout."""
    b, f, h, w = grids.shape
    idx = grids.long().clamp_(max=vocab - 1)
    idx = idx.view(b, f, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return idx.reshape(b * (h // 2) * (w // 2), f * 4) + torch.arange(f * 4) * vocab


def test_patch_indices_and_forward_match_the_int64_computation(monkeypatch):
    config = OcclusionNetConfig(n_frames=3, widths=(8, 16), grid_shape=(16, 16))
    net = OcclusionNet(config).reset_parameters(torch.Generator().manual_seed(0)).eval()
    rng = np.random.default_rng(0)
    grids = rng.choice([0, 1, 2, 3, 4, 5, 6, 255], size=(2, 3, 16, 16)).astype(np.uint8)
    grids = torch.from_numpy(grids)
    vocab = config.n_classes + 1
    assert torch.equal(net._patch_indices(grids), _plain_patch_indices(grids, vocab))
    with monkeypatch.context() as capturing:            # the ONNX graph's pixel-unshuffle path
        capturing.setattr(torch.compiler, "is_compiling", lambda: True)
        assert torch.equal(net._patch_indices(grids), _plain_patch_indices(grids, vocab))
    speed = torch.tensor([5.0, 20.0])
    with torch.inference_mode():
        fast = net.predict(grids, speed).probabilities
        net._patch_indices = lambda g: _plain_patch_indices(g, vocab)
        plain = net.predict(grids, speed).probabilities
    assert torch.equal(fast, plain)                       # same rows, same sums: bit for bit


def test_cell_offsets_are_shared_read_only_and_as_the_contract_says():
    meta = LogMeta(grid_shape=(6, 4), resolution_m=0.5, ego_cell=(4, 2))
    forward, right = cell_offsets(meta)
    rows, cols = np.meshgrid(np.arange(6), np.arange(4), indexing="ij")
    np.testing.assert_array_equal(forward, (4 - rows) * 0.5)
    np.testing.assert_array_equal(right, (cols - 2) * 0.5)
    assert cell_offsets(LogMeta(grid_shape=(6, 4), resolution_m=0.5, ego_cell=(4, 2)))[0] is forward
    with pytest.raises(ValueError):
        forward[0, 0] = 1.0                               # a caller cannot change everyone's copy
