"""build_demo('tiny') writes the run directory the dashboard reads (docs/runs.md)."""
import time

import pandas as pd

from core.runs import list_runs, load_manifest
from finance.demo import build_demo


def test_tiny_demo_follows_the_run_contract(tmp_path):
    start = time.perf_counter()
    run_dir = build_demo(tmp_path, size="tiny", seed=0)
    elapsed = time.perf_counter() - start
    assert (tmp_path / "data" / "finance" / "transactions.parquet").is_file()
    assert (tmp_path / "models" / "finance" / "default" / "finance.json").is_file()
    manifest = load_manifest(run_dir)
    assert manifest["vertical"] == "finance" and list_runs(tmp_path, "finance")[0]["run_id"] == run_dir.name
    assert manifest["inputs"] == [str((tmp_path / "data" / "finance" / "transactions.parquet").resolve())]
    summary = manifest["summary"]
    for key in ("n_transactions", "n_alerts", "n_warming_up", "expected_score", "budget", "auroc",
                "average_precision"):
        assert key in summary, key
    scores = pd.read_parquet(run_dir / manifest["outputs"]["scores"])
    assert scores["rank"].tolist() == list(range(1, len(scores) + 1))
    assert str(scores["timestamp"].dtype).startswith("datetime64")
    for column, kind in (("transaction_id", "str"), ("customer_id", "str"), ("terminal_id", "str")):
        assert pd.api.types.is_string_dtype(scores[column]), column
    for column in ("amount", "score", "p_value") + tuple(f"reason_{k}_{p}" for k in (1, 2, 3)
                                                         for p in ("shap", "value", "usual")):
        assert scores[column].dtype == "float64", column
    assert scores["is_alert"].dtype == bool and scores["rank"].dtype == "int64"
    # docs/runs.md: warming_up marks cards without enough history; they are never alerted
    assert scores["warming_up"].dtype == bool and scores["warming_up"].sum() == summary["n_warming_up"]
    assert not (scores["warming_up"] & scores["is_alert"]).any()
    assert scores["is_alert"].sum() == summary["n_alerts"] > 0
    # SHAP for the top of the queue only; the other alerts get the exact error attribution.
    assert 0 < summary["n_shap_explained"] < summary["n_alerts"] == summary["n_explained"]
    assert {"is_fraud", "fraud_scenario"} <= set(scores.columns)
    alerts = scores[scores["is_alert"]]
    assert alerts["reason_1_text"].str.len().gt(10).all()
    explanations = pd.read_parquet(run_dir / manifest["outputs"]["explanations"])
    assert list(explanations.columns) == ["transaction_id", "feature", "shap_value", "value", "usual_value"]
    assert set(explanations["transaction_id"]) == set(alerts["transaction_id"])
    # SHAP additivity: per alert, the SHAP values sum to score - expected score.
    sums = explanations.groupby("transaction_id")["shap_value"].sum()
    gap = (sums - (alerts.set_index("transaction_id")["score"] - summary["expected_score"])).abs()
    assert (gap < 1e-3 * alerts["score"].abs().max() + 1e-6).all()
    print(f"tiny demo built in {elapsed:.1f} s")
