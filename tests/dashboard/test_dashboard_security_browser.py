"""The served dashboard's exposure, in a real server and Chromium: it listens on loopback
only, shows nothing before login, records reviews under the logged-in user, and shows
user-written text literally (no image fetched, no link planted)."""
import shutil
import socket

import pandas as pd
import pytest

from core.review_store import ReviewStore
from dashboard.auth import set_password
from dashboard_browser import click_table_row, launch, running_dashboard, settle
from test_dashboard_browser import chromium_available  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser
PAYLOAD = "![x](http://127.0.0.1:9/x.png) [click](http://evil)"
USER, PASSWORD = "ana", "correct horse"


@pytest.fixture(scope="module")
def served(synthetic_workspace, tmp_path_factory):
    """One server for the module over a workspace with a password set and a disposition
    whose reviewer name is markdown (as an older, login-less dashboard could store)."""
    ws = tmp_path_factory.mktemp("secure") / "workspace"
    shutil.copytree(synthetic_workspace, ws)
    set_password(ws, USER, PASSWORD)
    scores = pd.read_parquet(ws / "runs" / "finance" / "finance-run" / "scores.parquet")
    first = str(scores.sort_values("rank").iloc[0]["transaction_id"])
    ReviewStore(ws / "reviews.sqlite").record("finance", "disposition", first, "fraud", PAYLOAD,
                                              note=PAYLOAD, run_id="finance-run")
    with running_dashboard(ws, tmp_path_factory.mktemp("server"), host=None) as url:
        yield ws, url, first


def _other_address() -> str | None:
    """An address of this machine that is not loopback (None when it has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))       # no packet is sent: picks the outgoing address
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_the_default_server_is_not_reachable_off_loopback(served):
    _, url, _ = served
    port = int(url.rsplit(":", 1)[1])
    address = _other_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    with pytest.raises(OSError):
        socket.create_connection((address, port), timeout=3).close()


def _log_in(page, url, password=PASSWORD):
    """Open ``url`` (the app, or a link into it) and log in on the page it shows."""
    page.goto(url)
    settle(page, "Password")
    page.get_by_label("User", exact=True).fill(USER)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()


def test_nothing_is_shown_before_login_and_reviews_carry_the_user(chromium_available, served):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    ws, url, first = served
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            # A fresh server's first page request is a shared link to an alert: Streamlit
            # would run a page file directly (no login) if the pages sat in a `pages/` folder.
            for path in (f"/finance?run=finance-run&tx={first}", "/drive", ""):
                page.goto(url + path)
                settle(page, "Password")
                expect(page.get_by_text("Finance (card transactions)")).to_have_count(0)
                expect(page.get_by_text("matching transactions")).to_have_count(0)
                expect(page.get_by_role("link", name="Finance alert queue")).to_have_count(0)
            _log_in(page, url, password="wrong horse")
            settle(page, "Wrong user name or password.")
            expect(page.get_by_text("Finance (card transactions)")).to_have_count(0)

            _log_in(page, url)
            settle(page, "Finance (card transactions)")
            page.get_by_role("link", name="Finance alert queue").first.click()
            settle(page, "matching transactions")
            click_table_row(page, 1)
            settle(page, "Recorded as ana")
            form = page.locator('[data-testid="stForm"]')
            expect(form.get_by_label("Reviewer")).to_have_count(0)   # no free-text reviewer
            selected = page.get_by_role("heading", name="Transaction").inner_text().split()[-1]
            form.get_by_text("Legitimate", exact=True).click()
            form.get_by_label("Note").fill("known customer")
            form.get_by_role("button", name="Submit disposition").click()
            settle(page, f"Recorded legitimate for {selected} by ana")
        finally:
            browser.close()
    events = ReviewStore(ws / "reviews.sqlite").history("finance", "disposition", selected)
    assert events[["decision", "reviewer", "note"]].values.tolist() == [
        ["legitimate", USER, "known customer"]]
    assert selected != first


def test_user_written_text_is_shown_literally(chromium_available, served):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    _, url, first = served
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        requested = []
        page.on("request", lambda request: requested.append(request.url))
        try:
            _log_in(page, f"{url}/finance?run=finance-run&tx={first}")   # a shared link
            settle(page, f"Transaction {first}")                           # opens after login
            expect(page.get_by_text(f"by {PAYLOAD}")).to_be_visible()    # as typed
            main = page.locator('[data-testid="stMain"]')
            expect(main.locator('img[src*="127.0.0.1:9"]')).to_have_count(0)
            expect(main.locator('a[href="http://evil"]')).to_have_count(0)
            expect(main.locator("a", has_text="click")).to_have_count(0)
        finally:
            browser.close()
    assert not [r for r in requested if "127.0.0.1:9/" in r or "evil" in r]
