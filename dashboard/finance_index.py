"""Bucketed Parquet indexes of a finance run, so that one card's or one transaction's rows are
read from one small file however large the run is.

An index is a folder ``cache/<kind>-<digest>/`` beside the run's ``scores.parquet``:
``bucket=K/*.parquet`` (K = DuckDB ``hash(key) % n``; about ``BUCKET_ROWS`` rows each, sorted
by the key in small row groups), ``empty.parquet`` (the columns, no rows: what a key in an
empty bucket reads) and ``index.json`` (n). The digest hashes everything the index is built
from (files' paths, sizes and modification times, DuckDB's version, whose ``hash`` picks the
bucket), so the index of a rewritten input or a republished run is never found, only rebuilt.
The folder is published atomically: one that exists is complete.
"""
from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

from core.io import atomic_path
from finance.sql import literal

from .run_stats import cache_entry, fingerprint

# ~64 k rows a bucket keeps a lookup at one small footer and one or two row groups; one file
# of a 10 M-row run would instead have a 600-group footer to parse on every read.
BUCKET_ROWS = 64 * 1024
ROW_GROUP = 8 * 1024
VERSION = 2

_BUILDING: set[Path] = set()
_BUILDING_LOCK = threading.Lock()


def index_path(scores_path, kind: str, sources) -> Path:
    """The folder of the run's ``kind`` index built from ``sources`` (paths; None skipped)."""
    import duckdb  # lazy: the finance extra

    return cache_entry(scores_path, kind,
                       [VERSION, duckdb.__version__, kind, [fingerprint(s) for s in sources if s]])


def write_buckets(con, path: Path, query: str, params: list, key: str, rows: int,
                  order: str | None = None) -> Path:
    """Publish ``query``'s rows (a SELECT with a ``key`` column; ``rows`` of them) as the
    index at ``path``, sorted by ``order`` (default: the key) within each bucket, then remove
    the run's older indexes of the same kind."""
    buckets = max(1, -(-rows // BUCKET_ROWS))
    keyed = f"SELECT *, hash({key}) % {buckets} AS bucket FROM ({query})"
    with atomic_path(path) as tmp:
        con.execute(f"COPY ({keyed} ORDER BY {order or key}) TO {literal(tmp)}"
                    f" (FORMAT parquet, PARTITION_BY (bucket), ROW_GROUP_SIZE {ROW_GROUP})", params)
        con.execute(f"COPY ({keyed} LIMIT 0) TO {literal(tmp / 'empty.parquet')} (FORMAT parquet)",
                    params)
        (tmp / "index.json").write_text(json.dumps({"buckets": buckets, "rows": rows}))
    kind = path.name.rsplit("-", 1)[0]
    for old in path.parent.glob(f"{kind}-*"):
        if old != path:
            shutil.rmtree(old, ignore_errors=True)
    return path


def bucket_sources(con, index: Path, values: list[str]) -> str:
    """SQL ``read_parquet`` of the buckets holding ``values`` (the empty file if none has rows)."""
    buckets = json.loads((index / "index.json").read_text())["buckets"]
    found = con.execute("SELECT DISTINCT hash(CAST(v AS VARCHAR)) % ? FROM unnest(?) AS t(v)",
                        [buckets, list(values)]).fetchall()
    files = [index / f"bucket={b}" for (b,) in found if (index / f"bucket={b}").is_dir()]
    globs = [literal(f / "*.parquet") for f in files] or [literal(index / "empty.parquet")]
    return f"read_parquet([{', '.join(globs)}], hive_partitioning=false)"


def build_in_background(path: Path, build) -> None:
    """Run ``build()`` in a daemon thread, once per process and index at a time; meanwhile
    callers read the run the slow way. A failure leaves no index, and that way keeps working."""
    with _BUILDING_LOCK:
        if path in _BUILDING:
            return
        _BUILDING.add(path)

    def run():
        try:
            build()
        except Exception:  # noqa: BLE001 - a read-only run, a broken input, a DuckDB error:
            pass           # no index; the full read still answers
        finally:
            with _BUILDING_LOCK:
                _BUILDING.discard(path)

    threading.Thread(target=run, daemon=True, name=f"index-{path.name}").start()
