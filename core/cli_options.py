"""Click options the verticals' commands share: ``--device``, ``--precision``, ``--quiet`` on
every long-running command, and ``--format``/``--out``/``--atol``/``--rtol`` on ``export``
(kept apart from :mod:`core.export`, which imports torch, so ``--help`` stays fast).

Declared once so that the rule (and its help text) is the same in finance, medical and
driving. ``--device`` is resolved while parsing (``core.runtime.choose_device``): a GPU
that is not there, or bf16 without one, is refused with one ``Error:`` line and exit
code 2 before any other option or data is read, and the command receives the resolved
name (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

Example:
    >>> @click.command()
    ... @runtime_options
    ... def train(device, precision, quiet): ...
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import click

from .errors import DataValidationError, UnmaskWarning, caught_warnings
from .runs import new_run_id
from .runtime import DEVICE_HELP, PRECISIONS, check_precision, choose_device


# Both options are eager, so both are checked before any other option (paths that must
# exist, ...); whichever of the two click processes second checks the pair.
def _device(ctx, param, value):
    device = choose_device(value)
    if "precision" in ctx.params:
        check_precision(ctx.params["precision"], device)
    return str(device)


def _precision(ctx, param, value):
    if "device" in ctx.params:
        check_precision(value, choose_device(ctx.params["device"]))
    return value


def runtime_options(command):
    """Add ``--device``, ``--precision`` and ``--quiet`` to a click command."""
    command = click.option("--quiet", is_flag=True,
                           help="No progress bars (they go to stderr, and only to a terminal).")(command)
    command = click.option("--precision", type=click.Choice(PRECISIONS), default="fp32",
                           show_default=True, is_eager=True, callback=_precision,
                           help="bf16: autocast on CUDA (refused on CPU).")(command)
    return click.option("--device", default="auto", show_default=True, is_eager=True,
                        callback=_device, help=f"Where the model runs: {DEVICE_HELP}.")(command)


def show_progress(quiet: bool) -> bool | None:
    """``progress`` argument of the Python API for ``--quiet``: never, or only on a terminal."""
    return False if quiet else None


@contextlib.contextmanager
def plain_warnings(show: bool = True):
    """Print each :class:`core.errors.UnmaskWarning` raised inside as one ``warning:`` line
    on stderr, once however often it was raised (one input read twice warns twice), other
    warnings as Python shows them; ``show=False`` drops them (under torchrun every rank fits
    the same data, and rank 0 says it once). An error raised in the block goes on after
    the warnings before it are shown."""
    def print_once(caught):
        shown = set()
        for w in caught:
            if issubclass(w.category, UnmaskWarning):
                if show and str(w.message) not in shown:
                    click.echo(f"warning: {w.message}", err=True)
                shown.add(str(w.message))
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)

    with caught_warnings(print_once):
        yield


DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


def export_options(command):
    """Add ``--format onnx``, ``--out FILE.onnx``, ``--atol`` and ``--rtol`` to ``command``."""
    options = [
        click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx",
                     show_default=True),
        click.option("--out", type=click.Path(dir_okay=False), required=True,
                     help="FILE.onnx to write."),
        click.option("--atol", type=click.FloatRange(min=0), default=DEFAULT_ATOL,
                     show_default=True, help="Parity tolerance: absolute part."),
        click.option("--rtol", type=click.FloatRange(min=0), default=DEFAULT_RTOL,
                     show_default=True, help="Parity tolerance: relative part."),
    ]
    for option in reversed(options):  # decorators apply bottom-up: keep this order in --help
        command = option(command)
    return command


def run_destination(command):
    """``--out RUN_DIR`` or ``--workspace DIR``: where a scoring command writes its run. A
    workspace gets a new run under ``DIR/runs/<vertical>/``, which the dashboard lists;
    resolve the pair with :func:`resolve_run_dir`."""
    command = click.option("--workspace", type=click.Path(file_okay=False), default=None,
                           help="Write a new run into this workspace (what `unmask dashboard "
                                "--workspace` serves) instead of --out.")(command)
    return click.option("--out", type=click.Path(file_okay=False), default=None,
                        help="Run directory to write (or give --workspace).")(command)


def resolve_run_dir(out, workspace, vertical: str) -> str:
    """The run directory ``--out`` names, or a new one under ``workspace/runs/<vertical>/``.

    Raises:
        DataValidationError: neither or both given.
    """
    if (out is None) == (workspace is None):
        raise DataValidationError("give exactly one of --out RUN_DIR or --workspace DIR")
    return str(out) if out is not None else str(Path(workspace) / "runs" / vertical / new_run_id())
