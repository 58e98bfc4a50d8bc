"""Words for the lines a user reads: counts with their noun in the right number.

Example:
    >>> counted(1, "case"), counted(3, "case"), counted(0, "epoch")
    ('1 case', '3 cases', '0 epochs')
"""
from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``"1 log"``, ``"2 logs"``: ``n`` and ``noun``, plural (``plural``, default
    ``noun + "s"``) unless ``n`` is 1."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
