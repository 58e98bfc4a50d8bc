"""ADBench benchmark: TabularDetector beside KNN, LOF and IsolationForest, nested over sets.

Protocol (``../shared/data/adbench/README.md``, as in MCM and NPT-AD): each dataset is first
capped at ``--max-rows`` rows (stratified, seeded); for each seed, train on a random half of
the normal rows; test on the other half plus every anomaly; standardise with the training
rows' statistics; AUROC and AUPRC (average precision), averaged over seeds, then over
datasets. Every method sees the same splits and threads, in the same run.

Nested leave-sets-out selection: the datasets are dealt into ``--folds`` folds, frozen by
a seeded shuffle of their names (:func:`folds`). For each fold, the TabularDetector
configuration with the best mean AUPRC on the *other* folds (the selection side) is chosen
from :data:`CANDIDATES`, and its numbers on the held-out fold are reported. The held-out
mean over all folds is what a default chosen this way scores on data it was not chosen on.

With ``--cache DIR``, baseline scores (and their timings) are cached per (dataset, cap,
seed, method), so development runs re-score only the detector; committed runs use none.

Usage:
    python -m bench.tabular                                  # 26 datasets, 5 seeds, 3 folds
    python -m bench.tabular --datasets glass,cardio --seeds 1 --candidates local
    python -m bench.tabular --candidates local --params '{"knn_weight": 1}' --out /tmp/x.json
    python -m bench.tabular --datasets ALOI,campaign --max-rows 50000 --memory 4096,32768
    python -m bench.tabular --throughput 1000000 --out bench/results/tabular_throughput.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from bench.shared_data import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
BASELINES = ("knn", "lof", "iforest")
LABELS = {"knn": "KNN (k=5)", "lof": "LOF (k=20, novelty)",
          "iforest": "IsolationForest (100 trees)"}
# The small candidate list the nested protocol selects from: each a whole default (every
# setting that differs between them spelled out), never a per-dataset setting.
# "reference_knn" is the default before the local component and the larger memory.
CANDIDATES = {
    "reference_knn": {"components": ["reference", "knn"], "n_reference": 4096, "knn_k": 5},
    "local": {"components": ["reference", "knn", "local"], "n_reference": 4096, "knn_k": 5},
    "local_k3": {"components": ["reference", "knn", "local"], "n_reference": 4096, "knn_k": 3},
    "local_memory_8k": {"components": ["reference", "knn", "local"], "n_reference": 8192,
                        "knn_k": 5},
    "local_memory_8k_k3": {"components": ["reference", "knn", "local"], "n_reference": 8192,
                           "knn_k": 3},
}

MEMORY_BASE = "local_k3"  # today's default (what the nested selection chose)


def cap_rows(X, y, max_rows: int, seed: int = 0):
    """At most ``max_rows`` rows, stratified by label (seeded; same for every seed)."""
    if len(y) <= max_rows:
        return X, y
    rng = np.random.default_rng(seed)
    keep = []
    for label in (0, 1):
        idx = np.flatnonzero(y == label)
        take = max(1, int(round(max_rows * len(idx) / len(y))))
        keep.append(rng.choice(idx, size=min(take, len(idx)), replace=False))
    keep = np.sort(np.concatenate(keep))
    return X[keep], y[keep]


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


def fitter(method, seed, params=None):
    """``(make, score)``: a fresh estimator, and ``score(model, X)`` (higher = anomalous)."""
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors

    from core import TabularDetector

    if method == "unmask":
        return (lambda: TabularDetector(random_state=seed, **params),
                lambda model, X: model.decision_function(X))
    if method == "knn":
        return (lambda: NearestNeighbors(n_neighbors=5),
                lambda model, X: model.kneighbors(X)[0][:, -1])
    if method == "lof":
        return (lambda: LocalOutlierFactor(n_neighbors=20, novelty=True),
                lambda model, X: -model.score_samples(X))
    if method == "iforest":
        return (lambda: IsolationForest(n_estimators=100, random_state=seed),
                lambda model, X: -model.score_samples(X))
    raise SystemExit(f"unknown method {method!r}")


def run_method(method, seed, params, train, test) -> dict:
    make, score = fitter(method, seed, params)
    started = time.perf_counter()
    model = make().fit(train)
    fitted = time.perf_counter()
    scores = np.asarray(score(model, test), dtype=np.float64)
    return {"scores": scores, "fit_s": fitted - started,
            "score_s": time.perf_counter() - fitted}


def cached(cache: Path | None, key: str, compute) -> dict:
    """``compute()``'s result, stored as ``cache/key.npz`` (None: no cache)."""
    if cache is None:
        return compute()
    path = cache / f"{key}.npz"
    if path.exists():
        data = np.load(path)
        return {"scores": data["scores"], "fit_s": float(data["fit_s"]),
                "score_s": float(data["score_s"])}
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **result)
    return result


def evaluate(path: Path, candidates: dict, seeds, max_rows: int, cache) -> dict:
    """Per method (baselines, then ``unmask:<candidate>``): metrics and timings per seed."""
    from core.metrics import auprc, auroc

    data = np.load(path)
    X, y = cap_rows(data["X"].astype(np.float64), data["y"].astype(int), max_rows)
    methods = [(m, None) for m in BASELINES] + [(f"unmask:{n}", p) for n, p in candidates.items()]
    result = {m: {"auroc": [], "auprc": [], "fit_s": [], "score_s": [], "test_rows": []}
              for m, _ in methods}
    for seed in seeds:
        train, test, y_test = split(X, y, seed)
        for method, params in methods:
            if params is None:
                key = f"{path.stem}-{max_rows}-{seed}-{method}"
                out = cached(cache, key, lambda: run_method(method, seed, None, train, test))
            else:
                out = run_method("unmask", seed, params, train, test)
            stats = result[method]
            stats["auroc"].append(auroc(y_test, out["scores"]))
            stats["auprc"].append(auprc(y_test, out["scores"]))
            stats["fit_s"].append(out["fit_s"])
            stats["score_s"].append(out["score_s"])
            stats["test_rows"].append(len(test))
    for stats in result.values():
        stats["mean_auroc"] = float(np.mean(stats["auroc"]))
        stats["mean_auprc"] = float(np.mean(stats["auprc"]))
    result["rows"] = {"train": len(train), "test": len(test), "capped_from": int(len(data["y"]))}
    return result


def folds(names, n_folds: int, seed: int = 0) -> list[list[str]]:
    """The frozen fold assignment: a seeded shuffle of the sorted names, dealt in turn."""
    order = np.random.default_rng(seed).permutation(sorted(names))
    return [sorted(order[f::n_folds].tolist()) for f in range(n_folds)]


def _mean(results, names, method, metric):
    return float(np.mean([results[n][method][f"mean_{metric}"] for n in names]))


def nested(results: dict, candidates, n_folds: int) -> dict:
    """Select a candidate on the other folds, report it on the held-out fold."""
    names = list(results)
    out = {"folds": [], "held_out": {}}
    chosen_per_set = {}
    for held in folds(names, n_folds):
        side = [n for n in names if n not in held]
        side_auprc = {c: _mean(results, side, f"unmask:{c}", "auprc") for c in candidates}
        best = max(candidates, key=lambda c: (side_auprc[c], -list(candidates).index(c)))
        fold = {"held_out_sets": held, "chosen": best, "selection_side_auprc": side_auprc,
                "selection": {}, "held_out": {}}
        for label, sets in (("selection", side), ("held_out", held)):
            for method in (f"unmask:{best}",) + BASELINES:
                fold[label][method.split(":")[0]] = {
                    "auroc": _mean(results, sets, method, "auroc"),
                    "auprc": _mean(results, sets, method, "auprc")}
        out["folds"].append(fold)
        chosen_per_set.update({n: best for n in held})
    for method in ("unmask",) + BASELINES:
        def value(n, metric):
            key = f"unmask:{chosen_per_set[n]}" if method == "unmask" else method
            return results[n][key][f"mean_{metric}"]
        out["held_out"][method] = {m: float(np.mean([value(n, m) for n in names]))
                                   for m in ("auroc", "auprc")}
    out["chosen_per_set"] = chosen_per_set
    out["margin_auprc_vs_knn"] = (out["held_out"]["unmask"]["auprc"]
                                  - out["held_out"]["knn"]["auprc"])
    out["margin_auroc_vs_knn"] = (out["held_out"]["unmask"]["auroc"]
                                  - out["held_out"]["knn"]["auroc"])
    return out


def speed(results: dict, methods) -> dict:
    """Scoring rows/s (all test rows / all scoring time) and total fit seconds per method."""
    out = {}
    for m in methods:
        rows = sum(sum(r[m]["test_rows"]) for r in results.values())
        score_s = sum(sum(r[m]["score_s"]) for r in results.values())
        out[m] = {"score_rows_per_s": rows / max(score_s, 1e-9), "score_s": score_s,
                  "fit_s": sum(sum(r[m]["fit_s"]) for r in results.values())}
    return out


def throughput(n_rows: int, threads: int, fit_rows: int = 100_000, chunk: int = 100_000
               ) -> dict:
    """Scoring rows/s of today's default, the previous one and a 32,768-row memory beside
    IsolationForest.

    The rows, fit size and interleaved timing are :mod:`bench.throughput`'s (30 features);
    ``IsolationForest.score_samples`` runs inside a threading backend so it uses the
    threads too (the faster of its two ways, see there).
    """
    from joblib import parallel_backend
    from sklearn.ensemble import IsolationForest

    from bench.throughput import interleaved_timing, make_rows
    from core import TabularDetector

    rows, train = make_rows(n_rows, 30, seed=0), make_rows(fit_rows, 30, seed=1)
    detectors = {"unmask:default": {}, "unmask:reference_knn": CANDIDATES["reference_knn"],
                 "unmask:memory_32768": {"n_reference": 32768}}
    scorers, fit_s = {}, {}
    for name, params in detectors.items():
        started = time.perf_counter()
        scorers[name] = TabularDetector(random_state=0, **params).fit(train).decision_function
        fit_s[name] = time.perf_counter() - started
    started = time.perf_counter()
    forest = IsolationForest(n_estimators=100, random_state=0, n_jobs=threads).fit(train)
    fit_s["iforest"] = time.perf_counter() - started

    def forest_scores(block):
        with parallel_backend("threading", n_jobs=threads):
            return forest.score_samples(block)

    scorers["iforest"] = forest_scores
    for score in scorers.values():  # compiled kernels loaded before the clock starts
        score(rows[:1000])
    wall, cpu, _ = interleaved_timing(scorers, rows, chunk)
    out = {name: {"rows_per_s": n_rows / wall[name], "cpu_s": cpu[name],
                  "fit_s_per_100k": fit_s[name] * 100_000 / fit_rows} for name in scorers}
    for name in detectors:
        out[name]["ratio_vs_iforest_wall"] = out[name]["rows_per_s"] / out["iforest"]["rows_per_s"]
        out[name]["ratio_vs_iforest_cpu"] = out["iforest"]["cpu_s"] / out[name]["cpu_s"]
    return {"rows": n_rows, "features": 30, "fit_rows": fit_rows, "threads": threads,
            "methods": out}


def table(results: dict, methods) -> str:
    names = list(results)
    short = [n.split("_", 1)[-1] for n in names]
    labels = [LABELS.get(m, m.replace("unmask:", "unmask ")) for m in methods]
    lines = ["| dataset | " + " | ".join(labels) + " |", "|---|" + "---|" * len(methods)]
    for name, label in zip(names, short):
        cells = [f"{results[name][m]['mean_auroc']:.3f} / {results[name][m]['mean_auprc']:.3f}"
                 for m in methods]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    means = [f"**{_mean(results, names, m, 'auroc'):.3f} / {_mean(results, names, m, 'auprc'):.3f}**"
             for m in methods]
    lines.append("| **mean** | " + " | ".join(means) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tabular",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(SHARED_DATA / "adbench"))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--max-rows", type=int, default=10_000)
    parser.add_argument("--datasets", default="", help="comma-separated name fragments")
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help=f"comma-separated names from {list(CANDIDATES)}")
    parser.add_argument("--memory", default="",
                        help="comma-separated memory sizes: instead of the candidates, "
                             f"{MEMORY_BASE!r} with each n_reference (what memory buys)")
    parser.add_argument("--throughput", type=int, default=0,
                        help="instead: score this many synthetic rows (30 features) with "
                             "TabularDetector variants and IsolationForest (bench.throughput)")
    parser.add_argument("--params", default="{}",
                        help="JSON overrides applied to every candidate")
    parser.add_argument("--cache", default="",
                        help="folder caching baseline scores while developing (default: none)")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "tabular.json"))
    args = parser.parse_args(argv)

    os.environ.setdefault("UNMASK_NUM_THREADS", "2")
    threads = int(os.environ["UNMASK_NUM_THREADS"])
    from threadpoolctl import threadpool_limits

    from core.io import write_text_atomic

    if args.throughput:
        with threadpool_limits(threads):
            report = throughput(args.throughput, threads)
        write_text_atomic(args.out, json.dumps(report, indent=1))
        print(json.dumps(report, indent=1))
        return
    overrides = json.loads(args.params)
    candidates = {c: {**CANDIDATES[c], **overrides} for c in args.candidates.split(",") if c}
    if args.memory:
        candidates = {f"memory_{m}": {**CANDIDATES[MEMORY_BASE], **overrides,
                                      "n_reference": int(m)}
                      for m in args.memory.split(",")}
    paths = sorted(Path(args.data_dir).glob("*.npz"), key=lambda p: int(p.name.split("_")[0]))
    if args.datasets:
        wanted = args.datasets.split(",")
        paths = [p for p in paths if any(w.lower() in p.name.lower() for w in wanted)]
    if not paths:
        raise SystemExit(f"no .npz datasets found in {args.data_dir}")
    cache = Path(args.cache) if args.cache else None
    results, started = {}, time.perf_counter()
    with threadpool_limits(threads):
        for path in paths:
            results[path.stem] = evaluate(path, candidates, range(args.seeds), args.max_rows,
                                          cache)
            row = "  ".join(f"{m.removeprefix('unmask:')} {results[path.stem][m]['mean_auroc']:.3f}"
                            f"/{results[path.stem][m]['mean_auprc']:.3f}"
                            for m in results[path.stem] if m != "rows")
            print(f"{path.stem:18s} {row}", flush=True)
    rows = {n: r.pop("rows") for n, r in results.items()}
    methods = list(BASELINES) + [f"unmask:{c}" for c in candidates]
    summary = {m: {"mean_auroc": _mean(results, list(results), m, "auroc"),
                   "mean_auprc": _mean(results, list(results), m, "auprc")} for m in methods}
    # a memory sweep compares sizes, it selects nothing
    report = (nested(results, candidates, args.folds)
              if len(results) >= args.folds and not args.memory else None)
    out = {"protocol": f"cap {args.max_rows} rows (stratified); train on a random half of "
                       "normals; test on the rest + all anomalies; standardised with training "
                       f"stats; nested {args.folds}-fold leave-sets-out selection",
           "seeds": args.seeds, "threads": threads, "candidates": candidates,
           "wall_seconds": time.perf_counter() - started, "summary": summary,
           "nested": report, "speed": speed(results, methods), "rows": rows,
           "datasets": results, "markdown": table(results, methods)}
    write_text_atomic(args.out, json.dumps(out, indent=1))
    print(out["markdown"])
    print(json.dumps({"summary": summary, "speed": out["speed"]}, indent=1))
    if report:
        print(json.dumps({k: report[k] for k in ("held_out", "margin_auprc_vs_knn",
                                                 "margin_auroc_vs_knn")}, indent=1))
        for fold in report["folds"]:
            print(f"fold {fold['held_out_sets']}: chose {fold['chosen']}")


if __name__ == "__main__":
    main()
