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

``classes`` names the class of each id in the file, spelled any way (``off-road``,
``Off Road`` and ``off_road`` are one class, :func:`canonical_class`); each must be one of
:data:`CLASSES`. A file may list only the classes its world has, in any order (an imported
highway log without sidewalks): :func:`read_log` maps its ids onto :data:`CLASSES`, and
``LogMeta.world_classes`` keeps what it listed, so scoring never predicts a class the
log's world lacks. :func:`write_log` writes such a log back in its own vocabulary.

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
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from core.errors import DataValidationError
from core.io import atomic_path, write_parquet_atomic
from core.names import shown

from . import log_checks

CLASSES = ("off_road", "road", "lane_marking", "sidewalk", "vehicle", "pedestrian",
           "static_obstacle")
OFF_ROAD, ROAD, LANE_MARKING, SIDEWALK, VEHICLE, PEDESTRIAN, STATIC_OBSTACLE = range(7)
LAYOUT_CLASSES = (OFF_ROAD, ROAD, LANE_MARKING, SIDEWALK)     # the ground: ids 0 .. 3
OBJECT_CLASSES = (VEHICLE, PEDESTRIAN, STATIC_OBSTACLE)
UNOBSERVED = 255
LOG_COMPRESSION = "zstd"    # every log file's Parquet compression (write_log, write_logs)


def window_frames(window_s: float, rate_hz: float) -> int:
    """Frames in a window of ``window_s`` seconds at ``rate_hz``, at least one (the frame
    score's smoothing window, the conflict channel's velocity lag)."""
    return max(1, int(round(window_s * rate_hz)))
# Display colours (RGB 0-255) of the classes and of unobserved cells: the one palette of the
# dashboard's replay and the rerun recording.
CLASS_COLOURS = {"off_road": (70, 90, 60), "road": (110, 110, 120),
                 "lane_marking": (250, 250, 250), "sidewalk": (190, 160, 130),
                 "vehicle": (40, 120, 230), "pedestrian": (240, 60, 60),
                 "static_obstacle": (250, 170, 30)}
UNOBSERVED_COLOUR = (20, 20, 25)
METADATA_KEY = b"unmask"
SCALAR_COLUMNS = ("log_id", "frame", "timestamp", "ego_x", "ego_y", "ego_yaw", "ego_speed")
GRID_COLUMNS = ("semantic", "visible")


def canonical_class(name: str) -> str:
    """The one spelling of a class name: lower case, words joined by ``_``
    (``"Off Road"``, ``"OFF-ROAD"``, ``"off_road"`` -> ``"off_road"``)."""
    return re.sub(r"[\s_\-]+", "_", name.strip().lower()).strip("_")


def canonical_classes(names, where: str) -> tuple[str, ...]:
    """Class names in their canonical spelling, each a known class and named once.

    Raises:
        DataValidationError: one line naming ``where``, the class and the known classes.
    """
    out = tuple(canonical_class(name) for name in names)
    for name, given in zip(out, names):
        if name not in CLASSES:
            raise DataValidationError(f"{where}: unknown class {given!r}; known classes: "
                                      f"{', '.join(CLASSES)} (any case, '-', '_' or ' ')")
    twice = sorted({name for name in out if out.count(name) > 1})
    if twice:
        raise DataValidationError(f"{where}: class {twice[0]!r} is named more than once "
                                  f"({', '.join(map(repr, names))})")
    return out


@dataclass
class LogMeta:
    """The ``unmask`` metadata of a log.

    ``classes`` names the ids of the grids (in memory always :data:`CLASSES`);
    ``world_classes`` the classes the log's file listed when that was fewer (None: all).
    """

    grid_shape: tuple[int, int] = (128, 128)
    resolution_m: float = 0.5
    classes: tuple[str, ...] = CLASSES
    ego_cell: tuple[int, int] = (80, 64)
    rate_hz: float = 10.0
    version: int = 1
    world_classes: tuple[str, ...] | None = None

    @property
    def world(self) -> tuple[str, ...]:
        """The classes this log's world has."""
        return self.world_classes if self.world_classes is not None else self.classes

    def to_json(self) -> str:
        return json.dumps({"version": self.version, "grid_shape": list(self.grid_shape),
                           "resolution_m": self.resolution_m, "classes": list(self.world),
                           "ego_cell": list(self.ego_cell), "rate_hz": self.rate_hz})

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "log") -> "LogMeta":
        where = f"{source}: metadata 'unmask'"
        try:
            raw = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataValidationError(f"{where} is not valid UTF-8 JSON ({err})") from None
        if not isinstance(raw, dict):
            raise DataValidationError(f"{where} is not a JSON object: {shown(raw)}")
        missing = [k for k in ("version", "grid_shape", "resolution_m", "classes", "ego_cell",
                               "rate_hz") if k not in raw]
        if missing:
            raise DataValidationError(f"{where} lacks {', '.join(missing)}")
        if raw["version"] != 1 or isinstance(raw["version"], bool):
            raise DataValidationError(f"{where} version {shown(raw['version'])} "
                                      "is not supported (expected 1)")
        shape = _int_pair(raw["grid_shape"])
        if shape is None or min(shape) < 1:
            raise DataValidationError(f"{source}: metadata grid_shape {shown(raw['grid_shape'])} "
                                      "is not [H, W]")
        ego = _int_pair(raw["ego_cell"])
        if ego is None or not (0 <= ego[0] < shape[0] and 0 <= ego[1] < shape[1]):
            raise DataValidationError(f"{source}: metadata ego_cell {shown(raw['ego_cell'])} is "
                                      f"not a cell of the {shape[0]}x{shape[1]} grid")
        for key in ("resolution_m", "rate_hz"):
            value = raw[key]
            if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and np.isfinite(value) and value > 0):
                raise DataValidationError(f"{source}: metadata {key} {shown(value)} is not a "
                                          "positive number")
        classes = raw["classes"]
        if (not isinstance(classes, list) or not 0 < len(classes) < UNOBSERVED
                or not all(isinstance(c, str) for c in classes)):
            raise DataValidationError(f"{source}: metadata classes {shown(classes)} is not a "
                                      f"list of 1 to {UNOBSERVED - 1} class names")
        return cls(grid_shape=shape, resolution_m=float(raw["resolution_m"]),
                   classes=canonical_classes(classes, f"{source}: metadata classes"),
                   ego_cell=ego, rate_hz=float(raw["rate_hz"]), version=1)


def _int_pair(value) -> tuple[int, int] | None:
    """``[a, b]`` of two integers as a tuple; None for anything else."""
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return value[0], value[1]
    return None


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


def slice_log(log: DriveLog, start: int, stop: int | None = None) -> DriveLog:
    """Frames ``start:stop`` of a log (same metadata)."""
    changes = {}
    for f in fields(log):
        value = getattr(log, f.name)
        if isinstance(value, np.ndarray) or (f.name == "anomaly_kind" and value is not None):
            changes[f.name] = value[start:stop]
    return replace(log, **changes)


def _grid_array(values: np.ndarray, arrow_type):
    """``(T, n)`` numpy -> Arrow list array (one list of n per row)."""
    import pyarrow as pa

    t, n = values.shape
    offsets = pa.array(np.arange(0, (t + 1) * n, n, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), type=arrow_type))


def _class_lookup(source: tuple[str, ...], target: tuple[str, ...]) -> np.ndarray:
    """uint8 lookup table from ids of ``source`` to ids of ``target`` (255 stays 255, a
    class ``target`` lacks becomes 254: no class id, caught by the caller)."""
    lut = np.full(256, UNOBSERVED - 1, np.uint8)
    lut[UNOBSERVED] = UNOBSERVED
    for i, name in enumerate(source):
        if name in target:
            lut[i] = target.index(name)
    return lut


def _first_cell(mask: np.ndarray) -> tuple[int, int, int]:
    """``(frame index, row, column)`` of the first True cell of a ``(T, H, W)`` mask: the
    one an error message names."""
    return tuple(int(v) for v in np.argwhere(mask)[0])


def _in_file_vocabulary(log: DriveLog) -> DriveLog:
    """``log`` with its grids' ids in the classes its file lists (``meta.world``)."""
    meta = log.meta
    if meta.world == meta.classes:
        return log
    lut = _class_lookup(meta.classes, meta.world)
    grids = {name: getattr(log, name) for name in ("semantic", "semantic_true", "layout_true")
             if getattr(log, name) is not None}
    for name, grid in grids.items():
        outside = (lut[grid] == UNOBSERVED - 1)
        if outside.any():
            t, r, c = _first_cell(outside)
            raise DataValidationError(
                f"log {log.log_id}: frame {int(log.frame[t])}, column '{name}': class "
                f"{meta.classes[grid[t, r, c]]} at cell ({r}, {c}) is not among the log's "
                f"classes ({', '.join(meta.world)})")
    return replace(log, **{name: lut[grid] for name, grid in grids.items()})


def log_table(log: DriveLog):
    """Arrow table (with the ``unmask`` metadata) of a log, ids in the classes its
    metadata lists."""
    import pyarrow as pa

    log = _in_file_vocabulary(log)
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
    """Write a log atomically (``core.io.write_parquet_atomic``); returns the path."""
    write_parquet_atomic(log_table(log), path, compression=LOG_COMPRESSION)
    return Path(path)


def write_logs(out_dir: str | os.PathLike, logs: Iterable[DriveLog],
               inputs: Iterable = ()) -> list[Path]:
    """Publish ``logs`` as one folder of ``<log_id>.parquet`` files, whole and atomically
    (written beside ``out_dir``, then renamed, with unmask's marker): a reader never sees
    half a set, and a rerun replaces an earlier folder unmask wrote.

    ``logs`` is read one log at a time (pass a generator: a set need not fit in memory);
    an error while building one publishes nothing.

    Args:
        out_dir: the folder to publish.
        logs: the logs, in order.
        inputs: paths the logs are read from, which ``out_dir`` may not overwrite
            (``core.io.check_output``).

    Returns:
        The published log files, in order.

    Raises:
        DataValidationError: before any log is built, when ``out_dir`` is a non-empty
            folder unmask did not write, or one of ``inputs``.
    """
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    names = []
    with atomic_path(out_dir, inputs=inputs) as tmp:
        tmp.mkdir()
        for log in logs:
            pq.write_table(log_table(log), tmp / f"{log.log_id}.parquet",   # the folder is
                           compression=LOG_COMPRESSION)                    # the temporary
            names.append(f"{log.log_id}.parquet")
    return [out_dir / name for name in names]


def read_log(path: str | os.PathLike, require_truth: bool = False) -> DriveLog:
    """Read and validate a drive log.

    Raises:
        DataValidationError: naming the file, frame, column and value of the first violation.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise DataValidationError(f"{source}: no such drive log")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DataValidationError(f"{source}: not a readable Parquet file ({err})") from None
    metadata = table.schema.metadata or {}
    if METADATA_KEY not in metadata:
        raise DataValidationError(f"{source}: missing file metadata key 'unmask' "
                                  "(grid_shape, resolution_m, classes, ego_cell, rate_hz)")
    meta = LogMeta.from_json(metadata[METADATA_KEY], source)
    missing = [c for c in SCALAR_COLUMNS + GRID_COLUMNS if c not in table.column_names]
    if missing:
        raise DataValidationError(f"{source}: missing column(s) {', '.join(missing)}")
    if require_truth and "semantic_true" not in table.column_names:
        raise DataValidationError(f"{source}: no simulator truth (column semantic_true): "
                                  "evaluation needs logs from `unmask driving simulate`; real "
                                  "or imported drives have none")
    twice = sorted({c for c in table.column_names if table.column_names.count(c) > 1})
    if twice:
        raise DataValidationError(f"{source}: column(s) {', '.join(twice)} appear more than once")
    if table.num_rows == 0:
        raise DataValidationError(f"{source}: the log has no frames")
    frames = log_checks.frame_numbers(table, source)
    scalars = {c: log_checks.scalar_column(table, c, frames, source) for c in SCALAR_COLUMNS[2:]}
    ts = scalars["timestamp"]
    back = np.flatnonzero(ts[1:] < ts[:-1])
    if back.size:
        i = int(back[0]) + 1
        raise DataValidationError(f"{source}: frame {int(frames[i])}, column 'timestamp': time "
                                  f"goes backwards ({ts[i]} after {ts[i - 1]})")
    log_id = log_checks.log_id(table, frames, source)
    grids = {name: log_checks.grid_column(table, name, meta.grid_shape, frames, source,
                                          bool if name == "visible" else np.uint8)
             for name in ("semantic", "visible", "semantic_true", "layout_true")
             if name in table.column_names}
    _check_classes(grids, meta, frames, source)
    meta, grids = _to_canonical_ids(meta, grids)
    anomaly, kinds = log_checks.anomaly_columns(table, source)
    return DriveLog(log_id=log_id, meta=meta, frame=frames,
                    timestamp=ts, ego_x=scalars["ego_x"], ego_y=scalars["ego_y"],
                    ego_yaw=scalars["ego_yaw"], ego_speed=scalars["ego_speed"],
                    semantic=grids["semantic"], visible=grids["visible"],
                    semantic_true=grids.get("semantic_true"), anomaly=anomaly,
                    anomaly_kind=kinds, layout_true=grids.get("layout_true"),
                    path=str(path.resolve()))


def _to_canonical_ids(meta: LogMeta, grids: dict) -> tuple[LogMeta, dict]:
    """A file's class ids mapped onto :data:`CLASSES` (the ids every model and score
    uses); the classes the file listed are kept as ``world_classes``."""
    if meta.classes == CLASSES:
        return meta, grids
    lut = _class_lookup(meta.classes, CLASSES)
    mapped = {name: (grid if name == "visible" else lut[grid]) for name, grid in grids.items()}
    return replace(meta, classes=CLASSES, world_classes=meta.classes), mapped


def _check_classes(grids: dict, meta: LogMeta, frames: np.ndarray, source: str) -> None:
    """Class values within the metadata's classes (layout truth: layout classes only), and
    255 in ``semantic`` exactly where ``visible`` is False."""
    n_classes = len(meta.classes)
    layout = [i for i, name in enumerate(meta.classes) if CLASSES.index(name) in LAYOUT_CLASSES]
    for name, grid in grids.items():
        if name == "visible":
            continue
        if name == "layout_true":                                  # no objects
            bad = ~np.isin(grid, layout)
        else:
            bad = (grid >= n_classes) & ((grid != UNOBSERVED) if name == "semantic" else True)
        if bad.any():
            t, r, c = _first_cell(bad)
            value = int(grid[t, r, c])
            what = (f"class value {value} at cell ({r}, {c}) is not a layout class "
                    f"({', '.join(meta.classes[i] for i in layout)})" if value < n_classes else
                    f"unknown class value {value} at cell ({r}, {c}); classes are "
                    f"0..{n_classes - 1} ({', '.join(meta.classes)})"
                    f"{' or 255 = not observed' if name == 'semantic' else ''}")
            raise DataValidationError(f"{source}: frame {int(frames[t])}, column '{name}': {what}")
    mismatch = grids["visible"] != (grids["semantic"] != UNOBSERVED)
    if mismatch.any():
        t, r, c = _first_cell(mismatch)
        raise DataValidationError(
            f"{source}: frame {int(frames[t])}, column 'visible': cell ({r}, {c}) is "
            f"{'visible' if grids['visible'][t, r, c] else 'not visible'} but 'semantic' is "
            f"{int(grids['semantic'][t, r, c])} (255 must mark exactly the cells not visible)")


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


def cells_grid(cells, column: str, grid_shape) -> np.ndarray:
    """One uint8-list column of a ``cells/<log_id>.parquet`` table as ``(T, H, W)``."""
    flat = np.asarray(cells.column(column).combine_chunks().flatten())
    return flat.reshape(len(cells), *grid_shape)
