"""Experiment behind the driving README's diagnosis of stalled cars on the highway: closing
channels over the ego's lane and the next lane either side, and where the stalled-car
frames the score misses are. Frame AUROC, by kind, events alerted and the alert rate on new
normal logs, on the **tuned** configurations only (the benchmark's 4 test logs, seed 2, and
6 more, seed 3; normal logs seeds 502, 503), on the maps cached by
driving_calibration_cache.py (/tmp/drv19/cache/<world>). No variant was kept.

    UNMASK_NUM_THREADS=1 python -m bench.experiments.driving_stall_channel highway   # ~5 min

Its product arm is pinned to ``driving_five_channels.FIVE_CHANNELS`` (with its tail floors and
observed channels), the product's channels when its results were made, not to the default
``frame_score.CHANNELS``, which has since gained ``pedestrian_conflict``.
"""
import sys

import numpy as np
from sklearn.metrics import roc_auc_score

from bench.experiments.driving_path_channel import PathHarness
from bench.experiments.driving_five_channels import FIVE_CHANNELS, FIVE_CHANNEL_MIN_SCALE, FIVE_CHANNEL_OBSERVED
from driving.scoring import frame_score as fs
from driving.scoring.path import EGO_FRONT_M, LANE_HALF_M, PATH_HALF_WIDTH_M
from driving.warp import cell_offsets

LANE = ((-LANE_HALF_M, LANE_HALF_M),)
THREE_LANES = LANE + ((LANE_HALF_M, PATH_HALF_WIDTH_M), (-PATH_HALF_WIDTH_M, -LANE_HALF_M))


def closing(bands, limit, over_gap=True, gap_floor_m=0.0):
    """The nearest vehicle ahead in each lateral band: its closing speed (m/s; the gap's
    trend as in ``lead_closing``) or that over the gap (1/s), the maximum over the bands per
    cell; a change of the gap faster than ``limit(ego_speed)`` gives no value."""
    def channel(log):
        forward, right = cell_offsets(log.meta)
        n = fs.lead_window_frames(log.meta.rate_hz)
        out = np.zeros(log.semantic.shape, np.float32)
        bound = limit(np.asarray(log.ego_speed, np.float64))
        for low, high in bands:
            band = (right >= low) & (right <= high) & (forward > EGO_FRONT_M)
            in_band = (log.semantic == fs.VEHICLE) & band[None]
            ahead = np.where(in_band, forward[None], np.inf)
            gap = ahead.reshape(len(log.semantic), -1).min(1)
            cells = in_band & (ahead < gap[:, None, None] + 6.0)
            gap = np.where(np.isfinite(gap), gap, np.nan)
            speed = -fs.trend(gap, n, 1.0 / log.meta.rate_hz)
            speed[~(np.abs(speed) <= bound)] = np.nan
            value = np.clip(speed, 0.0, None)
            if over_gap:
                value = value / np.maximum(gap, gap_floor_m)
            value = np.nan_to_num(value, nan=0.0)
            out = np.maximum(out, (value[:, None, None] * cells).astype(np.float32))
        return out
    return channel


FIXED = lambda v: np.full_like(v, fs.MAX_CLOSING_MPS)     # the committed cut-in limit
EGO_PLUS_5 = lambda v: v + 5.0
CANDIDATES = {  # name: (channel, TailScore floor)
    "ego's lane, limit ego speed + 5 m/s": (closing(LANE, EGO_PLUS_5), 0.02),
    "three lanes, 1/s": (closing(THREE_LANES, FIXED), 0.02),
    "three lanes, 1/s, limit ego speed + 5 m/s": (closing(THREE_LANES, EGO_PLUS_5), 0.02),
    "three lanes, 1/s, gap at least 10 m": (closing(THREE_LANES, EGO_PLUS_5, gap_floor_m=10.0), 0.02),
    "three lanes, m/s": (closing(THREE_LANES, EGO_PLUS_5, over_gap=False), 0.5),
    "ego's lane, m/s": (closing(LANE, EGO_PLUS_5, over_gap=False), 0.5)}
WITHOUT_LEAD = FIVE_CHANNELS[:3] + FIVE_CHANNELS[4:]          # revealed, context, recon, path_reach


def stalled_outside_path(harness, channels):
    """Stalled-car frame AUROC with and without the stalled frames that hold no object in
    the region the score reads (:func:`driving.scoring.frame_score.scored_objects`)."""
    _, state, _ = harness.fitted_states(channels, each=False)
    scores, kinds, outside = [], [], []
    for item in harness.events:
        log = item[0]
        kind = np.array([k or "" for k in log.anomaly_kind])
        in_region = fs.scored_objects(log.semantic, log.meta).reshape(len(log), -1).any(1)
        scores.append(harness.score(state, item))
        kinds.append(kind)
        outside.append((kind == "stalled_vehicle") & ~in_region)
    score, kind, outside = map(np.concatenate, (scores, kinds, outside))
    sel = (kind == "") | (kind == "stalled_vehicle")
    print(harness.world, f"stalled frames {int((kind == 'stalled_vehicle').sum())}, no object in "
          f"the scored region {int(outside.sum())}; stalled AUROC "
          f"{roc_auc_score(kind[sel] == 'stalled_vehicle', score[sel]):.3f}, without them "
          f"{roc_auc_score(kind[sel & ~outside] == 'stalled_vehicle', score[sel & ~outside]):.3f}; "
          f"normal frames scoring 0: {np.mean(score[kind == ''] == 0):.3f}", flush=True)


if __name__ == "__main__":
    harness = PathHarness(sys.argv[1])
    harness.observed_channels = {**FIVE_CHANNEL_OBSERVED, **{name: fn for name, (fn, _) in CANDIDATES.items()}}
    harness.min_scale = {**FIVE_CHANNEL_MIN_SCALE, **{name: floor for name, (_, floor) in CANDIDATES.items()}}
    harness.run(FIVE_CHANNELS, "as committed (lead_closing: the ego's lane, 25 m/s)")
    for name in CANDIDATES:
        harness.run(WITHOUT_LEAD + ((name, False, 1),), f"instead of lead_closing: {name}")
    added = FIVE_CHANNELS + (("three lanes, m/s", False, 1),)
    harness.run(added, "beside lead_closing: three lanes, m/s")
    if harness.world == "highway":
        stalled_outside_path(harness, FIVE_CHANNELS)
        stalled_outside_path(harness, added)
