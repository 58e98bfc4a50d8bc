"""CT review data: a run's cases, their volumes in one orientation, slices and overlays.

Volumes are reoriented to RAS+ (``nibabel.as_closest_canonical``) so the three planes are
always the same array axes; slices are then flipped into the radiological display
convention (patient's right on the viewer's left, anterior / superior at the top).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import DataValidationError
from core.names import check_name
from core.text import counted
from medical.io import load_volume

from . import render

PLANES = {"axial": 2, "coronal": 1, "sagittal": 0}  # RAS+ axis each plane cuts across
# Ends of each RAS+ array axis: (low index end, high index end) in patient terms.
AXIS_ENDS = (("L", "R"), ("P", "A"), ("I", "S"))
HEAT_UNITS = "voxel reconstruction error"
# CT window presets (level, width) in Hounsfield units.
WINDOWS = {"soft tissue": (40.0, 400.0), "lung": (-600.0, 1500.0), "bone": (400.0, 1800.0)}


@dataclass
class CaseVolumes:
    """One case in RAS+: ``image`` (HU), ``segmentation`` (labels) and ``anomaly`` (voxel
    error), all ``(X, Y, Z)``; ``spacing`` in mm; ``heat_range`` maps error to [0, 1]."""

    image: np.ndarray
    spacing: tuple[float, float, float]
    segmentation: np.ndarray | None = None
    anomaly: np.ndarray | None = None
    heat_range: tuple[float, float] = (0.0, 1.0)


def cases(run_dir) -> pd.DataFrame:
    """The run's cases, most anomalous first (``scores.parquet`` sorted by ``rank``)."""
    path = Path(run_dir) / "scores.parquet"
    if not path.is_file():
        raise DataValidationError(f"{path}: file not found (is the run complete?)")
    frame = pd.read_parquet(path)
    if "rank" in frame:
        frame = frame.sort_values("rank", kind="stable")
    return frame.reset_index(drop=True)


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(array, affine)`` of a NIfTI file or DICOM series, read and checked by
    ``medical.io`` (gzip CRC, slice gaps, finite voxels): a file damaged since the run is
    an error, not a wrong picture. Not the Hounsfield check: that is inference's to make,
    and outputs (labels, error maps) are not CT."""
    if not path.exists():
        raise DataValidationError(f"{path}: image not found (moved since the run was made?)")
    volume = load_volume(path, hounsfield=False)  # (1, X, Y, Z), affine to RAS mm
    return np.asarray(volume.array[0]), np.asarray(volume.affine, dtype=np.float64)


def _canonical(array: np.ndarray, affine: np.ndarray, dtype) -> tuple[np.ndarray, tuple]:
    import nibabel as nib

    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(array), affine))
    return (np.asarray(img.dataobj).astype(dtype, copy=False),
            tuple(float(z) for z in img.header.get_zooms()[:3]))


def load_case(run_dir, row: pd.Series) -> CaseVolumes:
    """Read one case's image and the run's segmentation and anomaly map for it.

    Args:
        run_dir: the run directory (relative output paths are resolved against it).
        row: the case's row of ``cases(run_dir)``.
    """
    run_dir = Path(run_dir)
    array, affine = _read(Path(row["image"]))
    image, spacing = _canonical(array, affine, np.float32)
    volumes = CaseVolumes(image=image, spacing=spacing)
    for column, attribute, dtype in (("segmentation", "segmentation", np.uint8),
                                     ("anomaly_map", "anomaly", np.float32)):
        name = row.get(column)
        if not isinstance(name, str) or not name:
            continue
        path = run_dir / check_name(name, f"{run_dir / 'scores.parquet'}: case "
                                          f"{row.get('case')!r}, column '{column}'")
        array, affine = _read(path)
        data, _ = _canonical(array, affine, dtype)
        if data.shape != image.shape:
            raise DataValidationError(f"{path}: shape {data.shape} differs from the image's "
                                      f"{image.shape}")
        setattr(volumes, attribute, data)
    if volumes.anomaly is not None:
        volumes.heat_range = heat_range(volumes.anomaly)
    return volumes


def run_warnings(manifest: dict, cases, named: int = 8) -> list[str]:
    """The run's banners: why no alert is reachable (``warning``), each warning about the
    input as a whole (``input_warnings``: an image file listed twice), then one line naming
    the cases with warnings of their own (``warnings``: ``"case: line"`` from
    ``medical.guard``). Each case shows its lines above its slices; repeating every case's
    here would push the viewer below a wall of banners. Runs written before
    ``input_warnings`` was kept apart hold those lines in ``warnings``, where they name
    none of ``cases``, and are shown as such.

    Args:
        manifest: the run's manifest.
        cases: the run's case names (``scores.parquet``'s ``case`` column).
        named: at most this many cases are named; the rest are counted.
    """
    summary = manifest.get("summary", {})
    lines = [str(summary["warning"])] if summary.get("warning") else []
    lines += map(str, summary.get("input_warnings", []))
    names = {str(case) for case in cases}
    warned = []                                         # cases with lines, in run order
    for line in map(str, summary.get("warnings", [])):
        case = line.partition(": ")[0]
        if case in names:
            warned.append(case)
        else:                                           # the input's, in an older run
            lines.append(line)
    warned = list(dict.fromkeys(warned))
    if warned:
        listed = ", ".join(warned[:named]) + (f" and {len(warned) - named} more"
                                              if len(warned) > named else "")
        total = summary.get("n_cases", len(warned))
        verb = "carries" if len(warned) == 1 else "carry"
        lines.append(f"{len(warned)} of {counted(total, 'case')} {verb} warnings ({listed}); each "
                     "case shows its own above its slices")
    return lines


def case_warnings(row: pd.Series) -> list[str]:
    """One case's warning lines (the ``warnings`` column of ``scores.parquet``)."""
    text = row.get("warnings")
    return str(text).splitlines() if isinstance(text, str) else []


def heat_range(anomaly: np.ndarray) -> tuple[float, float]:
    """Error values mapped to heat 0 and 1: the median and the 99.9th percentile of the
    voxels with any error, so a few hot voxels stand out over the background."""
    positive = anomaly[anomaly > 0]
    if positive.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(positive, [50.0, 99.9])
    return float(low), float(max(high, low + 1e-6))


def slice_count(volumes: CaseVolumes, plane: str) -> int:
    return int(volumes.image.shape[PLANES[_plane(plane)]])


def _plane(plane: str) -> str:
    if plane not in PLANES:
        raise DataValidationError(f"unknown plane {plane!r}; choose one of {list(PLANES)}")
    return plane


def take_slice(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """A display-oriented 2-D slice of a RAS+ ``(X, Y, Z)`` volume.

    Axial rows run anterior -> posterior, coronal and sagittal rows superior -> inferior;
    columns put the patient's right (axial, coronal) or anterior (sagittal) on the left.
    """
    axis = PLANES[_plane(plane)]
    if not 0 <= index < volume.shape[axis]:
        raise DataValidationError(f"{plane} slice {index} is outside 0..{volume.shape[axis] - 1}")
    cut = np.take(volume, index, axis=axis)  # (X, Y), (X, Z) or (Y, Z)
    return cut.T[::-1, ::-1]


def pixel_size(volumes: CaseVolumes, plane: str) -> tuple[float, float]:
    """Physical (row, column) size of a displayed pixel of ``plane``."""
    sx, sy, sz = volumes.spacing
    return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[_plane(plane)]


def slice_image(volumes: CaseVolumes, plane: str, index: int, window: str = "soft tissue",
                show_segmentation: bool = True, show_heat: bool = True,
                segmentation_opacity: float = 0.4, heat_opacity: float = 0.5,
                size: int = 420) -> np.ndarray:
    """The RGB picture of one slice with the chosen window and overlays."""
    if window not in WINDOWS:
        raise DataValidationError(f"unknown window {window!r}; choose one of {list(WINDOWS)}")
    level, width = WINDOWS[window]
    gray = render.window(take_slice(volumes.image, plane, index), level, width)
    labels = heat = None
    if show_segmentation and volumes.segmentation is not None:
        labels = take_slice(volumes.segmentation, plane, index)
    if show_heat and volumes.anomaly is not None:
        low, high = volumes.heat_range
        heat = (take_slice(volumes.anomaly, plane, index) - low) / (high - low)
    rgb = render.overlay(gray, labels, heat, segmentation_opacity, heat_opacity)
    return render.upscale(rgb, pixel_size(volumes, plane), size)


def orientation_labels(plane: str) -> dict[str, str]:
    """Patient direction at each edge of a displayed ``plane`` slice (``top``, ``bottom``,
    ``left``, ``right`` -> ``R``/``L``/``A``/``P``/``S``/``I``).

    Read off :func:`take_slice` itself: a ramp along each in-plane axis is sliced, and the
    edge where the ramp is high gets that axis's high end (RAS+: R, A, S).
    """
    axis = PLANES[_plane(plane)]
    labels = {}
    for other in (a for a in range(3) if a != axis):
        ramp = np.broadcast_to(np.arange(2).reshape([2 if a == other else 1 for a in range(3)]),
                               (2, 2, 2))
        cut = take_slice(ramp, plane, 0)            # (2, 2) display rows x columns
        low, high = AXIS_ENDS[other]
        if cut[0, 0] != cut[-1, 0]:                 # this axis runs down the rows
            labels["top"], labels["bottom"] = (high, low) if cut[0, 0] > cut[-1, 0] else (low, high)
        else:
            labels["left"], labels["right"] = (high, low) if cut[0, 0] > cut[0, -1] else (low, high)
    return labels


def start_cursor(volumes: CaseVolumes) -> tuple[int, int, int]:
    """The voxel ``(x, y, z)`` a case opens on: per axis, the slice holding the most
    anomaly (the middle when there is no map)."""
    return tuple(hottest_slice(volumes, plane) for plane in sorted(PLANES, key=PLANES.get))


def cursor_slice(cursor, plane: str) -> int:
    """The slice index of ``plane`` through the voxel ``cursor`` (the same point in the
    body, whichever plane shows it)."""
    return int(cursor[PLANES[_plane(plane)]])


def move_cursor(cursor, plane: str, index: int) -> tuple[int, int, int]:
    """``cursor`` moved to slice ``index`` of ``plane``; the other two coordinates kept."""
    moved = list(cursor)
    moved[PLANES[_plane(plane)]] = int(index)
    return tuple(moved)


def organ_legend(labels: dict) -> list[tuple[str, tuple[int, int, int]]]:
    """``(organ, RGB)`` per label of the run's ``{"1": "liver", ...}``, in label order,
    coloured as the segmentation overlay colours that label."""
    out = []
    for value, name in sorted(((int(k), v) for k, v in (labels or {}).items())):
        if value > 0:
            colour = render.label_colours(np.array([[value]]))[0, 0]
            out.append((str(name), tuple(int(c) for c in colour)))
    return out


def heat_bar(volumes: CaseVolumes, width: int = 320) -> np.ndarray:
    """Colour bar of the anomaly overlay: the error values at its two ends (``heat_range``)."""
    return render.colour_bar(render.heat_colours, volumes.heat_range, HEAT_UNITS, width)


def hottest_slice(volumes: CaseVolumes, plane: str) -> int:
    """Index of the slice of ``plane`` holding the most anomaly (middle when no map)."""
    axis = PLANES[_plane(plane)]
    if volumes.anomaly is None:
        return volumes.image.shape[axis] // 2
    other = tuple(a for a in range(3) if a != axis)
    return int(np.argmax(volumes.anomaly.sum(axis=other)))


def organ_table(row: pd.Series, labels: dict) -> pd.DataFrame:
    """Per organ: volume (ml) and Dice against the reference labels when present."""
    names = list(labels.values()) if labels else sorted(
        c[len("volume_ml_"):] for c in row.index if c.startswith("volume_ml_"))
    out = []
    for name in names:
        volume = row.get(f"volume_ml_{name}", np.nan)
        score = row.get(f"dice_{name}", np.nan)
        out.append({"organ": name, "volume_ml": float(volume) if pd.notna(volume) else np.nan,
                    "dice": float(score) if pd.notna(score) else np.nan})
    return pd.DataFrame(out, columns=["organ", "volume_ml", "dice"])


def region_shap(run_dir, case: str) -> pd.DataFrame:
    """SHAP value of each region of ``case`` (largest absolute first; empty if none)."""
    path = Path(run_dir) / "region_shap.parquet"
    if not path.is_file():
        return pd.DataFrame(columns=["region", "shap_value", "base_value"])
    frame = pd.read_parquet(path)
    frame = frame[frame["case"].astype(str) == str(case)]
    order = frame["shap_value"].abs().sort_values(ascending=False).index
    return frame.loc[order, ["region", "shap_value", "base_value"]].reset_index(drop=True)
