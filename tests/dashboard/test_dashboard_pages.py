"""Every page through Streamlit's AppTest: interactions and what they write to SQLite."""
import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import dashboard
from core.review_store import ReviewStore
from dashboard.auth import set_password
from dashboard.ui import form_key, plain
from dashboard.workspace import ENV_VAR

APP = Path(dashboard.__file__).with_name("app.py")
TIMEOUT = 60


def open_app(monkeypatch, ws, page: str | None = None) -> AppTest:
    monkeypatch.setenv(ENV_VAR, str(ws))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT).run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """All markdown, captions, info boxes, subheaders and code of the current page, as
    shown: markdown's backslash escapes (``ui.plain``) removed."""
    parts = [e.value for kind in ("markdown", "caption", "info", "subheader", "code", "success",
                                  "error", "title") for e in getattr(at, kind)]
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", "\n".join(str(p) for p in parts))


def chart_titles(at: AppTest) -> set:
    """Titles of the Vega-Lite (Altair) charts on the page."""
    titles = set()
    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        title = spec.get("title") or next((layer.get("title") for layer in spec.get("layer", [])
                                           if layer.get("title")), None)
        titles.add(title["text"] if isinstance(title, dict) else title)
    return titles


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.mark.parametrize("page", [None, "views/finance.py", "views/medical.py", "views/driving.py"])
def test_missing_workspace_shows_how_to_create_one(monkeypatch, tmp_path, page):
    ws = tmp_path / "no-workspace"
    at = open_app(monkeypatch, ws, page)
    assert f"unmask demo --workspace {ws}" in texts(at)
    assert not ws.exists()


def test_overview(monkeypatch, workspace):
    ReviewStore(workspace / "reviews.sqlite").record(
        "finance", "disposition", "tx00000001", "fraud", "ana", run_id="finance-run")
    at = open_app(monkeypatch, workspace)
    assert [m.value for m in at.metric if m.label == "Alerts (latest run)"] == ["20", "1", "5"]
    assert [m.value for m in at.metric if m.label == "Alert rate"] == ["5.00%", "50.00%", "12.50%"]
    assert [m.value for m in at.metric if m.label == "Reviewed"][0] == "1"
    assert len(at.dataframe[0].value) == 3


def test_finance_select_alert_and_submit_disposition(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/finance.py")
    assert "**20** matching transactions" in texts(at)
    queue = at.dataframe[0].value
    assert queue["rank"].tolist()[:3] == [1, 2, 3] and queue["is_alert"].all()
    selected = queue.iloc[1]["transaction_id"]
    at.session_state["fin_table_0"] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    assert f"Transaction {selected}" in texts(at)
    assert "not reviewed yet" in texts(at)
    assert chart_titles(at) == {"Why this score (SHAP)", "Customer's last 30 days"}

    at.radio(key=form_key("fin", "decision", selected)).set_value("fraud")
    at.text_area(key=form_key("fin", "note", selected)).input("card used abroad twice in one hour")
    at.text_input(key="fin_reviewer").input("ana")
    at.button(key="FormSubmitter:fin_form-Submit disposition").click().run()
    assert not at.exception

    events = ReviewStore(workspace / "reviews.sqlite").history("finance", "disposition")
    assert events[["item_id", "decision", "reviewer", "note", "run_id"]].values.tolist() == [
        [selected, "fraud", "ana", "card used abroad twice in one hour", "finance-run"]]
    assert f"Recorded fraud for {selected} by ana" in texts(at)
    assert metric(at, "Alerts reviewed") == "1" and metric(at, "Precision so far") == "100%"
    assert at.dataframe[0].value.set_index("transaction_id").loc[selected, "disposition"] == "fraud"


def test_finance_submit_without_reviewer_is_refused(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/finance.py")
    at.session_state["fin_table_0"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    selected = at.dataframe[0].value.iloc[0]["transaction_id"]
    at.radio(key=form_key("fin", "decision", selected)).set_value("fraud")
    at.button(key="FormSubmitter:fin_form-Submit disposition").click().run()
    assert "Enter your name as reviewer" in texts(at)
    assert not (workspace / "reviews.sqlite").exists() or ReviewStore(
        workspace / "reviews.sqlite").history().empty


def test_finance_filters_and_paging(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/finance.py")
    at.toggle(key="fin_alerts_only").set_value(False).run()
    assert "**400** matching transactions" in texts(at)
    first = at.dataframe[0].value["transaction_id"].tolist()
    at.number_input(key="fin_page").set_value(2).run()
    second = at.dataframe[0].value
    assert second["rank"].tolist()[0] == 51 and not set(first) & set(second["transaction_id"])
    at.toggle(key="fin_alerts_only").set_value(True).run()  # fewer pages: back within range
    assert "page 1 of 1" in texts(at) and not at.exception
    at.toggle(key="fin_alerts_only").set_value(False).run()
    at.selectbox(key="fin_sort").set_value("amount").run()
    amounts = at.dataframe[0].value["amount"]
    assert amounts.is_monotonic_decreasing  # amount sorts descending by default
    at.number_input(key="fin_min_amount").set_value(1000.0).run()
    assert "**0** matching transactions" in texts(at) or at.dataframe[0].value["amount"].min() >= 1000


def test_ct_slice_window_overlay_and_review(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/medical.py")
    assert "patient_000 · score" in texts(at)
    assert at.warning[0].value == "a warning the run wrote into its summary"   # shown as is
    slider = at.slider(key="ct_slice:patient_000:axial")
    start, first_url = slider.value, at.image[0].value
    assert at.image[0].captions[0].startswith(f"axial slice {start} of 12")  # as the slider
    assert (slider.min, slider.max) == (1, 12)
    slider.set_value(1).run()
    assert at.image[0].captions[0].startswith("axial slice 1 of 12")
    assert at.image[0].value != first_url
    at.radio(key="ct_plane").set_value("coronal").run()
    assert at.image[0].captions[0].startswith("coronal slice")
    assert at.slider(key="ct_slice:patient_000:coronal").max == 20
    at.radio(key="ct_window").set_value("bone").run()
    assert "bone window" in at.image[0].captions[0]
    at.slider(key="ct_heat_opacity").set_value(0.0).run()
    assert not at.exception
    assert at.dataframe[0].value["organ"].tolist() == ["liver", "spleen"]  # organ volumes
    assert chart_titles(at) == {"Regions that raised the score (SHAP)"}
    at.radio(key=form_key("ct", "decision", "patient_000")).set_value("needs_correction")
    at.text_input(key="ct_reviewer").input("dr who")
    at.button(key="FormSubmitter:ct_form-Submit review").click().run()
    events = ReviewStore(workspace / "reviews.sqlite").history("medical", "review")
    assert events[["item_id", "decision", "reviewer"]].values.tolist() == [
        ["patient_000", "needs_correction", "dr who"]]
    assert at.dataframe[1].value.set_index("case").loc["patient_000", "review"] == "needs_correction"


def test_drive_frames_anomaly_jumps_and_bookmark(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/driving.py")
    key = "drive_frame:driving-run:log_000"
    assert at.slider(key=key).value == 20  # opens on the first anomaly
    assert [i.captions[0] for i in at.image] == [
        "observed", "visibility · white: seen, black: hidden",
        "predicted hidden · hidden cells, brighter = surer; seen cells dimmed",
        "road layout · brighter = surer road; seen cells dimmed",
        "truth · the simulator's full grid", "error · per-cell surprise, scale below",
        "Classes", "Error colour scale"]
    assert chart_titles(at) == {"Surprise over the log",
                                "Regions behind frame 20's surprise (SHAP)"}
    at.slider(key=key).set_value(5).run()
    assert chart_titles(at) == {"Surprise over the log"} and "exist for frames 20, 21" in texts(at)
    assert "frame **5**" in texts(at) and "normal" in texts(at)
    at.button(key="drive_next").click().run()
    assert at.slider(key=key).value == 20 and "anomaly flagged" in texts(at)
    at.button(key="drive_next").click().run()
    assert at.slider(key=key).value == 21
    at.button(key="drive_prev").click().run()
    assert at.slider(key=key).value == 20
    at.slider(key=key).set_value(30).run()
    at.button(key="drive_prev").click().run()
    assert at.slider(key=key).value == 24
    at.text_area(key=form_key("drive", "note", "driving-run:log_000")).input("pedestrian behind the parked van")
    at.text_input(key="drive_reviewer").input("eng")
    at.button(key="FormSubmitter:drive_form-Add bookmark").click().run()
    events = ReviewStore(workspace / "reviews.sqlite").history("driving", "bookmark")
    assert events[["item_id", "note", "reviewer"]].values.tolist() == [
        ["log_000:24", "pedestrian behind the parked van", "eng"]]
    assert "Recorded bookmark for log_000:24 by eng" in texts(at)
    assert at.text_area(key=form_key("drive", "note", "driving-run:log_000")).value == ""
    assert at.text_input(key="drive_reviewer").value == "eng"     # remembered for the next
    assert at.get("download_button")  # the rerun recording
    at.slider(key=key).set_value(0).run()
    at.button(key="drive_goto_button").click().run()  # back to the bookmark
    assert at.slider(key=key).value == 24
    at.toggle(key="drive_play").set_value(True).run()  # playing advances a frame per tick
    assert at.slider(key=key).value == 25
    at.run()
    assert at.slider(key=key).value == 26
    at.toggle(key="drive_play").set_value(False).run()
    assert at.slider(key=key).value == 26


def test_workspace_with_one_vertical(monkeypatch, tmp_path):
    from dashboard_fixtures import write_finance_run

    ws = tmp_path / "ws"
    write_finance_run(ws, n=100)
    at = open_app(monkeypatch, ws)
    assert "No runs yet." in texts(at)  # medical and driving cards
    assert [m.value for m in at.metric if m.label == "Runs"] == ["1"]
    at.switch_page("views/medical.py").run()
    assert not at.exception and f"unmask demo --workspace {ws}" in texts(at)
    at.switch_page("views/driving.py").run()
    assert not at.exception and "No Driving (drive logs) runs" in texts(at)


PAYLOAD = "![x](http://127.0.0.1:9/x.png) [click](http://evil)"


def test_with_a_password_only_the_login_page_exists_until_login(monkeypatch, workspace):
    set_password(workspace, "ana", "correct horse")
    at = open_app(monkeypatch, workspace)
    assert [t.label for t in at.text_input] == ["User", "Password"] and not at.metric
    # the pages are not even registered: only the login page, at every page's path
    with pytest.raises(ValueError, match="Known pages: \\['Log in', 'finance', 'ct', 'drive'\\]"):
        at.switch_page("views/finance.py")
    at.text_input(key="login_name").input("ana")
    at.text_input(key="login_password").input("wrong horse")
    at.button(key="FormSubmitter:login_form-Log in").click().run()
    assert "Wrong user name or password." in texts(at) and not at.metric
    at.text_input(key="login_name").input("ana")
    at.text_input(key="login_password").input("correct horse")
    at.button(key="FormSubmitter:login_form-Log in").click().run()
    assert "Logged in as ana" in texts(at) and at.metric


def test_with_login_the_reviewer_is_the_logged_in_user(monkeypatch, workspace):
    set_password(workspace, "ana", "correct horse")
    at = open_app(monkeypatch, workspace)
    at.session_state["login_user"] = "ana"          # what a successful login leaves
    at.run().switch_page("views/finance.py").run()
    at.session_state["fin_table_0"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert [t.key for t in at.text_input] == [] and "Recorded as ana" in texts(at)
    selected = at.dataframe[0].value.iloc[0]["transaction_id"]
    at.radio(key=form_key("fin", "decision", selected)).set_value("fraud")
    at.text_area(key=form_key("fin", "note", selected)).input(PAYLOAD)
    at.button(key="FormSubmitter:fin_form-Submit disposition").click().run()
    events = ReviewStore(workspace / "reviews.sqlite").history("finance", "disposition")
    assert events[["reviewer", "note"]].values.tolist() == [["ana", PAYLOAD]]


def test_user_written_text_reaches_markdown_escaped(monkeypatch, workspace):
    """The raw markdown the page sends holds no image or link syntax from a reviewer."""
    at = open_app(monkeypatch, workspace, "views/finance.py")
    selected = at.dataframe[0].value.iloc[0]["transaction_id"]
    ReviewStore(workspace / "reviews.sqlite").record("finance", "disposition", selected, "fraud",
                                                     PAYLOAD, note=PAYLOAD, run_id="finance-run")
    at.session_state["fin_table_0"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    # the page's own link to the transaction (its address built from the URL) is the one
    # link: the sidebar's "[address](address)"
    [own] = [e.value for e in at.sidebar.markdown if e.value.startswith("[")]
    assert own == f"[{plain(f'?run=finance-run&tx={selected}')}](?run=finance-run&tx={selected})"
    raw = "\n".join(str(e.value) for e in at.markdown if e.value != own)
    assert f"by {PAYLOAD}" in texts(at)                       # shown as typed ...
    assert "](" not in raw and "![" not in raw              # ... but never as markdown syntax
