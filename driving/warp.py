"""Ego-motion warping between frames, with exactly the conventions of docs/contracts.md.

World frame: right-handed, x east, y north, yaw counter-clockwise from +x. Ego frame:
forward = ``(cos yaw, sin yaw)``, right = ``(sin yaw, -cos yaw)``. Grid: cell ``(r, c)`` is
``forward = (ego_row - r) * res`` metres ahead and ``right = (c - ego_col) * res`` metres to
the right of the ego.

Example:
    >>> prev_in_now = warp_grid(log.semantic[t - 2], log.poses[t - 2], log.poses[t], log.meta)
    ... # doctest: +SKIP
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .kernels import warp_cells
from .schema import OBJECT_CLASSES, UNOBSERVED, DriveLog, LogMeta


def cell_offsets(meta: LogMeta) -> tuple[np.ndarray, np.ndarray]:
    """``(forward, right)`` metres of every cell centre in the ego frame, each ``(H, W)``
    (read-only: one pair per geometry, shared by every caller)."""
    return _offsets(tuple(int(n) for n in meta.grid_shape), tuple(int(n) for n in meta.ego_cell),
                    float(meta.resolution_m))


@lru_cache(maxsize=16)
def _offsets(grid_shape, ego_cell, resolution_m) -> tuple[np.ndarray, np.ndarray]:
    # warping asks for these once per frame and history slot: built once per geometry
    h, w = grid_shape
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    forward = ((ego_cell[0] - rows) * resolution_m).astype(np.float64)
    right = ((cols - ego_cell[1]) * resolution_m).astype(np.float64)
    forward.flags.writeable = right.flags.writeable = False
    return forward, right


PASSED_M = 1.0   # objects further behind the ego than this have been passed


def not_passed(meta: LogMeta) -> np.ndarray:
    """``(H, W)`` bool: cells ahead of the ego or less than :data:`PASSED_M` behind it.
    The simulator labels an event while its object is here; the frame score reads only
    objects here (``driving.scoring.frame_score.scored_objects``)."""
    return cell_offsets(meta)[0] > -PASSED_M


def sensor_range_mask(log: DriveLog, range_m: float | None = None) -> np.ndarray:
    """Cells ``(H, W)`` within the sensor's range, in the ego grid.

    ``range_m`` defaults to the farthest distance at which the log observed a layout cell
    (objects are reported whole, so their cells may reach past the range; layout cells
    do not): the range is read from the log itself, no simulator setting needed.
    """
    forward, right = cell_offsets(log.meta)
    dist = np.hypot(forward, right)
    if range_m is None:
        layout = log.visible & ~np.isin(log.semantic, OBJECT_CLASSES)
        seen = layout.any(0)
        range_m = float(dist[seen].max()) if seen.any() else 0.0
    return dist <= range_m + 1e-9


def ego_to_world(pose, forward, right) -> tuple[np.ndarray, np.ndarray]:
    """World ``(x, y)`` of ego-frame points; ``pose`` is ``(x, y, yaw)``."""
    x, y, yaw = pose
    c, s = np.cos(yaw), np.sin(yaw)
    return x + forward * c + right * s, y + forward * s - right * c


def world_to_ego(pose, wx, wy) -> tuple[np.ndarray, np.ndarray]:
    """Ego-frame ``(forward, right)`` of world points."""
    x, y, yaw = pose
    dx, dy = wx - x, wy - y
    c, s = np.cos(yaw), np.sin(yaw)
    return dx * c + dy * s, dx * s - dy * c


def world_to_cell(pose, wx, wy, meta: LogMeta) -> tuple[np.ndarray, np.ndarray]:
    """Fractional grid ``(row, col)`` of world points in the frame at ``pose``."""
    forward, right = world_to_ego(pose, wx, wy)
    return meta.ego_cell[0] - forward / meta.resolution_m, meta.ego_cell[1] + right / meta.resolution_m


def cells_in_world(pose, meta: LogMeta) -> tuple[np.ndarray, np.ndarray]:
    """World ``(x, y)`` of every cell centre of the frame at ``pose``, each ``(H, W)``:
    the destination side of a warp, computed once for every source frame warped into that
    frame (:func:`warp_into`)."""
    forward, right = cell_offsets(meta)
    return ego_to_world(pose, forward, right)


def source_frame(pose, meta: LogMeta) -> tuple:
    """What the compiled warps (``driving.kernels``) read of a source frame: ``(x, y,
    cos yaw, sin yaw, ego row, ego col, resolution)``, floats (the cosine and sine as
    :func:`world_to_ego` computes them)."""
    x, y, yaw = pose
    return (float(x), float(y), float(np.cos(yaw)), float(np.sin(yaw)), float(meta.ego_cell[0]),
            float(meta.ego_cell[1]), float(meta.resolution_m))


def warp_into(grid: np.ndarray, pose_src, world_xy, meta: LogMeta, fill=UNOBSERVED) -> np.ndarray:
    """:func:`warp_grid` with the destination frame's :func:`cells_in_world` given, for one
    ``(H, W)`` grid in one compiled pass (no index arrays built): stacking a log's history
    frames computes those once per frame and warps every slot into them."""
    out = np.empty(world_xy[0].shape, grid.dtype)
    warp_cells(grid, world_xy[0], world_xy[1], source_frame(pose_src, meta), grid.dtype.type(fill), out)
    return out


def warp_grid(grid: np.ndarray, pose_src, pose_dst, meta: LogMeta, fill=UNOBSERVED) -> np.ndarray:
    """Resample ``grid`` (``(H, W)``, in the source frame) into the destination frame.

    Nearest-neighbour; cells that fall outside the source grid get ``fill``.
    """
    return warp_into(grid, pose_src, cells_in_world(pose_dst, meta), meta, fill)
