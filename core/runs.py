"""Run directories inside a workspace: a manifest JSON plus result files.

Layout::

    WORKSPACE/
      reviews.sqlite               the review store (see core.review_store)
      models/<vertical>/<name>/    bundles
      data/<vertical>/...          inputs the demo simulated
      runs/<vertical>/<run_id>/
        manifest.json              {"vertical", "run_id", "created", "kind", "params",
                                    "model", "inputs", "outputs": {name: relative path},
                                    "summary": {...}}
        ...result files named in outputs...

A run is built in a temporary directory and renamed into place when complete, so the
dashboard never sees a half-written run (``core.io.atomic_path``: a run never replaces its
inputs or a folder unmask did not write).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from . import verticals
from .errors import DataValidationError
from .io import atomic_path, read_json_object

MANIFEST = "manifest.json"


def new_run_id(prefix: str = "") -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}{stamp}-{secrets.token_hex(3)}"


class RunWriter:
    """Collects outputs for a run being written (inside ``create_run``)."""

    def __init__(self, directory: Path, manifest: dict):
        self.directory = directory
        self.manifest = manifest

    def path(self, name: str, filename: str) -> Path:
        """Register output ``name`` stored at ``filename`` (relative); return its path."""
        self.manifest["outputs"][name] = filename
        target = self.directory / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def summarize(self, **values) -> None:
        self.manifest["summary"].update(values)


@contextlib.contextmanager
def create_run(out_dir: str | os.PathLike, vertical: str, kind: str = "score",
               params: dict | None = None, model: str | None = None,
               inputs: list[str] | None = None, sources: Iterable = ()) -> Iterator[RunWriter]:
    """Write a run directory at ``out_dir`` atomically.

    Args:
        out_dir: the run directory; an existing one is replaced only if unmask wrote it.
        vertical, kind, params: recorded in the manifest.
        model: the model directory (recorded; the run may not overwrite it).
        inputs: the files scored (recorded; the run may not overwrite them).
        sources: further paths the user named as inputs (a log or image folder): not
            recorded, but guarded like ``inputs``.

    Example:
        >>> with create_run(ws / "runs" / "finance" / new_run_id(), "finance") as run:  # doctest: +SKIP
        ...     write_parquet_atomic(scores, run.path("scores", "scores.parquet"))
        ...     run.summarize(n_alerts=12)
    """
    manifest = {"vertical": vertical, "run_id": Path(out_dir).name, "kind": kind,
                "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "params": params or {}, "model": model, "inputs": inputs or [],
                "outputs": {}, "summary": {}}
    guarded = [*(inputs or []), model, *sources]
    with atomic_path(out_dir, inputs=guarded) as tmp:
        tmp.mkdir()
        writer = RunWriter(tmp, manifest)
        yield writer
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))


# What readers of a manifest rely on, and the JSON type each must have.
REQUIRED = {"vertical": str, "run_id": str, "created": str, "kind": str, "params": dict,
            "inputs": list, "outputs": dict, "summary": dict}


def load_manifest(run_dir: str | os.PathLike) -> dict:
    """Read and check ``run_dir/manifest.json``.

    Raises:
        DataValidationError: no manifest, or one that is not the JSON object documented in
            docs/runs.md (a run directory can come from anyone).
    """
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise DataValidationError(f"{run_dir}: not a run directory (no {MANIFEST})")
    manifest = read_json_object(path)
    for key, kind in REQUIRED.items():
        if not isinstance(manifest.get(key), kind):
            raise DataValidationError(f"{path}: {key!r} is missing or not a {kind.__name__}")
    manifest["path"] = str(Path(run_dir))
    return manifest


def list_runs(workspace: str | os.PathLike, vertical: str | None = None) -> list[dict]:
    """Manifests of all complete runs, newest first."""
    root = Path(workspace) / "runs"
    found = []
    for v in ([vertical] if vertical else verticals.names()):
        base = root / v
        if not base.is_dir():
            continue
        for run_dir in base.iterdir():
            if run_dir.name.startswith(".") or not (run_dir / MANIFEST).is_file():
                continue
            found.append(load_manifest(run_dir))
    return sorted(found, key=lambda m: m["created"], reverse=True)


def read_items(run_dir: str | os.PathLike) -> pd.DataFrame:
    """A run's per-item table (one row per transaction, case or frame): the output its
    vertical's spec names (``VerticalSpec.run_table``)."""
    manifest = load_manifest(run_dir)
    table = verticals.get(manifest["vertical"]).run_table
    relative = manifest["outputs"].get(table)
    if not isinstance(relative, str):
        raise DataValidationError(f"{Path(run_dir) / MANIFEST}: no {table!r} among the outputs")
    path = Path(run_dir) / relative
    if not path.resolve().is_relative_to(Path(run_dir).resolve()):  # a manifest is untrusted
        raise DataValidationError(f"{Path(run_dir) / MANIFEST}: output {table!r} points outside "
                                  f"the run ({relative})")
    if not path.is_file():
        raise DataValidationError(f"{path}: file not found (is the run complete?)")
    return pd.read_parquet(path)
