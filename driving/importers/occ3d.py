"""Drive logs from the Occ3D-nuScenes layout (Tian et al. 2023, github.com/Tsinghua-MARS-Lab/Occ3D).

The layout, per split folder ``SRC``::

    SRC/annotations.json                           scene_infos: per scene, per frame token:
                                                   timestamp (us), ego_pose, gt_path
    SRC/gts/<scene_name>/<frame_token>/labels.npz  semantics, mask_lidar, mask_camera

``semantics`` is ``(X, Y, Z)`` uint8 voxel classes (200x200x16 at 0.4 m, ego-centred:
axis 0 = the ego's forward x, axis 1 = its left y, axis 2 = up), 0-16 the
nuScenes-lidarseg classes and 17 = free; ``mask_camera`` / ``mask_lidar`` mark (1) the
voxels the cameras / the accumulated LiDAR observed. ``ego_pose`` is a translation (m) and
a ``[w, x, y, z]`` rotation quaternion in the global frame (x east, y north, z up: ours).

One scene becomes one drive log (``<scene_name>.parquet``, frames by timestamp):

* a cell's class is its voxel column's, from observed voxels only: an object if any
  object voxel was seen (the lowest one), else the lowest occupied voxel (road under an
  overhanging tree stays road); :data:`OCC3D_TO_OURS` maps the classes;
* a cell is visible when some occupied voxel of its column was observed (``--mask``:
  ``camera``, what a camera stack sees, or ``lidar``); otherwise it is hidden (255);
* the grid is turned so the ego faces up (row = X-1-x index, column = Y-1-y index);
  ``ego_cell`` is ``(X // 2, Y // 2)``, the voxel whose corner is the ego, 0.7 voxel
  (0.28 m at 0.4 m) from it;
* the ego pose is the annotation's (yaw from the quaternion), the speed the pose change
  over time, ``rate_hz`` the median rate (2 Hz for nuScenes keyframes);
* the log lists the classes its world has: Occ3D has no lane markings, so scoring never
  predicts ``lane_marking`` in these logs.

Bad layouts (a missing file, a wrong shape, an unknown class id, a malformed pose) are
refused in one line naming the file; nothing is published unless every scene imported.

Example:
    >>> import_occ3d("Occpancy3D-nuScenes-V1.0/mini", "data/occ3d_logs")   # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from core.errors import DataValidationError
from core.names import check_name, shown

from ..schema import CLASSES, UNOBSERVED, DriveLog, LogMeta, write_logs

OCC3D_CLASSES = ("others", "barrier", "bicycle", "bus", "car", "construction_vehicle",
                 "motorcycle", "pedestrian", "traffic_cone", "trailer", "truck",
                 "driveable_surface", "other_flat", "sidewalk", "terrain", "manmade",
                 "vegetation", "free")
FREE = OCC3D_CLASSES.index("free")
# Occ3D-nuScenes class -> ours. Two-wheelers share the road with cars (vehicle); "others"
# (general objects) and barriers and cones are things in the way (static_obstacle);
# everything not drivable on the ground is off_road.
OCC3D_TO_OURS = {
    "others": "static_obstacle", "barrier": "static_obstacle", "bicycle": "vehicle",
    "bus": "vehicle", "car": "vehicle", "construction_vehicle": "vehicle",
    "motorcycle": "vehicle", "pedestrian": "pedestrian", "traffic_cone": "static_obstacle",
    "trailer": "vehicle", "truck": "vehicle", "driveable_surface": "road",
    "other_flat": "off_road", "sidewalk": "sidewalk", "terrain": "off_road",
    "manmade": "off_road", "vegetation": "off_road"}
WORLD_CLASSES = tuple(c for c in CLASSES if c in OCC3D_TO_OURS.values())   # no lane_marking
OBJECT_NAMES = ("vehicle", "pedestrian", "static_obstacle")
MASKS = {"camera": "mask_camera", "lidar": "mask_lidar"}
SPLITS = {"all": None, "train": "train_split", "val": "val_split"}

_LOOKUP = np.full(256, UNOBSERVED, np.uint8)       # Occ3D id -> our id (free: none)
for _i, _name in enumerate(OCC3D_CLASSES[:FREE]):
    _LOOKUP[_i] = CLASSES.index(OCC3D_TO_OURS[_name])
_IS_OBJECT = np.isin(np.arange(256), [CLASSES.index(c) for c in OBJECT_NAMES])


def read_annotations(src: Path) -> dict:
    """``annotations.json`` of a split folder: checked to hold ``scene_infos``."""
    path = src / "annotations.json"
    if not path.is_file():
        raise DataValidationError(f"{path}: no such file (an Occ3D-nuScenes split folder holds "
                                  "annotations.json and gts/)")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataValidationError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("scene_infos"), dict):
        raise DataValidationError(f"{path}: no 'scene_infos' object (scene -> frame token -> "
                                  "timestamp, ego_pose, gt_path)")
    return raw


def scene_names(annotations: dict, split: str, where: str) -> list[str]:
    """The scenes of ``split`` (``all``, ``train``, ``val``), in the file's order."""
    scenes = list(annotations["scene_infos"])
    key = SPLITS[split]
    if key is not None:
        chosen = annotations.get(key)
        if not isinstance(chosen, list):
            raise DataValidationError(f"{where}: no '{key}' list of scene names")
        scenes = [s for s in scenes if s in set(chosen)]
    if not scenes:
        raise DataValidationError(f"{where}: no scenes to import (split {split})")
    return scenes


def _timestamp_s(value, where: str) -> float:
    """A nuScenes timestamp (microseconds, a number or a numeric string) in seconds."""
    try:
        seconds = float(value) / 1e6
    except (TypeError, ValueError):
        seconds = float("nan")
    if isinstance(value, bool) or not np.isfinite(seconds):
        raise DataValidationError(f"{where}: timestamp {shown(value)} is not a number of "
                                  "microseconds")
    return seconds


def ego_pose(info: dict, where: str) -> tuple[float, float, float]:
    """``(x, y, yaw)`` of a frame's ``ego_pose`` (translation, ``[w, x, y, z]`` quaternion)."""
    pose = info.get("ego_pose")
    try:
        translation = np.asarray(pose["translation"], dtype=np.float64)
        w, qx, qy, qz = np.asarray(pose["rotation"], dtype=np.float64)
    except (TypeError, KeyError, ValueError):
        raise DataValidationError(f"{where}: ego_pose {shown(pose)} is not "
                                  "{translation: [x, y, z], rotation: [w, x, y, z]}") from None
    if translation.shape != (3,) or not np.all(np.isfinite([*translation, w, qx, qy, qz])):
        raise DataValidationError(f"{where}: ego_pose translation {shown(pose['translation'])} "
                                  "is not three finite numbers")
    yaw = np.arctan2(2.0 * (w * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
    return float(translation[0]), float(translation[1]), float(yaw)


def load_labels(path: Path, mask: str, shape: tuple | None) -> tuple[np.ndarray, np.ndarray]:
    """``semantics`` and the chosen visibility mask of one ``labels.npz``, checked.

    Args:
        path: the file.
        mask: ``"camera"`` or ``"lidar"``.
        shape: the ``(X, Y, Z)`` every frame must have (None: the first frame's).
    """
    if not path.is_file():
        raise DataValidationError(f"{path}: no such file")
    key = MASKS[mask]
    try:
        file = path.open("rb")           # opened and read once: the zip check and numpy share it
    except OSError as err:
        raise DataValidationError(f"{path}: not readable ({err.strerror})") from None
    with file:
        if not zipfile.is_zipfile(file):  # else numpy reads it as a pickle and says so
            raise DataValidationError(f"{path}: not an .npz archive (no zip structure); the file "
                                      "is corrupt or truncated: copy it again from the dataset")
        file.seek(0)
        try:
            with np.load(file, allow_pickle=False) as data:
                missing = [k for k in ("semantics", key) if k not in data.files]
                if missing:
                    raise DataValidationError(f"{path}: lacks {', '.join(missing)} (has "
                                              f"{', '.join(data.files) or 'nothing'})")
                semantics, observed = data["semantics"], data[key]
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise DataValidationError(f"{path}: not a readable .npz file ({err})") from None
    if semantics.ndim != 3 or not np.issubdtype(semantics.dtype, np.integer):
        raise DataValidationError(f"{path}: semantics has shape {semantics.shape} and dtype "
                                  f"{semantics.dtype}; expected (X, Y, Z) integer classes")
    if shape is not None and semantics.shape != tuple(shape):
        raise DataValidationError(f"{path}: semantics has shape {semantics.shape}, other "
                                  f"frames {tuple(shape)}")
    if observed.shape != semantics.shape:
        raise DataValidationError(f"{path}: {key} has shape {observed.shape}, semantics "
                                  f"{semantics.shape}")
    bad = (semantics < 0) | (semantics > FREE)
    if bad.any():
        x, y, z = (int(v) for v in np.argwhere(bad)[0])
        raise DataValidationError(
            f"{path}: semantics holds class id {int(semantics[x, y, z])} at voxel ({x}, {y}, "
            f"{z}); Occ3D-nuScenes ids are 0-{FREE} ({', '.join(OCC3D_CLASSES)})")
    return semantics.astype(np.uint8), observed != 0


def _lowest(classes: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per column, the class of the lowest voxel where ``keep`` (255 where none):
    ``classes``/``keep`` ``(X, Y, Z)`` -> ``(X, Y)``."""
    first = np.argmax(keep, axis=2)                                       # (X, Y)
    picked = np.take_along_axis(classes, first[..., None], axis=2)[..., 0]
    return np.where(keep.any(axis=2), picked, UNOBSERVED).astype(np.uint8)


def bird_eye(semantics: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Our ``(H, W)`` grid (ego facing up, 255 = not observed) of one frame's voxels."""
    ours = _LOOKUP[semantics]                                              # (X, Y, Z)
    seen = observed & (semantics != FREE)
    objects = _lowest(ours, seen & _IS_OBJECT[ours])
    ground = _lowest(ours, seen)
    cells = np.where(objects != UNOBSERVED, objects, ground)               # (X, Y)
    return np.ascontiguousarray(cells[::-1, ::-1])  # row: forward = up; column: right


def _frames(infos: dict, where: str) -> list[tuple[str, dict, float]]:
    """A scene's ``(token, info, seconds)``, in time order."""
    if not isinstance(infos, dict) or not infos:
        raise DataValidationError(f"{where}: no frames (frame token -> info)")
    frames = []
    for token, info in infos.items():
        at = f"{where}, frame {token}"
        if not isinstance(info, dict):
            raise DataValidationError(f"{at}: {shown(info)} is not an object")
        frames.append((token, info, _timestamp_s(info.get("timestamp"), at)))
    frames.sort(key=lambda f: f[2])
    for (before, _, t0), (token, _, t1) in zip(frames, frames[1:]):
        if t1 == t0:                       # a speed needs time to pass between frames
            raise DataValidationError(f"{where}: frames {before} and {token} have the same "
                                      "timestamp")
    return frames


def _speeds(x: np.ndarray, y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Speed (m/s) from the pose change over time (0 for a one-frame scene)."""
    if len(t) < 2:
        return np.zeros(len(t))
    return np.hypot(np.gradient(x, t), np.gradient(y, t))


def scene_log(src: Path, scene: str, infos: dict, mask: str = "camera",
              voxel_m: float = 0.4) -> DriveLog:
    """The drive log of one scene (see the module docstring)."""
    where = f"{src / 'annotations.json'}: scene {scene}"
    log_id = check_name(scene, where)
    frames = _frames(infos, where)
    grids, poses, shape = [], [], None
    for token, info, _ in frames:
        gt_path = info.get("gt_path") or f"gts/{scene}/{token}/labels.npz"
        semantics, observed = load_labels(src / str(gt_path), mask, shape)
        shape = semantics.shape
        grids.append(bird_eye(semantics, observed))
        poses.append(ego_pose(info, f"{where}, frame {token}"))
    times = np.array([f[2] for f in frames])
    x, y, yaw = (np.array(v) for v in zip(*poses))
    semantic = np.stack(grids)                                             # (T, H, W)
    steps = np.diff(times)
    steps = steps[steps > 0]
    rate = float(1.0 / np.median(steps)) if steps.size else 2.0  # nuScenes keyframes: 2 Hz
    h, w = semantic.shape[1:]
    meta = LogMeta(grid_shape=(h, w), resolution_m=voxel_m, classes=CLASSES,
                   ego_cell=(h // 2, w // 2), rate_hz=rate, world_classes=WORLD_CLASSES)
    return DriveLog(log_id=log_id, meta=meta, frame=np.arange(len(frames)), timestamp=times,
                    ego_x=x, ego_y=y, ego_yaw=yaw, ego_speed=_speeds(x, y, times),
                    semantic=semantic, visible=semantic != UNOBSERVED)


def import_occ3d(src: str | os.PathLike, out: str | os.PathLike, mask: str = "camera",
                 voxel_m: float = 0.4, split: str = "all") -> list[Path]:
    """Write one drive log per Occ3D-nuScenes scene of ``src`` into the folder ``out``.

    Args:
        src: an Occ3D-nuScenes split folder (``annotations.json`` + ``gts/``).
        out: the folder of drive logs to publish (atomically, with unmask's marker).
        mask: visibility from ``"camera"`` (``mask_camera``) or ``"lidar"`` (``mask_lidar``).
        voxel_m: the voxel edge (m): the logs' ``resolution_m``.
        split: ``"all"`` scenes, or those of ``annotations.json``'s ``train``/``val`` split.

    Returns:
        The published log files.

    Raises:
        DataValidationError: one line naming the file, before anything is published.
    """
    if mask not in MASKS or split not in SPLITS:
        raise ValueError(f"mask must be one of {sorted(MASKS)}, split one of {sorted(SPLITS)}")
    src, out = Path(src), Path(out)
    annotations = read_annotations(src)
    scenes = scene_names(annotations, split, str(src / "annotations.json"))
    logs = (scene_log(src, scene, annotations["scene_infos"][scene], mask, voxel_m)
            for scene in scenes)  # a generator: one scene in memory at a time
    return write_logs(out, logs, inputs=[src])
