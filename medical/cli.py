"""`unmask medical`: thin CLI over the medical Python API."""
import click


@click.group()
def medical():
    """medical commands."""
