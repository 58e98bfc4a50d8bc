"""Links to one alert, case or frame: the query parameters the pages read and write.

Each page opens what its URL names and writes its current selection back, so the address
bar (and the link a detail view shows) always points at what is on screen:

* finance: ``/finance?run=RUN&tx=TRANSACTION``
* CT: ``/ct?run=RUN&case=CASE&plane=axial&slice=INDEX`` (``slice``: the slider's value)
* drive logs: ``/drive?run=RUN&log=LOG&frame=FRAME``

A URL is typed by anyone, so every id from it is checked here before it is looked up, and
a bad one becomes one plain :class:`~core.errors.DataValidationError` line for the page to
show. Run, case and log ids name directories and files, so they must be safe names
(``core.names``) *and* one of the run's own ids; a transaction id is never part of a path
(it is a bound SQL parameter), so it only has to be short printable text.

Example:
    >>> link("http://127.0.0.1:8501/finance", {"run": "r1", "tx": "tx 7"})
    'http://127.0.0.1:8501/finance?run=r1&tx=tx+7'
"""
from __future__ import annotations

from urllib.parse import urlencode

from core.errors import DataValidationError
from core.names import is_safe_name, shown

MAX_TEXT_ID = 256


def link(page_url: str | None, params: dict) -> str:
    """``page_url`` with ``params`` (None values left out) as its query string.

    Without a page URL (no browser, e.g. in tests) the link is the query string alone,
    relative to the current page.
    """
    query = urlencode({name: str(value) for name, value in params.items() if value is not None})
    return f"{page_url or ''}?{query}"


def known_name(value: str, known, what: str) -> str:
    """``value`` when it is a safe name and one of ``known`` (a run, case or log id)."""
    if not is_safe_name(value):
        raise DataValidationError(f"The link's {what} {shown(value)} is not a valid {what} id.")
    if value not in known:
        raise DataValidationError(f"The link's {what} {value!r} is not in this "
                                  f"{'workspace' if what == 'run' else 'run'}.")
    return value


def known_choice(value: str, choices, what: str) -> str:
    """``value`` when it is one of ``choices`` (e.g. a CT plane)."""
    if value not in choices:
        raise DataValidationError(f"The link's {what} {shown(value)} is not one of "
                                  f"{', '.join(map(str, choices))}.")
    return value


def index_below(value: str, size: int, what: str) -> int:
    """``value`` as an integer in ``0 .. size - 1`` (e.g. a slice index)."""
    number = _integer(value, what)
    if not 0 <= number < size:
        raise DataValidationError(f"The link's {what} {number} is outside 0 to {size - 1}.")
    return number


def known_number(value: str, known, what: str) -> int:
    """``value`` as an integer that is one of ``known`` (e.g. a log's frame numbers)."""
    number = _integer(value, what)
    if number not in set(int(k) for k in known):
        raise DataValidationError(f"The link's {what} {number} is not in this log.")
    return number


def text_id(value: str, what: str) -> str:
    """``value`` when it is short printable text (an id used only as a query parameter)."""
    if not value or len(value) > MAX_TEXT_ID or not value.isprintable():
        raise DataValidationError(f"The link's {what} {shown(value)} is not a valid {what} id "
                                  f"(printable text of 1 to {MAX_TEXT_ID} characters).")
    return value


def _integer(value: str, what: str) -> int:
    text = value.strip()
    if not (text.isascii() and text.lstrip("-").isdigit()) or len(text) > 18:
        raise DataValidationError(f"The link's {what} {shown(value)} is not a whole number.")
    return int(text)
