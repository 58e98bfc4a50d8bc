"""Drive-log replay data: a run's logs, per-frame layers and the surprise timeline.

A log's layers come from two files (docs/runs.md, docs/contracts.md): the input log Parquet
(``semantic`` = observed grid with 255 for unobserved cells, ``visible``, and
``semantic_true`` from a simulator) and the run's ``cells/<log_id>.parquet``
(``predicted`` class, ``confidence`` and ``error`` per cell, uint8).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from core.errors import DataValidationError
from core.names import check_name, is_safe_name
from driving.schema import CLASS_COLOURS, UNOBSERVED, UNOBSERVED_COLOUR, read_log

from . import render

ROAD_LAYOUT_COLOUR = (200, 205, 225)        # the road-layout panel's road surface
ERROR_UNITS = "cell surprise (0-255)"
TOP_FRAMES = 5
PANELS = ("observed", "visibility", "predicted hidden", "road layout", "truth", "error")
# how to read a panel, under its name (observed and truth use the class legend as they are)
PANEL_KEYS = {"visibility": "white: seen, black: hidden",
              "predicted hidden": "hidden cells, brighter = surer; seen cells dimmed",
              "road layout": "brighter = surer road; seen cells dimmed",
              "truth": "the simulator's full grid",
              "error": "per-cell surprise, scale below"}
EGO_COLOUR = (255, 0, 255)                  # the ego's 3x3 mark on every panel


@dataclass
class LogLayers:
    """All frames of one log: grids ``(T, H, W)`` (uint8 / bool), ``frames`` ``(T,)``;
    ``classes`` names the grids' ids, ``declared_classes`` the classes the log's file listed
    (its world's, ``LogMeta.world``: an Occ3D import has no lane markings)."""

    log_id: str
    frames: np.ndarray
    observed: np.ndarray
    visible: np.ndarray
    classes: tuple[str, ...]
    declared_classes: tuple[str, ...]
    ego_cell: tuple[int, int]
    resolution_m: float
    truth: np.ndarray | None = None
    predicted: np.ndarray | None = None
    confidence: np.ndarray | None = None
    error: np.ndarray | None = None
    road_layout: np.ndarray | None = None
    error_range: tuple[float, float] = (0.0, 255.0)

    def index(self, frame: int) -> int:
        """Position of frame number ``frame``."""
        hits = np.flatnonzero(self.frames == frame)
        if hits.size == 0:
            raise DataValidationError(f"log {self.log_id}: no frame {frame}")
        return int(hits[0])


def frames(run_dir) -> pd.DataFrame:
    """``frames.parquet`` of a run, ordered by log and frame."""
    path = Path(run_dir) / "frames.parquet"
    if not path.is_file():
        raise DataValidationError(f"{path}: file not found (is the run complete?)")
    return pd.read_parquet(path).sort_values(["log_id", "frame"]).reset_index(drop=True)


def logs(run_dir) -> pd.DataFrame:
    """Per log: frames, alerts (predicted anomalies), true anomalies, top score, recording."""
    table = frames(run_dir)
    grouped = table.groupby("log_id", sort=True)
    out = grouped.agg(frames=("frame", "size"), alerts=("is_alert", "sum"),
                      max_score=("score", "max")).reset_index()
    if "anomaly" in table and table["anomaly"].notna().any():
        truth = table["anomaly"].astype("boolean").fillna(False).astype(bool)
        out["true_anomalies"] = truth.groupby(table["log_id"], sort=True).sum().to_numpy().astype(int)
    out["alerts"] = out["alerts"].astype(int)
    out["recording"] = [recording_path(run_dir, log) is not None for log in out["log_id"]]
    return out.sort_values(["alerts", "max_score"], ascending=False).reset_index(drop=True)


def recording_path(run_dir, log_id: str) -> Path | None:
    """``recordings/<log_id>.rrd`` of a run; None when absent or when ``log_id`` (read from
    the run's files) is not a safe file name."""
    if not is_safe_name(log_id):
        return None
    path = Path(run_dir) / "recordings" / f"{log_id}.rrd"
    return path if path.is_file() else None


def input_warnings(manifest: dict) -> list[str]:
    """The run's ``warning:`` lines: one per log unlike the model's training logs
    (``driving.guard``; runs scored before the guard have none)."""
    return [str(line) for line in manifest.get("summary", {}).get("warnings", [])]


def log_input(manifest: dict, log_id: str) -> Path:
    """The input log file of ``log_id`` among the manifest's ``inputs``."""
    candidates = [Path(p) for p in manifest.get("inputs", [])]
    for path in candidates:  # the usual naming first: <log_id>.parquet
        if path.stem == log_id and path.is_file():
            return path
    for path in candidates:
        if path.is_file() and path.suffix == ".parquet":
            first = pq.ParquetFile(path).read_row_group(0, columns=["log_id"]).column(0)
            if len(first) and first[0].as_py() == log_id:
                return path
    raise DataValidationError(f"run {manifest.get('run_id')}: no input log for {log_id!r} among "
                              f"{[str(p) for p in candidates]} (moved since the run was made?)")


def _grid(table, column: str, t: int, shape: tuple[int, int], dtype) -> np.ndarray:
    """A list column of ``t`` rows of ``H*W`` values -> ``(t, H, W)``."""
    flat = table.column(column).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    if flat.size != t * shape[0] * shape[1]:
        raise DataValidationError(f"column {column!r}: {flat.size} cells is not {t} frames of "
                                  f"{shape[0]}x{shape[1]}")
    return flat.astype(dtype, copy=False).reshape(t, *shape)


def load_layers(run_dir, manifest: dict, log_id: str) -> LogLayers:
    """Read every layer of one log (observed, visibility, truth, predicted, confidence,
    error, road layout); the input log through driving's own reader (validated)."""
    check_name(log_id, f"{Path(run_dir) / 'frames.parquet'}: column 'log_id'")   # a path below
    source = log_input(manifest, log_id)
    log = read_log(source)
    meta = log.meta
    shape = tuple(meta.grid_shape)
    t = len(log)
    layers = LogLayers(
        log_id=log_id, frames=log.frame.astype(np.int64), observed=log.semantic,
        visible=log.visible, classes=tuple(meta.classes), declared_classes=tuple(meta.world),
        ego_cell=tuple(meta.ego_cell),
        resolution_m=float(meta.resolution_m), truth=log.semantic_true)
    cells_path = Path(run_dir) / "cells" / f"{log_id}.parquet"
    if cells_path.is_file():
        columns = ["predicted", "confidence", "error"]
        if "road_layout" in pq.read_schema(cells_path).names:    # older runs lack it
            columns.append("road_layout")
        cells = pq.read_table(cells_path, columns=["frame"] + columns).sort_by("frame")
        position = {int(f): i for i, f in enumerate(layers.frames)}
        rows = np.array([position.get(int(f), -1) for f in cells.column("frame").to_numpy()])
        if (rows < 0).any():
            raise DataValidationError(f"{cells_path}: frames not in the input log {source}")
        for column in columns:
            grid = np.zeros((t,) + shape, dtype=np.uint8)
            grid[rows] = _grid(cells, column, cells.num_rows, shape, np.uint8)
            setattr(layers, column, grid)
        layers.error_range = error_range(layers.error)
    return layers


def error_range(error: np.ndarray) -> tuple[float, float]:
    """Colour range of the error panel: the 1st to 99.5th percentile of the log's cell
    errors (up to 64 frames sampled), so a few hot cells do not leave the rest black."""
    step = max(1, len(error) // 64)
    return render.percentile_range(error[::step], 1.0, 99.5)


def class_palette(classes) -> np.ndarray:
    """``(256, 3)`` float colours: class k -> its colour, 255 -> unobserved (the driving
    palette; classes it does not name cycle through ``render.LABEL_COLOURS``)."""
    palette = np.zeros((256, 3), dtype=np.float32)
    for k in range(255):
        palette[k] = render.LABEL_COLOURS[k % len(render.LABEL_COLOURS)]
    for k, name in enumerate(classes):
        if name in CLASS_COLOURS:
            palette[k] = CLASS_COLOURS[name]
    palette[UNOBSERVED] = UNOBSERVED_COLOUR
    return palette


def _mark_ego(rgb: np.ndarray, ego_cell: tuple[int, int]) -> np.ndarray:
    r, c = ego_cell
    h, w = rgb.shape[:2]
    rgb[max(r - 1, 0):min(r + 2, h), max(c - 1, 0):min(c + 2, w)] = EGO_COLOUR
    return rgb


def frame_panels(layers: LogLayers, frame: int, size: int = 300) -> dict[str, np.ndarray]:
    """RGB pictures of one frame, keyed by panel name (``PANELS``; absent layers omitted).

    * observed: the observed classes; unobserved cells dark.
    * visibility: visible cells white, hidden cells black.
    * predicted hidden: the predicted class in hidden cells, brighter where confident;
      visible cells dimmed.
    * road layout: where the model believes there is road surface, under and behind
      objects too (road colour, brighter where surer); visible cells dimmed.
    * truth: the simulator's full grid (when present).
    * error: per-cell surprise (0-255) on the magma map over ``layers.error_range``.
    """
    i = layers.index(frame)
    palette = class_palette(layers.classes)
    pixel = (layers.resolution_m, layers.resolution_m)
    panels = {"observed": palette[layers.observed[i]],
              "visibility": render.gray_rgb(layers.visible[i].astype(np.float32))}
    if layers.predicted is not None:
        hidden = ~layers.visible[i]
        dimmed = palette[layers.observed[i]] * 0.25
        confidence = layers.confidence[i].astype(np.float32) / 255.0
        predicted = palette[layers.predicted[i]] * (0.35 + 0.65 * confidence[..., None])
        panels["predicted hidden"] = np.where(hidden[..., None], predicted, dimmed)
    if layers.road_layout is not None:
        road = np.asarray(ROAD_LAYOUT_COLOUR, np.float32)
        surface = layers.road_layout[i].astype(np.float32)[..., None] / 255.0 * road
        panels["road layout"] = np.where(layers.visible[i][..., None], surface * 0.4, surface)
    if layers.truth is not None:
        panels["truth"] = palette[layers.truth[i]]
    if layers.error is not None:
        panels["error"] = render.magma(render.scale01(layers.error[i], layers.error_range))
    return {name: render.upscale(_mark_ego(render.to_uint8(rgb), layers.ego_cell), pixel, size)
            for name, rgb in panels.items()}


def panel_caption(name: str) -> str:
    """A panel's caption: its name and, where the picture needs it, how to read it."""
    return f"{name} · {PANEL_KEYS[name]}" if name in PANEL_KEYS else name


def class_legend(classes, declared=None) -> list[tuple[str, tuple[int, int, int]]]:
    """``(class, RGB)`` per class of ``classes`` (the grids' ids) that the log ``declared``
    (None: all; a class its world lacks never appears on a panel), for unobserved cells and
    for the ego's mark, from the panels' palette."""
    palette = class_palette(classes)
    entries = [(str(name), tuple(int(c) for c in palette[k])) for k, name in enumerate(classes)
               if declared is None or name in declared]
    return entries + [("unobserved", tuple(int(c) for c in palette[UNOBSERVED])),
                      ("ego (facing up)", EGO_COLOUR)]


def error_bar(layers: LogLayers, width: int = 320) -> np.ndarray:
    """Colour bar of the error panel (its value range and units)."""
    return render.colour_bar(render.magma, layers.error_range, ERROR_UNITS, width)


def shown_score(score: float, decimals: int = 4) -> str:
    """A frame score to ``decimals`` places, without the ``-0.0000`` a tiny negative score
    gives."""
    return f"{round(float(score), decimals) + 0.0:.{decimals}f}"       # -0.0 + 0.0 is 0.0


def top_frames(log_frames: pd.DataFrame, n: int = TOP_FRAMES) -> pd.DataFrame:
    """The ``n`` highest-scoring frames (``frame``, ``score``), highest first."""
    order = log_frames["score"].to_numpy().argsort(kind="stable")[::-1][:n]
    return log_frames.iloc[order][["frame", "score"]].reset_index(drop=True)


def clicked_frame(chart_state, param: str) -> int | None:
    """The frame a click on the timeline selected: ``chart_state`` is what
    ``st.altair_chart(..., on_select="rerun")`` keeps (``{"selection": {param: [{"frame":
    ...}, ...]}}``); None when nothing is selected."""
    if not chart_state:
        return None
    points = (chart_state.get("selection") or {}).get(param) or []
    if isinstance(points, dict):            # an empty selection is ``{}``
        return None
    frames = [p.get("frame") for p in points if isinstance(p, dict) and p.get("frame") is not None]
    return int(frames[0]) if frames else None


def alert_frames(log_frames: pd.DataFrame) -> np.ndarray:
    """Frame numbers flagged as anomalies (``is_alert``), ascending."""
    return np.sort(log_frames.loc[log_frames["is_alert"].astype(bool), "frame"].to_numpy())


def step_anomaly(alerts: np.ndarray, current: int, direction: int) -> int | None:
    """The next (``direction`` = +1) or previous (-1) alert frame after ``current``; None at
    the end."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    later = alerts[alerts > current] if direction > 0 else alerts[alerts < current][::-1]
    return int(later[0]) if later.size else None


def region_shap(run_dir, log_id: str) -> pd.DataFrame:
    """SHAP values of the regions of ``log_id``'s explained frames (``frame``, ``region``,
    ``shap_value``, ``base_value``; empty when the run explained none)."""
    path = Path(run_dir) / "region_shap.parquet"
    columns = ["frame", "region", "shap_value", "base_value"]
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    frame = pd.read_parquet(path)
    return frame.loc[frame["log_id"].astype(str) == str(log_id), columns].reset_index(drop=True)


def bookmark_id(log_id: str, frame: int) -> str:
    return f"{log_id}:{int(frame)}"


def bookmarks(events: pd.DataFrame, log_id: str) -> pd.DataFrame:
    """Bookmarks of ``log_id`` from review-store events (``frame``, ``note``, ``reviewer``,
    ``created_at``), newest first."""
    columns = ["frame", "note", "reviewer", "created_at"]
    if events.empty:
        return pd.DataFrame(columns=columns)
    parts = events["item_id"].astype(str).str.rsplit(":", n=1, expand=True)
    mine = events[parts[0] == log_id].copy()
    mine["frame"] = parts.loc[mine.index, 1].astype(int)
    return mine.sort_values("id", ascending=False)[columns].reset_index(drop=True)
