"""Where the data kept outside the repository lives: the ``shared/data`` folder beside it.

The main checkout (``/work/main``) has ``shared`` beside it; a worktree one level further
down (``/work/wt/<name>``) has it one level further up. Only benchmarks and experiments read
it; no test needs it.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def find_shared_data(root: Path) -> Path:
    """``shared/data`` beside the checkout at ``root``, else one level up.

    Args:
        root: the repository's root folder.

    Returns:
        ``root.parent / "shared/data"`` when that folder exists, else
        ``root.parents[1] / "shared/data"`` when that one does, else the first (so a missing
        file is reported under the usual place).

    Example:
        >>> find_shared_data(Path("/work/wt/mendrender"))  # doctest: +SKIP
        PosixPath('/work/shared/data')
    """
    candidates = [root.parent / "shared" / "data", root.parents[1] / "shared" / "data"]
    return next((folder for folder in candidates if folder.is_dir()), candidates[0])


SHARED_DATA = find_shared_data(ROOT)
