"""Reading confirmations: labels files (CSV/Parquet) and the review store."""
import pandas as pd
import pytest

from core.errors import DataValidationError
from core.review_store import ReviewStore
from finance.feedback import load_confirmations, read_labels


def test_labels_file_with_decisions(tmp_path):
    path = tmp_path / "labels.csv"
    pd.DataFrame({"transaction_id": ["t1", "t2", "t3"],
                  "decision": ["fraud", "legitimate", "needs_information"],
                  "confirmed_at": ["2024-01-05 10:00", "2024-01-06", "2024-01-07"]}).to_csv(path, sep=";", index=False)
    labels = read_labels(path)
    assert labels["transaction_id"].tolist() == ["t1", "t2"]          # needs_information is no label
    assert labels["is_fraud"].tolist() == [True, False]
    assert labels["confirmed_at"].iloc[0] == pd.Timestamp("2024-01-05 10:00")


def test_labels_file_with_is_fraud_parquet(tmp_path):
    path = tmp_path / "labels.parquet"
    pd.DataFrame({"transaction_id": ["t1"], "is_fraud": [1],
                  "timestamp": [pd.Timestamp("2024-01-05")]}).to_parquet(path)
    assert read_labels(path)["is_fraud"].tolist() == [True]


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"id": ["t1"], "is_fraud": [1], "confirmed_at": ["2024-01-01"]}), "need a 'transaction_id'"),
    (pd.DataFrame({"transaction_id": ["t1"], "is_fraud": [1]}), "need a 'confirmed_at'"),
    (pd.DataFrame({"transaction_id": ["t1"], "decision": ["maybe"], "confirmed_at": ["2024-01-01"]}),
     "'maybe' is not fraud, legitimate or needs_information"),
    (pd.DataFrame({"transaction_id": ["t1"], "is_fraud": [1], "confirmed_at": ["someday"]}),
     "row 1: cannot parse 'someday'"),
])
def test_bad_labels(tmp_path, frame, message):
    path = tmp_path / "labels.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=message):
        read_labels(path)


def test_review_store_and_labels_merge_latest_wins(tmp_path):
    store = ReviewStore(tmp_path / "reviews.sqlite")
    store.record("finance", "disposition", "t1", "legitimate", reviewer="ana")
    store.record("finance", "disposition", "t1", "fraud", reviewer="bo")
    store.record("finance", "disposition", "t2", "needs_information", reviewer="ana")
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"transaction_id": ["t3"], "is_fraud": [1], "confirmed_at": ["2020-01-01"]}).to_csv(labels, index=False)
    merged = load_confirmations(labels, store.path).set_index("transaction_id")
    assert sorted(merged.index) == ["t1", "t3"]
    assert bool(merged.loc["t1", "is_fraud"]) and bool(merged.loc["t3", "is_fraud"])
    assert merged.loc["t1", "confirmed_at"] > pd.Timestamp("2024-01-01")   # wall-clock confirmation


def test_labels_follow_the_transactions_time_zone_rule(tmp_path):
    """Offsets are converted to the model's zone, like the transactions' (not to UTC while
    the transactions are in another zone); naive times are kept."""
    path = tmp_path / "labels.csv"
    pd.DataFrame({"transaction_id": ["t1", "t2"], "is_fraud": ["TRUE", "false"],
                  "confirmed_at": ["2024-01-05T10:00:00Z", "2024-07-05 10:00:00+02:00"]}).to_csv(path, index=False)
    labels = read_labels(path, timezone="Europe/Berlin")
    assert labels["confirmed_at"].tolist() == [pd.Timestamp("2024-01-05 11:00"), pd.Timestamp("2024-07-05 10:00")]
    assert labels["is_fraud"].tolist() == [True, False]
    pd.DataFrame({"transaction_id": ["t1"], "is_fraud": [1],
                  "confirmed_at": [pd.Timestamp("2024-01-05 10:00", tz="UTC")]}).to_parquet(tmp_path / "l.parquet")
    assert read_labels(tmp_path / "l.parquet", "Europe/Berlin")["confirmed_at"][0] == pd.Timestamp("2024-01-05 11:00")
    naive = tmp_path / "naive.csv"
    pd.DataFrame({"transaction_id": ["t1"], "is_fraud": [1], "confirmed_at": ["2024-01-05 10:00"]}).to_csv(naive)
    assert read_labels(naive, "Europe/Berlin")["confirmed_at"][0] == pd.Timestamp("2024-01-05 10:00")


@pytest.mark.parametrize("column, values, message", [
    ("is_fraud", ["1", "yes"], r"column 'is_fraud', row 2: 'yes' is not 0/1 or true/false"),
    ("confirmed_at", ["2024-01-05 10:00+01:00", "2024-01-05 11:00"],
     r"column 'confirmed_at', row 2: '2024-01-05 11:00' has no UTC offset"),
])
def test_bad_label_cells_name_row_and_value(tmp_path, column, values, message):
    frame = pd.DataFrame({"transaction_id": ["t1", "t2"], "is_fraud": ["1", "0"],
                          "confirmed_at": ["2024-01-05", "2024-01-06"]})
    frame[column] = values
    frame.to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(DataValidationError, match=message):
        read_labels(tmp_path / "labels.csv")
