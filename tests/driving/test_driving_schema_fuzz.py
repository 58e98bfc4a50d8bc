"""Property-based fuzz of the drive-log reader: on any small table it either reads the log
or raises DataValidationError (one line for the CLI), never another exception."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import DataValidationError
from driving.schema import METADATA_KEY, DriveLog, LogMeta, log_table, read_log

H, W, T = 4, 3, 3


def _valid_table() -> pa.Table:
    meta = LogMeta(grid_shape=(H, W), ego_cell=(3, 1))
    truth = np.ones((T, H, W), np.uint8)
    visible = np.ones((T, H, W), bool)
    visible[:, 0, :] = False
    log = DriveLog(log_id="fuzz", meta=meta, frame=np.arange(T), timestamp=np.arange(T) * 0.1,
                   ego_x=np.arange(T, dtype=float), ego_y=np.zeros(T), ego_yaw=np.zeros(T),
                   ego_speed=np.full(T, 5.0), semantic=np.where(visible, truth, 255),
                   visible=visible, semantic_true=truth, anomaly=np.zeros(T, bool),
                   anomaly_kind=[None] * T, layout_true=truth)
    return log_table(log)


VALID = _valid_table()
CELL = st.one_of(st.none(), st.integers(-3, 300), st.booleans())


def scalars(n):
    """A column of n values of one kind (floats with nan/inf/huge, ints, text, bools, nulls)."""
    value = st.sampled_from([
        st.floats(allow_nan=True, allow_infinity=True),
        st.one_of(st.integers(-2 ** 63, 2 ** 63 - 1), st.integers(-3, 10)),
        st.text(max_size=6), st.booleans(), st.none()])
    return value.flatmap(lambda kind: st.lists(st.one_of(kind, st.none()), min_size=n, max_size=n))


def cells(n):
    """A list column: rows of random length (around H*W) holding ints, bools or nulls."""
    row = st.one_of(st.lists(st.integers(-3, 300), min_size=H * W, max_size=H * W),
                    st.lists(st.booleans(), min_size=H * W, max_size=H * W),
                    st.lists(CELL, min_size=0, max_size=H * W + 2), st.none())
    return st.lists(row, min_size=n, max_size=n)


def _column(values) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):      # mixed ints and bools: keep them as text
        return pa.array([None if v is None else str(v) for v in values])


@st.composite
def tables(draw):
    n = draw(st.integers(0, T))
    table = VALID.slice(0, n)
    for name in VALID.column_names:
        action = draw(st.sampled_from(["keep", "keep", "keep", "replace", "drop"]))
        if action == "drop":
            table = table.drop_columns([name])
        elif action == "replace":
            kind = cells(n) if pa.types.is_list(VALID.schema.field(name).type) else scalars(n)
            table = table.set_column(table.column_names.index(name), name,
                                     _column(draw(kind)))
    meta = json.loads(VALID.schema.metadata[METADATA_KEY])
    key = draw(st.sampled_from([None, *meta]))
    if key is not None:
        meta[key] = draw(st.one_of(st.none(), st.integers(-5, 300), st.floats(),
                                   st.text(max_size=4), st.lists(st.integers(-2, 9), max_size=3)))
    raw = draw(st.one_of(st.just(json.dumps(meta).encode()), st.binary(max_size=8)))
    return table.replace_schema_metadata({METADATA_KEY: raw})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=tables())
def test_reader_reads_or_raises_data_validation_error(table, tmp_path):
    path = tmp_path / "fuzz.parquet"
    pq.write_table(table, path)
    try:
        log = read_log(path)
    except DataValidationError as err:
        assert "\n" not in str(err) and str(err).startswith(str(path))
        return
    assert log.semantic.shape == (len(log), *log.meta.grid_shape)
    assert np.isfinite(log.poses).all() and np.isfinite(log.ego_speed).all()


def test_the_generated_space_holds_valid_logs(tmp_path):
    """The fuzz is not vacuous: its unmodified table is a readable log."""
    pq.write_table(VALID, tmp_path / "ok.parquet")
    assert len(read_log(tmp_path / "ok.parquet")) == T


pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")
