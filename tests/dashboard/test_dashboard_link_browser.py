"""A shared link in a real browser: Chromium opens ``/finance?run=...&tx=...`` on the served
dashboard and lands on that alert; picking another alert rewrites the address bar; the
queue downloads as the CSV it shows."""
import csv
import io
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from dashboard_browser import click_table_row, launch, running_dashboard, settle
from test_dashboard_browser import chromium_available  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser


def test_a_link_opens_its_alert_in_chromium(chromium_available, workspace, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    scores = pd.read_parquet(workspace / "runs" / "finance" / "finance-run" / "scores.parquet")
    by_rank = scores.set_index("rank")["transaction_id"]
    linked, first = str(by_rank[4]), str(by_rank[1])
    with running_dashboard(workspace, tmp_path) as url, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        try:
            page.goto(f"{url}/finance?run=finance-run&tx={linked}")
            settle(page, f"Transaction {linked}")
            expect(page.get_by_role("heading", name=f"Transaction {linked}")).to_be_visible()
            expect(page.get_by_text("rank 4 ·", exact=False)).to_be_visible()
            address = f"{url}/finance?run=finance-run&tx={linked}"
            shown = page.locator('[data-testid="stSidebar"] a', has_text=address)   # copyable
            expect(shown).to_have_attribute("href", address)
            # a plain link, not a code box: no 1.5 MB highlighter fetched on the first alert
            assert not page.locator('[data-testid="stCode"]').count()

            click_table_row(page, 0)                                       # another alert
            settle(page, f"Transaction {first}")
            page.wait_for_function("tx => location.search.includes(tx)", arg=first)
            assert parse_qs(urlsplit(page.url).query) == {"run": ["finance-run"], "tx": [first]}

            with page.expect_download() as download:
                page.get_by_role("button", name="Download these 20 rows as CSV").click()
            rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
            assert [r["transaction_id"] for r in rows] == [str(by_rank[k]) for k in range(1, 21)]
        finally:
            browser.close()
