"""The feedback loop: analysts' confirmed dispositions become delayed risk features.

Confirmations come from a labels file (CSV/Parquet: ``transaction_id``; ``decision`` in
{fraud, legitimate, needs_information} or ``is_fraud`` 0/1; ``confirmed_at`` or ``timestamp``
= when the disposition was confirmed) and/or the workspace review store
(:class:`core.review_store.ReviewStore`, vertical ``finance``, kind ``disposition``, the
latest decision per transaction, confirmed at the event's ``created_at``).

For a transaction at time ``T`` the features count confirmed frauds at the same terminal
(and on the same card) whose confirmation time lies in ``[T - delay - window, T - delay)``.
A confirmation is never earlier than the transaction it confirms (it is clipped to the
transaction's timestamp), so with ``delay > 0`` no transaction sees its own label, and
nothing confirmed within ``delay`` of ``T`` is used: labels cannot leak into a test window
that starts ``delay`` after training ends. ``is_fraud`` in the transactions file is never read.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.errors import DataValidationError

US = 1_000_000
DECISIONS = {"fraud": True, "legitimate": False}


def _read_table(path: Path) -> pd.DataFrame:
    from .schema import sniff_delimiter

    if not path.is_file():
        raise DataValidationError(f"{path}: no such labels file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if path.stat().st_size == 0:
        raise DataValidationError(f"{path}: empty labels file")
    return pd.read_csv(path, sep=sniff_delimiter(path), dtype={"transaction_id": str})


def read_labels(path) -> pd.DataFrame:
    """Read a labels file into ``transaction_id`` (str), ``confirmed_at`` (UTC-naive), ``is_fraud`` (bool)."""
    path = Path(path)
    frame = _read_table(path)
    if "transaction_id" not in frame:
        raise DataValidationError(f"{path}: labels need a 'transaction_id' column (found: {', '.join(frame.columns)})")
    time_col = next((c for c in ("confirmed_at", "timestamp") if c in frame), None)
    if time_col is None:
        raise DataValidationError(f"{path}: labels need a 'confirmed_at' (or 'timestamp') column: "
                                  "when the disposition was confirmed")
    if "decision" in frame:
        bad = ~frame["decision"].isin(list(DECISIONS) + ["needs_information"])
        if bad.any():
            raise DataValidationError(f"{path}: column 'decision', row {int(bad.idxmax()) + 1}: "
                                      f"{frame['decision'][bad].iloc[0]!r} is not fraud, legitimate or needs_information")
        frame = frame[frame["decision"].isin(list(DECISIONS))]
        fraud = frame["decision"].map(DECISIONS).astype(bool)
    elif "is_fraud" in frame:
        fraud = pd.to_numeric(frame["is_fraud"], errors="coerce")
        if fraud.isna().any() or not fraud.isin([0, 1]).all():
            raise DataValidationError(f"{path}: column 'is_fraud' must be 0 or 1")
        fraud = fraud.astype(bool)
    else:
        raise DataValidationError(f"{path}: labels need a 'decision' or an 'is_fraud' column")
    confirmed = pd.to_datetime(frame[time_col], errors="coerce", utc=True, format="mixed")
    if confirmed.isna().any():
        row = int(confirmed.isna().to_numpy().argmax())
        raise DataValidationError(f"{path}: column {time_col!r}, row {row + 1}: cannot parse "
                                  f"{frame[time_col].iloc[row]!r} as a timestamp")
    return pd.DataFrame({"transaction_id": frame["transaction_id"].astype(str).to_numpy(),
                         "confirmed_at": confirmed.dt.tz_localize(None).to_numpy(),
                         "is_fraud": fraud.to_numpy()})


def read_reviews(path) -> pd.DataFrame:
    """Current finance dispositions from a review store, in :func:`read_labels`' format."""
    from core.review_store import ReviewStore

    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: no such review store")
    current = ReviewStore(path).current("finance", "disposition")
    if current.empty:
        return pd.DataFrame({"transaction_id": pd.Series(dtype=str),
                             "confirmed_at": pd.Series(dtype="datetime64[us]"),
                             "is_fraud": pd.Series(dtype=bool)})
    current = current[current["decision"].isin(list(DECISIONS))]
    return pd.DataFrame({"transaction_id": current["item_id"].astype(str).to_numpy(),
                         "confirmed_at": current["created_at"].dt.tz_localize(None).to_numpy(),
                         "is_fraud": current["decision"].map(DECISIONS).astype(bool).to_numpy()})


def load_confirmations(labels=None, reviews=None) -> pd.DataFrame | None:
    """Labels file and review store merged; the latest confirmation per transaction wins."""
    parts = ([read_labels(labels)] if labels else []) + ([read_reviews(reviews)] if reviews else [])
    if not parts:
        return None
    merged = pd.concat(parts, ignore_index=True).sort_values("confirmed_at", kind="stable")
    return merged.groupby("transaction_id", sort=False).tail(1).reset_index(drop=True)


def register_labels(con, labels: pd.DataFrame | None, data) -> None:
    """Table ``confirmed_fraud(terminal_id, customer_id, c_us)`` inside DuckDB (needs ``base``)."""
    if labels is None:
        labels = pd.DataFrame({"transaction_id": pd.Series(dtype=str),
                               "confirmed_at": pd.Series(dtype="datetime64[us]"),
                               "is_fraud": pd.Series(dtype=bool)})
    missing = {"transaction_id", "confirmed_at", "is_fraud"} - set(labels.columns)
    if missing:
        raise DataValidationError(f"labels for {data} lack column(s) {', '.join(sorted(missing))}")
    frame = labels[["transaction_id", "confirmed_at", "is_fraud"]].copy()
    frame["transaction_id"] = frame["transaction_id"].astype(str)
    frame["confirmed_at"] = pd.to_datetime(frame["confirmed_at"]).astype("datetime64[us]")
    con.register("labels_input", frame)
    con.execute("CREATE OR REPLACE TEMP TABLE confirmed_fraud AS SELECT b.terminal_id, b.customer_id, "
                "greatest(epoch_us(l.confirmed_at), b.ts_us) AS c_us FROM labels_input l "
                "JOIN base b USING (transaction_id) WHERE l.is_fraud")
    con.unregister("labels_input")


def _scope_sql(scope: str, key: str, days: list[int], delay_us: int) -> str:
    sums = ", ".join(f"sum(w) OVER (PARTITION BY k ORDER BY t RANGE BETWEEN {d * 86_400 * US} "
                     f"PRECEDING AND 1 PRECEDING) AS fb_{scope}_{d}d" for d in days)
    cols = ", ".join(f"fb_{scope}_{d}d" for d in days)
    return (f"SELECT _row, {cols} FROM (SELECT _row, w, {sums} FROM ("
            f"SELECT {key} AS k, c_us AS t, 1 AS w, CAST(NULL AS BIGINT) AS _row FROM confirmed_fraud "
            f"UNION ALL SELECT {key}, ts_us - {delay_us}, 0, _row FROM base)) WHERE w = 0")


def feedback_sql(cfg) -> str:
    """SQL giving ``_row`` and ``fb_<scope>_<d>d`` counts (needs tables ``base``, ``confirmed_fraud``)."""
    delay_us = int(round(cfg.feedback_delay_days * 86_400 * US))
    keys = {"terminal": "terminal_id", "customer": "customer_id"}
    parts = [f"({_scope_sql(s, keys[s], days, delay_us)}) {s}_fb"
             for s, days in cfg.feedback_windows_days.items()]
    return "SELECT * FROM " + " JOIN ".join(parts[:1] + [f"{p} USING (_row)" for p in parts[1:]])


def labels_from_truth(transactions: pd.DataFrame, delay_s: float = 0.0) -> pd.DataFrame:
    """Benchmark helper: every fraud confirmed ``delay_s`` after it happened (the handbook's
    assumption that all frauds become known). Reads ``is_fraud``: evaluation code only."""
    fraud = transactions[transactions["is_fraud"] == 1]
    return pd.DataFrame({"transaction_id": fraud["transaction_id"].astype(str).to_numpy(),
                         "confirmed_at": (pd.to_datetime(fraud["timestamp"])
                                          + pd.to_timedelta(delay_s, unit="s")).to_numpy(),
                         "is_fraud": True})
