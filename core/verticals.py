"""What a vertical is, told by the vertical itself: :class:`VerticalSpec`.

Each vertical publishes one spec in its ``spec.py`` through the ``unmask.verticals``
entry-point group (``pyproject.toml``); core and the dashboard know verticals only through
:func:`specs`. A separate group from ``unmask.commands``: that one holds click commands
(``demo`` and ``dashboard`` too, which are no verticals), and listing the verticals -- for
the runs of a workspace or the review vocabulary -- should not import any CLI.

A spec module stays light (no torch, DuckDB, MONAI): its demo builder is named as
``"module:function"`` and imported only when a demo is built.

Example (``finance/spec.py``)::

    SPEC = VerticalSpec(name="finance", title="Finance (card transactions)",
                        review_kind="disposition",
                        decisions=("fraud", "legitimate", "needs_information"),
                        demo="finance.demo:build_demo", run_table="scores", ...)

    >>> [spec.name for spec in specs()]                  # doctest: +SKIP
    ['finance', 'medical', 'driving']
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable

from .errors import DataValidationError

GROUP = "unmask.verticals"


@dataclass(frozen=True)
class VerticalSpec:
    """One vertical, as core and the dashboard see it.

    Args:
        name: the vertical's package and folder name in a workspace (``runs/<name>/``).
        title: shown on the dashboard.
        review_kind: the review store's ``kind`` of this vertical's decisions.
        decisions: the review vocabulary (spelled here once; the store refuses others).
        demo: ``"module:function"`` building a demo run: ``f(workspace, size=, seed=)``
            returns the run directory.
        demo_description: one line on what the demo does.
        run_table: the run output (manifest ``outputs`` name) holding one row per item;
            :func:`core.runs.read_items` reads it.
        item_count: the manifest ``summary`` key counting a run's items ...
        item_noun: ... and what those items are called ("transactions").
        score_hint: how a user scores their own data (a CLI command).
        order: position among the verticals (lists, menus, help).
        palette: optional class name -> RGB colour of label maps.
    """

    name: str
    title: str
    review_kind: str
    decisions: tuple[str, ...]
    demo: str
    demo_description: str
    run_table: str
    item_count: str
    item_noun: str
    score_hint: str
    order: int = 100
    palette: dict[str, tuple[int, int, int]] | None = None

    def demo_builder(self) -> Callable:
        """The demo builder (imported now: it loads the vertical's heavy dependencies)."""
        module, _, attr = self.demo.partition(":")
        return getattr(importlib.import_module(module), attr)


@functools.cache
def specs() -> tuple[VerticalSpec, ...]:
    """Every installed vertical's spec, by ``order`` then name."""
    found = []
    for ep in entry_points(group=GROUP):
        spec = ep.load()
        if not isinstance(spec, VerticalSpec) or spec.name != ep.name:
            raise TypeError(f"entry point {ep.name} = {ep.value} in {GROUP!r} is not the "
                            f"VerticalSpec named {ep.name!r}")
        found.append(spec)
    return tuple(sorted(found, key=lambda s: (s.order, s.name)))


def names() -> tuple[str, ...]:
    """The installed verticals' names, in order."""
    return tuple(spec.name for spec in specs())


def get(name: str) -> VerticalSpec:
    """The spec of vertical ``name``; an unknown name is the user's error."""
    for spec in specs():
        if spec.name == name:
            return spec
    raise DataValidationError(f"unknown vertical {name!r}; choose from {list(names())}")
