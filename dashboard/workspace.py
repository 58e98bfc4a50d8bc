"""Which workspace the dashboard shows, and the overview of its runs and reviews."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from core import verticals
from core.review_store import ReviewStore
from core.runs import list_runs

ENV_VAR = "UNMASK_WORKSPACE"
DEFAULT_WORKSPACE = "unmask-workspace"
REVIEW_FILE = "reviews.sqlite"
# From the verticals' specs: which review kind closes a run's items, what counts them,
# and each vertical's title.
REVIEW_KIND = {spec.name: spec.review_kind for spec in verticals.specs()}
ITEM_COUNT = {spec.name: spec.item_count for spec in verticals.specs()}
VERTICAL_TITLES = {spec.name: spec.title for spec in verticals.specs()}


def resolve_workspace(argv: list[str] | None = None) -> Path:
    """The workspace: ``--workspace DIR`` in ``argv``, else ``$UNMASK_WORKSPACE``, else
    ``./unmask-workspace``; returned absolute (it need not exist)."""
    argv = list(argv or [])
    for i, arg in enumerate(argv):
        if arg == "--workspace" and i + 1 < len(argv):
            return Path(argv[i + 1]).expanduser().resolve()
        if arg.startswith("--workspace="):
            return Path(arg.split("=", 1)[1]).expanduser().resolve()
    return Path(os.environ.get(ENV_VAR) or DEFAULT_WORKSPACE).expanduser().resolve()


def review_store(workspace: str | os.PathLike) -> ReviewStore:
    return ReviewStore(Path(workspace) / REVIEW_FILE)


def create_command(workspace: str | os.PathLike) -> str:
    """The command that builds a demo workspace at ``workspace``."""
    return f"unmask demo --workspace {workspace}"


def runs(workspace: str | os.PathLike, vertical: str) -> list[dict]:
    """Manifests of ``vertical``'s runs, newest first ([] when the workspace is missing)."""
    return list_runs(workspace, vertical) if Path(workspace).is_dir() else []


def reviewed_items(workspace: str | os.PathLike, vertical: str,
                   run_id: str | None = None) -> pd.DataFrame:
    """Current review state (latest event per item) of ``vertical``; only ``run_id``'s
    events when given. Empty frame when there is no review store yet."""
    path = Path(workspace) / REVIEW_FILE
    if not path.is_file():
        return pd.DataFrame(columns=["item_id", "decision", "reviewer", "note", "run_id",
                                     "created_at"])
    current = review_store(workspace).current(vertical, REVIEW_KIND[vertical])
    if run_id is not None and not current.empty:
        current = current[current["run_id"] == run_id]
    return current.reset_index(drop=True)


def overview(workspace: str | os.PathLike) -> pd.DataFrame:
    """One row per run: vertical, run id, created, items, alerts, alert rate, reviewed.

    ``reviewed`` counts the run's items with a current review (dispositions, reviews or
    bookmarks recorded against this run id).
    """
    rows = []
    for vertical in verticals.names():
        reviews = reviewed_items(workspace, vertical)
        for manifest in runs(workspace, vertical):
            summary = manifest.get("summary", {})
            items = summary.get(ITEM_COUNT[vertical])
            alerts = summary.get("n_alerts")
            reviewed = int((reviews["run_id"] == manifest["run_id"]).sum()) if len(reviews) else 0
            rate = float(alerts) / float(items) if items and alerts is not None else float("nan")
            rows.append({"vertical": vertical, "run_id": manifest["run_id"],
                         "created": manifest.get("created"), "kind": manifest.get("kind"),
                         "items": items, "alerts": alerts, "alert_rate": rate,
                         "reviewed": reviewed,
                         "auroc": summary.get("auroc"), "path": manifest["path"]})
    columns = ["vertical", "run_id", "created", "kind", "items", "alerts", "alert_rate",
               "reviewed", "auroc", "path"]
    return pd.DataFrame(rows, columns=columns)


def vertical_totals(table: pd.DataFrame) -> pd.DataFrame:
    """Per vertical: number of runs and the latest run's items, alerts, rate, reviewed."""
    rows = []
    for vertical in verticals.names():
        part = table[table["vertical"] == vertical]
        if part.empty:
            rows.append({"vertical": vertical, "runs": 0, "items": 0, "alerts": 0,
                         "alert_rate": float("nan"), "reviewed": 0, "review_progress": float("nan")})
            continue
        latest = part.sort_values("created").iloc[-1]
        alerts = latest["alerts"] if pd.notna(latest["alerts"]) else 0
        progress = min(1.0, latest["reviewed"] / alerts) if alerts else float("nan")
        rows.append({"vertical": vertical, "runs": len(part), "items": latest["items"],
                     "alerts": alerts, "alert_rate": latest["alert_rate"],
                     "reviewed": int(latest["reviewed"]), "review_progress": progress})
    return pd.DataFrame(rows)
