"""The parity tolerance defaults and the click options every ``export`` command shares.

Kept apart from :mod:`core.export` (which imports torch) so that a vertical's CLI can use
them at import time and ``unmask finance --help`` stays fast.
"""
from __future__ import annotations

import click

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
