"""Non-parametric masked reconstruction that attends to stored training rows.

For a fixed set of column masks, each hidden cell of a row is rebuilt as a softmax-weighted
average of *reference rows* (a sample of training rows), the weights coming from the
reference rows' squared distance to the row on the *visible* cells:

    w_r = softmax_r(-||v * (x - ref_r)||^2 / T_m),   x_hat = sum_r w_r ref_r,

with one temperature ``T_m`` per mask set from the data (the median distance to the
``k``-th nearest reference row). This is the retrieval idea behind NPT-AD (ICML 2024): a
row is anomalous when its hidden cells disagree with what rows that look like it on the
visible cells hold, which gives the method the strength of nearest-neighbour detectors.

Rows live in a dense encoding: standardised numbers, and one-hot categories scaled by
``1/sqrt(2)`` (two different categories are at squared distance 1; an unseen one is
farther, see :func:`dense_encoding`).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .kernels import build_index, pad_rows, score, search


class ReferenceMemory(nn.Module):
    """Stored training rows, scored against by masked attention and by KNN distance.

    Each row first retrieves its ``n_candidates`` nearest reference rows on *all* cells;
    the masked attention then runs over those candidates only (rows far from a candidate
    on all cells get negligible softmax weight anyway). :meth:`forward` runs the compiled
    kernels of :mod:`core.tabular.kernels` (neighbour search over k-means groups, exact or
    IVF-approximate with ``n_probe``; fused attention); :meth:`forward_dense` is the same
    computation with tensor ops, a full distance matrix and exact search, kept as the
    reference the kernels are tested against. :meth:`errors` also gives a *local* KNN error:
    the distance over the neighbours' own neighbour distances (:meth:`fit_neighbour_radius`).

    Args:
        reference: ``(R, D)`` encoded reference rows.
        hidden_columns: ``(M, C)`` bool, True where mask ``m`` hides column ``c``.
        dim_to_column: ``(D, C)`` 0/1 assignment of encoded dims to input columns.
        temperature: ``(M,)`` softmax temperatures (see :meth:`fit_temperature`).
        n_candidates: rows attended to per query row.
        k: neighbour rank of the KNN distance.
        n_probe: search only the stored-row groups with the ``n_probe`` nearest centres
            (approximate, faster); ``None``: exact search.
    """

    def __init__(self, reference: torch.Tensor, hidden_columns: torch.Tensor,
                 dim_to_column: torch.Tensor, temperature: torch.Tensor | None = None,
                 n_candidates: int = 64, k: int = 5, n_probe: int | None = None):
        super().__init__()
        hidden_columns = hidden_columns.float()
        dim_to_column = dim_to_column.float()
        self.register_buffer("reference", reference.float().contiguous())
        self.register_buffer("hidden_columns", hidden_columns)
        self.register_buffer("dim_to_column", dim_to_column)
        self.register_buffer("hidden_dims", hidden_columns @ dim_to_column.T)  # (M, D)
        self.register_buffer("reference_sq", (self.reference ** 2).sum(1))
        if temperature is None:
            temperature = torch.ones(hidden_columns.shape[0])
        self.register_buffer("temperature", temperature.float())
        # each stored row's own k-th neighbour distance (see fit_neighbour_radius)
        self.register_buffer("neighbour_radius", torch.ones(reference.shape[0]))
        self.register_buffer("radius_floor", torch.ones(()))
        n_ref = reference.shape[0]
        self.n_candidates = int(max(1, min(n_candidates, n_ref)))
        self.k = int(max(1, min(k, self.n_candidates)))
        self.n_probe = None if n_probe is None else int(max(1, n_probe))
        self._index = None  # search index, built from ``reference`` on first use

    def _exclude(self, exclude, n_rows: int) -> np.ndarray:
        """Stored-row index to skip per query row (-1: none), as int64 numpy."""
        if exclude is None or self.reference.shape[0] < 2:
            return np.full(n_rows, -1, dtype=np.int64)
        return np.asarray(torch.as_tensor(exclude), dtype=np.int64).reshape(n_rows)

    def _probe(self) -> int:
        n_groups = self.index()["cent_t"].shape[1]
        return n_groups if self.n_probe is None else min(self.n_probe, n_groups)

    def index(self) -> dict:
        """The kernels' search index (built once; depends only on the stored rows)."""
        if self._index is None:
            ref = self.reference.numpy()
            index = build_index(ref)
            index["position"] = np.append(index["position"], -1)  # exclude -1 stays -1
            hidden = self.hidden_dims.numpy() > 0.5  # (M, D)
            n_hidden = hidden.sum(1).astype(np.int64)
            table = np.zeros((len(hidden), max(1, int(n_hidden.max(initial=0)))), np.int64)
            for m, row in enumerate(hidden):
                table[m, :n_hidden[m]] = np.flatnonzero(row)
            index.update(hidden=table, n_hidden=n_hidden,
                         owner=self.dim_to_column.numpy().argmax(1).astype(np.int64),
                         column_count=np.maximum(self.hidden_columns.numpy().sum(0), 1)
                         .astype(np.float32))
            self._index = index
        return self._index

    def _apply(self, fn, *args, **kwargs):  # buffers changed (device, load): rebuild index
        self._index = None
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):
        self._index = None
        return super()._load_from_state_dict(*args, **kwargs)

    def candidates(self, x: torch.Tensor, n: int, exclude=None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``n`` nearest reference rows: squared distances ``(B, n)`` (ascending) and rows.

        ``exclude`` ``(B,)`` int: a stored-row index each query row skips (-1: none); a
        stored row scoring itself skips itself, giving leave-one-out scores.
        """
        idx = self.index()
        x_np = pad_rows(x.detach().cpu().numpy())
        n = int(min(n, self.reference.shape[0]))
        dist = np.empty((len(x_np), n), np.float32)
        pos = np.empty((len(x_np), n), np.int64)
        self_pos = idx["position"][self._exclude(exclude, len(x_np))]
        search(x_np, idx["ref"], idx["rho"], idx["cent_t"], idx["radius"], idx["offsets"],
               self_pos, n, self._probe(), dist, pos)
        found = pos >= 0
        rows = idx["order"][np.where(found, pos, 0)]
        if not found.all():  # fewer stored rows than asked: repeat the farthest found
            last = found.sum(1) - 1
            rows = np.where(found, rows, rows[np.arange(len(rows)), last][:, None])
            dist = np.where(found, dist, dist[np.arange(len(dist)), last][:, None])
        return torch.from_numpy(dist), self.reference[torch.from_numpy(rows)]

    def visible_distances(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Squared distances on each mask's visible dims, ``(B, n, M)``."""
        return ((x[:, None, :] - rows) ** 2) @ (1 - self.hidden_dims).T

    @torch.no_grad()
    def fit_temperature(self, x: torch.Tensor, exclude=None, k: int = 5,
                        scale: float = 1.0) -> None:
        """``T_m = scale * median_rows(k-th smallest visible distance)`` among candidates.

        Rows whose ``k``-th distance is 0 (``k`` exact twins on the visible cells: duplicated
        rows) are left out of the median: ties say nothing about how far rows usually are,
        and a median of 0 would turn the softmax into a hard arg-min.
        """
        _, rows = self.candidates(x, self.n_candidates, exclude)
        dist = self.visible_distances(x, rows)  # (B, n, M)
        k = max(1, min(k, dist.shape[1]))
        kth = dist.topk(k, dim=1, largest=False).values[:, -1, :]  # (B, M)
        untied = torch.where(kth > 1e-12, kth, torch.nan).nanmedian(dim=0).values
        self.temperature.copy_(scale * untied.nan_to_num(1e-6).clamp_min(1e-6))

    @torch.no_grad()
    def fit_neighbour_radius(self, floor: float = 0.1, chunk: int = 2048) -> None:
        """Store each stored row's leave-one-out ``k``-th neighbour distance.

        The ``"local"`` error divides a row's ``k``-th neighbour distance by the mean of its
        neighbours' own (LOF's idea: a distance is large or small for *that* region). The
        floor added to the mean, ``floor`` times the median untied radius, keeps duplicated
        rows (radius 0) from dividing by 0; a large floor makes it the plain KNN distance.
        """
        radii = []
        for start in range(0, self.reference.shape[0], chunk):
            rows = self.reference[start:start + chunk]
            dist, _ = self.candidates(rows, self.k, np.arange(start, start + len(rows)))
            radii.append(dist[:, -1].clamp_min(0).sqrt())
        radius = torch.cat(radii)
        untied = radius[radius > 1e-6]
        self.neighbour_radius.copy_(radius)
        self.radius_floor.fill_(floor * float(untied.median()) if len(untied) else 1.0)

    def errors(self, x: np.ndarray, exclude=None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-column errors ``(B, C)`` float32: attention, KNN and local KNN.

        The local error is the KNN error divided by the mean :meth:`fit_neighbour_radius`
        of the ``k`` nearest stored rows (plus a floor); see :meth:`forward` for the others.
        """
        idx = self.index()
        x = pad_rows(x)
        n_cols = self.hidden_columns.shape[1]
        attention = np.empty((len(x), n_cols), np.float32)
        knn = np.empty((len(x), n_cols), np.float32)
        near = np.empty((len(x), self.k), np.int64)
        self_pos = idx["position"][self._exclude(exclude, len(x))]
        score(x, idx["ref"], idx["rho"], idx["cent_t"], idx["radius"], idx["offsets"],
              self_pos, self.n_candidates, self._probe(), self.k,
              idx["hidden"], idx["n_hidden"],
              (1.0 / self.temperature.numpy()).astype(np.float32), idx["owner"],
              idx["column_count"], attention, knn, near)
        radius = self.neighbour_radius.numpy()[idx["order"][np.maximum(near, 0)]]
        density = np.where(near >= 0, radius, np.nan)
        local_scale = np.nanmean(density, axis=1) + float(self.radius_floor)
        return attention, knn, knn / local_scale[:, None].astype(np.float32)

    def forward(self, x: torch.Tensor, exclude=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-column errors ``(B, C)``: masked attention, and the KNN distance split.

        The attention error of a column is its squared error averaged over the masks that
        hide it. The KNN part is ``(x - r_k)^2 / ||x - r_k||`` per column, which sums to
        the distance to the ``k``-th nearest reference row (the classic KNN score).
        ``exclude`` as in :meth:`candidates`.
        """
        attention, knn, _ = self.errors(x.detach().cpu().numpy(), exclude)
        return torch.from_numpy(attention), torch.from_numpy(knn)

    @torch.no_grad()
    def forward_dense(self, x: torch.Tensor, exclude=None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` with tensor ops over a full distance matrix (the reference)."""
        closeness = torch.addmm(-self.reference_sq, x, self.reference.T, alpha=2.0)  # (B, R)
        skip = torch.as_tensor(self._exclude(exclude, len(x)))
        rows_with_self = torch.nonzero(skip >= 0).flatten()
        closeness[rows_with_self, skip[rows_with_self]] = -float("inf")
        n = min(self.n_candidates, closeness.shape[1] - int(len(rows_with_self) > 0))
        rows = self.reference[closeness.topk(n, dim=1).indices]  # (B, n, D), nearest first
        logits = -self.visible_distances(x, rows) / self.temperature  # (B, n, M)
        weights = torch.softmax(logits, dim=1)
        recon = torch.einsum("bnm,bnd->bmd", weights, rows)  # (B, M, D)
        sq = (x[:, None, :] - recon) ** 2 * self.hidden_dims  # only hidden dims count
        attention = (sq @ self.dim_to_column).sum(1) / self.hidden_columns.sum(0).clamp_min(1)
        kth = rows[:, min(self.k, n) - 1, :]
        per_column = ((x - kth) ** 2) @ self.dim_to_column
        knn = per_column / per_column.sum(1, keepdim=True).sqrt().clamp_min(1e-12)
        return attention, knn


def dense_encoding(numeric, codes, cardinalities) -> torch.Tensor:
    """Rows as dense vectors ``(n, D)``: numbers, then one-hot / sqrt(2) per category.

    Code 0 (unknown category) has its own slot, set to 1 rather than 1/sqrt(2): no reference
    row holds it, and an unseen category is farther (squared distance 1.5) from every known
    one than two known categories are from each other (1), so it always costs more than any
    mismatch between known categories.
    """
    numeric = torch.as_tensor(numeric, dtype=torch.float32)
    codes = torch.as_tensor(codes, dtype=torch.long)
    parts = [numeric]
    for j, card in enumerate(cardinalities):
        onehot = nn.functional.one_hot(codes[:, j], card).float() * (0.5 ** 0.5)
        onehot[:, 0] *= 2 ** 0.5  # the unknown slot
        parts.append(onehot)
    return torch.cat(parts, dim=1)


def dim_to_column(n_numeric: int, cardinalities) -> torch.Tensor:
    """``(D, C)`` 0/1 matrix mapping :func:`dense_encoding` dims to columns."""
    owners = list(range(n_numeric))
    for j, card in enumerate(cardinalities):
        owners += [n_numeric + j] * card
    n_columns = n_numeric + len(cardinalities)
    return nn.functional.one_hot(torch.as_tensor(owners, dtype=torch.long), n_columns).float() \
        if owners else torch.zeros(0, n_columns)
