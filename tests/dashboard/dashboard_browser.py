"""Driving the served dashboard with Playwright and Debian's Chromium (shared by the
browser test and bench/dashboard.py). Waits use Streamlit's own readiness signals."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from core.net import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
APP_READY = '[data-testid="stApp"][data-test-connection-state="CONNECTED"]'
SCRIPT_DONE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
RENDERED = """() => !document.querySelector('[data-testid="stSkeleton"], [data-stale="true"]')
    && Array.from(document.images).every(image => image.complete)"""


def unmask_command() -> list[str]:
    """The installed ``unmask`` console script (or ``python -m core.cli``)."""
    script = Path(sys.executable).with_name("unmask")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "core.cli"]


@contextlib.contextmanager
def running_dashboard(workspace, log_dir, port: int | None = None, host: str | None = "127.0.0.1",
                      env: dict | None = None, cwd=None):
    """Run ``unmask dashboard`` in the background; yield its URL once healthy.

    ``host=None`` passes no ``--host``: the command's own default; ``env`` and ``cwd``: the
    server's environment and working directory (default: this process's).
    """
    from dashboard.serve import wait_ready

    port = port or free_port()
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "server.log", "w") as log:
        process = subprocess.Popen(
            unmask_command() + ["dashboard", "--workspace", str(workspace), "--port", str(port)]
            + (["--host", host] if host else []),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
            cwd=cwd)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process, timeout=90)
            yield url
        finally:
            process.send_signal(signal.SIGTERM)  # `unmask dashboard` stops its server
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the group this test started
                process.wait()


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def settle(page, text: str | None = None, timeout: float = 60_000) -> None:
    """Wait until the app is connected, ``text`` is visible (if given) and no script runs."""
    page.wait_for_selector(APP_READY, timeout=timeout)
    if text is not None:
        page.get_by_text(text, exact=False).first.wait_for(state="visible", timeout=timeout)
    page.wait_for_selector(SCRIPT_DONE, timeout=timeout)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout)
    # lazily loaded widgets show skeletons, elements of the previous run are marked stale,
    # and st.image pictures arrive separately: wait for all three to be done
    page.wait_for_function(RENDERED, timeout=timeout)


def click_table_row(page, row: int, table_index: int = 0) -> None:
    """Select data-grid row ``row`` (0-based) by clicking its selection checkbox.

    ``st.dataframe`` draws on a canvas, so the click goes to the row's coordinates: a
    header of 35 px, then rows of 35 px; the checkbox column is the first.
    """
    grid = page.locator('[data-testid="stDataFrame"]').nth(table_index)
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 18, box["y"] + 35 + 35 * row + 17)
