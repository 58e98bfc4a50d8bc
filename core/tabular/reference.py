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

import torch
from torch import nn


class ReferenceMemory(nn.Module):
    """Stored training rows, scored against by masked attention and by KNN distance.

    For speed, each row first retrieves its ``n_candidates`` nearest reference rows on
    *all* cells (one matrix product and a top-k); the masked attention then runs over
    those candidates only. Rows far from a candidate on all cells get negligible softmax
    weight anyway, so this matches full attention closely at a fraction of the cost.

    Args:
        reference: ``(R, D)`` encoded reference rows.
        hidden_columns: ``(M, C)`` bool, True where mask ``m`` hides column ``c``.
        dim_to_column: ``(D, C)`` 0/1 assignment of encoded dims to input columns.
        temperature: ``(M,)`` softmax temperatures (see :meth:`fit_temperature`).
        n_candidates: rows attended to per query row.
        k: neighbour rank of the KNN distance.
    """

    def __init__(self, reference: torch.Tensor, hidden_columns: torch.Tensor,
                 dim_to_column: torch.Tensor, temperature: torch.Tensor | None = None,
                 n_candidates: int = 64, k: int = 5):
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
        n_ref = reference.shape[0]
        self.n_candidates = int(max(1, min(n_candidates, n_ref)))
        self.k = int(max(1, min(k, self.n_candidates)))

    def candidates(self, x: torch.Tensor, n: int, exclude_self: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``n`` nearest reference rows: squared distances ``(B, n)`` (ascending) and rows.

        ``exclude_self`` ``(B,)`` bool marks query rows that are themselves reference rows;
        their nearest match (themselves) is skipped, giving leave-one-out scores.
        """
        extra = int(exclude_self is not None)
        closeness = torch.addmm(-self.reference_sq, x, self.reference.T, alpha=2.0)  # (B, R)
        top = closeness.topk(min(n + extra, closeness.shape[1]), dim=1)  # nearest first
        values, indices = top.values, top.indices
        if extra:
            shift = exclude_self.long()[:, None] + torch.arange(n, device=x.device)
            shift = shift.clamp_max(values.shape[1] - 1)
            values, indices = values.gather(1, shift), indices.gather(1, shift)
        dist = ((x ** 2).sum(1, keepdim=True) - values).clamp_min(0)
        return dist, self.reference[indices]  # (B, n), (B, n, D)

    def visible_distances(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Squared distances on each mask's visible dims, ``(B, n, M)``."""
        return ((x[:, None, :] - rows) ** 2) @ (1 - self.hidden_dims).T

    @torch.no_grad()
    def fit_temperature(self, x: torch.Tensor, exclude_self: torch.Tensor | None = None,
                        k: int = 5, scale: float = 1.0) -> None:
        """``T_m = scale * median_rows(k-th smallest visible distance)`` among candidates."""
        _, rows = self.candidates(x, self.n_candidates, exclude_self)
        dist = self.visible_distances(x, rows)  # (B, n, M)
        k = max(1, min(k, dist.shape[1]))
        kth = dist.topk(k, dim=1, largest=False).values[:, -1, :]  # (B, M)
        self.temperature.copy_(scale * kth.median(dim=0).values.clamp_min(1e-6))

    def forward(self, x: torch.Tensor, exclude_self: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-column errors ``(B, C)``: masked attention, and the KNN distance split.

        The attention error of a column is its squared error averaged over the masks that
        hide it. The KNN part is ``(x - r_k)^2 / ||x - r_k||`` per column, which sums to
        the distance to the ``k``-th nearest reference row (the classic KNN score).
        ``exclude_self`` as in :meth:`candidates`.
        """
        _, rows = self.candidates(x, self.n_candidates, exclude_self)
        logits = -self.visible_distances(x, rows) / self.temperature  # (B, n, M)
        weights = torch.softmax(logits, dim=1)
        recon = torch.einsum("bnm,bnd->bmd", weights, rows)  # (B, M, D)
        sq = (x[:, None, :] - recon) ** 2 * self.hidden_dims  # only hidden dims count
        attention = (sq @ self.dim_to_column).sum(1) / self.hidden_columns.sum(0).clamp_min(1)
        kth = rows[:, self.k - 1, :]  # candidates come sorted by distance
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
