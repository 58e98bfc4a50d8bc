"""Names that become path segments: log ids, run ids, case ids, bundle names.

A name read from a file (a drive log's ``log_id``, a case id in a scores table) or typed
by a user ends up in a path such as ``cells/<log_id>.parquet``. ``../../x`` there writes
outside the run directory, so every such name is checked here, once when it is read and
again where the path is built.

Example:
    >>> check_name("log_000", "logs/a.parquet: frame 0, column 'log_id'")
    'log_000'
"""
from __future__ import annotations

import re

from .errors import DataValidationError

MAX_NAME_LENGTH = 128
# ASCII letters, digits, '.', '_', '-'; never starting with '.' (no '..', no hidden files)
_SAFE_NAME = re.compile(rf"[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{MAX_NAME_LENGTH - 1}}}")
RULE = (f"a name that becomes a file name may hold only letters, digits, '.', '_' and '-', "
        f"must not start with '.', and has at most {MAX_NAME_LENGTH} characters")


def is_safe_name(value) -> bool:
    """Whether ``value`` is a string that can be one path segment on every platform."""
    return isinstance(value, str) and _SAFE_NAME.fullmatch(value) is not None


def shown(value, limit: int = 60) -> str:
    """``value`` for a one-line message: its repr (newlines escaped), cut at ``limit``."""
    text = repr(value[:limit] if isinstance(value, str) else value)
    return text + ("..." if isinstance(value, str) and len(value) > limit else "")


def check_name(value, where: str) -> str:
    """Return ``value`` when it is a safe path segment (:func:`is_safe_name`).

    Args:
        value: the name.
        where: what holds it, for the message (file, column and row; or the option).

    Raises:
        DataValidationError: one line naming ``where`` and the value.
    """
    if not is_safe_name(value):
        raise DataValidationError(f"{where}: {shown(value)} is not a safe name ({RULE})")
    return value
