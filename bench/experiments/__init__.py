"""One-off experiments behind the benchmark decisions in docs/history.md (not benchmarks)."""
from __future__ import annotations

import fcntl
import json
from pathlib import Path

from core.io import write_text_atomic


def merge_results(path: Path, entries: dict, under: tuple = (), base: dict | None = None,
                  indent: int = 1, default=None) -> dict:
    """Add ``entries`` to a results JSON file, keeping every entry they do not replace.

    Several steps of one experiment (worlds, sizes, configurations) run apart, some side by
    side, and each stores its own part of the shared file: the read and the write happen under
    a lock (``/tmp/<file stem>.lock``) and the write is atomic.

    Args:
        path: the results file (``base`` when it does not exist yet).
        entries: keys and values to set.
        under: keys of the nested mapping to set them in (made where missing; ``()``: the top).
        base: the new file's content (default: empty).
        indent, default: as ``json.dumps``'s; the file ends with a newline.

    Returns:
        The whole file's content, as written.

    Example:
        >>> merge_results(Path("out.json"), {"town": {"auroc": 0.9}}, under=("candidates",))  # doctest: +SKIP
    """
    path = Path(path)
    with open(Path("/tmp") / f"{path.stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kept = json.loads(path.read_text()) if path.exists() else dict(base or {})
        node = kept
        for key in under:
            node = node.setdefault(key, {})
        node.update(entries)
        write_text_atomic(path, json.dumps(kept, indent=indent, default=default) + "\n")
    return kept
