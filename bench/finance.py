"""Finance benchmark: the Fraud Detection Handbook's protocol on the built-in simulator.

Train on earlier weeks, leave a 7-day gap (the feedback delay), test on the following
week. Reports AUROC, average precision, Card Precision@100 per day and recall per fraud
scenario at 100 alerts/day for

* unmask (``core.TabularDetector`` on the point-in-time features), without feedback;
* unmask with feedback (confirmed frauds older than 7 days as risk features; as in the
  handbook, every fraud is assumed confirmed when it happens, and only used 7 days later);
* IsolationForest on the same features (with and without feedback),

all in the same run, plus the end-to-end throughput of ``score`` (features + model +
reason codes) and, with ``--scale-rows``, peak memory of ``score`` on a larger file.

Usage::

    python bench/finance.py                                   # handbook scale
    python bench/finance.py --customers 500 --days 90         # quick iteration
    python bench/finance.py --scale-rows 10000000             # + out-of-core measurement
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _protocol(n_days: int, train_days: int):
    test_start = min(129, n_days - 7)           # handbook: test week starts 2018-08-08
    gap_start = test_start - 7
    train_start = max(min(30, gap_start - 7), gap_start - train_days)
    return train_start, gap_start, test_start


def _iforest(train: pd.DataFrame, test: pd.DataFrame, names, seed: int) -> np.ndarray:
    from sklearn.ensemble import IsolationForest

    model = IsolationForest(n_estimators=200, random_state=seed, n_jobs=1)
    model.fit(train[names].fillna(0).to_numpy())
    return -model.score_samples(test[names].fillna(0).to_numpy())


def _peak_rss_of(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd``; return (seconds, peak RSS in GiB of the child)."""
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "UNMASK_NUM_THREADS": os.environ.get("UNMASK_NUM_THREADS", "2")})
    seconds = time.perf_counter() - start
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


def _scale(args, work: Path) -> dict:
    """Peak memory and throughput of ``unmask finance score`` on a file of ``--scale-rows``."""
    import pyarrow.parquet as pq

    from finance.simulator import SimulatorConfig, simulate_to_parquet

    n_customers = int(round(args.scale_rows / (2.0 * args.days)))
    big = simulate_to_parquet(work / "big.parquet", SimulatorConfig(
        n_customers=n_customers, n_terminals=args.terminals, n_days=args.days, seed=args.seed + 1))
    rows = pq.read_metadata(big).num_rows
    seconds, peak = _peak_rss_of([sys.executable, "-m", "core.cli", "finance", "score", "--model",
                                  str(work / "model_unmask"), "--data", str(big), "--out",
                                  str(work / "big_scores.parquet"), "--budget", str(args.scale_budget)])
    return {"rows": rows, "file_mib": big.stat().st_size / 2**20, "seconds": seconds,
            "tx_per_s": rows / seconds, "peak_rss_gib": peak, "budget": args.scale_budget,
            "duckdb_memory_limit": os.environ.get("UNMASK_DUCKDB_MEMORY", "1GB")}


def main(argv=None) -> dict:
    from core.runtime import configure_threads
    from finance.detector import FinanceModel, FinanceModelConfig
    from finance.evaluate import detection_metrics
    from finance.features import config_for, feature_names, featurise
    from finance.feedback import labels_from_truth
    from finance.scoring import score_transactions
    from finance.simulator import SimulatorConfig, simulate_to_parquet
    from finance.train import read_features

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=5000)
    p.add_argument("--terminals", type=int, default=10000)
    p.add_argument("--days", type=int, default=183)
    p.add_argument("--train-days", type=int, default=28)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale-rows", type=int, default=0, help="also measure score on a file this large")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "finance.json"))
    p.add_argument("--workdir", default=None)
    p.add_argument("--scale-only", action="store_true",
                   help="only the --scale-rows measurement, with WORKDIR/model_unmask from a "
                        "previous run; merged into --out")
    p.add_argument("--scale-budget", type=int, default=100)
    args = p.parse_args(argv)
    configure_threads()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="unmask-bench-finance-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.scale_only:
        report = json.loads(Path(args.out).read_text())
        report["scale"] = _scale(args, work)
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))
        print(json.dumps(report["scale"]))
        return report
    timings, results = {}, {}

    sim = SimulatorConfig(n_customers=args.customers, n_terminals=args.terminals, n_days=args.days, seed=args.seed)
    t = time.perf_counter()
    data = simulate_to_parquet(work / "tx.parquet", sim)
    timings["simulate_s"] = time.perf_counter() - t
    tx = pd.read_parquet(data, columns=["transaction_id", "timestamp", "is_fraud", "fraud_scenario"])
    labels = labels_from_truth(tx)          # every fraud confirmed when it happens (handbook)
    t = time.perf_counter()
    fcfg = featurise(data, work / "features.parquet", labels=labels, feedback_delay_days=7.0)
    timings["featurise_s"] = time.perf_counter() - t

    start = pd.Timestamp(sim.start_date)
    train_start, gap_start, test_start = (start + pd.Timedelta(days=d) for d in _protocol(args.days, args.train_days))
    plain = config_for(["channel", "terminal_x", "terminal_y", "customer_x", "customer_y"], feedback=False)
    names_plain, names_fb = feature_names(plain), feature_names(fcfg)
    train = read_features(work / "features.parquet", until=gap_start, since=train_start, max_rows=200_000,
                          seed=args.seed)
    test = read_features(work / "features.parquet", until=test_start + pd.Timedelta(days=7), since=test_start)
    truth = dict(timestamp=test["timestamp"], customer=test["customer_id"], is_fraud=test["is_fraud"],
                 scenario=test["fraud_scenario"])

    for name, fc in (("unmask", plain), ("unmask_feedback", fcfg)):
        t = time.perf_counter()
        model = FinanceModel(FinanceModelConfig(random_state=args.seed, features=fc)).fit(train, gap_start)
        timings[f"{name}_fit_s"] = time.perf_counter() - t
        t = time.perf_counter()
        scores = model.score(test)
        timings[f"{name}_score_s"] = time.perf_counter() - t
        results[name] = detection_metrics(score=scores, **truth)
        model.save(work / f"model_{name}")
    for name, names in (("isolation_forest", names_plain), ("isolation_forest_feedback", names_fb)):
        t = time.perf_counter()
        results[name] = detection_metrics(score=_iforest(train, test, names, args.seed), **truth)
        timings[f"{name}_fit_score_s"] = time.perf_counter() - t

    # End-to-end score (features + batch model + global calibration + SHAP reason codes).
    n_rows = len(tx)
    t = time.perf_counter()
    summary = score_transactions(work / "model_unmask", data, work / "scores.parquet",
                                 work / "explanations.parquet", budget=700)
    e2e = time.perf_counter() - t
    throughput = {"rows": n_rows, "seconds": e2e, "tx_per_s": n_rows / e2e, "budget": 700,
                  "n_explained": summary["n_explained"]}

    scale = _scale(args, work) if args.scale_rows else None

    report = {
        "benchmark": "finance", "protocol": {
            "train": [str(train_start), str(gap_start)], "gap_days": 7,
            "test": [str(test_start), str(test_start + pd.Timedelta(days=7))],
            "train_rows_sampled": len(train), "test_rows": len(test), "test_frauds": int(test["is_fraud"].sum()),
            "feedback": "every fraud confirmed at its timestamp, used only after a 7-day delay"},
        "simulator": {**{k: v for k, v in vars(sim).items()}, "rows": n_rows,
                      "fraud_rate": float(tx["is_fraud"].mean()),
                      "scenario_counts": {str(k): int(v) for k, v in tx["fraud_scenario"].value_counts().sort_index().items()}},
        "results": results, "score_throughput": throughput, "scale": scale, "timings_s": timings,
        "machine": {"cpus": os.cpu_count(), "threads": os.environ.get("UNMASK_NUM_THREADS"),
                    "python": platform.python_version(), "note": "shared, contended CPUs: compare within a run"},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps({k: {m: v for m, v in r.items() if not isinstance(v, dict)} for k, r in results.items()}, indent=2))
    print(json.dumps(throughput), json.dumps(scale))
    return report


if __name__ == "__main__":
    main()
