"""Experiment behind the driving ``path_reach`` channel (bench/README.md, driving: how soon
the ego reaches a pedestrian or obstacle in its lane). Frame AUROC, by kind, events alerted
and the alert rate on new normal logs, on the **tuned** configurations only: the 4 test
logs of the benchmark (seed 2) and 6 more drawn for this (seed 3); normal logs seeds 502
and 503. Maps cached by driving_calibration_cache.py (the committed run's networks,
/tmp/drv19/models/<world>), calibration tails of 50 frames, cross-fitted threshold.
``PathHarness(world, configuration="heldout")`` evaluates on the frozen held-out
configuration's logs instead (the benchmark's 4 test logs and 2 normal logs).

    UNMASK_NUM_THREADS=1 python -m bench.experiments.driving_calibration_cache town   # ~8 min
    UNMASK_NUM_THREADS=1 python -m bench.experiments.driving_path_channel town        # ~3 min

Its product arm is pinned to ``driving_five_channels.FIVE_CHANNELS`` (with its tail floors and
observed channels), the product's channels when its results were made, not to the default
``frame_score.CHANNELS``, which has since gained ``pedestrian_conflict``.
"""
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from bench.driving import event_kinds
from bench.experiments import merge_results
from bench.experiments.driving_lead_channel import Harness
from bench.experiments.driving_five_channels import FIVE_CHANNELS, FIVE_CHANNEL_MIN_SCALE, FIVE_CHANNEL_OBSERVED
from core.calibration import threshold_from_contamination
from driving.evaluate import event_latencies
from driving.model.predictor import OcclusionPredictor
from driving.schema import PEDESTRIAN, window_frames
from driving.scoring import frame_score as fs
from driving.scoring.path import LANE_HALF_M, PATH_HALF_WIDTH_M

CACHE = Path("/tmp/drv19/cache")
# configuration -> cached sets of its event logs (the benchmark's first) and of its normal logs;
# the held-out one (bench.driving.HELDOUT) is never tuned on
TEST_SETS = {"tuned": (("tuned", "extra"), ("tuned_normal", "extra_normal")),
             "heldout": (("heldout",), ("heldout_normal",)),
             # the held-out configuration's own network and logs (driving_native_alerts.py)
             "native": (("heldout",), ("heldout_normal", "more_normal"))}
CAL_FRAMES = 50                       # the predictor's calibration tail: 20 % of 250 frames
CHANNELS = [name for name, _, _ in FIVE_CHANNELS]


def channel_view(scorer, result) -> dict:
    """A scoring result's smoothed frame score, per-channel tail scores ``(T, 5)`` and where
    they lie beyond the largest normal value of ``scorer``'s tails (extrapolated)."""
    tails = scorer.tail_scores(result.score_maps)
    largest = np.array([tail.tails_[-1] for tail in scorer.tails_])
    return {"score": result.score, "tails": tails, "beyond": tails > largest + 1e-9}


def reach(half_width_m, classes=fs.REACH_CLASSES):
    """``path_reach`` over a corridor ``half_width_m`` either side of the ego's heading line."""
    return lambda log: fs.path_reach(log.semantic, log.ego_speed, log.meta, half_width_m, classes)


BASE = FIVE_CHANNELS[:4]                 # revealed, object context, object recon, lead closing
CANDIDATES = {"reach_wide": reach(2.5),
              "reach_path": reach(PATH_HALF_WIDTH_M),
              "reach_lane_pedestrians": reach(LANE_HALF_M, (PEDESTRIAN,))}
VARIANTS = {"as committed before (no path channel)": BASE,
            "path_reach, the ego's lane (1.6 m; kept)": FIVE_CHANNELS,
            "path_reach, 2.5 m either side": BASE + (("reach_wide", False, 1),),
            "path_reach, the path (5.5 m)": BASE + (("reach_path", False, 1),),
            "path_reach, pedestrians only": BASE + (("reach_lane_pedestrians", False, 1),)}


@dataclass
class CrossFit:
    """Per-log outputs of one ``per_log(state, item)``: each calibration tail's from the state
    fitted on the other tails, each event and normal log's from the state fitted on all
    (``full``)."""
    held_out: list
    events: list
    normals: list
    full: object


@dataclass
class Alerts:
    """Frame scores of the event logs (one array per log) and of the normal logs (one array),
    and the alert threshold read from the held-out calibration tails' scores."""
    events: list
    normal: np.ndarray
    threshold: float


class PathHarness(Harness):
    """The lead-channel harness over this round's cache, with more test logs."""

    def __init__(self, world, cal_frames=CAL_FRAMES, configuration="tuned", name=None):
        """``name``: the folder of the network and the cached maps under /tmp/drv19/models and
        :data:`CACHE` (default: ``world``'s)."""
        # either configuration: the scoring state and the threshold come from the training
        # logs' tails; only the logs evaluated on change
        self.read(world, CACHE / (name or world), OcclusionPredictor.load(f"/tmp/drv19/models/{name or world}"),
                  cal_frames, *TEST_SETS[configuration])

    def read(self, world, root: Path, pred, cal_frames: int, events: tuple, normals: tuple):
        """Set up over the cache ``root`` and the network ``pred``: the training logs and their
        ``cal_frames`` tails, the event sets ``events`` (the benchmark's first; none: no events)
        and the normal sets ``normals``."""
        self.world, self.root, self.pred, self.cal_frames = world, root, pred, cal_frames
        self.smooth = window_frames(self.pred.smooth_s, self.pred.meta_.rate_hz)
        self.train = self.load("train")
        self.tails = [self.tail(it, cal_frames) for it in self.train]
        benchmark = self.load(events[0]) if events else []
        self.benchmark_logs = len(benchmark)      # the benchmark's test logs lead :attr:`events`
        self.events = benchmark + [it for name in events[1:] for it in self.load(name)]
        self.normals = [it for name in normals for it in self.load(name)]

    def load(self, name, maps_prefix=None):
        """The cached logs of set ``name`` (maps files: as the base's ``load``); every log needs
        its maps (the base skips a missing one)."""
        for log_file in sorted((self.root / "logs" / name).glob("*.parquet")):
            maps_file = self.root / f"{maps_prefix or name}_{log_file.stem}.npz"
            if not maps_file.exists():
                raise FileNotFoundError(f"no cached maps {maps_file}: run the cache step first "
                                        f"(bench.experiments.driving_calibration_cache {self.world}, "
                                        "or driving_native_alerts cache for its native network)")
        return super().load(name, maps_prefix)

    def view(self, state, item) -> dict:
        """:func:`channel_view` of the cached ``item`` scored by ``state``."""
        return channel_view(state.frame_scorer, self.result(state, item))

    def maps(self, log, m, prior):
        d = {k: m[k] for k in ("revealed", "object_recon", "object_forecast")}
        d.update({name: fn(log) for name, fn in self.observed_channels.items()})
        d["object_context"] = prior.surprise(m["ground"], m["category"])
        d.update(predicted=None, confidence=None, road_layout=None, probabilities=None)
        return d

    def frame_metrics(self, scores: list, normal: np.ndarray, threshold: float) -> dict:
        """Frame AUROC over :attr:`events` (all, the benchmark's logs, the new ones if any), by
        kind, and the alert rate of the ``normal`` logs' scores; ``scores``: one array per event log."""
        labels = [it[0].anomaly for it in self.events]
        kinds = np.concatenate([[k or "" for k in it[0].anomaly_kind] for it in self.events])
        flat, truth = np.concatenate(scores), np.concatenate(labels)
        first = sum(len(s) for s in scores[:self.benchmark_logs])
        out = {"auroc": roc_auc_score(truth, flat)}
        if first < len(flat):          # no new logs (held-out): "auroc" is the benchmark logs'
            out.update(auroc_benchmark_logs=roc_auc_score(truth[:first], flat[:first]),
                       auroc_new_logs=roc_auc_score(truth[first:], flat[first:]))
        for k in event_kinds(kinds):
            sel = (kinds == "") | (kinds == k)
            out[k] = roc_auc_score(kinds[sel] == k, flat[sel])
        out["alert_rate_normal_logs"] = float(np.mean(normal > threshold))
        return out

    def cross_fit(self, channels, per_log=None, train=None, items=None, events=None,
                  normals=None) -> CrossFit:
        """``per_log(state, item)`` (default: the frame score) of every calibration item from
        the state fitted without its log, and of the ``events`` and ``normals`` logs (default:
        :attr:`events`, :attr:`normals`) from the state fitted on all; ``train`` and ``items``
        as :meth:`fitted_states` (observed channels: from ``train``'s whole logs)."""
        per_log = per_log or self.score
        states, full, items = self.fitted_states(channels, train, items)
        events = self.events if events is None else events
        normals = self.normals if normals is None else normals
        return CrossFit([per_log(state, it) for state, it in zip(states, items)],
                        [per_log(full, it) for it in events], [per_log(full, it) for it in normals], full)

    def alerts(self, fitted: CrossFit, aggregate=None) -> Alerts:
        """``aggregate`` (per log output -> frame scores; default: as they are) of ``fitted``,
        the threshold at the predictor's contamination of the held-out tails' scores."""
        aggregate = aggregate or (lambda scores: scores)
        held_out = np.concatenate([aggregate(o) for o in fitted.held_out])
        return Alerts([aggregate(o) for o in fitted.events],
                      np.concatenate([aggregate(o) for o in fitted.normals]),
                      threshold_from_contamination(held_out, self.pred.contamination))

    def metrics(self, alerts: Alerts) -> dict:
        """:meth:`frame_metrics` and events alerted (``"alerted/all"``) of ``alerts``."""
        out = self.frame_metrics(alerts.events, alerts.normal, alerts.threshold)
        delays = onsets(alerts.events, [it[0].anomaly for it in self.events], alerts.threshold)
        out["events_alerted"] = f"{sum(d is not None for d in delays)}/{len(delays)}"
        return out

    def evaluate(self, channels) -> dict:
        """:meth:`metrics` of the frame score over ``channels``."""
        return self.metrics(self.alerts(self.cross_fit(channels)))

    def run(self, channels, label):
        report(self.world, label, self.evaluate(channels))


def onsets(scores, labels, threshold) -> list:
    """Per event (a run of anomalous frames in one log), frames from its first frame to its
    first score over ``threshold``; None for an event never alerted."""
    return [d for s, lab in zip(scores, labels) for d in event_latencies(lab, s > threshold)]


def report(world, label, out: dict):
    """One line: ``world``, ``label`` and ``out`` as JSON, floats to 3 decimals."""
    print(world, label, json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                    for k, v in out.items()}), flush=True)


def save_configuration(out: Path, world: str, configuration: str, result: dict):
    """Store ``result`` as ``configuration``'s entry of results file ``out``, keeping the
    other configurations' entries."""
    merge_results(out, {configuration: result}, under=("configurations",),
                  base={"world": world, "configurations": {}})


if __name__ == "__main__":
    harness = PathHarness(sys.argv[1])
    harness.observed_channels = {**FIVE_CHANNEL_OBSERVED, **CANDIDATES}
    harness.min_scale = {**FIVE_CHANNEL_MIN_SCALE, **{name: 0.02 for name in CANDIDATES}}
    for label, channels in VARIANTS.items():
        harness.run(channels, label)
