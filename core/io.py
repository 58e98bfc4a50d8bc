"""Publishing outputs: build beside, then rename into place; never destroy what unmask did
not write.

- An output is built in a temporary sibling ``.NAME.HOST-PID.RANDOM.tmp``, fsynced (files,
  then folders) and renamed onto ``NAME``; the parent folder is fsynced after the rename.
- A folder unmask publishes carries a marker file (``.unmask``, JSON: writer, version,
  time). An existing folder is replaced only when it carries the marker or is empty; an
  existing file is replaced unless it is one of the command's inputs (the user named that
  exact file, as with ``cp`` or ``sort -o``). An output that is, lies inside or contains an
  input is refused.
- Replacing a folder takes three renames: ``NAME -> .NAME.old``, ``new -> NAME``,
  ``.NAME.old -> temporary`` (then deleted). A crash between the first two leaves only
  ``.NAME.old``; after the second, both. The next publish to ``NAME`` restores the old
  folder or finishes the swap (:func:`recover_interrupted`): old or new, never neither.
- Temporaries are deleted on every exit Python sees (errors, Ctrl-C, SIGTERM, which is
  turned into ``SystemExit``); those of killed processes are deleted by the next publish
  into the same folder once their process is gone.

Writers of one output path must not run at the same time.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from pathlib import Path
from typing import Iterable, Iterator

from . import __version__
from .errors import DataValidationError

MARKER = ".unmask"
# The host tag keeps a process from judging another machine's PIDs (shared file systems).
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMPORARY = re.compile(r"^\..+\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.[a-z0-9_]+\.tmp$")


# --- what may be replaced ------------------------------------------------------------------

def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _relation(out: Path, source: Path) -> str | None:
    if out == source:
        return "is"
    if source in out.parents:
        return "is inside"
    if out in source.parents:
        return "contains"
    return None


def written_by_unmask(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` carries the marker unmask puts in every folder it publishes."""
    try:
        return json.loads((Path(folder) / MARKER).read_text()).get("writer") == "unmask"
    except (OSError, ValueError, AttributeError):
        return False


def check_output(path: str | os.PathLike, inputs: Iterable = ()) -> None:
    """Refuse to write ``path`` when that would destroy something unmask did not write.

    Args:
        path: the output (file or folder) about to be written.
        inputs: paths the command reads (``None`` entries are skipped).

    Raises:
        DataValidationError: ``path`` is, lies inside or contains an input, or is an
            existing non-empty folder without unmask's marker (or with a foreign
            ``.NAME.old`` beside it, the name a replaced folder is moved to).
    """
    out = Path(path)
    where = _resolved(out)
    for source in inputs:
        if source is None:
            continue
        relation = _relation(where, _resolved(source))
        if relation:
            raise DataValidationError(f"output {out} {relation} the input {source}: "
                                      "choose another --out")
    if not out.is_dir() or out.is_symlink():
        return
    if any(out.iterdir()) and not written_by_unmask(out):
        raise DataValidationError(f"{out}: a folder unmask did not write (no {MARKER} marker) "
                                  "and not empty; it is never replaced, choose another --out")
    backup = _backup(out)
    if os.path.lexists(backup) and not _is_backup(backup):
        raise DataValidationError(f"{backup} is in the way: replacing {out} moves it there "
                                  "first; move it or choose another --out")


# --- temporaries and recovery ----------------------------------------------------------------

def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _make_temporary(path: Path) -> Path:
    prefix = f".{path.name[:100]}.{_HOST}-{os.getpid()}."
    return Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=path.parent))


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries in ``folder`` left by processes of this host that are gone
    (killed with SIGKILL, power loss); a live process's temporaries are kept."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match and match["host"] == _HOST and not _alive(int(match["pid"])):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def _backup(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def _is_backup(path: Path) -> bool:
    """Whether ``.NAME.old`` is one of ours: only folders unmask wrote (or empty ones) are
    ever moved aside, so a user's own ``.NAME.old`` is never touched."""
    return (path.is_dir() and not path.is_symlink()
            and (written_by_unmask(path) or not any(path.iterdir())))


def recover_interrupted(path: str | os.PathLike) -> None:
    """Finish or undo a swap of ``path`` that a crash interrupted.

    Only ``.NAME.old`` present: the crash came between the first two renames, so the old
    output is restored. Both present: the new output was already in place, so the old one
    is deleted.
    """
    path = Path(path)
    backup = _backup(path)
    if not _is_backup(backup):
        return
    if os.path.lexists(path):
        trash = _make_temporary(path)
        os.replace(backup, trash / "previous")
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(backup, path)
    _fsync(path.parent)


# --- durability -------------------------------------------------------------------------------

def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:  # some file systems cannot fsync a folder; files still are
        if err.errno not in (errno.EINVAL, errno.ENOTSUP) or not path.is_dir():
            raise
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """fsync every file under ``path``, then each folder (so its entries are durable too)."""
    if not path.is_dir():
        _fsync(path)
        return
    for root, _, files in os.walk(path):
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                _fsync(Path(root, name))
        _fsync(Path(root))


def _write_marker(folder: Path) -> None:
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    (folder / MARKER).write_text(json.dumps({"writer": "unmask", "version": __version__,
                                             "created": created}) + "\n")


# --- signals ----------------------------------------------------------------------------------

def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Inside this block SIGTERM raises ``SystemExit(143)`` instead of killing the process
    outright, so ``finally`` blocks delete temporaries. A no-op outside the main thread or
    when a SIGTERM handler is already installed."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL):
        yield
        return
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the renames of a swap are done (main thread only)."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        previous = {s: h for s, h in previous.items() if h is not None}
    pending = []
    for sig in previous:
        signal.signal(sig, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in pending:
            signal.raise_signal(sig)  # now handled as it would have been


# --- publishing -------------------------------------------------------------------------------

def _swap(new: Path, path: Path, trash: Path) -> None:
    """Rename ``new`` onto ``path``; replacing a folder goes through ``.NAME.old``."""
    if path.is_dir() and not path.is_symlink():
        backup = _backup(path)
        os.replace(path, backup)
        os.replace(new, path)
        _fsync(path.parent)
        os.replace(backup, trash / "previous")  # deleted with the temporary
    elif new.is_dir() and os.path.lexists(path):  # rename() cannot put a folder over a file
        raise DataValidationError(f"{path} is not a folder; a folder cannot replace it, "
                                  "choose another --out")
    else:
        os.replace(new, path)
    _fsync(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, inputs: Iterable = ()) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; publish it onto ``path`` on success.

    Works for files and folders (create the folder at the yielded path). On error the
    temporary is removed and ``path`` is untouched.

    Args:
        path: the output.
        inputs: paths the command reads; see :func:`check_output`.

    Raises:
        DataValidationError: before anything is written, when ``path`` may not be
            written (:func:`check_output`).

    Example:
        >>> with atomic_path("scores.parquet", inputs=["tx.parquet"]) as tmp:  # doctest: +SKIP
        ...     table.to_parquet(tmp)
    """
    path = Path(path)
    recover_interrupted(path)
    remove_stale_temporaries(path.parent)
    check_output(path, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)  # after the checks: a refusal creates nothing
    with terminate_as_exit():
        tmp = _make_temporary(path)
        target = tmp / path.name
        try:
            yield target
            if not os.path.lexists(target):
                raise FileNotFoundError(f"nothing was written to {target}")
            if target.is_dir():
                _write_marker(target)
            _fsync_tree(target)
            check_output(path)  # a foreign folder may have appeared there meanwhile
            with _signals_deferred():
                _swap(target, path, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def read_json_object(path: str | os.PathLike, error: type[Exception] = DataValidationError) -> dict:
    """The JSON object in ``path``, a file anyone may have written: bad JSON, a bad encoding,
    absurd nesting or another JSON type raise ``error`` with one line."""
    try:
        value = json.loads(Path(path).read_bytes())
    except (ValueError, RecursionError) as err:
        raise error(f"{path}: not valid JSON ({type(err).__name__})") from None
    if not isinstance(value, dict):
        raise error(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def tuples_as_lists(fields: dict) -> dict:
    """``fields`` with each tuple value a list, as JSON gives it back: the ``to_dict`` of a
    config dataclass saved in a bundle (``tuples_as_lists(asdict(config))``), whose
    ``from_dict`` turns the lists back into tuples."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}


def write_text_atomic(path: str | os.PathLike, text: str, inputs: Iterable = ()) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path, inputs) as tmp:
        tmp.write_text(text)


def write_parquet_atomic(table, path: str | os.PathLike, inputs: Iterable = (), **kwargs) -> None:
    """Write a pyarrow Table or pandas DataFrame to Parquet atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    with atomic_path(path, inputs) as tmp:
        pq.write_table(table, tmp, **kwargs)
