"""The dashboard's customer history of a run scored from a bank's own file: read through the
run's model mapping (the bank's column names, codings and time zone), not unmask's names."""
import json
from pathlib import Path

import pandas as pd
import pytest

from core.errors import DataValidationError
from dashboard import finance_data
from finance.world2 import World2Config, simulate_to_file
from finance_cli_runner import run_cli

TINY_WORLD2 = World2Config(n_cards=30, n_merchants=60, n_days=12, seed=8)


@pytest.fixture(scope="module")
def foreign_run(tmp_path_factory):
    """(the bank's CSV, its frame, the run's manifest) of a run scored into a workspace."""
    folder = tmp_path_factory.mktemp("bank")
    data, schema = simulate_to_file(folder / "bank.csv", TINY_WORLD2)   # its mapping written beside it
    model, workspace = folder / "model", folder / "ws"
    code, _, stderr = run_cli("finance", "train", "--data", str(data), "--schema-file", str(schema),
                              "--out", str(model), "--max-steps", "20", "--timezone", "Europe/Berlin")
    assert code == 0, stderr
    code, stdout, stderr = run_cli("finance", "score", "--model", str(model), "--data", str(data),
                                   "--workspace", str(workspace), "--budget", "5", "--max-shap", "0")
    assert code == 0, stderr
    run_dir = Path(stdout.strip().removeprefix("wrote run "))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return data, pd.read_csv(data, dtype=str), manifest, run_dir


def test_history_reads_the_banks_file_through_the_runs_model(foreign_run):
    data, frame, manifest, run_dir = foreign_run
    scores_path = next(run_dir.rglob("scores.parquet"))
    scores = pd.read_parquet(scores_path)
    top = scores.iloc[0]
    history = finance_data.customer_history(manifest["inputs"][0], scores_path, top["customer_id"],
                                            top["timestamp"], days=10, model_dir=manifest["model"])
    # the bank's own rows of that card in the 10 days up to the alert, refunds included;
    # its times carry an offset and are compared on the model's wall clock (Europe/Berlin)
    local = pd.to_datetime(frame["ts"], utc=True).dt.tz_convert("Europe/Berlin").dt.tz_localize(None)
    mine = frame[(frame["card"] == top["customer_id"])
                 & local.between(top["timestamp"] - pd.Timedelta(days=10), top["timestamp"])]
    assert len(mine) > 1
    assert sorted(history["transaction_id"]) == sorted(mine["txn"])
    assert history.set_index("transaction_id")["amount"].to_dict() == pytest.approx(
        mine.set_index("txn")["amt"].astype(float).to_dict())
    assert history["timestamp"].is_monotonic_increasing
    assert (history.set_index("transaction_id").loc[top["transaction_id"], "timestamp"] == top["timestamp"])
    purchases = history[history["amount"] >= 0]
    assert purchases["score"].notna().all() and history.loc[history["amount"] < 0, "score"].isna().all()


def test_history_without_the_mapping_names_the_missing_columns(foreign_run):
    _, _, manifest, run_dir = foreign_run
    scores_path = next(run_dir.rglob("scores.parquet"))
    top = pd.read_parquet(scores_path).iloc[0]
    with pytest.raises(DataValidationError, match="'transaction_id'"):
        finance_data.customer_history(manifest["inputs"][0], scores_path, top["customer_id"],
                                      top["timestamp"])
