"""Overview: runs per vertical, counts, alert rates and review progress."""
import math

import streamlit as st

from dashboard import export_data, ui
from dashboard.workspace import REVIEW_FILE, VERTICAL_TITLES, overview, vertical_totals

PAGE_OF = {"finance": ("views/finance.py", "Open the alert queue"),
           "medical": ("views/medical.py", "Open CT review"),
           "driving": ("views/driving.py", "Open drive-log replay")}

ws = ui.workspace()
st.title("unmask review")
st.caption("Anomalies found by masked reconstruction: card transactions, CT volumes, drive logs.")

table = overview(ws)
if table.empty:
    ui.empty_workspace(ws)
    st.stop()

totals = vertical_totals(table)
for column, (_, row) in zip(st.columns(len(totals)), totals.iterrows()):
    vertical = row["vertical"]
    with column, st.container(border=True):
        st.subheader(VERTICAL_TITLES[vertical])
        if row["runs"] == 0:
            st.caption("No runs yet.")
            continue
        items, alerts = int(row["items"] or 0), int(row["alerts"] or 0)
        left, right = st.columns(2)
        left.metric("Runs", int(row["runs"]))
        right.metric("Alerts (latest run)", f"{alerts:,}",
                     help=f"of {items:,} items scored")
        rate = row["alert_rate"]
        left.metric("Alert rate", "-" if math.isnan(rate) else f"{rate:.2%}")
        right.metric("Reviewed", f"{int(row['reviewed']):,}")
        progress = row["review_progress"]
        st.progress(0.0 if math.isnan(progress) else float(progress),
                    text=f"review progress: {'-' if math.isnan(progress) else f'{progress:.0%}'}")
        path, label = PAGE_OF[vertical]
        st.page_link(path, label=label, icon=":material/arrow_forward:")

st.subheader("All runs")
st.dataframe(
    table.drop(columns=["path"]), hide_index=True, width="stretch",
    column_config={"alert_rate": st.column_config.NumberColumn("alert rate", format="percent"),
                   "auroc": st.column_config.NumberColumn("AUROC", format="%.3f")})
st.caption(f"Reviews are stored in {ui.plain(ws / REVIEW_FILE)} (append-only).")
st.download_button("Download the review history as CSV", key="review_history_csv",
                   data=lambda: export_data.review_history_csv(ws / REVIEW_FILE),
                   file_name="review-history.csv", mime="text/csv", on_click="ignore",
                   icon=":material/download:",
                   help="every disposition, review and bookmark of every vertical: who, what, when")
