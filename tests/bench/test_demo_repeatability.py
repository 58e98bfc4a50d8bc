"""``bench.experiments.demo_repeatability``'s comparison of two demo workspaces: the run's
alerts, AUROC and scores (matched by item id), and per file (Parquet with its rows matched
by their ids, safetensors, NIfTI, JSON) the largest absolute difference and how many values
differ, NaN equal to NaN, with each workspace's own path in text not counted as a
difference, array cells compared value by value and a JSON file's creation times, run ids
and wall-clock seconds left out."""
import json

import nibabel
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
               middles=(0, 0, 0), order=(0, 1, 2), epochs=12):
    """A workspace holding one finance run (its rows in ``order``; every row names an input
    inside the workspace and holds a grid of 2000 cells, the middle one ``middles[row]``:
    numpy prints it as ``[0 0 0 ... 0 0 0]``; its manifest names its creation time, id and
    input), a model's weights and config (trained for ``epochs``, in seconds that differ
    from one workspace to another) and a data file."""
    workspace = root / name
    run = workspace / "runs" / "finance" / f"20260101T00000{name}-abcdef"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({
        "run_id": run.name, "created": f"2026-01-01T00:00:0{name}", "model": str(workspace),
        "inputs": [str(workspace / "data" / "x.parquet")],
        "summary": {"n_alerts": n_alerts, "auroc": 0.75}}))
    rows = pd.DataFrame({"transaction_id": IDS, "input": str(workspace / "data" / "x.parquet"),
                         "score": scores, "is_alert": [x > 1.2 for x in scores],
                         "cells": [_grid(m) for m in middles]})
    rows.iloc[list(order)].to_parquet(run / "scores.parquet")
    (workspace / "models" / "finance").mkdir(parents=True)
    save_file({"w": np.array(weight, np.float32)},
              workspace / "models" / "finance" / "w.safetensors")
    (workspace / "models" / "finance" / "config.json").write_text(json.dumps(
        {"config": {"training": {"epochs": epochs, "seconds": 10.0 + len(str(root / name))}}}))
    (workspace / "data" / "finance").mkdir(parents=True)
    pd.DataFrame({"amount": list(amounts)}).to_parquet(workspace / "data" / "finance" / "t.parquet")
    return workspace


def test_identical_workspaces_differ_nowhere_though_their_paths_do(tmp_path):
    a = _workspace(tmp_path, "a", [0.5, np.nan, 2.0])
    b = _workspace(tmp_path, "b", [0.5, np.nan, 2.0])
    row = compare_vertical(a, b, "finance")
    assert row["alerts"] == [2, 2] and row["summary_keys_differing"] == []
    assert row["max_score_difference"] == 0.0 and row["alerts_differing"] == 0
    assert [row[place]["files"] for place in ("runs", "models", "data")] == [2, 2, 1]
    for place in ("runs", "models", "data"):
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


def test_rows_are_matched_by_their_ids_though_the_runs_rank_them_differently(tmp_path):
    a = _workspace(tmp_path, "a", [0.5, 1.0, 2.0])
    b = _workspace(tmp_path, "b", [0.5, 1.0, 2.0], order=(2, 0, 1))
    row = compare_vertical(a, b, "finance")
    assert row["max_score_difference"] == 0.0 and row["alerts_differing"] == 0
    assert row["runs"]["files_differing"] == 0 and row["runs"]["max_abs_difference"] == 0.0
    assert row["runs"]["rows_matched_by"] == {"finance/scores.parquet": ["transaction_id"]}
    assert row["data"]["rows_matched_by"] == {"finance/t.parquet": "position"}  # no id column


def test_a_changed_row_is_found_after_matching_by_id(tmp_path):
    a = _workspace(tmp_path, "a", [0.5, 1.0, 2.0])
    b = _workspace(tmp_path, "b", [0.5, 1.5, 2.0], order=(2, 0, 1))
    scores = compare_vertical(a, b, "finance")["runs"]["differing"]["finance/scores.parquet"]
    assert scores["columns"] == {"score": {"max_abs_difference": 0.5, "values_differing": 1},
                                 "is_alert": {"max_abs_difference": 0.0, "values_differing": 1}}


def test_nan_on_both_sides_is_equal_in_weights_and_volumes_as_in_tables(tmp_path):
    a = _workspace(tmp_path, "a", [0.5, 1.0, 2.0], weight=(1.0, np.nan))
    b = _workspace(tmp_path, "b", [0.5, 1.0, 2.0], weight=(1.0, np.nan))
    for workspace, corner in ((a, 0.0), (b, 3.0)):
        volume = np.full((2, 2, 2), np.nan, np.float32)
        volume[0, 0, 0] = corner
        nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)),
                     workspace / "data" / "finance" / "v.nii.gz")
    row = compare_vertical(a, b, "finance")
    assert row["models"]["differing"] == {}
    assert row["data"]["differing"] == {
        "finance/v.nii.gz": {"max_abs_difference": 3.0, "values_differing": 1}}


def test_json_files_are_compared_leaving_out_times_run_ids_and_paths(tmp_path):
    a = _workspace(tmp_path, "a", [0.5, 1.0, 2.0])
    b = _workspace(tmp_path, "b", [0.5, 1.0, 2.0])
    row = compare_vertical(a, b, "finance")
    assert row["runs"]["json_fields_ignored"] == {"finance/manifest.json": ["created", "run_id"]}
    assert row["models"]["json_fields_ignored"] == {
        "finance/config.json": ["config.training.seconds"]}
    assert row["runs"]["differing"] == {} and row["models"]["differing"] == {}
    c = _workspace(tmp_path, "c", [0.5, 1.0, 2.0], epochs=15)
    config = compare_vertical(a, c, "finance")["models"]["differing"]["finance/config.json"]
    assert config == {"max_abs_difference": 3.0, "values_differing": 1,
                      "fields": ["config.training.epochs"],
                      "ignored": ["config.training.seconds"]}


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
