"""Column checks of a drive-log table (``schema.read_log``'s validation, column by column).

Each check returns the column as numpy or raises ``DataValidationError`` with one line
naming the file, the frame (the row), the column and the value: whatever a file holds
(text where numbers belong, nulls, inf, 1e12 m poses, ``../`` in ``log_id``), the reader
either returns a log or says what is wrong, never another exception.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from core.errors import DataValidationError
from core.names import check_name, shown

# Sane bounds of a pose and a speed: an ego 1e12 m away is corrupt data, and the world-map
# baseline would try to allocate a raster spanning it. UTM northings reach 1e7 m, so the
# pose bound is half the Earth's circumference; yaw may be unwrapped (~1600 turns); speed
# may be negative (reversing).
LIMITS = {"ego_x": (2e7, "m"), "ego_y": (2e7, "m"), "ego_yaw": (1e4, "rad"),
          "ego_speed": (200.0, "m/s")}


def label(frames: np.ndarray | None, i: int) -> str:
    """``frame F`` of row ``i`` (``row i`` while the frame numbers are not known)."""
    frame = None if frames is None else float(frames[i])
    if frame is None or not np.isfinite(frame):
        return f"row {i}"
    return f"frame {int(frame) if frame.is_integer() else frame}"


def at(source: str, frames: np.ndarray | None, i: int, column: str) -> str:
    """``"FILE: frame F, column 'C'"``: where row ``i``'s value of ``column`` is."""
    return f"{source}: {label(frames, i)}, column '{column}'"


def _number(value: float) -> str:
    return f"{value:g}"


def _numeric(table: pa.Table, name: str, frames, source: str) -> np.ndarray:
    """A numeric column as float64, refusing other types and missing values."""
    column = table.column(name)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise DataValidationError(f"{source}: column '{name}': type {column.type} is not numeric")
    missing = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
    if missing.size:
        raise DataValidationError(f"{at(source, frames, int(missing[0]), name)}: value is missing")
    return column.to_numpy().astype(np.float64)


def frame_numbers(table: pa.Table, source: str) -> np.ndarray:
    """The ``frame`` column as int64: whole numbers, strictly increasing."""
    values = _numeric(table, "frame", None, source)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise DataValidationError(f"{at(source, None, int(bad[0]), 'frame')}: "
                                  f"{_number(values[bad[0]])} is not finite")
    bad = np.flatnonzero(values != np.round(values))
    if bad.size:
        raise DataValidationError(f"{at(source, values, int(bad[0]), 'frame')}: not a whole number")
    if pa.types.is_integer(table.column("frame").type):   # exact, also beyond 2**53
        frames = table.column("frame").to_numpy().astype(np.int64)
    elif np.abs(values).max() < 2.0 ** 53:
        frames = values.astype(np.int64)
    else:
        raise DataValidationError(f"{source}: column 'frame': {_number(np.abs(values).max())} "
                                  "is too large for a frame number")
    order = np.flatnonzero(frames[1:] <= frames[:-1])      # comparisons: no overflow
    if order.size:
        i = int(order[0]) + 1
        raise DataValidationError(f"{at(source, frames, i, 'frame')}: frames out of order "
                                  f"(follows frame {int(frames[i - 1])})")
    return frames


def scalar_column(table: pa.Table, name: str, frames: np.ndarray, source: str) -> np.ndarray:
    """A per-frame number (timestamp, pose, speed) as float64: finite and, for poses and
    speeds, within ``LIMITS``."""
    values = _numeric(table, name, frames, source)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise DataValidationError(f"{at(source, frames, int(bad[0]), name)}: "
                                  f"{_number(values[bad[0]])} is not finite")
    if name in LIMITS:
        limit, unit = LIMITS[name]
        bad = np.flatnonzero(np.abs(values) > limit)
        if bad.size:
            raise DataValidationError(f"{at(source, frames, int(bad[0]), name)}: "
                                      f"{_number(values[bad[0]])} is outside "
                                      f"±{_number(limit)} {unit}")
    return values


def log_id(table: pa.Table, frames: np.ndarray, source: str) -> str:
    """The file's one ``log_id``: present in every row, the same in all, a safe file name
    (it names ``cells/<log_id>.parquet`` in a run)."""
    column = table.column("log_id")
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            or (pa.types.is_dictionary(column.type)
                and pa.types.is_string(column.type.value_type))):
        raise DataValidationError(f"{source}: column 'log_id': type {column.type} is not a string")
    ids = column.to_pylist()
    for i, value in enumerate(ids):
        if value is None:
            raise DataValidationError(f"{at(source, frames, i, 'log_id')}: value is missing")
        if value != ids[0]:
            raise DataValidationError(
                f"{at(source, frames, i, 'log_id')}: {shown(value)} differs from {shown(ids[0])} "
                f"({label(frames, 0)}); a drive-log file holds one log")
    return check_name(ids[0], at(source, frames, 0, "log_id"))


def grid_column(table: pa.Table, name: str, grid_shape: tuple[int, int], frames: np.ndarray,
                source: str, dtype) -> np.ndarray:
    """A list column of ``H*W`` cells per row as ``(T, H, W)`` ``dtype`` (uint8 classes or
    bool visibility), checking the cell type, every row's length and missing cells."""
    col = table.column(name).combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        raise DataValidationError(f"{source}: column '{name}' must be a list of cells, "
                                  f"got {col.type}")
    want_bool = dtype is bool
    value_type = col.type.value_type
    if not (pa.types.is_boolean(value_type) if want_bool else pa.types.is_integer(value_type)):
        raise DataValidationError(f"{source}: column '{name}': cells of type {value_type}, "
                                  f"expected {'bool' if want_bool else 'integer classes (uint8)'}")
    h, w = grid_shape
    lengths = col.value_lengths().to_numpy(zero_copy_only=False)
    empty = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))
    if empty.size:
        raise DataValidationError(f"{at(source, frames, int(empty[0]), name)}: grid is missing")
    bad = np.flatnonzero(lengths != h * w)
    if bad.size:
        i = int(bad[0])
        raise DataValidationError(f"{at(source, frames, i, name)}: grid has {int(lengths[i])} "
                                  f"cells but grid_shape {h}x{w} needs {h * w}")
    flat = col.flatten()
    if flat.null_count:
        k = int(np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataValidationError(f"{at(source, frames, k // (h * w), name)}: "
                                  f"cell {divmod(k % (h * w), w)} is missing")
    values = flat.to_numpy(zero_copy_only=False)
    if not want_bool:
        bad = np.flatnonzero((values < 0) | (values > 255))
        if bad.size:
            k = int(bad[0])
            raise DataValidationError(f"{at(source, frames, k // (h * w), name)}: value "
                                      f"{int(values[k])} at cell {divmod(k % (h * w), w)} is "
                                      "not a uint8 class")
    return np.array(values, dtype=dtype).reshape(len(frames), h, w)  # writable copy


def anomaly_columns(table: pa.Table, source: str) -> tuple[np.ndarray | None, list | None]:
    """The simulator's optional ``anomaly`` (bool, null = False) and ``anomaly_kind``
    (text, null when none) columns."""
    anomaly = kinds = None
    if "anomaly" in table.column_names:
        column = table.column("anomaly")
        if pa.types.is_null(column.type):                 # written with no value at all
            column = pa.chunked_array([pa.array([None] * len(column), pa.bool_())])
        if not pa.types.is_boolean(column.type):
            raise DataValidationError(f"{source}: column 'anomaly': type {column.type} is not bool")
        anomaly = np.asarray(column.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    if "anomaly_kind" in table.column_names:
        column = table.column("anomaly_kind")
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
                or pa.types.is_null(column.type)):
            raise DataValidationError(f"{source}: column 'anomaly_kind': type {column.type} is "
                                      "not a string")
        kinds = column.to_pylist()
    return anomaly, kinds
