"""The ``unmask`` command. Sub-commands come from the ``unmask.commands`` entry points,
so ``core`` never imports a vertical; each vertical's CLI is a thin layer over its API."""
from __future__ import annotations

import sys
from importlib.metadata import entry_points

import click

from . import __version__
from .errors import UnmaskError

ORDER = ("demo", "dashboard", "finance", "medical", "driving")


def _command_entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group="unmask.commands")}


class _EntryPointGroup(click.Group):
    """Loads a sub-command only when it is used (keeps ``unmask --help`` fast)."""

    def list_commands(self, ctx):
        names = set(_command_entry_points())
        return [n for n in ORDER if n in names] + sorted(names - set(ORDER))

    def get_command(self, ctx, name):
        ep = _command_entry_points().get(name)
        return ep.load() if ep is not None else None


@click.group(cls=_EntryPointGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="unmask")
def cli():
    """unmask: anomaly detection by masked reconstruction.

    Verticals: finance (card fraud), medical (CT), driving (drive logs); `demo` builds a
    workspace from the built-in simulators and `dashboard` serves it.
    """


def main(argv=None):
    """Console entry point: user errors print one line, not a traceback."""
    try:
        cli.main(args=argv, prog_name="unmask", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except UnmaskError as err:
        click.echo(f"Error: {err}", err=True)
        sys.exit(2)
    except FileNotFoundError as err:
        click.echo(f"Error: file not found: {err.filename or err}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
