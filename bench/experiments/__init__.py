"""One-off experiments behind the benchmark decisions in docs/history.md (not benchmarks)."""
from __future__ import annotations

import copy
import fcntl
import json
import os
from pathlib import Path

from core.io import write_text_atomic


def merge_results(path: Path, entries: dict, under: tuple = (), base: dict | None = None,
                  indent: int = 1, default=None) -> dict:
    """Add ``entries`` to a results JSON file, keeping every entry they do not replace.

    Several steps of one experiment (worlds, sizes, configurations) run apart, some side by
    side, and each stores its own part of the shared file: the read and the write happen under
    an exclusive ``flock`` of the file's folder (made where missing; no lock file is created,
    so none is left behind or shared between results files of the same name) and the write is
    atomic.

    Args:
        path: the results file (``base`` when it does not exist yet).
        entries: keys and values to set.
        under: keys of the nested mapping to set them in (made where missing; ``()``: the top).
        base: the new file's content (default: empty); copied, never changed.
        indent, default: as ``json.dumps``'s; the file ends with a newline.

    Returns:
        The whole file's content, as written.

    Example:
        >>> merge_results(Path("out.json"), {"town": {"auroc": 0.9}}, under=("candidates",))  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        # a deep copy: setting entries ``under`` a key must not reach into the caller's ``base``
        kept = json.loads(path.read_text()) if path.exists() else copy.deepcopy(base or {})
        node = kept
        for key in under:
            node = node.setdefault(key, {})
        node.update(entries)
        write_text_atomic(path, json.dumps(kept, indent=indent, default=default) + "\n")
    finally:
        os.close(folder)            # closing it releases the lock
    return kept
