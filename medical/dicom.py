"""DICOM series: finding them, checking their slice geometry, writing CT series.

MONAI's ``PydicomReader`` stacks a series' slices in ``InstanceNumber`` order and takes the
slice spacing from the first and last ``ImagePositionPatient``. A missing slice therefore
stretches the volume, a duplicated one shifts it, slices without position tags get an
identity affine, and slices without ``InstanceNumber`` are dropped -- all without an error.
:func:`read_series_headers` checks every slice first and refuses such a series with one
line naming the folder and the slices around the fault.

Example:
    >>> slices = read_series_headers(Path("ct/series_001"))   # doctest: +SKIP
    >>> [s.instance for s in slices]                            # doctest: +SKIP
    [1, 2, 3]
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import DataValidationError
from core.io import atomic_path

DUPLICATE_MM = 0.01      # two slices closer than this along the normal hold the same plane
GAP_FACTOR = 1.5         # a step this much above the series' median spacing is a gap
# tags every slice needs to be placed in the patient, with their number of values
SLICE_TAG_SIZES = {"ImagePositionPatient": 3, "ImageOrientationPatient": 6, "InstanceNumber": 1,
                   "PixelSpacing": 2}


@dataclass
class Slice:
    """One image file of a series with the header read (pixels not loaded)."""

    path: Path
    header: object                 # pydicom Dataset, read with stop_before_pixels

    @property
    def instance(self) -> int:
        return int(self.header.InstanceNumber)


def dicom_series(directory: Path) -> dict[str, list[Slice]]:
    """Image slices per ``SeriesInstanceUID`` among the files directly in ``directory``."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    series: dict[str, list[Slice]] = {}
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError):
            continue
        if "Rows" not in ds or "SeriesInstanceUID" not in ds:
            continue  # not an image (structured report, DICOMDIR, ...)
        series.setdefault(str(ds.SeriesInstanceUID), []).append(Slice(path, ds))
    return series


def is_dicom_dir(directory: Path) -> bool:
    import pydicom

    return any(p.is_file() and (p.suffix.lower() == ".dcm" or pydicom.misc.is_dicom(p))
               for p in directory.iterdir())


def _slice_normal(slices: list[Slice], directory: Path) -> np.ndarray:
    """The unit normal of the series' slices (row direction x column direction)."""
    orientation = np.asarray(slices[0].header.ImageOrientationPatient, dtype=np.float64)
    for s in slices[1:]:
        if not np.allclose(np.asarray(s.header.ImageOrientationPatient, dtype=np.float64),
                           orientation, atol=1e-4):
            raise DataValidationError(
                f"{directory}: slices are not parallel: {s.path.name} has ImageOrientationPatient "
                f"{list(s.header.ImageOrientationPatient)}, {slices[0].path.name} "
                f"{list(orientation)}")
    normal = np.cross(orientation[:3], orientation[3:])
    if not np.isfinite(normal).all() or np.linalg.norm(normal) < 0.5:
        raise DataValidationError(f"{slices[0].path}: ImageOrientationPatient {list(orientation)} "
                                  "is not two perpendicular unit vectors")
    return normal / np.linalg.norm(normal)


def _tag_ok(header, tag: str) -> bool:
    value = header.get(tag)
    values = [value] if SLICE_TAG_SIZES[tag] == 1 else list(value or [])
    try:
        return (value not in (None, "") and len(values) == SLICE_TAG_SIZES[tag]
                and np.isfinite(np.asarray(values, dtype=np.float64)).all())
    except (TypeError, ValueError):
        return False


def _check_tags(slices: list[Slice]) -> None:
    for s in slices:
        missing = [tag for tag in SLICE_TAG_SIZES if not _tag_ok(s.header, tag)]
        if missing:
            raise DataValidationError(
                f"{s.path}: no {', '.join(missing)} (missing or not numbers); the slice's place "
                "in the patient is unknown and the series would be read with wrong geometry")
        shape = (s.header.Rows, s.header.Columns, *map(float, s.header.PixelSpacing))
        first = slices[0].header
        if shape != (first.Rows, first.Columns, *map(float, first.PixelSpacing)):
            raise DataValidationError(
                f"{s.path}: {s.header.Rows}x{s.header.Columns} pixels of "
                f"{list(s.header.PixelSpacing)} mm, unlike {slices[0].path.name} "
                f"({first.Rows}x{first.Columns} of {list(first.PixelSpacing)} mm)")


def _where(s: Slice, position: float) -> str:
    return f"{position:.1f} mm (instance {s.instance})"


def check_slice_geometry(slices: list[Slice], directory: Path) -> None:
    """Refuse a series whose slices (tagged, in InstanceNumber order) do not tile space evenly.

    Positions are measured along the slice normal from ``ImagePositionPatient``; two slices
    on one plane are a duplicate, a step of more than ``GAP_FACTOR`` times the median step
    is a gap (a missing slice), and positions that turn back break the stacking order.

    Raises:
        DataValidationError: naming ``directory`` and the slices around the fault.
    """
    if len(slices) < 2:
        return
    normal = _slice_normal(slices, directory)
    positions = np.array([np.dot(np.asarray(s.header.ImagePositionPatient, dtype=np.float64),
                                 normal) for s in slices])
    steps = np.diff(positions)                                   # (n - 1,) signed, mm
    duplicates = np.flatnonzero(np.abs(steps) < DUPLICATE_MM)
    if duplicates.size:
        k = duplicates[0]
        a, b = slices[k], slices[k + 1]
        raise DataValidationError(
            f"{directory}: two slices at {positions[k]:.1f} mm along the slice normal "
            f"(instances {a.instance} and {b.instance}: {a.path.name}, {b.path.name}); "
            "a slice is duplicated")
    turns = np.flatnonzero(np.sign(steps) != np.sign(np.median(steps)))
    if turns.size:
        k = turns[0]
        raise DataValidationError(
            f"{directory}: slice positions do not follow InstanceNumber: instance "
            f"{slices[k + 1].instance} at {positions[k + 1]:.1f} mm comes after "
            f"{_where(slices[k], positions[k])}")
    spacing = float(np.median(np.abs(steps)))
    gaps = np.flatnonzero(np.abs(steps) > GAP_FACTOR * spacing)
    if gaps.size:
        k = gaps[0]
        raise DataValidationError(
            f"{directory}: slice gap of {abs(steps[k]):.1f} mm between "
            f"{_where(slices[k], positions[k])} and {_where(slices[k + 1], positions[k + 1])}; "
            f"the series' spacing is {spacing:.1f} mm: a slice is missing")


def read_series_headers(directory: Path) -> list[Slice]:
    """The slices of the one image series in ``directory``, checked and in stacking order.

    Raises:
        DataValidationError: no series, several series, or a slice geometry fault
            (:func:`check_slice_geometry`).
    """
    series = dicom_series(directory)
    if not series:
        raise DataValidationError(f"{directory}: no DICOM image series in this directory")
    if len(series) > 1:
        listing = ", ".join(f"{uid} ({len(files)} files)" for uid, files in series.items())
        raise DataValidationError(f"{directory}: mixes {len(series)} DICOM series ({listing}); "
                                  "put each series in its own directory")
    slices = next(iter(series.values()))
    _check_tags(slices)
    slices = sorted(slices, key=lambda s: s.instance)   # MONAI's stacking order
    check_slice_geometry(slices, directory)
    return slices


def write_dicom_series(volume: np.ndarray, spacing, directory: str | Path,
                       series_uid: str | None = None, study_uid: str | None = None) -> Path:
    """Write an ``(X, Y, Z)`` HU volume as an axial CT DICOM series (one file per slice).

    Patient axes follow DICOM (LPS): x to the left, y to posterior, z to superior.
    Used to export phantoms and in tests.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    directory = Path(directory)
    series_uid, study_uid = series_uid or generate_uid(), study_uid or generate_uid()
    frame_uid = generate_uid()
    nx, ny, nz = volume.shape
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        for k in range(nz):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = FileDataset(str(tmp / f"slice_{k:04d}.dcm"), {}, file_meta=meta,
                             preamble=b"\0" * 128)
            ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
            ds.Modality, ds.PatientID, ds.PatientName = "CT", "phantom", "Phantom^Unmask"
            # the patient and study modules' type-2 attributes (present, may be empty), which
            # a derived object (DICOM SEG) copies
            ds.PatientBirthDate = ds.PatientSex = ds.ReferringPhysicianName = ""
            ds.AccessionNumber, ds.StudyID, ds.SeriesNumber = "", "1", 1
            ds.StudyDate, ds.StudyTime = "20000101", "000000"
            ds.SeriesInstanceUID, ds.StudyInstanceUID = series_uid, study_uid
            ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_uid, ""
            ds.Rows, ds.Columns = ny, nx          # pixel rows run along y, columns along x
            ds.PixelSpacing = [round(float(spacing[1]), 6), round(float(spacing[0]), 6)]
            ds.SliceThickness = round(float(spacing[2]), 6)
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [0.0, 0.0, round(float(k * spacing[2]), 6)]
            ds.InstanceNumber = k + 1
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
            ds.PixelRepresentation, ds.SamplesPerPixel = 1, 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.RescaleIntercept, ds.RescaleSlope = 0, 1
            ds.PixelData = np.ascontiguousarray(volume[:, :, k].T.astype(np.int16)).tobytes()
            pydicom.dcmwrite(ds.filename, ds, enforce_file_format=True)
    return directory
