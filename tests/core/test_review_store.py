"""Review store: append-only history, current state, validation, the hash chain."""
import sqlite3

import pandas as pd
import pytest

from core import DataValidationError
from core.cli import main
from core.errors import UnmaskWarning
from core.review_store import COLUMNS, ReviewStore, _write_transaction, row_hash


def main_exit(argv) -> int:
    """``unmask ARGV``'s exit code."""
    try:
        main(argv)
    except SystemExit as done:
        return done.code or 0
    return 0


def test_append_only_history_and_current(tmp_path):
    store = ReviewStore(tmp_path / "ws" / "reviews.sqlite")
    store.record("finance", "disposition", "tx-1", "needs_information", reviewer="ana")
    store.record("finance", "disposition", "tx-1", "fraud", reviewer="ben", note="confirmed")
    store.record("finance", "disposition", "tx-2", "legitimate", reviewer="ana")
    history = store.history("finance", "disposition", "tx-1")
    assert list(history["decision"]) == ["needs_information", "fraud"]
    assert history["created_at"].is_monotonic_increasing
    current = store.current("finance", "disposition").set_index("item_id")
    assert current.loc["tx-1", "decision"] == "fraud" and current.loc["tx-2", "reviewer"] == "ana"
    con = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE events SET decision = 'legitimate'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM events")
    con.close()
    assert len(store.history()) == 3


def test_validation(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite")
    with pytest.raises(DataValidationError, match="'maybe' is not one of"):
        store.record("finance", "disposition", "tx-1", "maybe", reviewer="ana")
    with pytest.raises(DataValidationError, match="reviewer"):
        store.record("medical", "review", "case-1", "accept", reviewer="  ")
    assert store.current("medical", "review").empty


def _store_with_rows(tmp_path, n=3) -> ReviewStore:
    store = ReviewStore(tmp_path / "reviews.sqlite")
    for i in range(n):
        store.record("finance", "disposition", f"tx-{i}", "fraud", reviewer="ana", note=f"n{i}")
    return store


@pytest.mark.parametrize("statement", [
    "INSERT OR REPLACE INTO events (id, vertical, kind, item_id, decision, reviewer, created_at)"
    " VALUES (1, 'finance', 'disposition', 'tx-0', 'legitimate', 'eve', '2000-01-01T00:00:00+00:00')",
    "REPLACE INTO events (id, vertical, kind, item_id, decision, reviewer, created_at)"
    " VALUES (1, 'finance', 'disposition', 'tx-0', 'legitimate', 'eve', '2000-01-01T00:00:00+00:00')",
    "INSERT INTO events (id, vertical, kind, item_id, decision, reviewer, created_at)"
    " VALUES (1, 'finance', 'disposition', 'tx-0', 'legitimate', 'eve', '2000-01-01T00:00:00+00:00')"
    " ON CONFLICT (id) DO UPDATE SET decision = 'legitimate'",
    "UPDATE events SET reviewer = 'eve' WHERE id = 1",
    "DELETE FROM events WHERE id = 1",
])
def test_history_cannot_be_rewritten_through_sqlite(tmp_path, statement):
    store = _store_with_rows(tmp_path)
    before = store.history()
    con = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute(statement)
    con.close()
    pd.testing.assert_frame_equal(store.history(), before)
    assert store.verify().ok


def _tamper(store, *statements):
    """Write access without the triggers: drop them, run ``statements``."""
    con = sqlite3.connect(store.path, isolation_level=None)
    for name in ("events_no_update", "events_no_delete", "events_no_replace"):
        con.execute(f"DROP TRIGGER IF EXISTS {name}")
    for statement in statements:
        con.execute(statement)
    con.close()


def test_verify_reports_intact_chain(tmp_path):
    store = _store_with_rows(tmp_path)
    result = store.verify()
    assert result.ok and result.rows == 3
    assert result.message.startswith("3 rows, chain intact (head sha256 ")
    assert main_exit(["review", "verify", "--workspace", str(tmp_path)]) == 0


@pytest.mark.parametrize("statements, found", [
    (["UPDATE events SET decision = 'legitimate' WHERE id = 2"],
     "row 2 was altered after it was written"),
    (["UPDATE events SET created_at = '2000-01-01T00:00:00+00:00' WHERE id = 1"],
     "row 1 was altered"),
    (["DELETE FROM events WHERE id = 2"], "row 3 does not follow row 1"),
    (["DELETE FROM events WHERE id = 1"], "row 2 does not follow the start"),
])
def test_verify_finds_rows_changed_around_the_triggers(tmp_path, capsys, statements, found):
    store = _store_with_rows(tmp_path)
    _tamper(store, *statements)
    result = store.verify()
    assert not result.ok and found in result.message
    assert main_exit(["review", "verify", "--store", str(store.path)]) == 1
    assert found in capsys.readouterr().out


def test_verify_finds_a_rehashed_row(tmp_path):
    """Recomputing the altered row's own hash breaks the link of the row after it."""
    store = _store_with_rows(tmp_path)
    con = sqlite3.connect(store.path)
    values = list(con.execute(f"SELECT {', '.join(COLUMNS)}, prev_hash FROM events WHERE id = 2").fetchone())
    con.close()
    values[4] = "legitimate"
    _tamper(store, f"UPDATE events SET decision = 'legitimate', row_hash = '{row_hash(values[:-1], values[-1])}'"
                   " WHERE id = 2")
    assert "row 3 does not follow row 2" in store.verify().message


def test_verify_reports_dropped_triggers_and_writing_restores_them(tmp_path):
    store = _store_with_rows(tmp_path)
    _tamper(store)
    result = store.verify()
    assert not result.ok and "events_no_delete, events_no_replace, events_no_update were dropped" in result.message
    store.record("medical", "review", "case-1", "accept", reviewer="bo")
    assert store.verify().ok and store.verify().rows == 4


def test_a_write_interrupted_midway_is_rolled_back_and_frees_the_lock(tmp_path):
    store = _store_with_rows(tmp_path)
    con = store._connect()
    with pytest.raises(KeyboardInterrupt):
        with _write_transaction(con):
            con.execute("DROP TRIGGER events_no_update")
            con.execute("UPDATE events SET decision = 'legitimate' WHERE id = 1")
            raise KeyboardInterrupt
    assert not con.in_transaction
    con.close()
    assert store.verify().ok and store.history()["decision"].tolist() == ["fraud"] * 3
    store.record("medical", "review", "case-1", "accept", reviewer="bo")   # no lock left behind
    assert store.verify().rows == 4


OLD_SCHEMA = """
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, vertical TEXT NOT NULL,
    kind TEXT NOT NULL, item_id TEXT NOT NULL, decision TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '', reviewer TEXT NOT NULL, run_id TEXT,
    payload TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'review history is append-only'); END;
INSERT INTO events (vertical, kind, item_id, decision, reviewer, created_at)
VALUES ('finance', 'disposition', 'tx-1', 'fraud', 'ana', '2024-01-01T00:00:00+00:00'),
       ('medical', 'review', 'case-1', 'accept', 'bo', '2024-01-02T00:00:00+00:00');
"""


def test_store_without_chain_is_migrated_on_open(tmp_path):
    path = tmp_path / "reviews.sqlite"
    con = sqlite3.connect(path)
    con.executescript(OLD_SCHEMA)
    con.close()
    store = ReviewStore(path)
    result = store.verify()
    assert not result.ok and "no hash chain yet" in result.message
    with pytest.warns(UnmaskWarning, match="added a hash chain over its 2 existing review rows"):
        history = store.history()
    assert list(history["item_id"]) == ["tx-1", "case-1"]
    store.record("driving", "bookmark", "log:3", "bookmark", reviewer="cy")
    assert store.verify().message.startswith("3 rows, chain intact")
    con = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE events SET decision = 'reject' WHERE id = 2")
    con.close()


def test_unknown_vertical_kind_or_decision_is_refused(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite")
    allowed = "finance disposition, medical review, driving bookmark"
    with pytest.raises(DataValidationError, match=f"unknown review kind 'finance' 'bookmark': .*{allowed}"):
        store.record("finance", "bookmark", "tx-1", "bookmark", reviewer="ana")
    with pytest.raises(DataValidationError, match="unknown review kind 'retail' 'disposition'"):
        store.record("retail", "disposition", "tx-1", "fraud", reviewer="ana")
    with pytest.raises(DataValidationError, match=r"'maybe' is not one of \['accept', 'needs_correction'"):
        store.record("medical", "review", "case-1", "maybe", reviewer="ana")
    assert store.history().empty


def test_garbage_file_is_a_clear_error(tmp_path):
    path = tmp_path / "reviews.sqlite"
    path.write_bytes(b"not a database " * 100)
    with pytest.raises(DataValidationError, match="not a review store"):
        ReviewStore(path).history()
    with pytest.raises(DataValidationError, match="not a review store"):
        ReviewStore(path).verify()
