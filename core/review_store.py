"""The review store: reviewers' decisions in SQLite (WAL), append-only.

Every disposition, review and bookmark is a new row (who, what, when); the current
state of an item is its latest row. UPDATE and DELETE are refused by triggers, so
history cannot be rewritten. Several processes may write at once (WAL + busy timeout).

Example:
    >>> store = ReviewStore("ws/reviews.sqlite")                         # doctest: +SKIP
    >>> store.record("finance", "disposition", "tx-42", "fraud", reviewer="ana")  # doctest: +SKIP
    >>> store.current("finance", "disposition")                          # doctest: +SKIP
"""
from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from pathlib import Path

import pandas as pd

from .errors import DataValidationError

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    vertical    TEXT NOT NULL,
    kind        TEXT NOT NULL,      -- disposition | review | bookmark | ...
    item_id     TEXT NOT NULL,      -- transaction id, case id, "log_id:frame"
    decision    TEXT NOT NULL,
    note        TEXT NOT NULL DEFAULT '',
    reviewer    TEXT NOT NULL,
    run_id      TEXT,
    payload     TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_item ON events (vertical, kind, item_id, id);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'review history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'review history is append-only'); END;
"""

DECISIONS = {
    ("finance", "disposition"): {"fraud", "legitimate", "needs_information"},
    ("medical", "review"): {"accept", "reject", "needs_correction"},
    ("driving", "bookmark"): {"bookmark"},
}


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
        except BaseException:
            con.close()
            raise
        return con

    def record(self, vertical: str, kind: str, item_id: str, decision: str, reviewer: str,
               note: str = "", run_id: str | None = None, payload: dict | None = None) -> int:
        """Append one event; returns its row id."""
        allowed = DECISIONS.get((vertical, kind))
        if allowed is not None and decision not in allowed:
            raise DataValidationError(f"decision {decision!r} is not one of {sorted(allowed)} "
                                      f"for {vertical} {kind}")
        if not str(reviewer).strip():
            raise DataValidationError("reviewer name is required")
        created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")
        con = self._connect()
        try:  # one autocommit statement: a failed attempt wrote nothing, so retrying is safe
            cur = _retry_locked(lambda: con.execute(
                "INSERT INTO events (vertical, kind, item_id, decision, note, reviewer, run_id,"
                " payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (vertical, kind, str(item_id), decision, note, reviewer.strip(), run_id,
                 json.dumps(payload or {}), created)))
            return int(cur.lastrowid)
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
            frame = pd.read_sql_query(f"SELECT * FROM events {where} ORDER BY id", con, params=args)
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
