"""The review store under concurrent reviewers: nothing lost, history append-only."""
import multiprocessing
import os
import sqlite3
import threading

import pytest

from core.errors import DataValidationError
from core.review_store import ReviewStore

N_PROCESSES, N_THREADS, N_EVENTS = 4, 3, 15


def _reviewer(path, name, barrier, events=N_EVENTS):
    """Write ``events`` dispositions as fast as possible once every writer is ready."""
    store = ReviewStore(path)
    barrier.wait(timeout=60)
    for i in range(events):
        store.record("finance", "disposition", f"tx-{i % 5}", ("fraud", "legitimate")[i % 2],
                     reviewer=name, note=f"{name}#{i}", run_id="run-1")


def _process_main(path, index, barrier):
    """One process with several reviewer threads (all start together across processes);
    exits non-zero if any thread raised (a thread's exception alone would not)."""
    errors = []

    def run(name):
        try:
            _reviewer(path, name, barrier)
        except BaseException as err:  # noqa: BLE001 - reported through the exit code
            errors.append(err)

    threads = [threading.Thread(target=run, args=(f"p{index}t{t}",)) for t in range(N_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        print(f"reviewer thread failed: {errors[0]!r}", flush=True)
        os._exit(1)


def test_concurrent_writers_lose_nothing(tmp_path):
    """4 processes x 3 threads submit at the same moment into a store that does not exist yet
    (so they also race to create it); every event must be there exactly once."""
    path = tmp_path / "reviews.sqlite"
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(N_PROCESSES * N_THREADS)
    processes = [ctx.Process(target=_process_main, args=(path, i, barrier)) for i in range(N_PROCESSES)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * N_PROCESSES
    history = ReviewStore(path).history("finance", "disposition")
    expected = {f"p{i}t{t}#{e}" for i in range(N_PROCESSES) for t in range(N_THREADS)
                for e in range(N_EVENTS)}
    assert len(history) == len(expected)
    assert set(history["note"]) == expected
    assert history["id"].is_unique and history["id"].is_monotonic_increasing
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # the current state of an item is its latest event
    current = ReviewStore(path).current("finance", "disposition").set_index("item_id")
    latest = history.groupby("item_id")["id"].max()
    assert (current.loc[latest.index, "id"] == latest).all()


def test_two_reviewers_same_item_same_moment(tmp_path):
    path = tmp_path / "reviews.sqlite"
    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=_reviewer, args=(path, name, barrier, 1))
               for name in ("ana", "bo")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = ReviewStore(path).history(item_id="tx-0")
    assert sorted(events["reviewer"]) == ["ana", "bo"]
    current = ReviewStore(path).current("finance", "disposition")
    assert current.iloc[0]["reviewer"] == events.iloc[-1]["reviewer"]


def test_history_cannot_be_rewritten(tmp_path):
    store = ReviewStore(tmp_path / "reviews.sqlite")
    store.record("medical", "review", "case-1", "accept", "ana")
    with sqlite3.connect(store.path) as con:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute("UPDATE events SET decision = 'reject'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute("DELETE FROM events")
    assert store.history()["decision"].tolist() == ["accept"]


def test_bad_decisions_are_refused(tmp_path):
    store = ReviewStore(tmp_path / "reviews.sqlite")
    with pytest.raises(DataValidationError, match="decision 'maybe' is not one of"):
        store.record("finance", "disposition", "tx", "maybe", "ana")
    with pytest.raises(DataValidationError, match="reviewer name is required"):
        store.record("medical", "review", "case", "accept", "  ")
    assert store.history().empty
