"""Does the same ``unmask demo`` command on the same machine give the same results?

Not part of the benchmark. Builds ``unmask demo --size small`` (the console script's
``core.cli``) into one workspace per run, each at its own ``UNMASK_NUM_THREADS``, and
compares every run with the first: per vertical the run summary's alerts and AUROC, and
for each file of the run, the model and the simulated data (matched by their path under
the vertical's folder) the largest absolute difference of any value:

* Parquet: numeric columns compared value by value (NaN equals NaN), other columns
  counted as differing rows;
* ``.safetensors``: every tensor; ``.nii.gz``: the voxel array.

A workspace that already holds a finished build (``WS/.demo/<vertical>.json`` for every
vertical, none failed) is compared as it is, not rebuilt. Writes
``bench/results/demo_repeatability.json``.

Example::

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.demo_repeatability \\
        --work /tmp/demo-repeat --runs a:1 b:1 c:2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from safetensors.numpy import load_file

from core.io import write_text_atomic
from core.verticals import names as vertical_names

OUT = Path(__file__).resolve().parents[1] / "results" / "demo_repeatability.json"
COMPARED = (".parquet", ".safetensors", ".nii.gz")
PLACES = ("runs", "models", "data")


def demo_command(workspace: Path) -> list[str]:
    return [sys.executable, "-m", "core.cli", "demo", "--size", "small",
            "--workspace", str(workspace)]


def finished(workspace: Path) -> bool:
    """Whether ``workspace`` holds a build of every vertical, none of them failed."""
    logs = [workspace / ".demo" / f"{v}.json" for v in vertical_names()]
    return all(p.exists() and not json.loads(p.read_text()).get("error") for p in logs)


def build(workspace: Path, threads: int) -> None:
    if finished(workspace):
        return
    env = dict(os.environ, UNMASK_NUM_THREADS=str(threads))
    subprocess.run(demo_command(workspace), env=env, check=True)


def summary(workspace: Path, vertical: str) -> dict:
    """The manifest summary of the (single) run the demo wrote for ``vertical``."""
    (manifest,) = (workspace / "runs" / vertical).glob("*/manifest.json")
    return json.loads(manifest.read_text())["summary"]


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


def _frame_difference(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Largest absolute difference of two frames' numeric values (inf: shapes or a
    non-numeric value differ)."""
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return float("inf")
    largest = 0.0
    for column in a.columns:
        left, right = a[column].to_numpy(), b[column].to_numpy()
        if np.issubdtype(left.dtype, np.number) and np.issubdtype(right.dtype, np.number):
            largest = max(largest, _array_difference(left, right))
        elif not all(x == y or (x != x and y != y) for x, y in zip(left, right)):
            return float("inf")
    return largest


def _array_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference of two arrays; NaN equals NaN, NaN against a number is inf."""
    if a.shape != b.shape:
        return float("inf")
    a, b = a.astype(np.float64), b.astype(np.float64)
    if np.array_equal(a, b, equal_nan=True):
        return 0.0
    diff = np.abs(a - b)
    diff[(a == b) | (np.isnan(a) & np.isnan(b))] = 0.0   # equal infinities, NaN on both sides
    diff[np.isnan(diff)] = np.inf                         # NaN on one side only
    return float(diff.max())


def _read_frame(path: Path, workspace: Path) -> pd.DataFrame:
    """A Parquet file with the workspace's own path in its text columns written ``WS``
    (runs name their input files)."""
    frame = pd.read_parquet(path)
    for column in frame.columns:
        if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].astype(str).str.replace(str(workspace), "WS", regex=False)
    return frame


def file_difference(a: Path, b: Path, workspaces: tuple[Path, Path]) -> float:
    """Largest absolute difference between two files of one kind (see the module doc)."""
    if a.name.endswith(".parquet"):
        return _frame_difference(_read_frame(a, workspaces[0]), _read_frame(b, workspaces[1]))
    if a.name.endswith(".safetensors"):
        left, right = load_file(a), load_file(b)
        if set(left) != set(right):
            return float("inf")
        return max((_array_difference(left[k], right[k]) for k in left), default=0.0)
    import nibabel  # the medical extra's
    return _array_difference(np.asarray(nibabel.load(a).dataobj),
                             np.asarray(nibabel.load(b).dataobj))


def compare_vertical(a: Path, b: Path, vertical: str) -> dict:
    """Alerts, AUROC and per-file largest differences of ``vertical`` in two workspaces."""
    left, right = summary(a, vertical), summary(b, vertical)
    row = {"alerts": [left.get("n_alerts"), right.get("n_alerts")],
           "auroc": [left.get("auroc"), right.get("auroc")],
           "summary_keys_differing": sorted(k for k in set(left) | set(right)
                                            if left.get(k) != right.get(k))}
    for place in PLACES:
        files_a = _vertical_files(a / place, vertical)
        files_b = _vertical_files(b / place, vertical)
        differences = {key: file_difference(files_a[key], files_b[key], (a, b))
                       for key in sorted(set(files_a) & set(files_b))}
        row[place] = {"files": len(differences),
                      "files_differing": sum(d > 0 for d in differences.values()),
                      "max_abs_difference": max(differences.values(), default=0.0),
                      "missing": sorted(set(files_a) ^ set(files_b)),
                      "differing": {k: d for k, d in differences.items() if d > 0}}
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
            **{name: version(name) for name in ("torch", "numpy", "scipy", "numba", "pandas",
                                                "pyarrow", "monai", "shap", "scikit-learn")}}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder of the workspaces")
    parser.add_argument("--runs", nargs="+", default=["a:1", "b:1", "c:2"],
                        help="NAME:THREADS per build; every run is compared with the first")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    work = args.work.resolve()  # the runs name their inputs by resolved path
    runs = [(name, int(threads)) for name, threads in (r.split(":") for r in args.runs)]
    for name, threads in runs:
        build(work / name, threads)
    (first, first_threads), others = runs[0], runs[1:]
    result = {"command": "UNMASK_NUM_THREADS=T nice -n 10 python -m core.cli demo --size small "
                         "--workspace WS (one per run); compared with python -m "
                         f"bench.experiments.demo_repeatability --runs {' '.join(args.runs)}",
              "runs": dict(runs), "environment": environment(),
              "comparisons": {f"{first}(t{first_threads}) vs {name}(t{threads})":
                              {v: compare_vertical(work / first, work / name, v)
                               for v in vertical_names()}
                              for name, threads in others}}
    write_text_atomic(args.out, json.dumps(result, indent=1, default=float) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=1, default=float))
