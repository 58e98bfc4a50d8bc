"""`unmask demo` and `unmask dashboard`: thin wrappers over ``dashboard.demo`` and
``dashboard.serve``."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from core.errors import UnmaskError
from core.runtime import limit_thread_env
from core.verticals import get as get_vertical, names as vertical_names

from .auth import login_mode, set_password, streamlit_secrets
from .demo import build_workspace, describe
from .serve import (DEFAULT_HOST, check_port, check_streamlit, is_loopback, serve,
                    served_url)
from .workspace import DEFAULT_WORKSPACE

WORKSPACE = click.option("--workspace", "-w", type=click.Path(file_okay=False),
                         default=DEFAULT_WORKSPACE, show_default=True,
                         help="Workspace directory (runs, models, data, reviews.sqlite).")
PORT = click.option("--port", "-p", type=click.IntRange(1, 65535), default=8501,
                    show_default=True, help="Port of the dashboard.")
HOST = click.option("--host", default=DEFAULT_HOST, show_default=True,
                    help="Address to listen on; 0.0.0.0 serves every interface (set a "
                         "password first: anyone who reaches the port can review).")


PROGRESS_EVERY_S = 10.0   # off a terminal: one progress line this often while a vertical builds


def _unmask_as_invoked() -> str:
    """``unmask`` as the user typed it (``.venv/bin/unmask`` works in a fresh shell, where
    a bare ``unmask`` needs the virtual environment activated)."""
    script = Path(sys.argv[0])
    return str(script) if script.name == "unmask" and script.parent != Path() else "unmask"


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class _Progress:
    """An overall bar whose elapsed time ticks every second while a vertical builds (on a
    terminal); elsewhere a line every ``PROGRESS_EVERY_S`` seconds, e.g.
    ``demo: medical 2/3 train 3/8 epoch 3 12/25, 1m20s``, so a log shows the build is alive."""

    def __init__(self, total: int):
        import threading

        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.bar = tqdm(total=total, desc="demo", unit="vertical", disable=None,
                        bar_format="{desc} {n_fmt}/{total_fmt} |{bar}| {elapsed}")
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self.total, self.position, self.started, self.said_at = total, 0, time.monotonic(), 0.0

    def start(self, position: int):
        self.position, self.started = position, time.monotonic()
        self.said_at = self.started

    def tick(self, vertical: str, line: str):
        """The child's progress ``line``: in the bar's label, or printed now and then."""
        label = f"demo: {vertical} {self.position + 1}/{self.total} {line}".rstrip()
        if not self.bar.disable:
            self.bar.set_description(label, refresh=False)
            return
        now = time.monotonic()
        if now - self.said_at >= PROGRESS_EVERY_S:
            self.said_at = now
            click.echo(f"{label}, {_clock(now - self.started)}", err=True)

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
@click.option("--vertical", "verticals", multiple=True, type=click.Choice(vertical_names()),
              help="Build only these verticals (repeatable; default: all of them).")
@click.option("--serve", is_flag=True, help="Serve the dashboard over the workspace afterwards.")
@PORT
@HOST
def demo(workspace, size, seed, verticals, serve, port, host):
    """Build a demo workspace: simulate, train quick models, score and explain.

    Writes finance, medical and driving runs into WORKSPACE; with --serve, then opens
    the review dashboard over it.
    """
    chosen = verticals or vertical_names()
    limit_thread_env()  # the children inherit it before torch or numba start a pool
    if serve:
        check_port(host, port)  # before minutes of building, not after
    click.echo(f"Building a {size} demo workspace in {click.format_filename(workspace)}")
    with _Progress(len(chosen)) as progress:
        def on_start(position, vertical):
            line = (f"[{position + 1}/{len(chosen)}] {vertical}: "
                    f"{get_vertical(vertical).demo_description}")
            progress.say(click.style(line, bold=True), vertical)
            progress.start(position)

        def on_done(result):
            progress.say(click.style(("  failed: " + result.error) if result.error
                                     else f"  done in {result.seconds:.0f} s",
                                     fg="red" if result.error else "green"))
            progress.advance()

        results = build_workspace(workspace, size=size, seed=seed, verticals=chosen,
                                  on_start=on_start, on_done=on_done, on_tick=progress.tick)
    click.secho("\nSummary", bold=True)
    for result in results:
        click.echo("  " + describe(result))
    failed = [r for r in results if r.error]
    if failed:
        for result in failed:
            click.echo(result.details, err=True)
        raise UnmaskError(f"demo failed for {', '.join(r.vertical for r in failed)} "
                          "(details above)")
    click.echo(f"\nOpen it with: {_unmask_as_invoked()} dashboard --workspace "
               f"{click.format_filename(workspace)}")
    if serve:
        _serve(workspace, port, host)


@click.command()
@WORKSPACE
@PORT
@HOST
@click.option("--set-password", "password_user", metavar="USER", default=None,
              help="Set USER's dashboard password (asked for; stored as a salted hash in the "
                   "workspace), which turns login on; then exit.")
def dashboard(workspace, port, host, password_user):
    """Serve the review dashboard over a workspace (reads runs; never trains).

    Without login, anyone who reaches the port can read every run and record reviews
    under any name: the server listens on 127.0.0.1 unless --host says otherwise. Login
    is on once a password is set (--set-password) or Streamlit's secrets.toml has an
    [auth] section (OIDC); reviews are then recorded under the logged-in user.
    """
    if password_user is not None:
        password = click.prompt(f"Password for {password_user}", hide_input=True,
                                confirmation_prompt=True)
        path = set_password(workspace, password_user, password)
        click.echo(f"Password of {password_user} stored in {click.format_filename(path)}; "
                   "the dashboard now asks for a login.")
        return
    _serve(workspace, port, host)


def _serve(workspace, port, host):
    check_streamlit()
    check_port(host, port)
    login = login_mode(workspace, streamlit_secrets())
    click.echo(f"Serving {click.format_filename(workspace)} at {served_url(host, port)} "
               f"({'login: ' + login if login else 'no login'}; Ctrl+C stops)")
    if login is None and not is_loopback(host):
        click.echo(f"warning: {host} is reachable from other machines and the dashboard has no "
                   "login: anyone who reaches it can read every run and record reviews under "
                   "any name (unmask dashboard --set-password USER turns login on)", err=True)
    code = serve(workspace, port, host)
    if code not in (0, -2, -15, 130, 143):
        raise UnmaskError(f"the dashboard server stopped with exit code {code}")
