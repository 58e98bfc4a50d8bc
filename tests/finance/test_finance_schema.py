"""Bad input: specific errors naming column/row/value; nothing half-written."""
import pandas as pd
import pytest

from core.errors import DataValidationError
from finance.features import featurise
from finance.schema import read_transactions

ROWS = pd.DataFrame({
    "transaction_id": ["a", "b", "c", "d"],
    "timestamp": ["2024-01-01 10:00:00", "2024-01-01 11:00:00", "2024-01-02 09:30:00", "2024-01-03 08:00:00"],
    "customer_id": ["c1", "c1", "c2", "c1"],
    "terminal_id": ["t1", "t2", "t1", "t1"],
    "amount": ["10.5", "20", "7.25", "99"],
})


def _csv(tmp_path, frame, sep=",", name="tx.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False, sep=sep)
    return path


def _with(column, row, value):
    frame = ROWS.copy()
    frame.loc[row, column] = value
    return frame


@pytest.mark.parametrize("sep", [",", ";", "|", "\t"])
def test_csv_delimiter_is_sniffed(tmp_path, sep):
    df = read_transactions(_csv(tmp_path, ROWS, sep))
    assert list(df["transaction_id"]) == ["a", "b", "c", "d"]
    assert df["amount"].tolist() == [10.5, 20.0, 7.25, 99.0]


def test_missing_column(tmp_path):
    with pytest.raises(DataValidationError, match=r"missing required column\(s\) 'terminal_id'"):
        read_transactions(_csv(tmp_path, ROWS.drop(columns="terminal_id")))


def test_unparsable_timestamp(tmp_path):
    path = _csv(tmp_path, _with("timestamp", 2, "yesterday noon"))
    with pytest.raises(DataValidationError,
                       match=r"'timestamp', row 3 \(transaction_id 'c'\): cannot parse 'yesterday noon'"):
        read_transactions(path)


def test_non_numeric_amount(tmp_path):
    path = _csv(tmp_path, _with("amount", 1, "12,50 EUR"), sep=";")
    with pytest.raises(DataValidationError,
                       match=r"'amount', row 2 \(transaction_id 'b'\): '12,50 EUR' is not a finite number"):
        read_transactions(path)


def test_negative_amount(tmp_path):
    with pytest.raises(DataValidationError, match=r"'amount', row 4 \(transaction_id 'd'\): negative amount -99.*--refunds"):
        read_transactions(_csv(tmp_path, _with("amount", 3, "-99")))


def test_duplicate_transaction_id(tmp_path):
    with pytest.raises(DataValidationError, match=r"duplicate id 'b' \(2 rows\)"):
        read_transactions(_csv(tmp_path, _with("transaction_id", 2, "b")))


def test_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataValidationError, match="empty file"):
        read_transactions(empty)
    header = _csv(tmp_path, ROWS.iloc[:0], name="header.csv")
    with pytest.raises(DataValidationError, match="no transactions"):
        read_transactions(header)
    parquet = tmp_path / "empty.parquet"
    ROWS.iloc[:0].to_parquet(parquet)
    with pytest.raises(DataValidationError, match="no transactions"):
        read_transactions(parquet)


def test_out_of_order_rows_are_handled_by_time(tmp_path):
    ordered = featurise(_csv(tmp_path, ROWS, name="a.csv"), tmp_path / "a.parquet")
    featurise(_csv(tmp_path, ROWS.iloc[::-1], name="b.csv"), tmp_path / "b.parquet")
    a = pd.read_parquet(tmp_path / "a.parquet").sort_values("_row").reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "b.parquet").sort_values("_row").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert not ordered.columns.locations and "channel" not in ordered.columns.columns
    assert list(a["transaction_id"]) == ["a", "b", "c", "d"]
    # d sees c1's two earlier payments in its 7-day window, none in its 1-hour window.
    assert a.loc[3, "ctx_card_n_7d"] == 2 and a.loc[3, "ctx_card_n_1h"] == 0


def test_failed_featurise_leaves_nothing(tmp_path):
    out = tmp_path / "features.parquet"
    with pytest.raises(DataValidationError):
        featurise(_csv(tmp_path, _with("amount", 0, "abc")), out)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["tx.csv"]
