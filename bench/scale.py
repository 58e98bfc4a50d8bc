"""Scale-out benchmark (issue 7): Ray vs local scoring, torchrun training, streaming memory.

In one run, on the same data and cores:

1. **Finance batch scoring**: the finance model's pure batch scorer
   (:func:`finance.scoring.map_features`) over the same features file with
   ``--engine local`` (streamed record batches) and ``--engine ray`` (Ray Data
   ``read_parquet`` -> actor pool -> ``write_parquet``, local Ray with 2 CPUs). Rows/s,
   Ray start-up timed apart, and a check that both engines give identical scores.
2. **Training**: epoch time of the finance network (``TabularDetector`` network component,
   :func:`core.training.fit`) under ``torchrun`` with 1 process x 1 thread, 1 process x
   2 threads and 2 processes x 1 thread (DistributedDataParallel, gloo).
3. **Memory**: peak RSS of ``map_parquet(engine="local")`` over 1 M and 10 M rows with the
   finance features' columns, each in a fresh process: the engine's streaming memory must
   not grow with the input (a cheap z-score scorer isolates the engine; the model's own
   per-batch memory is measured in part 1's local run).

Usage::

    UNMASK_NUM_THREADS=2 .venv/bin/python -m bench.scale            # writes bench/results/scale.json
    UNMASK_NUM_THREADS=2 .venv/bin/python -m bench.scale --quick    # small sizes, smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _peak_rss_gib() -> float:
    """This process's peak RSS. ``VmHWM``, not ``ru_maxrss``: Linux carries ``ru_maxrss``
    over fork and exec, so a child would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _run_json(args: list[str], env: dict | None = None, timeout: int = 3600) -> dict:
    """Run this module (or torchrun) in a fresh process from the repository root, so
    ``-m bench.*`` resolves; its last stdout line is JSON."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})), cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- data -----------------------------------------------------------------------------

def prepare(work: Path, customers: int, days: int, score_rows: int) -> dict:
    """Simulate transactions, train a finance model, featurise, replicate to ``score_rows``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from finance.detector import FinanceModelConfig
    from finance.features import featurise
    from finance.simulator import SimulatorConfig, simulate_to_parquet
    from finance.train import train

    tx, model, feats, scoring = (work / "tx.parquet", work / "model", work / "features.parquet",
                                 work / "scoring.parquet")
    started = time.perf_counter()
    simulate_to_parquet(tx, SimulatorConfig(n_customers=customers, n_terminals=2 * customers,
                                            n_days=days, seed=0))
    config = FinanceModelConfig(random_state=0, max_train_rows=50_000)
    config.detector_params["max_steps"] = 300
    train(tx, model, config=config)
    featurise(tx, feats)
    table = pq.read_table(feats)
    reps = int(np.ceil(score_rows / table.num_rows))
    parts = []
    for r in range(reps):  # copies with distinct row numbers, as a longer history would have
        part = table.set_column(table.schema.get_field_index("_row"), "_row",
                                pa.array(table["_row"].to_numpy() + r * table.num_rows))
        parts.append(part)
    pq.write_table(pa.concat_tables(parts).slice(0, score_rows), scoring, row_group_size=131_072)
    return {"transactions": table.num_rows, "score_rows": score_rows,
            "prepare_seconds": round(time.perf_counter() - started, 1),
            "paths": {"model": str(model), "features": str(feats), "scoring": str(scoring)}}


def synthetic_features(path: Path, rows: int, columns: list[str], chunk: int = 1_000_000) -> None:
    """A Parquet file with the finance features' column names and ``rows`` random rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists() and pq.read_metadata(path).num_rows == rows:
        return
    R = np.random.default_rng(0)
    schema = pa.schema([("_row", pa.int64())] + [(c, pa.float64()) for c in columns])
    with pq.ParquetWriter(str(path), schema) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            arrays = [pa.array(np.arange(start, start + n))]
            arrays += [pa.array(R.standard_normal(n)) for _ in columns]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema), row_group_size=131_072)


# --- sub-processes (each measures its own peak RSS) -------------------------------------

def zscore_scorer():
    """A cheap pure batch scorer: mean squared z-score over the numeric columns."""
    import pyarrow as pa

    def score(table):
        x = np.column_stack([table[c].to_numpy() for c in table.column_names if c != "_row"])
        return pa.table({"_row": table["_row"], "score": (x ** 2).mean(axis=1)})

    return score


def child_memory(path: str, out: str) -> dict:
    from core.scale import map_parquet

    started = time.perf_counter()
    map_parquet(path, out, zscore_scorer, engine="local")
    import pyarrow.dataset as pads

    rows = pads.dataset(out, format="parquet").count_rows()
    return {"rows": rows, "seconds": time.perf_counter() - started, "peak_rss_gib": _peak_rss_gib()}


def child_score(features: str, out: str, model: str, engine: str) -> dict:
    from finance.scoring import map_features

    if engine == "ray":
        from core.scale import init_ray

        started = time.perf_counter()
        init_ray(num_cpus=os.cpu_count())
        ray_start = time.perf_counter() - started
    started = time.perf_counter()
    map_features(features, out, model, engine=engine)
    seconds = time.perf_counter() - started
    import pyarrow.dataset as pads

    rows = pads.dataset(out, format="parquet").count_rows()
    result = {"engine": engine, "rows": rows, "seconds": seconds, "rows_per_s": rows / seconds,
              "peak_rss_gib": _peak_rss_gib()}
    if engine == "ray":
        result["ray_start_seconds"] = ray_start
    return result


# --- the benchmark ----------------------------------------------------------------------

def scores_identical(a: str, b: str) -> dict:
    from core.scale import read_output

    ta, tb = read_output(a).to_pandas(), read_output(b).to_pandas()
    ta, tb = ta.sort_values("_row").reset_index(drop=True), tb.sort_values("_row").reset_index(drop=True)
    same_rows = bool((ta["_row"].to_numpy() == tb["_row"].to_numpy()).all())
    diff = float(np.max(np.abs(ta["score"].to_numpy() - tb["score"].to_numpy())))
    return {"same_rows": same_rows, "max_abs_score_difference": diff}


def bench_training(features: str, model: str, epochs: int) -> list[dict]:
    runs = []
    for nproc, threads in ((1, 1), (1, 2), (2, 1)):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", "-m", "bench.scale_train", features, model, str(epochs)]
        result = _run_json(cmd, env={"UNMASK_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)})
        result.update(processes=nproc, threads_per_process=threads)
        runs.append(result)
        print(f"  training {nproc} proc x {threads} thr: {result['epoch_seconds']:.2f} s/epoch", flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--work", default=str(ROOT / "bench" / "out" / "scale"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        print(json.dumps(child_memory(*rest) if kind == "memory" else child_score(*rest)))
        return

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes = dict(customers=300, days=40, score_rows=50_000, memory=(100_000, 1_000_000), epochs=2) \
        if args.quick else dict(customers=1000, days=60, score_rows=300_000,
                                memory=(1_000_000, 10_000_000), epochs=3)
    me = [sys.executable, "-m", "bench.scale"]  # run from ROOT (_run_json's cwd)
    started = time.perf_counter()
    print("preparing data and model ...", flush=True)
    data = prepare(work, sizes["customers"], sizes["days"], sizes["score_rows"])
    paths = data.pop("paths")

    print("scoring: local vs ray ...", flush=True)
    scoring = {engine: _run_json(me + ["--child", "score", paths["scoring"], str(work / f"scored-{engine}"),
                                       paths["model"], engine]) for engine in ("local", "ray")}
    scoring["identical"] = scores_identical(work / "scored-local", work / "scored-ray")
    scoring["ray_over_local"] = scoring["ray"]["rows_per_s"] / scoring["local"]["rows_per_s"]
    print(f"  local {scoring['local']['rows_per_s']:.0f} rows/s, ray {scoring['ray']['rows_per_s']:.0f} rows/s",
          flush=True)

    print("training under torchrun ...", flush=True)
    training = bench_training(paths["features"], paths["model"], sizes["epochs"])
    base = training[0]["epoch_seconds"]
    for run in training:
        run["speedup_vs_1x1"] = base / run["epoch_seconds"]

    print("memory: local streaming, growing input ...", flush=True)
    from finance.detector import FinanceModel

    columns = FinanceModel.load(paths["model"]).feature_names
    memory = []
    for rows in sizes["memory"]:
        path = work / f"synthetic-{rows}.parquet"
        synthetic_features(path, rows, columns)
        result = _run_json(me + ["--child", "memory", str(path), str(work / f"memory-out-{rows}")])
        memory.append(result)
        print(f"  {rows} rows: peak RSS {result['peak_rss_gib']:.2f} GiB", flush=True)

    result = {"benchmark": "scale", "quick": args.quick, "cpus": os.cpu_count(),
              "load_average_at_start": os.getloadavg(), "data": data, "scoring": scoring,
              "training": training, "memory": memory,
              "memory_ratio_largest_over_smallest": memory[-1]["peak_rss_gib"] / memory[0]["peak_rss_gib"],
              "total_seconds": time.perf_counter() - started}
    out = HERE / "results" / ("scale-quick.json" if args.quick else "scale.json")
    from core.io import write_text_atomic

    write_text_atomic(out, json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
