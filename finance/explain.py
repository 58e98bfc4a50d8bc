"""``unmask finance explain``: SHAP reason codes for chosen transactions."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from core.errors import DataValidationError

from .detector import FinanceModel
from .features import featurise
from .feedback import load_confirmations
from .scoring import _explain_rows


def explain_transactions(model_dir, data, ids, labels=None, reviews=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score and explain the transactions ``ids`` of ``data`` (their history comes from ``data``).

    Returns:
        ``(reasons, explanations)``: one row per id with ``score`` and the three
        ``reason_k_*`` columns; and the long table (``transaction_id``, ``feature``,
        ``shap_value``, ``value``, ``usual_value``) over every model feature.
    """
    import pyarrow.compute as pc
    import pyarrow.dataset as pads


    ids = [str(i).strip() for i in ids if str(i).strip()]
    if not ids:
        raise DataValidationError("give at least one transaction id (--ids ID,ID,...)")
    model = FinanceModel.load(model_dir)
    confirmations = (load_confirmations(labels, reviews, model.config.features.timezone)
                     if model.config.features.feedback else None)
    with tempfile.TemporaryDirectory(prefix="unmask-explain-") as work:
        feats = Path(work) / "features.parquet"
        featurise(data, feats, cfg=model.config.features, labels=confirmations)
        found = pads.dataset(str(feats)).to_table(columns=["transaction_id", "_row"],
                                                  filter=pc.field("transaction_id").isin(ids)).to_pandas()
        missing = sorted(set(ids) - set(found["transaction_id"]))
        if missing:
            raise DataValidationError(f"{data}: transaction id(s) not found: {', '.join(missing[:10])}")
        rows = found.set_index("transaction_id").loc[ids, "_row"].to_numpy()
        reasons, long, _ = _explain_rows(model, feats, rows)
        frame = pads.dataset(str(feats)).to_table(filter=pc.field("_row").isin(rows.tolist())).to_pandas()
    frame = frame.set_index("_row").loc[rows]
    reasons.insert(0, "transaction_id", ids)
    reasons.insert(1, "score", model.score(frame))
    return reasons.drop(columns="_row").reset_index(drop=True), long


def format_reasons(reasons: pd.DataFrame) -> str:
    """Plain-text report: one block per transaction."""
    lines = []
    for _, row in reasons.iterrows():
        lines.append(f"{row['transaction_id']}  score {row['score']:.4f}")
        for k in (1, 2, 3):
            text = row.get(f"reason_{k}_text")
            if isinstance(text, str):
                lines.append(f"  {k}. {text}  (SHAP {row[f'reason_{k}_shap']:+.4f})")
        if not isinstance(row.get("reason_1_text"), str):
            lines.append("  no feature raises this score above the expected score")
    return "\n".join(lines)
