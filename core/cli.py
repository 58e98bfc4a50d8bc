"""The ``unmask`` command. Sub-commands come from the ``unmask.commands`` entry points,
so ``core`` never imports a vertical; each vertical's CLI is a thin layer over its API.
Core's own sub-commands (``review``) are added directly.

Every failure ends as one line on stderr: ``Error: ...`` with exit code 2 for the user's
errors (bad input, a missing or unwritable file) and 1 for unmask's own; ``unmask --debug``
shows the traceback instead. Ctrl-C prints ``Aborted.`` (exit 130) and SIGTERM exits with
143, both after temporaries are deleted.
"""
from __future__ import annotations

import difflib
import sys
from importlib.metadata import entry_points

import click

from . import __version__, verticals
from .errors import UnmaskError
from .io import terminate_as_exit
from .review_cli import review
from .runtime import limit_thread_env



def _order() -> tuple[str, ...]:
    """Help order: the workspace commands, the verticals (their specs' order), review."""
    return ("demo", "dashboard", *verticals.names(), "review")


def _command_entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group="unmask.commands")}


class _EntryPointGroup(click.Group):
    """Loads a sub-command only when it is used (keeps ``unmask --help`` fast)."""

    def list_commands(self, ctx):
        names = set(_command_entry_points()) | set(self.commands)
        order = _order()
        return [n for n in order if n in names] + sorted(names - set(order))

    def get_command(self, ctx, name):
        if name in self.commands:
            return self.commands[name]
        ep = _command_entry_points().get(name)
        return ep.load() if ep is not None else None

    def resolve_command(self, ctx, args):
        """As click's, but a mistyped name is answered with the closest command names:
        click suggests only among ``self.commands``, which holds just the loaded ones."""
        name = click.utils.make_str(args[0])
        if not name.startswith("-") and self.get_command(ctx, name) is None:
            close = difflib.get_close_matches(name, self.list_commands(ctx))
            hint = f" Did you mean {close[0]!r}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)


@click.group(cls=_EntryPointGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unmask")
@click.option("--debug", is_flag=True, help="On an error, show the full Python traceback.")
@click.pass_obj
def cli(state, debug):
    """unmask: anomaly detection by masked reconstruction.

    Verticals: finance (card fraud), medical (CT), driving (drive logs); `demo` builds a
    workspace from the built-in simulators and `dashboard` serves it; `review` checks the
    review store.
    """
    if state is not None:
        state["debug"] = debug


cli.add_command(review)


def _describe(err: Exception) -> tuple[str, int]:
    """One line for an exception that is not unmask's own, and its exit code."""
    if isinstance(err, OSError):  # a missing, unreadable or unwritable file: the user's to fix
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror or err}{where}", 2
    return f"internal error: {type(err).__name__}: {err}", 1


def main(argv=None):
    """Console entry point: every error prints one line, not a traceback (see above)."""
    state = {"debug": False}
    limit_thread_env()  # before torch, numba or OpenMP start their pools
    try:
        with terminate_as_exit():
            cli.main(args=argv, prog_name="unmask", standalone_mode=False, obj=state)
    except click.exceptions.Abort as err:
        click.echo("Aborted.", err=True)
        sys.exit(130 if isinstance(err.__cause__, KeyboardInterrupt) else 1)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except UnmaskError as err:
        if state["debug"]:
            raise
        click.echo(f"Error: {err}", err=True)
        sys.exit(2)
    except Exception as err:
        if state["debug"]:
            raise
        message, code = _describe(err)
        click.echo(f"Error: {message} (run with --debug for the traceback)", err=True)
        sys.exit(code)


if __name__ == "__main__":
    main()
