"""Replay export: a rerun ``.rrd`` recording of one scored log (rerun-sdk 0.41).

Entities (timelines ``frame`` and ``time``): ``grid/observed`` (what the sensor saw),
``grid/visible``, ``grid/predicted`` (the model's classes for hidden cells),
``grid/road_layout`` (probability of road surface, under objects too; runs since round
6), ``grid/truth`` (simulator truth, when present), ``grid/error`` (per-cell surprise) and
the scalar series ``score``, ``surprise_revealed``, ``visible_error``, ``anomaly``.
Open it with ``rerun FILE.rrd``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from core.errors import DataValidationError

from .schema import UNOBSERVED, read_log

COLORS = {"off_road": (60, 140, 70), "road": (80, 80, 80), "lane_marking": (240, 220, 40),
          "sidewalk": (170, 170, 170), "vehicle": (40, 90, 230), "pedestrian": (230, 40, 40),
          "static_obstacle": (240, 140, 20)}


def export_rerun(pred_dir: str | os.PathLike, log_path: str | os.PathLike,
                 out_path: str | os.PathLike) -> Path:
    """Write the recording of ``log_path`` as scored in run ``pred_dir`` to ``out_path``."""
    import pandas as pd
    import pyarrow.parquet as pq

    from core.runs import load_manifest

    from .scoring import cells_grid

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


def write_recording(log, frames, index: np.ndarray, predicted: np.ndarray, error: np.ndarray,
                    out_path: str | os.PathLike, road_layout: np.ndarray | None = None) -> Path:
    """Write a recording from in-memory results (atomically).

    Args:
        log: the ``DriveLog``.
        frames: the log's rows of ``frames.parquet`` (a DataFrame with ``frame`` and scores).
        index: positions in ``log`` of the scored frames, ``(N,)``.
        predicted: ``(N, H, W)`` uint8 classes; ``error``: ``(N, H, W)`` uint8 surprise.
        out_path: the ``.rrd`` file.
        road_layout: ``(N, H, W)`` uint8 probability of road surface (0-255), or None.
    """
    import pandas as pd
    import rerun as rr

    from core.io import atomic_path

    frames = frames.set_index("frame")
    classes = list(log.meta.classes)
    unobserved = len(classes)
    annotations = [rr.AnnotationInfo(id=i, label=name, color=COLORS.get(name, (200, 0, 200)))
                   for i, name in enumerate(classes)]
    annotations.append(rr.AnnotationInfo(id=unobserved, label="not observed", color=(0, 0, 0)))

    with atomic_path(out_path) as tmp:
        rec = rr.RecordingStream(application_id="unmask_driving", recording_id=log.log_id)
        rec.save(tmp)
        rec.log("grid", rr.AnnotationContext(annotations), static=True)
        for i, t in enumerate(index):
            frame = int(log.frame[t])
            rec.set_time("frame", sequence=frame)
            rec.set_time("time", duration=float(log.timestamp[t]))
            observed = np.where(log.semantic[t] == UNOBSERVED, unobserved, log.semantic[t])
            rec.log("grid/observed", rr.SegmentationImage(observed.astype(np.uint8)))
            rec.log("grid/visible", rr.Image((log.visible[t] * 255).astype(np.uint8)))
            hidden_pred = np.where(log.visible[t], unobserved, predicted[i])
            rec.log("grid/predicted", rr.SegmentationImage(hidden_pred.astype(np.uint8)))
            if road_layout is not None:
                rec.log("grid/road_layout", rr.Image(road_layout[i]))
            if log.semantic_true is not None:
                rec.log("grid/truth", rr.SegmentationImage(log.semantic_true[t]))
            rec.log("grid/error", rr.Image(error[i]))
            if frame in frames.index:
                row = frames.loc[frame]
                for name in ("score", "surprise_revealed", "visible_error"):
                    rec.log(name, rr.Scalars(float(row[name])))
                if pd.notna(row.get("anomaly")):
                    rec.log("anomaly", rr.Scalars(float(bool(row["anomaly"]))))
        rec.flush()
        rec.disconnect()
    return Path(out_path)
