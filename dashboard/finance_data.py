"""The finance alert queue: server-side filtering, sorting and paging of ``scores.parquet``.

Queries run in DuckDB straight over the Parquet files, reading only the columns and rows
a page needs, so a run of millions of transactions opens as fast as a small one. The
layout of the files is docs/runs.md's.

Example:
    >>> query = QueueQuery(alerts_only=True, sort="amount", descending=True)
    >>> page, total = queue_page(run_dir / "scores.parquet", query)     # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DataValidationError
from core.runtime import default_threads
from dashboard import finance_index, run_stats
from finance.features import MODEL_CONFIG, saved_features
from finance.schema import DEFAULT_TIMEZONE, open_transactions
from finance.sql import literal

QUEUE_COLUMNS = ("rank", "transaction_id", "timestamp", "customer_id", "terminal_id", "amount",
                 "score", "p_value", "is_alert", "warming_up", "reason_1_text")
SORTS = {"rank": "rank", "score": "score", "p-value": "p_value", "amount": "amount",
         "time": "timestamp"}


@dataclass(frozen=True)
class QueueQuery:
    """Filters, sort order and page of the alert queue.

    Args:
        alerts_only: only rows with ``is_alert``.
        start, end: inclusive date range of ``timestamp`` (None = open).
        min_amount, max_amount: amount range (None = open).
        min_score: lowest score shown. max_p_value: highest p-value shown.
        sort: a key of ``SORTS``; ``descending`` flips it (rank ascending = most anomalous first).
        page: 1-based page number. page_size: rows per page.
        exclude_ids: transactions left out (the reviewed ones, for "unreviewed only").
    """

    alerts_only: bool = True
    start: dt.date | None = None
    end: dt.date | None = None
    min_amount: float | None = None
    max_amount: float | None = None
    min_score: float | None = None
    max_p_value: float | None = None
    sort: str = "rank"
    descending: bool = False
    page: int = 1
    page_size: int = 50
    exclude_ids: tuple[str, ...] = ()


_DATABASE = None
_DATABASE_LOCK = threading.Lock()


def _connect():
    """A cursor on one in-process DuckDB database (opening a database costs ~50 ms; a
    cursor is cheap and safe to use from the thread that asked for it)."""
    global _DATABASE
    with _DATABASE_LOCK:
        if _DATABASE is None:
            import duckdb  # lazy: the finance extra

            database = duckdb.connect()
            database.execute(f"SET threads={default_threads()}")
            database.execute("SET TimeZone='UTC'")  # naive and tz-aware timestamps compare in UTC
            _DATABASE = database
        return _DATABASE.cursor()


def open_database() -> None:
    """Open the in-process database now (the server does, before its first visitor)."""
    _connect().close()


def _source(path) -> str:
    """SQL table function reading a Parquet (or CSV) file."""
    path = Path(path)
    quoted = literal(path)
    if path.suffix.lower() in (".csv", ".tsv", ".txt"):
        return f"read_csv({quoted}, header=true)"
    return f"read_parquet({quoted})"


def _check(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataValidationError(f"{path}: file not found (is the run complete?)")
    return path


def columns_of(path) -> list[str]:
    """Column names of a Parquet file (reads only the footer)."""
    import pyarrow.parquet as pq

    return list(pq.read_schema(_check(path)).names)


def _where(query: QueueQuery) -> tuple[str, list]:
    clauses, args = [], []
    if query.alerts_only:
        clauses.append("is_alert")
    if query.start is not None:
        clauses.append("CAST(timestamp AS DATE) >= ?")
        args.append(query.start)
    if query.end is not None:
        clauses.append("CAST(timestamp AS DATE) <= ?")
        args.append(query.end)
    bounds = (("amount", ">=", query.min_amount), ("amount", "<=", query.max_amount),
              ("score", ">=", query.min_score), ("p_value", "<=", query.max_p_value))
    for column, op, value in bounds:
        if value is not None:
            clauses.append(f"{column} {op} ?")
            args.append(float(value))
    if query.exclude_ids:
        clauses.append("NOT list_contains(?, transaction_id)")
        args.append(list(query.exclude_ids))
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


def queue_bounds(scores_path) -> dict:
    """Ranges for the filter widgets: rows, alerts, first/last date, amount and score range."""
    con = _connect()
    try:
        row = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE is_alert), min(CAST(timestamp AS DATE)),"
            " max(CAST(timestamp AS DATE)), min(amount), max(amount), min(score), max(score)"
            f" FROM {_source(_check(scores_path))}").fetchone()
    finally:
        con.close()
    keys = ("n_rows", "n_alerts", "first_date", "last_date", "min_amount", "max_amount",
            "min_score", "max_score")
    return dict(zip(keys, row))


def run_bounds(scores_path) -> dict:
    """:func:`queue_bounds`, computed once per run into its ``cache/`` folder (they read the
    whole file: 0.4 s at 10 M rows, on every fresh server's first page otherwise)."""
    def compute():
        bounds = queue_bounds(scores_path)
        return {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in bounds.items()}

    stored = run_stats.cached(_check(scores_path), "bounds", compute)
    return {k: dt.date.fromisoformat(v) if k.endswith("_date") and v is not None else v
            for k, v in stored.items()}


def queue_page(scores_path, query: QueueQuery = QueueQuery(),
               columns: tuple[str, ...] | None = None) -> tuple[pd.DataFrame, int]:
    """One page of the queue and the number of rows matching the filters.

    Args:
        scores_path: a run's ``scores.parquet``.
        query: filters, sort and page.
        columns: columns to return (default: ``QUEUE_COLUMNS`` that the file has).

    Returns:
        ``(page, total)``; ``page`` is at most ``query.page_size`` rows in queue order.
    """
    if query.sort not in SORTS:
        raise DataValidationError(f"unknown sort {query.sort!r}; choose one of {sorted(SORTS)}")
    if query.page < 1 or query.page_size < 1:
        raise DataValidationError(f"page {query.page} / page size {query.page_size} must be >= 1")
    available = columns_of(scores_path)
    wanted = [c for c in (columns or QUEUE_COLUMNS) if c in available]
    where, args = _where(query)
    order = f"{SORTS[query.sort]} {'DESC' if query.descending else 'ASC'} NULLS LAST"
    if query.sort != "rank":
        order += ", rank ASC"  # ties in a stable, meaningful order
    select = ", ".join(f'"{c}"' for c in wanted)
    source = _source(scores_path)
    con = _connect()
    try:
        total = con.execute(f"SELECT count(*) FROM {source}{where}", args).fetchone()[0]
        page = con.execute(
            f"SELECT {select} FROM {source}{where} ORDER BY {order} LIMIT ? OFFSET ?",
            args + [query.page_size, (query.page - 1) * query.page_size]).df()
    finally:
        con.close()
    return page, int(total)


def transaction(scores_path, transaction_id: str, rank: int | None = None) -> pd.Series:
    """Every column of one scored transaction.

    Args:
        scores_path: the run's ``scores.parquet``.
        transaction_id: which transaction.
        rank: its rank when known (the queue has it): the file is sorted by rank, so the
            Parquet statistics let DuckDB read one row group instead of the whole file.
    """
    where, args = "transaction_id = ?", [str(transaction_id)]
    if rank is not None:
        where, args = where + " AND rank = ?", args + [int(rank)]
    con = _connect()
    try:
        frame = con.execute(f"SELECT * FROM {_source(_check(scores_path))} WHERE {where}",
                            args).df()
    finally:
        con.close()
    if frame.empty:
        raise DataValidationError(f"{scores_path}: no transaction {transaction_id!r}")
    return frame.iloc[0]


def locate(scores_path, transaction_id: str) -> tuple[str, int]:
    """``(transaction_id, rank)`` of a transaction of the run (a link names it by id only).

    Raises:
        DataValidationError: the run has no such transaction.
    """
    con = _connect()
    try:
        found = con.execute(f"SELECT rank FROM {_source(_check(scores_path))}"
                            " WHERE transaction_id = ? LIMIT 1", [str(transaction_id)]).fetchone()
    finally:
        con.close()
    if found is None:
        raise DataValidationError(f"The link's transaction {transaction_id!r} is not in this run.")
    return str(transaction_id), int(found[0])


def reasons(row: pd.Series) -> pd.DataFrame:
    """The row's reason codes (``reason_k_*`` columns) as a small table, nulls dropped."""
    out = []
    for k in (1, 2, 3):
        feature = row.get(f"reason_{k}_feature")
        if feature is None or pd.isna(feature):
            continue
        out.append({"reason": row.get(f"reason_{k}_text") or feature, "feature": feature,
                    "shap": row.get(f"reason_{k}_shap"), "value": row.get(f"reason_{k}_value"),
                    "usual": row.get(f"reason_{k}_usual")})
    return pd.DataFrame(out, columns=["reason", "feature", "shap", "value", "usual"])


def explanation(explanations_path, transaction_id: str) -> pd.DataFrame:
    """SHAP values of one transaction, largest absolute value first (empty if none)."""
    path = Path(explanations_path) if explanations_path else None
    if path is None or not path.is_file():
        return pd.DataFrame(columns=["feature", "shap_value", "value", "usual_value"])
    con = _connect()
    try:
        frame = con.execute(
            "SELECT feature, shap_value, value, usual_value FROM "
            f"{_source(path)} WHERE transaction_id = ? ORDER BY abs(shap_value) DESC",
            [str(transaction_id)]).df()
    finally:
        con.close()
    return frame


# --- the customer history: one card's transactions, read through an index of the run ---

HISTORY_COLUMNS = "transaction_id, timestamp, amount, terminal_id, score, is_alert"


def _saved_features(model_dir):
    """The run's model's column mapping and time zone (None: unmask's own names)."""
    if model_dir and (Path(model_dir) / MODEL_CONFIG).is_file():
        return saved_features(model_dir)
    return None


def _open_input(con, transactions_path, model_dir, view: str) -> None:
    """The run's input as a typed DuckDB view, read as scoring read it (the model's mapping)."""
    features = _saved_features(model_dir)
    # The file was validated when it was scored: the typed view without the full scan.
    open_transactions(con, _check(transactions_path), view=view, validate=False,
                      timezone=features.timezone if features else DEFAULT_TIMEZONE,
                      mapping=features.columns if features else None)


def history_index_path(transactions_path, scores_path, model_dir=None) -> Path:
    """Folder of the run's history index (:mod:`dashboard.finance_index`), keyed by the input,
    the scores and the model's configuration (its column mapping and time zone)."""
    model = Path(model_dir) / MODEL_CONFIG if model_dir else None
    return finance_index.index_path(scores_path, "history", [transactions_path, scores_path, model])


def build_history_index(transactions_path, scores_path, model_dir=None) -> Path:
    """Write the run's history index (once per run) and return its folder.

    The input's transactions, typed through the model's mapping, each with its score and
    alert flag from the run, in buckets by card, sorted by card and time: a card's window
    is then a read of one small file, however large the run.
    """
    path = history_index_path(transactions_path, scores_path, model_dir)
    if path.is_dir():
        return path
    con = _connect()
    try:
        _open_input(con, transactions_path, model_dir, view="index_tx")
        rows = con.execute("SELECT count(*) FROM index_tx").fetchone()[0]
        query = ("SELECT h.transaction_id, h.timestamp, h.amount, h.terminal_id, h.customer_id,"
                 " s.score, s.is_alert FROM index_tx h LEFT JOIN (SELECT CAST(transaction_id AS"
                 " VARCHAR) AS transaction_id, CAST(customer_id AS VARCHAR) AS customer_id, score,"
                 f" is_alert FROM {_source(_check(scores_path))}) s"
                 " ON h.transaction_id = s.transaction_id AND h.customer_id = s.customer_id")
        return finance_index.write_buckets(con, path, query, [], "customer_id", rows,
                                           order="customer_id, timestamp")
    finally:
        con.close()


def _history_from_index(index: Path, customer_id: str, since, until, limit: int) -> pd.DataFrame:
    con = _connect()
    try:
        source = finance_index.bucket_sources(con, index, [customer_id])
        history = con.execute(
            f"SELECT {HISTORY_COLUMNS} FROM {source} WHERE customer_id = ?"
            " AND timestamp BETWEEN ? AND ? ORDER BY timestamp DESC LIMIT ?",
            [customer_id, since, until, limit]).df()
    finally:
        con.close()
    if history["is_alert"].isna().any():  # unscored rows (refunds): NaN, as a pandas merge gives
        history["is_alert"] = history["is_alert"].astype(object).where(history["is_alert"].notna(), np.nan)
    return history


def _history_from_input(transactions_path, scores_path, model_dir, customer_id: str,
                        since, until, limit: int) -> pd.DataFrame:
    """The same rows by scanning the input and the scores (time grows with the run)."""
    con = _connect()
    try:
        _open_input(con, transactions_path, model_dir, view="history_tx")
        history = con.execute(
            "SELECT transaction_id, timestamp, amount, terminal_id FROM history_tx"
            " WHERE customer_id = ? AND timestamp BETWEEN ? AND ?"
            " ORDER BY timestamp DESC LIMIT ?", [customer_id, since, until, limit]).df()
        scored = con.execute(
            f"SELECT transaction_id, score, is_alert FROM {_source(_check(scores_path))}"
            " WHERE CAST(customer_id AS VARCHAR) = ? AND CAST(timestamp AS TIMESTAMP) BETWEEN ? AND ?",
            [customer_id, since, until]).df()
    finally:
        con.close()
    return history.merge(scored, on="transaction_id", how="left")


def customer_history(transactions_path, scores_path, customer_id: str, until,
                     days: int = 30, limit: int = 2000, model_dir=None,
                     use_index: bool = True) -> pd.DataFrame:
    """The customer's transactions in the ``days`` before ``until`` (inclusive), oldest first,
    with their score and alert flag where the run scored them.

    Args:
        transactions_path: the run's input (manifest ``inputs[0]``), Parquet or CSV, in the
            bank's own columns and codings.
        scores_path: the run's ``scores.parquet``.
        customer_id: whose history.
        until: timestamp of the transaction under review (in the model's time zone, as in
            the scores).
        days: length of the window.
        limit: at most this many (the latest) transactions.
        model_dir: the run's model (manifest ``model``): the input is read through its saved
            column mapping and time zone, as scoring read it. Without it (or once the model
            is gone) the file is read by unmask's own names.
        use_index: read the run's history index (:func:`build_history_index`) when it is
            built, and start building it otherwise; False always scans the input.
    """
    until = pd.Timestamp(until)
    if until.tzinfo is not None:
        until = until.tz_convert("UTC").tz_localize(None)
    since = until - pd.Timedelta(days=days)
    window = (str(customer_id), since.to_pydatetime(), until.to_pydatetime(), int(limit))
    index = history_index_path(transactions_path, scores_path, model_dir) if use_index else None
    if index is not None and index.is_dir():
        history = _history_from_index(index, *window)
    else:
        history = _history_from_input(transactions_path, scores_path, model_dir, *window)
        if use_index:  # after the scan: a bad input raises its own error first
            finance_index.build_in_background(index, lambda: build_history_index(
                transactions_path, scores_path, model_dir))
    return history.sort_values(["timestamp", "transaction_id"]).reset_index(drop=True)


def alert_flags_index_path(scores_path) -> Path:
    """Folder of the run's index of alert flags by transaction id (keyed by the scores)."""
    return finance_index.index_path(scores_path, "alerts", [scores_path])


def build_alert_flags_index(scores_path) -> Path:
    """Write the run's ``(transaction_id, is_alert)`` in buckets by id; return its folder."""
    path = alert_flags_index_path(scores_path)
    if path.is_dir():
        return path
    source = _source(_check(scores_path))
    con = _connect()
    try:
        rows = con.execute(f"SELECT count(*) FROM {source}").fetchone()[0]
        query = f"SELECT CAST(transaction_id AS VARCHAR) AS transaction_id, is_alert FROM {source}"
        return finance_index.write_buckets(con, path, query, [], "transaction_id", rows)
    finally:
        con.close()


def alert_flags(scores_path, transaction_ids, use_index: bool = True) -> pd.Series:
    """``is_alert`` of the given transactions in this run (index = transaction id; ids not in
    the run are left out). Read through the run's id index once built (the page asks on
    every rerun, for every reviewed transaction); until then the scores are scanned and the
    index is built in the background."""
    ids = [str(t) for t in transaction_ids]
    if not ids:
        return pd.Series(dtype=bool)
    index = alert_flags_index_path(scores_path) if use_index else None
    con = _connect()
    try:
        if index is not None and index.is_dir():
            source = finance_index.bucket_sources(con, index, ids)
        else:
            source = _source(_check(scores_path))
        con.register("wanted", pd.DataFrame({"transaction_id": ids}))
        frame = con.execute(
            f"SELECT s.transaction_id, s.is_alert FROM {source} s"
            " JOIN wanted w ON CAST(s.transaction_id AS VARCHAR) = w.transaction_id").df()
    finally:
        con.close()
    if index is not None and not index.is_dir():
        finance_index.build_in_background(index, lambda: build_alert_flags_index(scores_path))
    return frame.set_index("transaction_id")["is_alert"].astype(bool)


def disposition_kpis(dispositions: pd.DataFrame, is_alert: pd.Series, n_alerts: int) -> dict:
    """Precision of the alerts reviewed so far and review progress.

    Args:
        dispositions: current dispositions (``item_id``, ``decision``), one row per item.
        is_alert: ``alert_flags`` of those items in this run.
        n_alerts: the run's number of alerts.

    Returns:
        ``reviewed`` (all dispositions on this run's transactions), ``reviewed_alerts``,
        ``fraud``, ``legitimate``, ``needs_information`` (among alerts), ``precision``
        (fraud / (fraud + legitimate) among alerts; NaN before any) and ``progress``
        (reviewed alerts / alerts).
    """
    if dispositions.empty:
        decided = pd.DataFrame(columns=["item_id", "decision", "alert"])
    else:
        decided = dispositions[["item_id", "decision"]].copy()
        decided["alert"] = decided["item_id"].map(is_alert)
        decided = decided[decided["alert"].notna()]
    alerts = decided[decided["alert"].astype(bool)]
    counts = alerts["decision"].value_counts()
    fraud, legit = int(counts.get("fraud", 0)), int(counts.get("legitimate", 0))
    return {"reviewed": len(decided), "reviewed_alerts": len(alerts), "fraud": fraud,
            "legitimate": legit, "needs_information": int(counts.get("needs_information", 0)),
            "precision": fraud / (fraud + legit) if fraud + legit else float("nan"),
            "progress": len(alerts) / n_alerts if n_alerts else float("nan")}


def first_unreviewed_alert(scores_path, query: QueueQuery,
                           reviewed_ids) -> tuple[str, int] | None:
    """``(transaction_id, rank)`` of the first alert of the queue (``query``'s filters and
    order) without a disposition; None when every such alert has one."""
    unreviewed = dataclasses.replace(query, alerts_only=True, page=1, page_size=1,
                                     exclude_ids=tuple(sorted(map(str, reviewed_ids))))
    page, _ = queue_page(scores_path, unreviewed, columns=("transaction_id", "rank"))
    if page.empty:
        return None
    return str(page["transaction_id"].iloc[0]), int(page["rank"].iloc[0])


def with_dispositions(page: pd.DataFrame, dispositions: pd.DataFrame) -> pd.DataFrame:
    """``page`` with a ``disposition`` column (current decision or empty)."""
    out = page.copy()
    current = (dispositions.set_index("item_id")["decision"] if not dispositions.empty
               else pd.Series(dtype=object))
    decision = out["transaction_id"].astype(str).map(current).astype("string").fillna("")
    out.insert(1, "disposition", decision)
    return out
