"""Whole-run statistics (the queue's bounds, the score-drift test) computed once per run and
kept as a small JSON file in the run's ``cache/`` folder.

Each reads every row of the run (0.4 s for the bounds, seconds for the drift test at 10 M
rows), and a fresh server would otherwise pay that again on its first page. The file name
hashes the sources' paths, sizes and modification times, so a republished run is never
served old numbers: its statistics are computed again. Writing is best effort: a read-only
run still shows them, computed on each server's first visit.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from core.errors import UnmaskError
from core.io import atomic_path, read_json_object

VERSION = 1


def fingerprint(path) -> list:
    """What identifies a file's content cheaply: resolved path, size, modification time."""
    path = Path(path)
    if not path.is_file():
        return [str(path)]
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def cache_entry(anchor, kind: str, key) -> Path:
    """``cache/<kind>-<digest>`` beside ``anchor`` (a run output); the digest hashes ``key``
    (JSON-ready: the sources' fingerprints and whatever else the entry depends on)."""
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]
    return Path(anchor).parent / "cache" / f"{kind}-{digest}"


def stats_path(anchor, kind: str, sources, key=None) -> Path:
    """``cache/<kind>-<digest>.json`` beside ``anchor`` (a run output), keyed by ``sources``
    and ``key`` (anything JSON-ready the statistics also depend on)."""
    entry = cache_entry(anchor, kind, [VERSION, kind, [fingerprint(s) for s in sources], key])
    return entry.with_name(entry.name + ".json")


def cached(anchor, kind: str, compute, sources=None, key=None) -> dict:
    """``compute()`` (a JSON-ready dict) read from the run's cache, or computed and stored
    there (older files of the same kind removed).

    Args:
        anchor: the run output the statistics describe (its folder holds ``cache/``).
        kind: a name for the statistics (``bounds``, ``drift``).
        compute: returns the statistics; called only when no current file exists.
        sources: files whose change invalidates them (default: ``[anchor]``).
        key: anything else (JSON-ready) they depend on, e.g. the reference they are tested
            against.
    """
    path = stats_path(anchor, kind, sources or [anchor], key)
    if path.is_file():
        try:
            return read_json_object(path)["value"]
        except (OSError, KeyError, ValueError):
            pass  # unreadable or foreign: computed again below
    value = compute()
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"kind": kind, "value": value}))
        for old in path.parent.glob(f"{kind}-*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except (OSError, UnmaskError):
        pass  # a read-only run: the statistics are shown, just not kept
    return value
