"""`unmask finance`: thin CLI over the finance Python API."""
import click


@click.group()
def finance():
    """finance commands."""
