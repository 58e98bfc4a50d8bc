"""The CT viewer and drive replay through AppTest: slice numbering and the point kept
across planes, case rows that open a case, top-frame jumps, timeline clicks and the
bookmark title.

AppTest cannot click inside a Vega-Lite chart or a dataframe; a click is simulated by
putting the selection the browser would send under the element's key in session state,
which is what the page reads."""
import re

import pandas as pd

from dashboard import driving_data, plots
from dashboard_fixtures import write_medical_run
from test_dashboard_pages import open_app, texts

FRAME_KEY = "drive_frame:driving-run:log_000"


def caption_slice(at) -> tuple[str, int, int]:
    plane, number, total = re.match(r"(\w+) slice (\d+) of (\d+)", at.image[0].captions[0]).groups()
    return plane, int(number), int(total)


def test_ct_slider_and_caption_number_slices_alike(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/medical.py")
    for plane in ("axial", "coronal", "sagittal"):
        at.radio(key="ct_plane").set_value(plane).run()
        slider = at.slider(key=f"ct_slice:patient_000:{plane}")
        assert slider.min == 1 and caption_slice(at) == (plane, slider.value, slider.max)
        slider.set_value(slider.max).run()
        assert caption_slice(at) == (plane, slider.max, slider.max)


def test_ct_slice_is_the_same_point_across_planes(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/medical.py")
    at.slider(key="ct_slice:patient_000:axial").set_value(3).run()
    at.radio(key="ct_plane").set_value("coronal").run()
    coronal = at.slider(key="ct_slice:patient_000:coronal").value
    at.slider(key="ct_slice:patient_000:coronal").set_value(coronal + 2).run()
    at.radio(key="ct_plane").set_value("axial").run()
    assert at.slider(key="ct_slice:patient_000:axial").value == 3       # not reset
    assert caption_slice(at) == ("axial", 3, 12)
    at.radio(key="ct_plane").set_value("coronal").run()
    assert at.slider(key="ct_slice:patient_000:coronal").value == coronal + 2


def test_ct_orientation_legend_and_colour_bar_are_shown(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/medical.py")
    assert "patient's R on the left, A at the top" in at.image[0].captions[0]
    assert [i.captions[0] for i in at.image[1:]] == ["Organ colours", "Anomaly heat map scale"]
    at.radio(key="ct_plane").set_value("sagittal").run()
    assert "patient's A on the left, S at the top" in at.image[0].captions[0]


def test_ct_heat_controls_are_off_with_a_note_when_the_run_has_no_anomaly_map(monkeypatch,
                                                                             workspace, tmp_path):
    at = open_app(monkeypatch, workspace, "views/medical.py")
    assert not at.slider(key="ct_heat_opacity").disabled
    assert not at.toggle(key="ct_show_heat").disabled
    assert "without an anomaly model" not in texts(at)
    segmenter_only = tmp_path / "segmenter_only"
    write_medical_run(segmenter_only, anomaly_model=False)
    at = open_app(monkeypatch, segmenter_only, "views/medical.py")
    assert at.slider(key="ct_heat_opacity").disabled and at.toggle(key="ct_show_heat").disabled
    assert "No anomaly heat map: this run was made without an anomaly model." in texts(at)
    assert [i.captions[0] for i in at.image[1:]] == ["Organ colours"]      # no heat scale


def test_ct_selecting_a_case_row_opens_the_case(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/medical.py")
    cases = at.dataframe[1].value
    assert cases["case"].tolist() == ["patient_000", "patient_001"]
    at.session_state["ct_cases_table"] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    assert at.selectbox(key="ct_case").value == "patient_001"
    assert "patient_001 · score" in texts(at)
    # the row stays selected: picking another case in the sidebar is not undone
    at.selectbox(key="ct_case").set_value("patient_000").run()
    assert at.selectbox(key="ct_case").value == "patient_000"


def test_drive_top_frames_jump_to_the_peak(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/driving.py")
    labels = [b.label for b in at.button if b.key and b.key.startswith("drive_top_")]
    assert len(labels) == 5 and all(f"frame {f}" in " ".join(labels) for f in range(20, 25))
    at.slider(key=FRAME_KEY).set_value(2).run()
    at.button(key="drive_top_0").click().run()
    peak = int(re.search(r"frame (\d+)", labels[0]).group(1))
    assert at.slider(key=FRAME_KEY).value == peak
    assert f"frame **{peak}**" in "\n".join(m.value for m in at.markdown)


def test_drive_timeline_click_seeks_once(monkeypatch, workspace):
    at = open_app(monkeypatch, workspace, "views/driving.py")
    at.session_state["drive_timeline"] = {"selection": {plots.FRAME_PICK: [{"frame": 33}]}}
    at.run()
    assert not at.exception and at.slider(key=FRAME_KEY).value == 33
    at.slider(key=FRAME_KEY).set_value(10).run()            # the old click does not pull back
    assert at.slider(key=FRAME_KEY).value == 10


def test_drive_bookmark_title_follows_the_frame(monkeypatch, workspace):
    """AppTest reruns the whole page on a fragment tick, so it shows the title's content
    per frame; that the form sits inside the replay fragment (a browser playing reruns
    only the fragment) is not visible to it."""
    at = open_app(monkeypatch, workspace, "views/driving.py")
    assert "**Bookmark frame 20**" in [m.value for m in at.markdown]
    at.toggle(key="drive_play").set_value(True).run()       # a fragment tick moves the frame
    frame = at.slider(key=FRAME_KEY).value
    assert frame == 21 and "**Bookmark frame 21**" in [m.value for m in at.markdown]
    at.run()
    assert "**Bookmark frame 22**" in [m.value for m in at.markdown]


def test_drive_frame_time_counts_from_the_log_start(monkeypatch, workspace):
    """A real log's timestamps are epoch seconds (Occ3D: 1.5e9); the frame line says how
    far into the log the frame is, as it does for a simulated log starting at 0."""
    path = workspace / "runs" / "driving" / "driving-run" / "frames.parquet"
    frames = pd.read_parquet(path)
    frames["timestamp"] += 1_500_000_000.0
    frames.to_parquet(path)
    at = open_app(monkeypatch, workspace, "views/driving.py")
    line = next(m.value for m in at.markdown if m.value.startswith("frame **20**"))
    assert "t = 2.0 s" in line


def test_drive_timeline_ticks_whole_frames_and_keys_its_marks():
    frames = pd.DataFrame({"frame": range(4), "score": [.1, .9, .3, .2],
                           "is_alert": [False, True, False, False],
                           "anomaly": [False, True, True, False]})
    spec = plots.surprise_timeline(frames, 1).to_dict()
    x_axis = spec["layer"][1]["encoding"]["x"]["axis"]
    assert x_axis["format"] == "d" and x_axis["tickMinStep"] == 1
    assert spec["title"]["subtitle"] == ("red dots: alerts · orange bands: true anomalies "
                                         "(simulator) · dashed line: this frame")
    no_truth = plots.surprise_timeline(frames.drop(columns="anomaly"), 1).to_dict()
    assert no_truth["title"]["subtitle"] == "red dots: alerts · dashed line: this frame"


def test_a_tiny_negative_frame_score_shows_as_zero():
    assert driving_data.shown_score(-3e-9) == "0.0000"
    assert driving_data.shown_score(0.12345) == "0.1235"
    assert driving_data.shown_score(-3e-9, 3) == "0.000"     # the top-frame buttons' places
