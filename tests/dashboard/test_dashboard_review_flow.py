"""The reviewer's day through AppTest: forms start empty per item with no decision chosen,
a decision opens the next unreviewed item, and "unreviewed only" hides the decided ones."""
from core.review_store import ReviewStore
from dashboard.ui import form_key
from test_dashboard_pages import open_app, texts

SUBMIT = "FormSubmitter:fin_form-Submit disposition"


def select_row(at, row: int):
    at.session_state["fin_table_0"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    return at.run()


def opened(at) -> str:
    """The transaction id whose detail the finance page shows."""
    return next(s.value for s in at.subheader if s.value.startswith("Transaction ")).split()[-1]


def test_finance_form_is_empty_per_item_and_refuses_without_a_decision(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/finance.py")
    first, second = at.dataframe[0].value["transaction_id"].tolist()[:2]
    select_row(at, 0)
    assert at.radio(key=form_key("fin", "decision", first)).value is None   # nothing preselected
    at.text_area(key=form_key("fin", "note", first)).input("looks like a test charge")
    at.text_input(key="fin_reviewer").input("ana")
    at.button(key=SUBMIT).click().run()
    assert "Choose a decision before submitting." in texts(at)
    assert ReviewStore(workspace / "reviews.sqlite").history().empty
    assert at.text_area(key=form_key("fin", "note", first)).value == "looks like a test charge"

    select_row(at, 1)
    assert opened(at) == second
    assert at.text_area(key=form_key("fin", "note", second)).value == ""     # not carried over
    assert at.radio(key=form_key("fin", "decision", second)).value is None
    assert at.text_input(key="fin_reviewer").value == "ana"


def test_a_disposition_opens_the_next_unreviewed_alert(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/finance.py")
    ids = at.dataframe[0].value["transaction_id"].tolist()
    ReviewStore(workspace / "reviews.sqlite").record("finance", "disposition", ids[1],
                                                     "legitimate", "bo", run_id="finance-run")
    select_row(at, 0)
    at.radio(key=form_key("fin", "decision", ids[0])).set_value("fraud")
    at.text_area(key=form_key("fin", "note", ids[0])).input("card used abroad")
    at.text_input(key="fin_reviewer").input("ana")
    at.button(key=SUBMIT).click().run()
    assert not at.exception
    assert f"Recorded fraud for {ids[0]} by ana" in texts(at)
    assert opened(at) == ids[2]                        # rank 2 was already reviewed by bo
    assert at.text_area(key=form_key("fin", "note", ids[2])).value == ""
    assert at.radio(key=form_key("fin", "decision", ids[2])).value is None
    assert at.text_input(key="fin_reviewer").value == "ana"

    at.switch_page("views/medical.py").run()           # the name is remembered on every page
    assert at.text_input(key="ct_reviewer").value == "ana"


def test_last_disposition_of_the_queue_says_so(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/finance.py")
    ids = at.dataframe[0].value["transaction_id"].tolist()
    store = ReviewStore(workspace / "reviews.sqlite")
    for item in ids[1:]:
        store.record("finance", "disposition", item, "legitimate", "bo", run_id="finance-run")
    select_row(at, 0)
    at.radio(key=form_key("fin", "decision", ids[0])).set_value("needs_information")
    at.text_input(key="fin_reviewer").input("ana")
    at.button(key=SUBMIT).click().run()
    assert "Every alert of this queue has a disposition." in texts(at)
    assert "No transaction selected." in texts(at)


def test_finance_unreviewed_only(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/finance.py")
    ids = at.dataframe[0].value["transaction_id"].tolist()
    store = ReviewStore(workspace / "reviews.sqlite")
    for item in ids[:2]:
        store.record("finance", "disposition", item, "fraud", "bo", run_id="finance-run")
    at.toggle(key="fin_unreviewed_only").set_value(True).run()
    assert "**18** matching transactions" in texts(at)
    assert at.dataframe[0].value["transaction_id"].tolist() == ids[2:]
    at.toggle(key="fin_unreviewed_only").set_value(False).run()
    assert "**20** matching transactions" in texts(at)


def test_ct_review_needs_a_choice_then_opens_the_next_case(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/medical.py")
    decision = at.radio(key=form_key("ct", "decision", "patient_000"))
    assert decision.value is None
    at.text_input(key="ct_reviewer").input("dr who")
    at.button(key="FormSubmitter:ct_form-Submit review").click().run()
    assert "Choose a decision before submitting." in texts(at)
    assert not (workspace / "reviews.sqlite").exists() or ReviewStore(
        workspace / "reviews.sqlite").history().empty

    at.radio(key=form_key("ct", "decision", "patient_000")).set_value("accept")
    at.text_area(key=form_key("ct", "note", "patient_000")).input("clean liver")
    at.button(key="FormSubmitter:ct_form-Submit review").click().run()
    assert not at.exception
    assert at.selectbox(key="ct_case").value == "patient_001"
    assert at.text_area(key=form_key("ct", "note", "patient_001")).value == ""
    assert at.radio(key=form_key("ct", "decision", "patient_001")).value is None

    at.toggle(key="ct_unreviewed_only").set_value(True).run()
    assert at.dataframe[1].value["case"].tolist() == ["patient_001"]
