"""Does the same ``unmask demo`` command on the same machine give the same results?

Not part of the benchmark. Builds ``unmask demo --size small`` (the console script's
``core.cli``) into one workspace per run, each at its own ``UNMASK_NUM_THREADS``, and
compares each run with the first run at its thread count (the first of a thread count with
the very first run). Per vertical: the run summary's alerts and AUROC, the largest score
difference and the items alerted in one run only (items matched by id); and for each file
of the run, the model and the simulated data (matched by their path under the vertical's
folder) the largest absolute difference and the number of differing values, NaN equal
to NaN everywhere:

* Parquet: rows matched by the table's id columns (those of ``ID_COLUMNS`` it holds, when
  they name every row once in both tables; else by position: each file's
  ``rows_matched_by`` says which), then numeric columns and array cells value by value;
  text (each workspace's own path written ``WS``) and flags counted as differing values;
* ``.safetensors``: every tensor; ``.nii.gz``: the voxel array;
* ``.json`` (model configs, run manifests, dataset lists): every leaf by its path, text
  with the workspace's path written ``WS``, keys named in ``JSON_IGNORED`` (when a run was
  made, its timestamped id, wall-clock seconds) left out; each place's
  ``json_fields_ignored`` lists them per file.

A workspace that already holds a finished build (``WS/.demo/<vertical>.json`` for every
vertical, none failed) is compared as it is, not rebuilt. With ``--rescore-threads T`` the
first run's driving model also scores its logs again at T threads (training apart from
scoring). Writes ``bench/results/demo_repeatability.json``.

Example::

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.demo_repeatability \\
        --work /tmp/demo-repeat --runs a:1 b:1 c:2 d:2 --rescore-threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.numpy import load_file

from core.io import write_text_atomic
from core.runtime import configure_threads
from core.verticals import names as vertical_names

OUT = Path(__file__).resolve().parents[1] / "results" / "demo_repeatability.json"
COMPARED = (".parquet", ".safetensors", ".nii.gz", ".json")
# columns naming a table's rows: runs may write the same rows in another order
ID_COLUMNS = ("transaction_id", "case", "log_id", "frame", "region", "feature")
# JSON keys that differ between identical builds: a run's creation time and its id (a
# timestamp and a random suffix), and wall-clock seconds of training
JSON_IGNORED = ("created", "run_id", "seconds")
MISSING = object()  # a JSON leaf one file lacks
# each run's scores: file and the columns naming an item
SCORES = {"finance": ("scores.parquet", ["transaction_id"]),
          "medical": ("scores.parquet", ["case"]),
          "driving": ("frames.parquet", ["log_id", "frame"])}
PLACES = ("runs", "models", "data")


def demo_command(workspace: Path) -> list[str]:
    return [sys.executable, "-m", "core.cli", "demo", "--size", "small",
            "--workspace", str(workspace)]


def finished(workspace: Path) -> bool:
    """Whether ``workspace`` holds a build of every vertical, none of them failed."""
    logs = [workspace / ".demo" / f"{v}.json" for v in vertical_names()]
    return all(p.exists() and not json.loads(p.read_text()).get("error") for p in logs)


def build(workspace: Path, threads: int) -> None:
    """``unmask demo --size small`` into ``workspace`` at ``threads`` threads, unless a
    finished build is there."""
    if finished(workspace):
        return
    env = dict(os.environ, UNMASK_NUM_THREADS=str(threads))
    subprocess.run(demo_command(workspace), env=env, check=True)


def run_dir(workspace: Path, vertical: str) -> Path:
    """The (single) run the demo wrote for ``vertical``."""
    (manifest,) = (workspace / "runs" / vertical).glob("*/manifest.json")
    return manifest.parent


def summary(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())["summary"]


def _relative_files(folder: Path) -> dict[str, Path]:
    """Compared files under ``folder`` by path, the run id's folder name left out."""
    files = {}
    for path in folder.rglob("*"):
        if path.is_file() and path.name.endswith(COMPARED):
            parts = path.relative_to(folder).parts
            key = "/".join(parts[1:]) if folder.parent.name == "runs" else "/".join(parts)
            files[key] = path
    return files


def _vertical_files(place: Path, vertical: str) -> dict[str, Path]:
    """Compared files of ``vertical`` under ``place`` (``data/driving`` and
    ``data/driving_train`` both belong to driving), keyed by folder and relative path."""
    files = {}
    for folder in place.glob(f"{vertical}*"):
        files.update({f"{folder.name}/{key}": path
                      for key, path in _relative_files(folder).items()})
    return files


def _differing(a, b) -> np.ndarray:
    """Which values of two equally shaped arrays differ (NaN equals NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    return ~((a == b) | (np.isnan(a) & np.isnan(b)))


def _array_difference(a, b) -> float:
    """Largest absolute difference of two arrays; NaN equals NaN, NaN against a number is inf."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    if np.array_equal(a, b, equal_nan=True):
        return 0.0
    diff = np.abs(a - b)
    diff[~_differing(a, b)] = 0.0                         # equal infinities, NaN on both sides
    diff[np.isnan(diff)] = np.inf                         # NaN on one side only
    return float(diff.max())


def _same(x, y, workspaces: tuple[Path, Path]) -> bool:
    """Whether two cells of a non-numeric column are equal: text with each workspace's own
    path written ``WS`` (runs name their input files), arrays value by value."""
    if isinstance(x, str) and isinstance(y, str):
        return x.replace(str(workspaces[0]), "WS") == y.replace(str(workspaces[1]), "WS")
    if isinstance(x, (np.ndarray, list)) or isinstance(y, (np.ndarray, list)):
        return _array_difference(x, y) == 0.0
    if pd.isna(x) or pd.isna(y):
        return bool(pd.isna(x) and pd.isna(y))
    return bool(x == y)


def _frame_difference(a: pd.DataFrame, b: pd.DataFrame, workspaces) -> dict:
    """Largest absolute difference of two frames' numbers (numeric columns and array
    cells, row by row) and how many values differ at all (text, flags and numbers), in
    all and per differing column."""
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return {"max_abs_difference": float("inf"), "values_differing": max(len(a), len(b))}
    columns = {}
    for column in a.columns:
        left, right = a[column].to_numpy(), b[column].to_numpy()
        if all(np.issubdtype(v.dtype, np.number) for v in (left, right)):
            left, right = left.astype(np.float64), right.astype(np.float64)
            same = ~_differing(left, right)
            largest = _array_difference(left, right)
        else:
            same = np.array([_same(x, y, workspaces) for x, y in zip(left, right)], bool)
            largest = max([0.0] + [_array_difference(x, y) for x, y in zip(left, right)
                                   if isinstance(x, np.ndarray)])
        if not same.all():
            columns[column] = {"max_abs_difference": largest,
                               "values_differing": int((~same).sum())}
    return {"max_abs_difference": max((c["max_abs_difference"] for c in columns.values()),
                                      default=0.0),
            "values_differing": sum(c["values_differing"] for c in columns.values()),
            "columns": columns}


def _matched(a: pd.DataFrame, b: pd.DataFrame):
    """Two tables with their rows in the order of their id columns, and those columns
    (``"position"`` where they have none naming every row once in both)."""
    ids = [c for c in ID_COLUMNS if c in a.columns and c in b.columns]
    if not ids or a.duplicated(ids).any() or b.duplicated(ids).any():
        return a, b, "position"
    left, right = (t.sort_values(ids, kind="stable", ignore_index=True) for t in (a, b))
    return left, right, ids


def _leaves(value, path: str = ""):
    """(path, value) of every leaf of a parsed JSON document, paths like ``a.b[0].c``."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{path}[{index}]")
    else:
        yield path, value


def _ignored(path: str) -> bool:
    return path.rsplit(".", 1)[-1].split("[")[0] in JSON_IGNORED


def _leaf_difference(x, y) -> float:
    """Largest absolute difference of two JSON leaves: numbers by value, other leaves 0,
    a leaf on one side only (``MISSING``) or a number against another type inf."""
    numbers = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y)]
    if all(numbers):
        return _array_difference([x], [y])
    return float("inf") if any(numbers) or MISSING in (x, y) else 0.0


def _json_difference(a: Path, b: Path, workspaces) -> dict:
    """Largest absolute difference of two JSON files' numbers and how many leaves differ
    (the differing paths with list indices written ``[]``); ``JSON_IGNORED`` keys left
    out and listed."""
    left, right = (dict(_leaves(json.loads(p.read_text()))) for p in (a, b))
    paths = sorted(set(left) | set(right))
    ignored = [p for p in paths if _ignored(p)]
    differing = [p for p in paths if not _ignored(p)
                 and (p not in left or p not in right
                      or not _same(left[p], right[p], workspaces))]
    return {"max_abs_difference": max((_leaf_difference(left.get(p, MISSING),
                                                        right.get(p, MISSING))
                                       for p in differing), default=0.0),
            "values_differing": len(differing),
            "fields": sorted({re.sub(r"\[\d+\]", "[]", p) for p in differing}),
            "ignored": ignored}


def file_difference(a: Path, b: Path, workspaces: tuple[Path, Path]) -> dict:
    """Largest absolute difference between two files of one kind and how many values
    differ (see the module doc)."""
    if a.name.endswith(".parquet"):
        left, right, ids = _matched(pd.read_parquet(a), pd.read_parquet(b))
        return {"rows_matched_by": ids, **_frame_difference(left, right, workspaces)}
    if a.name.endswith(".json"):
        return _json_difference(a, b, workspaces)
    if a.name.endswith(".safetensors"):
        left, right = load_file(a), load_file(b)
        pairs = [(left[k], right.get(k)) for k in sorted(set(left) | set(right))]
    else:
        import nibabel  # the medical extra's
        pairs = [(np.asarray(nibabel.load(a).dataobj), np.asarray(nibabel.load(b).dataobj))]
    if any(x is None or y is None or x.shape != y.shape for x, y in pairs):
        return {"max_abs_difference": float("inf"), "values_differing": None}
    return {"max_abs_difference": max(_array_difference(x, y) for x, y in pairs),
            "values_differing": int(sum(_differing(x, y).sum() for x, y in pairs))}


def item_difference(run_a: Path, run_b: Path, vertical: str) -> dict:
    """Largest absolute difference of two runs' scores and the number of items alerted in
    one run only, item by item (matched by their ids: the runs may rank them differently)."""
    filename, ids = SCORES[vertical]
    left, right = (pd.read_parquet(run / filename).set_index(ids).sort_index()
                   for run in (run_a, run_b))
    if not left.index.equals(right.index):
        return {"max_score_difference": float("inf"), "alerts_differing": None}
    return {"max_score_difference": _array_difference(left["score"].to_numpy(),
                                                      right["score"].to_numpy()),
            "alerts_differing": int((left["is_alert"] != right["is_alert"]).sum())}


def _how_matched(differences: dict) -> dict:
    """Per file: the id columns its rows were matched by (Parquet) and the JSON fields
    left out (those with any)."""
    return {"rows_matched_by": {k: d["rows_matched_by"] for k, d in differences.items()
                                if "rows_matched_by" in d},
            "json_fields_ignored": {k: d["ignored"] for k, d in differences.items()
                                    if d.get("ignored")}}


def compare_vertical(a: Path, b: Path, vertical: str) -> dict:
    """Alerts, AUROC, score and alert differences and per-file largest differences of
    ``vertical`` in two workspaces."""
    run_a, run_b = run_dir(a, vertical), run_dir(b, vertical)
    left, right = summary(run_a), summary(run_b)
    row = {"alerts": [left.get("n_alerts"), right.get("n_alerts")],
           "auroc": [left.get("auroc"), right.get("auroc")],
           **item_difference(run_a, run_b, vertical),
           "summary_keys_differing": sorted(k for k in set(left) | set(right)
                                            if left.get(k) != right.get(k))}
    for place in PLACES:
        files_a = _vertical_files(a / place, vertical)
        files_b = _vertical_files(b / place, vertical)
        differences = {key: file_difference(files_a[key], files_b[key], (a, b))
                       for key in sorted(set(files_a) & set(files_b))}
        differing = {k: d for k, d in differences.items() if d["values_differing"] != 0}
        row[place] = {"files": len(differences), "files_differing": len(differing),
                      "max_abs_difference": max((d["max_abs_difference"]
                                                 for d in differences.values()), default=0.0),
                      "missing": sorted(set(files_a) ^ set(files_b)), "differing": differing,
                      **_how_matched(differences)}
    return row


def _cpu_model() -> str | None:
    """The CPU's model name (Linux's ``/proc/cpuinfo``), None elsewhere."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines
                 if line.startswith("model name")), None)


def environment() -> dict:
    """Versions of the packages the demo's numbers rest on, and the CPU (a fresh virtual
    environment or another machine may move them)."""
    return {"python": platform.python_version(), "cpu": _cpu_model(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),  # oneDNN's kernels
            **{name: version(name) for name in ("torch", "numpy", "scipy", "numba", "pandas",
                                                "pyarrow", "monai", "shap", "scikit-learn")}}


def pairs(runs: list[tuple[str, int]]) -> list[tuple[str, str]]:
    """(reference, run) for every run after the first: the reference is the first run at
    the same thread count, or the very first run for the first of a thread count."""
    first_at = {}
    for name, threads in runs:
        first_at.setdefault(threads, name)
    return [(first_at[t] if first_at[t] != name else runs[0][0], name) for name, t in runs[1:]]


def rescore_driving(workspace: Path, out: Path, threads: int) -> dict:
    """Score ``workspace``'s driving logs again with its model at ``threads`` threads, as
    the demo does (``driving.demo.build_demo``); alerts, AUROC and the differences from
    the demo's run (:func:`item_difference`)."""
    from driving.demo import SIZES
    from driving.scoring.run import score_logs

    in_force = configure_threads(threads)
    size = SIZES["small"]
    run = score_logs(workspace / "models" / "driving" / "default", workspace / "data" / "driving",
                     out, top_frames=size["top_frames"], shap_evals=size["shap_evals"],
                     progress=False)
    rescored = summary(run)
    return {"threads_requested": threads, "threads": in_force,
            "alerts": rescored["n_alerts"], "auroc": rescored.get("auroc"),
            **item_difference(run_dir(workspace, "driving"), run, "driving")}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder of the workspaces")
    parser.add_argument("--runs", nargs="+", default=["a:1", "b:1", "c:2", "d:2"],
                        help="NAME:THREADS per build")
    parser.add_argument("--rescore-threads", type=int, default=None,
                        help="score the first run's driving logs again at this thread count")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    work = args.work.resolve()  # the runs name their inputs by resolved path
    runs = [(name, int(threads)) for name, threads in (r.split(":") for r in args.runs)]
    for name, threads in runs:
        build(work / name, threads)
    threads_of = dict(runs)
    result = {"command": "UNMASK_NUM_THREADS=T nice -n 10 python -m core.cli demo --size small "
                         "--workspace WORK/NAME (one per run); compared with python -m "
                         f"bench.experiments.demo_repeatability --work WORK --runs "
                         f"{' '.join(args.runs)}"
                         + (f" --rescore-threads {args.rescore_threads}"
                            if args.rescore_threads else ""),
              "runs": threads_of, "environment": environment(),
              "comparisons": {f"{ref}(t{threads_of[ref]}) vs {name}(t{threads_of[name]})":
                              {v: compare_vertical(work / ref, work / name, v)
                               for v in vertical_names()}
                              for ref, name in pairs(runs)}}
    if args.rescore_threads:
        first = runs[0][0]
        out = work / f"{first}_driving_rescored_t{args.rescore_threads}"
        result[f"{first}_driving_rescored"] = rescore_driving(work / first, out,
                                                              args.rescore_threads)
    write_text_atomic(args.out, json.dumps(result, indent=1, default=float) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=1, default=float))
