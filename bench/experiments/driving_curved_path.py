"""Experiment behind the driving README's "a corridor that follows the road" trial: the ego's lane
and path bent by the ego's current path curvature -- its yaw rate (the causal trend of its
unwrapped heading over the lead channel's window, 0.4 s) over its speed, 0 below 1 m/s --
against the frame score's straight lines along its heading. Variants: (a) the lane bent
(lead_closing, path_reach), the path straight; (b) the lane and the path bent (every channel);
(c), (d) the same with curvatures a car cannot drive at its speed (over 1 g) read as straight.
Frame AUROC (the benchmark's 4 test logs, seed 2, and 6 more, seed 3), by kind, events alerted
and the alert rate on new normal logs (seeds 502, 503), decided on the **tuned** configurations;
the frozen **held-out** one (bench.driving.HELDOUT: the benchmark's 4 test logs and 2 normal
logs, never tuned on) is reported beside it, computed after the decision. On the maps cached
by driving_calibration_cache.py (/tmp/drv19/cache/<world>); the scoring state from the
training logs' tails, the alert threshold of every variant from its own cross-fitted scores
on them, in both. Results in bench/results/driving_curved_path_<world>.json, one entry per
configuration.

The frame score's functions read the corridor as ``(H, W)`` masks of the geometry; here each
frame gets its own ``(T, H, W)`` mask: the scored cells' path (``scored_objects``' ``path``) and
the lead's lane (``lead_closing``'s ``lane``); ``path_reach`` reads the grid with the objects
outside the bent lane erased, over the whole width ahead. A variant reaches the frame score
through the harness's frame scorer parameters (its scored cells and observed channels), never
by changing the frame score's module.

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_curved_path town   # ~6 min

Its product arm is pinned to ``driving_five_channels.FIVE_CHANNELS`` (with its tail floors and
observed channels), the product's channels when its results were made, not to the default
``frame_score.CHANNELS``, which has since gained ``pedestrian_conflict``.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench.experiments.driving_path_channel import PathHarness, report, save_configuration
from bench.experiments.driving_five_channels import FIVE_CHANNELS, FIVE_CHANNEL_OBSERVED
from driving.schema import OBJECT_CLASSES, UNOBSERVED
from driving.scoring import frame_score as fs
from driving.scoring.path import EGO_FRONT_M, PATH_HALF_WIDTH_M
from driving.warp import cell_offsets, not_passed

MIN_TURN_SPEED_MPS = 1.0      # slower, yaw rate / speed blows up: read as straight
MAX_LATERAL_MPS2 = 9.81       # tyre grip: no car turns harder at its speed


def path_offset(meta, curvature: np.ndarray) -> np.ndarray:
    """``(T, H, W)`` signed distance (m, + = right) of every cell from the circle through the
    ego, tangent to its heading, of ``curvature`` ``(T,)`` (1/m, + = left, the world's
    counter-clockwise yaw); ``right + curvature * forward**2 / 2`` near the ego, exact for any
    radius, the heading line's ``right`` when straight."""
    forward, right = (np.asarray(a, np.float32) for a in cell_offsets(meta))
    k = np.asarray(curvature, np.float32)[:, None, None]
    return (k * (forward ** 2 + right ** 2) + 2.0 * right) / (1.0 + np.hypot(k * forward, k * right + 1.0))


def path_curvature(log) -> np.ndarray:
    """``(T,)`` the ego's path curvature now (1/m, + = left): yaw rate over speed."""
    n = fs.lead_window_frames(log.meta.rate_hz)
    yaw_rate = fs.trend(np.unwrap(np.asarray(log.ego_yaw, np.float64)), n, 1.0 / log.meta.rate_hz)
    speed = np.asarray(log.ego_speed, np.float64)
    curvature = np.divide(yaw_rate, speed, out=np.zeros(len(speed)), where=speed >= MIN_TURN_SPEED_MPS)
    return np.nan_to_num(curvature, nan=0.0)


def drivable_curvature(log) -> np.ndarray:
    """:func:`path_curvature`, 0 where a car could not drive it at its speed (over 1 g: a kink
    in the heading, as the simulator's turns at junctions, up to 1 /m at 8 m/s)."""
    curvature = path_curvature(log)
    lateral = np.asarray(log.ego_speed, np.float64) ** 2 * np.abs(curvature)
    return np.where(lateral <= MAX_LATERAL_MPS2, curvature, 0.0)


def erase_outside(observed: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``observed`` with the object cells outside ``keep`` ``(T, H, W)`` unobserved (the
    layout, and so the range the score reads, is untouched)."""
    return np.where(keep | ~np.isin(observed, OBJECT_CLASSES), observed, UNOBSERVED)


class Corridor:
    """One variant's channels and scored cells over per-frame corridors: a subclass supplies
    ``lane(log)`` (``lead_closing``'s, if ``bend_lead``, and ``path_reach``'s; ahead of the
    ego's bumper) and ``path(observed, meta)`` (the scored cells', if ``bend_path``; not
    passed), ``(T, H, W)`` bool each; the channels not bent read the committed straight
    corridor."""

    def __init__(self, bend_path: bool, bend_lead: bool = True):
        self.bend_path, self.bend_lead = bend_path, bend_lead

    def lead_closing(self, log):
        return fs.lead_closing(log.semantic, log.meta, self.lane(log) if self.bend_lead else None)

    def path_reach(self, log):
        return fs.path_reach(erase_outside(log.semantic, self.lane(log)), log.ego_speed, log.meta,
                             half_width_m=np.inf)

    def scored_objects(self, observed, meta):
        return fs.scored_objects(observed, meta, self.path(observed, meta) if self.bend_path else None)


class Bent(Corridor):
    """The corridors bent by ``curvature(log)``; the scored cells look a grid's curvature up
    by the grid (``register`` every log first: the committed functions get the grid, not the log)."""

    def __init__(self, curvature, bend_path: bool):
        super().__init__(bend_path)
        self.curvature, self.by_grid = curvature, {}

    def register(self, logs):
        for log in logs:
            self.by_grid[id(log.semantic)] = (log.semantic, self.curvature(log))   # keeps the id alive

    def curvature_of(self, semantic) -> np.ndarray:
        """The curvature :meth:`register` stored for the log of grid ``semantic``."""
        return self.by_grid[id(semantic)][1]

    def lane(self, log):
        bent = np.abs(path_offset(log.meta, self.curvature_of(log.semantic))) <= fs.LANE_HALF_M
        return bent & (cell_offsets(log.meta)[0] > EGO_FRONT_M)

    def path(self, observed, meta):
        bent = np.abs(path_offset(meta, self.curvature_of(observed))) <= PATH_HALF_WIDTH_M
        return bent & not_passed(meta)


def use(harness, variant):
    """Point ``harness``'s frame scorer parameters -- its scored cells and observed channels --
    at ``variant``'s (None: the committed ones)."""
    harness.scored_objects = fs.scored_objects if variant is None else variant.scored_objects
    harness.observed_channels = FIVE_CHANNEL_OBSERVED if variant is None else {
        **FIVE_CHANNEL_OBSERVED, "lead_closing": variant.lead_closing, "path_reach": variant.path_reach}


def evaluate_variants(harness, world: str, variants: dict) -> dict:
    """``{label: harness.evaluate(...)}`` of the frame score with each variant in :func:`use`,
    a line each; the harness has the committed functions again after."""
    out = {}
    try:
        for label, variant in variants.items():
            use(harness, variant)
            out[label] = harness.evaluate(FIVE_CHANNELS)
            report(world, label, out[label])
    finally:
        use(harness, None)
    return out


VARIANTS = {"straight (as committed)": None,
            "(a) the lane bent, the path straight": Bent(path_curvature, False),
            "(b) the lane and the path bent": Bent(path_curvature, True),
            "(c) as (a), kinks over 1 g read as straight": Bent(drivable_curvature, False),
            "(d) as (b), kinks over 1 g read as straight": Bent(drivable_curvature, True)}


def curvature_summary(logs) -> dict:
    """How far the test logs bend (radius where under 1 km), the share over 1 g, and
    the bent corridor's cost on one log."""
    k = np.abs(np.concatenate([path_curvature(log) for log in logs]))
    curved = k > 1e-3
    kinks = np.concatenate([drivable_curvature(log) != path_curvature(log) for log in logs])
    log = logs[0]
    t0 = time.perf_counter()
    path_offset(log.meta, path_curvature(log))
    return {"frames_curved_share": float(curved.mean()), "frames_over_1g_share": float(kinks.mean()),
            "radius_m_median_where_curved": float(np.median(1 / k[curved])) if curved.any() else None,
            "radius_m_p10_where_curved": float(np.quantile(1 / k[curved], 0.1)) if curved.any() else None,
            f"seconds_path_offset_one_log_{len(log)}_frames": time.perf_counter() - t0}


def main(world: str, configuration: str = "tuned") -> dict:
    harness = PathHarness(world, configuration=configuration)
    items = harness.train + harness.tails + harness.events + harness.normals
    results = {"curvature": curvature_summary([log for log, _ in harness.events + harness.normals]),
               "variants": {}}
    world = f"{world}/{configuration}"
    print(world, json.dumps(results["curvature"]), flush=True)
    for variant in VARIANTS.values():
        if variant:
            variant.register([log for log, _ in items])
    results["variants"] = evaluate_variants(harness, world, VARIANTS)
    return results


if __name__ == "__main__":
    world = sys.argv[1]
    for configuration in ("tuned", "heldout"):
        save_configuration(Path("bench/results") / f"driving_curved_path_{world}.json", world, configuration,
                           main(world, configuration))
