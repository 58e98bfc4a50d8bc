"""Driving benchmark, in both simulated worlds (town and highway): unmask's occlusion
predictor vs last-seen persistence (resampled into every frame; kept in a world-fixed map;
with the positional prior for never-seen cells) and the positional class prior, on the same
logs in the same run.

Per world, the model is trained as the README's example trains it (``unmask driving
train``'s defaults: 8 epochs over 6 normal logs of 250 frames) on normal logs of that
world, and tested on logs with injected events of two configurations: the **tuned** one
(the world's defaults, which the method was developed on) and the **held-out** one
(:data:`HELDOUT`: other seeds, traffic and geometry, frozen before any tuning and never
tuned on), scored with the same model and calibration. That held-out column is a
distribution-shift test; a third, **heldout_native**, follows the issue's protocol on a
configuration the method was never developed on: the same recipe trained on the held-out
configuration's own normal logs, scored on the same held-out test and normal logs.

Measures, on occluded cells (inside the sensor range, hidden; truth from the simulator):
per-class PR-AUC (with and without the memory gate, and without its vehicle extrapolation),
road-layout IoU; frame anomaly
AUROC/AP against the injected events, per kind, detection latency and the alert rate on
normal frames (calibrated alerts, nominal 5 %); inference frames/s at 128x128 with the
ratio to persistence timed in the same run, the vehicle extrapolation's cost per frame,
the full scoring's frames/s (``score_log``, both worlds; ``bench.driving_speed``'s set-up)
and the 1-minute load average.

How many test logs, and how the town's targets are judged (fixed before any 12-log number
existed): the town benchmark scores **12 event logs per test column** (``--test-logs 12``; was
4; log ``i`` of a set is seed ``seed * 1000 + i``, so the first 4 are the earlier runs' logs).
The frame AUROC target (>= 0.85) and the occluded-cell targets are judged on the 12-log point
estimates. Each column also reports a 95 % bootstrap interval of its frame AUROC and AP over
logs (the event logs resampled with replacement, 2,000 draws, seeded) and the first 4 logs'
numbers beside, for continuity. The result is reported whatever it is.

The highway, round 22's addendum (fixed before any highway number of that round existed): the
highway is judged on **12 event logs per test column** under the same rule (same targets, same
interval, the first 4 logs' numbers beside). Its networks were not kept, so they are retrained
with the committed recipe (round 16's settings, ``bench/results/driving_highway.json``'s
``settings`` as of commit af16d2e: 6 training logs of 250 frames, 8 epochs, seed 0, 1 thread),
and the first 4 logs' numbers are compared with that committed file. Retraining at 1 thread
reproduced the town's networks to the digit in round 19; if the highway's does not, both are
reported and the 12-log run is the result.

Usage:
    UNMASK_NUM_THREADS=1 nice -n 10 .venv/bin/python -m bench.driving      # the committed run
    UNMASK_NUM_THREADS=1 .venv/bin/python -m bench.driving --quick         # smoke run
    ... --model-dir DIR   # keep the trained weights per world (DIR/<world>, and
                          # DIR/<world>_heldout_native); a rerun reuses them (recalibrates)
    ... --log-dir DIR     # keep the simulated logs (DIR/<world>/<set>); a rerun reads them back
    ... --speed-only      # frames/s: inference, full scoring (score_log), persistence
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.cpu_load import cpu_load, describe
from bench.driving_logs import kept_logs
from bench.driving_speed import scoring_predictor, scoring_seconds, timed_log
from bench.log_bootstrap import frame_intervals
from core.io import write_text_atomic
from core.runtime import configure_threads
from driving.evaluate import HiddenCellAccumulator, frame_metrics
from driving.model.baselines import (PersistenceBaseline, PositionalPrior, WorldCells,
                                     apply_layout_memory, persistence_memory, world_cells,
                                     world_memory, world_shape)
from driving.model.memory_gate import N_AGE_BINS, MemoryGate, VehicleTracks, memory_trace
from driving.model.network import OcclusionNet, OcclusionNetConfig
from driving.model.predictor import OcclusionPredictor, stack_frames
from driving.schema import VEHICLE
from driving.scoring.decision import RoadBelief, decide, road_mass
from driving.scoring.surprise import score_log
from driving.sim.highway import HighwayConfig, HighwaySimulator
from driving.sim.simulator import SimConfig
from driving.sim.world import WorldConfig
from driving.warp import sensor_range_mask

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

# Frozen before any tuning, and never tuned on: per world, a held-out configuration (other
# seeds, other traffic and geometry) that the benchmark reports beside the tuned one.
HELDOUT = {
    "town": {"seed": 70, "config": SimConfig(n_vehicles=60, n_pedestrians=30,
                                             world=WorldConfig(spacing_m=100.0, curve_fraction=0.6))},
    "highway": {"seed": 70, "config": HighwayConfig(lanes=4, lane_width_m=3.5,
                                                    vehicles_per_km_lane=22.0,
                                                    speed_mps=(22.0, 35.0))},
}
TUNED = {"town": SimConfig(), "highway": HighwayConfig()}
METHODS = ("unmask", "unmask_no_extrapolation", "network_only", "persistence", "persistence_prior",
           "persistence_world_map", "positional_prior")
# the held-out-native column's training logs: the held-out configuration's seed + 1 (simulated
# as seed * 1000 + i, so no log is shared with any test or training set of this benchmark)
NATIVE_TRAIN_SEED_OFFSET = 1
# the earlier runs' number of event logs per test column: their frame metrics are reported beside
FIRST_LOGS = 4
# the occlusion predictor's input (what --speed-only times): the defaults of `unmask driving train`
MODEL = {"history": (2, 5, 10, 20), "memory": True, "layout_fallback": True, "memory_gate": True}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.driving",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default="town,highway")
    parser.add_argument("--train-logs", type=int, default=6)
    parser.add_argument("--test-logs", type=int, default=6)
    parser.add_argument("--normal-logs", type=int, default=2,
                        help="held-out normal logs (no events) per test configuration: the "
                             "alert rate on normal frames")
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=8, help="as `unmask driving train`")
    parser.add_argument("--steps", type=int, default=None, help="steps per epoch (None: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke run")
    parser.add_argument("--model-dir", default=None,
                        help="keep each world's trained networks in DIR/<world> and "
                             "DIR/<world>_heldout_native; a bundle already there (same "
                             "settings) is reused and only recalibrated")
    parser.add_argument("--log-dir", default=None,
                        help="keep the simulated logs in DIR/<world>/<set>; a rerun reads "
                             "back a set simulated with the same seed, frames and configuration")
    parser.add_argument("--out", default=None,
                        help="results file (default bench/results/driving.json; the committed runs: "
                             "driving_town.json, driving_highway.json; with --speed-only: "
                             "driving_speed.json)")
    parser.add_argument("--speed-only", action="store_true",
                        help="only time inference and full scoring (untrained weights, same "
                             "network) vs persistence")
    parser.add_argument("--spinners", type=int, default=0,
                        help="with --speed-only: busy-loop processes beside the timing (a busy "
                             "machine; without UNMASK_NUM_THREADS the threads are chosen with them running)")
    args = parser.parse_args(argv)
    if args.speed_only:
        threads = f"UNMASK_NUM_THREADS={os.environ['UNMASK_NUM_THREADS']} " \
            if "UNMASK_NUM_THREADS" in os.environ else ""
        with cpu_load(args.spinners, sample_every_s=5.0) as sampler:
            speed = speed_only()
            load = sampler.mean_load_1min()
        speed = {**speed, "spinners": describe(args.spinners), "mean_load_1min": load,
                 "command": f"{threads}python -m bench.driving " + " ".join(argv or sys.argv[1:])}
        write_text_atomic(args.out or RESULTS / "driving_speed.json", json.dumps(speed, indent=1))
        return speed
    if args.quick:
        args.train_logs, args.test_logs, args.frames, args.epochs, args.steps = 2, 1, 80, 1, 5
        args.normal_logs = 1
    threads = configure_threads()
    started = time.perf_counter()
    results = {"settings": {**vars(args), "model": MODEL, "threads": threads,
                            "heldout": {w: {"seed": h["seed"], "config": repr(h["config"])}
                                        for w, h in HELDOUT.items()}},
               "worlds": {}}
    for world in args.worlds.split(","):
        results["worlds"][world] = run_world(world, args)
    results["speed"] = speed_only()
    results["seconds"] = time.perf_counter() - started
    results["load_average_1min_end"] = os.getloadavg()[0]
    write_text_atomic(args.out or RESULTS / "driving.json", json.dumps(results, indent=2, default=float))
    print(json.dumps({w: r["targets"] for w, r in results["worlds"].items()}, indent=2, default=float))
    return results


def run_world(world: str, args) -> dict:
    """Train on one world's normal logs; evaluate on its tuned and held-out test logs; then
    train the same recipe on the held-out configuration's own normal logs and score the same
    held-out logs with it (``heldout_native``)."""
    config = TUNED[world]
    work = Path(args.log_dir) / world if args.log_dir else \
        Path(tempfile.mkdtemp(prefix=f"unmask-bench-driving-{world}-"))
    t0 = time.perf_counter()
    train = kept_logs(work / "train", args.train_logs, args.frames, args.seed + 1,
                      replace(config, anomaly_interval_s=0.0))
    tests = {"tuned": (config, args.seed + 2), "heldout": (HELDOUT[world]["config"],
                                                           HELDOUT[world]["seed"])}
    test_logs = {name: kept_logs(work / name, args.test_logs, args.frames, seed, cfg)
                 for name, (cfg, seed) in tests.items()}
    normal_logs = {name: kept_logs(work / f"{name}_normal", args.normal_logs, args.frames,
                                   seed + 500, replace(cfg, anomaly_interval_s=0.0))
                   for name, (cfg, seed) in tests.items()}
    sim_s = time.perf_counter() - t0
    print(f"{world}: simulated in {sim_s:.0f} s", flush=True)
    params = {"epochs": args.epochs, "max_steps_per_epoch": args.steps, "random_state": args.seed,
              **MODEL}
    model_dir = Path(args.model_dir) / world if args.model_dir else None
    predictor, out = _ready_model(train, params, model_dir, f"{world}")
    out["simulate_seconds"] = sim_s
    prior = PositionalPrior().fit(train)
    for name, logs in test_logs.items():
        out[name] = _test_column(predictor, prior, logs, normal_logs[name], args.seed)
        print(f"{world}/{name}: {json.dumps(_targets(out[name], predictor.contamination), default=float)}",
              flush=True)
    out["targets"] = {name: _targets(out[name], predictor.contamination) for name in tests}
    out["heldout_native"] = _heldout_native(world, args, work, params, test_logs["heldout"],
                                            normal_logs["heldout"])
    out["targets"]["heldout_native"] = out["heldout_native"]["targets"]
    return out


def _ready_model(train: list, params: dict, model_dir: Path | None, name: str):
    """The predictor trained on ``train`` with ``params``: reused from ``model_dir`` when a
    bundle with the same parameters is there (recalibrated on ``train``), else trained (and
    saved there). Returns it and the facts of its training for the results file."""
    t0 = time.perf_counter()
    if model_dir and (model_dir / "config.json").exists():
        predictor = OcclusionPredictor.load(model_dir)
        _check_params(predictor.get_params(), params, model_dir)
        predictor.calibrate(train)
        reused = True
    else:
        predictor = OcclusionPredictor(progress=False, **params).fit(train)
        reused = False
        if model_dir:
            predictor.save(model_dir)
    train_s = time.perf_counter() - t0
    print(f"{name}: model ready in {train_s:.0f} s (reused: {reused})", flush=True)
    return predictor, {"train_seconds": train_s, "reused_weights": reused,
                       "train_frames": sum(len(l) for l in train),
                       "training_history": predictor.history_.to_dict(),
                       "memory_gate": predictor.memory_gate_.to_dict() if predictor.memory_gate_ else None,
                       "road_threshold": predictor.scoring_.road_threshold,
                       "contamination": predictor.contamination}


def _test_column(predictor, prior, logs: list, normal: list, seed: int) -> dict:
    """One test column: every method on ``logs`` and unmask's alert rate on ``normal``."""
    out = evaluate_logs(predictor, prior, logs, seed)
    out["normal_logs"] = normal_alert_rate(predictor, normal)
    return out


def _heldout_native(world: str, args, work: Path, params: dict, logs: list, normal: list) -> dict:
    """The issue's protocol on a configuration the method was never developed on: the same
    recipe (params, number of training logs, frames) trained and calibrated on NORMAL logs of
    the held-out configuration (seed :data:`NATIVE_TRAIN_SEED_OFFSET` past the held-out seed,
    distinct from every other seed here), scored on the same held-out logs as ``heldout``.
    Nothing is tuned or re-decided for it: a measurement."""
    held = HELDOUT[world]
    train = kept_logs(work / "heldout_native_train", args.train_logs, args.frames,
                      held["seed"] + NATIVE_TRAIN_SEED_OFFSET,
                      replace(held["config"], anomaly_interval_s=0.0))
    model_dir = Path(args.model_dir) / f"{world}_heldout_native" if args.model_dir else None
    predictor, out = _ready_model(train, params, model_dir, f"{world}_heldout_native")
    out["train_seed"] = held["seed"] + NATIVE_TRAIN_SEED_OFFSET
    out.update(_test_column(predictor, PositionalPrior().fit(train), logs, normal, args.seed))
    out["targets"] = _targets(out, predictor.contamination)
    print(f"{world}/heldout_native: {json.dumps(out['targets'], default=float)}", flush=True)
    return out


def evaluate_logs(predictor, prior, logs, seed: int) -> dict:
    """Occluded-cell metrics of every method and frame metrics of unmask on ``logs``."""
    classes = list(logs[0].meta.classes)
    acc = {name: HiddenCellAccumulator(len(classes), seed=seed) for name in METHODS}
    baselines = {"persistence": PersistenceBaseline(),
                 "persistence_prior": PersistenceBaseline(prior=prior),
                 "persistence_world_map": PersistenceBaseline(world_map=True),
                 "positional_prior": prior}
    scores, raw, labels, log_ids, kinds = [], [], [], [], []
    timing = {"unmask_s": 0.0, "persistence_s": 0.0, "scoring_s": 0.0, "frames": 0}
    gate = predictor.memory_gate_
    no_extrapolation = _without_extrapolation(gate) if gate is not None else None
    for log in logs:
        in_range = sensor_range_mask(log)
        t0 = time.perf_counter()   # inference: stack + warp + forward + layout memory + gate + decision
        network, probs, context = gated_probabilities(predictor, log)
        decided = predictor.decide(log, probs)
        timing["unmask_s"] += time.perf_counter() - t0
        # the same gate without the extrapolation, for comparison: outside the timed part
        still = no_extrapolation.apply(network.copy(), context[1], log.semantic) \
            if gate is not None and context[1] is not None else network
        timing["frames"] += len(log)
        t0 = time.perf_counter()
        persistence_memory(log)
        timing["persistence_s"] += time.perf_counter() - t0
        layout = log.layout_true
        acc["unmask"].add(probs, log.semantic_true, log.visible, in_range, predicted=decided,
                          layout=layout)
        acc["network_only"].add(network, log.semantic_true, log.visible, in_range, layout=layout)
        acc["unmask_no_extrapolation"].add(still, log.semantic_true, log.visible, in_range,
                                           layout=layout)
        del probs, network, still
        for name, baseline in baselines.items():
            acc[name].add(baseline.predict_proba(log), log.semantic_true, log.visible, in_range,
                          layout=layout)
        t0 = time.perf_counter()
        result = score_log(predictor, log)
        timing["scoring_s"] += time.perf_counter() - t0
        scores.append(result.score)
        raw.append(result.raw_score)
        labels.append(log.anomaly)
        log_ids += [log.log_id] * len(log)
        kinds += [k or "" for k in log.anomaly_kind]
    scores, raw, labels = np.concatenate(scores), np.concatenate(raw), np.concatenate(labels)
    log_ids, kinds = np.asarray(log_ids), np.asarray(kinds)
    alerts = predictor.calibration_.alerts(scores)
    per_kind = frames_by_kind(labels, scores, alerts, log_ids, kinds)
    unsmoothed = frame_metrics(labels, raw, predictor.calibration_.alerts(raw), log_ids)
    first = np.isin(log_ids, [log.log_id for log in logs[:FIRST_LOGS]])
    n = timing["frames"]
    return {"occluded": {name: a.metrics(classes, "occluded") for name, a in acc.items()},
            "frames": frame_metrics(labels, scores, alerts, log_ids),
            "frames_unsmoothed": {k: unsmoothed.get(k) for k in ("auroc", "average_precision")},
            "frames_by_kind": per_kind,
            "frames_over_logs": frame_intervals(labels, scores, log_ids),
            f"frames_first_{FIRST_LOGS}_logs": {
                "frames": frame_metrics(labels[first], scores[first], alerts[first], log_ids[first]),
                "frames_by_kind": frames_by_kind(labels[first], scores[first], alerts[first],
                                                 log_ids[first], kinds[first])},
            "speed": {"unmask_inference_fps": n / timing["unmask_s"],
                      "persistence_fps": n / timing["persistence_s"],
                      "full_scoring_fps": n / timing["scoring_s"],
                      "load_average_1min": os.getloadavg()[0]}}


def gated_probabilities(predictor, log, world: WorldCells | None = None
                        ) -> tuple[np.ndarray, np.ndarray, tuple]:
    """unmask's class probabilities ``(T, C, H, W)`` of a log's frames before and after the
    memory gate, and what the gate read: the product's ``apply_memory`` in two steps (the
    predictor is not changed), so the gate applies only where the product's would (a fitted
    gate and a memory trace).

    Args:
        predictor: a fitted ``OcclusionPredictor``.
        log: the ``DriveLog`` to score.
        world: the log's ``WorldCells``, shared by the network input and the memory context
            as ``predict_log_proba`` shares it (None: built here), so a caller that needs
            them too builds them once.

    Returns:
        ``(network, probs, context)``: the network with the layout fallback; the same with
        the memory gate applied (a copy; ``network`` itself when there is no trace to gate);
        the memory context ``(layout memory, trace)`` of ``OcclusionPredictor.memory_context``.
    """
    world = WorldCells(log) if world is None else world
    layout, trace = context = predictor.memory_context(log, world)
    grids, speed = predictor.stack(log, world)
    network = predictor.predict_proba(grids, speed)
    del grids
    predictor.apply_memory(network, (layout, None), slice(None), log.semantic)  # layout alone
    if trace is None:
        return network, network, context
    probs = predictor.apply_memory(network.copy(), (None, trace), slice(None), log.semantic)
    return network, probs, context


def event_kinds(kinds) -> list[str]:
    """The event kinds among per-frame ``kinds``, sorted (a normal frame's kind is "")."""
    return sorted(set(kinds) - {""})


def frames_by_kind(labels, scores, alerts, log_ids, kinds) -> dict:
    """``frame_metrics`` per event kind: each kind's frames against every normal frame.

    Args:
        labels, scores, alerts, log_ids, kinds: ``(N,)`` per frame over a set of logs;
            ``kinds`` is the frame's event kind, ``""`` on normal frames.

    Returns:
        ``{kind: frame_metrics(...)}``, kinds sorted.
    """
    per_kind = {}
    for kind in event_kinds(kinds):
        sel = (kinds == kind) | ~labels
        per_kind[kind] = frame_metrics(labels[sel], scores[sel], alerts[sel], log_ids[sel])
    return per_kind


def _without_extrapolation(gate: MemoryGate) -> MemoryGate:
    """The same gate with the vehicle extrapolation's weights at 0 (the side-by-side run)."""
    out = MemoryGate.from_dict(gate.to_dict())
    out.moved_weights_[:] = 0.0
    return out


def normal_alert_rate(predictor, logs) -> dict:
    """Calibrated alerts on held-out normal logs (no injected events): over all frames and
    per log (the rate varies between logs far more than within one, so a rate over a few
    logs is imprecise; the per-log rates show how much)."""
    return alert_rates({log.log_id: predictor.calibration_.alerts(score_log(predictor, log).score)
                        for log in logs})


def alert_rates(per_log: dict) -> dict:
    """The alert rate over all frames of ``per_log`` (``{log_id: (T,) bool alerts}``) and
    per log, with the number of frames."""
    alerts = np.concatenate(list(per_log.values()))
    return {"n_frames": int(len(alerts)), "alert_rate": float(np.mean(alerts)),
            "per_log": {name: float(np.mean(a)) for name, a in per_log.items()}}


def _pr(metrics: dict, method: str, cls: str) -> float:
    return metrics["occluded"][method]["classes"][cls].get("pr_auc", float("nan"))


def _targets(metrics: dict, contamination: float) -> dict:
    """The issue's targets on one test set (ratios of PR-AUC on occluded cells)."""
    classes = [c for c, e in metrics["occluded"]["unmask"]["classes"].items() if "pr_auc" in e]
    frames = metrics["frames"]
    return {
        "vehicle_ap_over_persistence_prior": _pr(metrics, "unmask", "vehicle") /
        _pr(metrics, "persistence_prior", "vehicle"),
        "vehicle_ap_over_persistence_prior_without_extrapolation":
        _pr(metrics, "unmask_no_extrapolation", "vehicle") / _pr(metrics, "persistence_prior", "vehicle"),
        "static_obstacle_ap_over_persistence": _pr(metrics, "unmask", "static_obstacle") /
        _pr(metrics, "persistence", "static_obstacle"),
        "min_class_ap_over_persistence": min(_pr(metrics, "unmask", c) / _pr(metrics, "persistence", c)
                                             for c in classes),
        "frame_auroc": frames.get("auroc"),
        "frame_auroc_ci95_over_logs": metrics["frames_over_logs"]["auroc"]["ci95"],
        f"frame_auroc_first_{FIRST_LOGS}_logs": metrics[f"frames_first_{FIRST_LOGS}_logs"]["frames"].get("auroc"),
        "alert_rate_normal_logs_over_nominal": metrics["normal_logs"]["alert_rate"] / contamination,
        "alert_rate_normal_frames_of_event_logs_over_nominal":
            frames.get("alert_rate_normal", float("nan")) / contamination,
        "inference_fps": metrics["speed"]["unmask_inference_fps"],
    }


def _check_params(saved: dict, expected: dict, where) -> None:
    """Stop unless a bundle's parameters match the settings this run asks for."""
    got = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in expected}
    if got != expected:
        raise SystemExit(f"{where}: trained with {got}, this run asks for {expected}")


# a smaller input to time against: 3 history frames, no memory slot, no layout fallback, no gate
SMALL_INPUT_MODEL = {"history": (2, 5, 10), "memory": False, "layout_fallback": False,
                     "memory_gate": False}


def _untrained_gate(n_classes: int) -> MemoryGate:
    """A gate with every weight 0.5: what applying a fitted one costs."""
    gate = MemoryGate()
    gate.weights_ = np.full((n_classes, gate.n_bins), 0.5, np.float32)
    gate.moved_weights_ = np.full(N_AGE_BINS, 0.5, np.float32)
    return gate


def _time_inference(log, model: dict, n_frames: int) -> float:
    """Seconds for stack + warp (+ memory) + forward passes (+ layout fallback, memory gate)
    of a log."""
    import torch

    history, memory = model["history"], model.get("memory", False)
    net = OcclusionNet(OcclusionNetConfig(n_frames=1 + len(history) + memory))
    net = net.reset_parameters(torch.Generator().manual_seed(0)).to(memory_format=torch.channels_last).eval()
    with torch.inference_mode():
        grids, speed = stack_frames(log, history, memory)
        net.predict(torch.from_numpy(grids[:32]), torch.from_numpy(speed[:32]))   # warm-up
        del grids, speed
        t0 = time.perf_counter()
        world = WorldCells(log)                       # one per log, as the predictor shares it
        grids, speed = stack_frames(log, history, memory, world)
        layout = world_memory(log, before=False, world=world) if model.get("layout_fallback") else None
        belief = RoadBelief(log, world=world) if layout is not None else None
        trace = memory_trace(log, world) if model.get("memory_gate") else None
        gate = _untrained_gate(len(log.meta.classes))
        for i in range(0, n_frames, 32):
            probs = net.predict(torch.from_numpy(grids[i:i + 32]),
                                torch.from_numpy(speed[i:i + 32])).probabilities.numpy()
            if layout is not None:                    # + the reported classes' decision
                apply_layout_memory(probs, layout[i:i + 32], log.semantic[i:i + 32])
                if trace is not None:
                    gate.apply(probs, trace[i:i + 32], log.semantic[i:i + 32])
                decide(probs, 0.4, belief.update(i, road_mass(probs)))
        return time.perf_counter() - t0


def _time_extrapolation(n_frames: int, repeats: int) -> float:
    """Seconds the vehicle extrapolation (blobs, matching, painting) takes over a highway
    log, whose fast traffic it is for: best of ``repeats``."""
    log = HighwaySimulator(HighwayConfig(), seed=7).simulate(n_frames)
    ix, iy = world_cells(log)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        tracks = VehicleTracks(world_shape(ix, iy), log.meta.resolution_m)
        for t in range(len(log)):
            tracks.update(log.semantic[t] == VEHICLE, ix[t], iy[t], float(log.timestamp[t]))
        best = min(best, time.perf_counter() - t0)
    return best


def speed_only(n_frames: int = 192, repeats: int = 3) -> dict:
    """Inference frames/s at 128x128 (untrained weights, the benchmarked network size) vs
    persistence and vs a smaller input (``SMALL_INPUT_MODEL``: history 2, 5, 10; no memory, no fallback),
    and the full scoring (``score_log`` with a fitted gate and scoring state:
    :func:`bench.driving_speed.scoring_predictor`) of a town and a highway log, interleaved,
    best of ``repeats`` each (the machine is shared)."""
    threads = configure_threads()
    scoring = {}
    for world, config in TUNED.items():
        scoring[world] = scoring_predictor(config, **MODEL), timed_log(config, n_frames)
        scoring_seconds(*scoring[world])        # warm-up
    log = scoring["town"][1]                    # the town's log is the one inference is timed on
    best = {name: np.inf for name in ("unmask", "small_input", "persistence", "world", *scoring)}
    for _ in range(repeats):
        best["unmask"] = min(best["unmask"], _time_inference(log, MODEL, n_frames))
        best["small_input"] = min(best["small_input"], _time_inference(log, SMALL_INPUT_MODEL, n_frames))
        t0 = time.perf_counter()
        persistence_memory(log)
        best["persistence"] = min(best["persistence"], time.perf_counter() - t0)
        t0 = time.perf_counter()
        world_memory(log, before=False, layout_only=False)
        best["world"] = min(best["world"], time.perf_counter() - t0)
        for world, (predictor, world_log) in scoring.items():
            best[world] = min(best[world], scoring_seconds(predictor, world_log)[0])
    extrapolation_s = _time_extrapolation(n_frames, repeats)
    h, w = log.meta.grid_shape
    out = {"threads": threads, "frames": n_frames, "repeats": repeats, "model": MODEL,
           "grid": f"{h}x{w} (SimConfig defaults, town, {log.meta.resolution_m:g} m cells)",
           "extrapolation_ms_per_highway_frame": 1e3 * extrapolation_s / n_frames,
           "extrapolation_share_of_unmask_inference": extrapolation_s / best["unmask"],
           "unmask_inference_fps": n_frames / best["unmask"],
           "full_scoring_fps": n_frames / best["town"],
           "full_scoring_fps_highway": n_frames / best["highway"],
           "full_scoring_over_inference_speed": best["unmask"] / best["town"],
           "small_input_network_fps": n_frames / best["small_input"],
           "unmask_over_small_input_speed": best["small_input"] / best["unmask"],
           "persistence_fps": n_frames / best["persistence"],
           "persistence_world_map_fps": n_frames / best["world"],
           "load_average_1min": os.getloadavg()[0]}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
