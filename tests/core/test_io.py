"""Publishing outputs (core.io): what may be replaced, crash safety by fault injection,
recovery of interrupted swaps, temporaries on SIGTERM and after SIGKILL."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import core
from core import DataValidationError
from core.io import (MARKER, atomic_path, recover_interrupted, remove_stale_temporaries,
                     write_parquet_atomic, write_text_atomic, written_by_unmask)
from core.runs import create_run, load_manifest

REPO = Path(core.__file__).resolve().parents[1]


def _publish(path, version: str):
    with atomic_path(path) as tmp:
        tmp.mkdir()
        (tmp / "version.txt").write_text(version)
        (tmp / "data.bin").write_bytes(version.encode() * 1000)


def _version(folder: Path) -> str | None:
    """The version a complete published folder holds (None when absent or incomplete)."""
    if not (folder / "version.txt").is_file() or not written_by_unmask(folder):
        return None
    version = (folder / "version.txt").read_text()
    assert (folder / "data.bin").read_bytes() == version.encode() * 1000, "half-written"
    return version


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def _tree(root: Path) -> list:
    return sorted((str(p), p.read_bytes() if p.is_file() else None) for p in root.rglob("*"))


def _python(script: str, *args, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


# --- what may be replaced ------------------------------------------------------------------

def test_published_folders_carry_the_marker(tmp_path):
    _publish(tmp_path / "out", "1")
    marker = json.loads((tmp_path / "out" / MARKER).read_text())
    assert marker["writer"] == "unmask" and marker["version"] == core.__version__ and marker["created"]
    _publish(tmp_path / "out", "2")                     # unmask's own folder: replaced
    assert _version(tmp_path / "out") == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_foreign_folder_is_refused_and_untouched(tmp_path):
    foreign = tmp_path / "thesis"
    (foreign / "chapters").mkdir(parents=True)
    (foreign / "chapters" / "one.tex").write_text("years of work")
    (foreign / "notes.txt").write_text("keep")
    for write in (lambda: _publish(foreign, "1"),
                  lambda: create_run(foreign, "finance").__enter__(),
                  lambda: write_text_atomic(foreign, "x")):
        with pytest.raises(DataValidationError, match=r"thesis: a folder unmask did not write.*"
                                                      r"choose another --out"):
            write()
    assert (foreign / "chapters" / "one.tex").read_text() == "years of work"
    assert sorted(p.name for p in foreign.iterdir()) == ["chapters", "notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]   # no temporaries left


def test_empty_folder_and_previous_run_are_replaced(tmp_path):
    (tmp_path / "empty").mkdir()
    _publish(tmp_path / "empty", "1")
    assert _version(tmp_path / "empty") == "1"
    with create_run(tmp_path / "run", "finance") as run:
        run.summarize(n=1)
    with create_run(tmp_path / "run", "finance") as run:
        run.summarize(n=2)
    assert load_manifest(tmp_path / "run")["summary"] == {"n": 2}


@pytest.mark.parametrize("out, source, relation", [
    ("data", "data", "is"), ("data/run", "data", "is inside"), ("data/new/run", "data", "is inside"),
    ("ws", "ws/data/tx.parquet", "contains"),
    ("tx.parquet", "tx.parquet", "is")])
def test_output_related_to_an_input_is_refused(tmp_path, out, source, relation):
    (tmp_path / "data").mkdir()
    (tmp_path / "ws" / "data").mkdir(parents=True)
    for f in (tmp_path / "ws" / "data" / "tx.parquet", tmp_path / "tx.parquet", tmp_path / "data" / "a.parquet"):
        f.write_bytes(b"input")
    before = _tree(tmp_path)
    with pytest.raises(DataValidationError, match=f"output .*{out} {relation} the input .*{source}: "
                                                  "choose another --out"):
        with create_run(tmp_path / out, "finance", inputs=[str(tmp_path / source)]):
            pass
    assert _tree(tmp_path) == before                    # not even a parent folder created


def test_a_users_own_dot_old_and_files_are_left_alone(tmp_path):
    (tmp_path / ".report.old").mkdir()
    (tmp_path / ".report.old" / "draft.txt").write_text("mine")
    _publish(tmp_path / "report", "1")              # looks like a crash left it; it did not
    with pytest.raises(DataValidationError, match=r"\.report\.old is in the way: replacing .*report"):
        _publish(tmp_path / "report", "2")
    assert (tmp_path / ".report.old" / "draft.txt").read_text() == "mine"
    assert _version(tmp_path / "report") == "1"
    (tmp_path / "notes").write_text("a file")
    with pytest.raises(DataValidationError, match="notes is not a folder; a folder cannot replace it"):
        _publish(tmp_path / "notes", "1")
    assert (tmp_path / "notes").read_text() == "a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".report.old", "notes", "report"]


def test_model_dir_is_guarded_like_an_input(tmp_path):
    _publish(tmp_path / "model", "weights")
    with pytest.raises(DataValidationError, match="is the input"):
        with create_run(tmp_path / "model", "finance", model=str(tmp_path / "model")):
            pass
    assert _version(tmp_path / "model") == "weights"


def test_files_are_replaced_unless_they_are_an_input(tmp_path):
    old = tmp_path / "scores.parquet"
    old.write_text("an earlier export")
    write_parquet_atomic(pd.DataFrame({"a": [1]}), old, inputs=[tmp_path / "tx.parquet"])
    assert pd.read_parquet(old)["a"].tolist() == [1]
    with pytest.raises(DataValidationError, match="scores.parquet is the input"):
        write_parquet_atomic(pd.DataFrame({"a": [2]}), old, inputs=[old])
    assert pd.read_parquet(old)["a"].tolist() == [1]


# --- crashes (fault injection: the process is SIGKILLed at a chosen system call) ------------

CRASH = """
import os, signal, sys
from core.io import atomic_path

target, version, call, number, when = sys.argv[1:]
count = {"replace": 0, "fsync": 0}
real = {"replace": os.replace, "fsync": os.fsync}

def injected(name):
    def call_it(*args):
        count[name] += 1
        hit = name == call and count[name] == int(number)
        if hit and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = real[name](*args)
        if hit and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        if hit and when == "term":
            os.kill(os.getpid(), signal.SIGTERM)
        return result
    return call_it

os.replace, os.fsync = injected("replace"), injected("fsync")
with atomic_path(target) as tmp:
    tmp.mkdir()
    (tmp / "version.txt").write_text(version)
    (tmp / "data.bin").write_bytes(version.encode() * 1000)
"""

# Replacing a folder: rename 1 moves the old one aside, 2 puts the new one in place,
# 3 moves the old one into the temporary. Which version each kill point must leave:
KILL_POINTS = [("fsync", 1, "before", "old"), ("replace", 1, "before", "old"),
               ("replace", 1, "after", "old"), ("replace", 2, "before", "old"),
               ("replace", 2, "after", "new"), ("replace", 3, "before", "new"),
               ("replace", 3, "after", "new")]


@pytest.mark.parametrize("call, number, when, survivor", KILL_POINTS)
def test_killed_folder_swap_keeps_old_or_new_and_recovers(tmp_path, call, number, when, survivor):
    out = tmp_path / "bundle"
    _publish(out, "old")
    done = _python(CRASH, out, "new", call, number, when)
    done.communicate(timeout=120)
    assert done.returncode == -signal.SIGKILL
    backup = tmp_path / ".bundle.old"
    # Right after the kill: the previous output survives, in place or moved aside intact.
    assert _version(out) in ("old", "new") or _version(backup) == "old"
    recover_interrupted(out)                            # what the next publish does first
    assert _version(out) == survivor and not backup.exists()
    _publish(out, "next")                               # and the next publish cleans up
    assert _version(out) == "next"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


@pytest.mark.parametrize("when, survivor", [("before", "old"), ("after", "new")])
def test_killed_file_replace_keeps_old_or_new(tmp_path, when, survivor):
    script = CRASH.replace('tmp.mkdir()\n    (tmp / "version.txt").write_text(version)\n'
                           '    (tmp / "data.bin").write_bytes(version.encode() * 1000)',
                           "tmp.write_text(version * 1000)")
    out = tmp_path / "scores.json"
    out.write_text("old" * 1000)
    done = _python(script, out, "new", "replace", 1, when)
    done.communicate(timeout=120)
    assert done.returncode == -signal.SIGKILL
    assert out.read_text() == survivor * 1000
    write_text_atomic(out, "next")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.json"]


SLOW_WRITER = """
import sys, time
from core.io import atomic_path

with atomic_path(sys.argv[1]) as tmp:
    tmp.mkdir()
    (tmp / "part.bin").write_bytes(b"x" * 100000)
    print("writing", flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("number", [1, 2])
def test_sigterm_during_the_swap_waits_for_it(tmp_path, number):
    out = tmp_path / "bundle"
    _publish(out, "old")
    done = _python(CRASH, out, "new", "replace", number, "term")
    done.communicate(timeout=120)
    assert done.returncode == 128 + signal.SIGTERM
    assert _version(out) == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_stale_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    done = _python(CRASH, tmp_path / "run", "new", "fsync", 1, "before")   # dies mid-publish
    done.communicate(timeout=120)
    dead = _leftovers(tmp_path, "run")
    assert len(dead) == 1 and (tmp_path / dead[0] / "run" / "data.bin").exists()
    writer = _python(SLOW_WRITER, tmp_path / "live")    # its publish starts by cleaning up
    try:
        assert writer.stdout.readline().strip() == "writing"
        assert _leftovers(tmp_path, "run") == []
        live = _leftovers(tmp_path, "live")
        assert len(live) == 1
        assert remove_stale_temporaries(tmp_path) == []    # the writer is alive: kept
        _publish(tmp_path / "run", "1")
        assert _leftovers(tmp_path, "live") == live
    finally:
        writer.kill()
        writer.communicate(timeout=60)
    _publish(tmp_path / "run", "2")                    # now the writer is gone: cleaned up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_sigterm_removes_the_temporary(tmp_path):
    proc = _python(SLOW_WRITER, tmp_path / "out")
    assert proc.stdout.readline().strip() == "writing"   # the temporary exists now
    assert len(_leftovers(tmp_path, "out")) == 1
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
