"""Replay export: a rerun ``.rrd`` recording of one scored log (rerun-sdk 0.41).

Timelines ``frame`` (sequence) and ``time`` (seconds since the log's clock origin). Entities:

``world``
    The world frame of the log (metres; x east, y north, z up: ``RIGHT_HAND_Z_UP``).
``world/trajectory``
    The ego's path over the whole log, a line strip (static).
``world/ego``
    The ego pose per frame: a ``Transform3D`` from the ego frame (x forward, y left, z up,
    origin at the ego) to the world; an arrow along the ego's heading is drawn under it.
``world/ego/scene``
    The BEV grid in metres at its place in the world (a ``GridMap`` under the ego's
    transform): observed cells in their class colour, hidden cells in the predicted class at
    half brightness.
``world/ego/surprise``
    Per-cell surprise as a red overlay whose opacity is the surprise, just above the scene.
``grid/*``
    The ego-aligned grids as 2-D images (the ego faces up): ``observed`` (255 = not
    observed), ``visible``, ``predicted`` (the model's classes for hidden cells),
    ``road_layout`` (probability of road surface, under objects too), ``truth`` (simulator
    truth, when present) and ``error`` (per-cell surprise). ``grid`` holds the annotation
    context, so the viewer names each cell's class.
``score``, ``surprise_revealed``, ``visible_error``, ``anomaly``
    Per-frame scalars: the frame score and its parts, and the simulator's anomaly flag.

The recording carries a blueprint: the 3-D world view follows the ego, beside 2-D views of
the observed, predicted and error grids and a time series of the score and anomaly flag.
Every per-frame entity is sent in one ``send_columns`` call. Open it with ``rerun FILE.rrd``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from core.errors import DataValidationError
from core.io import atomic_path
from core.runs import load_manifest

from .schema import (CLASS_COLOURS, UNOBSERVED, UNOBSERVED_COLOUR, DriveLog, LogMeta, cells_grid,
                     read_log)

OTHER_CLASS_COLOUR = (200, 0, 200)   # a class the palette does not name
SURPRISE_COLOUR = (255, 40, 0)
SURPRISE_HEIGHT_M = 0.05             # the surprise overlay floats this far above the scene
HEADING_ARROW_M = 3.0
SCALARS = ("score", "surprise_revealed", "visible_error")


# --- placement in the world (pure numpy: what the viewer does with the logged transforms) ---

def yaw_quaternions(yaw) -> np.ndarray:
    """Quaternions ``(x, y, z, w)`` of turns by ``yaw`` radians about +z, ``(..., 4)``."""
    half = np.asarray(yaw, dtype=np.float64) / 2
    zero = np.zeros_like(half)
    return np.stack([zero, zero, np.sin(half), np.cos(half)], axis=-1)


def ego_transforms(x, y, yaw) -> tuple[np.ndarray, np.ndarray]:
    """World-from-ego transforms of poses ``(N,)`` each: translations ``(N, 3)`` and
    quaternions ``(N, 4)``. The ego frame's +x is the heading ``(cos yaw, sin yaw)``, +y its
    left, +z up, so a yaw counter-clockwise from east is a plain turn about +z."""
    translations = np.stack([x, y, np.zeros_like(x)], axis=1).astype(np.float64)
    return translations, yaw_quaternions(yaw)


def grid_placement(meta: LogMeta, height_m: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Ego-from-map pose of a ``GridMap`` of the grid: translation ``(3,)``, quaternion ``(4,)``.

    rerun draws a GridMap's buffer with row 0 along the map's top (+y) edge and column 0 at
    x = 0, so texel ``(r, c)`` has its centre at ``((c + .5) s, (H - r - .5) s)`` in the map
    frame (``s`` = cell size). Turning the map by -90 degrees sends its +x (along a row) to
    the ego's right and its +y (up the rows) to the ego's forward; the translation then puts
    ``ego_cell``'s centre on the ego, so cell ``(r, c)`` lands ``(ego_row - r) s`` ahead and
    ``(c - ego_col) s`` to the right, as DESIGN.md says.
    """
    h, _ = meta.grid_shape
    ego_row, ego_col = meta.ego_cell
    s = meta.resolution_m
    translation = np.array([(ego_row + 0.5 - h) * s, (ego_col + 0.5) * s, height_m])
    return translation, yaw_quaternions(-np.pi / 2)


def rotate(quaternion, vector) -> np.ndarray:
    """``vector`` ``(..., 3)`` turned by unit ``quaternion`` ``(..., 4)`` (x, y, z, w)."""
    q = np.asarray(quaternion, dtype=np.float64)
    v = np.asarray(vector, dtype=np.float64)
    axis, w = q[..., :3], q[..., 3:]
    t = 2 * np.cross(axis, v)
    return v + w * t + np.cross(axis, t)


def cell_centre_in_world(pose, meta: LogMeta, row, col) -> np.ndarray:
    """World ``(x, y, z)`` where the viewer draws the centre of cell ``(row, col)`` of the
    recording's scene grid at ``pose`` ``(x, y, yaw)``: texel centre -> map frame
    (:func:`grid_placement`) -> ego frame (:func:`ego_transforms`) -> world."""
    h, _ = meta.grid_shape
    s = meta.resolution_m
    in_map = np.stack(np.broadcast_arrays((np.asarray(col) + 0.5) * s,
                                          (h - np.asarray(row) - 0.5) * s, 0.0), axis=-1)
    map_translation, map_rotation = grid_placement(meta)
    in_ego = map_translation + rotate(map_rotation, in_map)
    translations, rotations = ego_transforms(*(np.atleast_1d(v) for v in pose))
    return translations[0] + rotate(rotations[0], in_ego)


# --- colours ---

def class_palette(classes) -> np.ndarray:
    """``(256, 3)`` uint8 colours: class k -> its colour, 255 -> unobserved."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    for k, name in enumerate(classes):
        palette[k] = CLASS_COLOURS.get(name, OTHER_CLASS_COLOUR)
    palette[UNOBSERVED] = UNOBSERVED_COLOUR
    return palette


def scene_colours(observed: np.ndarray, visible: np.ndarray, predicted: np.ndarray,
                  palette: np.ndarray) -> np.ndarray:
    """``(N, H, W, 3)`` uint8: the observed class where visible, else the predicted class at
    half brightness (so seen and guessed cells differ at a glance)."""
    seen = palette[observed]
    guessed = palette[predicted] // 2
    return np.where(visible[..., None], seen, guessed)


def surprise_colours(error: np.ndarray) -> np.ndarray:
    """``(N, H, W, 4)`` uint8 RGBA: one colour, opacity = surprise (transparent where none)."""
    rgba = np.empty(error.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = SURPRISE_COLOUR
    rgba[..., 3] = error
    return rgba


# --- the recording ---

def export_rerun(pred_dir: str | os.PathLike, log_path: str | os.PathLike,
                 out_path: str | os.PathLike) -> Path:
    """Write the recording of ``log_path`` as scored in run ``pred_dir`` to ``out_path``."""
    pred_dir = Path(pred_dir)
    manifest = load_manifest(pred_dir)
    log = read_log(log_path)
    key = f"cells/{log.log_id}"
    if key not in manifest["outputs"]:
        raise DataValidationError(f"{pred_dir}: run has no predictions for log_id {log.log_id!r} "
                                  f"({log_path})")
    grid = manifest.get("summary", {}).get("grid_shape")
    if grid is not None and tuple(grid) != tuple(log.meta.grid_shape):
        raise DataValidationError(f"{log_path}: grid_shape {list(log.meta.grid_shape)} differs from "
                                  f"the run's {grid} ({pred_dir}); is this the log that was scored?")
    frames = pd.read_parquet(pred_dir / manifest["outputs"]["frames"])
    frames = frames[frames["log_id"] == log.log_id]
    cells = pq.read_table(pred_dir / manifest["outputs"][key])
    grid = log.meta.grid_shape
    predicted = cells_grid(cells, "predicted", grid)
    error = cells_grid(cells, "error", grid)
    road_layout = (cells_grid(cells, "road_layout", grid)
                   if "road_layout" in cells.column_names else None)
    cell_frames = cells.column("frame").to_numpy()
    index = np.searchsorted(log.frame, cell_frames)
    if (index >= len(log)).any() or (log.frame[np.minimum(index, len(log) - 1)] != cell_frames).any():
        raise DataValidationError(f"{log_path}: frames differ from those scored in {pred_dir}")
    return write_recording(log, frames, index, predicted, error, out_path, road_layout)


def write_recording(log: DriveLog, frames: pd.DataFrame, index: np.ndarray, predicted: np.ndarray,
                    error: np.ndarray, out_path: str | os.PathLike,
                    road_layout: np.ndarray | None = None) -> Path:
    """Write a recording from in-memory results (atomically).

    Args:
        log: the ``DriveLog``.
        frames: the log's rows of ``frames.parquet`` (a DataFrame with ``frame`` and scores).
        index: positions in ``log`` of the scored frames, ``(N,)``.
        predicted: ``(N, H, W)`` uint8 classes; ``error``: ``(N, H, W)`` uint8 surprise.
        out_path: the ``.rrd`` file.
        road_layout: ``(N, H, W)`` uint8 probability of road surface (0-255), or None.
    """
    import rerun as rr

    with atomic_path(out_path) as tmp:
        rec = rr.RecordingStream(application_id="unmask_driving", recording_id=log.log_id)
        try:
            rec.save(tmp, default_blueprint=_blueprint(log, index))
            _write_world(rec, log, index, predicted, error)
            _write_grids(rec, log, index, predicted, error, road_layout)
            _write_scalars(rec, log, index, frames)
            rec.flush()
        finally:
            rec.disconnect()
    return Path(out_path)


def _timelines(frame: np.ndarray, time_s: np.ndarray) -> list:
    """The ``frame`` and ``time`` index columns of a columnar send."""
    import rerun as rr

    return [rr.TimeColumn("frame", sequence=np.asarray(frame, dtype=np.int64)),
            rr.TimeColumn("time", duration=np.asarray(time_s, dtype=np.float64))]


def _grid_map(rec, entity: str, colours: np.ndarray, meta: LogMeta, times: list,
              height_m: float = 0.0) -> None:
    """Log ``colours`` ``(N, H, W, 3 or 4)`` as a GridMap under the ego: pose and format
    once (static), the N buffers in one columnar send."""
    import rerun as rr

    n, h, w, channels = colours.shape
    translation, quaternion = grid_placement(meta, height_m)
    rec.log(entity, rr.GridMap.from_fields(
        format=rr.components.ImageFormat(width=w, height=h, color_model="RGB" if channels == 3
                                         else "RGBA", channel_datatype="U8"),
        cell_size=meta.resolution_m, translation=translation, quaternion=quaternion),
        static=True, strict=True)
    rec.send_columns(entity, indexes=times, columns=rr.GridMap.columns(data=colours.reshape(n, -1)),
                     strict=True)


def _write_world(rec, log: DriveLog, index: np.ndarray, predicted: np.ndarray,
                 error: np.ndarray) -> None:
    """The world frame: trajectory, ego pose per frame, and the grids placed under the ego."""
    import rerun as rr

    times = _timelines(log.frame[index], log.timestamp[index])
    rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True, strict=True)
    path = np.stack([log.ego_x, log.ego_y, np.zeros(len(log))], axis=1)     # (T, 3)
    rec.log("world/trajectory", rr.LineStrips3D([path], colors=[(255, 255, 255)]),
            static=True, strict=True)
    x, y, yaw = log.poses[index].T
    translations, quaternions = ego_transforms(x, y, yaw)
    rec.send_columns("world/ego", indexes=times, columns=rr.Transform3D.columns(
        translation=translations, quaternion=quaternions), strict=True)
    rec.log("world/ego/heading", rr.Arrows3D(vectors=[(HEADING_ARROW_M, 0, 0)],
                                             colors=[(255, 255, 255)]), static=True, strict=True)
    palette = class_palette(log.meta.classes)
    scene = scene_colours(log.semantic[index], log.visible[index], predicted, palette)
    _grid_map(rec, "world/ego/scene", scene, log.meta, times)
    _grid_map(rec, "world/ego/surprise", surprise_colours(error), log.meta, times,
              SURPRISE_HEIGHT_M)


def _write_grids(rec, log: DriveLog, index: np.ndarray, predicted: np.ndarray,
                 error: np.ndarray, road_layout: np.ndarray | None) -> None:
    """The ego-aligned 2-D grids: class grids as segmentation images (named through the
    annotation context at ``grid``), the rest as grey images; one send per entity."""
    import rerun as rr

    times = _timelines(log.frame[index], log.timestamp[index])
    h, w = log.meta.grid_shape
    palette = class_palette(log.meta.classes)
    annotations = [rr.AnnotationInfo(id=k, label=name, color=tuple(palette[k]))
                   for k, name in enumerate(log.meta.classes)]
    annotations.append(rr.AnnotationInfo(id=UNOBSERVED, label="not observed",
                                         color=UNOBSERVED_COLOUR))
    rec.log("grid", rr.AnnotationContext(annotations), static=True, strict=True)

    classes = {"observed": log.semantic[index],
               "predicted": np.where(log.visible[index], UNOBSERVED, predicted).astype(np.uint8)}
    if log.semantic_true is not None:
        classes["truth"] = log.semantic_true[index]
    greys = {"visible": log.visible[index].astype(np.uint8) * 255, "error": error}
    if road_layout is not None:
        greys["road_layout"] = road_layout
    image_format = {"width": w, "height": h, "channel_datatype": "U8"}
    for name, grids in classes.items():
        rec.log(f"grid/{name}", rr.SegmentationImage.from_fields(
            format=rr.components.ImageFormat(**image_format)), static=True, strict=True)
        rec.send_columns(f"grid/{name}", indexes=times, strict=True,
                         columns=rr.SegmentationImage.columns(buffer=grids.reshape(len(index), -1)))
    for name, grids in greys.items():
        rec.log(f"grid/{name}", rr.Image.from_fields(
            format=rr.components.ImageFormat(color_model="L", **image_format)),
            static=True, strict=True)
        rec.send_columns(f"grid/{name}", indexes=times, strict=True,
                         columns=rr.Image.columns(buffer=grids.reshape(len(index), -1)))


def _write_scalars(rec, log: DriveLog, index: np.ndarray, frames: pd.DataFrame) -> None:
    """One series per score column over the scored frames that have a row in ``frames``."""
    import rerun as rr

    scored = pd.DataFrame({"frame": log.frame[index], "time": log.timestamp[index]})
    rows = scored.merge(frames.drop(columns=["timestamp"], errors="ignore"), on="frame")
    series = {name: (rows, rows[name]) for name in SCALARS}
    if "anomaly" in rows:   # labelled logs only; a row without a label has no point
        flagged = rows[rows["anomaly"].notna()]
        series["anomaly"] = (flagged, flagged["anomaly"].astype(bool))
    for name, (part, values) in series.items():
        if len(part):
            rec.send_columns(name, indexes=_timelines(part["frame"], part["time"]), strict=True,
                             columns=rr.Scalars.columns(scalars=values.to_numpy(np.float64)))


def _blueprint(log: DriveLog, index: np.ndarray):
    """World view (following the ego, looking down) beside the 2-D grids and the score."""
    import rerun.blueprint as rrb

    x, y, yaw = log.poses[index[0]] if len(index) else (0.0, 0.0, 0.0)
    extent = max(log.meta.grid_shape) * log.meta.resolution_m
    # Nearly straight down, from a little behind the ego, so its heading points up the screen.
    behind = -0.1 * extent * np.array([np.cos(yaw), np.sin(yaw), 0.0])
    eye = rrb.EyeControls3D(position=[x, y, 1.2 * extent] + behind, look_target=[x, y, 0.0],
                            eye_up=[0, 0, 1], tracking_entity="/world/ego")
    grids = [("observed", "observed"), ("predicted", "predicted (hidden cells)"),
             ("error", "surprise")]
    if log.semantic_true is not None:
        grids.append(("truth", "truth"))
    return rrb.Blueprint(rrb.Horizontal(
        rrb.Spatial3DView(origin="/world", name="world (top-down)", eye_controls=eye),
        rrb.Vertical(
            rrb.Grid(*[rrb.Spatial2DView(origin="/grid", contents=f"/grid/{entity}", name=name)
                       for entity, name in grids]),
            rrb.TimeSeriesView(origin="/", contents=["/score", "/anomaly"], name="frame score"),
            row_shares=[3, 1]),
        column_shares=[1, 1]))
