"""``unmask finance evaluate``: detection quality of a scores file against ``is_fraud``.

Metrics (higher is better): AUROC, average precision, the Fraud Detection Handbook's
Card Precision@k per day (the k cards with the highest daily max score; precision = share
of them with at least one fraud that day; mean over days), and recall per fraud scenario
when the analysts can review ``k`` transactions per day (top-k scores of each day).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import DataValidationError
from core.metrics import auprc, auroc

from .mapping import ColumnMapping
from .schema import DEFAULT_TIMEZONE, read_transactions

SCENARIOS = {1: "amount over limit", 2: "compromised terminal", 3: "leaked credentials",
             4: "card testing", 5: "impossible travel"}


def card_precision_at_k(day, customer, score, is_fraud, k: int = 100) -> float:
    """Mean over days of the fraud share among the ``k`` cards with the highest daily max score."""
    frame = pd.DataFrame({"day": day, "customer": customer, "score": score, "fraud": is_fraud})
    cards = frame.groupby(["day", "customer"], sort=False).agg(score=("score", "max"), fraud=("fraud", "max"))
    cards = cards.reset_index().sort_values(["day", "score"], ascending=[True, False], kind="stable")
    top = cards.groupby("day", sort=False).head(k)
    return float((top.groupby("day")["fraud"].sum() / k).mean())


def daily_top_k(day, score, k: int = 100) -> np.ndarray:
    """Boolean mask of the ``k`` highest scores of each day."""
    frame = pd.DataFrame({"day": day, "score": score})
    order = frame.sort_values(["day", "score"], ascending=[True, False], kind="stable")
    within = order.groupby("day", sort=False).cumcount().to_numpy()
    mask = np.zeros(len(frame), bool)
    mask[order.index.to_numpy()[within < k]] = True
    return mask


def detection_metrics(timestamp, customer, score, is_fraud, scenario=None, k: int = 100) -> dict:
    """All metrics from aligned arrays (see the module docstring)."""

    y = np.asarray(is_fraud).astype(int)
    s = np.asarray(score, dtype=np.float64)
    day = pd.to_datetime(pd.Series(timestamp)).dt.floor("D").to_numpy()
    out = {"n_transactions": int(y.size), "n_fraud": int(y.sum()), "auroc": auroc(y, s),
           "average_precision": auprc(y, s),
           f"card_precision_at_{k}_per_day": card_precision_at_k(day, customer, s, y, k)}
    alerted = daily_top_k(day, s, k)
    out[f"recall_at_{k}_per_day"] = float(alerted[y == 1].mean())
    if scenario is not None:
        scen = np.asarray(scenario)
        out[f"recall_per_scenario_at_{k}_per_day"] = {
            f"{i} {name}": float(alerted[scen == i].mean()) if (scen == i).any() else None
            for i, name in SCENARIOS.items()}
    return out


def evaluate(scores_path, data_path, k: int = 100, mapping: ColumnMapping | None = None,
             timezone: str = DEFAULT_TIMEZONE) -> dict:
    """Metrics of ``scores.parquet`` against the label column of the transactions file.

    Args:
        scores_path: ``finance score``'s output.
        data_path: the transactions that were scored, with their labels.
        k: alerts reviewed per day.
        mapping: how the file names and codes its columns (the model's saved mapping,
            :func:`finance.features.saved_features`; default: unmask's own names).
        timezone: the zone aware timestamps are read in (the model's).
    """

    # Days come from the scores' timestamps: they are in the model's time zone, whichever
    # zone an aware file is in (finance.schema).
    scores = pd.read_parquet(scores_path, columns=["transaction_id", "timestamp", "score"])
    data = read_transactions(data_path, timezone=timezone, mapping=mapping).drop(columns="timestamp")
    if "is_fraud" not in data:
        label = (mapping.columns.get("label") if mapping is not None else None) or "is_fraud"
        raise DataValidationError(f"{data_path}: no label column {label!r}; evaluation needs the truth")
    joined = data.merge(scores, on="transaction_id", how="inner")
    if len(joined) < len(scores):
        raise DataValidationError(f"{scores_path}: {len(scores) - len(joined)} scored transaction ids "
                                  f"are not in {data_path}")
    if joined["is_fraud"].isna().any():
        raise DataValidationError(f"{data_path}: the label column has missing values among the scored "
                                  "transactions")
    return detection_metrics(joined["timestamp"], joined["customer_id"], joined["score"],
                             joined["is_fraud"], joined.get("fraud_scenario"), k)
