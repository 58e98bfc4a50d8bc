"""Warm-up: a card with too little history is scored and marked, never alerted."""
import json

import numpy as np
import pandas as pd
import pytest

from finance.simulator import SimulatorConfig, simulate_to_parquet
from finance_cli_runner import run_cli

# A short file: on its first days most cards have no history yet.
TINY = SimulatorConfig(n_customers=60, n_terminals=120, n_days=16, seed=11, card_tests_per_day=20.0,
                       travels_per_day=20.0)
MIN_HISTORY, MIN_DAYS = 4, 3


def _history(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each row's count of the same card's strictly earlier transactions in the 30 days
    before, and the days since the card's first transaction in the file."""
    times = frame["timestamp"].to_numpy()
    counts, age = np.zeros(len(frame), np.int64), np.zeros(len(frame))
    for _, idx in frame.groupby("customer_id").indices.items():
        order = np.argsort(times[idx], kind="stable")
        t = times[idx][order]
        first_at = np.searchsorted(t, t, side="left")                       # strictly earlier
        since = np.searchsorted(t, t - np.timedelta64(30, "D"), side="left")
        counts[idx[order]] = first_at - since
        age[idx[order]] = (t - t[0]) / np.timedelta64(1, "D")
    return counts, age


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    folder = tmp_path_factory.mktemp("warmup")
    data = simulate_to_parquet(folder / "tx.parquet", TINY)
    model = folder / "model"
    code, _, stderr = run_cli("finance", "train", "--data", str(data), "--out", str(model), "--until",
                              "2018-04-12", "--max-steps", "20", "--min-history", str(MIN_HISTORY),
                              "--min-history-days", str(MIN_DAYS))
    assert code == 0, stderr
    out = folder / "scores.parquet"
    code, stdout, stderr = run_cli("finance", "score", "--model", str(model), "--data", str(data),
                                   "--out", str(out), "--budget", "40", "--max-shap", "0")
    assert code == 0, stderr
    return pd.read_parquet(data), pd.read_parquet(out), json.loads(stdout)


def test_cards_without_enough_history_are_marked_warming_up(scored):
    frame, scores, summary = scored
    count, age = _history(frame)
    warming = pd.Series((count < MIN_HISTORY) | (age < MIN_DAYS), index=frame["transaction_id"])
    expected = warming.loc[scores["transaction_id"]].to_numpy()
    assert scores["warming_up"].dtype == bool
    assert (scores["warming_up"].to_numpy() == expected).all()
    assert 0 < expected.sum() < len(scores)
    busy = (pd.Series(count, index=frame["transaction_id"]).loc[scores["transaction_id"]] >= MIN_HISTORY).to_numpy()
    assert (expected & busy).any()            # new to the file yet busy: warming up by days alone
    assert summary["n_warming_up"] == expected.sum()
    first_of_each_card = frame.sort_values("timestamp").groupby("customer_id")["transaction_id"].first()
    assert scores.set_index("transaction_id").loc[first_of_each_card, "warming_up"].all()


def test_warming_up_is_scored_but_never_alerted(scored):
    _, scores, summary = scored
    warming = scores["warming_up"]
    assert scores.loc[warming, "score"].notna().all()              # scored, for the record
    assert not scores.loc[warming, "is_alert"].any()
    # the budget goes to the highest scores among cards with history
    eligible = scores[~warming].sort_values("score", ascending=False)
    assert summary["n_alerts"] == 40
    assert set(scores.loc[scores["is_alert"], "transaction_id"]) == set(eligible["transaction_id"].iloc[:40])
    # and some warming-up transaction outscores an alert: it would have been alerted before
    assert scores.loc[warming, "score"].max() > scores.loc[scores["is_alert"], "score"].min()
