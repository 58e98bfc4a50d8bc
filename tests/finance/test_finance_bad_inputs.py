"""Bad and odd transaction files through the real CLI (`unmask finance score`).

Bad files: exit code 2, exactly one ``Error:`` line naming the file, the column, the value
(and the row where there is one), and the outputs already on disk are left as they were.
Odd but valid files (SQL in a column name, ``"`` in a column name, ``'`` in the output path,
true/false labels, UTC offsets): scored, and no SQL from the file is ever executed.
"""
import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.metrics import auroc
from finance.detector import FinanceModel
from finance.scoring import score_transactions
from finance.simulator import SimulatorConfig, simulate_to_parquet
from finance_cli_runner import run_cli as _cli

TINY = SimulatorConfig(n_customers=30, n_terminals=60, n_days=10, seed=1)
ZONE = "Europe/Berlin"   # the model's zone: aware times become Berlin wall clock


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(simulated file, its first 40 rows as a frame)."""
    path = simulate_to_parquet(tmp_path_factory.mktemp("tiny") / "tx.parquet", TINY)
    return path, pd.read_parquet(path).head(40).reset_index(drop=True)


@pytest.fixture(scope="module")
def model(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "model"
    # the scored files are 40 rows, where no card has history yet: warm-up off, so they alert
    code, _, err = _cli("finance", "train", "--data", str(tiny[0]), "--out", str(out),
                        "--max-steps", "20", "--timezone", ZONE, "--min-history", "0", "--min-history-days", "0")
    assert code == 0, err
    return out


def _score(model, data, out, *extra):
    return _cli("finance", "score", "--model", str(model), "--data", str(data), "--out", str(out),
                "--budget", "3", "--max-shap", "0", *extra)


def _write(frame, path, columns=None):
    """``frame`` as CSV or Parquet by suffix; ``columns`` replaces Arrow columns as given."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
        return path
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for name, array in (columns or {}).items():
        table = table.set_column(table.column_names.index(name), name, array)
    pq.write_table(table, path)
    return path


def _with(frame, column, row, value):
    frame = frame.copy()
    frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    return frame


def _snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


# id, file name, build(frame, path) -> path, words the one error line must hold (a word may
# be a function of the frame)
BAD = [
    ("unknown-channel", "tx.csv", lambda f, p: _write(_with(f, "channel", 3, "online"), p),
     ["'channel'", "row 4", "'online'", "card_present", "card_not_present"]),
    ("missing-channel", "tx.parquet", lambda f, p: _write(_with(f, "channel", 5, None), p),
     ["'channel'", "row 6", "missing"]),
    ("nan-coordinate", "tx.parquet",
     lambda f, p: _write(f, p, {"customer_x": pa.array(np.where(np.arange(40) == 2, np.nan, f["customer_x"]))}),
     ["'customer_x'", "row 3", "nan"]),
    ("inf-coordinate", "tx.csv", lambda f, p: _write(_with(f, "terminal_y", 7, "inf"), p),
     ["'terminal_y'", "row 8", "inf"]),
    ("minus-inf-coordinate", "tx.parquet",
     lambda f, p: _write(f, p, {"terminal_x": pa.array(np.where(np.arange(40) == 0, -np.inf, f["terminal_x"]))}),
     ["'terminal_x'", "row 1", "-inf"]),
    ("is-fraud-yes-no", "tx.csv",
     lambda f, p: _write(f.assign(is_fraud=np.where(f["is_fraud"] == 1, "yes", "no")), p),
     ["'is_fraud'", "row 1", "'no'"]),
    ("is-fraud-Y-N", "tx.parquet",
     lambda f, p: _write(f.assign(is_fraud=np.where(np.arange(40) == 4, "Y", "0")), p),
     ["'is_fraud'", "row 5", "'Y'"]),
    ("is-fraud-two", "tx.parquet", lambda f, p: _write(_with(f, "is_fraud", 9, 2).astype({"is_fraud": "int64"}), p),
     ["'is_fraud'", "row 10", "'2'"]),
    ("fraud-scenario-text", "tx.csv", lambda f, p: _write(_with(f, "fraud_scenario", 1, "travel"), p),
     ["'fraud_scenario'", "row 2", "'travel'"]),
    ("missing-required-column", "tx.parquet", lambda f, p: _write(f.drop(columns="terminal_id"), p),
     ["terminal_id", "missing required column"]),
    ("unparsable-timestamp", "tx.csv", lambda f, p: _write(_with(f, "timestamp", 6, "2018-13-45 99:00"), p),
     ["'timestamp'", "row 7", "'2018-13-45 99:00'"]),
    ("offsets-mixed-with-naive-times", "tx.csv",
     lambda f, p: _write(_with(f.assign(timestamp=f["timestamp"].astype(str) + "+02:00"), "timestamp", 3,
                               str(f["timestamp"][3])), p),
     ["'timestamp'", "row 4", lambda f: repr(str(f["timestamp"][3])), "offset"]),
    ("quote-in-a-bad-value", "tx.csv",
     lambda f, p: _write(_with(f, "channel", 0, 'x"y'), p), ["'channel'", "row 1", "'x\"y'"]),
]


@pytest.mark.parametrize("case, name, build, words", BAD, ids=[b[0] for b in BAD])
def test_bad_file_is_one_error_line_and_touches_nothing(model, tiny, tmp_path, case, name, build, words):
    data = build(tiny[1], tmp_path / name)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "scores.parquet").write_bytes(b"yesterday's scores")
    (out_dir / "scores.explanations.parquet").write_bytes(b"yesterday's explanations")
    before = _snapshot(out_dir)
    code, stdout, stderr = _score(model, data, out_dir / "scores.parquet")
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert str(data) in lines[0], lines[0]
    for word in words:
        word = word(tiny[1]) if callable(word) else word
        assert word in lines[0], (word, lines[0])
    assert _snapshot(out_dir) == before


def _injection(canary):
    return f"x\" AS zz FROM tx__raw; COPY (SELECT 42) TO '{canary}'; SELECT 1 AS \"y"


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_sql_in_a_column_name_is_never_executed(model, tiny, tmp_path, suffix):
    canary = tmp_path / "injected.csv"
    frame = tiny[1].assign(x=1.0, **{_injection(canary): 2.0})
    data = _write(frame, tmp_path / f"tx{suffix}")
    code, _, stderr = _score(model, data, tmp_path / "scores.parquet")
    assert not canary.exists()
    assert code == 0, stderr
    assert len(pd.read_parquet(tmp_path / "scores.parquet")) == 40


def test_quote_in_column_names_and_in_out_path(model, tiny, tmp_path):
    frame = tiny[1].assign(**{'note "a"': "n", "it's": 1.0, '"': 2.0})
    data = _write(frame, tmp_path / "tx.csv")
    out = tmp_path / "analyst's \"queue\"; DROP TABLE x" / "scores.parquet"
    code, _, stderr = _score(model, data, out)
    assert code == 0, stderr
    scores = pd.read_parquet(out)
    assert len(scores) == 40 and scores["is_alert"].sum() == 3
    assert (out.parent / "scores.explanations.parquet").exists()


@pytest.mark.parametrize("coding", ["bool-parquet", "true-false-csv", "0-1-csv-with-gaps"])
def test_true_false_labels_are_accepted(model, tiny, tmp_path, coding):
    frame = tiny[1].copy()
    frame.loc[[0, 5, 9], "is_fraud"] = 1
    if coding == "bool-parquet":
        data = _write(frame.astype({"is_fraud": bool}), tmp_path / "tx.parquet")
    elif coding == "true-false-csv":
        data = _write(frame.assign(is_fraud=frame["is_fraud"].map({0: "False", 1: "TRUE"})), tmp_path / "tx.csv")
    else:   # a missing label is unknown, not legitimate: pandas writes the others as 0.0 / 1.0
        data = _write(frame.assign(is_fraud=frame["is_fraud"].where(frame.index != 5)), tmp_path / "tx.csv")
    code, stdout, stderr = _score(model, data, tmp_path / "scores.parquet")
    assert code == 0, stderr
    scores = pd.read_parquet(tmp_path / "scores.parquet").set_index("transaction_id")
    truth = scores.loc[frame["transaction_id"], "is_fraud"].to_numpy(dtype=float, na_value=np.nan)
    expected = frame["is_fraud"].astype(float)
    if coding.startswith("0-1"):
        expected[5] = np.nan
    np.testing.assert_array_equal(truth, expected.to_numpy())
    known = ~np.isnan(truth)   # the AUROC is over the known labels only
    score = scores.loc[frame["transaction_id"], "score"].to_numpy()
    assert json.loads(stdout)["auroc"] == pytest.approx(auroc(truth[known].astype(int), score[known]))


def test_offsets_and_aware_parquet_read_the_same(model, tiny, tmp_path):
    """A CSV with UTC offsets and a tz-aware Parquet file of the same instants give the same
    scores; both are converted to the model's zone (Berlin) and stored there."""
    frame = tiny[1]
    instants = frame["timestamp"].dt.tz_localize("UTC")
    offsets = frame.assign(timestamp=instants.dt.tz_convert("America/New_York")
                           .dt.strftime("%Y-%m-%dT%H:%M:%S%z"))
    aware = frame.assign(timestamp=instants.dt.tz_convert("Asia/Kolkata"))
    naive_berlin = frame.assign(timestamp=instants.dt.tz_convert(ZONE).dt.tz_localize(None))
    results = []
    for name, table in (("offsets.csv", offsets), ("aware.parquet", aware), ("naive.parquet", naive_berlin)):
        out = tmp_path / f"{name}.scores.parquet"
        code, _, stderr = _score(model, _write(table, tmp_path / name), out)
        assert code == 0, stderr
        results.append(pd.read_parquet(out).sort_values("transaction_id").reset_index(drop=True))
    for other in results[1:]:
        pd.testing.assert_frame_equal(results[0], other)
    assert FinanceModel.load(model).config.features.timezone == ZONE
    first = results[0].set_index("transaction_id").loc[frame["transaction_id"][0], "timestamp"]
    assert first == instants[0].tz_convert(ZONE).tz_localize(None)


def test_unknown_timezone_is_one_line(tiny, tmp_path):
    code, _, stderr = _cli("finance", "train", "--data", str(tiny[0]), "--out", str(tmp_path / "m"),
                           "--timezone", "Mars/Olympus")
    assert code == 2 and stderr.count("\n") == 1 and "'Mars/Olympus'" in stderr, stderr
    assert not (tmp_path / "m").exists()


def test_scores_and_explanations_go_out_together(model, tiny, tmp_path):
    """When the explanations cannot be written, yesterday's scores stay: the pair is
    written in full before either file is renamed into place."""
    out = tmp_path / "scores.parquet"
    out.write_bytes(b"yesterday's scores")
    (tmp_path / "not-a-folder").write_text("")
    with pytest.raises(OSError):
        score_transactions(model, tiny[0], out, tmp_path / "not-a-folder" / "explanations.parquet", budget=3,
                           max_shap=0)
    assert out.read_bytes() == b"yesterday's scores"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder", "scores.parquet"]


def test_tampered_model_config_never_reaches_sql(model, tiny, tmp_path):
    """The feature config's windows are spliced into SQL as numbers; a bundle whose windows
    are not whole days is refused in one line before any SQL runs."""
    canary = tmp_path / "injected.csv"
    bad = shutil.copytree(model, tmp_path / "model")
    state = json.loads((bad / "finance.json").read_text())
    state["config"]["features"]["feedback_windows_days"] = {
        "terminal": [f"1 PRECEDING) AS x FROM base; COPY (SELECT 1) TO '{canary}'; --"]}
    (bad / "finance.json").write_text(json.dumps(state))
    code, _, stderr = _score(bad, tiny[0], tmp_path / "scores.parquet")
    assert code == 2 and stderr.startswith("Error: ") and stderr.count("\n") == 1, stderr
    assert "feedback windows" in stderr and not canary.exists()
    assert not (tmp_path / "scores.parquet").exists()
