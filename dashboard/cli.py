"""`unmask demo` and `unmask dashboard`: thin wrappers over ``dashboard.demo`` and
``dashboard.serve``."""
from __future__ import annotations

import click

from core.errors import UnmaskError
from core.runs import VERTICALS

from .workspace import DEFAULT_WORKSPACE

WORKSPACE = click.option("--workspace", "-w", type=click.Path(file_okay=False),
                         default=DEFAULT_WORKSPACE, show_default=True,
                         help="Workspace directory (runs, models, data, reviews.sqlite).")
PORT = click.option("--port", "-p", type=click.IntRange(1, 65535), default=8501,
                    show_default=True, help="Port of the dashboard.")
ADDRESS = click.option("--address", default=None,
                       help="Address to listen on (default: Streamlit's, all interfaces).")


class _Progress:
    """An overall bar whose elapsed time ticks every second while a vertical builds (on a
    terminal; elsewhere only the step lines are printed)."""

    def __init__(self, total: int):
        import threading

        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.bar = tqdm(total=total, desc="demo", unit="vertical", disable=None,
                        bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {elapsed}")
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)

    def _tick(self):
        while not self._stop.wait(1.0):
            self.bar.refresh()

    def say(self, line: str, vertical: str | None = None):
        if self.bar.disable:
            click.echo(line)  # strips the colours when not on a terminal
        else:
            self._tqdm.write(line)
        if vertical is not None:
            self.bar.set_description(f"demo: {vertical}")

    def advance(self):
        self.bar.update(1)

    def __enter__(self):
        self._ticker.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._ticker.join()
        self.bar.close()


@click.command()
@WORKSPACE
@click.option("--size", type=click.Choice(["small", "tiny"]), default="small", show_default=True,
              help="small: the demo (under 10 minutes on 2 cores); tiny: seconds, for tests.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--vertical", "verticals", multiple=True, type=click.Choice(VERTICALS),
              help="Build only these verticals (repeatable; default: all three).")
@click.option("--serve", is_flag=True, help="Serve the dashboard over the workspace afterwards.")
@PORT
@ADDRESS
def demo(workspace, size, seed, verticals, serve, port, address):
    """Build a demo workspace: simulate, train quick models, score and explain.

    Writes finance, medical and driving runs into WORKSPACE; with --serve, then opens
    the review dashboard over it.
    """
    from .demo import WHAT, build_workspace, describe

    chosen = verticals or VERTICALS
    click.echo(f"Building a {size} demo workspace in {click.format_filename(workspace)}")
    with _Progress(len(chosen)) as progress:
        def on_start(position, vertical):
            progress.say(click.style(f"[{position + 1}/{len(chosen)}] {vertical}: "
                                     f"{WHAT[vertical]}", bold=True), vertical)

        def on_done(result):
            progress.say(click.style(("  failed: " + result.error) if result.error
                                     else f"  done in {result.seconds:.0f} s",
                                     fg="red" if result.error else "green"))
            progress.advance()

        results = build_workspace(workspace, size=size, seed=seed, verticals=chosen,
                                  on_start=on_start, on_done=on_done)
    click.secho("\nSummary", bold=True)
    for result in results:
        click.echo("  " + describe(result))
    failed = [r for r in results if r.error]
    if failed:
        for result in failed:
            click.echo(result.details, err=True)
        raise UnmaskError(f"demo failed for {', '.join(r.vertical for r in failed)} "
                          "(details above)")
    click.echo(f"\nOpen it with: unmask dashboard --workspace {click.format_filename(workspace)}")
    if serve:
        _serve(workspace, port, address)


@click.command()
@WORKSPACE
@PORT
@ADDRESS
def dashboard(workspace, port, address):
    """Serve the review dashboard over a workspace (reads runs; never trains)."""
    _serve(workspace, port, address)


def _serve(workspace, port, address):
    from .serve import check_streamlit, serve

    check_streamlit()
    click.echo(f"Serving {click.format_filename(workspace)} at http://localhost:{port} "
               "(Ctrl+C stops)")
    code = serve(workspace, port, address)
    if code not in (0, -2, -15, 130, 143):
        raise UnmaskError(f"the dashboard server stopped with exit code {code}")
