"""The root command: --help lists the verticals, --version works, every error is one line
(--debug: the traceback), Ctrl-C is "Aborted." with exit code 130, each of our warnings is
one line."""
import subprocess
import sys
import warnings

import click
import pytest

import core.cli as cli_module
from core import DataValidationError, __version__
from core.cli import main
from core.cli_options import plain_warnings
from core.errors import UnmaskWarning, recorded_warnings
from core.io import atomic_path


def test_help_lists_verticals():
    done = subprocess.run([sys.executable, "-m", "core.cli", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name in ("finance", "medical", "driving"):
        assert name in done.stdout


def test_version(capsys):
    main(["--version"])
    assert f"unmask, version {__version__}" in capsys.readouterr().out


def test_unknown_command_fails(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["no-such-command"])
    assert exit_info.value.code == 2


class _EntryPoint:
    def __init__(self, command):
        self.command = command

    def load(self):
        return self.command


@pytest.fixture
def failing(monkeypatch, tmp_path):
    """``unmask fail KIND``: publishes into tmp_path/out and fails half-way with KIND."""
    errors = {"internal": lambda: RuntimeError("boom"), "interrupt": KeyboardInterrupt,
              "missing": lambda: open(tmp_path / "no-such.parquet"),
              "ours": lambda: DataValidationError("tx.parquet: column 'amount', row 3: -1")}

    @click.command()
    @click.argument("kind")
    def fail(kind):
        with atomic_path(tmp_path / "out") as tmp:
            tmp.write_text("half")
            raise errors[kind]()

    monkeypatch.setattr(cli_module, "_command_entry_points", lambda: {"fail": _EntryPoint(fail)})
    return tmp_path


@pytest.mark.parametrize("kind, code, line", [
    ("internal", 1, "Error: internal error: RuntimeError: boom (run with --debug for the traceback)"),
    ("missing", 2, "Error: No such file or directory: {tmp}/no-such.parquet (run with --debug for "
                   "the traceback)"),
    ("ours", 2, "Error: tx.parquet: column 'amount', row 3: -1"),
    ("interrupt", 130, "Aborted.")])
def test_every_error_is_one_line_and_leaves_no_temporary(failing, capsys, kind, code, line):
    with pytest.raises(SystemExit) as exit_info:
        main(["fail", kind])
    assert exit_info.value.code == code
    err = capsys.readouterr().err.strip()
    assert err == line.format(tmp=failing)
    assert list(failing.iterdir()) == []


def test_debug_shows_the_traceback(failing):
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", "fail", "internal"])
    with pytest.raises(DataValidationError):
        main(["--debug", "fail", "ours"])


def test_plain_warnings_says_each_of_ours_once_on_one_line(capsys):
    """One input read twice warns twice; the user reads the line once."""
    with plain_warnings():
        for message in ("cal/: left out 1 case", "cal/: left out 1 case", "run: no alerts"):
            warnings.warn(message, UnmaskWarning)
    assert capsys.readouterr().err == "warning: cal/: left out 1 case\nwarning: run: no alerts\n"


def test_plain_warnings_shows_the_warnings_before_an_error(capsys):
    """find_cases warns of an image listed twice, then refuses two cases of one name: the
    user reads the warning and the error."""
    with pytest.raises(DataValidationError, match="occur twice"):
        with plain_warnings():
            warnings.warn("cal/: left out 1 case", UnmaskWarning)
            raise DataValidationError("cal/: case names occur twice: a")
    assert capsys.readouterr().err == "warning: cal/: left out 1 case\n"


def test_recorded_warnings_keep_the_warnings_before_an_error():
    with pytest.warns(UnmaskWarning, match="left out 1 case") as caught:
        with pytest.raises(DataValidationError, match="occur twice"):
            with recorded_warnings() as lines:
                warnings.warn("images/: left out 1 case", UnmaskWarning)
                raise DataValidationError("images/: case names occur twice: a")
    assert lines == ["images/: left out 1 case"]
    assert len(caught) == 1


def test_recorded_warnings_keep_our_lines_and_raise_every_warning_on():
    """A run records what it warned about reading its input; the CLI still prints it."""
    with pytest.warns(Warning) as caught:
        with recorded_warnings() as lines:
            warnings.warn("images/: left out 1 case", UnmaskWarning)
            warnings.warn("a reader's notice", RuntimeWarning)
    assert lines == ["images/: left out 1 case"]           # only ours are the run's lines
    assert [(w.category, str(w.message)) for w in caught] == [
        (UnmaskWarning, "images/: left out 1 case"), (RuntimeWarning, "a reader's notice")]
