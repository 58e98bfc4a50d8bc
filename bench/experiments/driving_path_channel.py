"""Experiment behind the driving ``path_reach`` channel (bench/README.md, driving: how soon
the ego reaches a pedestrian or obstacle in its lane). Frame AUROC, by kind, events alerted
and the alert rate on new normal logs, on the **tuned** configurations only: the 4 test
logs of the benchmark (seed 2) and 6 more drawn for this (seed 3); normal logs seeds 502
and 503. Maps cached by driving_calibration_cache.py (the committed run's networks,
/tmp/drv19/models/<world>), calibration tails of 50 frames, cross-fitted threshold.

    UNMASK_NUM_THREADS=1 python -m bench.experiments.driving_calibration_cache town   # ~8 min
    UNMASK_NUM_THREADS=1 python -m bench.experiments.driving_path_channel town        # ~3 min
"""
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from bench.experiments.driving_lead_channel import Harness
from core.calibration import threshold_from_contamination
from driving.model.predictor import OcclusionPredictor
from driving.schema import PEDESTRIAN
from driving.scoring import frame_score as fs

CACHE = Path("/tmp/drv19/cache")


def reach(half_width_m, classes=fs.REACH_CLASSES):
    """``path_reach`` over a corridor ``half_width_m`` either side of the ego's heading line."""
    return lambda log: fs.path_reach(log.semantic, log.ego_speed, log.meta, half_width_m, classes)


BASE = fs.CHANNELS[:4]                 # revealed, object context, object recon, lead closing
CANDIDATES = {"reach_wide": reach(2.5),
              "reach_path": reach(fs.PATH_HALF_WIDTH_M),
              "reach_lane_pedestrians": reach(fs.LANE_HALF_M, (PEDESTRIAN,))}
VARIANTS = {"as committed before (no path channel)": BASE,
            "path_reach, the ego's lane (1.6 m; kept)": fs.CHANNELS,
            "path_reach, 2.5 m either side": BASE + (("reach_wide", False, 1),),
            "path_reach, the path (5.5 m)": BASE + (("reach_path", False, 1),),
            "path_reach, pedestrians only": BASE + (("reach_lane_pedestrians", False, 1),)}


class PathHarness(Harness):
    """The lead-channel harness over this round's cache, with more test logs."""

    def __init__(self, world, cal_frames=50):
        self.world, self.root = world, CACHE / world
        self.pred = OcclusionPredictor.load(f"/tmp/drv19/models/{world}")
        self.smooth = max(1, int(round(self.pred.smooth_s * self.pred.meta_.rate_hz)))
        self.train = self.load("train")
        self.tails = [self.tail(it, cal_frames) for it in self.train]
        self.events = self.load("tuned") + self.load("extra")
        self.normals = self.load("tuned_normal") + self.load("extra_normal")

    def maps(self, log, m, prior):
        d = {k: m[k] for k in ("revealed", "object_recon", "object_forecast")}
        d.update({name: fn(log) for name, fn in fs.OBSERVED_CHANNELS.items()})
        d["object_context"] = prior.surprise(m["ground"], m["category"])
        d.update(predicted=None, confidence=None, road_layout=None, probabilities=None)
        return d

    def frame_metrics(self, scores: list, normal: np.ndarray, threshold: float) -> dict:
        """Frame AUROC over :attr:`events` (all, the benchmark's 4 logs, the 6 new ones), by
        kind, and the alert rate of the ``normal`` logs' scores; ``scores``: one array per event log."""
        labels = [it[0].anomaly for it in self.events]
        kinds = np.concatenate([[k or "" for k in it[0].anomaly_kind] for it in self.events])
        flat, truth = np.concatenate(scores), np.concatenate(labels)
        first = sum(len(s) for s in scores[:4])
        out = {"auroc": roc_auc_score(truth, flat),
               "auroc_benchmark_logs": roc_auc_score(truth[:first], flat[:first]),
               "auroc_new_logs": roc_auc_score(truth[first:], flat[first:])}
        for k in sorted(set(kinds) - {""}):
            sel = (kinds == "") | (kinds == k)
            out[k] = roc_auc_score(kinds[sel] == k, flat[sel])
        out["alert_rate_normal_logs"] = float(np.mean(normal > threshold))
        return out

    def evaluate(self, channels) -> dict:
        """:meth:`frame_metrics` and events alerted of the frame score over ``channels``, its
        threshold from the cross-fitted scores of the calibration tails."""
        observed = [fs.observed_statistics(log, channels) for log, _ in self.train]
        without = lambda i: [o for j, o in enumerate(observed) if j != i]
        full = self.fit_state(self.tails, channels, observed)
        oof = [self.score(self.fit_state(self.tails[:i] + self.tails[i + 1:], channels, without(i)), t)
               for i, t in enumerate(self.tails)]
        threshold = threshold_from_contamination(np.concatenate(oof), 0.05)
        scores = [self.score(full, it) for it in self.events]
        normal = np.concatenate([self.score(full, it) for it in self.normals])
        out = self.frame_metrics(scores, normal, threshold)
        out["events_alerted"] = events_alerted(scores, [it[0].anomaly for it in self.events], threshold)
        return out

    def run(self, channels, label):
        out = self.evaluate(channels)
        print(self.world, label, json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                             for k, v in out.items()}), flush=True)


def events_alerted(scores, labels, threshold) -> str:
    """``"alerted/all"``: runs of anomalous frames (per log) with at least one alert."""
    hit = total = 0
    for s, lab in zip(scores, labels):
        edges = np.flatnonzero(np.diff(np.r_[0, lab.astype(int), 0]))
        for a, b in zip(edges[::2], edges[1::2]):
            total += 1
            hit += bool((s[a:b] > threshold).any())
    return f"{hit}/{total}"


if __name__ == "__main__":
    fs.OBSERVED_CHANNELS.update(CANDIDATES)
    fs.MIN_SCALE.update({name: 0.02 for name in CANDIDATES})
    harness = PathHarness(sys.argv[1])
    for label, channels in VARIANTS.items():
        harness.run(channels, label)
