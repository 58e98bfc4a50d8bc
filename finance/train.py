"""``unmask finance train``: featurise, fit the detector on transactions before ``until``, save."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DataValidationError
from core.io import check_output
from core.runtime import check_precision, choose_device
from core.training import is_main_process

from .detector import FinanceModel, FinanceModelConfig
from .drift import fit_reference
from .features import category_context, feature_names, featurise
from .feedback import load_confirmations
from .mapping import ColumnMapping
from .schema import DEFAULT_TIMEZONE, check_timezone


def read_features(path, until=None, since=None, columns=None, max_rows=None, seed=0) -> pd.DataFrame:
    """Rows of a features file with ``since <= timestamp < until``, in time order.

    ``max_rows`` draws a seeded uniform sample (row groups are streamed, so the file may be
    larger than memory).
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    dataset = pads.dataset(str(path), format="parquet")
    cond = None
    for bound, op in ((until, pc.less), (since, pc.greater_equal)):
        if bound is not None:
            term = op(pc.field("timestamp"), pd.Timestamp(bound).to_datetime64())
            cond = term if cond is None else cond & term
    if max_rows is None:
        table = dataset.to_table(columns=columns, filter=cond)
    else:
        import pyarrow as pa

        keep_p = min(1.0, max_rows / max(dataset.count_rows(filter=cond), 1))
        R = np.random.default_rng(seed)
        table = pa.Table.from_batches(
            [b.filter(R.random(b.num_rows) < keep_p)
             for b in dataset.to_batches(columns=columns, filter=cond)],
            schema=pa.schema([dataset.schema.field(c) for c in (columns or dataset.schema.names)]))
    return table.to_pandas().sort_values("_row", kind="stable").reset_index(drop=True)


def training_rows(features_path, until, config: FinanceModelConfig) -> pd.DataFrame:
    """The rows :func:`train` fits on: features before ``until`` with the category context,
    ``_row`` and ``timestamp``, a seeded sample of at most ``config.max_train_rows``."""
    columns = feature_names(config.features) + list(category_context(config.features)) + ["_row", "timestamp"]
    return read_features(features_path, until=until, columns=columns, max_rows=config.max_train_rows,
                         seed=config.random_state)


def labelled_rows(features_path, confirmations: pd.DataFrame, until, columns) -> pd.DataFrame:
    """Feature rows of the transactions analysts labelled, with ``label`` (1 fraud, 0 legitimate).

    Only transactions before ``until`` whose disposition was confirmed before ``until``: the
    labels a model trained at ``until`` could have known.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    known = confirmations
    if until is not None:
        known = known[known["confirmed_at"] < pd.Timestamp(until)]
    cond = pc.field("transaction_id").isin(known["transaction_id"].astype(str).tolist())
    if until is not None:
        cond = cond & (pc.field("timestamp") < pd.Timestamp(until).to_datetime64())
    rows = pads.dataset(str(features_path), format="parquet").to_table(
        columns=list(columns) + ["transaction_id", "_row"], filter=cond).to_pandas()
    label = known.set_index("transaction_id")["is_fraud"]
    rows["label"] = rows["transaction_id"].map(label).astype(int).to_numpy()
    return rows.sort_values("_row", kind="stable").reset_index(drop=True)


def train(data, out, until=None, labels=None, reviews=None, feedback_delay_days: float = 7.0,
          config: FinanceModelConfig | None = None, timezone: str = DEFAULT_TIMEZONE,
          mapping: ColumnMapping | None = None, device="auto", precision: str = "fp32",
          progress: bool | None = None) -> FinanceModel:
    """Train a finance model on ``data`` (transactions before ``until``) and save it to ``out``.

    Args:
        data: transactions (Parquet/CSV).
        out: model directory (written atomically).
        until: train on transactions strictly before this date/time (default: all).
        labels: labels file of confirmed dispositions; enables the feedback features and,
            with enough fraud and legitimate dispositions before ``until``, the supervised
            feedback head (:mod:`finance.head`).
        reviews: review store (``reviews.sqlite``); as ``labels``.
        feedback_delay_days: confirmations younger than this are never used.
        config: model hyper-parameters.
        timezone: IANA zone that aware timestamps (tz-aware Parquet, CSV with UTC offsets)
            are converted to; naive ones are kept. Saved with the model for scoring.
        mapping: the file's column names and codings (:mod:`finance.mapping`; default:
            unmask's own). Saved with the model: scoring reads files the same way.
        device: where the detector's network trains (auto, cpu, cuda, cuda:N); not saved.
        precision: ``"fp32"``, or ``"bf16"`` (CUDA autocast).
        progress: training progress bars on stderr (None: only on a terminal; False: never).

    Returns:
        The fitted model.
    """

    check_output(out, [data, labels, reviews])  # before training, not after it
    config = config or FinanceModelConfig()
    check_precision(precision, choose_device(device))  # before hours of featurising
    check_timezone(timezone)   # before the labels are read in it
    confirmations = load_confirmations(labels, reviews, timezone)
    with tempfile.TemporaryDirectory(prefix="unmask-train-") as work:
        feats_path = Path(work) / "features.parquet"
        cfg = featurise(data, feats_path, labels=confirmations,
                        feedback_delay_days=float(feedback_delay_days), timezone=timezone, mapping=mapping)
        config.features = cfg
        categories = list(category_context(cfg))
        frame = training_rows(feats_path, until, config)
        labelled = (labelled_rows(feats_path, confirmations, until, feature_names(cfg))
                    if confirmations is not None else None)
    if frame.empty:
        raise DataValidationError(f"{data}: no transactions before {until}; nothing to train on")
    model = FinanceModel(config, device, precision, progress).fit(frame, trained_until=until,
                                                                  labelled=labelled)
    model.reference_ = fit_reference(frame, model.feature_names,
                                     {c.removeprefix("ctx_cat_"): frame[c] for c in categories},
                                     config.contamination)

    if is_main_process():  # under torchrun every rank holds the same model; rank 0 writes it
        model.save(out)
    return model
