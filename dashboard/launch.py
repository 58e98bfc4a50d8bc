"""The dashboard's server process: Streamlit's own command line (``python -m dashboard.launch
run app.py ...`` takes ``streamlit run``'s arguments), preparing the pages' first run while
the server waits for its first visitor.

Streamlit imports nothing of an app before a browser connects, so the first visitor would
wait for pandas, pyarrow, DuckDB and the verticals to import: 0.7-1.7 s on a busy 2-core
machine, more than a bare Streamlit page takes to render. What no page's first run needs
(Altair: the CT and drive charts; scipy: a run's first drift test) is imported later: on 2
busy cores, importing it while the first page loads slowed that page by ~0.9 s (the import
holds the interpreter the server also serves the page's scripts from). The page's scripts
themselves are answered from memory (:mod:`dashboard.page_assets`) and without Nagle's
delay (``serve_without_delayed_writes``).
"""
from __future__ import annotations

import contextlib
import importlib
import socket
import sys
import threading
import time

from dashboard.page_assets import PageAssets

# What the pages' first run imports, heaviest first; each failure is left to the page that
# needs it.
PRELOAD = ("pandas", "pyarrow.parquet", "duckdb", "dashboard.ui", "dashboard.plots",
           "dashboard.export_data", "finance.reasons", "finance.spec", "medical.spec",
           "driving.spec")
# Imported at the earliest LATER_AFTER_S seconds after the server started, and once no page
# has run for QUIET_S seconds (the browser fetches a page's scripts from this process for
# about a second after its run): never while a visitor waits.
LATER = ("altair", "scipy.stats")
LATER_AFTER_S = 10.0
QUIET_S = 2.0
SCRIPT_THREAD = "ScriptRunner.scriptThread"   # the thread Streamlit runs each page run in


def _runtime_started(timeout: float = 60.0) -> bool:
    """Wait until Streamlit's runtime exists: ``st.cache_data`` functions defined before it
    would fall back to a private in-memory cache."""
    from streamlit import runtime

    deadline = time.monotonic() + timeout
    while not runtime.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # polling interval; the runtime starts within a second or two
    return True


def settle_first_element() -> None:
    """Streamlit's once-per-process check on the first element any session writes, done now.

    The first ``st.*`` element of a server process asks whether it runs in a REPL
    (``inspect.stack()``, which resolves the file of every imported module: 0.3-0.4 s on a busy
    2-core machine once the pages' ~2,000 modules are in) and would charge the first
    visitor for it. With the runtime up and no REPL it prints nothing, only marks it done.
    """
    from streamlit import delta_generator  # lazy: the dashboard extra

    check = getattr(delta_generator, "_maybe_print_use_warning", None)  # absent: nothing to do
    if check is not None:
        check()


def _import(modules) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an extra not installed: its page says so itself
            pass


def prepare_first_run() -> None:
    """What a page's first run would otherwise pay: Streamlit's first-element check (first:
    it costs least with few modules imported), the pages' imports and the queue's database
    (its first query would pay 50-170 ms to open it)."""
    settle_first_element()
    _import(PRELOAD)
    try:
        from dashboard import finance_data  # lazy: pandas, DuckDB: after the server starts

        finance_data.open_database()
    except Exception:  # noqa: BLE001 - the finance extra missing: the page says so itself
        pass


def wait_until_quiet(seconds: float = QUIET_S, poll_s: float = 0.05) -> None:
    """Return once no page run (Streamlit's script thread) has been alive for ``seconds``.

    Polled often: an alert opened is a run of ~0.1 s, which a slower poll would miss."""
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < seconds:
        if any(thread.name == SCRIPT_THREAD for thread in threading.enumerate()):
            quiet_since = time.monotonic()
        time.sleep(poll_s)


def preload() -> None:
    """In the server's background thread: once the runtime is up, prepare the pages' first
    run; ``LATER_AFTER_S`` seconds after the start, when no page is running, import
    ``LATER``."""
    started = time.monotonic()
    if not _runtime_started():
        return
    prepare_first_run()
    time.sleep(max(0.0, LATER_AFTER_S - (time.monotonic() - started)))
    wait_until_quiet()
    _import(LATER)


def _wrap_streamlit(module_name: str, attribute: str, wrap) -> bool:
    """Replace Streamlit's ``module_name.attribute`` by ``wrap(original)``, in this process;
    False, changing nothing, where the installed Streamlit has no such module or attribute
    (it then serves as it would by itself)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    original = getattr(module, attribute, None)
    if original is None:
        return False
    setattr(module, attribute, wrap(original))
    return True


def serve_page_assets() -> bool:
    """Put :class:`dashboard.page_assets.PageAssets` (the browser's scripts from memory) in
    front of Streamlit's server, whose middleware list is made when the server starts."""

    def with_page_assets(streamlit_middleware):
        def middleware(*args, **kwargs):
            own = streamlit_middleware(*args, **kwargs)
            try:
                from starlette.middleware import Middleware  # lazy: the dashboard extra
                from streamlit import config, file_util

                base_path = config.get_option("server.baseUrlPath") or ""
                static_dir = file_util.get_static_dir()
            except (ImportError, AttributeError):  # a Streamlit built otherwise: its own list
                return own
            return [Middleware(PageAssets, static_dir=static_dir, base_path=base_path), *own]
        return middleware

    return _wrap_streamlit("streamlit.web.server.starlette.starlette_app",
                           "create_streamlit_middleware", with_page_assets)


def serve_without_delayed_writes() -> bool:
    """Turn Nagle's algorithm off on the server's listening socket, so on every connection
    it accepts (they inherit the option).

    Streamlit binds the socket itself, without naming TCP as its protocol, so asyncio's
    own TCP_NODELAY for accepted connections is skipped; uvicorn writes a response's
    headers and body separately, and on a kept-alive connection the second write then waits
    for the browser's delayed acknowledgement: ~40 ms for each of a page's small scripts.
    """

    def without_delayed_writes(bind):
        def bind_listening(*args, **kwargs):
            listening = bind(*args, **kwargs)
            # a speed-up only: a socket it does not apply to is served as Streamlit bound it
            with contextlib.suppress(OSError, AttributeError):
                listening.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return listening
        return bind_listening

    return _wrap_streamlit("streamlit.web.server.starlette.starlette_server", "_bind_socket",
                           without_delayed_writes)


def main() -> None:
    from streamlit.web import cli  # lazy: the dashboard extra

    serve_page_assets()
    serve_without_delayed_writes()
    threading.Thread(target=preload, daemon=True, name="unmask-preload").start()
    sys.exit(cli.main(prog_name="streamlit"))


if __name__ == "__main__":
    main()
