"""The customer history read through the run's history index: exactly the rows of the full
scan of the input (unmask's schema and a bank's own, through the run's model), and never an
index of an older input or an older publication of the run."""
import contextlib
import io
import json
import os
import threading
from pathlib import Path

import pandas as pd
import pytest

from core.cli import main as cli_main
from core.errors import DataValidationError
from dashboard import finance_data, finance_index
from dashboard_fixtures import write_finance_run
from finance.world2 import World2Config, simulate_to_file


def _run_dir(ws: Path) -> Path:
    return ws / "runs" / "finance" / "finance-run"


@pytest.fixture
def run(tmp_path):
    """(input, scores, manifest) of a private synthetic run (the index is written into it)."""
    run_dir = write_finance_run(tmp_path / "ws", n=600)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return Path(manifest["inputs"][0]), run_dir / "scores.parquet", manifest


def _both(data, scores, customer, until, model=None, days=30):
    """(history read through the index, history of the full scan)."""
    finance_data.build_history_index(data, scores, model)
    indexed = finance_data.customer_history(data, scores, customer, until, days=days, model_dir=model)
    scanned = finance_data.customer_history(data, scores, customer, until, days=days, model_dir=model,
                                            use_index=False)
    return indexed, scanned


def _no_scan(monkeypatch):
    """Make reading the input fail, so a history that comes back came from the index."""
    def refuse(*args, **kwargs):
        raise AssertionError("the full input was scanned")

    monkeypatch.setattr(finance_data, "_history_from_input", refuse)


@pytest.mark.parametrize("bucket_rows", [64 * 1024, 40])  # one bucket; many, mostly empty
def test_index_gives_the_full_scans_history(run, monkeypatch, bucket_rows):
    monkeypatch.setattr(finance_index, "BUCKET_ROWS", bucket_rows)
    data, scores_path, manifest = run
    scores = pd.read_parquet(scores_path)
    cases = [(row["customer_id"], row["timestamp"], days)
             for _, row in scores.iloc[[0, 5, 300, 599]].iterrows() for days in (1, 30)]
    expected = []
    for customer, until, days in cases:
        indexed, scanned = _both(data, scores_path, customer, until, days=days)
        assert len(scanned) > 0
        expected.append(scanned)
    _no_scan(monkeypatch)
    for (customer, until, days), scanned in zip(cases, expected):
        indexed = finance_data.customer_history(data, scores_path, customer, until, days=days)
        pd.testing.assert_frame_equal(indexed, scanned)


@pytest.mark.parametrize("bucket_rows", [64 * 1024, 1])  # its bucket has rows; it has none
def test_a_card_without_history_is_empty_in_both(run, monkeypatch, bucket_rows):
    monkeypatch.setattr(finance_index, "BUCKET_ROWS", bucket_rows)
    data, scores_path, _ = run
    indexed, scanned = _both(data, scores_path, "no-such-card", pd.Timestamp("2026-01-20"))
    assert indexed.empty and scanned.empty
    assert list(indexed.columns) == list(scanned.columns)
    # the card's transactions all lie after the window: also nothing
    top = pd.read_parquet(scores_path).iloc[0]
    _no_scan(monkeypatch)
    before = finance_data.customer_history(data, scores_path, top["customer_id"],
                                           pd.Timestamp("2025-12-01"))
    assert before.empty


def test_republished_run_or_rewritten_input_is_never_served_a_stale_index(run, tmp_path):
    data, scores_path, _ = run
    top = pd.read_parquet(scores_path).iloc[0]
    old = finance_data.build_history_index(data, scores_path)
    assert old.is_dir()
    # the run published again, from another input (other cards, other scores)
    ws = tmp_path / "ws"
    write_finance_run(ws, n=500, seed=3)
    assert not old.exists()  # the run directory was replaced, its cache with it
    assert finance_data.history_index_path(data, scores_path) != old
    new_top = pd.read_parquet(scores_path).iloc[0]
    indexed, scanned = _both(data, scores_path, new_top["customer_id"], new_top["timestamp"])
    pd.testing.assert_frame_equal(indexed, scanned)
    # the input rewritten in place under a run that stays: the index is rebuilt, not reused
    built = finance_data.build_history_index(data, scores_path)
    frame = pd.read_parquet(data)
    frame.loc[frame["customer_id"] == top["customer_id"], "amount"] = 12345.0
    frame.to_parquet(data, index=False)
    os.utime(data, ns=(built.stat().st_mtime_ns + 10**9,) * 2)
    assert finance_data.history_index_path(data, scores_path) != built
    indexed, scanned = _both(data, scores_path, new_top["customer_id"], new_top["timestamp"])
    pd.testing.assert_frame_equal(indexed, scanned)
    assert not built.exists()  # the stale index was removed when the new one was published


def test_customer_history_builds_the_index_for_later_opens(run):
    data, scores_path, _ = run
    top = pd.read_parquet(scores_path).iloc[0]
    path = finance_data.history_index_path(data, scores_path)
    assert not path.exists()
    first = finance_data.customer_history(data, scores_path, top["customer_id"], top["timestamp"])
    for thread in [t for t in threading.enumerate() if t.name.startswith("index-history")]:
        thread.join(timeout=60)
    assert path.is_dir()
    again = finance_data.customer_history(data, scores_path, top["customer_id"], top["timestamp"])
    pd.testing.assert_frame_equal(first, again)


@pytest.mark.parametrize("bucket_rows", [64 * 1024, 7])
def test_alert_flags_through_the_id_index_match_the_scan(run, monkeypatch, bucket_rows):
    monkeypatch.setattr(finance_index, "BUCKET_ROWS", bucket_rows)
    _, scores_path, _ = run
    scores = pd.read_parquet(scores_path)
    ids = scores["transaction_id"].iloc[[0, 1, 7, 100, 599]].tolist() + ["not-in-this-run"]
    scanned = finance_data.alert_flags(scores_path, ids, use_index=False)
    index = finance_data.build_alert_flags_index(scores_path)
    indexed = finance_data.alert_flags(scores_path, ids)
    expected = scores.set_index("transaction_id").loc[ids[:-1], "is_alert"]
    assert indexed.sort_index().to_dict() == scanned.sort_index().to_dict() == expected.to_dict()
    assert expected.any() and not expected.all()
    # republished with other scores: the old index is gone and the new one answers
    write_finance_run(scores_path.parents[3], n=600, seed=9, alert_rate=0.3)
    assert not index.exists()
    scores = pd.read_parquet(scores_path)
    finance_data.build_alert_flags_index(scores_path)
    indexed = finance_data.alert_flags(scores_path, ids)
    assert indexed.to_dict() == scores.set_index("transaction_id").loc[ids[:-1], "is_alert"].to_dict()


def _cli(*args) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli_main(list(args))
        except SystemExit as exit_:
            assert exit_.code == 0, err.getvalue()
    return out.getvalue()


@pytest.fixture(scope="module")
def bank_run(tmp_path_factory):
    """A run scored from a bank's own CSV (its column names, refunds, offsets) with a model
    trained on it: the history reads the file through that model's saved mapping."""
    folder = tmp_path_factory.mktemp("bank")
    data, schema = simulate_to_file(folder / "bank.csv", World2Config(n_cards=20, n_merchants=40,
                                                                      n_days=10, seed=4))
    model = folder / "model"
    _cli("finance", "train", "--data", str(data), "--schema-file", str(schema), "--out", str(model),
         "--max-steps", "10", "--timezone", "Europe/Berlin")
    stdout = _cli("finance", "score", "--model", str(model), "--data", str(data),
                  "--workspace", str(folder / "ws"), "--budget", "5", "--max-shap", "0")
    run_dir = Path(stdout.strip().splitlines()[-1].removeprefix("wrote run "))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return Path(manifest["inputs"][0]), next(run_dir.rglob("scores.parquet")), manifest["model"]


def test_index_of_a_banks_own_file_matches_the_full_scan(bank_run, monkeypatch):
    data, scores_path, model = bank_run
    scores = pd.read_parquet(scores_path)
    frame = pd.read_csv(data, dtype=str)
    refunds = set(frame.loc[frame["amt"].astype(float) < 0, "card"])
    last = scores["timestamp"].max() + pd.Timedelta(days=1)  # whole 10-day world in the window
    cases = [(scores.iloc[0]["customer_id"], scores.iloc[0]["timestamp"])]
    cases += [(card, last) for card in sorted(refunds)[:2]]
    expected = []
    for customer, until in cases:
        indexed, scanned = _both(data, scores_path, customer, until, model, days=30)
        expected.append(scanned)
    assert any(s["score"].isna().any() for s in expected)  # refunds: in the input, never scored
    _no_scan(monkeypatch)
    for (customer, until), scanned in zip(cases, expected):
        indexed = finance_data.customer_history(data, scores_path, customer, until, days=30,
                                                model_dir=model)
        pd.testing.assert_frame_equal(indexed, scanned)
    # read by unmask's names (no model), the bank's file has no such columns: no index either
    with pytest.raises(DataValidationError, match="'transaction_id'"):
        finance_data.build_history_index(data, scores_path)
