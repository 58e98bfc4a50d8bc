"""Transactions on disk: open Parquet/CSV in DuckDB, validate, name what is wrong.

Which column plays which role (id, time, card, terminal/merchant, amount, channel,
locations, label) and how values are coded comes from a :class:`finance.mapping.ColumnMapping`
(default: unmask's own names, docs/contracts.md). The typed view has the canonical names
whatever the file calls them (:func:`open_transactions`).

Handling of bad input (each a one-line ``DataValidationError`` naming the file, column,
row, transaction id and value):

* a column the mapping names that the file lacks, empty file, unparsable or missing
  timestamp, non-numeric, missing or infinite amount, a negative amount unless the mapping
  accepts refunds, duplicate transaction id;
* a coordinate that is missing, NaN or infinite (it would silently become distance 0), or
  a latitude/longitude out of range when coordinates are degrees;
* a channel value the mapping does not name (never a default): the message lists the
  values seen and the accepted ones;
* a label that is not one of the mapping's values (default 0/1 or true/false; an empty cell
  is an unknown label), a scenario that is not a whole number, a passed-through numeric
  column that is not a finite number;
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
from core.runtime import default_threads

from .mapping import CARD_NOT_PRESENT, CARD_PRESENT, ColumnMapping, native
from .sql import ident, literal, reading

REQUIRED = ("transaction_id", "timestamp", "customer_id", "terminal_id", "amount")  # typed view names
DEFAULT_TIMEZONE = "UTC"
# Text that ends in a UTC offset, Z/UTC/GMT or a zone name right after the time of day.
AWARE_TEXT = r"\d:\d\d(?::\d\d(?:\.\d*)?)?\s*(?:[zZ]|UTC|GMT|[+-]\d\d(?::?\d\d)?|[A-Za-z]+/[A-Za-z_/+-]+)$"


def configure(con, memory_limit: str | None = None, threads: int | None = None, temp_dir=None):
    """Bounded memory (spilling to ``temp_dir`` beyond it), threads, and a reader that keeps
    TRY_CAST's meaning: DuckDB's ``type_pushdown`` moves a cast into the CSV scanner,
    where a bad cell raises instead of becoming NULL."""

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

    def __init__(self, con, path: Path, raw: str, id_column: str = "transaction_id"):
        self.con, self.path, self.raw, self.id_column = con, path, raw, id_column
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
                at = f" ({self.id_column} {_show(tx)})" if tx is not None and column != self.id_column else ""
                raise DataValidationError(f"{self.path}: column {column!r}, row {row}{at}: {problem(value)}")

    def first(self, where: str, value_sql: str, column: str):
        """``(row, transaction_id, value)`` of the first row where ``where`` holds.

        Only ``column`` and the id column are selected beside the row number, so a user's
        column called ``_file_row`` cannot shadow it.
        """
        names = ", ".join(ident(c) for c in dict.fromkeys((self.id_column, column)))
        numbered = f"(SELECT {names}, row_number() OVER () AS _file_row FROM {self.raw})"
        return self.con.execute(f"SELECT _file_row, CAST({ident(self.id_column)} AS VARCHAR), {value_sql} "
                                f"FROM {numbered} WHERE {where} ORDER BY _file_row LIMIT 1").fetchone()


def _timestamp(check: _Checks, column: str, typ: str, zone: str) -> str:
    """Checked SQL giving the time column as a naive TIMESTAMP under the time-zone rule."""
    col = ident(column)
    if typ.startswith("TIMESTAMP WITH TIME ZONE"):
        return f"timezone({literal(zone)}, {col})"
    if typ.startswith(("TIMESTAMP", "DATE")):
        return f"CAST({col} AS TIMESTAMP)"
    if typ != "VARCHAR":
        raise DataValidationError(f"{check.path}: column {column!r} has type {typ}; give date-times "
                                  "(ISO 8601 text or a Parquet timestamp)")
    aware = f"regexp_matches(trim({col}), {literal(AWARE_TEXT)})"
    expr = (f"CASE WHEN {aware} THEN timezone({literal(zone)}, TRY_CAST(trim({col}) AS TIMESTAMPTZ)) "
            f"ELSE TRY_CAST({col} AS TIMESTAMP) END")
    check.require(column, f"({expr}) IS NULL",
                  lambda v: ("missing value" if v is None else f"cannot parse {_show(v)} as a timestamp")
                  + " (use ISO 8601, e.g. 2018-04-01 07:19:05)")
    check.require(column, f"NOT {aware}",
                  lambda v: (f"{_show(v)} has no UTC offset but row {check.first(aware, '1', column)[0]} "
                             "has one; give every time with an offset or none (naive times are local "
                             "wall-clock time)"),
                  flag=f"bool_or({aware}) AND bool_or(NOT {aware})")
    return expr


def _coordinate(check: _Checks, column: str, kind: str) -> str:
    """A coordinate column: ``kind`` is ``x``/``y`` (km), ``lat`` or ``lon`` (degrees)."""
    expr = f"TRY_CAST({ident(column)} AS DOUBLE)"
    unit = "km" if kind in ("x", "y") else "degrees"
    check.require(column, f"{expr} IS NULL OR NOT isfinite({expr})",
                  lambda v: ("missing value" if v is None else f"{_show(v)} is not a finite number")
                  + f" (coordinates in {unit}; a missing one would silently become distance 0)")
    if kind in ("lat", "lon"):
        bound = 90 if kind == "lat" else 180
        check.require(column, f"abs({expr}) > {bound}",
                      lambda v: f"{_show(v)} is not a {'latitude' if kind == 'lat' else 'longitude'} "
                                f"(degrees within +-{bound}; km coordinates need locations.units = 'km')")
    return expr


def _amount(check: _Checks, column: str, refunds: bool) -> str:
    expr = f"TRY_CAST({ident(column)} AS DOUBLE)"
    check.require(column, f"{expr} IS NULL OR NOT isfinite({expr})",
                  lambda v: f"{_show(v)} is not a finite number")
    if not refunds:
        check.require(column, f"{expr} < 0",
                      lambda v: f"negative amount {v} (amounts must be >= 0; to keep refunds in the "
                                "cards' history, train with --refunds)", expr)
    return expr


def _seen_values(check: _Checks, text: str) -> str:
    """The distinct values of a text expression, listed for a message (at most 10)."""
    seen = [r[0] for r in check.con.execute(f"SELECT DISTINCT {text} FROM {check.raw} "
                                            "ORDER BY 1 NULLS LAST LIMIT 11").fetchall()]
    return ", ".join("missing" if s is None else _show(s) for s in seen[:10]) + (", ..." if len(seen) > 10 else "")


def _coded(check: _Checks, column: str, codes: dict, what: str) -> str:
    """A column whose values must be one of ``codes`` (value -> canonical SQL value)."""
    text = f"CAST({ident(column)} AS VARCHAR)"
    accepted = "; ".join(f"{meaning}: {', '.join(map(_show, values))}"
                         for meaning, values in _by_meaning(codes).items())

    def problem(value):
        return (("missing value" if value is None else f"unknown value {_show(value)}")
                + f" (values seen: {_seen_values(check, text)}; accepted {what} values: {accepted})")

    check.require(column, f"{text} IS NULL OR {text} NOT IN ({', '.join(map(literal, codes))})", problem)
    cases = " ".join(f"WHEN {literal(v)} THEN {sql}" for v, sql in codes.items())
    return f"CASE {text} {cases} END"


def _by_meaning(codes: dict) -> dict:
    out = {}
    for value, sql in codes.items():
        out.setdefault(sql.strip("'"), []).append(value)
    return out


def _channel(check: _Checks, column: str, mapping: ColumnMapping) -> str:
    codes = {v: literal(CARD_NOT_PRESENT) for v in mapping.card_not_present}
    codes.update({v: literal(CARD_PRESENT) for v in mapping.card_present})
    return _coded(check, column, codes, "channel")


def _label(check: _Checks, column: str, mapping: ColumnMapping) -> str:
    """The label: the mapping's fraud/genuine values, or 0/1, true/false (any case); an empty
    cell is an unknown label -> INTEGER 0/1/NULL."""
    if mapping.label_fraud is not None:
        codes = {**{v: "0" for v in mapping.label_genuine}, **{v: "1" for v in mapping.label_fraud}}
        text = f"CAST({ident(column)} AS VARCHAR)"
        known = f"({text} IS NULL OR trim({text}) = '' OR {text} IN ({', '.join(map(literal, codes))}))"
        check.require(column, f"NOT {known}",
                      lambda v: f"{_show(v)} is not a label (values seen: {_seen_values(check, text)}; "
                                f"fraud: {', '.join(map(_show, mapping.label_fraud))}; genuine: "
                                f"{', '.join(map(_show, mapping.label_genuine))}; empty = unknown)")
        cases = " ".join(f"WHEN {literal(v)} THEN {sql}" for v, sql in codes.items())
        return f"CAST(CASE {text} {cases} END AS INTEGER)"
    norm = f"lower(trim(CAST({ident(column)} AS VARCHAR)))"
    number = f"TRY_CAST({norm} AS DOUBLE)"
    expr = (f"CASE WHEN {norm} = 'true' OR {number} = 1 THEN 1 "
            f"WHEN {norm} = 'false' OR {number} = 0 THEN 0 END")
    check.require(column, f"{norm} <> '' AND ({expr}) IS NULL",
                  lambda v: f"{_show(v)} is not a label (use 0/1 or true/false, or name the values with "
                            "label.fraud / label.genuine; leave the cell empty when unknown)")
    return f"CAST({expr} AS INTEGER)"


def _whole_number(check: _Checks, column: str) -> str:
    """A scenario code: a whole number or empty -> INTEGER / NULL."""
    text = f"trim(CAST({ident(column)} AS VARCHAR))"
    number = f"TRY_CAST({text} AS DOUBLE)"
    ok = f"(isfinite({number}) AND {number} = floor({number}) AND abs({number}) < 1e9)"
    check.require(column, f"{text} <> '' AND NOT coalesce({ok}, false)",
                  lambda v: f"{_show(v)} is not a whole number")
    return f"CASE WHEN {ok} THEN CAST({number} AS INTEGER) END"


def _numeric(check: _Checks, column: str) -> str:
    """A passed-through numeric feature: a finite number or empty (NULL)."""
    text = f"trim(CAST({ident(column)} AS VARCHAR))"
    expr = f"TRY_CAST({ident(column)} AS DOUBLE)"
    check.require(column, f"{text} <> '' AND ({expr} IS NULL OR NOT isfinite({expr}))",
                  lambda v: f"{_show(v)} is not a finite number (a numeric feature; leave empty if unknown)")
    return expr


def _check_unique_ids(con, path: Path, raw: str, column: str) -> None:
    dup = con.execute(f"SELECT CAST({ident(column)} AS VARCHAR), count(*) FROM {raw} "
                      "GROUP BY 1 HAVING count(*) > 1 LIMIT 1").fetchone()
    if dup:
        raise DataValidationError(f"{path}: column {column!r}: duplicate id {_show(dup[0])} "
                                  f"({dup[1]} rows); ids must be unique")


def location_columns(mapping: ColumnMapping, name: str) -> tuple[str, str]:
    """The typed view's two columns of location ``name`` (x/y in km or lat/lon in degrees)."""
    return f"loc_{name}_1", f"loc_{name}_2"


def _selects(check: _Checks, types: dict, zone: str, mapping: ColumnMapping, validate: bool = True) -> list[str]:
    """The typed view's SELECT items; raises for the first bad value (checks run at the end,
    unless ``validate`` is false)."""
    col = mapping.columns
    timestamp = _timestamp(check, col["time"], types[col["time"]], zone)
    amount = _amount(check, col["amount"], mapping.refunds)
    for role in ("id", "card", "terminal"):
        check.require(col[role], f"{ident(col[role])} IS NULL", lambda v: "missing value")
    selects = [f"CAST({ident(col['id'])} AS VARCHAR) AS transaction_id", f"{timestamp} AS timestamp",
               f"CAST({ident(col['card'])} AS VARCHAR) AS customer_id",
               f"CAST({ident(col['terminal'])} AS VARCHAR) AS terminal_id", f"{amount} AS amount"]
    kinds = ("lat", "lon") if mapping.units == "degrees" else ("x", "y")
    for name, columns in mapping.locations.items():
        for column, kind, out in zip(columns, kinds, location_columns(mapping, name)):
            selects.append(f"{_coordinate(check, column, kind)} AS {ident(out)}")
    if "channel" in col:
        selects.append(f"{_channel(check, col['channel'], mapping)} AS channel")
    if "label" in col:
        selects.append(f"{_label(check, col['label'], mapping)} AS is_fraud")
    if "scenario" in col:
        selects.append(f"{_whole_number(check, col['scenario'])} AS fraud_scenario")
    for column in mapping.categorical:
        selects.append(f"coalesce(CAST({ident(column)} AS VARCHAR), '(missing)') AS {ident('cat_' + column)}")
    for column in mapping.numeric:
        selects.append(f"{_numeric(check, column)} AS {ident('num_' + column)}")
    if validate:
        check.run()
        _check_unique_ids(check.con, check.path, check.raw, col["id"])
    return selects


def open_transactions(con, path, view: str = "tx", timezone: str = DEFAULT_TIMEZONE,
                      mapping: ColumnMapping | None = None, validate: bool = True) -> ColumnMapping:
    """Create DuckDB view ``view`` over the transactions at ``path``, validated and typed.

    Columns of the view (whatever the file calls them, :mod:`finance.mapping`):
    ``transaction_id``, ``customer_id``, ``terminal_id`` (VARCHAR), ``timestamp`` (naive
    TIMESTAMP, see the time-zone rule above), ``amount`` (DOUBLE; negative = refund when the
    mapping allows refunds), ``channel`` (``card_present`` / ``card_not_present``),
    ``loc_<name>_1`` / ``loc_<name>_2`` per location, ``is_fraud`` / ``fraud_scenario``,
    ``cat_<column>`` (VARCHAR) and ``num_<column>`` (DOUBLE) per passed-through column, each
    when the mapping has it.

    Args:
        con: DuckDB connection (see :func:`connect`).
        path: Parquet file/directory or CSV file.
        view: name of the view to create.
        timezone: IANA zone that aware times are converted to.
        mapping: roles and codings (default: unmask's own schema, optional parts when present).
        validate: run the row checks (a full scan). Off only for a file a model has already
            read (the dashboard looking up one card of a scored file); the typed view is the same.

    Returns:
        The mapping resolved against this file (what a model saves).

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
        resolved = (mapping or native()).resolve(types, path)
        if con.execute(f"SELECT count(*) FROM {raw}").fetchone()[0] == 0:
            raise DataValidationError(f"{path}: no transactions (the file has a header but no rows)")
        selects = _selects(_Checks(con, path, raw, resolved.columns["id"]), types, zone, resolved, validate)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {ident(view)} AS SELECT {', '.join(selects)} FROM {raw}")
        return resolved


def read_transactions(path, timezone: str = DEFAULT_TIMEZONE,
                      mapping: ColumnMapping | None = None) -> "pd.DataFrame":  # noqa: F821
    """Validated transactions (typed view's columns) as a pandas DataFrame, sorted by
    ``timestamp`` (in memory)."""
    con = connect()
    try:
        open_transactions(con, path, timezone=timezone, mapping=mapping)
        with reading(path):
            return con.execute("SELECT * FROM tx ORDER BY timestamp, transaction_id").df()
    finally:
        con.close()
