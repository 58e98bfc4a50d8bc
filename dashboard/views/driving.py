"""Drive-log replay: frame scrubber with play/pause, layered BEV panels, the surprise
timeline, jumps between anomalies, bookmarks and the rerun recording."""
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import driving_data, links, plots, render, ui
from dashboard.workspace import review_store
from driving.spec import SPEC

ws, manifest = ui.open_run("Drive-log replay", "driving")
run_id = manifest["run_id"]
run_dir = Path(manifest["path"])
all_frames, log_table = ui.driving_frames(run_dir)
if log_table.empty:
    st.info("This run has no frames.")
    st.stop()
for line in driving_data.input_warnings(manifest):   # logs unlike the training logs
    st.warning(ui.plain(line), icon="⚠️")
ui.drift_panel(manifest)

alerts_by_log = dict(zip(log_table["log_id"], log_table["alerts"]))
ui.link_apply("driving", "log", "drive_log", lambda log: links.known_name(log, alerts_by_log, "log"))
with st.sidebar:
    log_id = st.selectbox("Log (most alerts first)", list(alerts_by_log), key="drive_log",
                          format_func=lambda log: f"{log} ({alerts_by_log[log]} anomalies)")
    speed = st.select_slider("Playback (frames/s)", [1, 2, 5, 10], value=5, key="drive_speed")
with st.expander(f"Logs in run {ui.plain(run_id)}", expanded=False):
    st.dataframe(log_table, hide_index=True, width="stretch")

frames = all_frames[all_frames["log_id"] == log_id].reset_index(drop=True)
frame_numbers = frames["frame"].to_numpy()
alerts = driving_data.alert_frames(frames)
layers = ui.driving_layers(manifest, log_id)
shap = ui.driving_shap(run_dir, log_id)
frame_key = f"drive_frame:{run_id}:{log_id}"
ui.link_apply("driving", "frame", frame_key, lambda f: links.known_number(f, frame_numbers, "frame"))
if frame_key not in st.session_state:
    st.session_state[frame_key] = int(alerts[0] if alerts.size else frame_numbers[0])


def jump(direction: int) -> None:
    """Button callback: move to the next / previous anomaly (stays put at the end)."""
    target = driving_data.step_anomaly(alerts, st.session_state[frame_key], direction)
    if target is not None:
        st.session_state[frame_key] = target


def go_to(frame: int) -> None:
    st.session_state[frame_key] = int(frame)


buttons = st.columns([1, 1, 1, 3])
buttons[0].button("◀ Previous anomaly", on_click=jump, args=(-1,), key="drive_prev",
                  disabled=not alerts.size, width="stretch")
buttons[1].button("Next anomaly ▶", on_click=jump, args=(1,), key="drive_next",
                  disabled=not alerts.size, width="stretch")
playing = buttons[2].toggle("Play", key="drive_play")
buttons[3].caption(f"{len(alerts)} anomalies flagged in {len(frames)} frames"
                   + (f" · at frames {', '.join(map(str, alerts[:12]))}" if alerts.size else ""))
top = driving_data.top_frames(frames)
st.caption("Top frames (highest score first)")
for k, (column, (top_frame, top_score)) in enumerate(
        zip(st.columns(driving_data.TOP_FRAMES), top[["frame", "score"]].itertuples(index=False))):
    column.button(f"#{k + 1} · frame {int(top_frame)} ({driving_data.shown_score(top_score, 3)})", on_click=go_to,
                  args=(int(top_frame),), key=f"drive_top_{k}", width="stretch")


def bookmark_section(frame: int) -> None:
    """Bookmark form (titled with the frame shown), recording download and bookmarks; in
    the fragment, so the title follows the frame while playing."""
    left, right = st.columns(2)
    with left:
        ui.review_form(ws, "driving", run_id,
                       lambda: driving_data.bookmark_id(log_id, st.session_state[frame_key]),
                       prefix="drive", title=f"**Bookmark frame {frame}**", submit="Add bookmark",
                       decisions=ui.decision_labels(SPEC), scope=f"{run_id}:{log_id}")
        recording = driving_data.recording_path(run_dir, log_id)
        if recording is not None:
            megabytes = recording.stat().st_size / 1e6
            st.download_button(f"Download rerun recording ({megabytes:.1f} MB)",
                               data=recording.read_bytes, file_name=recording.name,
                               mime="application/octet-stream", key="drive_download",
                               help="Open with the rerun viewer: rerun " + ui.plain(recording.name))
        else:
            st.caption("No rerun recording was exported for this log.")
    with right:
        has_store = (ws / "reviews.sqlite").is_file()
        events = review_store(ws).history("driving", "bookmark") if has_store else pd.DataFrame()
        marks = driving_data.bookmarks(events, log_id)
        if marks.empty:
            st.caption("No bookmarks in this log yet.")
        else:
            st.markdown("**Bookmarks**")
            st.dataframe(marks, hide_index=True, width="stretch")
            target = st.selectbox("Go to bookmark", marks["frame"].unique().tolist(),
                                  key="drive_goto")
            st.button("Go", on_click=go_to, args=(target,), key="drive_goto_button")


def seek_to_click() -> None:
    """A new click on the timeline (its selection, kept under the chart's key) moves the
    scrubber there; an unchanged selection does not, so the slider stays free to move."""
    clicked = driving_data.clicked_frame(st.session_state.get("drive_timeline"),
                                         plots.FRAME_PICK)
    seen_key = f"{frame_key}:clicked"
    if clicked is not None and clicked != st.session_state.get(seen_key) \
            and clicked in set(frame_numbers.tolist()):
        st.session_state[frame_key] = clicked
    st.session_state[seen_key] = clicked


@st.fragment(run_every=1.0 / speed if playing else None)
def replay() -> None:
    """Scrubber, panels, timeline and bookmarks; reruns on its own while playing."""
    seek_to_click()
    if playing:  # advance one frame per tick, looping at the end
        position = np.searchsorted(frame_numbers, st.session_state[frame_key], side="right")
        st.session_state[frame_key] = int(frame_numbers[position % len(frame_numbers)])
    frame = st.slider("Frame", int(frame_numbers[0]), int(frame_numbers[-1]), key=frame_key)
    frame = int(frame_numbers[min(np.searchsorted(frame_numbers, frame), len(frame_numbers) - 1)])
    info = frames[frames["frame"] == frame].iloc[0]
    truth = info.get("anomaly")
    flagged = "**anomaly flagged**" if info["is_alert"] else "normal"
    truth_text = ("" if truth is None or pd.isna(truth)
                  else f" · simulator truth: {'anomaly' if truth else 'normal'}")
    seconds = info["timestamp"] - frames["timestamp"].iloc[0]   # a real log's are epoch times
    st.markdown(f"frame **{frame}** · t = {seconds:.1f} s · score "
                f"**{driving_data.shown_score(info['score'])}** · p-value {info['p_value']:.3g} · "
                f"{flagged}{truth_text}")
    ui.set_link("driving", log=log_id, frame=frame)
    ui.share_link("frame")
    st.altair_chart(plots.surprise_timeline(frames, frame), width="stretch", key="drive_timeline",
                    on_select="rerun", selection_mode=plots.FRAME_PICK)
    panels = driving_data.frame_panels(layers, frame, size=480)
    items = list(panels.items())
    for start in range(0, len(items), 2):          # two panels a row: large enough to read
        for column, (name, picture) in zip(st.columns(2), items[start:start + 2]):
            column.image(picture, caption=driving_data.panel_caption(name), width="stretch")
    keys = st.columns(2)
    legend = driving_data.class_legend(layers.classes, layers.declared_classes)
    keys[0].image(render.legend(legend), caption="Classes")
    if layers.error is not None:
        keys[1].image(driving_data.error_bar(layers), caption="Error colour scale")
    explained = shap[shap["frame"] == frame]
    if len(explained):
        st.altair_chart(plots.region_bars(explained, title=f"Regions behind frame {frame}'s "
                                                           "surprise (SHAP)"),
                        width="stretch", key="drive_shap")
    elif len(shap):
        st.caption("SHAP explanations exist for frames "
                   + ", ".join(map(str, sorted(shap["frame"].unique()))))
    bookmark_section(frame)


replay()
