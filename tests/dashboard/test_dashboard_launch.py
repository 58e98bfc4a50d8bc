"""The server's preparation of the pages' first run (``dashboard.launch``), in a fresh
interpreter: what it imports and what it settles before the first visitor."""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
from streamlit import delta_generator
import dashboard.launch as launch
from dashboard import finance_data
launch.prepare_first_run()
print(json.dumps({
    "modules": {name: name in sys.modules for name in ("pandas", "duckdb", "dashboard.ui",
                                                       "altair", "scipy")},
    "first_element_checked": delta_generator._use_warning_has_been_displayed,
    "database_open": finance_data._DATABASE is not None}))
"""


def test_the_first_run_is_prepared_without_what_it_does_not_need():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "UNMASK_NUM_THREADS": "1",
           # no runtime in this probe: Streamlit would warn that it is not `streamlit run`
           "STREAMLIT_GLOBAL_SHOW_WARNING_ON_DIRECT_EXECUTION": "false"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout.strip().splitlines()[-1])
    # what the queue's first run imports is in; Altair (CT and drive charts) and scipy (a
    # run's first drift test) are not: importing them slowed the first page on busy cores
    assert state["modules"] == {"pandas": True, "duckdb": True, "dashboard.ui": True,
                                "altair": False, "scipy": False}
    # Streamlit's once-per-process stack walk on the first element, done by the server
    assert state["first_element_checked"] is True
    assert state["database_open"] is True


def test_the_later_imports_wait_for_a_running_page_to_end():
    from dashboard import launch

    started = time.monotonic()
    page_run = threading.Thread(target=time.sleep, args=(1.0,), name=launch.SCRIPT_THREAD)
    page_run.start()
    launch.wait_until_quiet(0.5, poll_s=0.05)
    waited = time.monotonic() - started
    page_run.join()
    assert waited >= 1.0 + 0.5 - 0.1      # the run's second, then half a second of quiet


def test_the_servers_connections_send_without_nagles_delay(monkeypatch):
    """Streamlit binds its listening socket itself (no protocol named: asyncio then skips its
    own TCP_NODELAY); ``dashboard.launch`` turns Nagle off there, and every connection the
    server accepts inherits it."""
    import socket

    from streamlit.web.server.starlette import starlette_server

    from dashboard import launch

    # restored after the test: the patch is for the server process
    monkeypatch.setattr(starlette_server, "_bind_socket", starlette_server._bind_socket)
    assert launch.serve_without_delayed_writes() is True
    listening = starlette_server._bind_socket("127.0.0.1", 0, 8)
    with listening, socket.create_connection(listening.getsockname(), timeout=5):
        listening.setblocking(True)
        accepted, _ = listening.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_a_streamlit_built_otherwise_is_left_as_it_is():
    """Where the installed Streamlit has no such module or function, the server is Streamlit's
    own: nothing is replaced and nothing fails."""
    from dashboard import launch

    assert launch._wrap_streamlit("streamlit.no_such_module", "x", lambda f: 1 / 0) is False
    assert launch._wrap_streamlit("streamlit.web.server.starlette.starlette_server",
                                  "no_such_function", lambda f: 1 / 0) is False


def test_the_page_assets_stand_in_front_of_streamlits_own_middleware(monkeypatch):
    """The replaced middleware list keeps Streamlit's own, whatever it is called with, with
    :class:`PageAssets` first."""
    from streamlit.web.server.starlette import starlette_app

    from dashboard import launch
    from dashboard.page_assets import PageAssets

    asked = []

    def streamlit_middleware(*args, **kwargs):
        asked.append((args, kwargs))
        return ["streamlit's own"]

    monkeypatch.setattr(starlette_app, "create_streamlit_middleware", streamlit_middleware)
    assert launch.serve_page_assets() is True
    made = starlette_app.create_streamlit_middleware("a later argument", option=1)
    assert made[0].cls is PageAssets and made[1:] == ["streamlit's own"]
    assert asked == [(("a later argument",), {"option": 1})]
