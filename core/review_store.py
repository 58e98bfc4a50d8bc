"""The review store: reviewers' decisions in SQLite (WAL), append-only and hash-chained.

Every disposition, review and bookmark is a new row (who, what, when); the current
state of an item is its latest row. Triggers refuse UPDATE, DELETE and any INSERT that
reuses an id (``INSERT OR REPLACE``), so history cannot be rewritten through SQLite. Each
row also stores ``row_hash``, the SHA-256 of its columns and of the previous row's hash,
so an edit made around the triggers (they can be dropped by anyone who can write the
file) is found by :meth:`ReviewStore.verify` (``unmask review verify``). Several processes
may write at once (WAL + busy timeout).

Example:
    >>> store = ReviewStore("ws/reviews.sqlite")                         # doctest: +SKIP
    >>> store.record("finance", "disposition", "tx-42", "fraud", reviewer="ana")  # doctest: +SKIP
    >>> store.current("finance", "disposition")                          # doctest: +SKIP
    >>> store.verify().message                                           # doctest: +SKIP
    '1 rows, chain intact (head sha256 ...)'
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import verticals
from .errors import DataValidationError, UnmaskWarning

STORE_NAME = "reviews.sqlite"  # the store's file name inside a workspace

# The columns a row's hash covers, in the order they are serialised.
COLUMNS = ("id", "vertical", "kind", "item_id", "decision", "note", "reviewer", "run_id",
           "payload", "created_at")
GENESIS = "0" * 64  # prev_hash of the first row

TRIGGERS = {
    "events_no_update": "BEFORE UPDATE ON events",
    "events_no_delete": "BEFORE DELETE ON events",
    # REPLACE deletes the old row without firing DELETE triggers; refuse it up front.
    "events_no_replace": "BEFORE INSERT ON events WHEN EXISTS (SELECT 1 FROM events WHERE id = NEW.id)",
}


def _trigger_sql(name: str) -> str:
    return (f"CREATE TRIGGER IF NOT EXISTS {name} {TRIGGERS[name]} "
            "BEGIN SELECT RAISE(ABORT, 'review history is append-only'); END;")


SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    vertical    TEXT NOT NULL,
    kind        TEXT NOT NULL,      -- a vertical's review kind (decisions())
    item_id     TEXT NOT NULL,      -- transaction id, case id, "log_id:frame"
    decision    TEXT NOT NULL,
    note        TEXT NOT NULL DEFAULT '',
    reviewer    TEXT NOT NULL,
    run_id      TEXT,
    payload     TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL,
    prev_hash   TEXT,               -- row_hash of the row before (GENESIS for the first)
    row_hash    TEXT                -- sha256 of COLUMNS + prev_hash (row_hash())
);
CREATE INDEX IF NOT EXISTS events_item ON events (vertical, kind, item_id, id);
""" + "\n".join(_trigger_sql(name) for name in TRIGGERS)



def decisions() -> dict[tuple[str, str], tuple[str, ...]]:
    """The review vocabulary, (vertical, kind) -> allowed decisions, from the verticals'
    specs (:mod:`core.verticals`). Anything else is refused."""
    return {(spec.name, spec.review_kind): spec.decisions for spec in verticals.specs()}


def row_hash(values, prev_hash: str) -> str:
    """SHA-256 of a row's ``COLUMNS`` values and ``prev_hash`` (canonical JSON array)."""
    canonical = json.dumps([*values, prev_hash], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Verification:
    """What :meth:`ReviewStore.verify` found: ``ok``, the row count and one line."""

    ok: bool
    rows: int
    message: str


def _retry_locked(operation, seconds: float = 60.0):
    """Run ``operation``, retrying with backoff while SQLite reports a lock."""
    deadline, delay = time.monotonic() + seconds, 0.005
    while True:
        try:
            return operation()
        except sqlite3.OperationalError as err:
            message = str(err).lower()
            if ("locked" not in message and "busy" not in message) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


def _columns(con: sqlite3.Connection) -> set[str]:
    return {row[1] for row in con.execute("PRAGMA table_info(events)")}


@contextmanager
def _write_transaction(con: sqlite3.Connection):
    """One write transaction around the block: the write lock taken first (``BEGIN
    IMMEDIATE``, so no other writer changes what the block reads), committed when the block
    ends, rolled back when it raises (an interrupt too)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise


def _append(con: sqlite3.Connection, values: list) -> int:
    """Insert one row chained to the current last row; the write lock is taken first, so
    no other writer can append between reading the last hash and inserting."""
    with _write_transaction(con):
        last = con.execute("SELECT id, row_hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
        row_id, previous = (last[0] + 1, last[1]) if last else (1, GENESIS)
        row = (row_id, *values)
        con.execute(f"INSERT INTO events ({', '.join(COLUMNS)}, prev_hash, row_hash) "
                    f"VALUES ({', '.join('?' * (len(COLUMNS) + 2))})",
                    (*row, previous, row_hash(row, previous)))
    return row_id


def _walk_chain(con: sqlite3.Connection) -> Verification:
    if not {"prev_hash", "row_hash"} <= _columns(con):
        return Verification(False, 0, "no hash chain yet (the store predates it); it is added "
                                      "the next time unmask opens the store to write")
    rows = con.execute(f"SELECT {', '.join(COLUMNS)}, prev_hash, row_hash FROM events "
                       "ORDER BY id").fetchall()
    expected, before = GENESIS, None
    for *values, prev_hash, digest in rows:
        if prev_hash != expected:
            after = f"row {before}" if before is not None else "the start"
            return Verification(False, len(rows), f"row {values[0]} does not follow {after}: "
                                "a row before it was altered, deleted or inserted")
        if row_hash(values, prev_hash) != digest:
            return Verification(False, len(rows), f"row {values[0]} was altered after it was "
                                "written (its contents do not match its hash)")
        expected, before = digest, values[0]
    present = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    missing = sorted(set(TRIGGERS) - present)
    if missing:
        return Verification(False, len(rows), f"{len(rows)} rows, chain intact, but the append-only "
                            f"triggers {', '.join(missing)} were dropped")
    return Verification(True, len(rows), f"{len(rows)} rows, chain intact (head sha256 {expected})")


class ReviewStore:
    """Append-only SQLite store of review events.

    Args:
        path: database file (created with its schema when missing).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        """Open the store (creating it when missing), retrying while another writer holds
        the lock: switching to WAL and creating the schema can report "database is locked"
        at once, without waiting for the busy timeout, when writers race on a new file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return _retry_locked(self._open)

    def _open(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=30000")
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)
            self._add_chain(con)
        except sqlite3.OperationalError:
            con.close()
            raise                          # "locked" is retried by _connect
        except sqlite3.DatabaseError as err:
            con.close()
            raise DataValidationError(f"{self.path}: not a review store ({err})") from None
        except BaseException:
            con.close()
            raise
        return con

    def _add_chain(self, con: sqlite3.Connection) -> None:
        """Give a store written before the hash chain its two columns and chain its rows
        (once, in one transaction; the update trigger is lifted only inside it)."""
        if {"prev_hash", "row_hash"} <= _columns(con):
            return
        with _write_transaction(con):
            missing = {"prev_hash", "row_hash"} - _columns(con)  # another process may have won
            for name in sorted(missing):
                con.execute(f"ALTER TABLE events ADD COLUMN {name} TEXT")
            rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM events ORDER BY id").fetchall()
            if missing:
                con.execute("DROP TRIGGER IF EXISTS events_no_update")
                previous = GENESIS
                for values in rows:
                    digest = row_hash(values, previous)
                    con.execute("UPDATE events SET prev_hash = ?, row_hash = ? WHERE id = ?",
                                (previous, digest, values[0]))
                    previous = digest
                con.execute(_trigger_sql("events_no_update"))
        if missing:
            warnings.warn(UnmaskWarning(
                f"{self.path}: added a hash chain over its {len(rows)} existing review rows "
                "(the store predates it; `unmask review verify` checks it from now on)"))

    def record(self, vertical: str, kind: str, item_id: str, decision: str, reviewer: str,
               note: str = "", run_id: str | None = None, payload: dict | None = None) -> int:
        """Append one event; returns its row id.

        Raises:
            DataValidationError: an unknown (vertical, kind) pair or decision (:func:`decisions`),
                or no reviewer name.
        """
        vocabulary = decisions()
        allowed = vocabulary.get((vertical, kind))
        if allowed is None:
            known = ", ".join(f"{v} {k}" for v, k in vocabulary)
            raise DataValidationError(f"unknown review kind {vertical!r} {kind!r}: the store "
                                      f"takes {known}")
        if decision not in allowed:
            raise DataValidationError(f"decision {decision!r} is not one of {sorted(allowed)} "
                                      f"for {vertical} {kind}")
        if not str(reviewer).strip():
            raise DataValidationError("reviewer name is required")
        created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
        values = [vertical, kind, str(item_id), decision, note, reviewer.strip(), run_id,
                  json.dumps(payload or {}), created]
        con = self._connect()
        try:  # one transaction: a failed attempt wrote nothing, so retrying is safe
            return _retry_locked(lambda: _append(con, values))
        finally:
            con.close()

    def verify(self) -> Verification:
        """Walk the hash chain (read-only) and report the first row that breaks it.

        A row whose contents no longer match its hash was altered; a row whose
        ``prev_hash`` is not the previous row's hash follows a deleted, inserted or
        re-hashed row. Missing append-only triggers are reported too. Deleting the newest
        rows, or rewriting every hash after an edit, is not detectable from the file alone:
        compare the head hash with one recorded elsewhere.
        """
        if not self.path.is_file():
            raise DataValidationError(f"{self.path}: no review store here")
        try:
            con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
        except sqlite3.DatabaseError as err:
            raise DataValidationError(f"{self.path}: cannot open the review store ({err})") from None
        try:
            if not _columns(con):
                raise DataValidationError(f"{self.path}: not a review store (no events table)")
            return _walk_chain(con)
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as err:
            raise DataValidationError(f"{self.path}: not a review store ({err})") from None
        finally:
            con.close()

    def history(self, vertical: str | None = None, kind: str | None = None,
                item_id: str | None = None) -> pd.DataFrame:
        """All events matching the filters, oldest first."""
        clauses, args = [], []
        for column, value in (("vertical", vertical), ("kind", kind), ("item_id", item_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(str(value))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        con = self._connect()
        try:
            frame = pd.read_sql_query(f"SELECT {', '.join(COLUMNS)} FROM events {where} ORDER BY id",
                                      con, params=args)
        finally:
            con.close()
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True, format="ISO8601")
        return frame

    def current(self, vertical: str, kind: str) -> pd.DataFrame:
        """Latest event per item (the current state)."""
        events = self.history(vertical, kind)
        if events.empty:
            return events
        return events.groupby("item_id", sort=False).tail(1).reset_index(drop=True)
