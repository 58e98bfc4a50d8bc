"""CSV exports: the finance queue as filtered on screen, and the review history.

Reviewer names and notes are user-written, and so are ids from a customer's data: a cell
such as ``=HYPERLINK("http://evil", "click")`` runs as a formula when the file is opened
in a spreadsheet. Text cells starting with ``= + - @``, tab or carriage return get a
leading ``'`` and every text cell is quoted (OWASP, "CSV Injection"); numbers stay numbers.

Example:
    >>> escape_formula("=1+2"), escape_formula("card used abroad")
    ("'=1+2", 'card used abroad')
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pandas as pd

from core.review_store import ReviewStore

from . import finance_data

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
HISTORY_COLUMNS = ("id", "created_at", "reviewer", "vertical", "kind", "run_id", "item_id",
                   "decision", "note")


def escape_formula(value):
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def to_csv(frame: pd.DataFrame) -> bytes:
    """``frame`` as UTF-8 CSV: text cells formula-escaped and quoted, numbers as numbers."""
    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):    # ISO 8601, to the microsecond
            out[column] = out[column].map(lambda t: "" if pd.isna(t) else t.isoformat())
        elif not pd.api.types.is_numeric_dtype(out[column]):
            out[column] = out[column].map(escape_formula)
    return out.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC,
                      lineterminator="\n").encode("utf-8")


def queue_csv(scores_path, query: finance_data.QueueQuery,
              dispositions: pd.DataFrame) -> bytes:
    """Every row of the queue that ``query`` filters (all pages), in its sort order, with the
    current disposition -- what the analyst sees, as one file."""
    _, total = finance_data.queue_page(scores_path, dataclasses.replace(query, page=1, page_size=1))
    rows, _ = finance_data.queue_page(
        scores_path, dataclasses.replace(query, page=1, page_size=max(1, total)))
    return to_csv(finance_data.with_dispositions(rows, dispositions))


def review_history(store_path) -> pd.DataFrame:
    """Every review event of every vertical (who, what, when), oldest first."""
    if not Path(store_path).is_file():
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    return ReviewStore(store_path).history()[list(HISTORY_COLUMNS)]


def review_history_csv(store_path) -> bytes:
    """:func:`review_history` as CSV (times ISO 8601 in UTC)."""
    return to_csv(review_history(store_path))
