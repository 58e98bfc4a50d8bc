"""``bench.experiments.demo_repeatability``'s comparison of two demo workspaces: the run's
alerts, AUROC and scores (matched by item id), and per file (Parquet, safetensors) the
largest absolute difference and how many values differ, with each workspace's own path in
the runs' text columns not counted as a difference and array cells compared value by value."""
import json

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import save_file

from bench.experiments.demo_repeatability import compare_vertical, finished, pairs
from core.verticals import names

IDS = ["tx0", "tx1", "tx2"]


def _grid(middle: int) -> np.ndarray:
    grid = np.zeros(2000, np.uint8)
    grid[1000] = middle
    return grid


def _workspace(root, name, scores, weight=(1.0, 2.0), n_alerts=2, amounts=(1.0, np.nan),
               middles=(0, 0, 0), order=(0, 1, 2)):
    """A workspace holding one finance run (its rows in ``order``; every row names an input
    inside the workspace and holds a grid of 2000 cells, the middle one ``middles[row]``:
    numpy prints it as ``[0 0 0 ... 0 0 0]``), a model's weights and a data file."""
    workspace = root / name
    run = workspace / "runs" / "finance" / f"20260101T00000{name}-abcdef"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"summary": {"n_alerts": n_alerts,
                                                               "auroc": 0.75}}))
    rows = pd.DataFrame({"transaction_id": IDS, "input": str(workspace / "data" / "x.parquet"),
                         "score": scores, "is_alert": [x > 1.2 for x in scores],
                         "cells": [_grid(m) for m in middles]})
    rows.iloc[list(order)].to_parquet(run / "scores.parquet")
    (workspace / "models" / "finance").mkdir(parents=True)
    save_file({"w": np.array(weight, np.float32)},
              workspace / "models" / "finance" / "w.safetensors")
    (workspace / "data" / "finance").mkdir(parents=True)
    pd.DataFrame({"amount": list(amounts)}).to_parquet(workspace / "data" / "finance" / "t.parquet")
    return workspace


def test_identical_workspaces_differ_nowhere_though_their_paths_do(tmp_path):
    a = _workspace(tmp_path, "a", [0.5, np.nan, 2.0])
    b = _workspace(tmp_path, "b", [0.5, np.nan, 2.0])
    row = compare_vertical(a, b, "finance")
    assert row["alerts"] == [2, 2] and row["summary_keys_differing"] == []
    assert row["max_score_difference"] == 0.0 and row["alerts_differing"] == 0
    for place in ("runs", "models", "data"):
        assert row[place]["files"] == 1
        assert row[place]["max_abs_difference"] == 0.0 and row[place]["differing"] == {}


def test_a_changed_score_weight_cell_value_or_alert_count_is_measured(tmp_path):
    a = _workspace(tmp_path, "a", [0.5, 1.0, 2.0])
    b = _workspace(tmp_path, "b", [0.5, 1.25, 2.0], weight=(1.0, 1.5), n_alerts=3,
                   amounts=(1.0, 2.0), middles=(0, 0, 7))
    row = compare_vertical(a, b, "finance")
    assert row["alerts"] == [2, 3] and row["summary_keys_differing"] == ["n_alerts"]
    assert row["max_score_difference"] == pytest.approx(0.25) and row["alerts_differing"] == 1
    scores = row["runs"]["differing"]["finance/scores.parquet"]
    assert scores["columns"] == {"score": {"max_abs_difference": 0.25, "values_differing": 1},
                                 "is_alert": {"max_abs_difference": 0.0, "values_differing": 1},
                                 "cells": {"max_abs_difference": 7.0, "values_differing": 1}}
    assert row["models"]["differing"] == {
        "finance/w.safetensors": {"max_abs_difference": 0.5, "values_differing": 1}}
    amount = row["data"]["differing"]["finance/t.parquet"]["columns"]["amount"]
    assert amount == {"max_abs_difference": float("inf"), "values_differing": 1}  # NaN vs 2.0


def test_scores_are_matched_by_item_though_the_rows_are_ranked_differently(tmp_path):
    a = _workspace(tmp_path, "a", [0.5, 1.0, 2.0])
    b = _workspace(tmp_path, "b", [0.5, 1.0, 2.0], order=(2, 0, 1))
    row = compare_vertical(a, b, "finance")
    assert row["max_score_difference"] == 0.0 and row["alerts_differing"] == 0
    assert row["runs"]["files_differing"] == 1  # the file itself holds its rows elsewhere


def test_a_workspace_counts_as_built_only_when_every_vertical_finished(tmp_path):
    logs = tmp_path / ".demo"
    logs.mkdir()
    assert not finished(tmp_path)
    for vertical in names():
        (logs / f"{vertical}.json").write_text(json.dumps({"run_dir": "x"}))
    assert finished(tmp_path)
    (logs / f"{names()[0]}.json").write_text(json.dumps({"error": "ValueError: no"}))
    assert not finished(tmp_path)


def test_each_run_is_compared_with_the_first_at_its_thread_count():
    runs = [("a", 1), ("b", 1), ("c", 2), ("d", 2), ("e", 1)]
    assert pairs(runs) == [("a", "b"), ("a", "c"), ("c", "d"), ("a", "e")]
