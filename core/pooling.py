"""Pooling an error map into a score: the one ``top_k_mean`` (driving's frame scores and
medical's case scores both use it)."""
from __future__ import annotations

import numpy as np


def top_k_mean(values, k: int, per_row: bool = False):
    """Mean of the ``k`` largest values (``k`` clamped to ``[1, size]``).

    Args:
        values: an array of any shape; its dtype is kept (cast before for float32 maths).
        k: how many of the largest values to average.
        per_row: pool each leading row of ``(N, ...)`` separately -> ``(N,)``; otherwise
            pool everything -> a float.

    Example:
        >>> top_k_mean(np.array([1.0, 5.0, 3.0, 4.0]), 2)
        4.5
        >>> top_k_mean(np.array([[1.0, 5.0], [3.0, 4.0]]), 1, per_row=True).tolist()
        [5.0, 4.0]
    """
    values = np.asarray(values)
    flat = values.reshape(len(values), -1) if per_row else values.reshape(1, -1)
    k = int(min(max(1, k), flat.shape[1]))
    pooled = np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:].mean(axis=1)  # (N,)
    return pooled if per_row else float(pooled[0])
