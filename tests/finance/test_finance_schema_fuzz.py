"""Property: the schema reader reads any tiny table or raises DataValidationError, nothing
else, and never runs SQL that a column name or a cell carries."""
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import DataValidationError
from finance.schema import REQUIRED, read_transactions

BASE = {
    "transaction_id": ["a", "b", "c", "d"],
    "timestamp": ["2024-01-01 10:00:00", "2024-01-01 11:00:00", "2024-01-02 09:30:00", "2024-01-03 08:00:00"],
    "customer_id": ["c1", "c1", "c2", "c1"],
    "terminal_id": ["t1", "t2", "t1", "t1"],
    "amount": ["10.5", "20", "7.25", "99"],
    "channel": ["card_present"] * 4,
    "customer_x": ["1.0"] * 4, "customer_y": ["2.0"] * 4, "terminal_x": ["3.0"] * 4, "terminal_y": ["4.0"] * 4,
    "is_fraud": ["0", "1", "0", "0"],
    "fraud_scenario": ["0", "2", "0", "0"],
}
CANARY = "CANARY.csv"   # every injection below tries to create this file next to the data
PAYLOADS = [
    'transaction_id" AS zz FROM tx__raw; COPY (SELECT 42) TO \'{canary}\'; SELECT 1 AS "y',
    'x" AS zz FROM tx__raw; COPY (SELECT 42) TO \'{canary}\'; SELECT 1 AS "y',
    "'); COPY (SELECT 1) TO '{canary}'; --",
    '"; COPY (SELECT 1) TO \'{canary}\'; --',
    "x' || (SELECT 1) || '",
    "amount\" , 1 AS \"q",
]
names = st.one_of(st.text(max_size=20), st.sampled_from(PAYLOADS), st.sampled_from(list(BASE)))
cells = st.one_of(st.text(max_size=12), st.sampled_from(PAYLOADS + ["nan", "inf", "-1", "", "true", "yes",
                                                                   "2024-01-01T10:00:00+02:00"]))


@st.composite
def tables(draw):
    """BASE with some columns renamed or added and some cells replaced."""
    columns = dict(BASE)
    for _ in range(draw(st.integers(0, 3))):
        old = draw(st.sampled_from(list(columns)))
        columns[draw(names)] = columns.pop(old) if draw(st.booleans()) else list(columns[old])
    for _ in range(draw(st.integers(0, 4))):
        column = draw(st.sampled_from(list(columns)))
        values = list(columns[column])
        values[draw(st.integers(0, 3))] = draw(cells)
        columns[column] = values
    return columns, draw(st.sampled_from(["csv", "parquet"]))


def _write(columns: dict, fmt: str, folder: Path) -> Path:
    path = folder / f"tx.{fmt}"
    if fmt == "csv":
        pd.DataFrame(columns).to_csv(path, index=False)
    else:
        pq.write_table(pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()}), path)
    return path


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_reader_reads_or_names_the_problem(table):
    columns, fmt = table
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        canary = folder / CANARY
        columns = {k.replace("{canary}", str(canary)): [v.replace("{canary}", str(canary)) for v in vs]
                   for k, vs in columns.items()}
        try:
            frame = read_transactions(_write(columns, fmt, folder))
        except DataValidationError as err:
            assert "\n" not in str(err) and "Traceback" not in str(err)
        else:
            assert set(REQUIRED) <= set(frame.columns) and len(frame) == 4
        assert not canary.exists()
