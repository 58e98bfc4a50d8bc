"""Full driving scoring speed: ``score_log`` (what ``unmask driving score`` runs per log:
the three passes of the network, the memory gate and its vehicle extrapolation, the
surprise maps and the frame score) on a 128x128 town log, and the same before/after a
change of the code, interleaved, with the outputs checked equal.

The set-up is the smallest honest one: the network of the benchmarked size with the
untrained weights ``bench.driving``'s inference timing uses (seeded initialisation), its
memory gate, scoring state and alert threshold fitted by the product's own ``calibrate`` on
two short normal logs (60 frames each, seeds 8 and 9), then ``score_log`` timed on a
192-frame log with events (seed 7; the log ``--speed-only`` times inference on). What the
network predicts does not change what scoring computes per frame, so untrained weights
time the same work.

Usage:
    UNMASK_NUM_THREADS=1 python -m bench.driving_speed            # frames/s of this checkout
    python -m bench.driving_speed --baseline DIR --threads 1,2 --rounds 3 \\
        --out bench/results/driving_speed_compare.json
        # DIR: a checkout of the code before the change (``git worktree add DIR <commit>``);
        # each round runs one worker process per checkout and thread count, alternating,
        # and the first round's outputs of the two checkouts are compared cell by cell

A worker imports ``core`` and ``driving`` from ``PYTHONPATH`` (this file imports nothing
from ``bench``, and only what both checkouts have), so the same timing runs against either.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from core.io import write_text_atomic
from core.runtime import configure_threads
from driving.model.network import OcclusionNet, OcclusionNetConfig
from driving.model.predictor import OcclusionPredictor
from driving.scoring.surprise import score_log
from driving.sim.simulator import SimConfig

# the result fields compared between checkouts (score_maps are compared per channel)
FIELDS = ("score", "raw_score", "surprise_revealed", "visible_error", "predicted", "confidence",
          "revealed_error", "recon_error", "object_cells", "road_layout")


def scoring_predictor(config, **params):
    """An ``OcclusionPredictor`` (``params`` as ``unmask driving train`` takes them; defaults
    otherwise) for the geometry of the simulator ``config`` (``SimConfig``,
    ``HighwayConfig``), with seeded untrained weights, calibrated on two 60-frame normal
    logs of that world (seeds 8 and 9)."""
    meta = config.meta()
    predictor = OcclusionPredictor(progress=False, **params)
    predictor.meta_ = meta
    predictor.net_config_ = OcclusionNetConfig(
        n_classes=len(meta.classes), grid_shape=tuple(meta.grid_shape),
        n_frames=1 + len(predictor.history) + bool(predictor.memory))
    net = OcclusionNet(predictor.net_config_).reset_parameters(torch.Generator().manual_seed(0))
    predictor.net_ = net.to(memory_format=torch.channels_last).eval()
    normal = replace(config, anomaly_interval_s=0.0)
    return predictor.calibrate([normal.build(seed).simulate(60) for seed in (8, 9)])


def timed_log(config=None, n_frames: int = 192):
    """The log scoring is timed on: ``n_frames`` of ``config`` (default: the town's),
    events included, seed 7."""
    return (config or SimConfig()).build(7).simulate(n_frames)


def scoring_seconds(predictor, log) -> tuple[float, float, object]:
    """Wall-clock and CPU seconds (this process, all threads) of one ``score_log`` over
    ``log``, and its result."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    result = score_log(predictor, log)
    return time.perf_counter() - t0, time.process_time() - cpu0, result


def save_outputs(path: str, predictor, result) -> None:
    """Every field of a ``SurpriseResult`` the product writes, its score maps and alerts."""
    arrays = {name: getattr(result, name) for name in FIELDS}
    arrays.update({f"map_{name}": m for name, m in result.score_maps.items()})
    arrays["alerts"] = predictor.calibration_.alerts(result.score)
    np.savez(path, **arrays)


def worker(args) -> dict:
    """Time ``score_log`` in this process (threads from ``UNMASK_NUM_THREADS``)."""
    threads = configure_threads()
    log = timed_log(n_frames=args.frames)
    predictor = scoring_predictor(SimConfig())
    score_log(predictor, log)                                  # warm-up
    runs = [scoring_seconds(predictor, log) for _ in range(args.repeats)]
    seconds, cpu_seconds = min(run[0] for run in runs), min(run[1] for run in runs)
    result = runs[-1][2]
    if args.save:
        save_outputs(args.save, predictor, result)
    return {"threads": threads, "frames": len(log), "seconds": seconds, "cpu_seconds": cpu_seconds,
            "full_scoring_fps": len(log) / seconds, "load_average_1min": os.getloadavg()[0]}


def run_worker(tree: Path, threads: int, frames: int, repeats: int, save: str | None) -> dict:
    """One worker process importing ``core``/``driving`` from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "UNMASK_NUM_THREADS": str(threads)}
    # -P: this file's folder (bench/, whose driving.py would shadow the package) stays off sys.path
    command = [sys.executable, "-P", str(Path(__file__).resolve()), "--worker", "--frames", str(frames),
               "--repeats", str(repeats)] + (["--save", save] if save else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tree)
    if done.returncode:
        raise SystemExit(f"worker in {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def max_differences(before: str, after: str) -> dict:
    """Per saved array, the largest absolute difference (0 = identical; arrays of another
    shape: NaN)."""
    old, new = np.load(before), np.load(after)
    out = {}
    for name in sorted(set(old.files) | set(new.files)):
        if name not in old.files or name not in new.files or old[name].shape != new[name].shape:
            out[name] = float("nan")
            continue
        a, b = old[name].astype(np.float64), new[name].astype(np.float64)
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        out[name] = 0.0 if same.all() else float(np.max(np.abs(a - b)[~same]))
    return out


def compare(args) -> dict:
    """Before/after, interleaved: per round, per thread count, the baseline checkout's
    worker then this one's; best wall-clock and CPU seconds of each over the rounds, their
    ratios (CPU time is the steadier one on a loaded machine), and the first round's
    outputs compared."""
    here = Path(__file__).resolve().parents[1]
    trees = {"before": Path(args.baseline).resolve(), "after": here}
    scratch = Path(tempfile.mkdtemp(prefix="unmask-driving-speed-"))
    runs = []
    for round_ in range(args.rounds):
        for threads in args.threads:
            for name, tree in trees.items():
                save = str(scratch / f"{name}_{threads}.npz") if round_ == 0 else None
                runs.append({"round": round_, "code": name, **run_worker(tree, threads, args.frames,
                                                                        args.repeats, save)})
                print(json.dumps(runs[-1]), flush=True)
    out = {"command": " ".join(["python -m bench.driving_speed"] + sys.argv[1:]),
           "frames": args.frames, "repeats": args.repeats, "rounds": args.rounds, "runs": runs}
    for threads in args.threads:
        best = {(name, clock): min(r[clock] for r in runs if r["code"] == name and r["threads"] == threads)
                for name in trees for clock in ("seconds", "cpu_seconds")}
        out[f"threads_{threads}"] = {
            "before_fps": args.frames / best["before", "seconds"],
            "after_fps": args.frames / best["after", "seconds"],
            "speedup": best["before", "seconds"] / best["after", "seconds"],
            "cpu_speedup": best["before", "cpu_seconds"] / best["after", "cpu_seconds"],
            "load_average_1min": [r["load_average_1min"] for r in runs if r["threads"] == threads],
            "max_abs_difference": max_differences(str(scratch / f"before_{threads}.npz"),
                                                  str(scratch / f"after_{threads}.npz"))}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.driving_speed",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per worker (best kept)")
    parser.add_argument("--baseline", default=None, help="checkout of the code to compare with")
    parser.add_argument("--threads", default="1,2", help="thread counts compared (with --baseline)")
    parser.add_argument("--rounds", type=int, default=3, help="alternations (with --baseline)")
    parser.add_argument("--out", default=None, help="results JSON (with --baseline)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.baseline:
        out = worker(args)
    else:
        args.threads = [int(t) for t in args.threads.split(",")]
        out = compare(args)
        if args.out:
            write_text_atomic(args.out, json.dumps(out, indent=2, default=float))
    print(json.dumps(out if args.worker else {k: v for k, v in out.items() if k != "runs"},
                     default=float))
    return out


if __name__ == "__main__":
    main()
