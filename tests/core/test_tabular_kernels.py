"""Compiled reference-memory kernels: exact search and attention match the dense tensors."""
import numpy as np
import pytest
import torch
from tabular_data import correlated_rows

from core.tabular.reference import ReferenceMemory


def _memory(n_ref=600, d=8, n_masks=6, n_candidates=8, n_probe=None, seed=0):
    rng = np.random.default_rng(seed)
    reference = torch.as_tensor(correlated_rows(rng, n_ref, d), dtype=torch.float32)
    hidden = torch.as_tensor(rng.random((n_masks, d)) < 0.4)
    hidden[:, 0] = True  # every mask hides something
    memory = ReferenceMemory(reference, hidden, torch.eye(d), n_candidates=n_candidates, k=3,
                             n_probe=n_probe)
    probe = min(100, n_ref)
    memory.fit_temperature(reference[:probe], np.arange(probe), k=3, scale=0.3)
    return memory, rng


def test_exact_kernel_matches_dense_computation():
    memory, rng = _memory()
    x = torch.as_tensor(np.vstack([correlated_rows(rng, 200, 8),
                                   correlated_rows(rng, 20, 8) + 4.0]), dtype=torch.float32)
    exclude = np.where(np.arange(220) % 3 == 0, np.arange(220) % 600, -1)  # some leave-one-out
    attention, knn = memory(x, exclude)
    attention_ref, knn_ref = memory.forward_dense(x, exclude)
    np.testing.assert_allclose(attention.numpy(), attention_ref.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(knn.numpy(), knn_ref.numpy(), rtol=1e-4, atol=1e-5)


def test_exact_search_returns_the_true_nearest_rows():
    memory, rng = _memory()
    x = torch.as_tensor(correlated_rows(rng, 100, 8), dtype=torch.float32)
    dist, rows = memory.candidates(x, 8)
    brute = torch.cdist(x, memory.reference) ** 2
    np.testing.assert_allclose(dist.numpy(), brute.topk(8, largest=False).values.numpy(),
                               rtol=1e-4, atol=1e-4)
    assert torch.all(dist[:, 1:] >= dist[:, :-1])
    np.testing.assert_allclose(((x[:, None] - rows) ** 2).sum(-1).numpy(), dist.numpy(),
                               rtol=1e-4, atol=1e-4)


def test_self_is_skipped_for_leave_one_out():
    memory, _ = _memory()
    dist, _ = memory.candidates(memory.reference[:50], 4, exclude=np.arange(50))
    plain, _ = memory.candidates(memory.reference[:50], 4)
    assert torch.all(plain[:, 0] < 1e-6)  # each row finds itself ...
    assert torch.all(dist[:, 0] > 1e-6)  # ... unless told to skip it


def test_approximate_search_recall_and_limits():
    exact, rng = _memory(n_ref=2000)
    x = torch.as_tensor(correlated_rows(rng, 300, 8), dtype=torch.float32)
    n_groups = exact.index()["cent_t"].shape[1]
    _, truth = exact.candidates(x, 8)
    wide, _ = _memory(n_ref=2000, n_probe=n_groups)  # probing every group is exact
    np.testing.assert_allclose(wide.candidates(x, 8)[0].numpy(),
                               exact.candidates(x, 8)[0].numpy(), rtol=1e-6)
    approx, _ = _memory(n_ref=2000, n_probe=4)
    _, found = approx.candidates(x, 8)
    same = (found[:, :, None, :] == truth[:, None, :, :]).all(-1).any(-1).float().mean()
    assert same >= 0.85  # most true neighbours found while searching 4 of ~89 groups
    one, _ = _memory(n_ref=2000, n_probe=1)  # too few rows in one group: more are searched
    dist, _ = one.candidates(x, 40)
    assert torch.isfinite(dist).all()


@pytest.mark.parametrize("n_probe", [None, 1])
def test_memory_smaller_than_candidates(n_probe):
    memory, rng = _memory(n_ref=3, n_candidates=8, n_probe=n_probe)
    x = torch.as_tensor(correlated_rows(rng, 5, 8), dtype=torch.float32)
    attention, knn = memory(x, np.array([0, 1, -1, -1, 2]))
    assert torch.isfinite(attention).all() and torch.isfinite(knn).all()
    assert (knn.sum(1) > 0).all()


def test_local_error_is_knn_distance_over_the_neighbours_own():
    memory, rng = _memory()
    memory.fit_neighbour_radius(floor=0.1)
    ref = memory.reference
    own = torch.cdist(ref, ref).fill_diagonal_(float("inf"))
    radius = own.topk(3, largest=False).values[:, -1]  # leave-one-out 3rd neighbour (k=3)
    np.testing.assert_allclose(memory.neighbour_radius.numpy(), radius.numpy(), rtol=1e-4)
    assert float(memory.radius_floor) == pytest.approx(0.1 * float(radius.median()), rel=1e-4)
    x = torch.as_tensor(np.vstack([correlated_rows(rng, 50, 8),
                                   correlated_rows(rng, 5, 8) + 3.0]), dtype=torch.float32)
    _, knn, local = memory.errors(x.numpy())
    near = torch.cdist(x, ref).topk(3, largest=False)
    expected = near.values[:, -1] / (radius[near.indices].mean(1) + memory.radius_floor)
    np.testing.assert_allclose(local.sum(1), expected.numpy(), rtol=1e-3)
    np.testing.assert_allclose(knn.sum(1), near.values[:, -1].numpy(), rtol=1e-3)


def test_kernels_import_and_run_where_numba_cannot_cache(run_without_numba_cache):
    """Without a writable cache location (a read-only install, no writable home) numba
    refuses ``cache=True``; the kernels (and shap's cached stand-in) then compile uncached
    instead of breaking the import of the tabular detector (and so of finance's commands)."""
    script = (
        "import numpy as np\n"
        "import core._shap_kernels\n"
        "from core.tabular.kernels import build_index, pad_rows, search\n"
        "index = build_index(np.array([[0, 0], [1, 0], [5, 5], [6, 5]], np.float32), n_groups=2)\n"
        "out_d, out_i = np.empty((1, 2), np.float32), np.empty((1, 2), np.int64)\n"
        "search(pad_rows(np.array([[0.75, 0.0]])), index['ref'], index['rho'], index['cent_t'],"
        " index['radius'], index['offsets'], np.array([-1]), 2, 2, out_d, out_i)\n"
        "print(index['order'][out_i].tolist(), out_d.tolist())\n")
    assert run_without_numba_cache(script) == "[[1, 0]] [[0.0625, 0.5625]]"
