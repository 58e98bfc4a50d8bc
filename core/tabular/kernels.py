"""Compiled (numba) kernels of :class:`~core.tabular.reference.ReferenceMemory`.

Scoring one row needs its ``n`` nearest stored rows and, over those, one softmax attention
per mask. Done with tensor ops this costs a full ``(rows, R)`` distance matrix and a top-k
over ``R`` per row, which dominated the detector's run time. Here each row is handled by a
fused, compiled loop instead:

* **Neighbour search over grouped rows.** The stored rows are grouped by k-means
  (:func:`build_index`); inside a group they are sorted by their distance ``rho`` to the
  group's centre. With ``n_probe`` set (the detector's default) only the groups with the
  ``n_probe`` nearest centres are searched: the classic IVF approximation. Within them,
  and over *all* groups when searching exactly, the triangle inequality prunes: for a
  query at distance ``c`` from a centre every member is at least ``|c - rho|`` away, so
  once ``n`` candidates are known, groups and members that cannot beat the current
  ``n``-th distance are skipped (a binary search on ``rho`` per group). Exact search
  returns exactly the ``n`` nearest rows (distances computed directly, in float32).
* **Masked attention** over the candidates, fused per row (visible distance per mask,
  softmax with a vectorised ``exp``, reconstruction error of the hidden cells).

All functions release the GIL (``nogil``), so callers can run chunks in threads; they are
compiled once and cached on disk where numba can write (:func:`core.jit.compiled`).
"""
from __future__ import annotations

import numpy as np

from ..jit import compiled

_INF = np.float32(np.inf)
# fast-math without "no infs / no NaNs": the search uses inf as "no bound yet"
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}


@compiled
def _insert(best_d, best_i, count, dist, index):
    """Insert into the ascending arrays ``best_d``/``best_i``; returns the new count.

    (A sorted array beat a binary heap here: few inserts, short arrays.)
    """
    n = best_d.shape[0]
    pos = count if count < n else n - 1
    while pos > 0 and best_d[pos - 1] > dist:
        best_d[pos] = best_d[pos - 1]
        best_i[pos] = best_i[pos - 1]
        pos -= 1
    best_d[pos] = dist
    best_i[pos] = index
    return min(count + 1, n)


@compiled(fastmath=_FAST)
def _search(xi, ref, rho, cent_t, radius, offsets, self_pos, n_probe, best_d, best_i, cd, lb,
            key, near):
    """The ``len(best_d)`` nearest stored rows of ``xi`` (positions in the index order).

    Exact when ``n_probe >= n_groups``; otherwise only the ``n_probe`` groups with the
    nearest centres are searched (more if they hold fewer than ``len(best_d)`` rows), the
    usual IVF approximation. ``ref`` and ``xi`` are zero-padded to whole SIMD vectors.
    ``self_pos`` (or -1) is skipped: leave-one-out for stored rows. Returns how many were
    found (fewer than asked only when the memory is smaller). ``cd``, ``lb``, ``key``,
    ``near`` are scratch (one slot per group).
    """
    n_dims, n_groups = cent_t.shape
    width = ref.shape[1]
    n = best_d.shape[0]
    for g in range(n_groups):
        cd[g] = 0.0
    for d in range(n_dims):
        xd = xi[d]
        for g in range(n_groups):
            t = xd - cent_t[d, g]
            cd[g] += t * t
    first = 0
    for g in range(n_groups):
        cd[g] = np.sqrt(cd[g])
        lb[g] = cd[g] - radius[g]
        if cd[g] < cd[first]:
            first = g
    exact = n_probe >= n_groups
    n_near = 0
    if not exact:  # the n_probe nearest centres, ascending (sorted insertion)
        for g in range(n_groups):
            if n_near < n_probe or cd[g] < key[n_near - 1]:
                pos = n_near if n_near < n_probe else n_probe - 1
                while pos > 0 and key[pos - 1] > cd[g]:
                    key[pos] = key[pos - 1]
                    near[pos] = near[pos - 1]
                    pos -= 1
                key[pos] = cd[g]
                near[pos] = g
                n_near = min(n_near + 1, n_probe)
    count = 0
    worst = _INF
    reach = _INF  # distance (not squared) within which a row can still enter the top n
    for step in range(n_groups + n_near):
        if exact:  # the nearest group first (the bound tightens early), then the rest
            if step >= n_groups:
                break
            g = first if step == 0 else step - 1 + (step - 1 >= first)
        elif step < n_near:  # approximate: the nearest groups only ...
            g = near[step]
        else:  # ... unless they held fewer than n rows: then every other group too
            if count == n:
                break
            g = step - n_near
            if _taken(near, n_near, g):
                continue
        centre = cd[g]
        if lb[g] > reach:
            continue
        j = offsets[g]
        hi = offsets[g + 1]
        if reach < _INF:  # members with |centre - rho| > reach cannot enter
            j = _first_at_least(rho, j, hi, centre - reach)
        while j < hi and rho[j] <= centre + reach:
            s = np.float32(0.0)
            for d in range(width):
                t = xi[d] - ref[j, d]
                s += t * t
            if s < worst and j != self_pos:
                count = _insert(best_d, best_i, count, s, j)
                if count == n:
                    worst = best_d[n - 1]
                    reach = np.sqrt(worst) * np.float32(1.0001) + np.float32(1e-6)
            j += 1
    return count


@compiled
def _taken(near, n_near, g):
    for p in range(n_near):
        if near[p] == g:
            return True
    return False


@compiled
def _first_at_least(values, lo, hi, bound):
    """First position in ``[lo, hi)`` of ascending ``values`` with ``values >= bound``."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if values[mid] < bound:
            lo = mid + 1
        else:
            hi = mid
    return lo


@compiled
def _search_buffers(n_groups, n):
    """The arrays :func:`_search` works in, allocated once for all rows of a call, in its
    argument order: ``best_d``, ``best_i`` (``n`` candidates) and the scratch ``cd``,
    ``lb``, ``key``, ``near`` (one slot per group)."""
    return (np.empty(n, np.float32), np.empty(n, np.int64), np.empty(n_groups, np.float32),
            np.empty(n_groups, np.float32), np.empty(n_groups, np.float32), np.empty(n_groups, np.int64))


@compiled
def search(x, ref, rho, cent_t, radius, offsets, self_pos, n, n_probe, out_d, out_i):
    """Nearest ``n`` stored rows of every row of ``x``: squared distances and positions.

    ``x`` and ``ref`` are zero-padded to the same width (:func:`pad_rows`).
    Missing slots (memory smaller than ``n``) get distance ``inf`` and position -1.
    """
    best_d, best_i, cd, lb, key, near = _search_buffers(cent_t.shape[1], n)
    for i in range(x.shape[0]):
        count = _search(x[i], ref, rho, cent_t, radius, offsets, self_pos[i], n_probe, best_d,
                        best_i, cd, lb, key, near)
        for j in range(n):
            out_d[i, j] = best_d[j] if j < count else _INF
            out_i[i, j] = best_i[j] if j < count else -1


_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)


@compiled(fastmath=_FAST)
def score(x, ref, rho, cent_t, radius, offsets, self_pos, n, n_probe, k, hidden, n_hidden,
          inv_temperature, owner, column_count, out_attention, out_knn, out_near):
    """Per-column attention and KNN errors of every row of ``x`` (see ``ReferenceMemory``).

    Args:
        x: ``(B, D')`` rows, zero-padded like ``ref`` (:func:`pad_rows`).
        ref, rho, cent_t, radius, offsets: the index (:func:`build_index`).
        n, n_probe: candidates per row, groups searched (see :func:`_search`).
        k: neighbour rank of the KNN distance.
        hidden: ``(M, H)`` hidden dims of each mask (first ``n_hidden[m]`` entries valid).
        inv_temperature: ``(M,)`` 1 / softmax temperature.
        owner: ``(D,)`` input column of each encoded dim.
        column_count: ``(C,)`` number of masks hiding each column (>= 1).
        out_attention, out_knn: ``(B, C)`` float32 outputs.
        out_near: ``(B, k)`` int64 output: index positions of the ``k`` nearest stored rows
            (-1 where the memory holds fewer).
    """
    n_dims = cent_t.shape[0]
    n_masks = hidden.shape[0]
    n_cols = out_knn.shape[1]
    best_d, best_i, cd, lb, key, near = _search_buffers(cent_t.shape[1], n)
    diff_t = np.empty((n_dims, n), np.float32)
    sq_t = np.empty((n_dims, n), np.float32)
    dim_error = np.empty(n_dims, np.float32)
    vis = np.empty(n, np.float32)
    w = np.empty(n, np.float32)
    bits = np.empty(n, np.int32)
    scale = bits.view(np.float32)
    for i in range(x.shape[0]):
        xi = x[i]
        m_n = _search(xi, ref, rho, cent_t, radius, offsets, self_pos[i], n_probe, best_d,
                      best_i, cd, lb, key, near)
        for c in range(n_cols):
            out_attention[i, c] = 0.0
            out_knn[i, c] = 0.0
        # KNN: (x - r_k)^2 / ||x - r_k|| per column, summing to the k-th NN distance
        for j in range(out_near.shape[1]):
            out_near[i, j] = best_i[j] if j < m_n else -1
        kth = best_i[min(k, m_n) - 1]
        norm = max(np.sqrt(best_d[min(k, m_n) - 1]), np.float32(1e-12))
        for d in range(n_dims):
            t = xi[d] - ref[kth, d]
            out_knn[i, owner[d]] += t * t / norm
        # masked attention over the candidates (their total distances are best_d)
        for j in range(m_n):
            row = best_i[j]
            for d in range(n_dims):
                t = xi[d] - ref[row, d]
                diff_t[d, j] = t
                sq_t[d, j] = t * t
        for d in range(n_dims):
            dim_error[d] = 0.0
        for m in range(n_masks):
            for j in range(m_n):
                vis[j] = best_d[j]
            for h in range(n_hidden[m]):
                dh = hidden[m, h]
                for j in range(m_n):
                    vis[j] -= sq_t[dh, j]
            # softmax of -visible distance / T, shifted by the smallest distance
            shift = _INF
            for j in range(m_n):
                vis[j] = max(vis[j], np.float32(0.0))
                shift = min(shift, vis[j])
            norm = np.float32(0.0)
            # w = exp(y), y = (shift - vis) / T <= 0, vectorisable (relative error ~1e-7):
            # exp(y) = 2^q exp(r), q = round(y / ln 2), |r| <= ln 2 / 2; exp(r) by its
            # degree-6 Taylor polynomial, 2^q written into the float's exponent bits
            # (``scale`` is a float32 view of the int32 ``bits``). Below 2^-126 a weight is
            # that value: negligible next to the largest weight, 1.
            for j in range(m_n):
                y = max((shift - vis[j]) * inv_temperature[m], np.float32(-87.0))
                q = np.floor(y * _LOG2E + np.float32(0.5))
                r = y - q * _LN2_HI - q * _LN2_LO
                p = np.float32(1.0 / 720.0)
                p = p * r + np.float32(1.0 / 120.0)
                p = p * r + np.float32(1.0 / 24.0)
                p = p * r + np.float32(1.0 / 6.0)
                p = p * r + np.float32(0.5)
                p = p * r + np.float32(1.0)
                w[j] = p * r + np.float32(1.0)
                bits[j] = (np.int32(max(q, np.float32(-126.0))) + np.int32(127)) << np.int32(23)
            for j in range(m_n):
                w[j] *= scale[j]
                norm += w[j]
            for j in range(m_n):
                w[j] /= norm
            for h in range(n_hidden[m]):  # hidden cells' error x - sum_j w_j r_j
                dh = hidden[m, h]
                err = np.float32(0.0)
                for j in range(m_n):
                    err += w[j] * diff_t[dh, j]
                dim_error[dh] += err * err
        for d in range(n_dims):
            out_attention[i, owner[d]] += dim_error[d]
        for c in range(n_cols):
            out_attention[i, c] /= column_count[c]


def build_index(reference: np.ndarray, n_groups: int | None = None, iterations: int = 8,
                seed: int = 0) -> dict:
    """Group stored rows for :func:`search` / :func:`score` (seeded k-means, float32).

    Returns a dict of arrays: ``order`` (index position -> stored row), ``ref``
    ``(R, D')`` rows in index order, zero-padded (:func:`pad_rows`); ``rho`` distance of
    each to its centre
    (ascending within a group); ``cent_t`` ``(D, G)``; ``radius`` ``(G,)``; ``offsets``
    ``(G + 1,)``; ``position`` (stored row -> index position).
    """
    reference = np.ascontiguousarray(reference, dtype=np.float32)
    n_rows = len(reference)
    if n_groups is None:
        n_groups = int(round(2 * np.sqrt(n_rows)))
    n_groups = int(np.clip(n_groups, 1, min(256, n_rows)))
    rng = np.random.default_rng(seed)
    centres = reference[rng.choice(n_rows, size=n_groups, replace=False)].astype(np.float64)
    ref64 = reference.astype(np.float64)
    sq = (ref64 ** 2).sum(1)
    for _ in range(iterations + 1):
        dist = sq[:, None] - 2 * ref64 @ centres.T + (centres ** 2).sum(1)[None, :]
        assign = dist.argmin(1)
        counts = np.bincount(assign, minlength=n_groups)
        sums = np.zeros_like(centres)
        np.add.at(sums, assign, ref64)
        nonempty = counts > 0
        centres[nonempty] = sums[nonempty] / counts[nonempty, None]
    rho = np.sqrt(((ref64 - centres[assign]) ** 2).sum(1))
    order = np.lexsort((rho, assign))
    radius = np.zeros(n_groups)
    np.maximum.at(radius, assign, rho)
    position = np.empty(n_rows, dtype=np.int64)
    position[order] = np.arange(n_rows)
    return {"order": order.astype(np.int64),
            "ref": pad_rows(reference[order]),
            "rho": rho[order].astype(np.float32),
            "cent_t": np.ascontiguousarray(centres.T, dtype=np.float32),
            "radius": radius.astype(np.float32),
            "offsets": np.searchsorted(assign[order], np.arange(n_groups + 1)).astype(np.int64),
            "position": position}


def pad_rows(x: np.ndarray) -> np.ndarray:
    """Float32 copy of ``x`` zero-padded to a multiple of 16 columns (whole SIMD vectors)."""
    width = -(-max(x.shape[1], 1) // 16) * 16
    out = np.zeros((len(x), width), dtype=np.float32)
    out[:, :x.shape[1]] = x
    return out
