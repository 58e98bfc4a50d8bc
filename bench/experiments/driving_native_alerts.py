"""Diagnosis behind the driving README's "diagnosed in round 14" paragraph: why the alert
threshold fitted on the held-out highway configuration's OWN 6 training logs
(``bench.driving``'s ``heldout_native`` column: 15.8 % alerts on new normal logs, nominal
5 %) does not hold on new drives of that configuration, when the tuned highway's holds
(0.2 %).

What it measures, on maps cached from the committed networks (the score is the product's,
through the experiments' harness: calibration tails of 50 frames sliced from whole-log maps):

* the alert threshold (95 % of the cross-fitted calibration scores) against each
  calibration log's own 95 % quantile of its cross-fitted score and each new normal log's;
* on the new normal logs' false alerts: which channel holds the max, how they bunch into
  episodes (runs of alerted frames) and logs, and where in the log they fall;
* the threshold and the new logs' alert rate with one calibration log left out;
* the same with 16 calibration logs (the 6 plus 10 more normal logs of the configuration,
  seed :data:`MORE_CALIBRATION_SEED`): the same network, only the scoring state and the
  threshold refitted on more logs;
* beside it, the tuned highway (its own network and logs) and the tuned network on the
  held-out configuration (the benchmark's shifted ``heldout`` column);
* (``start_check``) whether a new log's first seconds alert because scoring starts cold there
  or because the simulated world starts there: the same logs scored again from frame 100 and
  150 on, as logs of their own.

New logs of the held-out configuration: the benchmark's 2 normal logs (seed 570) and 4 more
(seed :data:`MORE_NORMAL_SEED`); seeds distinct from every seed bench.driving and
driving_calibration_cache use. Nothing here is tuned: a measurement.

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_native_alerts cache     # ~5 min
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_native_alerts analyse   # ~10-15 min
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_native_alerts start_check   # ~3 min

The tuned highway's cached maps come from ``driving_calibration_cache highway``. The JSON's
``after_oncoming_fix`` entry was measured at commit 409e9ff (``after_fix`` there: the
benchmark's ``heldout_native`` column with the highway's oncoming traffic placed along the
drive, a simulator fix reverted after it, as it was not the cause).

Its product arm is pinned to ``driving_five_channels.FIVE_CHANNELS`` (with its tail floors and
observed channels), the product's channels when its results were made, not to the default
``frame_score.CHANNELS``, which has since gained ``pedestrian_conflict``.
"""
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.driving import HELDOUT, NATIVE_TRAIN_SEED_OFFSET
from bench.experiments import merge_results
from bench.experiments.driving_calibration_cache import cache_sets
from bench.experiments.driving_path_channel import (CACHE, CAL_FRAMES, CHANNELS, PathHarness,
                                                    channel_view)
from bench.experiments.driving_five_channels import FIVE_CHANNELS
from core.calibration import threshold_from_contamination
from core.runtime import configure_threads
from driving.evaluate import events
from driving.model.predictor import OcclusionPredictor
from driving.schema import VEHICLE, read_log, slice_log
from driving.scoring.surprise import score_log
from driving.warp import cell_offsets

WORLD = "highway"
NATIVE = f"{WORLD}_heldout_native"
MODELS = Path("/tmp/drv19/models")
ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "results" / "driving_native_alerts.json"
# seeds * 1000 + i: distinct from bench.driving's (1, 2, 502, 70, 570, 71) and the cache's (3, 503)
MORE_CALIBRATION_SEED = 72
MORE_NORMAL_SEED = 572


def native_sets() -> dict:
    """Set name -> (logs, seed, configuration) of the held-out configuration, most needed first."""
    held = HELDOUT[WORLD]
    normal = replace(held["config"], anomaly_interval_s=0.0)
    return {"train": (6, held["seed"] + NATIVE_TRAIN_SEED_OFFSET, normal),
            "heldout_normal": (2, held["seed"] + 500, normal),
            "more_normal": (4, MORE_NORMAL_SEED, normal),
            "more_train": (10, MORE_CALIBRATION_SEED, normal),
            "heldout": (4, held["seed"], held["config"])}


def cache():
    """Simulate the held-out configuration's sets and cache the native network's prior-free
    maps of every log (as driving_calibration_cache does for the tuned network)."""
    cache_sets(OcclusionPredictor.load(MODELS / NATIVE), CACHE / NATIVE, native_sets())


class NativeHarness(PathHarness):
    """The experiments' harness over the held-out configuration's own network and logs
    (cached by :func:`cache`; event logs: the benchmark's held-out ones), with the 10 more
    calibration logs as :attr:`more_train`."""

    def __init__(self):
        super().__init__(WORLD, CAL_FRAMES, configuration="native", name=NATIVE)
        self.more_train = self.load("more_train")


def holders(view: dict, alerted: np.ndarray) -> dict:
    """On the ``alerted`` frames: the channel holding the max, and how often its value lies
    beyond the largest normal value its tail was fitted on."""
    tails, beyond = view["tails"][alerted], view["beyond"][alerted]
    top = tails.argmax(1)
    names = np.asarray(CHANNELS)[top]
    return {"max_channel_on_alerts": {c: int(np.sum(names == c)) for c in CHANNELS if np.any(names == c)},
            "alerts_beyond_largest_normal_value": int(beyond[np.arange(len(top)), top].sum())}


def runs(alerted: np.ndarray) -> list[int]:
    """Lengths of the runs of consecutive alerted frames (episodes)."""
    return [int(stop - start) for start, stop in events(alerted)]


def log_summary(view: dict, threshold: float, first_tail_frame: int | None = None) -> dict:
    """One log's score against ``threshold``: its 95 % quantile, alert share, episodes and the
    channel holding the max on its alerted frames (``first_tail_frame``: also the alert share
    of the frames at the calibration tail's place in a log and before it)."""
    score, tails = view["score"], view["tails"]
    alerted = score > threshold
    out = {"frames": int(len(score)), "q95": float(np.quantile(score, 0.95)),
           "max": float(score.max()), "alert_rate": float(alerted.mean()),
           "episodes": runs(alerted), **holders(view, alerted),
           "channel_q95": {c: float(np.quantile(tails[:, i], 0.95)) for i, c in enumerate(CHANNELS)}}
    out["alerted_frames"] = np.flatnonzero(alerted).tolist()
    if first_tail_frame is not None:
        out["alert_rate_before_tail_window"] = float(alerted[:first_tail_frame].mean())
        out["alert_rate_in_tail_window"] = float(alerted[first_tail_frame:].mean())
    return out


def calibrated(harness, train_items: list, events: bool = False):
    """Cross-fitted calibration on ``train_items``' tails (as the predictor's): the
    per-log views (calibration tails from the state without them; normal and, with
    ``events``, event logs from the state on all) and the threshold."""
    fit = harness.cross_fit(FIVE_CHANNELS, per_log=harness.view, train=train_items,
                            events=harness.events if events else [])
    held = np.concatenate([v["score"] for v in fit.held_out])
    return fit, threshold_from_contamination(held, harness.pred.contamination)


def pooled_channels(views: list, threshold: float) -> dict:
    """Over ``views``: alert rate, episodes and the channel holding the max on alerted frames."""
    pooled = {k: np.concatenate([v[k] for v in views]) for k in ("score", "tails", "beyond")}
    alerted = pooled["score"] > threshold
    return {"alert_rate": float(alerted.mean()), "alerts": int(alerted.sum()),
            "episodes": int(sum(len(runs(v["score"] > threshold)) for v in views)),
            "logs_with_alerts": int(sum(np.any(v["score"] > threshold) for v in views)),
            **holders(pooled, alerted)}


def tail_facts(state) -> dict:
    """Per channel of the scoring ``state`` (:func:`calibrated`'s fitted on all training logs):
    its largest normal value, that value's tail score and the slope (1 / scale) the tail is
    continued with beyond it."""
    return {c: {"largest_normal_value": float(t.knots_[-1]), "its_tail_score": float(t.tails_[-1]),
                "scale": float(t.scale_) if np.isfinite(t.scale_) else None}
            for c, t in zip(CHANNELS, state.frame_scorer.tails_)}


def diagnose(harness, train_items: list, events: bool = False) -> dict:
    """The threshold against every calibration and new normal log, and the false alerts."""
    fit, threshold = calibrated(harness, train_items, events)
    first_tail = len(harness.normals[0][0]) - CAL_FRAMES
    out = {"calibration_logs": len(train_items), "threshold": threshold,
           "calibration_pooled_q95_of_cross_fitted": threshold,
           "calibration": [log_summary(v, threshold) for v in fit.held_out],
           "new_normal_logs": [log_summary(v, threshold, first_tail) for v in fit.normals],
           "new_normal_pooled": pooled_channels(fit.normals, threshold),
           "calibration_pooled": pooled_channels(fit.held_out, threshold)}
    out["tails"] = tail_facts(fit.full)
    out["calibration_per_log_q95"] = [s["q95"] for s in out["calibration"]]
    out["new_normal_per_log_q95"] = [s["q95"] for s in out["new_normal_logs"]]
    if events and fit.events:
        normal_frames = [{k: v[k][~it[0].anomaly] for k in ("score", "tails", "beyond")}
                         for v, it in zip(fit.events, harness.events)]
        out["event_logs_normal_frames"] = pooled_channels(normal_frames, threshold)
        out["event_logs_frame_auroc"] = harness.frame_metrics([v["score"] for v in fit.events],
                                                              np.concatenate([v["score"] for v in fit.normals]),
                                                              threshold)["auroc"]
    return out


def leave_one_log_out(harness, train_items: list) -> list[dict]:
    """The threshold and the new normal logs' alert rate, calibrated without each log in turn."""
    out = []
    for i in range(len(train_items)):
        fit, threshold = calibrated(harness, train_items[:i] + train_items[i + 1:])
        normal = np.concatenate([v["score"] for v in fit.normals])
        out.append({"left_out": i, "threshold": threshold,
                    "alert_rate_new_normal": float(np.mean(normal > threshold))})
        print(f"  without log {i}: threshold {threshold:.2f}, alerts {out[-1]['alert_rate_new_normal']:.3f}",
              flush=True)
    return out


def configuration(harness, events: bool = False) -> dict:
    """:func:`diagnose` and :func:`leave_one_log_out` on the harness's 6 training logs."""
    train = list(harness.train)
    out = diagnose(harness, train, events)
    print(f"  threshold {out['threshold']:.2f}, new normal alerts "
          f"{out['new_normal_pooled']['alert_rate']:.3f}", flush=True)
    out["leave_one_log_out"] = leave_one_log_out(harness, train)
    return out


def product_path() -> dict:
    """The same question through the product itself: ``predictor.calibrate`` (calibration tails
    as standalone 50-frame logs, memory gate refitted on them) on the 6 training logs and on
    16, and the new normal logs scored by ``score_log``."""
    logs = CACHE / NATIVE / "logs"
    read = lambda name: [read_log(p) for p in sorted((logs / name).glob("*.parquet"))]
    train, normals = read("train"), read("heldout_normal") + read("more_normal")
    out = {}
    for label, calibration in (("6_logs", train), ("16_logs", train + read("more_train"))):
        pred = OcclusionPredictor.load(MODELS / NATIVE).calibrate(calibration)
        views = [channel_view(pred.scoring_.frame_scorer, score_log(pred, log)) for log in normals]
        out[label] = {"threshold": pred.threshold_, **pooled_channels(views, pred.threshold_),
                      "per_log_alert_rate": [float(np.mean(v["score"] > pred.threshold_)) for v in views]}
        print(f"  product, {label}: threshold {pred.threshold_:.2f}, alerts {out[label]['alert_rate']:.3f}",
              flush=True)
    return out


def start_check(first_frames: int = 65, restarts=(100, 150)) -> dict:
    """Is the start of a new log unlike the rest because scoring starts cold (no history, empty
    memory) or because the simulated world starts there? The product path (``calibrate`` on
    the 6 training logs): each new normal log scored whole, and scored again from frame
    ``restarts`` on as a log of its own; alerts in its first ``first_frames`` frames and after."""
    logs = CACHE / NATIVE / "logs"
    read = lambda name: [read_log(p) for p in sorted((logs / name).glob("*.parquet"))]
    pred = OcclusionPredictor.load(MODELS / NATIVE).calibrate(read("train"))
    out = []
    for log in read("heldout_normal") + read("more_normal"):
        whole = score_log(pred, log).score > pred.threshold_
        entry = {"alerts_first_frames": int(whole[:first_frames].sum()),
                 "alerts_after": int(whole[first_frames:].sum()),
                 "ego_speed_first_5_frames": float(np.mean(log.ego_speed[:5])),
                 "ego_speed_median_after": float(np.median(log.ego_speed[first_frames:]))}
        for start in restarts:
            alone = score_log(pred, slice_log(log, start)).score > pred.threshold_
            entry[f"scored_from_frame_{start}_alerts"] = int(alone.sum())
            entry[f"whole_log_alerts_from_frame_{start}"] = int(whole[start:].sum())
        out.append(entry)
        print(" ", entry, flush=True)
    result = {"first_frames": first_frames, "threshold": pred.threshold_, "new_normal_logs": out,
              "largest_score_first_frames_and_after": {}}
    for name, harness in (("heldout_native", NativeHarness()),
                          ("tuned_network_tuned", PathHarness(WORLD, CAL_FRAMES, "tuned"))):
        fit, _ = calibrated(harness, list(harness.train))
        result["largest_score_first_frames_and_after"][name] = [
            [float(v["score"][:first_frames].max()), float(v["score"][first_frames:].max())]
            for v in fit.normals]
        print(" ", name, result["largest_score_first_frames_and_after"][name], flush=True)
    merge_results(OUT, {"start_check": result}, default=float)
    return result


def vehicles_left_of_ego(harness, blocks=(0, 25, 50, 100, 150, 200, 250)) -> dict:
    """Mean vehicle cells (simulator truth) more than 4 m left of the ego -- the oncoming
    carriageway and any of its own lanes to its left -- per stretch of frames, over the
    harness's training and normal logs."""
    _, right = cell_offsets(harness.pred.meta_)
    left = right < -4.0
    counts = np.array([((log.semantic_true == VEHICLE) & left[None]).sum((1, 2))
                       for log, _ in harness.train + harness.normals])
    return {f"frames {a}-{b}": float(counts[:, a:b].mean()) for a, b in zip(blocks[:-1], blocks[1:])}


def analyse() -> dict:
    results = {"world": WORLD, "calibration_frames_per_log": CAL_FRAMES, "configurations": {},
               "vehicle_cells_left_of_ego": {}}
    native = NativeHarness()
    print("held-out configuration, own training", flush=True)
    results["vehicle_cells_left_of_ego"]["heldout_configuration"] = vehicles_left_of_ego(native)
    results["configurations"]["heldout_native"] = configuration(native, events=True)
    print("  16 calibration logs", flush=True)
    more = diagnose(native, native.train + native.more_train)
    results["configurations"]["heldout_native_16_logs"] = more
    print(f"  threshold {more['threshold']:.2f}, alerts {more['new_normal_pooled']['alert_rate']:.3f}", flush=True)
    other = diagnose(native, native.more_train[:6])
    results["configurations"]["heldout_native_6_other_logs"] = other
    print(f"  6 other logs: threshold {other['threshold']:.2f}, alerts "
          f"{other['new_normal_pooled']['alert_rate']:.3f}", flush=True)
    print("product path", flush=True)
    results["product_path"] = product_path()
    for name in ("tuned", "heldout"):
        print(f"tuned network, {name} configuration", flush=True)
        harness = PathHarness(WORLD, CAL_FRAMES, name)
        if name == "tuned":
            results["vehicle_cells_left_of_ego"]["tuned_configuration"] = vehicles_left_of_ego(harness)
        results["configurations"][f"tuned_network_{name}"] = configuration(harness)
    merge_results(OUT, results, default=float)      # after_fix's entry stays
    return results


if __name__ == "__main__":
    configure_threads()
    {"cache": cache, "analyse": analyse, "start_check": start_check}[sys.argv[1]]()
