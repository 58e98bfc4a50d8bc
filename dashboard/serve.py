"""Serving the dashboard: the ``streamlit run`` command line and its process."""
from __future__ import annotations

import errno
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from core.errors import UnmaskError

from .workspace import ENV_VAR

APP = Path(__file__).with_name("app.py")
# Loopback only unless asked: the dashboard shows every run and records reviews, and
# Streamlit's own default listens on every interface.
DEFAULT_HOST = "127.0.0.1"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is reachable from this machine only."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback
                                   for a in addresses)


INTERPRETER_FLAGS = ("-P",)


def served_url(host: str, port: int) -> str:
    """The URL to open: ``host``'s own, or this machine's name when it listens on every
    interface."""
    name = socket.gethostname() if host in WILDCARD_HOSTS else host
    if ":" in name and not name.startswith("["):       # an IPv6 literal
        name = f"[{name}]"
    return f"http://{name}:{int(port)}"


def streamlit_command(workspace, port: int = 8501, host: str = DEFAULT_HOST) -> list[str]:
    """The command that serves the app over ``workspace`` (headless, no usage statistics,
    listening on ``host`` only), through :mod:`dashboard.launch`.

    The workspace also travels as the script argument ``--workspace`` so the app finds it
    even when the environment variable is not passed on.
    """
    # dashboard.launch is `streamlit run` that imports the pages' modules meanwhile; -P keeps
    # the working directory off the import path, so a `dashboard/` or `core/` folder where
    # the user happens to stand is never imported in place of the installed package
    command = [sys.executable, *INTERPRETER_FLAGS, "-m", "dashboard.launch", "run", str(APP),
               "--server.port", str(int(port)), "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
               "--server.runOnSave", "false", "--client.toolbarMode", "viewer",
               "--theme.base", "light", "--server.address", host]
    return command + ["--", "--workspace", str(Path(workspace).resolve())]


def server_environment(workspace) -> dict:
    env = dict(os.environ)
    env[ENV_VAR] = str(Path(workspace).resolve())
    env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    return env


def check_streamlit() -> None:
    """Fail with a clear message when the dashboard extra is not installed."""
    import importlib.util

    missing = [m for m in ("streamlit", "altair") if importlib.util.find_spec(m) is None]
    if missing:
        raise UnmaskError(f"the dashboard needs {', '.join(missing)}: "
                          "pip install 'unmask[dashboard]'")


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on ``port`` at ``host``: a test bind on every
    address ``host`` resolves to, as the server will bind (SO_REUSEADDR, so a port left in
    TIME_WAIT by a server that just stopped does not count as taken)."""
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except OSError:
        return False  # an unknown host: the server's own error says so
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as err:
                if err.errno == errno.EADDRINUSE:
                    return True      # other errors (an address not on this machine): the
    return False                     # server's own message says what is wrong


def check_port(host: str, port: int, tries: int = 20) -> None:
    """Refuse a port another server holds, naming the next free one (of ``tries``).

    Streamlit itself would print its "serving at" banner first and fail afterwards.

    Raises:
        UnmaskError: ``port`` is taken on ``host``.
    """
    if not port_in_use(host, port):
        return
    free = next((p for p in range(port + 1, min(port + 1 + tries, 65536))
                 if not port_in_use(host, p)), None)
    suggestion = f"--port {free} is free" if free else "choose another with --port"
    raise UnmaskError(f"port {port} on {host} is already in use (another dashboard?); "
                      f"{suggestion}")


def start(workspace, port: int = 8501, host: str = DEFAULT_HOST, **popen) -> subprocess.Popen:
    """Start the server in the background; the caller stops it (``terminate``)."""
    check_streamlit()
    return subprocess.Popen(streamlit_command(workspace, port, host),
                            env=server_environment(workspace), **popen)


def wait_ready(url: str, process: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    """Wait for Streamlit's ``/_stcore/health`` endpoint to answer ``ok``.

    Raises:
        UnmaskError: the process ended or the server did not come up within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    health = url.rstrip("/") + "/_stcore/health"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise UnmaskError(f"the dashboard server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(health, timeout=2) as answer:
                if answer.status == 200 and answer.read().strip() == b"ok":
                    return
        except OSError:
            pass
        time.sleep(0.1)  # polling interval of the health check
    raise UnmaskError(f"the dashboard did not answer at {health} within {timeout:.0f} s")


def serve(workspace, port: int = 8501, host: str = DEFAULT_HOST) -> int:
    """Serve in the foreground until interrupted (Ctrl+C or SIGTERM, both passed on to the
    server); returns the server's exit code."""
    process = start(workspace, port, host)
    previous = signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
