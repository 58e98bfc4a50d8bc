"""The only ways finance puts names and values into DuckDB SQL text, and DuckDB's errors
about a user's file turned into one line.

DuckDB takes ``?`` parameters for values in queries, but not inside a view definition,
``COPY ... TO``, ``SET`` or a table function's file argument, and never for identifiers;
so column names and paths are quoted here, in one place, by DuckDB's own rules: an
identifier goes in double quotes with ``"`` doubled, a string literal in single quotes with
``'`` doubled (DuckDB standard strings have no backslash escapes).
"""
from __future__ import annotations

import contextlib
import re
from pathlib import Path

from core.errors import DataValidationError


def ident(name) -> str:
    """``name`` as a DuckDB identifier: ``ident('a"b') == '"a""b"'``."""
    return '"' + str(name).replace('"', '""') + '"'


def literal(value) -> str:
    """``value`` (a path is written with forward slashes) as a DuckDB string literal."""
    text = value.as_posix() if isinstance(value, Path) else str(value)
    return "'" + text.replace("'", "''") + "'"


_COLUMN = re.compile(r'column "((?:[^"]|"")*)"', re.IGNORECASE)


def one_line(path, err: Exception) -> str:
    """DuckDB's (often multi-line) error as one line naming ``path`` and, when DuckDB says
    which, the column."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    detail = lines[0] if lines else type(err).__name__
    named = next((m for m in map(_COLUMN.search, lines) if m), None)
    column = f"column {named.group(1)!r}: " if named else ""
    extra = next((line for line in lines[1:] if "convert" in line.lower()), None)
    return f"{path}: {column}cannot read transactions ({detail}{'; ' + extra if extra else ''})"


@contextlib.contextmanager
def reading(path):
    """Turn a DuckDB error raised while reading the user's file ``path`` into a one-line
    :class:`DataValidationError` (bad casts, malformed CSV, unreadable Parquet)."""
    import duckdb

    try:
        yield
    except duckdb.Error as err:
        raise DataValidationError(one_line(path, err)) from None
