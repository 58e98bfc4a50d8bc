"""The numpy warps the compiled ones (``driving.warp.warp_into``, ``driving.kernels``) were
written from, kept as the references the tests pin them to: for every destination cell its
nearest source cell as index arrays, then one gather."""
from __future__ import annotations

import numpy as np

from driving.schema import UNOBSERVED, LogMeta
from driving.warp import cells_in_world, world_to_cell


def warp_indices(pose_src, pose_dst, meta: LogMeta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every cell of the destination frame, its nearest cell in the source frame.

    Returns:
        ``(rows, cols, inside)``, each ``(H, W)``; ``inside`` is False where the point
        falls outside the source grid.
    """
    return source_cells(pose_src, cells_in_world(pose_dst, meta), meta)


def source_cells(pose_src, world_xy, meta: LogMeta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`warp_indices` from the destination frame's ``cells_in_world``."""
    rows, cols = world_to_cell(pose_src, *world_xy, meta)
    rows, cols = np.rint(rows).astype(np.int64), np.rint(cols).astype(np.int64)
    h, w = meta.grid_shape
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    return np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1), inside


def resample(grid: np.ndarray, indices, fill=UNOBSERVED) -> np.ndarray:
    """``grid`` (``(..., H, W)``, in the source frame) at the warp's ``(rows, cols,
    inside)``, ``fill`` outside the source grid."""
    rows, cols, inside = indices
    h, w = grid.shape[-2:]
    out = np.take(grid.reshape(grid.shape[:-2] + (h * w,)), rows * w + cols, axis=-1)
    return np.where(inside, out, np.asarray(fill, dtype=grid.dtype))
