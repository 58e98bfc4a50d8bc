"""Drive-log files: read, write and validate (the contract in docs/contracts.md).

One Parquet file per log, one row per frame: ``log_id``, ``frame``, ``timestamp`` (s),
``ego_x``, ``ego_y``, ``ego_yaw`` (world frame, m and rad), ``ego_speed``, ``semantic``
(uint8 list of H*W cells, row-major, 255 = not observed), ``visible`` (bool list of H*W);
simulators add ``semantic_true`` (uint8 list) and ``anomaly`` (bool), and ours also
``anomaly_kind`` (string, null when none) and ``layout_true`` (uint8 list: the static
layout -- off-road, road, lane marking, sidewalk -- under the objects too, for the
road-layout metric). The file metadata key ``unmask`` holds JSON::

    {"version": 1, "grid_shape": [H, W], "resolution_m": r, "classes": [...],
     "ego_cell": [row, col], "rate_hz": f}

Grid conventions: the ego faces up (forward = decreasing row), increasing column is the
ego's right, ``ego_cell`` is the ego's position. World frame: right-handed, x east,
y north, yaw counter-clockwise from +x.

Example:
    >>> log = read_log("data/driving/log_000.parquet")   # doctest: +SKIP
    >>> log.semantic.shape                                 # (T, H, W) uint8
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import DataValidationError

CLASSES = ("off_road", "road", "lane_marking", "sidewalk", "vehicle", "pedestrian",
           "static_obstacle")
OFF_ROAD, ROAD, LANE_MARKING, SIDEWALK, VEHICLE, PEDESTRIAN, STATIC_OBSTACLE = range(7)
LAYOUT_CLASSES = (OFF_ROAD, ROAD, LANE_MARKING, SIDEWALK)     # the ground: ids 0 .. 3
OBJECT_CLASSES = (VEHICLE, PEDESTRIAN, STATIC_OBSTACLE)
UNOBSERVED = 255
METADATA_KEY = b"unmask"
SCALAR_COLUMNS = ("log_id", "frame", "timestamp", "ego_x", "ego_y", "ego_yaw", "ego_speed")
GRID_COLUMNS = ("semantic", "visible")


@dataclass
class LogMeta:
    """The ``unmask`` metadata of a log."""

    grid_shape: tuple[int, int] = (128, 128)
    resolution_m: float = 0.5
    classes: tuple[str, ...] = CLASSES
    ego_cell: tuple[int, int] = (80, 64)
    rate_hz: float = 10.0
    version: int = 1

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "grid_shape": list(self.grid_shape),
                           "resolution_m": self.resolution_m, "classes": list(self.classes),
                           "ego_cell": list(self.ego_cell), "rate_hz": self.rate_hz})

    @classmethod
    def from_json(cls, text: str, source: str = "log") -> "LogMeta":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataValidationError(f"{source}: metadata 'unmask' is not valid JSON ({err})") from None
        missing = [k for k in ("version", "grid_shape", "resolution_m", "classes", "ego_cell",
                               "rate_hz") if k not in raw]
        if missing:
            raise DataValidationError(f"{source}: metadata 'unmask' lacks {', '.join(missing)}")
        if raw["version"] != 1:
            raise DataValidationError(f"{source}: metadata 'unmask' version {raw['version']} "
                                      "is not supported (expected 1)")
        shape = tuple(int(v) for v in raw["grid_shape"])
        if len(shape) != 2 or min(shape) < 1:
            raise DataValidationError(f"{source}: metadata grid_shape {raw['grid_shape']} is not [H, W]")
        return cls(grid_shape=shape, resolution_m=float(raw["resolution_m"]),
                   classes=tuple(raw["classes"]), ego_cell=tuple(int(v) for v in raw["ego_cell"]),
                   rate_hz=float(raw["rate_hz"]), version=int(raw["version"]))


@dataclass
class DriveLog:
    """A drive log in memory. Grids are ``(T, H, W)``; ``semantic_true``/``anomaly`` may be None."""

    log_id: str
    meta: LogMeta
    frame: np.ndarray
    timestamp: np.ndarray
    ego_x: np.ndarray
    ego_y: np.ndarray
    ego_yaw: np.ndarray
    ego_speed: np.ndarray
    semantic: np.ndarray
    visible: np.ndarray
    semantic_true: np.ndarray | None = None
    anomaly: np.ndarray | None = None
    anomaly_kind: list | None = None
    layout_true: np.ndarray | None = None
    path: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def poses(self) -> np.ndarray:
        """``(T, 3)`` array of ``(x, y, yaw)``."""
        return np.stack([self.ego_x, self.ego_y, self.ego_yaw], axis=1)


def _grid_array(values: np.ndarray, arrow_type):
    """``(T, n)`` numpy -> Arrow list array (one list of n per row)."""
    import pyarrow as pa

    t, n = values.shape
    offsets = pa.array(np.arange(0, (t + 1) * n, n, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), type=arrow_type))


def log_table(log: DriveLog):
    """Arrow table (with the ``unmask`` metadata) of a log."""
    import pyarrow as pa

    t = len(log)
    hw = int(np.prod(log.meta.grid_shape))
    cols = {
        "log_id": pa.array([log.log_id] * t, type=pa.string()),
        "frame": pa.array(np.asarray(log.frame, dtype=np.int64)),
        "timestamp": pa.array(np.asarray(log.timestamp, dtype=np.float64)),
        "ego_x": pa.array(np.asarray(log.ego_x, dtype=np.float64)),
        "ego_y": pa.array(np.asarray(log.ego_y, dtype=np.float64)),
        "ego_yaw": pa.array(np.asarray(log.ego_yaw, dtype=np.float64)),
        "ego_speed": pa.array(np.asarray(log.ego_speed, dtype=np.float64)),
        "semantic": _grid_array(np.asarray(log.semantic, dtype=np.uint8).reshape(t, hw), pa.uint8()),
        "visible": _grid_array(np.asarray(log.visible, dtype=bool).reshape(t, hw), pa.bool_()),
    }
    if log.semantic_true is not None:
        cols["semantic_true"] = _grid_array(
            np.asarray(log.semantic_true, dtype=np.uint8).reshape(t, hw), pa.uint8())
    if log.layout_true is not None:
        cols["layout_true"] = _grid_array(
            np.asarray(log.layout_true, dtype=np.uint8).reshape(t, hw), pa.uint8())
    if log.anomaly is not None:
        cols["anomaly"] = pa.array(np.asarray(log.anomaly, dtype=bool))
    if log.anomaly_kind is not None:
        cols["anomaly_kind"] = pa.array(list(log.anomaly_kind), type=pa.string())
    table = pa.table(cols)
    return table.replace_schema_metadata({METADATA_KEY: log.meta.to_json().encode()})


def write_log(log: DriveLog, path: str | os.PathLike) -> Path:
    """Write a log atomically (``core.io``); returns the path."""
    import pyarrow.parquet as pq

    from core.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(log_table(log), tmp, compression="zstd")
    return path


def _grid_column(table, name: str, meta: LogMeta, frames: np.ndarray, source: str, dtype):
    """Flatten a list column to ``(T, H, W)``, checking every row's length."""
    import pyarrow as pa

    col = table.column(name).combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        raise DataValidationError(f"{source}: column '{name}' must be a list of cells, "
                                  f"got {col.type}")
    h, w = meta.grid_shape
    lengths = col.value_lengths().to_numpy(zero_copy_only=False)
    bad = np.nonzero(np.nan_to_num(lengths, nan=-1) != h * w)[0]
    if bad.size:
        i = int(bad[0])
        raise DataValidationError(
            f"{source}: frame {int(frames[i])}, column '{name}': grid has {int(lengths[i])} cells "
            f"but grid_shape {h}x{w} needs {h * w}")
    values = col.flatten().to_numpy(zero_copy_only=False)
    return np.array(values, dtype=dtype).reshape(len(frames), h, w)  # writable copy


def read_log(path: str | os.PathLike, require_truth: bool = False) -> DriveLog:
    """Read and validate a drive log.

    Raises:
        DataValidationError: naming the file, frame and column of the first violation.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise DataValidationError(f"{source}: no such drive log")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataValidationError(f"{source}: not a readable Parquet file ({err})") from None
    metadata = table.schema.metadata or {}
    if METADATA_KEY not in metadata:
        raise DataValidationError(f"{source}: missing file metadata key 'unmask' "
                                  "(grid_shape, resolution_m, classes, ego_cell, rate_hz)")
    meta = LogMeta.from_json(metadata[METADATA_KEY].decode(), source)
    needed = SCALAR_COLUMNS + GRID_COLUMNS + (("semantic_true",) if require_truth else ())
    missing = [c for c in needed if c not in table.column_names]
    if missing:
        raise DataValidationError(f"{source}: missing column(s) {', '.join(missing)}")
    if table.num_rows == 0:
        raise DataValidationError(f"{source}: the log has no frames")
    scalars = {c: table.column(c).to_numpy() for c in SCALAR_COLUMNS[1:]}
    frames = np.asarray(scalars["frame"])
    for c, v in scalars.items():
        bad = np.nonzero(~np.isfinite(np.asarray(v, dtype=np.float64)))[0]
        if bad.size:
            raise DataValidationError(f"{source}: frame {frames[bad[0]]}, column '{c}': "
                                      "value is missing or not finite")
    order = np.nonzero(np.diff(frames) <= 0)[0]
    if order.size:
        i = int(order[0]) + 1
        raise DataValidationError(f"{source}: frame {int(frames[i])}, column 'frame': frames out "
                                  f"of order (follows frame {int(frames[i - 1])})")
    ts = scalars["timestamp"]
    back = np.nonzero(np.diff(ts) < 0)[0]
    if back.size:
        i = int(back[0]) + 1
        raise DataValidationError(f"{source}: frame {int(frames[i])}, column 'timestamp': time "
                                  f"goes backwards ({ts[i]} after {ts[i - 1]})")
    grids = {"semantic": _grid_column(table, "semantic", meta, frames, source, np.uint8),
             "visible": _grid_column(table, "visible", meta, frames, source, bool)}
    for name in ("semantic_true", "layout_true"):
        if name in table.column_names:
            grids[name] = _grid_column(table, name, meta, frames, source, np.uint8)
    n_classes = len(meta.classes)
    for name, grid in grids.items():
        if name == "visible":
            continue
        allowed = len(LAYOUT_CLASSES) if name == "layout_true" else n_classes   # no objects
        bad = (grid >= allowed) & ((grid != UNOBSERVED) if name == "semantic" else True)
        if bad.any():
            t, r, c = (int(v) for v in np.argwhere(bad)[0])
            value = int(grid[t, r, c])
            what = (f"class value {value} at cell ({r}, {c}) is not a layout class "
                    f"({', '.join(meta.classes[:allowed])})" if value < n_classes else
                    f"unknown class value {value} at cell ({r}, {c}); classes are "
                    f"0..{n_classes - 1} ({', '.join(meta.classes)})"
                    f"{' or 255 = not observed' if name == 'semantic' else ''}")
            raise DataValidationError(f"{source}: frame {int(frames[t])}, column '{name}': {what}")
    mismatch = grids["visible"] != (grids["semantic"] != UNOBSERVED)
    if mismatch.any():
        t, r, c = (int(v) for v in np.argwhere(mismatch)[0])
        raise DataValidationError(
            f"{source}: frame {int(frames[t])}, column 'visible': cell ({r}, {c}) is "
            f"{'visible' if grids['visible'][t, r, c] else 'not visible'} but 'semantic' is "
            f"{int(grids['semantic'][t, r, c])} (255 must mark exactly the cells not visible)")
    log_ids = table.column("log_id").to_pylist()
    anomaly = None
    if "anomaly" in table.column_names:
        anomaly = np.asarray(table.column("anomaly").fill_null(False).to_numpy(
            zero_copy_only=False), dtype=bool)
    kinds = table.column("anomaly_kind").to_pylist() if "anomaly_kind" in table.column_names else None
    return DriveLog(log_id=str(log_ids[0]), meta=meta, frame=frames.astype(np.int64),
                    timestamp=np.asarray(ts, dtype=np.float64),
                    ego_x=np.asarray(scalars["ego_x"], dtype=np.float64),
                    ego_y=np.asarray(scalars["ego_y"], dtype=np.float64),
                    ego_yaw=np.asarray(scalars["ego_yaw"], dtype=np.float64),
                    ego_speed=np.asarray(scalars["ego_speed"], dtype=np.float64),
                    semantic=grids["semantic"], visible=grids["visible"],
                    semantic_true=grids.get("semantic_true"), anomaly=anomaly,
                    anomaly_kind=kinds, layout_true=grids.get("layout_true"),
                    path=str(path.resolve()))


def list_logs(directory: str | os.PathLike) -> list[Path]:
    """The ``*.parquet`` logs in a directory (or the file itself), sorted."""
    directory = Path(directory)
    if directory.is_file():
        return [directory]
    if not directory.is_dir():
        raise DataValidationError(f"{directory}: no such directory of drive logs")
    files = sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise DataValidationError(f"{directory}: no drive logs (*.parquet) found")
    return files
