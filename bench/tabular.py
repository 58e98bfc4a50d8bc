"""ADBench benchmark: TabularDetector beside IsolationForest, KNN, LOF and ECOD.

Protocol (``../shared/data/adbench/README.md``, as in MCM and NPT-AD): for each seed,
train on a random half of the normal rows; test on the other half plus every anomaly;
standardise with the training rows' statistics; AUROC and AUPRC (average precision),
averaged over seeds, then over datasets. Every method sees the same splits and threads.

Usage:
    python -m bench.tabular                                   # all 20 datasets, 5 seeds
    python -m bench.tabular --datasets glass,cardio --seeds 2 --methods unmask,knn
    python -m bench.tabular --params '{"components": ["reference"]}' --out /tmp/abl.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
METHODS = ("unmask", "knn", "lof", "iforest", "ecod")
LABELS = {"unmask": "TabularDetector (unmask)", "knn": "KNN (k=5)", "lof": "LOF (k=20, novelty)",
          "iforest": "IsolationForest (100 trees)", "ecod": "ECOD (PyOD)"}


def split(X, y, seed):
    """Half of the normals for training; the rest + all anomalies for testing (standardised)."""
    rng = np.random.default_rng(seed)
    normal = np.flatnonzero(y == 0)
    rng.shuffle(normal)
    train = np.sort(normal[: len(normal) // 2])
    test = np.setdiff1d(np.arange(len(y)), train)
    mean, std = X[train].mean(0), X[train].std(0)
    std[std < 1e-12] = 1.0
    return (X[train] - mean) / std, (X[test] - mean) / std, y[test]


def scorer(method, seed, params):
    """A function ``(X_train, X_test) -> test scores`` (higher = more anomalous)."""
    if method == "unmask":
        from core import TabularDetector

        def run(train, test):
            return TabularDetector(random_state=seed, **params).fit(train).decision_function(test)
    elif method == "knn":
        from sklearn.neighbors import NearestNeighbors

        def run(train, test):
            return NearestNeighbors(n_neighbors=5).fit(train).kneighbors(test)[0][:, -1]
    elif method == "lof":
        from sklearn.neighbors import LocalOutlierFactor

        def run(train, test):
            return -LocalOutlierFactor(n_neighbors=20, novelty=True).fit(train).score_samples(test)
    elif method == "iforest":
        from sklearn.ensemble import IsolationForest

        def run(train, test):
            model = IsolationForest(n_estimators=100, random_state=seed).fit(train)
            return -model.score_samples(test)
    elif method == "ecod":
        from pyod.models.ecod import ECOD

        def run(train, test):
            return ECOD().fit(train).decision_function(test)
    else:
        raise SystemExit(f"unknown method {method!r}; choose from {METHODS}")
    return run


def evaluate(path: Path, methods, seeds, params) -> dict:
    from core.metrics import auprc, auroc

    data = np.load(path)
    X, y = data["X"].astype(np.float64), data["y"].astype(int)
    result = {m: {"auroc": [], "auprc": [], "fit_score_s": []} for m in methods}
    for seed in seeds:
        train, test, y_test = split(X, y, seed)
        for method in methods:
            started = time.perf_counter()
            scores = scorer(method, seed, params)(train, test)
            result[method]["fit_score_s"].append(time.perf_counter() - started)
            result[method]["auroc"].append(auroc(y_test, scores))
            result[method]["auprc"].append(auprc(y_test, scores))
    for stats in result.values():
        for key in ("auroc", "auprc", "fit_score_s"):
            stats[f"mean_{key}"] = float(np.mean(stats[key]))
    return result


def table(results: dict, methods) -> str:
    names = list(results)
    short = [n.split("_", 1)[-1].removesuffix(".npz") for n in names]
    lines = ["| dataset | " + " | ".join(LABELS[m] for m in methods) + " |",
             "|---|" + "---|" * len(methods)]
    for name, label in zip(names, short):
        cells = [f"{results[name][m]['mean_auroc']:.3f} / {results[name][m]['mean_auprc']:.3f}"
                 for m in methods]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    means = []
    for m in methods:
        roc = np.mean([results[n][m]["mean_auroc"] for n in names])
        prc = np.mean([results[n][m]["mean_auprc"] for n in names])
        means.append(f"**{roc:.3f} / {prc:.3f}**")
    lines.append("| **mean** | " + " | ".join(means) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tabular",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "adbench"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--datasets", default="", help="comma-separated name fragments")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--params", default="{}", help="JSON overrides for TabularDetector")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "tabular.json"))
    args = parser.parse_args(argv)

    os.environ.setdefault("UNMASK_NUM_THREADS", "2")
    threads = int(os.environ["UNMASK_NUM_THREADS"])
    from threadpoolctl import threadpool_limits

    from core.io import write_text_atomic

    methods = [m for m in args.methods.split(",") if m]
    params = json.loads(args.params)
    paths = sorted(Path(args.data_dir).glob("*.npz"), key=lambda p: int(p.name.split("_")[0]))
    if args.datasets:
        wanted = args.datasets.split(",")
        paths = [p for p in paths if any(w.lower() in p.name.lower() for w in wanted)]
    if not paths:
        raise SystemExit(f"no .npz datasets found in {args.data_dir}")
    results, started = {}, time.perf_counter()
    with threadpool_limits(threads):
        for path in paths:
            results[path.name] = evaluate(path, methods, range(args.seeds), params)
            row = "  ".join(f"{m} {results[path.name][m]['mean_auroc']:.3f}/"
                            f"{results[path.name][m]['mean_auprc']:.3f}" for m in methods)
            print(f"{path.name:22s} {row}", flush=True)
    summary = {m: {"mean_auroc": float(np.mean([r[m]["mean_auroc"] for r in results.values()])),
                   "mean_auprc": float(np.mean([r[m]["mean_auprc"] for r in results.values()])),
                   "total_fit_score_s": float(sum(sum(r[m]["fit_score_s"])
                                                  for r in results.values()))}
               for m in methods}
    markdown = table(results, methods)
    out = {"protocol": "train on a random half of normals; test on the rest + all anomalies; "
                       "standardised with training stats",
           "seeds": args.seeds, "threads": threads, "params": params,
           "wall_seconds": time.perf_counter() - started, "summary": summary,
           "datasets": results, "markdown": markdown}
    write_text_atomic(args.out, json.dumps(out, indent=1))
    print(markdown)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
