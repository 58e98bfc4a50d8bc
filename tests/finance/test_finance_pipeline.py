"""End to end: CLI simulate -> train -> score -> evaluate -> explain; detection floor; run files."""
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from core.cli import cli
from finance.detector import FinanceModel, FinanceModelConfig
from finance.evaluate import detection_metrics
from finance.train import train

FAST = {"components": ["network", "knn"], "max_steps": 150, "max_epochs": 10}
SCORE_COLUMNS = ["transaction_id", "timestamp", "customer_id", "terminal_id", "amount", "score",
                 "p_value", "is_alert", "warming_up", "rank"] + [f"reason_{k}_{p}" for k in (1, 2, 3)
                                                   for p in ("feature", "shap", "value", "usual", "text")]


@pytest.fixture(scope="module")
def model_dir(small_tx, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model"
    train(small_tx, out, until="2018-04-26", config=FinanceModelConfig(detector_params=FAST))
    return out


def test_detection_floor_on_later_weeks(model_dir, small_tx, tmp_path):
    from finance.features import featurise
    from finance.train import read_features

    model = FinanceModel.load(model_dir)
    featurise(small_tx, tmp_path / "f.parquet", cfg=model.config.features)
    test = read_features(tmp_path / "f.parquet", since="2018-04-26")
    metrics = detection_metrics(test["timestamp"], test["customer_id"], model.score(test),
                                test["is_fraud"], test["fraud_scenario"], k=10)
    assert metrics["auroc"] >= 0.85, metrics
    assert metrics["average_precision"] >= 0.3, metrics


def test_reload_scores_identically(model_dir, small_tx, tmp_path):
    from finance.features import featurise

    a, b = FinanceModel.load(model_dir), FinanceModel.load(model_dir)
    featurise(small_tx, tmp_path / "f.parquet", cfg=a.config.features)
    frame = pd.read_parquet(tmp_path / "f.parquet").iloc[:500]
    assert abs(a.score(frame) - b.score(frame)).max() <= 1e-6


def test_cli_end_to_end(tmp_path):
    runner = CliRunner()
    tx, model, scores = tmp_path / "tx.parquet", tmp_path / "model", tmp_path / "scores.parquet"

    def run(*args):
        result = runner.invoke(cli, ["finance", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "transactions" in run("simulate", "--customers", "60", "--terminals", "120", "--days", "21",
                                 "--seed", "1", "--out", str(tx))
    run("train", "--data", str(tx), "--out", str(model), "--until", "2018-04-15", "--max-steps", "100")
    summary = json.loads(run("score", "--model", str(model), "--data", str(tx), "--out", str(scores),
                             "--budget", "5"))
    assert summary["n_alerts"] == 5 and summary["n_transactions"] == pq.read_metadata(tx).num_rows
    frame = pd.read_parquet(scores)
    assert list(frame.columns[:len(SCORE_COLUMNS) - 15]) == SCORE_COLUMNS[:-15]
    assert set(SCORE_COLUMNS) <= set(frame.columns)
    assert (frame["rank"].to_numpy() == range(1, len(frame) + 1)).all()
    assert frame["score"].is_monotonic_decreasing and frame["is_alert"].sum() == 5
    alerts = frame[frame["is_alert"]]
    assert alerts["reason_1_text"].notna().all() and alerts["reason_1_shap"].gt(0).all()
    assert (tmp_path / "scores.explanations.parquet").exists()
    evaluation = json.loads(run("evaluate", "--scores", str(scores), "--data", str(tx), "--k", "5"))
    assert 0.5 < evaluation["auroc"] <= 1.0
    ids = ",".join(alerts["transaction_id"].iloc[:2])
    text = run("explain", "--model", str(model), "--data", str(tx), "--ids", ids)
    assert alerts["transaction_id"].iloc[0] in text and "1. " in text


def test_cli_errors_are_one_line(tmp_path, model_dir):
    from core.cli import main

    bad = tmp_path / "bad.csv"
    bad.write_text("transaction_id;timestamp;customer_id;terminal_id;amount\n"
                   "a;2024-01-01 10:00;c;t;-5\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["finance", "score", "--model", str(model_dir), "--data", str(bad), "--out",
              str(tmp_path / "s.parquet")])
    assert exit_info.value.code == 2 and not (tmp_path / "s.parquet").exists()


def test_feedback_from_labels_file_and_review_store(small_tx, small_frame, tmp_path):
    from core.review_store import ReviewStore
    from finance.scoring import score_transactions

    # Analysts' dispositions before 04-20: every fraud and 300 legitimate payments. The
    # review store's disposition is recorded now (wall clock), after `until`: never used.
    early = small_frame[small_frame["timestamp"] < "2018-04-20"]
    rows = pd.concat([early[early["is_fraud"] == 1], early[early["is_fraud"] == 0].sample(300, random_state=0)])
    labels = pd.DataFrame({"transaction_id": rows["transaction_id"], "confirmed_at": rows["timestamp"],
                           "decision": rows["is_fraud"].map({1: "fraud", 0: "legitimate"})})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    store = ReviewStore(tmp_path / "reviews.sqlite")
    store.record("finance", "disposition", small_frame["transaction_id"].iloc[100], "fraud", reviewer="ana")
    model = train(small_tx, tmp_path / "model", until="2018-04-26", labels=tmp_path / "labels.csv",
                  reviews=store.path, config=FinanceModelConfig(detector_params=FAST))
    assert model.config.features.feedback
    assert "terminal_confirmed_fraud_28d" in model.feature_names
    assert model.has_head and model.head_.n_labels_ == [300, int(early["is_fraud"].sum())]
    reloaded = FinanceModel.load(tmp_path / "model")
    assert reloaded.config.features.feedback_delay_days == 7.0 and reloaded.has_head
    summary = score_transactions(tmp_path / "model", small_tx, tmp_path / "scores.parquet",
                                 fdr=0.05, labels=tmp_path / "labels.csv", reviews=store.path, max_explained=8)
    assert summary["fdr"] == 0.05 and summary["auroc"] > 0.8
    assert summary["n_shap_explained"] == min(8, summary["n_alerts"])   # a head's score: SHAP only
    scores = pd.read_parquet(tmp_path / "scores.parquet")
    assert scores["is_alert"].sum() == summary["n_alerts"]
    assert scores["reason_1_text"].iloc[:summary["n_shap_explained"]].notna().all()
    # BH at 5 %: every alert's p-value is below every non-alert's.
    if summary["n_alerts"]:
        assert scores.loc[scores["is_alert"], "p_value"].max() <= scores.loc[~scores["is_alert"], "p_value"].min()
