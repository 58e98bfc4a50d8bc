"""End to end in a real browser: `unmask dashboard` served, Chromium driven by Playwright."""
import importlib.util
import os
import re
from pathlib import Path

import pytest

from core.review_store import ReviewStore
from dashboard_browser import CHROMIUM, click_table_row, launch, running_dashboard, settle

pytestmark = pytest.mark.browser


@pytest.fixture
def chromium_available():
    """Skip without Chromium or Playwright, unless UNMASK_REQUIRE_BROWSER=1 (CI): then fail."""
    missing = [what for what, ok in (
        (CHROMIUM, Path(CHROMIUM).is_file()),
        ("the playwright package", importlib.util.find_spec("playwright") is not None)) if not ok]
    if not missing:
        return
    if os.environ.get("UNMASK_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{', '.join(missing)} missing and UNMASK_REQUIRE_BROWSER=1 "
                    "(apt-get install chromium; pip install playwright)")
    pytest.skip(f"{', '.join(missing)} not installed")


def test_every_page_and_a_disposition_in_chromium(chromium_available, workspace, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = tmp_path / "screenshots"
    shots.mkdir()
    with running_dashboard(workspace, tmp_path) as url, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(url)
            settle(page, "unmask review")
            expect(page.get_by_text("Finance (card transactions)")).to_be_visible()
            page.screenshot(path=shots / "overview.png", full_page=True)

            page.get_by_role("link", name="Finance alert queue").first.click()
            settle(page, "matching transactions")
            click_table_row(page, 0)
            settle(page, "Transaction tx")
            heading = page.get_by_role("heading", name=re.compile(r"Transaction tx\d+")).inner_text()
            selected = heading.split()[-1]
            expect(page.locator('[data-testid="stVegaLiteChart"]')).to_have_count(2)  # waterfall + history
            form = page.locator('[data-testid="stForm"]')
            form.get_by_text("Legitimate", exact=True).click()
            form.get_by_label("Note").fill("known customer, travelling")
            form.get_by_label("Reviewer").fill("analyst-1")
            form.get_by_role("button", name="Submit disposition").click()
            settle(page, f"Recorded legitimate for {selected}")
            page.screenshot(path=shots / "finance.png", full_page=True)
            events = ReviewStore(workspace / "reviews.sqlite").history("finance", "disposition")
            assert events[["item_id", "decision", "reviewer"]].values.tolist() == [
                [selected, "legitimate", "analyst-1"]]

            page.get_by_role("link", name="CT review").first.click()
            settle(page, "patient_000 · score")
            caption = page.get_by_text(re.compile(r"axial slice \d+ of 12"))
            before = caption.inner_text()
            page.get_by_role("slider").first.focus()
            page.keyboard.press("Home")
            settle(page, "axial slice 1 of 12")
            assert before != caption.inner_text()
            page.screenshot(path=shots / "ct.png", full_page=True)

            page.get_by_role("link", name="Drive-log replay").first.click()
            settle(page, "frame 20")
            page.get_by_role("button", name="Next anomaly").click()
            settle(page, "frame 21")
            page.screenshot(path=shots / "drive.png", full_page=True)
            page.get_by_text("Play", exact=True).click()  # the fragment reruns on its own
            page.get_by_text("frame 23").first.wait_for(timeout=30_000)
            page.get_by_text("Play", exact=True).click()
        finally:
            browser.close()
    assert all((shots / f"{name}.png").stat().st_size > 10_000
               for name in ("overview", "finance", "ct", "drive"))
