"""Results a radiologist's viewer opens: DICOM SEG and Parametric Map over the input series.

``medical infer --dicom-seg`` writes, for a case read from a DICOM CT series, the organ
segmentation as a DICOM Segmentation (one binary segment per organ, coded in SNOMED CT)
and the anomaly map as a DICOM Parametric Map (float32 frames, one real-world value
mapping), both with highdicom and both referencing every source slice (its SOP instance).
Frame ``k`` is source slice ``k``: the array a series is read into (``medical.io``) holds
slice ``k``'s pixel ``(row r, column c)`` at ``[c, r, k]`` in stacking order
(``medical.dicom.read_series_headers``); :func:`check_frame_geometry` checks this against
the slices' positions before anything is written, so a frame can never land on the wrong
slice.

Example:
    >>> write_segmentation(labels, {1: "liver"}, "ct/series_001", "run/case_seg.dcm")  # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core import __version__
from core.errors import DataValidationError
from core.io import atomic_path

from .dicom import read_series_headers

MANUFACTURER = "unmask"
MODEL_NAME = "unmask medical"
# SNOMED CT codes of the organs we segment (DICOM CID 7166 / 4); a name is matched by the
# first key it contains, so "kidney_left" is a left kidney
ORGAN_CODES = {"kidney_left": ("18639004", "Left kidney"),
               "kidney_right": ("9846003", "Right kidney"), "liver": ("10200004", "Liver"),
               "spleen": ("78961009", "Spleen"), "kidney": ("64033007", "Kidney"),
               "pancreas": ("15776009", "Pancreas"), "spine": ("421060004", "Spine"),
               "stomach": ("69695003", "Stomach"), "gallbladder": ("28231008", "Gallbladder")}
GENERIC_ORGAN = ("91772007", "Organ")
FRAME_ATOL_MM = 0.01


def organ_code(name: str):
    """The SNOMED CT ``Code`` of a label name (``"Organ"`` when we know no better)."""
    from pydicom.sr.coding import Code  # lazy: pydicom is in the medical extra

    value, meaning = next((c for key, c in ORGAN_CODES.items() if key in name.lower()),
                          GENERIC_ORGAN)
    return Code(value, "SCT", meaning)


def source_images(series_dir) -> list:
    """The series' slices as pydicom datasets, in the stacking order of ``medical.io``."""
    import pydicom  # lazy: pydicom is in the medical extra

    return [pydicom.dcmread(s.path) for s in read_series_headers(Path(series_dir))]


def series_affine(sources) -> np.ndarray:
    """Voxel ``(column, row, slice)`` -> RAS mm affine implied by the slices' headers."""
    first = sources[0]
    orientation = np.asarray(first.ImageOrientationPatient, dtype=np.float64)
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    positions = np.array([s.ImagePositionPatient for s in sources], dtype=np.float64)
    step = (positions[-1] - positions[0]) / max(len(sources) - 1, 1)
    lps = np.eye(4)
    lps[:3, 0] = orientation[:3] * column_spacing   # along a row: the column index grows
    lps[:3, 1] = orientation[3:] * row_spacing      # down a column: the row index grows
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def check_frame_geometry(volume_shape, affine, sources, series_dir) -> None:
    """Refuse to write frames whose slices would not be the source slices (see module)."""
    rows, columns = int(sources[0].Rows), int(sources[0].Columns)
    expected_shape = (columns, rows, len(sources))
    if tuple(volume_shape) != expected_shape or not np.allclose(
            np.asarray(affine, dtype=np.float64), series_affine(sources), atol=FRAME_ATOL_MM):
        raise DataValidationError(
            f"{series_dir}: the volume read from the series ({tuple(volume_shape)}) does not "
            f"lie on its slices ({expected_shape}); cannot write DICOM frames for it")


def frames(volume: np.ndarray) -> np.ndarray:
    """``(X, Y, Z)`` volume -> ``(Z, rows, columns)`` frames, one per source slice."""
    return np.ascontiguousarray(np.transpose(volume, (2, 1, 0)))


def _common(series_number: int) -> dict:
    from highdicom import UID  # lazy: highdicom is in the medical extra

    return {"series_instance_uid": UID(), "series_number": series_number,
            "sop_instance_uid": UID(), "instance_number": 1, "manufacturer": MANUFACTURER,
            "manufacturer_model_name": MODEL_NAME, "software_versions": __version__,
            "device_serial_number": "none"}


def write_segmentation(labels: np.ndarray, names: dict[int, str], affine, series_dir,
                       path) -> Path:
    """Write the ``(X, Y, Z)`` uint8 label map as a DICOM SEG over ``series_dir``.

    Args:
        labels: organ ids on the series' own voxel grid (``infer``'s segmentation).
        names: ``{1: "liver", ...}``; one segment per id, numbered as the label ids.
        affine: the label map's voxel -> RAS affine (checked against the slices).
        series_dir: the input DICOM series directory.
        path: the ``.dcm`` file to write (atomically).
    """
    import highdicom as hd  # lazy: highdicom is in the medical extra
    from pydicom.sr.codedict import codes

    sources = source_images(series_dir)
    check_frame_geometry(labels.shape, affine, sources, series_dir)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=MODEL_NAME, version=__version__, family=codes.cid7162.ArtificialIntelligence)
    ids = sorted(names)
    if ids != list(range(1, len(ids) + 1)):
        raise DataValidationError(f"label ids {ids} are not 1..{len(ids)}; a DICOM SEG numbers "
                                  "its segments from 1")
    descriptions = [hd.seg.SegmentDescription(
        segment_number=k, segment_label=names[k],
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=organ_code(names[k]),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm) for k in ids]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=frames(labels.astype(np.uint8)),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_description="unmask organ segmentation",
        omit_empty_frames=bool(labels.any()), **_common(series_number=9001))
    return _save(seg, path)


def write_parametric_map(error: np.ndarray, affine, series_dir, path) -> Path:
    """Write the ``(X, Y, Z)`` float anomaly map as a DICOM Parametric Map over ``series_dir``."""
    import highdicom as hd  # lazy: highdicom is in the medical extra
    from pydicom.sr.codedict import codes

    sources = source_images(series_dir)
    check_frame_geometry(error.shape, affine, sources, series_dir)
    values = error.astype(np.float32)
    high = float(values.max()) if values.size else 0.0
    mapping = hd.pm.RealWorldValueMapping(
        lut_label="anomaly", lut_explanation="squared reconstruction z-score; higher = more anomalous",
        unit=codes.UCUM.NoUnits,
        value_range=(0.0, max(high, 1e-6)), slope=1.0, intercept=0.0)
    pm = hd.pm.ParametricMap(
        source_images=sources, pixel_array=frames(values),
        contains_recognizable_visual_features=False, real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(window_center=high / 2.0,
                                                         window_width=max(high, 1e-6))],
        series_description="unmask anomaly map", **_common(series_number=9002))
    return _save(pm, path)


def _save(dataset, path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        dataset.save_as(str(tmp), enforce_file_format=True)
    return path
