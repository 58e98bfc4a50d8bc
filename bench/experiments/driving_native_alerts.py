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
  held-out configuration (the benchmark's shifted ``heldout`` column).

New logs of the held-out configuration: the benchmark's 2 normal logs (seed 570) and 4 more
(seed :data:`MORE_NORMAL_SEED`); seeds distinct from every seed bench.driving and
driving_calibration_cache use. Nothing here is tuned: a measurement.

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_native_alerts cache     # ~15-25 min
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_native_alerts analyse   # ~10 min

The tuned highway's cached maps come from ``driving_calibration_cache highway``.
"""
import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.driving import HELDOUT, MODEL, NATIVE_TRAIN_SEED_OFFSET, _heldout_native, normal_alert_rate
from bench.experiments.driving_path_channel import CACHE, PathHarness, frames
from core.calibration import threshold_from_contamination
from core.io import write_text_atomic
from core.runtime import configure_threads
from driving.model.predictor import OcclusionPredictor
from driving.schema import read_log
from driving.scoring import frame_score as fs
from driving.scoring.state import new_prior
from driving.scoring.surprise import raw_maps, score_log
from driving.sim.simulator import simulate_logs

WORLD = "highway"
NATIVE = f"{WORLD}_heldout_native"
MODELS = Path("/tmp/drv19/models")
ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "results" / "driving_native_alerts.json"
# seeds * 1000 + i: distinct from bench.driving's (1, 2, 502, 70, 570, 71) and the cache's (3, 503)
MORE_CALIBRATION_SEED = 72
MORE_NORMAL_SEED = 572
CAL_FRAMES = 50                  # the predictor's calibration tail: 20 % of 250 frames
CHANNELS = [name for name, _, _ in fs.CHANNELS]


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
    root = CACHE / NATIVE
    root.mkdir(parents=True, exist_ok=True)
    pred = OcclusionPredictor.load(MODELS / NATIVE)
    sets = native_sets()
    for name, (n, seed, config) in sets.items():
        logs = [read_log(p) for p in simulate_logs(root / "logs" / name, n, 250, seed=seed, config=config)]
        if name == "train" and pred.memory_gate:   # as OcclusionPredictor.calibrate: on the tails
            pred.fit_memory_gate(pred.calibration_logs(logs))
        for log in logs:
            out = root / f"{name}_{log.log_id}.npz"
            if out.exists():
                continue
            t0 = time.time()
            m = raw_maps(pred, log, context_prior=new_prior(pred))
            np.savez(out, revealed=m["revealed"], object_recon=m["object_recon"],
                     object_forecast=m["object_forecast"],
                     ground=np.concatenate([g for g, _, _ in m["context_inputs"]]),
                     category=np.concatenate([c for _, c, _ in m["context_inputs"]]))
            print(name, log.log_id, f"{time.time() - t0:.0f}s", flush=True)


class NativeHarness(PathHarness):
    """The experiments' harness over the held-out configuration's own network and logs
    (cached by :func:`cache`): event logs, if cached, are the benchmark's held-out ones."""

    def __init__(self):
        self.world, self.root = WORLD, CACHE / NATIVE
        self.pred = OcclusionPredictor.load(MODELS / NATIVE)
        self.smooth = frames(self.pred.smooth_s, self.pred.meta_.rate_hz)
        self.train = self.load("train")
        self.more_train = self.load("more_train")
        self.tails = [self.tail(it, CAL_FRAMES) for it in self.train]
        self.events = self.load("heldout") if (self.root / "heldout_log_003.npz").exists() else []
        self.benchmark_logs = len(self.events)
        self.normals = self.load("heldout_normal") + self.load("more_normal")


def channel_view(scorer, result) -> dict:
    """A scoring result's smoothed frame score, per-channel tail scores ``(T, 5)`` and where
    they lie beyond the largest normal value of ``scorer``'s tails (extrapolated)."""
    tails = scorer.tail_scores(result.score_maps)
    largest = np.array([tail.tails_[-1] for tail in scorer.tails_])
    return {"score": result.score, "tails": tails, "beyond": tails > largest + 1e-9}


def frame_view(harness, state, item) -> dict:
    """:func:`channel_view` of a cached log scored by ``state``."""
    return channel_view(state.frame_scorer, harness.result(state, item))


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
    edges = np.diff(np.concatenate([[0], alerted.astype(np.int8), [0]]))
    return (np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).tolist()


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
    if first_tail_frame is not None:
        out["alert_rate_before_tail_window"] = float(alerted[:first_tail_frame].mean())
        out["alert_rate_in_tail_window"] = float(alerted[first_tail_frame:].mean())
    return out


def calibrated(harness, train_items: list, events: bool = False):
    """Cross-fitted calibration on ``train_items``' tails (as the predictor's): the
    per-log views (calibration tails from the state without them; normal and, with
    ``events``, event logs from the state on all) and the threshold."""
    harness.train = train_items
    harness.tails = [harness.tail(it, CAL_FRAMES) for it in train_items]
    kept, harness.events = harness.events, (harness.events if events else [])
    fit = harness.cross_fit(fs.CHANNELS, per_log=lambda state, item: frame_view(harness, state, item))
    harness.events = kept
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


def tail_facts(harness, train_items: list) -> dict:
    """Per channel, the state fitted on all ``train_items``: its largest normal value, that
    value's tail score and the slope (1 / scale) the tail is continued with beyond it."""
    tails = [harness.tail(it, CAL_FRAMES) for it in train_items]
    observed = [fs.observed_statistics(log) for log, _ in train_items]
    state = harness.fit_state(tails, fs.CHANNELS, observed)
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
    out["tails"] = tail_facts(harness, train_items)
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
    harness.train = train
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


def after_fix(model_dir: str = "/tmp/drv19/models_oncoming_fix") -> dict:
    """The benchmark's ``heldout_native`` column on the simulator with oncoming traffic all
    along the drive: the same recipe, seeds and logs (``bench.driving._heldout_native``; the
    network trained anew, kept in ``model_dir``), and the alert rate on the 4 more normal logs."""
    args = argparse.Namespace(train_logs=6, frames=250, seed=0, model_dir=model_dir)
    work = Path(tempfile.mkdtemp(prefix="unmask-native-alerts-"))
    held = HELDOUT[WORLD]
    normal = replace(held["config"], anomaly_interval_s=0.0)
    simulate = lambda name, n, seed, config: [read_log(p) for p in simulate_logs(work / name, n, 250, seed=seed,
                                                                                 config=config)]
    events = simulate("heldout", 4, held["seed"], held["config"])
    normals = simulate("heldout_normal", 2, held["seed"] + 500, normal)
    params = {"epochs": 8, "max_steps_per_epoch": None, "random_state": 0, **MODEL}
    out = _heldout_native(WORLD, args, work, params, events, normals)
    pred = OcclusionPredictor.load(Path(model_dir) / NATIVE)
    pred.calibrate(simulate("heldout_native_train", 6, held["seed"] + NATIVE_TRAIN_SEED_OFFSET, normal))
    out["more_normal_logs"] = normal_alert_rate(pred, simulate("more_normal", 4, MORE_NORMAL_SEED, normal))
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results["after_oncoming_fix"] = {k: out[k] for k in ("targets", "normal_logs", "more_normal_logs",
                                                          "frames", "train_seconds", "contamination")}
    write_text_atomic(OUT, json.dumps(results, indent=1, default=float) + "\n")
    print(json.dumps(results["after_oncoming_fix"]["targets"], default=float), out["more_normal_logs"], flush=True)
    return out


def analyse() -> dict:
    results = {"world": WORLD, "calibration_frames_per_log": CAL_FRAMES, "configurations": {}}
    native = NativeHarness()
    print("held-out configuration, own training", flush=True)
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
        results["configurations"][f"tuned_network_{name}"] = configuration(PathHarness(WORLD, CAL_FRAMES, name))
    kept = json.loads(OUT.read_text()) if OUT.exists() else {}      # after_fix's entry stays
    write_text_atomic(OUT, json.dumps({**kept, **results}, indent=1, default=float) + "\n")
    return results


if __name__ == "__main__":
    configure_threads()
    {"cache": cache, "analyse": analyse, "after_fix": after_fix}[sys.argv[1]]()
