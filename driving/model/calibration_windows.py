"""Which training frames calibration is fitted on, within a frame budget.

Calibration keeps every frame's surprise maps in memory for its leave-one-log-out refits
(:func:`driving.scoring.state.fit_scoring_state`), so :func:`select_windows` bounds the
frames by ``OcclusionPredictor.calibration_max_frames``: logs holding more frames share
the budget by water-filling, one contiguous window per log at a seeded position.

Example:
    >>> windows = select_windows(logs, budget=3000, shortest=50, random_state=0)  # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from core.errors import DataValidationError

from ..schema import DriveLog, slice_log


def select_windows(logs: list[DriveLog], budget: int | None, shortest: int,
                   random_state: int | None) -> list[DriveLog]:
    """``logs`` themselves when they hold at most ``budget`` frames (or it is ``None``);
    otherwise one contiguous window per log of ``min(len(log), c)`` frames at a position
    drawn from ``random_state`` (the same logs give the same windows), ``c`` the largest
    cap whose windows fit the budget, so logs shorter than ``c`` are used whole and the
    frames they do not need go to the longer logs.

    When ``c`` would fall below ``shortest`` (the frames a useful window needs), only logs
    at least that long are kept, as many as windows of that length fit, evenly spread over
    the list (all logs are candidates when fewer than two are that long), and the budget is
    water-filled over them. With two or more logs the budget must hold two such windows,
    or the threshold would be read in-sample.

    Raises:
        DataValidationError: a budget that is not a positive whole number, or too small.
    """
    if budget is None:
        return logs
    _check_budget_type(budget)
    if sum(len(log) for log in logs) <= budget:
        return logs
    _check_budget_size(budget, shortest, len(logs))
    cap = _water_level([len(log) for log in logs], budget)
    kept = logs
    if cap < shortest:
        long_enough = [log for log in logs if len(log) >= shortest]
        pool = long_enough if len(long_enough) >= 2 else logs   # still two groups
        n_kept = min(len(pool), budget // shortest)
        # the middle of n_kept equal shares of the pool: spread over it, indices distinct
        kept = [pool[(2 * i + 1) * len(pool) // (2 * n_kept)] for i in range(n_kept)]
        cap = _water_level([len(log) for log in kept], budget)
    rng = np.random.default_rng(random_state)
    windows = []
    for log in kept:
        n = min(len(log), cap)
        start = int(rng.integers(0, len(log) - n + 1))   # drawn for whole logs too
        windows.append(slice_log(log, start, start + n))
    return windows


def _check_budget_type(budget) -> None:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise DataValidationError(f"calibration_max_frames={budget!r} must be a positive whole "
                                  "number of frames, or None for no bound")


def _check_budget_size(budget: int, shortest: int, n_logs: int) -> None:
    """One useful window for one log; two for more, or the threshold would be in-sample."""
    if n_logs == 1 and budget < shortest:
        raise DataValidationError(f"calibration_max_frames={budget} is below the shortest "
                                  f"useful calibration window ({shortest} frames)")
    if n_logs > 1 and budget < 2 * shortest:
        raise DataValidationError(f"calibration_max_frames={budget} is below {2 * shortest}: "
                                  f"with {n_logs} logs the threshold is cross-fitted on at least "
                                  f"two windows of {shortest} frames")


def _water_level(lengths: list[int], budget: int) -> int:
    """The largest cap ``c`` with ``sum(min(n, c) for n in lengths) <= budget``."""
    low, high = 0, max(lengths)          # the sum at 0 fits; search the last cap that does
    while low < high:
        mid = (low + high + 1) // 2
        if sum(min(n, mid) for n in lengths) <= budget:
            low = mid
        else:
            high = mid - 1
    return low
