"""The rerun recording: grids placed in the world under the ego pose, columnar sends, the
annotation context, the blueprint, and reading the file back with rerun's own reader."""
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from driving.rerun_export import cell_centre_in_world, write_recording
from driving.schema import CLASS_COLOURS, UNOBSERVED, LogMeta
from driving.warp import ego_to_world

RES = 0.5
META = LogMeta(grid_shape=(8, 6), resolution_m=RES, ego_cell=(5, 3))
AHEAD, RIGHT = 3, 2          # the probed cell: 3 cells ahead of the ego and 2 to its right
PROBE = (META.ego_cell[0] - AHEAD, META.ego_cell[1] + RIGHT)
S2 = math.sqrt(2) / 2
# (x, y, yaw) -> the probed cell's world (x, y), worked out by hand from DESIGN.md's
# convention: forward = (cos yaw, sin yaw), right = (sin yaw, -cos yaw).
HAND_WORKED = [
    ((10.0, 20.0, 0.0), (10.0 + AHEAD * RES, 20.0 - RIGHT * RES)),            # facing east
    ((10.0, 20.0, math.pi / 2), (10.0 + RIGHT * RES, 20.0 + AHEAD * RES)),    # facing north
    ((10.0, 20.0, math.pi), (10.0 - AHEAD * RES, 20.0 + RIGHT * RES)),        # facing west
    ((-4.0, 7.0, math.pi / 4),                                                # facing north-east
     (-4.0 + (AHEAD + RIGHT) * RES * S2, 7.0 + (AHEAD - RIGHT) * RES * S2)),
]


@pytest.mark.parametrize("pose, expected", HAND_WORKED)
def test_cell_lands_where_the_pose_convention_puts_it(pose, expected):
    x, y, z = cell_centre_in_world(pose, META, *PROBE)
    assert (x, y, z) == pytest.approx((*expected, 0.0), abs=1e-9)
    assert cell_centre_in_world(pose, META, *META.ego_cell)[:2] == pytest.approx(pose[:2], abs=1e-9)


def test_every_cell_agrees_with_the_warp():
    """The drawn grid matches the warp that the model's temporal context uses."""
    rng = np.random.default_rng(0)
    rows, cols = np.meshgrid(np.arange(8), np.arange(6), indexing="ij")
    for pose in rng.uniform([-50, -50, -np.pi], [50, 50, np.pi], (5, 3)):
        drawn = cell_centre_in_world(pose, META, rows, cols)                    # (H, W, 3)
        forward = (META.ego_cell[0] - rows) * RES
        right = (cols - META.ego_cell[1]) * RES
        wx, wy = ego_to_world(pose, forward, right)
        np.testing.assert_allclose(drawn[..., 0], wx, atol=1e-9)
        np.testing.assert_allclose(drawn[..., 1], wy, atol=1e-9)


# --- the written file ---

def _turn(angle_quaternion, vector):
    """Turn ``vector`` by a quaternion (x, y, z, w) about +z: read its angle, use a matrix."""
    qx, qy, qz, qw = angle_quaternion
    assert (qx, qy) == pytest.approx((0.0, 0.0))
    angle = 2 * math.atan2(qz, qw)
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1], vector[2]])


DRIVEN = [HAND_WORKED[i] for i in (0, 1, 3)]      # the poses of the 3 frames, and the probe's place


@pytest.fixture
def turning_log(small_log):
    """``small_log`` (3 frames, 8x6) at the poses of ``DRIVEN``: facing east, north, north-east."""
    x, y, yaw = np.array([pose for pose, _ in DRIVEN]).T
    return replace(small_log, meta=META, ego_x=x, ego_y=y, ego_yaw=yaw)


@pytest.fixture
def recording(turning_log, tmp_path):
    n, (h, w) = len(turning_log), META.grid_shape
    predicted = np.full((n, h, w), 5, np.uint8)                      # "pedestrian" everywhere
    error = np.arange(n * h * w, dtype=np.uint8).reshape(n, h, w)
    frames = pd.DataFrame({"log_id": "tiny", "frame": [0, 1, 2], "timestamp": [0.0, 0.1, 0.2],
                           "score": [0.5, 2.0, 0.7], "surprise_revealed": 0.0,
                           "visible_error": 0.1, "anomaly": [False, True, None]})
    out = write_recording(turning_log, frames, np.arange(n), predicted, error, tmp_path / "r.rrd")
    return out, predicted, error


def _read(path):
    """``{(entity, static): record batch as a dict of columns}`` through rerun's RrdReader."""
    from rerun.chunk import RrdReader

    reader = RrdReader(path)
    assert len(reader.recordings()) == 1 and len(reader.blueprints()) == 1
    chunks = {}
    for chunk in reader.stream():
        key = (str(chunk.entity_path), chunk.is_static)
        assert key not in chunks, f"{key} was sent in more than one chunk"   # one send per entity
        chunks[key] = chunk.to_record_batch().to_pydict()
    return chunks


def test_recording_places_the_grid_under_the_ego_pose(recording):
    path, _, _ = recording
    chunks = _read(path)
    ego = chunks[("/world/ego", False)]
    assert ego["frame"] == [0, 1, 2]
    scene = chunks[("/world/ego/scene", True)]
    (map_translation,) = scene["GridMap:translation"][0]
    (map_rotation,) = scene["GridMap:quaternion"][0]
    assert scene["GridMap:cell_size"] == [[RES]]
    for i, (pose, expected) in enumerate(DRIVEN):
        (translation,) = ego["Transform3D:translation"][i]
        (rotation,) = ego["Transform3D:quaternion"][i]
        assert translation == pytest.approx([pose[0], pose[1], 0.0])
        # rerun draws a GridMap's buffer row 0 along the map's +y edge: texel (r, c) is
        # centred at ((c + .5) s, (H - r - .5) s) in the map frame.
        row, col = PROBE
        texel = np.array([(col + 0.5) * RES, (META.grid_shape[0] - row - 0.5) * RES, 0.0])
        in_ego = np.asarray(map_translation) + _turn(map_rotation, texel)
        in_world = np.asarray(translation) + _turn(rotation, in_ego)
        assert in_world == pytest.approx([*expected, 0.0], abs=1e-5)
    trajectory = chunks[("/world/trajectory", True)]["LineStrips3D:strips"][0][0]
    np.testing.assert_allclose(trajectory, [[x, y, 0] for (x, y, _), _ in DRIVEN])


def test_recording_entities_frames_and_colours(recording, turning_log):
    path, predicted, error = recording
    chunks = _read(path)
    temporal = {entity for entity, static in chunks if not static}
    assert temporal == {"/world/ego", "/world/ego/scene", "/world/ego/surprise", "/grid/observed",
                        "/grid/visible", "/grid/predicted", "/grid/truth", "/grid/error",
                        "/score", "/surprise_revealed", "/visible_error", "/anomaly"}
    for entity in temporal - {"/anomaly"}:
        assert chunks[(entity, False)]["frame"] == [0, 1, 2], entity
    assert chunks[("/score", False)]["Scalars:scalars"] == [[0.5], [2.0], [0.7]]
    assert chunks[("/anomaly", False)]["frame"] == [0, 1]              # frame 2 has no label
    assert chunks[("/anomaly", False)]["Scalars:scalars"] == [[0.0], [1.0]]

    h, w = META.grid_shape
    observed = np.array(chunks[("/grid/observed", False)]["SegmentationImage:buffer"][1][0])
    np.testing.assert_array_equal(observed.reshape(h, w), turning_log.semantic[1])
    hidden_only = np.array(chunks[("/grid/predicted", False)]["SegmentationImage:buffer"][1][0])
    np.testing.assert_array_equal(hidden_only.reshape(h, w),
                                  np.where(turning_log.visible[1], UNOBSERVED, predicted[1]))
    surprise = np.array(chunks[("/world/ego/surprise", False)]["GridMap:data"][1][0])
    surprise = surprise.reshape(h, w, 4)
    np.testing.assert_array_equal(surprise[..., 3], error[1])           # opacity = surprise

    # The scene: seen cells in their class colour, hidden ones in the predicted class, dimmed.
    scene = np.array(chunks[("/world/ego/scene", False)]["GridMap:data"][1][0]).reshape(h, w, 3)
    classes = META.classes
    assert not turning_log.visible[1, 0, 0] and turning_log.visible[1, 4, 4]
    assert tuple(scene[0, 0]) == tuple(c // 2 for c in CLASS_COLOURS[classes[5]])
    assert tuple(scene[4, 4]) == CLASS_COLOURS[classes[turning_log.semantic[1, 4, 4]]]


def test_class_names_and_colours_come_from_the_one_palette(recording):
    from dashboard.driving_data import class_palette

    path, _, _ = recording
    entries = _read(path)[("/grid", True)]["AnnotationContext:context"][0][0]   # row 0, instance 0
    infos = {entry["class_id"]: entry["class_description"]["info"] for entry in entries}
    dashboard_colours = class_palette(META.classes)
    for k, name in enumerate(META.classes):
        rgba = infos[k]["color"]
        assert infos[k]["label"] == name
        assert (rgba >> 24, (rgba >> 16) & 255, (rgba >> 8) & 255) == tuple(dashboard_colours[k])
    assert infos[UNOBSERVED]["label"] == "not observed"


def test_a_failed_write_keeps_the_previous_recording(recording, turning_log):
    """A rerun-level error (here a surprise grid one frame short) raises instead of leaving a
    recording without that entity, and the file already there is untouched."""
    path, predicted, error = recording
    before = path.read_bytes()
    frames = pd.DataFrame({"frame": [0, 1, 2], "score": 0.0, "surprise_revealed": 0.0,
                           "visible_error": 0.0})
    with pytest.raises(ValueError):
        write_recording(turning_log, frames, np.arange(3), predicted, error[:2], path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
