"""Plain functions behind the CT viewer and drive replay: slice cursor across planes,
orientation letters, legends, colour bars and colour scaling, top frames, timeline clicks."""
from dataclasses import replace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from core.runs import load_manifest
from dashboard import driving_data, medical_data, plots, render
from dashboard_fixtures import write_driving_run
from driving.importers.occ3d import WORLD_CLASSES as OCC3D_CLASSES
from driving.schema import CLASS_COLOURS, CLASSES, UNOBSERVED_COLOUR, read_log, write_log
from driving.scoring.surprise import region_masks


def volumes_of(shape=(6, 5, 4)) -> medical_data.CaseVolumes:
    return medical_data.CaseVolumes(image=np.zeros(shape, np.float32), spacing=(1.0, 1.0, 1.0))


def test_cursor_keeps_the_same_voxel_across_planes():
    cursor = (4, 1, 3)                                       # (x, y, z) in RAS+
    assert medical_data.cursor_slice(cursor, "sagittal") == 4
    assert medical_data.cursor_slice(cursor, "coronal") == 1
    assert medical_data.cursor_slice(cursor, "axial") == 3
    moved = medical_data.move_cursor(cursor, "axial", 0)     # a new axial slice ...
    assert moved == (4, 1, 0)                                # ... keeps x and y
    assert medical_data.cursor_slice(moved, "coronal") == 1
    # the voxel the cursor names lies in every plane's slice through it
    vol = np.zeros((6, 5, 4))
    vol[moved] = 1.0
    for plane in medical_data.PLANES:
        assert medical_data.take_slice(vol, plane, medical_data.cursor_slice(moved, plane)).sum() == 1


def test_start_cursor_is_the_hottest_voxel():
    volumes = volumes_of()
    volumes.anomaly = np.zeros((6, 5, 4), np.float32)
    volumes.anomaly[2, 3, 1] = 5.0
    assert medical_data.start_cursor(volumes) == (2, 3, 1)
    assert medical_data.start_cursor(volumes_of()) == (3, 2, 2)   # middle without a map


def test_orientation_labels_radiological_convention():
    assert medical_data.orientation_labels("axial") == {
        "top": "A", "bottom": "P", "left": "R", "right": "L"}
    assert medical_data.orientation_labels("coronal") == {
        "top": "S", "bottom": "I", "left": "R", "right": "L"}
    assert medical_data.orientation_labels("sagittal") == {
        "top": "S", "bottom": "I", "left": "A", "right": "P"}


def test_orientation_labels_match_the_patient_for_an_lps_affine(tmp_path):
    """A volume stored LPS (x to the patient's left): a marker in the patient's right,
    anterior, superior corner is drawn at the R / A / S edges after canonicalisation."""
    shape = (8, 8, 8)
    data = np.zeros(shape, np.float32)
    data[0, 0, 7] = 1.0     # LPS: index 0 on x = most right, 0 on y = most anterior, z 7 = superior
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    path = tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    image, _ = medical_data._canonical(*medical_data._read(path), np.float32)
    x, y, z = (int(i) for i in np.argwhere(image == 1.0)[0])
    for plane, through in (("axial", z), ("coronal", y), ("sagittal", x)):
        cut = medical_data.take_slice(image, plane, through)
        row, col = (int(i) for i in np.argwhere(cut == 1.0)[0])
        labels = medical_data.orientation_labels(plane)
        vertical = labels["top"] if row == 0 else labels["bottom"]
        horizontal = labels["left"] if col == 0 else labels["right"]
        assert row in (0, cut.shape[0] - 1) and col in (0, cut.shape[1] - 1)
        assert {vertical, horizontal} <= {"R", "A", "S"}, (plane, labels, row, col)


def test_edge_labels_are_drawn_at_their_edges():
    image = np.zeros((100, 120, 3), np.uint8)
    drawn = render.edge_labels(image, {"top": "A", "left": "R"})
    yellow = (drawn[..., 0] > 200) & (drawn[..., 1] > 200) & (drawn[..., 2] < 60)
    rows, cols = np.nonzero(yellow)
    assert rows.size and cols.size
    top = yellow[:25, 45:75].any()
    left = yellow[40:60, :25].any()
    assert top and left and not yellow[75:, :].any() and not yellow[:, 95:].any()


def test_organ_legend_uses_the_overlay_palette():
    legend = medical_data.organ_legend({"2": "spleen", "1": "liver"})
    assert [name for name, _ in legend] == ["liver", "spleen"]
    assert legend[0][1] == tuple(int(c) for c in render.LABEL_COLOURS[0])
    assert legend[1][1] == tuple(int(c) for c in render.LABEL_COLOURS[1])
    picture = render.legend(legend)
    assert tuple(picture[3 + 7, 2 + 7]) == legend[0][1]           # first swatch
    assert tuple(picture[20 + 3 + 7, 2 + 7]) == legend[1][1]      # second row
    assert tuple(picture[3, 2]) == (128, 128, 128)                 # outlined: white shows too


def test_colour_bar_runs_the_colour_map_end_to_end():
    bar = render.colour_bar(render.heat_colours, (0.5, 2.0), "error", width=200)
    assert bar.shape[1] == 200 and bar.dtype == np.uint8
    assert tuple(bar[5, 0]) == tuple(render.to_uint8(render.heat_colours(np.array(0.0))))
    assert tuple(bar[5, -1]) == tuple(render.to_uint8(render.heat_colours(np.array(1.0))))
    assert (bar[17:] < 128).any()                                 # labels written under it


def test_heat_bar_shows_the_case_heat_range():
    volumes = volumes_of()
    volumes.anomaly = np.ones((6, 5, 4), np.float32)
    volumes.heat_range = (0.1, 0.9)
    bar = medical_data.heat_bar(volumes, width=120)
    assert bar.shape[1] == 120


def test_magma_is_dark_to_light_and_monotone_in_brightness():
    colours = render.magma(np.linspace(0, 1, 50))
    brightness = colours @ np.array([0.2126, 0.7152, 0.0722])
    assert (np.diff(brightness) > 0).all()
    assert tuple(colours[0]) == tuple(render.MAGMA_ANCHORS[0])


def test_percentile_range_ignores_a_few_hot_cells():
    error = np.r_[np.full(990, 10.0), np.full(10, 255.0)]          # 1% very hot cells
    low, high = render.percentile_range(error, 1.0, 98.0)
    assert (low, high) == (10.0, pytest.approx(10.0, abs=1e-5))
    scaled = render.scale01(np.array([0.0, 10.0, 255.0]), (0.0, 20.0))
    assert scaled.tolist() == [0.0, 0.5, 1.0]
    # the old scale (raw / 255) left typical cells at 4% brightness; the new one does not
    assert render.scale01(np.array([8.0]), driving_data.error_range(
        np.random.default_rng(0).integers(0, 20, (10, 8, 8)).astype(np.uint8)))[0] > 0.3


def test_class_legend_is_the_driving_palette():
    legend = dict(driving_data.class_legend(("road", "pedestrian", "mystery")))
    assert legend["road"] == CLASS_COLOURS["road"]
    assert legend["pedestrian"] == CLASS_COLOURS["pedestrian"]
    assert legend["unobserved"] == UNOBSERVED_COLOUR
    assert legend["mystery"] == tuple(int(c) for c in render.LABEL_COLOURS[2])
    # the magenta square on every panel is the ego, and the legend says so
    assert legend["ego (facing up)"] == driving_data.EGO_COLOUR


def test_top_frames_and_timeline_clicks():
    frames = pd.DataFrame({"frame": [0, 1, 2, 3, 4, 5, 6], "score": [.1, .9, .3, .8, .2, .7, .5]})
    assert driving_data.top_frames(frames, 3)["frame"].tolist() == [1, 3, 5]
    assert driving_data.top_frames(frames)["frame"].tolist() == [1, 3, 5, 6, 2]
    state = {"selection": {plots.FRAME_PICK: [{"frame": 4}]}}
    assert driving_data.clicked_frame(state, plots.FRAME_PICK) == 4
    assert driving_data.clicked_frame({"selection": {plots.FRAME_PICK: {}}}, plots.FRAME_PICK) is None
    assert driving_data.clicked_frame(None, plots.FRAME_PICK) is None


def test_timeline_has_the_click_selection():
    frames = pd.DataFrame({"frame": [0, 1, 2], "score": [.1, .9, .3], "is_alert": [False, True, False]})
    spec = plots.surprise_timeline(frames, 1).to_dict()
    params = spec["params"]          # Altair lifts a layer's selection to the top level
    assert [p["name"] for p in params] == [plots.FRAME_PICK]
    assert params[0]["select"]["fields"] == ["frame"]


def test_drive_shap_regions_are_named_by_where_they_lie_from_the_ego():
    # 8 x 8 cells of 2 m, ego at row 6 col 4 (facing up): 2 x 2 blocks of 4 x 4 cells
    masks, names = region_masks((8, 8), (6, 4), 2.0, blocks=2)
    assert names == ["ahead 5-13 m, left 1-9 m", "ahead 5-13 m, 1 m left to 7 m right",
                     "3 m behind to 5 m ahead, left 1-9 m",
                     "3 m behind to 5 m ahead, 1 m left to 7 m right"]
    assert masks[0][0, 0] and masks[1][0, 7] and masks[2][7, 0] and masks[3][7, 7]
    assert masks.sum(0).min() == 1  # every cell in exactly one region


def test_class_legend_lists_the_classes_the_log_declares(tmp_path):
    """An Occ3D import lists no lane_marking: the replay's legend names the classes the log's
    file lists, not every class the model knows."""
    run_dir = write_driving_run(tmp_path / "ws")
    manifest = load_manifest(run_dir)
    log = read_log(manifest["inputs"][0])
    layers = driving_data.load_layers(run_dir, manifest, "log_000")
    shown = [name for name, _ in driving_data.class_legend(layers.classes, layers.declared_classes)]
    assert shown == list(CLASSES) + ["unobserved", "ego (facing up)"]       # a simulated log
    marking, road = CLASSES.index("lane_marking"), CLASSES.index("road")
    no_markings = {name: np.where(getattr(log, name) == marking, road, getattr(log, name))
                   for name in ("semantic", "semantic_true")}
    imported = replace(log, meta=replace(log.meta, world_classes=OCC3D_CLASSES), **no_markings)
    write_log(imported, manifest["inputs"][0])
    layers = driving_data.load_layers(run_dir, manifest, "log_000")
    shown = [name for name, _ in driving_data.class_legend(layers.classes, layers.declared_classes)]
    assert shown == list(OCC3D_CLASSES) + ["unobserved", "ego (facing up)"]
    assert "lane_marking" not in shown
