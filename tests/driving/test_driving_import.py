"""`unmask driving import --format occ3d`: small files written in the Occ3D-nuScenes layout,
imported through the CLI, read back as valid drive logs, trained on and scored end to end."""
import builtins
import io
import json
import math
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.cli import main
from core.io import written_by_unmask
from core.runs import load_manifest
from driving.importers.occ3d import FREE, OCC3D_CLASSES, bird_eye, import_occ3d
from driving.schema import CLASSES, UNOBSERVED, list_logs, read_log

X, Y, Z = 24, 24, 4                  # the network needs sides divisible by 8
CAR, ROAD, TREE, SIDEWALK = (OCC3D_CLASSES.index(c)
                             for c in ("car", "driveable_surface", "vegetation", "sidewalk"))


def _frame(k: int) -> tuple[np.ndarray, np.ndarray]:
    """One frame's voxels: road at z=0, a sidewalk strip, a tree over the road, a car
    ahead that moves forward by one voxel per frame, and the camera blind behind the car."""
    semantics = np.full((X, Y, Z), FREE, np.uint8)
    semantics[:, :, 0] = ROAD
    semantics[:, :3, 0] = SIDEWALK                        # low y = the ego's right
    semantics[4:6, 10:12, 3] = TREE                       # canopy over the road
    car = 16 + k % 4
    semantics[car:car + 2, 11:13, 1:3] = CAR
    mask = np.ones((X, Y, Z), np.uint8)
    mask[car + 2:, 10:14, :] = 0                          # hidden behind the car
    return semantics, mask


def write_occ3d(root, scenes=2, frames=10, step_us=500_000, speed=5.0):
    """An Occ3D-nuScenes split folder: annotations.json + gts/<scene>/<token>/labels.npz."""
    infos = {}
    for s in range(scenes):
        scene = f"scene-{s:04d}"
        infos[scene] = {}
        for k in range(frames):
            token = f"tok{s}{k:03d}"
            semantics, mask = _frame(k)
            folder = root / "gts" / scene / token
            folder.mkdir(parents=True)
            np.savez_compressed(folder / "labels.npz", semantics=semantics, mask_camera=mask,
                                mask_lidar=np.ones_like(mask))
            yaw = 0.5                                     # heading north-east
            t = k * step_us / 1e6
            infos[scene][token] = {
                "timestamp": 1_531_883_530_000_000 + k * step_us,
                "ego_pose": {"translation": [100 + speed * t * math.cos(yaw),
                                             200 + speed * t * math.sin(yaw), 0.0],
                             "rotation": [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]},
                "gt_path": f"gts/{scene}/{token}/labels.npz", "camera_sensor": {}}
    (root / "annotations.json").write_text(json.dumps(
        {"train_split": list(infos)[:-1], "val_split": list(infos)[-1:], "scene_infos": infos}))
    return root


def _cli(capsys, *args) -> tuple[int, str, str]:
    try:
        main(["driving", *args])
        code = 0
    except SystemExit as stop:
        code = stop.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_column_collapse_objects_first_then_the_lowest_occupied_voxel():
    semantics, mask = _frame(0)
    grid = bird_eye(semantics, mask.astype(bool))
    # grid row = X-1-x (forward up), column = Y-1-y (right)
    assert grid[X - 1 - 16, Y - 1 - 11] == CLASSES.index("vehicle")
    assert grid[X - 1 - 4, Y - 1 - 10] == CLASSES.index("road")      # tree above the road
    assert grid[X - 1 - 0, Y - 1 - 0] == CLASSES.index("sidewalk")   # right-hand side
    assert grid[X - 1 - 20, Y - 1 - 12] == UNOBSERVED                 # behind the car


def test_import_writes_valid_logs_with_poses_rate_and_world_classes(tmp_path, capsys):
    src = write_occ3d(tmp_path / "occ3d")
    code, out, err = _cli(capsys, "import", "--format", "occ3d", str(src), "--out",
                          str(tmp_path / "logs"))
    assert code == 0, err
    assert "wrote 2 logs" in out
    assert written_by_unmask(tmp_path / "logs")
    paths = list_logs(tmp_path / "logs")
    assert [p.name for p in paths] == ["scene-0000.parquet", "scene-0001.parquet"]
    log = read_log(paths[0])
    assert log.meta.grid_shape == (X, Y) and log.meta.resolution_m == pytest.approx(0.4)
    assert log.meta.ego_cell == (X // 2, Y // 2)
    assert log.meta.rate_hz == pytest.approx(2.0)
    assert "lane_marking" not in log.meta.world and "road" in log.meta.world
    assert np.allclose(log.ego_yaw, 0.5) and np.allclose(log.ego_speed, 5.0)
    assert np.allclose(np.diff(log.timestamp), 0.5)
    assert log.semantic[0, X - 1 - 16, Y - 1 - 11] == CLASSES.index("vehicle")
    assert (~log.visible).any() and log.visible.any()


def test_the_lidar_mask_is_used_when_asked(tmp_path, capsys):
    src = write_occ3d(tmp_path / "occ3d", scenes=1, frames=2)    # the LiDAR saw every voxel
    for mask in ("camera", "lidar"):
        code, _, err = _cli(capsys, "import", "--format", "occ3d", str(src), "--out",
                            str(tmp_path / mask), "--mask", mask)
        assert code == 0, err
    assert not read_log(tmp_path / "camera" / "scene-0000.parquet").visible.all()
    assert read_log(tmp_path / "lidar" / "scene-0000.parquet").visible.all()


def test_each_frame_file_is_opened_once(tmp_path, monkeypatch):
    src = write_occ3d(tmp_path / "occ3d", scenes=1, frames=3)
    opened, real_open = Counter(), io.open

    def counting_open(file, *args, **kwargs):
        if str(file).endswith("labels.npz"):
            opened[str(file)] += 1
        return real_open(file, *args, **kwargs)
    monkeypatch.setattr(builtins, "open", counting_open)   # what numpy and zipfile call
    monkeypatch.setattr(io, "open", counting_open)         # what pathlib calls
    import_occ3d(src, tmp_path / "logs")
    assert len(opened) == 3 and set(opened.values()) == {1}, opened


def test_import_split_takes_the_annotations_split(tmp_path, capsys):
    src = write_occ3d(tmp_path / "occ3d", scenes=3, frames=2)
    code, _, err = _cli(capsys, "import", "--format", "occ3d", str(src), "--out",
                        str(tmp_path / "val"), "--split", "val")
    assert code == 0, err
    assert [p.name for p in list_logs(tmp_path / "val")] == ["scene-0002.parquet"]


def _break_missing(src):
    (src / "gts" / "scene-0001" / "tok1001" / "labels.npz").unlink()
    return "scene-0001/tok1001/labels.npz: no such file"


def _break_shape(src):
    path = src / "gts" / "scene-0000" / "tok0002" / "labels.npz"
    np.savez(path, semantics=np.zeros((X, Y), np.uint8), mask_camera=np.ones((X, Y), np.uint8))
    return "tok0002/labels.npz: semantics has shape (24, 24)"


def _break_class(src):
    path = src / "gts" / "scene-0000" / "tok0003" / "labels.npz"
    semantics, mask = _frame(3)
    semantics[1, 2, 3] = 23
    np.savez(path, semantics=semantics, mask_camera=mask)
    return "semantics holds class id 23 at voxel (1, 2, 3)"


def _break_mask(src):
    path = src / "gts" / "scene-0000" / "tok0004" / "labels.npz"
    np.savez(path, semantics=_frame(4)[0])
    return "tok0004/labels.npz: lacks mask_camera"


def _break_archive(src):
    path = src / "gts" / "scene-0001" / "tok1002" / "labels.npz"
    path.write_bytes(b"<html>403 Forbidden</html>")     # what a failed download leaves
    return "tok1002/labels.npz: not an .npz archive (no zip structure); the file is corrupt"


def _break_annotations(src):
    (src / "annotations.json").unlink()
    return "annotations.json: no such file"


def _break_pose(src):
    raw = json.loads((src / "annotations.json").read_text())
    raw["scene_infos"]["scene-0000"]["tok0001"]["ego_pose"] = {"translation": [1, 2]}
    (src / "annotations.json").write_text(json.dumps(raw))
    return "scene scene-0000, frame tok0001: ego_pose"


def _break_time(src):
    raw = json.loads((src / "annotations.json").read_text())
    frames = raw["scene_infos"]["scene-0001"]
    frames["tok1003"]["timestamp"] = frames["tok1002"]["timestamp"]
    (src / "annotations.json").write_text(json.dumps(raw))
    return "scene scene-0001: frames tok1002 and tok1003 have the same timestamp"


@pytest.mark.parametrize("breaker", [_break_missing, _break_shape, _break_class, _break_mask,
                                     _break_archive, _break_annotations, _break_pose, _break_time])
def test_bad_layout_is_one_line_naming_the_file_and_writes_nothing(tmp_path, capsys, breaker):
    src = write_occ3d(tmp_path / "occ3d", frames=5)
    expected = breaker(src)
    code, _, err = _cli(capsys, "import", "--format", "occ3d", str(src), "--out",
                        str(tmp_path / "logs"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    assert expected in lines[0]
    assert not (tmp_path / "logs").exists()


def test_imported_logs_train_and_score_end_to_end(tmp_path, capsys):
    """Imported logs are drive logs: a tiny model trains on them and scores them; the log
    like its training logs gets no warning, lane_marking (absent from Occ3D) is never
    predicted, and a 10 Hz import of the same world is called unlike in one line."""
    src = write_occ3d(tmp_path / "occ3d", scenes=2, frames=12)
    logs, model = tmp_path / "logs", tmp_path / "model"
    assert _cli(capsys, "import", "--format", "occ3d", str(src), "--out", str(logs))[0] == 0
    code, _, err = _cli(capsys, "train", "--logs", str(logs), "--out", str(model), "--epochs",
                        "1", "--steps-per-epoch", "1", "--quiet")
    assert code == 0, err
    code, _, err = _cli(capsys, "score", "--model", str(model), "--logs", str(logs), "--out",
                        str(tmp_path / "run"), "--top-frames", "0", "--quiet")
    assert code == 0, err
    assert "warning:" not in err
    assert load_manifest(tmp_path / "run")["summary"]["warnings"] == []
    cells = pq.read_table(tmp_path / "run" / "cells" / "scene-0000.parquet")
    predicted = np.concatenate(cells.column("predicted").to_pylist())
    assert CLASSES.index("lane_marking") not in set(predicted.tolist())

    fast = write_occ3d(tmp_path / "fast", scenes=1, frames=12, step_us=100_000)
    assert _cli(capsys, "import", "--format", "occ3d", str(fast), "--out",
                str(tmp_path / "fast_logs"))[0] == 0
    code, _, err = _cli(capsys, "score", "--model", str(model), "--logs",
                        str(tmp_path / "fast_logs"), "--out", str(tmp_path / "run_fast"),
                        "--top-frames", "0", "--quiet")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "frame rate 10 Hz (training 2 Hz)" in warnings[0]
    summary = load_manifest(tmp_path / "run_fast")["summary"]
    assert summary["warnings"] == [warnings[0].removeprefix("warning: ")]
