"""Drive-log schema: round trip and one specific error per violation."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import DataValidationError
from driving.schema import METADATA_KEY, log_table, read_log, write_log


def test_round_trip(small_log, tmp_path):
    path = write_log(small_log, tmp_path / "log.parquet")
    back = read_log(path)
    assert back.log_id == "tiny" and back.meta == small_log.meta
    np.testing.assert_array_equal(back.semantic, small_log.semantic)
    np.testing.assert_array_equal(back.visible, small_log.visible)
    np.testing.assert_array_equal(back.semantic_true, small_log.semantic_true)
    np.testing.assert_array_equal(back.anomaly, small_log.anomaly)
    assert back.anomaly_kind == small_log.anomaly_kind
    meta = json.loads(pq.read_schema(path).metadata[METADATA_KEY])
    assert meta == {"version": 1, "grid_shape": [8, 6], "resolution_m": 0.5,
                    "classes": list(small_log.meta.classes), "ego_cell": [5, 3], "rate_hz": 10.0}
    assert pq.read_schema(path).field("semantic").type == pa.list_(pa.uint8())
    assert back.layout_true is None and "layout_true" not in pq.read_schema(path).names


def test_layout_truth_round_trips_and_holds_only_layout_classes(small_log, tmp_path):
    small_log.layout_true = np.where(small_log.semantic_true == 4, 1, small_log.semantic_true)
    back = read_log(write_log(small_log, tmp_path / "log.parquet"))
    np.testing.assert_array_equal(back.layout_true, small_log.layout_true)
    small_log.layout_true[1, 0, 2] = 4                           # a vehicle is not layout
    with pytest.raises(DataValidationError, match=r"bad.parquet: frame 1, column 'layout_true': "
                       r"class value 4 at cell \(0, 2\) is not a layout class \(off_road, road"):
        read_log(write_log(small_log, tmp_path / "bad.parquet"))


def _write(table, tmp_path):
    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)
    return path


def _replace(table, name, array):
    return table.set_column(table.column_names.index(name), name, array)


def test_wrong_grid_length(small_log, tmp_path):
    table = log_table(small_log)
    cells = table.column("semantic").to_pylist()
    cells[1] = cells[1][:-1]
    path = _write(_replace(table, "semantic", pa.array(cells, pa.list_(pa.uint8()))), tmp_path)
    with pytest.raises(DataValidationError, match=r"bad.parquet: frame 1, column 'semantic': grid has 47 cells"):
        read_log(path)


def test_missing_metadata(small_log, tmp_path):
    path = _write(log_table(small_log).replace_schema_metadata({}), tmp_path)
    with pytest.raises(DataValidationError, match="bad.parquet: missing file metadata key 'unmask'"):
        read_log(path)


def test_incomplete_metadata(small_log, tmp_path):
    table = log_table(small_log).replace_schema_metadata({METADATA_KEY: b'{"version": 1}'})
    with pytest.raises(DataValidationError, match="lacks grid_shape"):
        read_log(_write(table, tmp_path))


def test_frames_out_of_order(small_log, tmp_path):
    table = _replace(log_table(small_log), "frame", pa.array([0, 2, 1], pa.int64()))
    with pytest.raises(DataValidationError, match=r"frame 1, column 'frame': frames out of order"):
        read_log(_write(table, tmp_path))


def test_timestamps_backwards(small_log, tmp_path):
    table = _replace(log_table(small_log), "timestamp", pa.array([0.0, 0.2, 0.1]))
    with pytest.raises(DataValidationError, match=r"frame 2, column 'timestamp': time goes backwards"):
        read_log(_write(table, tmp_path))


def test_unknown_class(small_log, tmp_path):
    small_log.semantic[2, 4, 4] = 9
    with pytest.raises(DataValidationError,
                       match=r"frame 2, column 'semantic': unknown class value 9 at cell \(4, 4\)"):
        read_log(write_log(small_log, tmp_path / "bad.parquet"))


def test_missing_column(small_log, tmp_path):
    table = log_table(small_log).drop_columns(["ego_yaw"])
    with pytest.raises(DataValidationError, match="missing column\\(s\\) ego_yaw"):
        read_log(_write(table, tmp_path))


def test_visibility_must_match_unobserved(small_log, tmp_path):
    small_log.visible[0, 0, 0] = True
    with pytest.raises(DataValidationError, match=r"frame 0, column 'visible': cell \(0, 0\)"):
        read_log(write_log(small_log, tmp_path / "bad.parquet"))
