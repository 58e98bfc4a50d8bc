"""``unmask demo``: build a demo workspace by running each vertical's ``build_demo``.

Each vertical simulates data into ``WS/data/<vertical>``, trains quick models into
``WS/models/<vertical>`` and scores a run into ``WS/runs/<vertical>`` (docs/runs.md).

Example:
    >>> results = build_workspace("unmask-workspace", size="tiny")   # doctest: +SKIP
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core.errors import DataValidationError
from core.runs import load_manifest
from core.verticals import get as get_vertical, names as vertical_names

SIZES = ("small", "tiny")


@dataclass
class DemoResult:
    """What one vertical's demo build produced (``error`` set when it failed)."""

    vertical: str
    seconds: float
    run_dir: Path | None = None
    summary: dict = field(default_factory=dict)
    error: str | None = None
    details: str | None = None


def builder(vertical: str) -> Callable:
    """The demo builder ``vertical``'s spec names (``VerticalSpec.demo``)."""
    return get_vertical(vertical).demo_builder()


def build_workspace(workspace, size: str = "small", seed: int = 0, verticals=None,
                    on_start: Callable[[int, str], None] | None = None,
                    on_done: Callable[[DemoResult], None] | None = None) -> list[DemoResult]:
    """Run the verticals' demo builders in turn; a failing one does not stop the others.

    Args:
        workspace: the workspace directory (created when missing).
        size: ``"small"`` (the demo) or ``"tiny"`` (tests).
        seed: passed to every builder.
        verticals: names of the verticals to build, in order (default: all of them).
        on_start: called with (position, vertical) before each build (progress display).
        on_done: called with each ``DemoResult``.

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
            run_dir = Path(builder(vertical)(workspace, size=size, seed=seed))
            result = DemoResult(vertical, time.perf_counter() - started, run_dir,
                                load_manifest(run_dir).get("summary", {}))
        except Exception as err:  # reported per vertical; the others still build
            result = DemoResult(vertical, time.perf_counter() - started,
                                error=f"{type(err).__name__}: {err}",
                                details=traceback.format_exc())
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
