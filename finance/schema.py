"""Transactions on disk: open Parquet/CSV in DuckDB, validate, name what is wrong.

Contract (docs/contracts.md): ``transaction_id``, ``timestamp``, ``customer_id``, ``terminal_id``,
``amount``; optional ``customer_x``, ``customer_y``, ``terminal_x``, ``terminal_y``
(coordinates, km) and ``channel`` (``card_present`` / ``card_not_present``) are used by the
features when present; ``is_fraud`` / ``fraud_scenario`` are evaluation-only.

Handling of bad input:

* missing required column, empty file, unparsable or missing timestamp, non-numeric,
  missing, infinite or negative amount, duplicate ``transaction_id``: ``DataValidationError``
  naming the file, column, row and value.
* rows out of time order are accepted: every feature is computed in timestamp order
  (ties broken by ``transaction_id``), so the order of rows in the file does not matter.
* CSV files may use any common delimiter (``,`` ``;`` ``|`` tab); it is sniffed.

Validation runs as DuckDB aggregate queries, so a file larger than memory is checked
without loading it.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from core.errors import DataValidationError

REQUIRED = ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount")
OPTIONAL_NUMERIC = ("customer_x", "customer_y", "terminal_x", "terminal_y")
LABEL_COLUMNS = ("is_fraud", "fraud_scenario")
CARD_NOT_PRESENT = "card_not_present"
CARD_PRESENT = "card_present"


def connect(memory_limit: str | None = None, threads: int | None = None, temp_dir=None):
    """A DuckDB connection with bounded memory (spills to ``temp_dir`` beyond it)."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit='{memory_limit or os.environ.get('UNMASK_DUCKDB_MEMORY', '1GB')}'")
    from core.runtime import default_threads

    con.execute(f"SET threads={int(threads or default_threads())}")
    con.execute("SET preserve_insertion_order=false")
    con.execute("SET enable_progress_bar=false")
    if temp_dir is not None:
        con.execute(f"SET temp_directory='{Path(temp_dir).as_posix()}'")
    return con


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


def _sql_str(value) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _raw_relation(path: Path) -> str:
    """SQL for the raw file; CSV columns are read as text and cast with checks below."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq") or path.is_dir():
        return f"read_parquet({_sql_str(path.as_posix() + ('/**/*.parquet' if path.is_dir() else ''))})"
    if suffix in (".csv", ".tsv", ".txt"):
        delim = sniff_delimiter(path)
        return (f"read_csv({_sql_str(path.as_posix())}, delim={_sql_str(delim)}, header=true, "
                "all_varchar=true)")
    raise DataValidationError(f"{path}: unsupported file type {suffix!r} (use .parquet or .csv)")


def _first(con, sql: str):
    return con.execute(sql).fetchone()


def open_transactions(con, path, view: str = "tx") -> list[str]:
    """Create DuckDB view ``view`` over the transactions at ``path``, validated and typed.

    Columns of the view: ``transaction_id``, ``customer_id``, ``terminal_id`` (VARCHAR),
    ``timestamp`` (TIMESTAMP), ``amount`` (DOUBLE), the optional columns when present, and
    any further columns unchanged.

    Args:
        con: DuckDB connection (see :func:`connect`).
        path: Parquet file/directory or CSV file.
        view: name of the view to create.

    Returns:
        The view's column names.

    Raises:
        DataValidationError: naming the file, column, row and value at fault.
    """
    import duckdb

    path = Path(path)
    if not path.exists():
        raise DataValidationError(f"{path}: no such transactions file")
    if path.is_file() and path.stat().st_size == 0:
        raise DataValidationError(f"{path}: empty file (no header, no transactions)")
    raw = f"{view}__raw"
    try:
        con.execute(f"CREATE OR REPLACE TEMP VIEW {raw} AS SELECT * FROM {_raw_relation(path)}")
        described = con.execute(f"DESCRIBE {raw}").fetchall()
    except duckdb.Error as err:
        raise DataValidationError(f"{path}: cannot read transactions ({str(err).splitlines()[0]})") from None
    types = {name: typ.upper() for name, typ, *_ in described}
    missing = [c for c in REQUIRED if c not in types]
    if missing:
        raise DataValidationError(f"{path}: missing required column(s) {', '.join(missing)} "
                                  f"(found: {', '.join(types) or 'none'})")
    n_rows = _first(con, f"SELECT count(*) FROM {raw}")[0]
    if n_rows == 0:
        raise DataValidationError(f"{path}: no transactions (the file has a header but no rows)")
    # Row numbers for messages (1-based data rows, file order).
    numbered = f"(SELECT *, row_number() OVER () AS _file_row FROM {raw})"

    ts_expr = "timestamp" if types["timestamp"].startswith("TIMESTAMP") else "TRY_CAST(timestamp AS TIMESTAMP)"
    if types["timestamp"].startswith("TIMESTAMP WITH TIME ZONE"):
        ts_expr = "CAST(timezone('UTC', timestamp) AS TIMESTAMP)"
    bad = _first(con, f"SELECT _file_row, CAST(timestamp AS VARCHAR) FROM {numbered} "
                      f"WHERE ({ts_expr}) IS NULL LIMIT 1")
    if bad:
        raise DataValidationError(f"{path}: column 'timestamp', row {bad[0]}: cannot parse "
                                  f"{bad[1]!r} as a timestamp (use ISO 8601, e.g. 2018-04-01 07:19:05)")
    amount_expr = "TRY_CAST(amount AS DOUBLE)"
    bad = _first(con, f"SELECT _file_row, CAST(amount AS VARCHAR) FROM {numbered} "
                      f"WHERE {amount_expr} IS NULL OR isnan({amount_expr}) OR isinf({amount_expr}) LIMIT 1")
    if bad:
        raise DataValidationError(f"{path}: column 'amount', row {bad[0]}: {bad[1]!r} is not a "
                                  "finite number")
    bad = _first(con, f"SELECT _file_row, {amount_expr} FROM {numbered} WHERE {amount_expr} < 0 LIMIT 1")
    if bad:
        raise DataValidationError(f"{path}: column 'amount', row {bad[0]}: negative amount "
                                  f"{bad[1]} (amounts must be >= 0; refunds are not transactions)")
    for column in ("transaction_id", "customer_id", "terminal_id"):
        bad = _first(con, f"SELECT _file_row FROM {numbered} WHERE {column} IS NULL LIMIT 1")
        if bad:
            raise DataValidationError(f"{path}: column {column!r}, row {bad[0]}: missing value")
    dup = _first(con, f"SELECT CAST(transaction_id AS VARCHAR), count(*) FROM {raw} "
                      "GROUP BY 1 HAVING count(*) > 1 LIMIT 1")
    if dup:
        raise DataValidationError(f"{path}: column 'transaction_id': duplicate id {dup[0]!r} "
                                  f"({dup[1]} rows); ids must be unique")
    selects = [f"CAST(transaction_id AS VARCHAR) AS transaction_id",
               f"{ts_expr} AS timestamp",
               "CAST(customer_id AS VARCHAR) AS customer_id",
               "CAST(terminal_id AS VARCHAR) AS terminal_id",
               f"{amount_expr} AS amount"]
    for column in OPTIONAL_NUMERIC:
        if column in types:
            expr = f"TRY_CAST({column} AS DOUBLE)"
            bad = _first(con, f"SELECT _file_row, CAST({column} AS VARCHAR) FROM {numbered} "
                              f"WHERE {column} IS NOT NULL AND {expr} IS NULL LIMIT 1")
            if bad:
                raise DataValidationError(f"{path}: column {column!r}, row {bad[0]}: {bad[1]!r} "
                                          "is not a number")
            selects.append(f"{expr} AS {column}")
    if "channel" in types:
        selects.append("CAST(channel AS VARCHAR) AS channel")
    if "is_fraud" in types:
        selects.append("TRY_CAST(is_fraud AS INTEGER) AS is_fraud")
    if "fraud_scenario" in types:
        selects.append("TRY_CAST(fraud_scenario AS INTEGER) AS fraud_scenario")
    known = set(REQUIRED) | set(OPTIONAL_NUMERIC) | {"channel"} | set(LABEL_COLUMNS)
    selects += [f'"{c}"' for c in types if c not in known]
    con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT {', '.join(selects)} FROM {raw}")
    return [d[0] for d in con.execute(f"DESCRIBE {view}").fetchall()]


def read_transactions(path) -> "pd.DataFrame":  # noqa: F821
    """Validated transactions as a pandas DataFrame, sorted by ``timestamp`` (in memory)."""
    con = connect()
    try:
        open_transactions(con, path)
        return con.execute("SELECT * FROM tx ORDER BY timestamp, transaction_id").df()
    finally:
        con.close()


def has_columns(columns, names) -> bool:
    return all(n in columns for n in names)
