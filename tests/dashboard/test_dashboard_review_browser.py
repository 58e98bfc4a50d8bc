"""The review form in Chromium: after a disposition the next unreviewed alert opens with
an empty note and no decision chosen (the browser keeps widget values on its own, so this
is checked where it happens, not only in AppTest)."""
import re

import pytest

from core.review_store import ReviewStore
from dashboard_browser import click_table_row, launch, running_dashboard, settle
from test_dashboard_browser import chromium_available  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser


def test_a_disposition_opens_the_next_alert_with_an_empty_form(chromium_available, workspace,
                                                               tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with running_dashboard(workspace, tmp_path) as url, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(url + "/finance")
            settle(page, "matching transactions")
            click_table_row(page, 0)
            settle(page, "Transaction tx")
            heading = page.get_by_role("heading", name=re.compile(r"Transaction tx\d+"))
            first = heading.inner_text().split()[-1]
            form = page.locator('[data-testid="stForm"]')
            expect(form.get_by_role("radio", checked=True)).to_have_count(0)
            form.get_by_text("Fraud", exact=True).click()
            form.get_by_label("Note").fill("two countries in one hour")
            form.get_by_label("Reviewer").fill("analyst-1")
            form.get_by_role("button", name="Submit disposition").click()
            settle(page, f"Recorded fraud for {first}")

            second = heading.inner_text().split()[-1]
            assert second != first
            expect(form.get_by_label("Note")).to_have_value("")
            expect(form.get_by_role("radio", checked=True)).to_have_count(0)
            expect(form.get_by_label("Reviewer")).to_have_value("analyst-1")
            page.screenshot(path=tmp_path / "next-alert.png", full_page=True)
        finally:
            browser.close()
    events = ReviewStore(workspace / "reviews.sqlite").history("finance", "disposition")
    assert events[["item_id", "decision", "note"]].values.tolist() == [
        [first, "fraud", "two countries in one hour"]]
