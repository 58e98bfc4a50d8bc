"""Fleet-scale drive-log scoring: a pure batch function over log paths.

:func:`load_batch_scorer` loads the predictor once (per process or Ray actor) and returns
``score_batch(paths) -> DataFrame`` with one row per frame, each carrying its log's input
warning (``driving.guard``: the line ``driving score`` prints, or null); :func:`batch_score`
runs it with :func:`core.scale.map_items` (``engine="local"`` or ``"ray"``), collects the
warnings (one per unlike log, as ``warning:`` lines and in its summary), calibrates all
frames together (p-values, alerts) and writes one Parquet table atomically. Use
``unmask driving score`` instead when engineers will replay the logs in the dashboard
(it also writes per-cell predictions, recordings and SHAP).

Example:
    >>> batch_score("models/driving/default", "logs/", "frames.parquet", engine="ray")  # doctest: +SKIP
"""
from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

from core.errors import UnmaskWarning
from core.io import write_parquet_atomic
from core.runtime import configure_threads
from core.scale import map_items

from .guard import guarded, input_warnings
from .model.predictor import OcclusionPredictor
from .schema import list_logs, read_log
from .scoring.run import frame_rows
from .scoring.surprise import score_log

FRAME_COLUMNS = ["log_id", "frame", "timestamp", "score", "surprise_revealed", "visible_error"]


def load_batch_scorer(model_dir, batch_size: int = 32):
    """Load the predictor once; return ``score_batch(list of log paths) -> frame rows``."""
    configure_threads()
    return _batch_scorer(OcclusionPredictor.load(model_dir), batch_size)


def _batch_scorer(predictor, batch_size: int = 32):
    """``score_batch(paths) -> frame rows`` over an already-loaded predictor: the frame
    columns and ``input_warning``, the log's guard line on its first frame (null on the rest
    and for a log like the training logs)."""
    import pandas as pd

    def score_batch(paths: list) -> "pd.DataFrame":
        frames = []
        for path in paths:
            log = read_log(path)
            predictor.check_log(log)
            rows = frame_rows(log, score_log(guarded(predictor, log), log,   # as `score`
                                             batch_size=batch_size))[FRAME_COLUMNS]
            [warning] = input_warnings(predictor.input_profile_, [log]) or [None]
            frames.append(rows.assign(input_warning=pd.Series(
                [warning] + [None] * (len(rows) - 1), dtype="string")))
        return pd.concat(frames, ignore_index=True)

    return score_batch


def batch_score(model_dir, logs, out, engine: str = "local", address: str | None = None,
                fdr: float | None = None) -> dict:
    """Score every log in ``logs`` (directory or file) into ``out`` (Parquet, one row per frame).

    Args:
        model_dir: a bundle written by ``OcclusionPredictor.save``.
        logs: directory of drive logs, or one log file.
        out: output Parquet file (written atomically).
        engine: ``"local"`` or ``"ray"`` (extra ``scale``).
        address: Ray cluster address (``"auto"`` to join a running cluster).
        fdr: alert at this false-discovery rate over all frames (default: the calibrated
            threshold).

    Returns:
        A summary: logs, frames, alerts, warnings (one line per log unlike the training
        logs, each also raised as an :class:`core.errors.UnmaskWarning`).
    """
    predictor = OcclusionPredictor.load(model_dir)  # fail early on a bad bundle
    paths = [os.fspath(p) for p in list_logs(logs)]
    make = (functools.partial(_batch_scorer, predictor) if engine == "local"  # reuse it here
            else functools.partial(load_batch_scorer, os.fspath(model_dir)))
    table = map_items(paths, make, engine=engine, address=address).to_pandas()
    unlike = list(table.pop("input_warning").dropna())   # on each unlike log's first frame
    for line in unlike:
        warnings.warn(line, UnmaskWarning, stacklevel=2)
    scores = table["score"].to_numpy()
    table["p_value"] = predictor.calibration_.p_values(scores)
    table["is_alert"] = predictor.calibration_.alerts(scores, fdr=fdr)
    write_parquet_atomic(table, Path(out))
    return {"logs": len(paths), "frames": int(len(table)), "alerts": int(table["is_alert"].sum()),
            "warnings": unlike, "out": str(out)}
