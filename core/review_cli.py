"""``unmask review``: tools for the review store (core.review_store)."""
from __future__ import annotations

from pathlib import Path

import click

from .errors import DataValidationError
from .review_store import STORE_NAME, ReviewStore


@click.group()
def review():
    """The review store: reviewers' decisions, append-only and hash-chained."""


@review.command()
@click.option("--workspace", type=click.Path(file_okay=False), default=None,
              help=f"Workspace whose {STORE_NAME} to check.")
@click.option("--store", type=click.Path(dir_okay=False), default=None, help="The store file itself.")
def verify(workspace, store):
    """Check the hash chain: prints "N rows, chain intact" or the first broken row (exit 1)."""
    if (workspace is None) == (store is None):
        raise DataValidationError("give exactly one of --workspace DIR or --store FILE")
    path = Path(store) if store else Path(workspace) / STORE_NAME
    result = ReviewStore(path).verify()
    click.echo(f"{path}: {result.message}")
    if not result.ok:
        raise SystemExit(1)
