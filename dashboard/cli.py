"""`unmask demo` and `unmask dashboard`."""
import click


@click.command()
def demo():
    """Build a demo workspace from the built-in simulators."""
    raise click.ClickException("not available yet")


@click.command()
def dashboard():
    """Serve the review dashboard over a workspace."""
    raise click.ClickException("not available yet")
