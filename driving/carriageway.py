"""The width of the carriageway the ego drives on, read off a drive log's observed grids.

The input guard (:mod:`driving.guard`) compares a log's width with the training logs': more
or fewer lanes than in training put vehicles where the network has never seen a lane. Only
the observed grids are read (never simulator truth), so imported logs are measured as
simulated ones are.

Example:
    >>> width, frames = log_carriageway(read_log("highway.parquet"))   # doctest: +SKIP
    >>> width                                                           # metres, or None
    13.5
"""
from __future__ import annotations

import numpy as np

from .schema import LANE_MARKING, ROAD, STATIC_OBSTACLE, UNOBSERVED, VEHICLE, DriveLog

CARRIAGEWAY_ROWS = 4        # rows either side of the ego's across which the road's width is read
CARRIAGEWAY_FRAMES = 20     # frames with a measured width a log needs to have one
CARRIAGEWAY = np.zeros(256, bool)   # per class id: does the class stand on the carriageway?
CARRIAGEWAY[[ROAD, LANE_MARKING, VEHICLE, STATIC_OBSTACLE]] = True


def carriageway_widths(log: DriveLog, rows: int = CARRIAGEWAY_ROWS) -> np.ndarray:
    """``(F,)`` the width in metres of the carriageway the ego stands on, one value per
    frame where it was measured (``F <= T``): across each grid row within ``rows`` of the
    ego's (the ego faces up, so a row runs across the road), the run of carriageway cells
    (:data:`CARRIAGEWAY`: road, lane marking and the vehicles and obstacles standing on
    them) through the ego's column, taken where both its ends meet an observed cell of
    another class (a kerb, sidewalk or verge); a run that ends at a hidden cell or the
    grid's edge is not measured (none is with the ego at the grid's side). A frame's width
    is the median of its measured rows."""
    row, col = log.meta.ego_cell
    if not 0 < col < log.meta.grid_shape[1] - 1:
        return np.empty(0)
    lo, hi = max(row - rows, 0), min(row + rows + 1, log.meta.grid_shape[0])
    band = log.semantic[:, lo:hi]                                      # (T, R, W)
    on_road = CARRIAGEWAY[band]
    on_road[:, :, col] = True                                          # the ego's own cell
    width = band.shape[2]
    # the nearest cell off the carriageway on either side (-1 / width: none before the edge)
    left = ~on_road[:, :, :col][:, :, ::-1]
    right = ~on_road[:, :, col + 1:]
    left_stop = np.where(left.any(2), col - 1 - left.argmax(2), -1)
    right_stop = np.where(right.any(2), col + 1 + right.argmax(2), width)
    t, r = np.indices(left_stop.shape)
    measured = (left_stop >= 0) & (right_stop < width)
    ends_seen = (band[t, r, np.maximum(left_stop, 0)] != UNOBSERVED) & \
        (band[t, r, np.minimum(right_stop, width - 1)] != UNOBSERVED)
    cells = np.where(measured & ends_seen, right_stop - left_stop - 1, np.nan)
    frames = ~np.all(np.isnan(cells), axis=1)
    return np.nanmedian(cells[frames], axis=1) * log.meta.resolution_m


def log_carriageway(log: DriveLog) -> tuple[float | None, np.ndarray]:
    """The log's carriageway width (the median of its frames'; None with fewer than
    ``CARRIAGEWAY_FRAMES`` measured frames) and the ``(F,)`` frames' widths."""
    widths = carriageway_widths(log)
    return (float(np.median(widths)) if widths.size >= CARRIAGEWAY_FRAMES else None), widths


def carriageway_profile(logs: list[DriveLog], min_logs: int) -> tuple[float | None, float | None]:
    """``(width, spread)`` of training logs: the median width over the measured frames of
    the logs that have a width, and the largest ``|log(w_i / w_-i)|`` of one such log's
    width against the median of the other logs' frames; ``(None, None)`` with fewer than
    ``min_logs`` such logs (a spread over too few is the largest of too few values)."""
    measured = [(width, frames) for width, frames in map(log_carriageway, logs) if width is not None]
    if len(measured) < min_logs:
        return None, None
    others = [np.concatenate([frames for j, (_, frames) in enumerate(measured) if j != i])
              for i in range(len(measured))]
    spread = max(abs(np.log(width / np.median(rest))) for (width, _), rest in zip(measured, others))
    return float(np.median(np.concatenate([frames for _, frames in measured]))), float(spread)
