"""The review form in Chromium: after a disposition the next unreviewed alert opens with
an empty note and no decision chosen (the browser keeps widget values on its own, so this
is checked where it happens, not only in AppTest)."""
import contextlib
import re

import pandas as pd
import pytest

from core.review_store import ReviewStore
from dashboard_browser import click_table_row, launch, running_dashboard, settle
from test_dashboard_browser import chromium_available  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser


@contextlib.contextmanager
def finance_queue(workspace, tmp_path):
    """A Chromium page on the served workspace's finance queue, drawn."""
    from playwright.sync_api import sync_playwright

    with running_dashboard(workspace, tmp_path) as url, sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "/finance")
            settle(page, "matching transactions")
            yield page
        finally:
            browser.close()


def test_a_disposition_opens_the_next_alert_with_an_empty_form(chromium_available, workspace,
                                                               tmp_path):
    from playwright.sync_api import expect

    with finance_queue(workspace, tmp_path) as page:
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
    events = ReviewStore(workspace / "reviews.sqlite").history("finance", "disposition")
    assert events[["item_id", "decision", "note"]].values.tolist() == [
        [first, "fraud", "two countries in one hour"]]


def metric_value(page, label: str) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text=label)
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def test_decisions_rerun_the_queue_fragment_kpis_and_unreviewed_filter(chromium_available,
                                                                        workspace, tmp_path):
    """The queue, its KPIs and the detail are one fragment: a decision recorded there still
    opens the next unreviewed alert, drops the decided one from an "unreviewed only" queue
    and counts it in the KPIs."""
    from playwright.sync_api import expect

    ranked = pd.read_parquet(workspace / "runs" / "finance" / "finance-run" / "scores.parquet",
                             columns=["transaction_id", "rank"]).sort_values("rank")
    first, second, third = ranked["transaction_id"].astype(str).iloc[:3]
    with finance_queue(workspace, tmp_path) as page:
        page.get_by_text("Unreviewed only").click()
        settle(page, "20 matching transactions")
        click_table_row(page, 0)
        settle(page, f"Transaction {first}")
        assert metric_value(page, "Alerts reviewed") == "0"
        form = page.locator('[data-testid="stForm"]')
        for decided, following, label in ((first, second, "Legitimate"), (second, third, "Fraud")):
            form.get_by_text(label, exact=True).click()
            form.get_by_label("Reviewer").fill("analyst-1")
            form.get_by_role("button", name="Submit disposition").click()
            settle(page, f"Recorded {label.lower()} for {decided}")
            expect(page.get_by_role("heading", name=f"Transaction {following}")).to_be_visible()
        expect(page.get_by_text("18 matching transactions")).to_be_visible()
        assert metric_value(page, "Alerts reviewed") == "2"
        assert metric_value(page, "Precision so far") == "50%"
