"""``unmask demo``: build a demo workspace by running each vertical's ``build_demo``.

Each vertical simulates data into ``WS/data/<vertical>``, trains quick models into
``WS/models/<vertical>`` and scores a run into ``WS/runs/<vertical>`` (docs/runs.md).

Each build runs in its own child process (a fresh interpreter) that exits when it
is done, so torch, MONAI, numba and their memory leave with it and the ``unmask demo``
process that then serves the dashboard stays small. The child records itself in
``WS/.demo/<vertical>.json`` (pid, seconds, run directory or error) and its progress
loops' position in ``WS/.demo/<vertical>.progress``, which the parent shows.

Example:
    >>> results = build_workspace("unmask-workspace", size="tiny")   # doctest: +SKIP
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core.errors import DataValidationError
from core.runs import load_manifest
from core.runtime import limit_thread_env, read_progress, report_progress_to
from core.verticals import get as get_vertical, names as vertical_names

SIZES = ("small", "tiny")
BUILD_LOGS = ".demo"   # WS/.demo/<vertical>.json and .progress


@dataclass
class DemoResult:
    """What one vertical's demo build produced (``error`` set when it failed)."""

    vertical: str
    seconds: float
    run_dir: Path | None = None
    summary: dict = field(default_factory=dict)
    error: str | None = None
    details: str | None = None


def builder_ref(vertical: str) -> str:
    """``"module:function"`` of ``vertical``'s demo builder (``VerticalSpec.demo``), which a
    child process imports."""
    return get_vertical(vertical).demo


def builder(vertical: str) -> Callable:
    """The demo builder ``vertical``'s spec names (``VerticalSpec.demo``)."""
    return get_vertical(vertical).demo_builder()


def _import_builder(ref: str) -> Callable:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


class DemoBuildError(Exception):
    """A vertical's build failed in its child process (``details``: the child's traceback)."""

    def __init__(self, message: str, details: str | None = None):
        super().__init__(message)
        self.details = details


def build_log(workspace, vertical: str) -> Path:
    """``WS/.demo/<vertical>.json``: what the child that built ``vertical`` recorded."""
    return Path(workspace) / BUILD_LOGS / f"{vertical}.json"


def run_in_child(vertical: str, workspace: Path, size: str, seed: int,
                 on_tick: Callable[[str], None] | None = None, tick_s: float = 1.0) -> Path:
    """Build ``vertical`` in a child interpreter; return its run directory.

    The child is a fresh ``python -c`` that imports this module and calls
    :func:`_build_child`, never the parent's ``__main__`` (multiprocessing's 'spawn' would
    re-import that: under Streamlit or a test runner it is a script that must not run
    twice). It sees the parent's ``sys.path``; its output goes to ``WS/.demo/<vertical>.log``.

    Args:
        on_tick: called about every ``tick_s`` seconds with the child's progress line.

    Raises:
        DemoBuildError: the build raised, or the child died without a record.
    """
    log = build_log(workspace, vertical)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    status = log.with_suffix(".progress")
    request = dict(vertical=vertical, ref=builder_ref(vertical), workspace=str(workspace),
                   size=size, seed=seed, log=str(log), status=str(status))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    with open(log.with_suffix(".log"), "w") as output:
        child = subprocess.Popen([sys.executable, "-c", CHILD_ENTRY, json.dumps(request)],
                                 env=env, stdout=output, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
        try:
            while _wait(child, tick_s) is None:
                if on_tick is not None:
                    on_tick(read_progress(status))
        finally:
            if child.poll() is None:  # the parent was interrupted: take the build down with it
                child.kill()
                child.wait()
    if not log.exists():
        raise DemoBuildError(f"the {vertical} build process died (exit code {child.returncode}); "
                             f"its output is in {log.with_suffix('.log')}")
    record = json.loads(log.read_text())
    if record.get("error"):
        raise DemoBuildError(record["error"], record.get("details"))
    return Path(record["run_dir"])


CHILD_ENTRY = "import sys, json; from dashboard.demo import _build_child; _build_child(**json.loads(sys.argv[1]))"


def _wait(child: subprocess.Popen, seconds: float) -> int | None:
    try:
        return child.wait(seconds)
    except subprocess.TimeoutExpired:
        return None


def _build_child(vertical: str, ref: str, workspace: str, size: str, seed: int, log: str,
                 status: str) -> None:
    """The child's body: thread budget first (before torch/numba start pools), then build."""
    limit_thread_env()
    report_progress_to(status)
    started = time.perf_counter()
    record = {"vertical": vertical, "pid": os.getpid(), "size": size, "seed": seed,
              "started_at": time.time()}
    try:
        record["run_dir"] = str(_import_builder(ref)(Path(workspace), size=size, seed=seed))
    except Exception as err:  # recorded for the parent, which reports it per vertical
        record.update(error=f"{type(err).__name__}: {err}", details=traceback.format_exc())
    record["seconds"] = time.perf_counter() - started
    scratch = Path(log).with_suffix(".tmp")
    scratch.write_text(json.dumps(record, indent=1))
    os.replace(scratch, log)  # the parent sees a whole record or none


def build_workspace(workspace, size: str = "small", seed: int = 0, verticals=None,
                    on_start: Callable[[int, str], None] | None = None,
                    on_done: Callable[[DemoResult], None] | None = None,
                    on_tick: Callable[[str, str], None] | None = None) -> list[DemoResult]:
    """Run the verticals' demo builders in turn, each in a child process
    (:func:`run_in_child`); a failing one does not stop the others.

    Args:
        workspace: the workspace directory (created when missing).
        size: ``"small"`` (the demo) or ``"tiny"`` (tests).
        seed: passed to every builder.
        verticals: names of the verticals to build, in order (default: all of them).
        on_start: called with (position, vertical) before each build (progress display).
        on_done: called with each ``DemoResult``.
        on_tick: called about once a second with (vertical, the child's progress line).

    Returns:
        One ``DemoResult`` per vertical.
    """
    if size not in SIZES:
        raise DataValidationError(f"demo size must be one of {list(SIZES)}, got {size!r}")
    workspace = Path(workspace).resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    results = []
    for position, vertical in enumerate(vertical_names() if verticals is None else verticals):
        if on_start is not None:
            on_start(position, vertical)
        started = time.perf_counter()
        try:
            tick = None if on_tick is None else (lambda line, v=vertical: on_tick(v, line))
            run_dir = run_in_child(vertical, workspace, size, seed, on_tick=tick)
            result = DemoResult(vertical, time.perf_counter() - started, run_dir,
                                load_manifest(run_dir).get("summary", {}))
        except Exception as err:  # reported per vertical; the others still build
            result = DemoResult(vertical, time.perf_counter() - started,
                                error=(str(err) if isinstance(err, DemoBuildError)
                                       else f"{type(err).__name__}: {err}"),
                                details=getattr(err, "details", None) or traceback.format_exc())
        results.append(result)
        if on_done is not None:
            on_done(result)
    return results


def describe(result: DemoResult) -> str:
    """One line about a result: counts and quality where the run states them."""
    if result.error:
        return f"{result.vertical}: FAILED after {result.seconds:.0f} s ({result.error})"
    s = result.summary
    spec = get_vertical(result.vertical)
    parts = [f"{s.get(spec.item_count, '?')} {spec.item_noun}", f"{s.get('n_alerts', '?')} alerts"]
    if s.get("auroc") is not None:
        parts.append(f"AUROC {float(s['auroc']):.3f}")
    return (f"{result.vertical}: {', '.join(parts)} in {result.seconds:.0f} s -> "
            f"{result.run_dir}")
