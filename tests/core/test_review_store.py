"""Review store: append-only history, current state, validation."""
import sqlite3

import pytest

from core import DataValidationError
from core.review_store import ReviewStore


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
