"""Whole-run statistics (queue bounds, the drift test) computed once per run into its
``cache/`` folder, and computed again once the run's files change."""
import json

import pyarrow.parquet as pq
import pytest

from dashboard import drift_data, finance_data
from dashboard_fixtures import write_finance_run


def cached_files(run_dir, kind):
    return sorted((run_dir / "cache").glob(f"{kind}-*.json"))


def test_bounds_are_kept_in_the_run_and_follow_a_rewritten_file(tmp_path):
    run = write_finance_run(tmp_path, n=400, alert_rate=0.05)
    scores = run / "scores.parquet"
    assert finance_data.run_bounds(scores) == finance_data.queue_bounds(scores)
    stored, = cached_files(run, "bounds")
    assert json.loads(stored.read_text())["value"]["n_rows"] == 400
    assert finance_data.run_bounds(scores)["first_date"].isoformat() == "2026-01-01"

    pq.write_table(pq.read_table(scores).slice(0, 100), scores)    # the run republished
    bounds = finance_data.run_bounds(scores)
    assert bounds["n_rows"] == 100 and bounds["n_alerts"] == 20
    assert cached_files(run, "bounds") != [stored] and len(cached_files(run, "bounds")) == 1


def test_drift_is_kept_per_reference(tmp_path):
    run = write_finance_run(tmp_path, n=400)
    summary = json.loads((run / "manifest.json").read_text())["summary"]
    first = drift_data.run_drift(run / "scores.parquet", summary)
    assert drift_data.run_drift(run / "scores.parquet", summary) == first
    assert len(cached_files(run, "drift")) == 1
    # another reference (the manifest rewritten with a moved calibration) is tested afresh
    moved = dict(summary["calibration_reference"])
    moved["edges"] = [e - 0.05 for e in moved["edges"]]
    other = drift_data.run_drift(run / "scores.parquet", {**summary, "calibration_reference": moved})
    assert other.drift.p_value != pytest.approx(first.drift.p_value)
    assert other.drift.share_above_threshold == first.drift.share_above_threshold
