"""Scoring throughput: TabularDetector.decision_function vs IsolationForest.score_samples.

Both run in the same process on the same synthetic rows (``--rows`` x ``--features``,
normal rows on a low-dimensional manifold plus noise) with the same thread count; both
are fitted on ``--fit-rows`` rows. Scoring goes through the data in chunks of
``--chunk`` rows (bounded memory), each chunk scored by every method in turn (rotating
order), so load changes on a shared machine hit all methods alike.
``IsolationForest.score_samples`` ignores ``n_jobs`` (scikit-learn parallelises it only
inside a joblib backend context), so it is timed both plainly and inside
``parallel_backend("threading", n_jobs=threads)``, and the ratio is taken against the
faster of the two. Reported: wall-clock rows/s of each and the ratio, the same ratio in
process CPU seconds, fit seconds per 100k rows, and peak resident memory
(``resource.getrusage``).

Usage:
    python -m bench.throughput                     # 1,000,000 x 30, 2 threads
    python -m bench.throughput --rows 200000       # quicker, on a busy machine
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_rows(n: int, d: int, seed: int) -> np.ndarray:
    """Normal rows: a 5-D latent manifold, a nonlinearity, small noise (float32)."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(1234).normal(size=(5, d)).astype(np.float32)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        z = rng.normal(size=(m, 5)).astype(np.float32)
        out[start:start + m] = np.tanh(z @ basis) + 0.1 * rng.normal(size=(m, d))
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def interleaved_timing(scorers: dict, rows: np.ndarray, chunk: int) -> tuple[dict, dict, dict]:
    """Score ``rows`` chunk by chunk with every scorer, alternating between them.

    Each chunk goes through all scorers, their order rotating from chunk to chunk, so load
    changes on a shared machine hit every method alike. Returns wall seconds and process
    CPU seconds per scorer, and each scorer's scores.
    """
    names = list(scorers)
    wall = dict.fromkeys(names, 0.0)
    cpu = dict.fromkeys(names, 0.0)
    scores = {name: [] for name in names}
    for n_chunk, start in enumerate(range(0, len(rows), chunk)):
        block = rows[start:start + chunk]
        for k in range(len(names)):
            name = names[(n_chunk + k) % len(names)]
            started, cpu_started = time.perf_counter(), time.process_time()
            scores[name].append(scorers[name](block))
            wall[name] += time.perf_counter() - started
            cpu[name] += time.process_time() - cpu_started
    return wall, cpu, {name: np.concatenate(parts) for name, parts in scores.items()}


def quality_check(detector, forest, d: int) -> dict:
    """AUROC of both on held-out normals + anomalies that break the manifold."""
    from core.metrics import auroc

    normal = make_rows(5000, d, seed=7)
    anomalies = make_rows(250, d, seed=8)
    rng = np.random.default_rng(9)
    cols = rng.integers(0, d, size=(250, 3))
    for j in range(3):
        anomalies[np.arange(250), cols[:, j]] = rng.normal(0, 1.5, size=250)
    X = np.vstack([normal, anomalies])
    y = np.r_[np.zeros(5000), np.ones(250)]
    return {"unmask_auroc": auroc(y, detector.decision_function(X)),
            "iforest_auroc": auroc(y, -forest.score_samples(X))}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--fit-rows", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--threads", type=int,
                        default=int(os.environ.get("UNMASK_NUM_THREADS", "2")))
    parser.add_argument("--params", default="{}", help="JSON overrides for TabularDetector")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "throughput.json"))
    args = parser.parse_args(argv)

    os.environ["UNMASK_NUM_THREADS"] = str(args.threads)
    from joblib import parallel_backend
    from sklearn.ensemble import IsolationForest
    from threadpoolctl import threadpool_limits

    from core import TabularDetector
    from core.io import write_text_atomic

    rows = make_rows(args.rows, args.features, seed=0)
    train = make_rows(args.fit_rows, args.features, seed=1)
    result = {"rows": args.rows, "features": args.features, "fit_rows": args.fit_rows,
              "threads": args.threads, "chunk": args.chunk, "params": json.loads(args.params)}
    with threadpool_limits(args.threads):
        started = time.perf_counter()
        detector = TabularDetector(random_state=0, num_threads=args.threads,
                                   **result["params"]).fit(train)
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        forest = IsolationForest(n_estimators=100, random_state=0, n_jobs=args.threads).fit(train)
        forest_fit_s = time.perf_counter() - started
        rss_after_fit = peak_rss_mb()

        def forest_threaded(block):
            with parallel_backend("threading", n_jobs=args.threads):
                return forest.score_samples(block)

        wall, cpu, all_scores = interleaved_timing(
            {"iforest_plain": forest.score_samples, "iforest_threaded": forest_threaded,
             "unmask": detector.decision_function}, rows, args.chunk)
        forest_s = min(wall["iforest_plain"], wall["iforest_threaded"])
        ours_s, scores = wall["unmask"], all_scores["unmask"]
        rss_scoring = peak_rss_mb()
        quality = quality_check(detector, forest, args.features)
    result.update({
        "unmask_rows_per_s": args.rows / ours_s, "iforest_rows_per_s": args.rows / forest_s,
        "iforest_rows_per_s_plain": args.rows / wall["iforest_plain"],
        "iforest_rows_per_s_threaded": args.rows / wall["iforest_threaded"],
        "ratio_unmask_over_iforest": forest_s / ours_s,
        "cpu_s": cpu,
        "cpu_ratio_unmask_over_iforest": min(cpu["iforest_plain"], cpu["iforest_threaded"])
        / cpu["unmask"],
        "unmask_fit_s_per_100k": fit_s * 100_000 / args.fit_rows,
        "iforest_fit_s_per_100k": forest_fit_s * 100_000 / args.fit_rows,
        "peak_rss_mb": {"after_fit": rss_after_fit, "after_scoring": rss_scoring},
        "scores_finite": bool(np.isfinite(scores).all()), **quality})
    write_text_atomic(args.out, json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
