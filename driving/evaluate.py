"""Evaluation against simulator truth: hidden cells, road layout, frame anomalies, latency.

Hidden-cell metrics follow the Waymo occupancy benchmark's split of observed and
occluded cells: per class, PR-AUC (average precision) and Soft-IoU over the cells the
sensor did *not* see, plus two road IoUs there: ``road_iou``, of the reported class
(road or lane marking on top: a hidden car on the road counts as not road), and
``road_layout_iou``, of the static road layout under everything (the simulator's
``layout_true`` against ``decision.layout_mass`` >= one half: is there road surface in
this hidden cell, car or no car -- the amodal layout of bird's-eye-view layout
estimation, e.g. MonoLayout, WACV 2020). Hidden cells
are reported three ways: all of them, **occluded** (inside the sensor's range, hidden
behind objects -- the issue's and Waymo's "occluded") and **out of range** (never
observable from the ego's position). Frame metrics are AUROC/AP of the frame score
against the injected events (labelled while observable, see ``driving.sim.simulator``), and
detection latency: frames from an event's first labelled frame to its first alert.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from core.errors import DataValidationError
from core.metrics import auprc, auroc, iou, soft_iou
from core.runs import load_manifest

from .scoring.decision import LAYOUT_THRESHOLD, layout_mass
from .schema import LANE_MARKING, ROAD, cells_grid, list_logs, read_log
from .warp import sensor_range_mask


class HiddenCellAccumulator:
    """Collects (sub-sampled) hidden cells' probabilities and truth over many frames.

    Hidden cells fall in two groups, reported separately by :meth:`metrics_by_region`:
    **occluded** (inside the sensor's range, hidden behind objects: the Waymo
    benchmark's occluded cells, and the issue's) and **out of range** (never observable
    from here; what lies there is only guessable from the map's regularities or memory).
    """

    REGIONS = ("occluded", "out_of_range")

    def __init__(self, n_classes: int, sample: float = 0.25, seed: int = 0):
        self.n_classes = n_classes
        self.sample = sample
        self.R = np.random.default_rng(seed)
        self.probs: list[np.ndarray] = []
        self.truth: list[np.ndarray] = []
        self.in_range: list[np.ndarray] = []
        self.decided: list[np.ndarray | None] = []
        self.layout: list[np.ndarray | None] = []

    def add(self, probabilities: np.ndarray, truth: np.ndarray, visible: np.ndarray,
            in_range: np.ndarray | None = None, predicted: np.ndarray | None = None,
            layout: np.ndarray | None = None, road_layout: np.ndarray | None = None) -> None:
        """``probabilities`` ``(T, C, H, W)``; ``truth``/``visible`` ``(T, H, W)``;
        ``in_range`` ``(H, W)`` cells inside the sensor range (None: all); ``predicted``
        ``(T, H, W)`` the reported classes (e.g. ``OcclusionPredictor.decide``; None: the
        argmax), which accuracy and road IoU are computed from; ``layout`` ``(T, H, W)``
        the true static layout (``DriveLog.layout_true``) and ``road_layout`` the
        predicted ``P(road surface)`` (default: ``decision.layout_mass`` of
        ``probabilities``), for ``road_layout_iou``."""
        hidden = ~visible & (self.R.random(visible.shape) < self.sample)
        t, r, c = np.nonzero(hidden)
        probs = np.asarray(probabilities[t, :, r, c], dtype=np.float32)              # (n, C)
        self.probs.append(probs)
        self.truth.append(truth[t, r, c])
        self.in_range.append(np.ones(len(t), bool) if in_range is None else in_range[r, c])
        self.decided.append(None if predicted is None else np.asarray(predicted)[t, r, c])
        if layout is None:
            self.layout.append(None)
        else:
            mass = layout_mass(probs) if road_layout is None else np.asarray(road_layout)[t, r, c]
            self.layout.append(np.stack([np.asarray(layout)[t, r, c], mass]))

    def metrics(self, class_names, region: str | None = None) -> dict:
        """Metrics over all hidden cells, or one region (``"occluded"``, ``"out_of_range"``)."""
        probs = np.concatenate(self.probs)
        truth = np.concatenate(self.truth)
        argmax = probs.argmax(1)
        decided = np.concatenate([p.argmax(1) if d is None else d
                                  for p, d in zip(self.probs, self.decided)])
        has_layout = bool(self.layout) and all(x is not None for x in self.layout)
        layout = np.concatenate(self.layout, 1) if has_layout else None     # (2, n)
        if region is not None:
            if region not in self.REGIONS:
                raise ValueError(f"region must be one of {self.REGIONS}, got {region!r}")
            keep = np.concatenate(self.in_range)
            keep = keep if region == "occluded" else ~keep
            probs, truth, argmax, decided = probs[keep], truth[keep], argmax[keep], decided[keep]
            layout = layout[:, keep] if has_layout else None
        out = {"n_hidden_cells": int(len(truth)), "classes": {}}
        for c, name in enumerate(class_names):
            y = truth == c
            entry = {"prevalence": float(y.mean()) if len(y) else 0.0}
            if 0 < y.sum() < len(y):
                entry["pr_auc"] = auprc(y, probs[:, c])
                entry["soft_iou"] = soft_iou(y, probs[:, c])
            out["classes"][name] = entry
        road_truth = np.isin(truth, (ROAD, LANE_MARKING))
        for suffix, pred in (("", decided), ("_argmax", argmax)):
            out["road_iou" + suffix] = iou(road_truth, np.isin(pred, (ROAD, LANE_MARKING)))
            out["accuracy" + suffix] = float((pred == truth).mean()) if len(truth) else None
        if layout is not None:
            out["road_layout_iou"] = iou(np.isin(layout[0], (ROAD, LANE_MARKING)),
                                         layout[1] >= LAYOUT_THRESHOLD)
        return out

    def metrics_by_region(self, class_names) -> dict:
        """``{"occluded": ..., "out_of_range": ...}``, each as :meth:`metrics`."""
        return {region: self.metrics(class_names, region) for region in self.REGIONS}


def events(labels: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` index ranges of consecutive True labels."""
    padded = np.concatenate([[False], np.asarray(labels, bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2], edges[1::2]))


def event_latencies(labels: np.ndarray, alerts: np.ndarray) -> list[int | None]:
    """Per event (:func:`events`), frames from its first frame to the first alert inside
    it; None for an event never alerted."""
    out = []
    for start, stop in events(labels):
        hits = np.flatnonzero(alerts[start:stop])
        out.append(int(hits[0]) if hits.size else None)
    return out


def detection_latency(labels: np.ndarray, alerts: np.ndarray) -> dict:
    """Per event, frames until the first alert inside it; summary over events."""
    per_event = event_latencies(labels, alerts)
    latencies = [d for d in per_event if d is not None]
    n = len(per_event)
    return {"n_events": n, "detected": len(latencies),
            "detection_rate": len(latencies) / n if n else None,
            "mean_latency_frames": float(np.mean(latencies)) if latencies else None,
            "median_latency_frames": float(np.median(latencies)) if latencies else None}


def frame_metrics(labels: np.ndarray, scores: np.ndarray, alerts: np.ndarray,
                  log_ids: np.ndarray | None = None) -> dict:
    """AUROC/AP of scores vs labels; latency per event (events never span two logs);
    the share of normal frames that raised an alert (``alert_rate_normal``)."""
    labels = np.asarray(labels, bool)
    out = {"n_frames": int(len(labels)), "n_anomalous": int(labels.sum())}
    if (~labels).any():
        out["alert_rate_normal"] = float(np.asarray(alerts, bool)[~labels].mean())
    if 0 < labels.sum() < len(labels):
        out["auroc"] = auroc(labels, scores)
        out["average_precision"] = auprc(labels, scores)
    log_ids = np.zeros(len(labels)) if log_ids is None else np.asarray(log_ids)
    per = [detection_latency(labels[log_ids == i], np.asarray(alerts)[log_ids == i])
           for i in dict.fromkeys(log_ids.tolist())]
    lat = [p for p in per if p["n_events"]]
    n = sum(p["n_events"] for p in lat)
    det = sum(p["detected"] for p in lat)
    means = [p["mean_latency_frames"] * p["detected"] for p in lat if p["detected"]]
    out.update({"n_events": n, "detected": det, "detection_rate": det / n if n else None,
                "mean_latency_frames": float(sum(means) / det) if det else None})
    return out


def _probabilities_from_cells(predicted: np.ndarray, confidence: np.ndarray, n_classes: int) -> np.ndarray:
    """Approximate class probabilities from a run's top class + confidence (uint8)."""
    conf = confidence.astype(np.float32) / 255.0
    rest = (1.0 - conf) / max(n_classes - 1, 1)
    probs = np.repeat(rest[:, None], n_classes, axis=1)
    np.put_along_axis(probs, predicted[:, None].astype(np.int64), conf[:, None], axis=1)
    return probs


def check_scored_frames(log, scored, pred_dir) -> np.ndarray:
    """Refuse a log that is not the one the run scored under its ``log_id`` (another world's
    ``log_000``, at another frame rate): every scored frame must be in the log, at the same
    time. A log of the same world and length but another seed passes here and is refused by
    :func:`check_seen_cells`.

    Args:
        log: the :class:`~driving.schema.DriveLog` given for evaluation.
        scored: the run's ``frames.parquet`` rows of that ``log_id`` (``frame``, ``timestamp``).
        pred_dir: the run, named in the error.

    Returns:
        Each scored frame's index in the log.
    """
    frames = scored["frame"].to_numpy()
    position = np.searchsorted(log.frame, frames).clip(max=len(log.frame) - 1)
    absent = log.frame[position] != frames
    moved = ~absent & ~np.isclose(log.timestamp[position], scored["timestamp"].to_numpy(),
                                  rtol=0.0, atol=1e-6)
    if absent.any() or moved.any():
        first = int(np.flatnonzero(absent | moved)[0])
        frame = int(frames[first])
        detail = (f"frame {frame} is not in it" if absent[first] else
                  f"frame {frame} is at t = {log.timestamp[position[first]]:.3f} s in it, "
                  f"t = {scored['timestamp'].to_numpy()[first]:.3f} s in the run")
        raise DataValidationError(f"{log.path}: not the log {pred_dir} scored as {log.log_id!r} "
                                  f"({detail}); give --logs the logs the run scored")
    return position


def check_seen_cells(log, seen: np.ndarray, index: np.ndarray, predicted: np.ndarray,
                     pred_dir) -> None:
    """Refuse a log whose seen cells are not what the run reported there: scoring reports the
    observed class of every visible cell, so another seed's ``log_000`` with the same frames
    and times differs on its first frame.

    Args:
        log: the :class:`~driving.schema.DriveLog` given for evaluation.
        seen: ``log.visible[index]``, the cells seen in those frames.
        index: the log's frame index of each row of ``predicted``.
        predicted: the run's reported classes ``(T, H, W)`` (``cells/<log_id>.parquet``).
        pred_dir: the run, named in the error.
    """
    differ = seen & (predicted != log.semantic[index])
    if differ.any():
        row = int(np.flatnonzero(differ.any(axis=(1, 2)))[0])
        raise DataValidationError(
            f"{log.path}: not the log {pred_dir} scored as {log.log_id!r} (frame "
            f"{int(log.frame[index[row]])}: {int(differ[row].sum())} of its {int(seen[row].sum())} "
            f"seen cells hold another class than the run reports); give --logs the logs the run scored")


def evaluate_run(pred_dir: str | os.PathLike, logs: str | os.PathLike) -> dict:
    """Evaluate a scoring run against the simulator truth in ``logs``.

    Hidden-cell probabilities are rebuilt from the run's stored top class and confidence
    (the run does not keep full distributions), so PR-AUC here is a lower bound of the
    benchmark's, which uses the full probabilities.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    pred_dir = Path(pred_dir)
    manifest = load_manifest(pred_dir)
    frames = pd.read_parquet(pred_dir / manifest["outputs"]["frames"])
    logs_by_id = {}
    for path in list_logs(logs):
        log = read_log(path, require_truth=True)
        logs_by_id[log.log_id] = log
    classes = manifest["summary"]["classes"]
    acc = HiddenCellAccumulator(len(classes))
    labels = []
    for log_id, group in frames.groupby("log_id", sort=False):
        if log_id not in logs_by_id:
            raise DataValidationError(f"{logs}: no drive log with log_id {log_id!r} (scored in {pred_dir})")
        log = logs_by_id[log_id]
        position = check_scored_frames(log, group, pred_dir)
        if list(log.meta.grid_shape) != list(manifest["summary"]["grid_shape"]):
            raise DataValidationError(f"{log.path}: grid_shape {list(log.meta.grid_shape)} differs "
                                      f"from the run's {manifest['summary']['grid_shape']}")
        if log.anomaly is None:
            raise DataValidationError(f"{log.path}: column 'anomaly' is missing; evaluation needs "
                                      "simulator truth")
        cells = pq.read_table(pred_dir / manifest["outputs"][f"cells/{log_id}"])
        grid = log.meta.grid_shape
        predicted = cells_grid(cells, "predicted", grid)
        confidence = cells_grid(cells, "confidence", grid)
        index = np.searchsorted(log.frame, cells.column("frame").to_numpy())
        seen = log.visible[index]
        check_seen_cells(log, seen, index, predicted, pred_dir)
        probs = _probabilities_from_cells(predicted, confidence, len(classes))
        layout = road_layout = None
        if log.layout_true is not None and "road_layout" in cells.column_names:
            layout = log.layout_true[index]
            road_layout = cells_grid(cells, "road_layout", grid) / 255.0
        acc.add(probs, log.semantic_true[index], seen, sensor_range_mask(log),
                layout=layout, road_layout=road_layout)
        labels.append(log.anomaly[position])
    result = {"hidden_cells": acc.metrics(classes), **acc.metrics_by_region(classes),
              "frames": frame_metrics(np.concatenate(labels), frames["score"].to_numpy(),
                                      frames["is_alert"].to_numpy(), frames["log_id"].to_numpy())}
    return result
