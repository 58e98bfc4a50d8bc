"""Finance alert queue: filter, sort and page the scored transactions; review one."""
import dataclasses
import math

import pandas as pd
import streamlit as st

from dashboard import export_data, finance_data, links, plots, ui
from dashboard.workspace import review_store, reviewed_items
from finance.spec import SPEC
from finance.reasons import display_name

DECISION_LABELS = ui.decision_labels(SPEC)

ws, manifest = ui.open_run("Finance alert queue", "finance")
run_id = manifest["run_id"]
summary = manifest.get("summary", {})
if summary.get("warning"):   # the scored file is unlike the training data (finance.drift)
    st.warning(ui.plain(summary["warning"]), icon="⚠️")
scores_path = ui.output_path(manifest, "scores", "scores.parquet")
bounds = ui.finance_bounds(scores_path)

# --- filters (sidebar) ---------------------------------------------------------------
with st.sidebar:
    st.header("Filters")
    alerts_only = st.toggle("Alerts only", value=True, key="fin_alerts_only")
    unreviewed_only = st.toggle("Unreviewed only", value=False, key="fin_unreviewed_only")
    first, last = bounds["first_date"], bounds["last_date"]
    dates = st.date_input("Dates", value=(first, last), min_value=first, max_value=last,
                          key="fin_dates") if first is not None else ()
    low, high = st.columns(2)
    min_amount = low.number_input("Min amount", value=None, min_value=0.0, key="fin_min_amount")
    max_amount = high.number_input("Max amount", value=None, min_value=0.0, key="fin_max_amount")
    by = st.radio("Threshold on", ["score", "p-value"], horizontal=True, key="fin_threshold_on")
    if by == "score":
        min_score = st.number_input("Min score", value=None, key="fin_min_score")
        max_p = None
    else:
        max_p = st.number_input("Max p-value", value=None, min_value=0.0, max_value=1.0,
                                key="fin_max_p")
        min_score = None
    sort = st.selectbox("Sort by", list(finance_data.SORTS), key="fin_sort")
    descending = st.toggle("Descending", value=sort in ("score", "amount", "time"),
                           key=f"fin_desc_{sort}")
    page_size = st.selectbox("Rows per page", [25, 50, 100, 200], index=1, key="fin_page_size")

start, end = (dates[0], dates[-1]) if len(dates) else (None, None)
filters = finance_data.QueueQuery(alerts_only=alerts_only, start=start, end=end,
                                  min_amount=min_amount, max_amount=max_amount,
                                  min_score=min_score, max_p_value=max_p, sort=sort,
                                  descending=descending, page=1, page_size=page_size)
ui.drift_panel(manifest)
ui.link_apply("finance", "tx", "fin_selected", lambda tx: (run_id, *finance_data.locate(
    scores_path, links.text_id(tx, "transaction"))))


def kpi_row(dispositions: pd.DataFrame) -> None:
    """Review progress of this run, from the review store."""
    kpis = finance_data.disposition_kpis(
        dispositions, finance_data.alert_flags(scores_path, dispositions["item_id"]),
        int(bounds["n_alerts"]))
    k1, k2, k3, k4, k5 = st.columns(5)
    k1.metric("Transactions", f"{bounds['n_rows']:,}")
    k2.metric("Alerts", f"{bounds['n_alerts']:,}",
              help=f"FDR {ui.plain(summary['fdr'])}" if summary.get("fdr") else None)
    k3.metric("Alerts reviewed", f"{kpis['reviewed_alerts']:,}",
              help=f"{kpis['reviewed']:,} transactions of this run have a disposition")
    k4.metric("Precision so far", "-" if math.isnan(kpis["precision"]) else f"{kpis['precision']:.0%}",
              help="fraud / (fraud + legitimate) among reviewed alerts")
    k5.metric("Needs information", kpis["needs_information"])


def queue_table(query: finance_data.QueueQuery, dispositions: pd.DataFrame):
    """The page of the queue as a selectable table; returns ``(query, table, event)``, the
    query with the page number the user chose."""
    _, total = ui.finance_page(scores_path, query)
    pages = max(1, math.ceil(total / query.page_size))
    top = st.columns([3, 1])
    page = top[1].number_input(f"Page (of {pages:,})", min_value=1, max_value=pages, value=1,
                               step=1, key="fin_page")
    query = dataclasses.replace(query, page=int(min(page, pages)))
    rows, total = ui.finance_page(scores_path, query)
    top[0].markdown(f"**{total:,}** matching transactions · page {query.page:,} of {pages:,} · "
                    "select a row to review it")
    table = finance_data.with_dispositions(rows, dispositions)
    # A recorded disposition opens another transaction and may drop rows (unreviewed only):
    # the table starts afresh, as the browser would otherwise send its old row selection back.
    table_key = f"fin_table_{st.session_state.get('fin_table_generation', 0)}"
    # what an analyst reads first (reason, amount, score) leads: at 1440 px the last columns are cut off
    first = [c for c in ("rank", "disposition", "reason_1_text", "amount", "score") if c in table.columns]
    order = first + [c for c in table.columns if c not in first]
    event = st.dataframe(
        table, key=table_key, on_select="rerun", selection_mode="single-row", hide_index=True,
        width="stretch", height=min(38 + 35 * len(table), 420), column_order=order,
        column_config={
            "score": st.column_config.NumberColumn(format="%.4f"),
            "p_value": st.column_config.NumberColumn("p-value", format="%.2e"),
            "amount": st.column_config.NumberColumn(format="%.2f"),
            "timestamp": st.column_config.DatetimeColumn("time", format="YYYY-MM-DD HH:mm"),
            "is_alert": st.column_config.CheckboxColumn("alert"),
            "warming_up": st.column_config.CheckboxColumn(
                "warming up", help="the card has too little history yet: scored, never alerted"),
            # wide enough for the longest reason the detectors write ("amount 892.66 is 18.4
            # typical deviations above the card's 30-day mean", ~70 characters), uncut
            "reason_1_text": st.column_config.TextColumn("top reason", width=540),
        })
    st.download_button(f"Download these {total:,} rows as CSV", key="fin_queue_csv",
                       data=lambda: export_data.queue_csv(scores_path, query, dispositions),
                       file_name=f"{run_id}-queue.csv", mime="text/csv", on_click="ignore",
                       icon=":material/download:",
                       help="every page of the queue as filtered and sorted")
    return query, table, event


def open_next_alert(query: finance_data.QueueQuery) -> None:
    """After a disposition: open the queue's first alert that still has none (the store
    read again: another reviewer may have decided some meanwhile)."""
    state = st.session_state
    state["fin_table_generation"] = state.get("fin_table_generation", 0) + 1
    following = finance_data.first_unreviewed_alert(
        scores_path, query, reviewed_items(ws, "finance")["item_id"])
    if following is None:
        state.pop("fin_selected", None)
        state["fin_queue_done"] = True
    else:
        state["fin_selected"] = (run_id, *following)


def detail(selected: str, selected_rank: int, dispositions: pd.DataFrame,
           query: finance_data.QueueQuery, link_box) -> None:
    """The selected transaction: facts, reasons, SHAP, the customer's history and the form."""
    row, shap, history = ui.finance_detail(manifest, selected, selected_rank)
    st.divider()
    st.subheader(f"Transaction {ui.plain(selected)}")
    current = dispositions[dispositions["item_id"] == selected] if len(dispositions) else pd.DataFrame()
    status = (f"current disposition: **{DECISION_LABELS[current.iloc[-1]['decision']]}** "
              f"by {ui.plain(current.iloc[-1]['reviewer'])}") if len(current) else "not reviewed yet"
    st.markdown(f"rank **{int(row['rank']):,}** · score **{row['score']:.4f}** · "
                f"p-value **{row['p_value']:.2e}** · {'**alert**' if row['is_alert'] else 'no alert'}"
                f" · {status}")
    if row.get("warming_up"):
        st.info("Warming up: this card had too few earlier transactions for its habits to be known, "
                "so this transaction is scored but never alerted.")
    when = pd.Timestamp(row["timestamp"])
    ui.share_link("transaction", link_box)
    facts = st.columns(5)
    facts[0].metric("Amount", f"{row['amount']:,.2f}")
    facts[1].metric("Date", when.strftime("%Y-%m-%d"))
    facts[2].metric("Time", when.strftime("%H:%M:%S"))
    facts[3].metric("Customer", ui.plain(row["customer_id"]))     # metric values are markdown
    facts[4].metric("Terminal", ui.plain(row["terminal_id"]))
    reason_table = finance_data.reasons(row)
    if len(reason_table):
        st.markdown("**Reason codes:** " + "; ".join(map(ui.plain, reason_table["reason"])))

    left, right = st.columns(2)
    with left:
        if len(shap):
            named = shap.assign(feature=shap["feature"].map(display_name))   # plain words, not column names
            st.vega_lite_chart(*plots.shap_waterfall(named, float(summary.get("expected_score", 0.0))),
                               width="stretch", key="fin_waterfall")
        else:
            st.caption("No SHAP explanation stored for this transaction (only alerts are explained).")
    with right:
        if history is None:
            st.caption("The run's input transactions file is not available; no customer history.")
        else:
            st.vega_lite_chart(*plots.customer_history(history, selected), width="stretch",
                               key="fin_history")

    ui.review_form(ws, "finance", run_id, selected, prefix="fin", title="**Disposition**",
                   submit="Submit disposition", decisions=DECISION_LABELS,
                   on_recorded=lambda _recorded_id: open_next_alert(query))
    with st.expander("Review history of this transaction"):
        st.dataframe(review_store(ws).history("finance", "disposition", selected), hide_index=True)


@st.fragment
def review_queue(filters: finance_data.QueueQuery) -> None:
    """KPIs, the queue and the selected transaction. A fragment: selecting a row or
    recording a disposition reruns only this, not the run picker, filters and drift test."""
    # the transaction's link goes to the sidebar: a fragment may only write outside itself
    # into a container it also wrote on the last full run
    link_box = st.sidebar.container()
    dispositions = reviewed_items(ws, "finance")
    reviewed_ids = tuple(sorted(dispositions["item_id"].astype(str))) if len(dispositions) else ()
    query = dataclasses.replace(filters, exclude_ids=reviewed_ids if unreviewed_only else ())
    kpi_row(dispositions)
    query, table, event = queue_table(query, dispositions)
    if event.selection.rows and event.selection.rows[0] < len(table):
        chosen = table.iloc[event.selection.rows[0]]
        st.session_state["fin_selected"] = (run_id, str(chosen["transaction_id"]), int(chosen["rank"]))
    selection = st.session_state.get("fin_selected")
    if not selection or selection[0] != run_id:          # nothing chosen in this run yet
        ui.set_link("finance", tx=None)
        if st.session_state.pop("fin_queue_done", False):
            st.success("Every alert of this queue has a disposition.")
        st.caption("No transaction selected.")
        return
    _, selected, selected_rank = selection
    ui.set_link("finance", tx=selected)
    detail(selected, selected_rank, dispositions, query, link_box)


review_queue(filters)
