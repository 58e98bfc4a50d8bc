"""Why fresh normal highway logs exceed the tail-calibrated alert threshold, and which
threshold holds the nominal rate (5 %) on new normal drives of either world.

Networks: the committed benchmark's (``MODELS``), memory gate refitted on the training
logs' calibration tails as ``calibrate`` does; maps cached once (``cache``) for the 6
training logs (whole), 8 fresh normal logs of the tuned configuration (the benchmark's 2,
seed 502; the cache's 2, seed 503; 4 new, seed 504) and 10 event logs (the benchmark's 4,
seed 2; 6 more, seed 3). The town's maps are the round-13 cache's (``/tmp/drv19/cache/town``,
same network, linked), plus seed 504.

**Diagnosis** (``diagnose``, tuned configurations only; ``diagnosis`` in the JSON): per channel,
tail scores on the calibration tails (cross-fitted), on the fresh normal logs and on the
training logs' first 80 % (the frames the network trained on), and the alert rate per
50-frame block along a log.

**Decision rule, written down before any candidate was measured** (``decide``): adopt the
candidate whose alert rate on the 8 fresh **tuned** normal logs is within [2.5 %, 10 %] in
BOTH worlds, with frame AUROC on the 10 tuned event logs not lower than the committed
threshold's by more than 0.01 in either world and no event kind's AUROC lower by more than
0.05; among those, the one whose worse world is closest to 5 % (smallest max |rate - 5 %|).
Events alerted are reported, not a criterion: raising a threshold to its nominal rate
alerts fewer events by construction. If none passes, the committed threshold stays. The
held-out configuration (``bench.driving.HELDOUT``) and the own-training networks are scored
AFTER the decision (``heldout``), never used for it.

Candidates (the scoring state fitted on the 6 calibration tails as committed unless said;
every threshold at the predictor's contamination, 5 %):

* ``tails`` (committed): 95 % quantile of the tails' cross-fitted scores (300 frames);
* ``tails_bootstrap_upper``: the 90th percentile, over 200 resamples of the 6 logs (with
  replacement, seeded), of the resample's pooled 95 % quantile of the tails' scores;
* ``whole_logs``: 95 % quantile of the whole training logs' scores (1500 frames), each log
  scored by the state fitted on the other logs' tails (the network saw its first 80 %);
* ``whole_logs_loo_level``: as ``whole_logs``, the quantile level chosen so that, with one
  log left out at a time, the left-out logs' mean alert rate at the other logs' quantile is
  at most 5 % (``core.calibration.threshold_from_groups``; the JSON's ``level`` entries were
  written by this file's first version, which searched the same levels itself);
* ``whole_logs_state``: the scoring state (normaliser, context prior, channel tails) fitted
  on the whole training logs too, threshold as ``whole_logs``.

Added after those five failed the rule on the highway, under the same rule, before any
held-out number was read: ``whole_logs_state`` with each log-robust threshold
(``second_candidates``), and (b) calibration frames from one 50-frame block at a seeded
place of each log instead of its tail (networks retrained so by bench.driving with the
product code of commit e022210, reverted after; that commit holds the ``blocks`` and
``cache_blocks`` steps that measured it, ``tuned_candidates_blocks`` in the JSON). Also
(``other_network``, ``memorisation``): a second tuned highway network trained on 6 other
normal logs, to which the first network's training logs are new drives.

**Decision** (``decide``; ``decision`` in the JSON): only ``whole_logs_state_loo_level``
passes (highway 8.8 %, town 7.3 %; frame AUROC +0.008 / +0.004): adopted. The held-out
and own-training columns were measured afterwards, by the benchmark rerun with the adopted
calibration (bench/results/driving_{town,highway}.json; the committed tail calibration's
columns are the previous results files).

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_alert_calibration cache town tuned   # ~2 min
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_alert_calibration cache highway tuned
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_alert_calibration diagnose town      # ~2 min each
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_alert_calibration diagnose highway
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_alert_calibration candidates town
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_alert_calibration candidates highway
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_alert_calibration second_candidates town
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_alert_calibration second_candidates highway
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_alert_calibration other_network highway   # ~10 min
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_alert_calibration memorisation highway
    python -m bench.experiments.driving_alert_calibration decide

Its product arm is pinned to ``driving_five_channels.FIVE_CHANNELS`` (with its tail floors and
observed channels), the product's channels when its results were made, not to the default
``frame_score.CHANNELS``, which has since gained ``pedestrian_conflict``.
"""
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.driving import HELDOUT, MODEL, NATIVE_TRAIN_SEED_OFFSET, TUNED
from bench.driving_logs import kept_logs
from bench.experiments import merge_results
from bench.experiments.driving_calibration_cache import cache_maps, cache_sets
from bench.experiments.driving_path_channel import CAL_FRAMES, CHANNELS, Alerts, CrossFit, PathHarness
from bench.experiments.driving_five_channels import FIVE_CHANNELS
from core.calibration import threshold_from_contamination, threshold_from_groups
from core.runtime import configure_threads
from driving.model.predictor import OcclusionPredictor

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path("/tmp/drvcal/cache")
# the networks the committed benchmark runs reused (bench/README.md, Driving)
MODELS = {"town": Path("/tmp/drv19/models"), "highway": Path("/tmp/r14hw/models")}
# 4 more normal logs of the tuned configuration (seed * 1000 + i: distinct from bench.driving's
# 1, 2, 502, 70, 570, 71 and the cache's 3, 503)
MORE_NORMAL_SEED = 504


def tuned_sets(world: str) -> dict:
    """Set name -> (logs, seed, configuration) of the tuned configuration, most needed first."""
    cfg = TUNED[world]
    normal = replace(cfg, anomaly_interval_s=0.0)
    return {"train": (6, 1, normal), "tuned_normal": (2, 502, normal), "extra_normal": (2, 503, normal),
            "more_normal": (4, MORE_NORMAL_SEED, normal), "tuned": (4, 2, cfg), "extra": (6, 3, cfg)}


def heldout_sets(world: str) -> dict:
    """The frozen held-out configuration's sets (bench.driving.HELDOUT): its 4 test logs, 2
    normal logs and the 6 training logs of the own-training column."""
    held = HELDOUT[world]
    normal = replace(held["config"], anomaly_interval_s=0.0)
    return {"heldout": (4, held["seed"], held["config"]),
            "heldout_normal": (2, held["seed"] + 500, normal),
            "native_train": (6, held["seed"] + NATIVE_TRAIN_SEED_OFFSET, normal)}


def simulated(root: Path, name: str, n: int, seed: int, config) -> list:
    """The ``n`` logs (250 frames) of set ``name`` under ``root/logs``: ``kept_logs``'s, so
    simulated unless that folder's marker says it holds them (a folder simulated without a
    marker is simulated again, to the same logs: the seeds fix them)."""
    return kept_logs(root / "logs" / name, n, 250, seed, config)


def cache(world: str, which: str) -> None:
    """Simulate ``which`` sets ("tuned" or "heldout") and cache the prior-free maps of the
    world's tuned network (memory gate refitted on the training tails, as calibrate does); for
    "heldout" also the own-training network's maps of the held-out logs."""
    configure_threads()
    root = CACHE / world
    pred = OcclusionPredictor.load(MODELS[world] / world)
    train = {"train": (6, 1, replace(TUNED[world], anomaly_interval_s=0.0))}
    if which == "tuned":
        cache_sets(pred, root, train | tuned_sets(world))
        return
    sets = heldout_sets(world)
    native_train = sets.pop("native_train")
    cache_sets(pred, root, train | sets)
    logs = {name: simulated(root, name, n, seed, config)
            for name, (n, seed, config) in {**sets, "native_train": native_train}.items()}
    native = OcclusionPredictor.load(MODELS[world] / f"{world}_heldout_native")
    native.fit_memory_gate(native.calibration_logs(logs["native_train"]))
    for name in ("native_train", "heldout", "heldout_normal"):
        cache_maps(native, root, f"native_{name}" if name != "native_train" else name, logs[name])


OUT = ROOT / "bench" / "results" / "driving_alert_calibration.json"


class Harness(PathHarness):
    """The experiments' harness over this experiment's cache: a world's tuned network, its 6
    training logs (whole, maps of every frame), and the sets named in ``events`` / ``normals``."""

    def __init__(self, world: str, events=("tuned", "extra"), normals=("tuned_normal", "extra_normal", "more_normal")):
        self.read(world, CACHE / world, OcclusionPredictor.load(MODELS[world] / world), CAL_FRAMES, events, normals)


def channel_table(views: list, threshold: float) -> dict:
    """Pooled over ``views``: the frame score's alert rate and quantiles, and per channel its
    tail score's 95 / 99 % quantiles, max, and the share of frames it holds over ``threshold``."""
    score = np.concatenate([v["score"] for v in views])
    tails = np.concatenate([v["tails"] for v in views])
    out = {"frames": int(len(score)), "alert_rate": float(np.mean(score > threshold)),
           "score_q50_q95_q99_max": [float(np.quantile(score, q)) for q in (0.5, 0.95, 0.99)] + [float(score.max())],
           "per_log_alert_rate": [round(float(np.mean(v["score"] > threshold)), 3) for v in views],
           "per_log_q95": [round(float(np.quantile(v["score"], 0.95)), 2) for v in views]}
    for i, c in enumerate(CHANNELS):
        t = tails[:, i]
        out[c] = {"q95": float(np.quantile(t, 0.95)), "q99": float(np.quantile(t, 0.99)), "max": float(t.max()),
                  "share_over_threshold": float(np.mean(t > threshold))}
    return out


def diagnose(world: str) -> dict:
    """Tail scores per channel on (i) the calibration tails (each from the state fitted without
    its log: cross-fitted), (ii) the fresh normal logs (state on all six tails), (iii) the
    training logs' first 80 % (the frames the network trained on; each log from the state
    fitted without it), and (iii') whole training logs per 50-frame block."""
    h = Harness(world, events=())
    states, full, tails = h.fitted_states(FIVE_CHANNELS)
    held = [h.view(state, t) for state, t in zip(states, tails)]
    threshold = threshold_from_contamination(np.concatenate([v["score"] for v in held]), h.pred.contamination)
    whole = [h.view(state, it) for state, it in zip(states, h.train)]
    cut = len(h.train[0][0]) - CAL_FRAMES
    head = [{k: v[k][:cut] for k in v} for v in whole]
    fresh = [h.view(full, it) for it in h.normals]
    blocks = lambda views: [round(float(np.mean(np.concatenate([v["score"][a:a + 50] for v in views]) > threshold)), 3)
                            for a in range(0, 250, 50)]
    out = {"world": world, "threshold": threshold,
           "calibration_tails_cross_fitted": channel_table(held, threshold),
           "fresh_normal_logs": channel_table(fresh, threshold),
           "training_logs_first_80_percent": channel_table(head, threshold),
           "alert_rate_per_50_frames": {"training_logs_whole_cross_fitted": blocks(whole),
                                        "fresh_normal_logs": blocks(fresh)},
           "tail_of_whole_log_vs_tail_alone": [round(float(np.abs(w["score"][cut:] - t["score"]).max()), 3)
                                               for w, t in zip(whole, held)]}
    return out


# a second tuned network, same recipe, trained on 6 other normal logs: to whom the first
# network's training logs are new drives (does the first network score its own training
# frames lower than new drives?)
OTHER_TRAIN_SEED = 505


def other_network(world: str) -> None:
    """Train the second network (bench.driving's recipe: MODEL, 8 epochs, random_state 0) on
    6 normal logs of seed :data:`OTHER_TRAIN_SEED` and cache its maps of its own training
    logs (``other_train``), of the first network's training logs (``other_on_train``) and of
    the fresh normal logs (``other_on_<set>``)."""
    configure_threads()
    root = CACHE / world
    normal = replace(TUNED[world], anomaly_interval_s=0.0)
    own = simulated(root, "other_train", 6, OTHER_TRAIN_SEED, normal)
    path = CACHE.parent / "models" / f"{world}_other"
    if (path / "config.json").exists():
        pred = OcclusionPredictor.load(path)
        pred.fit_memory_gate(pred.calibration_logs(own))
    else:
        t0 = time.time()
        pred = OcclusionPredictor(progress=False, epochs=8, random_state=0, **MODEL).fit(own)
        pred.save(path)
        print(f"trained in {time.time() - t0:.0f}s", flush=True)
    cache_maps(pred, root, "other_train", own)
    for name in ("train", "tuned_normal", "extra_normal", "more_normal"):
        n, seed, config = tuned_sets(world)[name]
        cache_maps(pred, root, f"other_on_{name}", simulated(root, name, n, seed, config))


def memorisation(world: str) -> dict:
    """Does a network score the frames it trained on lower than new drives? The second network
    (:func:`other_network`), its state and threshold from its own training tails (cross-fitted),
    on: its own training logs' first 80 % (trained on), the first network's training logs'
    first 80 % (new to it) and the 8 fresh normal logs; beside the first network's diagnosis."""
    h = Harness(world, events=(), normals=())
    h.pred = OcclusionPredictor.load(CACHE.parent / "models" / f"{world}_other")
    own = h.load("other_train")
    states, full, tails = h.fitted_states(FIVE_CHANNELS, own)
    held = [h.view(st, t) for st, t in zip(states, tails)]
    threshold = threshold_from_contamination(np.concatenate([v["score"] for v in held]), h.pred.contamination)
    cut = len(own[0][0]) - CAL_FRAMES
    head = lambda v: {k: x[:cut] for k, x in v.items()}
    other_on = lambda name: h.load(name, maps_prefix=f"other_on_{name}")    # the second network's maps
    fresh = [h.view(full, it) for name in ("tuned_normal", "extra_normal", "more_normal") for it in other_on(name)]
    first_train = [head(h.view(full, it)) for it in other_on("train")]
    return {"threshold": threshold,
            "calibration_tails_cross_fitted": channel_table(held, threshold),
            "own_training_logs_first_80_percent": channel_table([head(h.view(st, it)) for st, it in zip(states, own)], threshold),
            "first_networks_training_logs_first_80_percent": channel_table(first_train, threshold),
            "fresh_normal_logs": channel_table(fresh, threshold)}


BOOTSTRAPS = 200


def bootstrap_upper(per_log: list, contamination: float, seed: int = 0) -> float:
    """90th percentile over log resamples (with replacement) of the pooled quantile."""
    rng = np.random.default_rng(seed)
    draws = [threshold_from_contamination(np.concatenate([per_log[i] for i in rng.integers(0, len(per_log), len(per_log))]),
                                          contamination) for _ in range(BOOTSTRAPS)]
    return float(np.quantile(draws, 0.9))


def test_scores(h: Harness, state) -> tuple[list, list]:
    """Frame scores of the event logs and of the fresh normal logs (one array per log) under ``state``."""
    return [h.view(state, it)["score"] for it in h.events], [h.view(state, it)["score"] for it in h.normals]


def whole_log_fit(h: Harness) -> CrossFit:
    """Frame scores of each whole training log from the state fitted on the other whole logs,
    and of the event and fresh normal logs from the state fitted on all of them."""
    return h.cross_fit(FIVE_CHANNELS, lambda state, item: h.view(state, item)["score"], items=h.train)


def evaluate(h: Harness, scores: tuple[list, list], threshold: float) -> dict:
    """Frame AUROC, by kind, events alerted over the event logs and the alert rate (pooled and
    per log) on the fresh normal logs (``scores``: :func:`test_scores`), at ``threshold``."""
    events, normals = scores
    alerts = Alerts(events, np.concatenate(normals), threshold)
    out = {"threshold": float(threshold), **h.metrics(alerts)}
    out["alert_rate_per_normal_log"] = [round(float(np.mean(s > threshold)), 3) for s in normals]
    return out


def candidates(world: str) -> dict:
    """Every candidate's threshold and its metrics on the tuned logs (see the module docstring)."""
    h = Harness(world)
    c = h.pred.contamination
    states, full, tails = h.fitted_states(FIVE_CHANNELS)
    held = [h.view(st, t)["score"] for st, t in zip(states, tails)]
    whole = [h.view(st, it)["score"] for st, it in zip(states, h.train)]
    thresholds = {"tails": threshold_from_contamination(np.concatenate(held), c),
                  "tails_bootstrap_upper": bootstrap_upper(held, c),
                  "whole_logs": threshold_from_contamination(np.concatenate(whole), c),
                  "whole_logs_loo_level": threshold_from_groups(whole, c)}
    out, scores = {}, test_scores(h, full)
    for name, threshold in thresholds.items():
        out[name] = evaluate(h, scores, threshold)
        print(world, name, json.dumps(out[name]), flush=True)
    whole_fit = whole_log_fit(h)
    out["whole_logs_state"] = evaluate(h, (whole_fit.events, whole_fit.normals),
                                       threshold_from_contamination(np.concatenate(whole_fit.held_out), c))
    print(world, "whole_logs_state", json.dumps(out["whole_logs_state"]), flush=True)
    return out


def second_candidates(world: str) -> dict:
    """Added after the first five failed the rule on the highway (same rule): the whole-log
    state (``whole_logs_state``, the best of them) with the two log-robust thresholds."""
    h = Harness(world)
    c = h.pred.contamination
    whole = whole_log_fit(h)
    per_log, scores = whole.held_out, (whole.events, whole.normals)
    out = {"whole_logs_state_loo_level": evaluate(h, scores, threshold_from_groups(per_log, c)),
           "whole_logs_state_bootstrap_upper": evaluate(h, scores, bootstrap_upper(per_log, c))}
    for name, r in out.items():
        print(world, name, json.dumps(r), flush=True)
    return out


def decide(results: dict) -> dict:
    """The decision rule of the module docstring over the tuned worlds' candidates."""
    worlds = sorted(results)
    base = {w: results[w]["tails"] for w in worlds}
    kinds = lambda r: {k: v for k, v in r.items() if k not in NOT_KINDS and isinstance(v, float)}
    verdicts = {}
    for name in results[worlds[0]]:
        why = []
        for w in worlds:
            r = results[w][name]
            rate = r["alert_rate_normal_logs"]
            if not 0.025 <= rate <= 0.10:
                why.append(f"{w}: normal-log alerts {rate:.3f} outside [0.025, 0.10]")
            if r["auroc"] < base[w]["auroc"] - 0.01:
                why.append(f"{w}: frame AUROC {r['auroc']:.3f} < committed {base[w]['auroc']:.3f} - 0.01")
            for k, v in kinds(r).items():
                if v < kinds(base[w])[k] - 0.05:
                    why.append(f"{w}: {k} AUROC {v:.3f} < committed - 0.05")
        worst = max(abs(results[w][name]["alert_rate_normal_logs"] - 0.05) for w in worlds)
        verdicts[name] = {"passes": not why, "why_not": why, "worse_world_distance_from_5_percent": worst}
    passing = [n for n, v in verdicts.items() if v["passes"]]
    winner = min(passing, key=lambda n: verdicts[n]["worse_world_distance_from_5_percent"]) if passing else None
    return {"verdicts": verdicts, "adopted": winner}


NOT_KINDS = {"auroc", "auroc_benchmark_logs", "auroc_new_logs", "alert_rate_normal_logs", "threshold", "level"}


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
    elif sys.argv[1] == "cache":
        cache(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "diagnose":
        configure_threads()
        result = diagnose(sys.argv[2])
        print(json.dumps(result, indent=1))
        merge_results(OUT, {sys.argv[2]: result}, under=("diagnosis",))
    elif sys.argv[1] == "other_network":
        other_network(sys.argv[2])
    elif sys.argv[1] == "candidates":
        configure_threads()
        result = candidates(sys.argv[2])
        merge_results(OUT, {sys.argv[2]: result}, under=("tuned_candidates",))
    elif sys.argv[1] == "second_candidates":
        configure_threads()
        merge_results(OUT, second_candidates(sys.argv[2]), under=("tuned_candidates_second", sys.argv[2]))
    elif sys.argv[1] == "memorisation":
        configure_threads()
        merge_results(OUT, {sys.argv[2]: memorisation(sys.argv[2])}, under=("memorisation",))
    elif sys.argv[1] == "decide":
        kept = json.loads(OUT.read_text())
        sections = ("tuned_candidates", "tuned_candidates_second", "tuned_candidates_blocks")
        merged = {w: {n: r for sec in sections for n, r in kept.get(sec, {}).get(w, {}).items()}
                  for w in kept["tuned_candidates"]}
        decision = decide(merged)
        print(json.dumps(decision, indent=1))
        merge_results(OUT, {"decision": decision})
