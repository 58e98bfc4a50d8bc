"""Archive-scale CT scoring: a pure batch function over volume paths.

:func:`load_batch_scorer` loads the models once (per process or Ray actor) and returns
``score_batch(paths) -> DataFrame`` with one row per case (case score, organ volumes);
:func:`batch_score` runs it with :func:`core.scale.map_items` (``engine="local"`` or
``"ray"``), calibrates all cases together (p-values, Benjamini-Hochberg alerts) and writes
one Parquet table atomically. No NIfTI maps or SHAP are written: use
``unmask medical infer`` for the cases radiologists will open in the dashboard.

Example:
    >>> batch_score("models/medical/ct", "archive/", "cases.parquet", engine="ray")  # doctest: +SKIP
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import recorded_warnings
from core.io import write_parquet_atomic
from core.runtime import configure_threads
from core.scale import map_items

from .infer import load_models, score_case
from .io import find_cases


def load_batch_scorer(model_dir, anomaly_model=None):
    """Load the models once; return ``score_batch(list of volume paths) -> case rows``."""
    configure_threads()
    return _batch_scorer(*load_models(model_dir, anomaly_model))


def _batch_scorer(segmenter, scorer):
    """``score_batch(paths) -> case rows`` over already-loaded models."""

    def score_batch(paths: list) -> pd.DataFrame:
        rows = []
        for path in paths:
            for case in find_cases(path):
                row, _ = score_case(case, segmenter, scorer, None, shap_evals=0)
                rows.append({k: v for k, v in row.items()
                             if k not in ("segmentation", "anomaly_map") and not k.startswith("dice_")})
        return pd.DataFrame(rows)

    return score_batch


def batch_score(model_dir, images, out, anomaly_model=None, engine: str = "local",
                address: str | None = None, fdr: float = 0.1) -> dict:
    """Score every case of ``images`` into ``out`` (Parquet, one row per case, by rank).

    Args:
        model_dir: ``unmask medical train`` output or a single CT bundle.
        images: anything :func:`medical.io.find_cases` reads (file, folder, MSD root, DICOM).
        out: output Parquet file (written atomically).
        anomaly_model: a ``ct-anomaly`` bundle overriding ``model_dir``'s.
        engine: ``"local"`` or ``"ray"`` (extra ``scale``).
        address: Ray cluster address (``"auto"`` to join a running cluster).
        fdr: Benjamini-Hochberg level for ``is_alert``.

    Returns:
        A summary: cases, alerts, input_warnings (about ``images`` as a whole, each also
        raised as an :class:`core.errors.UnmaskWarning`; named as in ``infer``'s manifest;
        each case's own are in its ``warnings`` column).
    """
    segmenter, scorer = load_models(model_dir, anomaly_model)  # fail early on a bad bundle
    with recorded_warnings() as listing_warnings:          # e.g. an image file listed twice
        paths = [os.fspath(c.image) for c in find_cases(images)]
    if engine == "local":  # this process is the worker: reuse the models just loaded
        make = functools.partial(_batch_scorer, segmenter, scorer)
    else:
        make = functools.partial(load_batch_scorer, os.fspath(model_dir),
                                 None if anomaly_model is None else os.fspath(anomaly_model))
    table = map_items(paths, make, engine=engine, address=address).to_pandas()
    if scorer is not None:  # a loaded scorer is always calibrated
        scores = table["score"].to_numpy()
        table["p_value"] = scorer.calibration_.p_values(scores)
        table["is_alert"] = scorer.calibration_.alerts(scores, fdr=fdr)
    else:
        table["is_alert"] = False
    table = table.iloc[np.argsort(-table["score"].fillna(-np.inf).to_numpy(), kind="stable")]
    table = table.reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1, dtype=np.int64)
    write_parquet_atomic(table, Path(out))
    return {"cases": int(len(table)), "alerts": int(table["is_alert"].sum()),
            "input_warnings": listing_warnings, "out": str(out)}
