"""Sharing and export data: link ids, CSV of the queue and of the review history (with
formula escaping), and the drift of a run against its calibration reference."""
import csv
import dataclasses
import io
import json

import pandas as pd
import pytest

from core.errors import DataValidationError
from core.review_store import ReviewStore
from dashboard import drift_data, export_data, finance_data, links
from dashboard_fixtures import write_finance_run

FORMULAS = ["=HYPERLINK(\"http://evil\",\"click\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\r=1"]


def read_csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


# --- links -----------------------------------------------------------------------------

def test_link_encodes_every_value_and_leaves_out_none():
    assert links.link("http://h:1/ct", {"run": "r", "case": "a b&c=d", "slice": 3, "x": None}) \
        == "http://h:1/ct?run=r&case=a+b%26c%3Dd&slice=3"
    assert links.link(None, {"run": "r"}) == "?run=r"


@pytest.mark.parametrize("value, message", [
    ("../../etc", "is not a valid run id"), ("a/b", "is not a valid run id"),
    (".hidden", "is not a valid run id"), ("x" * 200, "is not a valid run id"),
    ("other-run", "is not in this workspace")])
def test_path_ids_must_be_safe_and_known(value, message):
    with pytest.raises(DataValidationError, match=message):
        links.known_name(value, {"finance-run": {}}, "run")
    assert links.known_name("finance-run", {"finance-run": {}}, "run") == "finance-run"


def test_numbers_choices_and_text_ids():
    assert links.index_below("3", 12, "slice") == 3
    for bad, message in (("12", "outside 0 to 11"), ("-1", "outside"), ("3.5", "whole number"),
                         ("1e3", "whole number"), ("٣", "whole number")):
        with pytest.raises(DataValidationError, match=message):
            links.index_below(bad, 12, "slice")
    assert links.known_number("20", [19, 20], "frame") == 20
    with pytest.raises(DataValidationError, match="frame 21 is not in this log"):
        links.known_number("21", [19, 20], "frame")
    with pytest.raises(DataValidationError, match="not one of axial, coronal, sagittal"):
        links.known_choice("oblique", ("axial", "coronal", "sagittal"), "plane")
    assert links.text_id("TX-2026/01:42", "transaction") == "TX-2026/01:42"  # never a path
    for bad in ("", "a\nb", "x" * 257):
        with pytest.raises(DataValidationError, match="not a valid transaction id"):
            links.text_id(bad, "transaction")


def test_locate_finds_a_transaction_and_its_rank(synthetic_workspace):
    path = synthetic_workspace / "runs" / "finance" / "finance-run" / "scores.parquet"
    scores = pd.read_parquet(path)
    row = scores[scores["rank"] == 7].iloc[0]
    assert finance_data.locate(path, row["transaction_id"]) == (row["transaction_id"], 7)
    with pytest.raises(DataValidationError, match="transaction 'tx-none' is not in this run"):
        finance_data.locate(path, "tx-none")


# --- CSV -------------------------------------------------------------------------------

@pytest.mark.parametrize("value", FORMULAS)
def test_formula_cells_get_a_leading_quote(value):
    assert export_data.escape_formula(value) == "'" + value


def test_csv_escapes_text_cells_only_and_quotes_them():
    frame = pd.DataFrame({"note": FORMULAS + ["plain, \"quoted\"\nline"],
                          "amount": [-3.5, 1.0, 2.0, 3.0, 4.0, 5.0, -1.0]})
    rows = read_csv(export_data.to_csv(frame))
    assert rows[0] == ["note", "amount"]
    assert [r[0] for r in rows[1:]] == ["'" + f for f in FORMULAS] + ["plain, \"quoted\"\nline"]
    assert [float(r[1]) for r in rows[1:]] == frame["amount"].tolist()   # numbers stay numbers
    raw = export_data.to_csv(frame).decode()
    assert raw.splitlines()[1] == "\"'=HYPERLINK(\"\"http://evil\"\",\"\"click\"\")\",-3.5"


def test_queue_csv_is_every_filtered_row_in_queue_order_with_dispositions(workspace):
    path = workspace / "runs" / "finance" / "finance-run" / "scores.parquet"
    query = finance_data.QueueQuery(alerts_only=False, min_amount=20.0, max_amount=90.0,
                                    sort="amount", descending=True, page=3, page_size=10)
    shown, total = finance_data.queue_page(path, query)
    everything, _ = finance_data.queue_page(path, dataclasses.replace(query, page=1, page_size=1000))
    picked = shown.iloc[0]["transaction_id"]
    dispositions = pd.DataFrame({"item_id": [picked], "decision": ["fraud"]})
    rows = read_csv(export_data.queue_csv(path, query, dispositions))
    header, body = rows[0], rows[1:]
    assert header == ["rank", "disposition", *finance_data.QUEUE_COLUMNS[1:]]
    assert total > 30 and len(body) == total                          # all pages, not page 3
    ids = [r[header.index("transaction_id")] for r in body]
    assert ids == everything["transaction_id"].tolist()
    assert {r[1] for r in body if r[header.index("transaction_id")] == picked} == {"fraud"}
    assert [float(r[header.index("amount")]) for r in body] == everything["amount"].tolist()


def test_review_history_csv_has_every_vertical_who_what_when_escaped(workspace):
    store = ReviewStore(workspace / "reviews.sqlite")
    store.record("finance", "disposition", "tx00000001", "fraud", "=cmd|' /C calc'!A0",
                 note="@SUM(1+1)*cmd|' /C calc'!A0", run_id="finance-run")
    store.record("medical", "review", "patient_000", "accept", "dr who", note="-2+3",
                 run_id="medical-run")
    store.record("driving", "bookmark", "log_000:24", "bookmark", "eng",
                 note="pedestrian, behind \"the van\"\nsecond line", run_id="driving-run")
    rows = read_csv(export_data.review_history_csv(workspace / "reviews.sqlite"))
    assert rows[0] == list(export_data.HISTORY_COLUMNS)
    by_column = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert [(r["vertical"], r["kind"], r["item_id"], r["decision"], r["run_id"]) for r in by_column] == [
        ("finance", "disposition", "tx00000001", "fraud", "finance-run"),
        ("medical", "review", "patient_000", "accept", "medical-run"),
        ("driving", "bookmark", "log_000:24", "bookmark", "driving-run")]
    assert [r["reviewer"] for r in by_column] == ["'=cmd|' /C calc'!A0", "dr who", "eng"]
    assert [r["note"] for r in by_column] == ["'@SUM(1+1)*cmd|' /C calc'!A0", "'-2+3",
                                              "pedestrian, behind \"the van\"\nsecond line"]
    events = store.history()
    assert [pd.Timestamp(r["created_at"]) for r in by_column] == events["created_at"].tolist()


def test_review_history_csv_without_a_store_is_a_header_and_creates_nothing(tmp_path):
    rows = read_csv(export_data.review_history_csv(tmp_path / "reviews.sqlite"))
    assert rows == [list(export_data.HISTORY_COLUMNS)]
    assert not (tmp_path / "reviews.sqlite").exists()


# --- drift -----------------------------------------------------------------------------

def manifest_of(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


def test_run_drift_says_same_or_differ_in_plain_words(tmp_path):
    same = write_finance_run(tmp_path, run_id="same")
    moved = write_finance_run(tmp_path, run_id="moved", calibration_shift=-0.05)
    report = drift_data.run_drift(same / "scores.parquet", manifest_of(same)["summary"])
    assert report.verdict.startswith("scores look like the calibration data (p = ")
    assert report.drift.tested and report.drift.p_value >= 0.01
    assert report.n_alerts == 20 and report.alert_rate == pytest.approx(0.05)
    shifted = drift_data.run_drift(moved / "scores.parquet", manifest_of(moved)["summary"])
    assert shifted.drift.drifted
    assert shifted.verdict == f"scores differ from calibration: p = {shifted.drift.p_value:.2g}"
    assert shifted.drift.share_above_threshold > 0.2 > shifted.drift.nominal_rate  # scores rose


def test_run_drift_without_or_with_a_broken_reference(synthetic_workspace):
    run = synthetic_workspace / "runs" / "driving" / "driving-run"
    summary = manifest_of(run)["summary"]
    assert drift_data.run_drift(run / "frames.parquet", {"n_frames": 40}) is None
    broken = dict(summary, calibration_reference={"version": 1, "edges": "x"})
    with pytest.raises(DataValidationError, match="calibration reference"):
        drift_data.run_drift(run / "frames.parquet", broken)
    with pytest.raises(DataValidationError, match="cannot read the scores"):
        drift_data.run_drift(run / "missing.parquet", summary)
