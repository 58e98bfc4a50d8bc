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


def test_traversal_log_id_is_refused_in_one_line(small_log, tmp_path):
    small_log.log_id = "../../../x"
    with pytest.raises(DataValidationError) as caught:
        read_log(write_log(small_log, tmp_path / "bad.parquet"))
    message = str(caught.value)
    assert "bad.parquet: frame 0, column 'log_id': '../../../x' is not a safe name" in message
    assert "\n" not in message


def test_a_file_with_two_log_ids_is_an_error(small_log, tmp_path):
    ids = pa.array(["tiny", "tiny", "other"], pa.string())
    path = _write(_replace(log_table(small_log), "log_id", ids), tmp_path)
    with pytest.raises(DataValidationError, match=r"bad.parquet: frame 2, column 'log_id': "
                       r"'other' differs from 'tiny' \(frame 0\)"):
        read_log(path)


def test_a_missing_log_id_is_an_error(small_log, tmp_path):
    ids = pa.array(["tiny", None, "tiny"], pa.string())
    path = _write(_replace(log_table(small_log), "log_id", ids), tmp_path)
    with pytest.raises(DataValidationError, match=r"bad.parquet: frame 1, column 'log_id': "
                       r"value is missing"):
        read_log(path)


@pytest.mark.parametrize("column, values, message", [
    ("ego_x", [0.0, 1e12, 2.0], r"frame 1, column 'ego_x': 1e\+12 is outside"),
    ("ego_y", [0.0, 0.0, -3e7], r"frame 2, column 'ego_y': -3e\+07 is outside"),
    ("ego_speed", [10.0, np.inf, 10.0], r"frame 1, column 'ego_speed': inf is not finite"),
    ("ego_speed", [10.0, 10.0, 5e3], r"frame 2, column 'ego_speed': 5000 is outside"),
    ("ego_yaw", [np.nan, 0.0, 0.0], r"frame 0, column 'ego_yaw': nan is not finite"),
])
def test_poses_and_speeds_must_be_finite_and_bounded(small_log, tmp_path, column, values, message):
    path = _write(_replace(log_table(small_log), column, pa.array(values)), tmp_path)
    with pytest.raises(DataValidationError, match="bad.parquet: " + message):
        read_log(path)


def test_the_pose_bound_admits_earth_scale_coordinates(small_log, tmp_path):
    """UTM northings reach 1e7 m: logs in projected coordinates pass, 1e12 m does not."""
    small_log.ego_y = np.full(3, 5.8e6)
    small_log.ego_x = 4.1e5 + np.arange(3.0)
    assert read_log(write_log(small_log, tmp_path / "utm.parquet")).ego_y[0] == 5.8e6
    small_log.ego_y[2] = 1e12
    with pytest.raises(DataValidationError, match="column 'ego_y': 1e\\+12 is outside"):
        read_log(write_log(small_log, tmp_path / "far.parquet"))


@pytest.mark.parametrize("column, values, message", [
    ("frame", pa.array(["0", "1", "2"]), r"column 'frame': type string is not numeric"),
    ("frame", pa.array([0.0, 1.5, 2.0]), r"frame 1.5, column 'frame': not a whole number"),
    ("log_id", pa.array([1, 1, 1]), r"column 'log_id': type int64 is not a string"),
    ("semantic", pa.array([[1] * 48, [1] * 47 + [300], [1] * 48], pa.list_(pa.int64())),
     r"frame 1, column 'semantic': value 300 at cell \(7, 5\) is not a uint8 class"),
    ("semantic", pa.array([[1] * 48, [1] * 47 + [None], [1] * 48], pa.list_(pa.uint8())),
     r"frame 1, column 'semantic': cell \(7, 5\) is missing"),
    ("visible", pa.array([["a"] * 48] * 3, pa.list_(pa.string())),
     r"column 'visible': cells of type string, expected bool"),
])
def test_wrong_types_give_one_line(small_log, tmp_path, column, values, message):
    small_log.visible[:] = True                      # every cell observed: semantic may hold 1s
    small_log.semantic = small_log.semantic_true.copy()
    path = _write(_replace(log_table(small_log), column, values), tmp_path)
    with pytest.raises(DataValidationError, match="bad.parquet: " + message):
        read_log(path)


@pytest.mark.parametrize("metadata, message", [
    (b"[1, 2]", "metadata 'unmask' is not a JSON object"),
    (b'\xff\xfe', "metadata 'unmask' is not valid UTF-8 JSON"),
    (b'{"version": 1, "grid_shape": "8x6", "resolution_m": 0.5, "classes": ["a"], '
     b'"ego_cell": [5, 3], "rate_hz": 10}', r"metadata grid_shape '8x6' is not \[H, W\]"),
    (b'{"version": 1, "grid_shape": [8, 6], "resolution_m": 0, "classes": ["a"], '
     b'"ego_cell": [5, 3], "rate_hz": 10}', "metadata resolution_m 0 is not a positive number"),
    (b'{"version": 1, "grid_shape": [8, 6], "resolution_m": 0.5, "classes": ["a"], '
     b'"ego_cell": [9, 3], "rate_hz": 10}', r"metadata ego_cell \[9, 3\] is not a cell of the 8x6 grid"),
])
def test_bad_metadata_gives_one_line(small_log, tmp_path, metadata, message):
    table = log_table(small_log).replace_schema_metadata({METADATA_KEY: metadata})
    with pytest.raises(DataValidationError, match="bad.parquet: " + message):
        read_log(_write(table, tmp_path))
