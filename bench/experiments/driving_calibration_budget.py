"""Peak memory, time and threshold of ``OcclusionPredictor.calibrate`` under and over its
``calibration_max_frames`` budget.

Calibration keeps every frame's surprise maps for its leave-one-log-out refits; the budget
bounds what it keeps. One trained network (the tiny demo's by default, trained here; or a
bundle given with ``--model``) is recalibrated on the same normal logs at each budget:
``whole`` (the default budget, above the logs' frames: every frame, as before the budget)
and the budgets given. Peak memory is ``tracemalloc``'s (numpy's arrays; torch's own
allocations are not traced). Nothing is tuned here.

    PYTHONPATH=. UNMASK_NUM_THREADS=1 python -m bench.experiments.driving_calibration_budget \\
        --logs 4 --frames 120 --budgets 200 120
"""
from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

from bench.driving_logs import simulated_logs
from bench.experiments import merge_results
from driving.demo import build_demo, sim_config
from driving.model.predictor import OcclusionPredictor

RESULTS = Path(__file__).resolve().parents[1] / "results" / "driving_calibration_budget.json"
LOG_SEED = 21


def calibrate_once(model: Path, logs: list, budget: int | None) -> dict:
    """Recalibrate ``model`` on ``logs`` at ``budget`` (None: the default) and measure it."""
    predictor = OcclusionPredictor.load(model)
    predictor.progress = False
    if budget is not None:
        predictor.calibration_max_frames = budget
    tracemalloc.start()
    began = time.perf_counter()
    predictor.calibrate(logs)
    seconds = time.perf_counter() - began
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"calibration_max_frames": predictor.calibration_max_frames,
            "frames_fitted": int(predictor.calibration_.calibration_scores_.size),
            "threshold": float(predictor.threshold_), "peak_traced_mb": round(peak / 2**20, 1),
            "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="a trained driving bundle (default: train the tiny demo's here)")
    parser.add_argument("--size", choices=("tiny", "small"), default="tiny",
                        help="simulator grid of the logs; must match --model's")
    parser.add_argument("--logs", type=int, default=4)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--budgets", type=int, nargs="+", default=[200, 120])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="unmask-calibration-budget-"))
    model = args.model
    if model is None:
        build_demo(work, size="tiny", seed=0)
        model = work / "models" / "driving" / "default"
    config = replace(sim_config(args.size), anomaly_interval_s=0.0)
    logs = simulated_logs(work / "logs", args.logs, args.frames, LOG_SEED, config)
    runs = {"whole": calibrate_once(model, logs, None)}
    print("whole", runs["whole"], flush=True)
    for budget in args.budgets:
        runs[str(budget)] = calibrate_once(model, logs, budget)
        print(budget, runs[str(budget)], flush=True)
    result = {"model": str(args.model or "tiny demo (build_demo seed 0)"), "size": args.size,
              "logs": args.logs, "frames_per_log": args.frames, "log_seed": LOG_SEED, "runs": runs}
    merge_results(args.out, {args.size: result}, indent=2)


if __name__ == "__main__":
    main()
