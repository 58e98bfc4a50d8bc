"""Links, downloads and the drift panel through Streamlit's AppTest: a URL opens an alert,
case or frame; a selection is written back to the URL; bad ids give a plain message."""
import re

import pandas as pd
from streamlit.testing.v1 import AppTest

from dashboard.workspace import ENV_VAR
from dashboard_fixtures import write_finance_run
from test_dashboard_pages import APP, TIMEOUT, texts

HOST = "http://127.0.0.1:8501"


def open_link(monkeypatch, ws, page: str, **params) -> AppTest:
    """The app as a browser opening ``HOST/<page>?params`` (a fresh session; the first run
    registers the app's pages, so ``page`` then runs under app.py as when served)."""
    monkeypatch.setenv(ENV_VAR, str(ws))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.context["url"] = HOST
    at.run()
    at.query_params.update(params)
    at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


MARKDOWN_LINK = re.compile(r"\[(?P<text>.*)\]\((?P<address>[^()\s]*)\)")


def share_links(at: AppTest) -> list[str]:
    """The addresses of the sidebar's share links (Markdown links whose text, unescaped,
    is their address: what a reviewer selects and copies is where the link goes)."""
    found = [MARKDOWN_LINK.fullmatch(m.value) for m in at.sidebar.markdown]
    found = [(texts_of(m["text"]), m["address"]) for m in found if m]
    for text, address in found:
        assert text == address
    return [address for _, address in found]


def shown_link(at: AppTest, path: str) -> str:
    """The copyable link's query string, checking the page URL before it."""
    [address] = share_links(at)
    page_url, query = address.split("?", 1)
    assert page_url == f"{HOST}/{path}"
    return query


def warnings(at: AppTest) -> list[str]:
    return [texts_of(w.value) for w in at.warning]


def texts_of(markdown: str) -> str:
    return markdown.replace("\\", "")


def finance_scores(ws) -> pd.DataFrame:
    return pd.read_parquet(ws / "runs" / "finance" / "finance-run" / "scores.parquet")


def test_finance_link_opens_the_alert_and_a_selection_rewrites_the_url(monkeypatch, workspace):
    scores = finance_scores(workspace)
    tx = scores[scores["rank"] == 5].iloc[0]["transaction_id"]
    at = open_link(monkeypatch, workspace, "views/finance.py", run="finance-run", tx=tx)
    assert f"Transaction {tx}" in texts(at) and "rank **5**" in texts(at)
    assert share_links(at) == [f"{HOST}/finance?run=finance-run&tx={tx}"]    # copyable link
    assert not at.warning
    at.session_state["fin_table_0"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    first = at.dataframe[0].value.iloc[0]["transaction_id"]
    assert first != tx and f"Transaction {first}" in texts(at)
    assert at.query_params == {"run": "finance-run", "tx": first}
    assert share_links(at) == [f"{HOST}/finance?run=finance-run&tx={first}"]


def test_a_page_address_with_brackets_and_spaces_stays_one_link(monkeypatch, workspace):
    # the address comes from the browser: ( ) and spaces in it must not end the link early
    monkeypatch.setenv(ENV_VAR, str(workspace))
    scores = finance_scores(workspace)
    tx = scores[scores["rank"] == 2].iloc[0]["transaction_id"]
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.context["url"] = "http://127.0.0.1:8501/review (team) <a>"
    at.run()
    at.query_params.update(run="finance-run", tx=tx)
    at.switch_page("views/finance.py").run()
    [markdown] = [m.value for m in at.sidebar.markdown if m.value.startswith("[")]
    link = MARKDOWN_LINK.fullmatch(markdown)
    assert link["address"] == (f"http://127.0.0.1:8501/review%20%28team%29%20%3Ca%3E/finance"
                               f"?run=finance-run&tx={tx}")
    assert texts_of(link["text"]) == (f"http://127.0.0.1:8501/review (team) <a>/finance"
                                      f"?run=finance-run&tx={tx}")   # shown as typed


def test_finance_link_to_a_non_alert_opens_it_too(monkeypatch, workspace):
    scores = finance_scores(workspace)
    tx = scores[scores["rank"] == 300].iloc[0]["transaction_id"]       # not in the alert queue
    at = open_link(monkeypatch, workspace, "views/finance.py", run="finance-run", tx=tx)
    assert f"Transaction {tx}" in texts(at) and "no alert" in texts(at)


def test_finance_bad_link_ids_give_plain_messages_and_the_queue(monkeypatch, workspace):
    at = open_link(monkeypatch, workspace, "views/finance.py", run="../../etc",
                   tx="[x](http://evil)")
    assert warnings(at) == ["The link's run '../../etc' is not a valid run id.",
                            "The link's transaction '[x](http://evil)' is not in this run."]
    assert "](" not in at.warning[1].value                   # rendered as text, not a link
    assert "**20** matching transactions" in texts(at) and "No transaction selected." in texts(at)
    assert at.query_params == {"run": "finance-run"}          # the bad ids leave the URL
    assert not share_links(at)


def test_finance_link_to_another_run(monkeypatch, workspace):
    write_finance_run(workspace, run_id="shifted-run", calibration_shift=-0.05, seed=1)
    at = open_link(monkeypatch, workspace, "views/finance.py", run="shifted-run")
    assert at.selectbox(key="finance_run").value == "shifted-run"
    assert at.expander[0].label.startswith("Score drift: scores differ from calibration: p = ")
    assert at.expander[0].proto.expanded                    # a drift opens the panel
    labels = [m.label for m in at.metric]
    assert {"p-value", "Chi-square", "Alert rate", "Above calibration threshold"} <= set(labels)
    # the nominal rate is a reference, not a change: no arrow (an up arrow read as "rose")
    above = next(m for m in at.metric if m.label == "Above calibration threshold")
    assert above.proto.delta.startswith("nominal ")
    assert above.proto.direction == above.proto.MetricDirection.NONE
    at.selectbox(key="finance_run").set_value("finance-run").run()
    assert at.query_params["run"] == "finance-run"
    assert at.expander[0].label.startswith("Score drift: scores look like the calibration data")


def test_queue_download_follows_the_filters_and_overview_offers_the_history(monkeypatch,
                                                                            workspace):
    at = open_link(monkeypatch, workspace, "views/finance.py")
    button = at.get("download_button")[0]
    assert button.label == "Download these 20 rows as CSV" and button.proto.deferred_file_id
    at.toggle(key="fin_alerts_only").set_value(False).run()
    assert at.get("download_button")[0].label == "Download these 400 rows as CSV"
    at.switch_page("views/overview.py").run()
    assert [b.label for b in at.get("download_button")] == ["Download the review history as CSV"]


def test_ct_link_opens_case_plane_and_slice(monkeypatch, workspace):
    at = open_link(monkeypatch, workspace, "views/medical.py", run="medical-run",
                   case="patient_001", plane="coronal", slice="3")
    assert at.selectbox(key="ct_case").value == "patient_001"
    assert at.radio(key="ct_plane").value == "coronal"
    assert at.slider(key="ct_slice:patient_001:coronal").value == 4   # 1-based, as the caption
    assert at.image[0].captions[0].startswith("coronal slice 4 of 20")
    assert shown_link(at, "ct") == "run=medical-run&case=patient_001&plane=coronal&slice=3"
    at.slider(key="ct_slice:patient_001:coronal").set_value(8).run()
    assert at.query_params["slice"] == "7"        # the link keeps the 0-based voxel index
    assert at.expander[0].label == ("Score drift: too few scores to compare with calibration "
                                    "(2; at least 10 needed)")


def test_ct_bad_link_ids(monkeypatch, workspace):
    at = open_link(monkeypatch, workspace, "views/medical.py", case="patient_009",
                   plane="oblique", slice="99")
    assert warnings(at)[1:] == ["The link's case 'patient_009' is not in this run.",
                            "The link's plane 'oblique' is not one of axial, coronal, sagittal.",
                            "The link's slice 99 is outside 0 to 11."]
    assert at.selectbox(key="ct_case").value == "patient_000" and at.image


def test_drive_link_opens_the_frame_and_jumps_rewrite_it(monkeypatch, workspace):
    at = open_link(monkeypatch, workspace, "views/driving.py", run="driving-run",
                   log="log_000", frame="7")
    assert at.slider(key="drive_frame:driving-run:log_000").value == 7
    assert "frame **7**" in texts(at)
    assert shown_link(at, "drive") == "run=driving-run&log=log_000&frame=7"
    at.button(key="drive_next").click().run()
    assert at.query_params["frame"] == "20"
    assert shown_link(at, "drive") == "run=driving-run&log=log_000&frame=20"


def test_drive_bad_link_ids(monkeypatch, workspace):
    at = open_link(monkeypatch, workspace, "views/driving.py", log="..", frame="4000")
    assert warnings(at) == ["The link's log '..' is not a valid log id.",
                            "The link's frame 4000 is not in this log."]
    assert at.slider(key="drive_frame:driving-run:log_000").value == 20   # its own default
    assert at.query_params == {"log": "log_000", "frame": "20", "run": "driving-run"}


def test_a_run_without_a_calibration_reference_says_so(monkeypatch, workspace):
    manifest = workspace / "runs" / "driving" / "driving-run" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"calibration_reference"', '"old_key"'))
    at = open_link(monkeypatch, workspace, "views/driving.py")
    assert "This run carries no calibration reference" in texts(at)
