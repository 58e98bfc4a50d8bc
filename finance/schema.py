"""Transactions on disk: open Parquet/CSV in DuckDB, validate, name what is wrong.

Contract (docs/contracts.md): ``transaction_id``, ``timestamp``, ``customer_id``, ``terminal_id``,
``amount``; optional ``customer_x``, ``customer_y``, ``terminal_x``, ``terminal_y``
(coordinates, km) and ``channel`` (``card_present`` / ``card_not_present``) are used by the
features when present; ``is_fraud`` / ``fraud_scenario`` are evaluation-only.

Handling of bad input (each a one-line ``DataValidationError`` naming the file, column,
row, transaction id and value):

* missing required column, empty file, unparsable or missing timestamp, non-numeric,
  missing, infinite or negative amount, duplicate ``transaction_id``;
* a coordinate that is missing, NaN or infinite (it would silently become distance 0);
* a ``channel`` other than ``card_present`` / ``card_not_present`` (never a default);
* an ``is_fraud`` that is not 0/1 or true/false (an empty cell is an unknown label), a
  ``fraud_scenario`` that is not a whole number;
* anything else DuckDB cannot read in the file (malformed CSV, a bad Parquet file).

Time zones, one rule for CSV and Parquet: a naive time (no offset) is local wall-clock time
and is kept as it is; an aware time (a tz-aware Parquet column, or CSV text with an offset
such as ``+02:00`` / ``Z`` or a zone name) is converted to the wall clock of ``timezone``
(default UTC; a trained model saves its zone, so scoring reads files as training did).
A file mixing aware and naive times is refused.

* rows out of time order are accepted: every feature is computed in timestamp order
  (ties broken by ``transaction_id``), so the order of rows in the file does not matter.
* CSV files may use any common delimiter (``,`` ``;`` ``|`` tab); it is sniffed.
* column names may hold any character (quotes included): every name reaches SQL through
  :func:`finance.sql.ident`, every path through :func:`finance.sql.literal`.

Validation runs as DuckDB aggregate queries, so a file larger than memory is checked
without loading it.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from core.errors import DataValidationError

from .sql import ident, literal, reading

REQUIRED = ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount")
OPTIONAL_NUMERIC = ("customer_x", "customer_y", "terminal_x", "terminal_y")
LABEL_COLUMNS = ("is_fraud", "fraud_scenario")
CARD_NOT_PRESENT = "card_not_present"
CARD_PRESENT = "card_present"
CHANNELS = (CARD_PRESENT, CARD_NOT_PRESENT)
DEFAULT_TIMEZONE = "UTC"
# Text that ends in a UTC offset, Z/UTC/GMT or a zone name right after the time of day.
AWARE_TEXT = r"\d:\d\d(?::\d\d(?:\.\d*)?)?\s*(?:[zZ]|UTC|GMT|[+-]\d\d(?::?\d\d)?|[A-Za-z]+/[A-Za-z_/+-]+)$"


def configure(con, memory_limit: str | None = None, threads: int | None = None, temp_dir=None):
    """Bounded memory (spilling to ``temp_dir`` beyond it), threads, and a reader that keeps
    TRY_CAST's meaning: DuckDB's ``type_pushdown`` moves a cast into the CSV scanner,
    where a bad cell raises instead of becoming NULL."""
    from core.runtime import default_threads

    memory = memory_limit or os.environ.get("UNMASK_DUCKDB_MEMORY", "1GB")
    con.execute(f"SET memory_limit={literal(memory)}")
    con.execute(f"SET threads={int(threads or default_threads())}")
    con.execute("SET preserve_insertion_order=false")
    con.execute("SET enable_progress_bar=false")
    optimizers = {r[0] for r in con.execute("SELECT name FROM duckdb_optimizers()").fetchall()}
    if "type_pushdown" in optimizers:
        con.execute("SET disabled_optimizers='type_pushdown'")
    if temp_dir is not None:
        con.execute(f"SET temp_directory={literal(Path(temp_dir))}")
    return con


def connect(memory_limit: str | None = None, threads: int | None = None, temp_dir=None):
    """An in-memory DuckDB connection set up by :func:`configure`."""
    import duckdb

    return configure(duckdb.connect(), memory_limit, threads, temp_dir)


def check_timezone(zone: str, con=None) -> str:
    """``zone`` when DuckDB knows it (an IANA name such as ``Europe/Berlin``), else one line."""
    import duckdb

    con = con or duckdb.connect()
    known = con.execute("SELECT count(*) FROM pg_timezone_names() WHERE name = ?", [str(zone)]).fetchone()[0]
    if not known:
        raise DataValidationError(f"unknown time zone {str(zone)!r} (use an IANA name such as 'UTC' "
                                  "or 'Europe/Berlin')")
    return str(zone)


def sniff_delimiter(path: Path) -> str:
    """The CSV delimiter among ``, ; | \\t`` (csv.Sniffer on the first 64 KiB)."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        sample = f.read(65536)
    if not sample.strip():
        raise DataValidationError(f"{path}: empty file (no header, no transactions)")
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;|\t").delimiter
    except csv.Error:
        return ","


def _raw_relation(path: Path) -> str:
    """SQL for the raw file; CSV columns are read as text and cast with checks below."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq") or path.is_dir():
        return f"read_parquet({literal(path.as_posix() + ('/**/*.parquet' if path.is_dir() else ''))})"
    if suffix in (".csv", ".tsv", ".txt"):
        delim = sniff_delimiter(path)
        return f"read_csv({literal(path)}, delim={literal(delim)}, header=true, all_varchar=true)"
    raise DataValidationError(f"{path}: unsupported file type {suffix!r} (use .parquet or .csv)")


def _show(value, limit: int = 60) -> str:
    """A cell for a message: quoted, escaped (one line), cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class _Checks:
    """Row-level checks of one raw view, run together: one scan says which checks fail, then
    the first failing one (in the order added) finds its first row in file order."""

    def __init__(self, con, path: Path, raw: str):
        self.con, self.path, self.raw = con, path, raw
        self._checks = []   # (column, where, problem, value SQL, flag SQL)

    def require(self, column: str, where: str, problem, value_sql: str | None = None, flag: str | None = None):
        """Rows where ``where`` holds are wrong and ``problem(value)`` says why. ``flag`` (an
        aggregate) replaces ``bool_or(where)`` for a rule about the whole file."""
        self._checks.append((column, where, problem, value_sql or f"CAST({ident(column)} AS VARCHAR)",
                             flag or f"bool_or({where})"))

    def run(self) -> None:
        """Raise :class:`DataValidationError` for the first failing check, if any."""
        flags = self.con.execute("SELECT " + ", ".join(f"coalesce({c[4]}, false)" for c in self._checks)
                                 + f" FROM {self.raw}").fetchone()
        for (column, where, problem, value_sql, _), failed in zip(self._checks, flags):
            if failed:
                row, tx, value = self.first(where, value_sql, column)
                at = f" (transaction_id {_show(tx)})" if tx is not None and column != "transaction_id" else ""
                raise DataValidationError(f"{self.path}: column {column!r}, row {row}{at}: {problem(value)}")

    def first(self, where: str, value_sql: str, column: str):
        """``(row, transaction_id, value)`` of the first row where ``where`` holds.

        Only ``column`` and ``transaction_id`` are selected beside the row number, so a
        user's column called ``_file_row`` cannot shadow it.
        """
        names = ", ".join(ident(c) for c in dict.fromkeys(("transaction_id", column)))
        numbered = f"(SELECT {names}, row_number() OVER () AS _file_row FROM {self.raw})"
        return self.con.execute(f"SELECT _file_row, CAST(transaction_id AS VARCHAR), {value_sql} "
                                f"FROM {numbered} WHERE {where} ORDER BY _file_row LIMIT 1").fetchone()


def _timestamp(check: _Checks, typ: str, zone: str) -> str:
    """Checked SQL giving ``timestamp`` as a naive TIMESTAMP under the time-zone rule."""
    col = ident("timestamp")
    if typ.startswith("TIMESTAMP WITH TIME ZONE"):
        return f"timezone({literal(zone)}, {col})"
    if typ.startswith(("TIMESTAMP", "DATE")):
        return f"CAST({col} AS TIMESTAMP)"
    if typ != "VARCHAR":
        raise DataValidationError(f"{check.path}: column 'timestamp' has type {typ}; give date-times "
                                  "(ISO 8601 text or a Parquet timestamp)")
    aware = f"regexp_matches(trim({col}), {literal(AWARE_TEXT)})"
    expr = (f"CASE WHEN {aware} THEN timezone({literal(zone)}, TRY_CAST(trim({col}) AS TIMESTAMPTZ)) "
            f"ELSE TRY_CAST({col} AS TIMESTAMP) END")
    check.require("timestamp", f"({expr}) IS NULL",
                  lambda v: ("missing value" if v is None else f"cannot parse {_show(v)} as a timestamp")
                  + " (use ISO 8601, e.g. 2018-04-01 07:19:05)")
    check.require("timestamp", f"NOT {aware}",
                  lambda v: (f"{_show(v)} has no UTC offset but row {check.first(aware, '1', 'timestamp')[0]} "
                             "has one; give every time with an offset or none (naive times are local "
                             "wall-clock time)"),
                  flag=f"bool_or({aware}) AND bool_or(NOT {aware})")
    return expr


def _coordinate(check: _Checks, column: str) -> str:
    expr = f"TRY_CAST({ident(column)} AS DOUBLE)"
    check.require(column, f"{expr} IS NULL OR NOT isfinite({expr})",
                  lambda v: ("missing value" if v is None else f"{_show(v)} is not a finite number")
                  + " (coordinates are km; a missing one would silently become distance 0)")
    return expr


def _amount(check: _Checks) -> str:
    expr = f"TRY_CAST({ident('amount')} AS DOUBLE)"
    check.require("amount", f"{expr} IS NULL OR NOT isfinite({expr})",
                  lambda v: f"{_show(v)} is not a finite number")
    check.require("amount", f"{expr} < 0",
                  lambda v: f"negative amount {v} (amounts must be >= 0; refunds are not transactions)", expr)
    return expr


def _channel(check: _Checks) -> str:
    text = f"CAST({ident('channel')} AS VARCHAR)"

    def problem(value):
        seen = [r[0] for r in check.con.execute(f"SELECT DISTINCT {text} FROM {check.raw} "
                                                "ORDER BY 1 NULLS LAST LIMIT 11").fetchall()]
        listed = ", ".join("missing" if s is None else _show(s) for s in seen[:10])
        listed += ", ..." if len(seen) > 10 else ""
        return (("missing value" if value is None else f"unknown value {_show(value)}")
                + f" (values seen: {listed}; accepted: {', '.join(CHANNELS)})")

    check.require("channel", f"{text} IS NULL OR {text} NOT IN ({', '.join(map(literal, CHANNELS))})", problem)
    return text


def _label(check: _Checks, column: str) -> str:
    """``is_fraud``: 0/1, true/false (any case) or empty (unknown) -> INTEGER 0/1/NULL."""
    norm = f"lower(trim(CAST({ident(column)} AS VARCHAR)))"
    number = f"TRY_CAST({norm} AS DOUBLE)"
    expr = (f"CASE WHEN {norm} = 'true' OR {number} = 1 THEN 1 "
            f"WHEN {norm} = 'false' OR {number} = 0 THEN 0 END")
    check.require(column, f"{norm} <> '' AND ({expr}) IS NULL",
                  lambda v: f"{_show(v)} is not a label (use 0/1 or true/false; leave the cell empty "
                            "when unknown)")
    return f"CAST({expr} AS INTEGER)"


def _whole_number(check: _Checks, column: str) -> str:
    """``fraud_scenario``: a whole number or empty -> INTEGER / NULL."""
    text = f"trim(CAST({ident(column)} AS VARCHAR))"
    number = f"TRY_CAST({text} AS DOUBLE)"
    ok = f"(isfinite({number}) AND {number} = floor({number}) AND abs({number}) < 1e9)"
    check.require(column, f"{text} <> '' AND NOT coalesce({ok}, false)",
                  lambda v: f"{_show(v)} is not a whole number")
    return f"CASE WHEN {ok} THEN CAST({number} AS INTEGER) END"


def _check_unique_ids(con, path: Path, raw: str) -> None:
    dup = con.execute(f"SELECT CAST(transaction_id AS VARCHAR), count(*) FROM {raw} "
                      "GROUP BY 1 HAVING count(*) > 1 LIMIT 1").fetchone()
    if dup:
        raise DataValidationError(f"{path}: column 'transaction_id': duplicate id {_show(dup[0])} "
                                  f"({dup[1]} rows); ids must be unique")


def _selects(check: _Checks, types: dict, zone: str) -> list[str]:
    """The typed view's SELECT items; raises for the first bad value (checks run at the end)."""
    timestamp = _timestamp(check, types["timestamp"], zone)
    amount = _amount(check)
    for column in ("transaction_id", "customer_id", "terminal_id"):
        check.require(column, f"{ident(column)} IS NULL", lambda v: "missing value")
    selects = ["CAST(transaction_id AS VARCHAR) AS transaction_id", f"{timestamp} AS timestamp",
               "CAST(customer_id AS VARCHAR) AS customer_id", "CAST(terminal_id AS VARCHAR) AS terminal_id",
               f"{amount} AS amount"]
    selects += [f"{_coordinate(check, c)} AS {c}" for c in OPTIONAL_NUMERIC if c in types]
    if "channel" in types:
        selects.append(f"{_channel(check)} AS channel")
    if "is_fraud" in types:
        selects.append(f"{_label(check, 'is_fraud')} AS is_fraud")
    if "fraud_scenario" in types:
        selects.append(f"{_whole_number(check, 'fraud_scenario')} AS fraud_scenario")
    check.run()
    _check_unique_ids(check.con, check.path, check.raw)
    known = set(REQUIRED) | set(OPTIONAL_NUMERIC) | {"channel"} | set(LABEL_COLUMNS)
    return selects + [ident(c) for c in types if c not in known]



def open_transactions(con, path, view: str = "tx", timezone: str = DEFAULT_TIMEZONE) -> list[str]:
    """Create DuckDB view ``view`` over the transactions at ``path``, validated and typed.

    Columns of the view: ``transaction_id``, ``customer_id``, ``terminal_id`` (VARCHAR),
    ``timestamp`` (naive TIMESTAMP, see the time-zone rule above), ``amount`` (DOUBLE), the
    optional columns when present, and any further columns unchanged.

    Args:
        con: DuckDB connection (see :func:`connect`).
        path: Parquet file/directory or CSV file.
        view: name of the view to create.
        timezone: IANA zone that aware times are converted to.

    Returns:
        The view's column names.

    Raises:
        DataValidationError: naming the file, column, row and value at fault.
    """
    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"{path}: no such transactions file")
    if path.is_file() and path.stat().st_size == 0:
        raise DataValidationError(f"{path}: empty file (no header, no transactions)")
    zone = check_timezone(timezone, con)
    raw = ident(f"{view}__raw")
    with reading(path):
        con.execute(f"CREATE OR REPLACE TEMP VIEW {raw} AS SELECT * FROM {_raw_relation(path)}")
        types = {name: typ.upper() for name, typ, *_ in con.execute(f"DESCRIBE {raw}").fetchall()}
        missing = [c for c in REQUIRED if c not in types]
        if missing:
            raise DataValidationError(f"{path}: missing required column(s) {', '.join(missing)} "
                                      f"(found: {', '.join(map(repr, types)) or 'none'})")
        if con.execute(f"SELECT count(*) FROM {raw}").fetchone()[0] == 0:
            raise DataValidationError(f"{path}: no transactions (the file has a header but no rows)")
        selects = _selects(_Checks(con, path, raw), types, zone)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {ident(view)} AS SELECT {', '.join(selects)} FROM {raw}")
        return [d[0] for d in con.execute(f"DESCRIBE {ident(view)}").fetchall()]


def read_transactions(path, timezone: str = DEFAULT_TIMEZONE) -> "pd.DataFrame":  # noqa: F821
    """Validated transactions as a pandas DataFrame, sorted by ``timestamp`` (in memory)."""
    con = connect()
    try:
        open_transactions(con, path, timezone=timezone)
        with reading(path):
            return con.execute("SELECT * FROM tx ORDER BY timestamp, transaction_id").df()
    finally:
        con.close()


def has_columns(columns, names) -> bool:
    return all(n in columns for n in names)
