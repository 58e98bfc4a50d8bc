"""`unmask driving`: thin CLI over the driving Python API."""
import click


@click.group()
def driving():
    """driving commands."""
