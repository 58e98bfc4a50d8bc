"""Contract check against the real verticals: build a tiny demo workspace with every
vertical's ``build_demo`` and render every page over it (catches drift from docs/runs.md)."""
import re

import pytest
from streamlit.testing.v1 import AppTest

from core.review_store import ReviewStore
from dashboard.demo import build_workspace
from dashboard.ui import form_key
from dashboard.workspace import ENV_VAR
from test_dashboard_pages import APP, chart_titles, texts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("demo") / "ws"
    results = build_workspace(ws, size="tiny", seed=0)
    failed = {r.vertical: r.details for r in results if r.error}
    assert not failed, failed
    return ws


def drift_verdict(at: AppTest) -> str:
    """The drift panel's title: there only when the scoring command wrote the run's
    calibration reference."""
    return next(e.label for e in at.expander if e.label.startswith("Score drift: "))


def test_every_page_renders_over_a_real_tiny_demo(demo_workspace, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(demo_workspace))
    at = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert [m.value for m in at.metric if m.label == "Runs"] == ["1", "1", "1"]

    at.switch_page("views/finance.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert drift_verdict(at).startswith("Score drift: scores ")       # tested: many transactions
    queue = at.dataframe[0].value
    assert len(queue) and queue["is_alert"].all() and queue["rank"].is_monotonic_increasing
    at.session_state["fin_table_0"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert chart_titles(at) == {"Why this score (SHAP)", "Customer's last 30 days"}
    at.radio(key=form_key("fin", "decision", queue.iloc[0]["transaction_id"])).set_value("fraud")
    at.text_input(key="fin_reviewer").input("ana")
    at.button(key="FormSubmitter:fin_form-Submit disposition").click().run()
    store = ReviewStore(demo_workspace / "reviews.sqlite")
    assert store.history("finance", "disposition")["item_id"].tolist() == [queue.iloc[0]["transaction_id"]]

    at.switch_page("views/medical.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.image[0].captions[0].startswith("axial slice")
    assert drift_verdict(at)
    slider = next(s for s in at.slider if str(s.key).startswith("ct_slice:"))
    slider.set_value(0).run()
    assert at.image[0].captions[0].startswith("axial slice 1 of")
    assert len(at.dataframe[1].value)  # organ volumes

    at.switch_page("views/driving.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.image) >= 4  # observed, visibility, predicted hidden, (truth,) error
    assert drift_verdict(at).startswith("Score drift: scores ")
    frame_slider = next(s for s in at.slider if str(s.key).startswith("drive_frame:"))
    frame_slider.set_value(frame_slider.min).run()
    # The top-frame jump works whether or not the tiny model flagged anything (its
    # cross-fitted threshold, fitted on 3 tiny logs, may flag nothing); "next anomaly" over
    # flagged frames is tested on a synthetic run (test_dashboard_pages).
    top_button = at.button(key="drive_top_0")
    top_frame = int(re.search(r"frame (\d+)", top_button.label).group(1))
    assert top_frame != frame_slider.min
    top_button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert next(s for s in at.slider if str(s.key).startswith("drive_frame:")).value == top_frame
    assert "anomalies flagged in" in texts(at)
