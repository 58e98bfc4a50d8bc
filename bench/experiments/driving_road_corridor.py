"""Experiment behind the driving README's "a corridor that follows the observed road" trial:
the ego's lane and path along a centre line read from the current frame's observed layout
instead of the straight line of its heading. From the ego cell the line marches forward row by
row (one cell, ``resolution_m``) and moves sideways as the middle of the ego's road moves: at
each row the nearest kerb either side of the line (sidewalk or off-road cells, the edges of
the drivable run around it); where both kerbs were found in the row before and neither moved
more than one cell per cell forward (a road edge at over 45 degrees to the heading is a side
road's corner, a junction or an occlusion, not the ego's road turning), the line moves by
their mean move; the line itself moves in whole cells (one kerb's one-cell step is half a
cell of the middle, below what the grid resolves). Anywhere else (unobserved kerbs, a
junction, a kerb behind a parked car) it keeps straight. The ego's offset from the road's
middle is kept, so a lane change does not bend it; it reads only the current frame's grid
(causal).

Variants: (a) the lane along the road (lead_closing, path_reach), the path straight; (b) the
lane and the path along it (every channel); (c) as (b) with lead_closing's lane straight (its
gap trend turns a corridor edge moving over a parked car from frame to frame into a closing
speed). Frame AUROC (the benchmark's 4 test logs, seed 2,
and 6 more, seed 3), by kind, events alerted and the alert rate on new normal logs, decided on
the **tuned** configurations; the frozen **held-out** one (bench.driving.HELDOUT) is computed
after the decision (``heldout`` argument). Same harness and cached maps as
driving_curved_path.py (its ``Corridor`` lets the committed channels read per-frame
corridors). Results in bench/results/driving_road_corridor_<world>.json.

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_road_corridor town tuned     # ~6 min
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_road_corridor town heldout   # ~4 min
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench.experiments.driving_curved_path import Corridor, evaluate_variants
from bench.experiments.driving_path_channel import PathHarness, save_configuration
from driving.schema import OFF_ROAD, SIDEWALK, UNOBSERVED
from driving.scoring.path import LANE_HALF_M, EGO_FRONT_M, PATH_HALF_WIDTH_M
from driving.warp import cell_offsets, not_passed

KERB_CLASSES = (SIDEWALK, OFF_ROAD)   # where the drivable run around the line ends
MAX_EDGE_SLOPE = 1.0                  # kerb cells sideways per cell forward: 45 degrees


def nearest(cells: np.ndarray, column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nearest True cell of ``cells`` ``(T, W)`` at or left of ``column`` ``(T,)`` and at
    or right of it: column indices ``(T,)`` each, -1 / W where there is none."""
    t, idx, w = np.arange(len(cells)), np.arange(cells.shape[1]), cells.shape[1]
    left = np.maximum.accumulate(np.where(cells, idx, -1), axis=1)[t, column]
    right = np.minimum.accumulate(np.where(cells, idx, w)[:, ::-1], axis=1)[:, ::-1][t, column]
    return left, right


def kerbs(row: np.ndarray, column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kerb either side of ``column`` ``(T,)`` in ``row`` ``(T, W)``: the nearest kerb
    cell, if every cell between it and the line was observed (a kerb seen past an unobserved
    gap is the edge of an occlusion's shadow as often as the road's); -1 / W where there is
    none (a kerb under the line: both)."""
    w = row.shape[1]
    left, right = nearest(np.isin(row, KERB_CLASSES), column)
    gap_left, gap_right = nearest(row == UNOBSERVED, column)
    return np.where(gap_left < left, left, -1), np.where(gap_right > right, right, w)


def road_centre(observed: np.ndarray, meta) -> np.ndarray:
    """``(T, H)`` column (float) of the ego's centre line in each row of each frame: the ego's
    column at and behind it, ahead moved with the middle of the road (module docstring)."""
    n, h, w = observed.shape
    ego_row, ego_col = (int(v) for v in meta.ego_cell)
    centre = np.full((n, h), float(ego_col))
    middle = np.zeros(n)               # how far the road's middle has moved since the ego's row
    prev_left, prev_right = kerbs(observed[:, ego_row], np.full(n, ego_col))
    for r in range(ego_row - 1, -1, -1):                               # forward = up
        column = np.clip(np.rint(centre[:, r + 1]).astype(int), 0, w - 1)
        left, right = kerbs(observed[:, r], column)
        moved_left, moved_right = left - prev_left, right - prev_right
        follow = ((left >= 0) & (prev_left >= 0) & (right < w) & (prev_right < w)
                  & (left < right) & (np.abs(moved_left) <= MAX_EDGE_SLOPE)
                  & (np.abs(moved_right) <= MAX_EDGE_SLOPE))
        middle += np.where(follow, (moved_left + moved_right) / 2.0, 0.0)
        # whole cells only: one kerb's one-cell step (a rasterised edge, a pedestrian on
        # it) moves the middle half a cell, less than the grid resolves; read as straight
        centre[:, r] = ego_col + np.trunc(middle)
        prev_left, prev_right = left, right
    return centre


def along_road(observed: np.ndarray, meta, half_width_m: float, centre=None) -> np.ndarray:
    """``(T, H, W)`` bool: cells within ``half_width_m`` of the road-following centre line,
    measured across it (the lateral half width grows with the line's slope); ``centre``:
    :func:`road_centre` of ``observed`` where already at hand."""
    centre = road_centre(observed, meta) if centre is None else centre   # (T, H) columns
    slope = np.gradient(centre, axis=1)                                # columns per row
    cols = np.arange(observed.shape[2])
    across = np.abs(cols[None, None, :] - centre[:, :, None]) * meta.resolution_m
    return across <= half_width_m * np.hypot(1.0, slope)[:, :, None]


class RoadCorridor(Corridor):
    """The corridors along the observed road: the path's (``bend_path``) and ``path_reach``'s
    lane always, ``lead_closing``'s lane if ``bend_lead``."""

    def __init__(self, bend_path: bool, bend_lead: bool = True):
        super().__init__(bend_path, bend_lead)
        self.centres = {}

    def centre(self, observed, meta) -> np.ndarray:
        """:func:`road_centre` of grid ``observed``, computed once per grid (the lane and the
        path of each fit read it again)."""
        if id(observed) not in self.centres:
            self.centres[id(observed)] = (observed, road_centre(observed, meta))   # keeps the id alive
        return self.centres[id(observed)][1]

    def lane(self, log):
        lane = along_road(log.semantic, log.meta, LANE_HALF_M, self.centre(log.semantic, log.meta))
        return lane & (cell_offsets(log.meta)[0] > EGO_FRONT_M)

    def path(self, observed, meta):
        return along_road(observed, meta, PATH_HALF_WIDTH_M, self.centre(observed, meta)) & not_passed(meta)


VARIANTS = {"straight (as committed)": None,
            "(a) the lane along the road, the path straight": RoadCorridor(False),
            "(b) the lane and the path along the road": RoadCorridor(True),
            "(c) as (b), lead_closing's lane straight": RoadCorridor(True, bend_lead=False)}


def corridor_summary(logs) -> dict:
    """How far the centre line leaves the heading line 25 m ahead, and its cost on one log."""
    shifts = []
    for log in logs:
        row = int(log.meta.ego_cell[0]) - int(round(25.0 / log.meta.resolution_m))
        shifts.append(np.abs(road_centre(log.semantic, log.meta)[:, row] - log.meta.ego_cell[1])
                      * log.meta.resolution_m)
    shifts = np.concatenate(shifts)
    log = logs[0]
    t0 = time.perf_counter()
    along_road(log.semantic, log.meta, LANE_HALF_M)
    seconds = time.perf_counter() - t0
    return {"frames_bent_share_25m": float(np.mean(shifts > 0.25)),
            "shift_m_25m_median_where_bent": float(np.median(shifts[shifts > 0.25])) if (shifts > 0.25).any() else None,
            "shift_m_25m_p90_where_bent": float(np.quantile(shifts[shifts > 0.25], 0.9)) if (shifts > 0.25).any() else None,
            f"seconds_corridor_one_log_{len(log)}_frames": seconds}


def main(world: str, configuration: str = "tuned") -> dict:
    harness = PathHarness(world, configuration=configuration)
    results = {"corridor": corridor_summary([log for log, _ in harness.events + harness.normals]),
               "variants": {}}
    label_world = f"{world}/{configuration}"
    print(label_world, json.dumps(results["corridor"]), flush=True)
    results["variants"] = evaluate_variants(harness, label_world, VARIANTS)
    return results


if __name__ == "__main__":
    world, configuration = sys.argv[1], sys.argv[2]
    save_configuration(Path("bench/results") / f"driving_road_corridor_{world}.json", world, configuration,
                       main(world, configuration))
