"""CT review: cases by anomaly score, a slice viewer with overlays, organ volumes, SHAP
regions and a review form."""
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import links, medical_data, plots, render, ui
from dashboard.workspace import reviewed_items
from medical.spec import SPEC

DECISION_LABELS = ui.decision_labels(SPEC)

ws, manifest = ui.open_run("CT review", "medical")
run_id = manifest["run_id"]
run_dir = Path(manifest["path"])
labels = manifest.get("summary", {}).get("labels", {})
table = ui.medical_cases(run_dir)
# input unlike training (the whole input; the cases it names); alerts unreachable
for line in medical_data.run_warnings(manifest, table.get("case", [])):
    st.warning(ui.plain(line), icon="⚠️")
if manifest.get("summary", {}).get("has_anomaly_maps", True):   # else no scores to compare
    ui.drift_panel(manifest)
if table.empty:
    st.info("This run has no cases.")
    st.stop()

reviews = reviewed_items(ws, "medical")
review_of = (reviews.set_index("item_id")["decision"] if len(reviews) else pd.Series(dtype=object))
listing = table[[c for c in ("rank", "case", "score", "p_value", "is_alert", "has_lesion")
                 if c in table]].copy()
listing.insert(2, "review", listing["case"].astype(str).map(review_of).astype("string").fillna(""))

alert_of = dict(zip(table["case"].astype(str), table["is_alert"].astype(bool)))


def open_next_case(_recorded_case: str) -> None:
    """After a review: open the most anomalous case that still has none (if any)."""
    done = set(reviewed_items(ws, "medical")["item_id"].astype(str))
    following = next((c for c in alert_of if c not in done), None)
    if following is not None:
        st.session_state["ct_case"] = following


ui.link_apply("medical", "case", "ct_case", lambda c: links.known_name(c, alert_of, "case"))
ui.link_apply("medical", "plane", "ct_plane",
              lambda p: links.known_choice(p, medical_data.PLANES, "plane"))
# the case table lists the reviewed-or-not filter's rows; a newly selected row opens its case
# (remembered, so an unchanged selection does not undo a case picked in the sidebar)
if st.session_state.get("ct_unreviewed_only"):
    listing = listing[listing["review"] == ""]
shown_cases = listing.reset_index(drop=True)
picked = ((st.session_state.get("ct_cases_table") or {}).get("selection") or {}).get("rows") or []
picked_case = str(shown_cases.iloc[picked[0]]["case"]) if picked and picked[0] < len(shown_cases) \
    else None
if picked_case is not None and picked_case != st.session_state.get("ct_table_opened"):
    st.session_state["ct_case"] = picked_case
st.session_state["ct_table_opened"] = picked_case
with st.sidebar:
    case = st.selectbox("Case (most anomalous first)", list(alert_of), key="ct_case",
                        format_func=lambda c: f"{c}  (alert)" if alert_of[c] else c)
    st.toggle("Unreviewed only", value=False, key="ct_unreviewed_only",
              help="list only the cases without a review")


row = table[table["case"].astype(str) == case].iloc[0]
volumes = ui.medical_case(run_dir, case)
score, p_value = row.get("score"), row.get("p_value")
st.subheader(ui.plain(case) + (f" · score {score:.4f}" if pd.notna(score) else "")
             + (f" · p-value {p_value:.3g}" if pd.notna(p_value) else "")
             + (" · alert" if alert_of[case] else ""))
for line in medical_data.case_warnings(row):          # this case unlike the training data
    st.warning(ui.plain(f"This case: {line}"), icon="⚠️")

cursor_key = f"ct_cursor:{case}"       # the voxel shown: the same point in every plane
if cursor_key not in st.session_state:  # open on the voxel with the most anomaly
    st.session_state[cursor_key] = medical_data.start_cursor(volumes)
plane = st.session_state.get("ct_plane", next(iter(medical_data.PLANES)))
link_key = f"ct_link_slice:{case}"
ui.link_apply("medical", "slice", link_key, lambda i: links.index_below(
    i, medical_data.slice_count(volumes, plane), "slice"))
if link_key in st.session_state:       # a link's 0-based slice moves the cursor
    st.session_state[cursor_key] = medical_data.move_cursor(
        st.session_state[cursor_key], plane, st.session_state.pop(link_key))
n_slices = medical_data.slice_count(volumes, plane)
slice_key = f"ct_slice:{case}:{plane}"
# the slider shows 1-based numbers, as the caption does; set before it is drawn
st.session_state[slice_key] = medical_data.cursor_slice(st.session_state[cursor_key], plane) + 1


def follow_slider() -> None:
    st.session_state[cursor_key] = medical_data.move_cursor(
        st.session_state[cursor_key], plane, st.session_state[slice_key] - 1)


viewer, side = st.columns([3, 2])
with side:    # controls beside the image, so the image starts at the top of the page
    st.radio("Plane", list(medical_data.PLANES), horizontal=True, key="ct_plane")
    number = st.slider("Slice", 1, n_slices, key=slice_key, on_change=follow_slider)
    index = number - 1
    window = st.radio("Window", list(medical_data.WINDOWS), horizontal=True, key="ct_window")
    overlays = st.columns(2)
    show_seg = overlays[0].toggle("Segmentation", value=volumes.segmentation is not None,
                                  disabled=volumes.segmentation is None, key="ct_show_seg")
    seg_opacity = overlays[1].slider("Seg. opacity", 0.0, 1.0, 0.35, 0.05, key="ct_seg_opacity")
    no_heat = volumes.anomaly is None      # a segmenter without an anomaly model
    show_heat = overlays[0].toggle("Anomaly heat map", value=not no_heat, disabled=no_heat,
                                   key="ct_show_heat")
    heat_opacity = overlays[1].slider("Heat opacity", 0.0, 1.0, 0.6, 0.05, disabled=no_heat,
                                      key="ct_heat_opacity")
    if no_heat:
        st.caption("No anomaly heat map: this run was made without an anomaly model.")
with viewer:
    image = medical_data.slice_image(volumes, plane, index, window, show_seg, show_heat,
                                     seg_opacity, heat_opacity, size=480)
    edges = medical_data.orientation_labels(plane)
    st.image(render.edge_labels(image, edges),
             caption=f"{plane} slice {number} of {n_slices} · {window} window "
                     f"(L {medical_data.WINDOWS[window][0]:g} / W "
                     f"{medical_data.WINDOWS[window][1]:g} HU) · patient's "
                     f"{edges['left']} on the left, {edges['top']} at the top")
    keys = st.columns(2)
    organ_colours = medical_data.organ_legend(labels)
    if show_seg and organ_colours:
        keys[0].image(render.legend(organ_colours), caption="Organ colours")
    if show_heat and volumes.anomaly is not None:
        keys[1].image(medical_data.heat_bar(volumes), caption="Anomaly heat map scale")
    ui.set_link("medical", case=case, plane=plane, slice=index)
    ui.share_link("slice")

with st.expander(f"Cases in run {ui.plain(run_id)} ({len(table)}; "
                 f"{int(table['is_alert'].sum())} alerts) · click a row to open it",
                 expanded=True):
    st.dataframe(shown_cases, hide_index=True, width="stretch",
                 height=min(38 + 35 * len(shown_cases), 250), key="ct_cases_table",
                 on_select="rerun", selection_mode="single-row",
                 column_config={"score": st.column_config.NumberColumn(format="%.4f"),
                                "p_value": st.column_config.NumberColumn("p-value", format="%.3f"),
                                "is_alert": st.column_config.CheckboxColumn("alert")})

with side:
    organs = medical_data.organ_table(row, labels)
    if len(organs):
        st.markdown("**Organs**")
        has_dice = organs["dice"].notna().any()
        st.dataframe(organs if has_dice else organs.drop(columns=["dice"]), hide_index=True,
                     width="stretch",
                     column_config={
                         "volume_ml": st.column_config.NumberColumn("volume (ml)", format="%.1f"),
                         "dice": st.column_config.NumberColumn("Dice", format="%.3f")})
    regions = medical_data.region_shap(run_dir, case)
    if len(regions):
        st.altair_chart(plots.region_bars(regions), width="stretch", key="ct_regions")
    current = review_of.get(case)
    ui.review_form(ws, "medical", run_id, case, prefix="ct",
                   title=f"**Review** · current: {DECISION_LABELS.get(current, 'not reviewed')}",
                   submit="Submit review", decisions=DECISION_LABELS,
                   on_recorded=open_next_case)
