"""Screenshots of the three review pages at 1440 x 900 (what is above the fold), for the README.

Serves a demo workspace with `unmask dashboard` and drives Debian's Chromium with Playwright
(the dashboard tests' helpers): the finance queue with its top alert open, the CT viewer
on its first case (scrolled to the case), the drive replay on its most anomalous frame
(scrolled to its error map and legends).

Usage:
    .venv/bin/unmask demo --size small --workspace /tmp/ws
    .venv/bin/python docs/screenshots/take.py /tmp/ws        # writes docs/screenshots/*.png
"""
from __future__ import annotations

import importlib.util
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VIEWPORT = {"width": 1440, "height": 900}
WAIT_MS = 300_000  # a busy machine renders slowly


def _browser_helpers():
    """tests/dashboard/dashboard_browser.py, loaded by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "dashboard_browser", ROOT / "tests" / "dashboard" / "dashboard_browser.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(workspace: str) -> None:
    from playwright.sync_api import sync_playwright

    ui = _browser_helpers()
    with tempfile.TemporaryDirectory() as logs, ui.running_dashboard(workspace, logs) as url, \
            sync_playwright() as p:
        browser = ui.launch(p)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url + "/finance")
            ui.settle(page, "matching transactions", WAIT_MS)
            ui.click_table_row(page, 0)
            page.get_by_role("heading", name=re.compile(r"^Transaction ")).wait_for(timeout=WAIT_MS)
            ui.settle(page, None, WAIT_MS)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=HERE / "finance-queue.png")

            page.goto(url + "/ct")
            ui.settle(page, "axial slice", WAIT_MS)
            # the case's heading at the top: the run's warnings above it would push the
            # organ legend and the heat-map colour bar under the fold
            page.get_by_role("heading", name=re.compile(r" · score ")).first.evaluate(
                "element => element.scrollIntoView({block: 'start'})")
            page.wait_for_function(ui.RENDERED)
            page.screenshot(path=HERE / "ct-viewer.png")

            page.goto(url + "/drive")
            ui.settle(page, "frame ", WAIT_MS)
            page.get_by_role("button", name="#1 · frame").first.click()   # the top frame
            ui.settle(page, None, WAIT_MS)
            # the last row of panels (truth, error map) above the class legend and the error
            # colour scale
            page.get_by_text("Classes", exact=True).first.evaluate(
                "element => element.scrollIntoView({block: 'end'})")
            page.wait_for_function(ui.RENDERED)
            page.screenshot(path=HERE / "drive-replay.png")
        finally:
            browser.close()


if __name__ == "__main__":
    main(sys.argv[1])
