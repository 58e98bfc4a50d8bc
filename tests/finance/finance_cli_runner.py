"""The `unmask` entry point run in-process, as a user's shell would see it."""
import contextlib
import io

from core.cli import main


def run_cli(*args) -> tuple[int, str, str]:
    """Run ``unmask ARGS``; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
            code = 0
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()
