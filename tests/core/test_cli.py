"""The root command: --help lists the verticals, --version works, errors are one line."""
import subprocess
import sys

import pytest

from core import __version__
from core.cli import main


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
