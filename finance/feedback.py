"""The feedback loop: analysts' confirmed dispositions become delayed risk features.

Confirmations come from a labels file (CSV/Parquet: ``transaction_id``; ``decision`` in
{fraud, legitimate, needs_information} or ``is_fraud`` 0/1; ``confirmed_at`` or ``timestamp``
= when the disposition was confirmed; times follow the transactions' time-zone rule, see
:mod:`finance.schema`) and/or the workspace review store
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

import numpy as np
import pandas as pd

from core.errors import DataValidationError
from core.review_store import ReviewStore

from .schema import AWARE_TEXT, DEFAULT_TIMEZONE, sniff_delimiter
from .spec import SPEC

US = 1_000_000
# What each review decision (the spec's vocabulary) says about fraud; others carry no label.
DECISIONS = {"fraud": True, "legitimate": False}
LABEL_TEXT = {"1": True, "1.0": True, "true": True, "0": False, "0.0": False, "false": False}


def _read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataValidationError(f"{path}: no such labels file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path).reset_index(drop=True)   # row numbers are file rows
    if path.stat().st_size == 0:
        raise DataValidationError(f"{path}: empty labels file")
    return pd.read_csv(path, sep=sniff_delimiter(path), dtype={"transaction_id": str})


def _first_bad(path, column: str, bad, values: pd.Series, problem: str):
    """Raise for the first ``bad`` position (``problem`` formats ``{value}``); the row is the
    file's (``values`` keeps the file's row index through filtering)."""
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        pos = int(bad.argmax())
        raise DataValidationError(f"{path}: column {column!r}, row {values.index[pos] + 1}: "
                                  + problem.format(value=repr(values.iloc[pos])))


def _labels(path, values: pd.Series) -> pd.Series:
    """``is_fraud`` of a labels file: 0/1 or true/false (any case) -> bool."""
    fraud = values.astype("string").str.strip().str.lower().map(LABEL_TEXT)
    _first_bad(path, "is_fraud", fraud.isna(), values, "{value} is not 0/1 or true/false")
    return fraud.astype(bool)


def _times(path, column: str, values: pd.Series, zone: str) -> pd.Series:
    """Naive wall-clock times under the transactions' rule: naive kept, aware -> ``zone``."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert(zone).dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(values):
        return values
    text = values.astype("string").str.strip()
    aware = text.str.contains(AWARE_TEXT, regex=True, na=False).to_numpy()
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    if aware.any():
        instants = pd.to_datetime(text[aware], errors="coerce", utc=True, format="mixed")
        parsed[aware] = instants.dt.tz_convert(zone).dt.tz_localize(None).astype("datetime64[us]")
    if not aware.all():
        parsed[~aware] = pd.to_datetime(text[~aware], errors="coerce", format="mixed").astype("datetime64[us]")
    _first_bad(path, column, parsed.isna(), values, "cannot parse {value} as a timestamp")
    _first_bad(path, column, ~aware & aware.any(), values,
               "{value} has no UTC offset but other rows have one; give every time with an offset or none")
    return parsed


def read_labels(path, timezone: str = DEFAULT_TIMEZONE) -> pd.DataFrame:
    """Read a labels file into ``transaction_id`` (str), ``confirmed_at`` (naive wall clock
    in ``timezone`` for aware times, see :mod:`finance.schema`), ``is_fraud`` (bool)."""
    path = Path(path)
    frame = _read_table(path)
    if "transaction_id" not in frame:
        raise DataValidationError(f"{path}: labels need a 'transaction_id' column (found: {', '.join(frame.columns)})")
    time_col = next((c for c in ("confirmed_at", "timestamp") if c in frame), None)
    if time_col is None:
        raise DataValidationError(f"{path}: labels need a 'confirmed_at' (or 'timestamp') column: "
                                  "when the disposition was confirmed")
    if "decision" in frame:
        bad = ~frame["decision"].isin(SPEC.decisions)
        if bad.any():
            raise DataValidationError(f"{path}: column 'decision', row {int(bad.idxmax()) + 1}: "
                                      f"{frame['decision'][bad].iloc[0]!r} is not "
                                      f"{', '.join(SPEC.decisions[:-1])} or {SPEC.decisions[-1]}")
        frame = frame[frame["decision"].isin(list(DECISIONS))]
        fraud = frame["decision"].map(DECISIONS).astype(bool)
    elif "is_fraud" in frame:
        fraud = _labels(path, frame["is_fraud"])
    else:
        raise DataValidationError(f"{path}: labels need a 'decision' or an 'is_fraud' column")
    confirmed = _times(path, time_col, frame[time_col], timezone)
    return pd.DataFrame({"transaction_id": frame["transaction_id"].astype(str).to_numpy(),
                         "confirmed_at": confirmed.to_numpy(),
                         "is_fraud": fraud.to_numpy()})


def read_reviews(path, timezone: str = DEFAULT_TIMEZONE) -> pd.DataFrame:
    """Current finance dispositions from a review store, in :func:`read_labels`' format
    (the store's UTC times as wall clock in ``timezone``)."""

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
                         "confirmed_at": current["created_at"].dt.tz_convert(timezone).dt.tz_localize(None).to_numpy(),
                         "is_fraud": current["decision"].map(DECISIONS).astype(bool).to_numpy()})


def load_confirmations(labels=None, reviews=None, timezone: str = DEFAULT_TIMEZONE) -> pd.DataFrame | None:
    """Labels file and review store merged; the latest confirmation per transaction wins.
    Times are wall clock in ``timezone`` (the model's zone), as the transactions' are."""
    parts = (([read_labels(labels, timezone)] if labels else [])
             + ([read_reviews(reviews, timezone)] if reviews else []))
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
