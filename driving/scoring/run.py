"""Score drive logs into a run directory (the files ``docs/runs.md`` lists for driving).

``frames.parquet`` (per-frame scores, p-values, alerts), ``cells/<log_id>.parquet``
(per-cell predicted class, confidence, surprise and road-layout probability -- road
surface under objects too -- for replay) and
``region_shap.parquet`` (region SHAP of the top frames), all written inside
``core.runs.create_run`` so a failed run leaves nothing behind.

Example:
    >>> run_dir = score_logs("models/driving/default", "data/driving", "runs/driving/r1")
    ... # doctest: +SKIP
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from core.drift import calibration_reference
from core.errors import DataValidationError, UnmaskWarning
from core.io import check_output, write_parquet_atomic
from core.metrics import auprc, auroc
from core.names import check_name
from core.runs import create_run
from core.runtime import progress_bar

from ..guard import guarded, input_warnings
from ..model.predictor import OcclusionPredictor
from ..rerun_export import write_recording
from ..schema import _grid_array, list_logs, read_log
from .surprise import score_log


def _uint8_list_column(values: np.ndarray):
    import pyarrow as pa

    return _grid_array(values.reshape(len(values), -1).astype(np.uint8), pa.uint8())


def _error_uint8(result, scale: float) -> np.ndarray:
    """Per-cell surprise as uint8 0-255 (``error_scale`` nats = 255)."""
    return np.clip(result.cell_error / scale * 255.0, 0, 255).round().astype(np.uint8)


def _layout_uint8(result) -> np.ndarray:
    """Per-cell probability of road surface as uint8 0-255."""
    return np.round(result.road_layout * 255.0).astype(np.uint8)


def frame_rows(log, result):
    """One row per frame of a scored log: ids, time, score and its parts, and the
    simulator's anomaly labels when the log has them (null otherwise)."""
    import pandas as pd

    return pd.DataFrame({
        "log_id": log.log_id, "frame": log.frame.astype(np.int64),
        "timestamp": log.timestamp, "score": result.score.astype(np.float64),
        "surprise_revealed": result.surprise_revealed.astype(np.float64),
        "visible_error": result.visible_error.astype(np.float64),
        "anomaly": pd.array(log.anomaly, dtype="boolean") if log.anomaly is not None
        else pd.array([None] * len(log), dtype="boolean"),
        "anomaly_kind": log.anomaly_kind or [None] * len(log)})


def score_logs(model_dir: str | os.PathLike, logs: str | os.PathLike, out_dir: str | os.PathLike,
               fdr: float | None = None, top_frames: int = 5, shap_evals: int = 300,
               batch_size: int = 32, recordings: bool = False, device="auto",
               precision: str = "fp32", progress: bool | None = None) -> Path:
    """Score every log in ``logs`` (a directory or one file) into the run ``out_dir``.

    Args:
        model_dir: a bundle written by ``OcclusionPredictor.save``.
        logs: directory of drive logs, or one log file.
        out_dir: the run directory to create.
        fdr: alert at this false-discovery rate (Benjamini–Hochberg over all frames);
            default: the calibrated threshold.
        top_frames: frames (highest scores, over all logs) explained with region SHAP.
        shap_evals: SHAP evaluation budget per frame.
        recordings: also write ``recordings/<log_id>.rrd`` (rerun) for every log.
        device: where the network runs (auto, cpu, cuda, cuda:N).
        precision: ``"fp32"``, or ``"bf16"`` (CUDA autocast).
        progress: a bar over the frames on stderr (None: only on a terminal; False: never).

    Returns:
        The run directory.
    """
    check_output(out_dir, [logs, model_dir])  # before loading and scoring, not after
    import pandas as pd
    import pyarrow as pa


    predictor = OcclusionPredictor.load(model_dir, device, precision)
    paths = list_logs(logs)
    loaded = [read_log(p) for p in paths]   # validate everything before writing anything
    for log in loaded:
        predictor.check_log(log)
        check_name(log.log_id, f"{log.path}: column 'log_id'")  # names cells/<log_id>.parquet
    ids = [log.log_id for log in loaded]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise DataValidationError(f"{logs}: log_id {duplicate!r} appears in more than one file")
    unlike = input_warnings(predictor.input_profile_, loaded)   # one line per unlike log
    for line in unlike:
        warnings.warn(line, UnmaskWarning, stacklevel=2)
    scale = predictor.scoring_.error_scale
    params = {"fdr": fdr, "top_frames": top_frames, "shap_evals": shap_evals}
    with create_run(out_dir, "driving", kind="score", params=params, model=str(Path(model_dir).resolve()),
                    inputs=[log.path for log in loaded]) as run:
        frames, results = [], {}
        bar = progress_bar(desc="score", total=sum(len(log) for log in loaded), unit="frame",
                           show=progress)
        for log in loaded:
            result = score_log(guarded(predictor, log), log, batch_size=batch_size)
            bar.update(len(log))
            error, layout = _error_uint8(result, scale), _layout_uint8(result)
            results[log.log_id] = (log, result, error, layout)    # recordings reuse them
            table = pa.table({
                "log_id": pa.array([log.log_id] * len(log), pa.string()),
                "frame": pa.array(log.frame.astype(np.int64)),
                "predicted": _uint8_list_column(result.predicted),
                "confidence": _uint8_list_column(np.round(result.confidence * 255.0)),
                "error": _uint8_list_column(error),
                "road_layout": _uint8_list_column(layout),
            })
            write_parquet_atomic(table, run.path(f"cells/{log.log_id}", f"cells/{log.log_id}.parquet"))
            frames.append(frame_rows(log, result))
        bar.close()
        table = pd.concat(frames, ignore_index=True)
        scores = table["score"].to_numpy()
        table["p_value"] = predictor.calibration_.p_values(scores)
        table["is_alert"] = predictor.calibration_.alerts(scores, fdr=fdr)
        cols = ["log_id", "frame", "timestamp", "score", "p_value", "is_alert",
                "surprise_revealed", "visible_error", "anomaly", "anomaly_kind"]
        write_parquet_atomic(table[cols], run.path("frames", "frames.parquet"))

        if recordings:
            for log_id, (log, result, error, layout) in results.items():
                write_recording(log, table[table["log_id"] == log_id], np.arange(len(log)),
                                result.predicted, error,
                                run.path(f"recordings/{log_id}", f"recordings/{log_id}.rrd"),
                                layout)

        shap_rows = []
        for i in np.argsort(-scores, kind="stable")[:top_frames]:
            log_id, frame = table.loc[i, "log_id"], int(table.loc[i, "frame"])
            log, result, _, _ = results[log_id]
            t = int(np.searchsorted(log.frame, frame))
            shap = result.explain(t, log.meta.ego_cell, log.meta.resolution_m, max_evals=shap_evals)
            for name, value in zip(shap.feature_names, shap.values[0]):
                shap_rows.append({"log_id": log_id, "frame": frame, "region": name,
                                  "shap_value": float(value), "base_value": float(shap.base_values[0])})
        write_parquet_atomic(pd.DataFrame(shap_rows, columns=["log_id", "frame", "region", "shap_value",
                                                             "base_value"]),
                             run.path("region_shap", "region_shap.parquet"))
        summary = {"grid_shape": list(predictor.meta_.grid_shape),
                   "classes": list(predictor.meta_.classes), "n_frames": int(len(table)),
                   "n_alerts": int(table["is_alert"].sum()), "error_scale": scale,
                   "n_logs": len(loaded), "threshold": predictor.threshold_,
                   "region_blocks": 4, "warnings": unlike,
                   "calibration_reference": calibration_reference(predictor.calibration_)}
        labels = table["anomaly"].dropna()
        if len(labels) == len(table) and 0 < labels.sum() < len(labels):
            summary["auroc"] = auroc(labels.astype(int), scores)
            summary["average_precision"] = auprc(labels.astype(int), scores)
        run.summarize(**summary)
    return Path(out_dir)
