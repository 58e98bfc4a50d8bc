"""The ego's path as the frame score reads it, in the ego grid: the lane it drives in and the
lane either side, and the front bumper distances are measured from. The frame score's channels
(:mod:`driving.scoring.frame_score`) and the pedestrian-conflict channel
(:mod:`driving.scoring.conflict`) share it."""
from __future__ import annotations

import numpy as np

from ..warp import cell_offsets, not_passed

PATH_HALF_WIDTH_M = 5.5   # the ego's lane and the next lane either side (3-3.75 m lanes)
LANE_HALF_M = 1.6         # the ego's own lane: the lead vehicle, objects the ego reaches
EGO_FRONT_M = 2.5         # the ego's front bumper


def ego_path(meta) -> np.ndarray:
    """``(H, W)`` bool: the ego's path and what is next to it -- cells ahead of the ego
    (or less than ``PASSED_M`` behind it) within ``PATH_HALF_WIDTH_M`` of its heading
    line (its lane and a lane either side)."""
    _, right = cell_offsets(meta)
    return not_passed(meta) & (np.abs(right) <= PATH_HALF_WIDTH_M)


def ego_lane(meta, half_width_m: float = LANE_HALF_M) -> np.ndarray:
    """``(H, W)`` bool: the ego's own lane ahead of its front bumper (within
    ``half_width_m`` of its heading line)."""
    forward, right = cell_offsets(meta)
    return (np.abs(right) <= half_width_m) & (forward > EGO_FRONT_M)


def bumper_distance(meta) -> np.ndarray:
    """``(H, W)`` m: each cell's distance ahead of the ego's front bumper, at least a cell
    (``meta.resolution_m``): what the ego's speed is divided by for the time it takes to
    reach the cell, so a cell beside or behind the bumper reads as a cell ahead rather than
    dividing by zero or a negative distance."""
    forward, _ = cell_offsets(meta)
    return np.maximum(forward - EGO_FRONT_M, meta.resolution_m)
