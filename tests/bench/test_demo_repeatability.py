"""``bench.experiments.demo_repeatability``'s comparison of two demo workspaces: the run's
alerts and AUROC, and per file (Parquet, safetensors) the largest absolute difference, with
each workspace's own path in the runs' text columns not counted as a difference."""
import json

import numpy as np
import pandas as pd
from safetensors.numpy import save_file

from bench.experiments.demo_repeatability import compare_vertical, finished
from core.verticals import names


def _workspace(root, name, scores, weight, n_alerts=2, amounts=(1.0, np.nan)):
    """A workspace holding one finance run (scores naming an input inside the workspace),
    a model's weights and a data file."""
    workspace = root / name
    run = workspace / "runs" / "finance" / f"20260101T00000{name}-abcdef"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"summary": {"n_alerts": n_alerts,
                                                               "auroc": 0.75}}))
    pd.DataFrame({"input": [str(workspace / "data" / "x.parquet")] * len(scores),
                  "score": scores}).to_parquet(run / "scores.parquet")
    (workspace / "models" / "finance").mkdir(parents=True)
    save_file({"w": np.array(weight, np.float32)},
              workspace / "models" / "finance" / "w.safetensors")
    (workspace / "data" / "finance").mkdir(parents=True)
    pd.DataFrame({"amount": list(amounts)}).to_parquet(workspace / "data" / "finance" / "t.parquet")
    return workspace


def test_identical_workspaces_differ_nowhere_though_their_paths_do(tmp_path):
    a = _workspace(tmp_path, "a", [0.5, np.nan, 2.0], [1.0, 2.0])
    b = _workspace(tmp_path, "b", [0.5, np.nan, 2.0], [1.0, 2.0])
    row = compare_vertical(a, b, "finance")
    assert row["alerts"] == [2, 2] and row["summary_keys_differing"] == []
    for place in ("runs", "models", "data"):
        assert row[place]["files"] == 1
        assert row[place]["max_abs_difference"] == 0.0 and row[place]["differing"] == {}


def test_a_changed_score_weight_value_or_alert_count_is_measured(tmp_path):
    a = _workspace(tmp_path, "a", [0.5, 1.0, 2.0], [1.0, 2.0])
    b = _workspace(tmp_path, "b", [0.5, 1.25, 2.0], [1.0, 1.5], n_alerts=3, amounts=(1.0, 2.0))
    row = compare_vertical(a, b, "finance")
    assert row["alerts"] == [2, 3] and row["summary_keys_differing"] == ["n_alerts"]
    assert row["runs"]["differing"] == {"finance/scores.parquet": 0.25}
    assert row["models"]["differing"] == {"finance/w.safetensors": 0.5}
    assert row["data"]["differing"] == {"finance/t.parquet": float("inf")}  # NaN against 2.0


def test_a_workspace_counts_as_built_only_when_every_vertical_finished(tmp_path):
    logs = tmp_path / ".demo"
    logs.mkdir()
    assert not finished(tmp_path)
    for vertical in names():
        (logs / f"{vertical}.json").write_text(json.dumps({"run_dir": "x"}))
    assert finished(tmp_path)
    (logs / f"{names()[0]}.json").write_text(json.dumps({"error": "ValueError: no"}))
    assert not finished(tmp_path)
