"""CT input and output: finding cases, reading NIfTI and DICOM series, writing NIfTI.

Cases come from the Medical Segmentation Decathlon layout (``dataset.json`` +
``imagesTr/``, ``labelsTr/``, ``imagesTs/``; our simulator adds ``lesionsTr/``), a
directory of NIfTI files, a single NIfTI file, a DICOM series directory or a directory of
series directories. Images are read with MONAI's ``LoadImage`` (``NibabelReader`` or
``PydicomReader``) into a channel-first ``MetaTensor`` whose affine maps voxels to RAS mm.
Every failure is a :class:`~core.errors.DataValidationError` that names the file.

Example:
    >>> cases = find_cases("data/medical")                    # doctest: +SKIP
    >>> image = load_volume(cases[0].image)                   # (1, X, Y, Z) MetaTensor
"""
from __future__ import annotations

import json
import logging
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import DataValidationError
from core.io import atomic_path

NIFTI_SUFFIXES = (".nii.gz", ".nii")
READ_ERRORS = (EOFError, OSError, RuntimeError, ValueError, zlib.error)


@dataclass
class Case:
    """One case: an image (NIfTI file or DICOM directory) and optional truth files."""

    name: str
    image: Path
    label: Path | None = None
    lesion: Path | None = None
    has_lesion: bool | None = None


def is_nifti(path: Path) -> bool:
    return path.is_file() and path.name.endswith(NIFTI_SUFFIXES)


def case_name(path: Path) -> str:
    name = path.name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# --- dataset.json ------------------------------------------------------------------------

def read_dataset_json(root: str | Path) -> dict:
    """Parse ``root/dataset.json``; returns the dict with ``labels`` as ``{int: name}``."""
    path = Path(root) / "dataset.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataValidationError(f"{path}: missing; an MSD dataset needs a dataset.json") from None
    except json.JSONDecodeError as err:
        raise DataValidationError(f"{path}: not valid JSON ({err})") from None
    raw = meta.get("labels")
    if not isinstance(raw, dict) or not raw:
        raise DataValidationError(f"{path}: no 'labels' mapping (e.g. {{\"1\": \"liver\"}})")
    labels = {}
    for key, value in raw.items():  # MSD v1 {"1": "liver"}; v2 {"liver": 1}
        index, name = (key, value) if str(key).isdigit() else (value, key)
        try:
            labels[int(index)] = str(name)
        except (TypeError, ValueError):
            raise DataValidationError(f"{path}: label {key!r}: {value!r} has no integer id") from None
    meta["labels"] = {k: v for k, v in sorted(labels.items()) if k != 0}
    return meta


def organ_labels(root: str | Path) -> dict[int, str]:
    """Foreground labels ``{1: "liver", ...}`` named in ``root/dataset.json``."""
    return read_dataset_json(root)["labels"]


def _entry_path(root: Path, value: str | None, field: str, json_path: Path) -> Path | None:
    if value is None:
        return None
    path = (root / value).resolve()
    if not path.exists():
        raise DataValidationError(f"{json_path}: {field} file {value} does not exist")
    return path


def _msd_cases(root: Path, split: str | None) -> list[Case]:
    meta = read_dataset_json(root)
    json_path = root / "dataset.json"
    cases = []
    if split in (None, "training"):
        for entry in meta.get("training", []):
            image = _entry_path(root, entry.get("image"), "image", json_path)
            cases.append(Case(case_name(image), image,
                              _entry_path(root, entry.get("label"), "label", json_path),
                              _entry_path(root, entry.get("lesion"), "lesion", json_path),
                              entry.get("has_lesion")))
    if split in (None, "test"):
        for entry in meta.get("test", []):
            value = entry if isinstance(entry, str) else entry.get("image")
            image = _entry_path(root, value, "image", json_path)
            cases.append(Case(case_name(image), image))
    return cases


# --- DICOM -------------------------------------------------------------------------------

def dicom_series(directory: Path) -> dict[str, list[Path]]:
    """Image files per ``SeriesInstanceUID`` among the files directly in ``directory``."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    series: dict[str, list[Path]] = {}
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError):
            continue
        if "Rows" not in ds or "SeriesInstanceUID" not in ds:
            continue  # not an image (structured report, DICOMDIR, ...)
        series.setdefault(str(ds.SeriesInstanceUID), []).append(path)
    return series


def _is_dicom_dir(directory: Path) -> bool:
    import pydicom

    return any(p.is_file() and (p.suffix.lower() == ".dcm" or pydicom.misc.is_dicom(p))
               for p in directory.iterdir())


def _check_dicom_dir(directory: Path) -> None:
    series = dicom_series(directory)
    if not series:
        raise DataValidationError(f"{directory}: no DICOM image series in this directory")
    if len(series) > 1:
        listing = ", ".join(f"{uid} ({len(files)} files)" for uid, files in series.items())
        raise DataValidationError(f"{directory}: mixes {len(series)} DICOM series ({listing}); "
                                  "put each series in its own directory")


# --- case discovery ----------------------------------------------------------------------

def find_cases(path: str | Path, split: str | None = None) -> list[Case]:
    """All cases under ``path`` (see the module docstring for the layouts read).

    Args:
        path: MSD root, NIfTI file, directory of NIfTI files, DICOM series directory or a
            directory of DICOM series directories.
        split: for MSD roots, ``"training"``, ``"test"`` or ``None`` (both).

    Raises:
        DataValidationError: ``path`` is missing or holds no cases.
    """
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise DataValidationError(f"{path}: no such file or directory")
    if path.is_file():
        if not is_nifti(path):
            raise DataValidationError(f"{path}: not a NIfTI file (.nii or .nii.gz)")
        return [Case(case_name(path), path)]
    if (path / "dataset.json").is_file():
        cases = _msd_cases(path, split)
    elif (path / "imagesTr").is_dir() or (path / "imagesTs").is_dir():
        raise DataValidationError(f"{path}: MSD layout without dataset.json")
    elif _is_dicom_dir(path):
        cases = [Case(path.name, path)]
    else:
        cases = [Case(case_name(p), p) for p in sorted(path.iterdir()) if is_nifti(p)]
        cases += [Case(p.name, p) for p in sorted(path.iterdir())
                  if p.is_dir() and not p.name.startswith(".") and _is_dicom_dir(p)]
    if not cases:
        raise DataValidationError(f"{path}: no cases found (expected an MSD dataset.json, "
                                  "NIfTI files or DICOM series directories)")
    names = [c.name for c in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataValidationError(f"{path}: case names occur twice: {', '.join(duplicates)}")
    return cases


# --- reading -----------------------------------------------------------------------------

def _check_nifti_header(path: Path) -> None:
    import nibabel as nib

    try:
        header_shape = nib.load(str(path)).shape
    except READ_ERRORS + (nib.filebasedimages.ImageFileError,) as err:
        raise DataValidationError(f"{path}: not a readable NIfTI file ({err})") from None
    if len(header_shape) != 3:
        raise DataValidationError(f"{path}: expected a 3-D volume, got a {len(header_shape)}-D "
                                  f"image of shape {tuple(header_shape)}")


@contextmanager
def quiet_monai_readers():
    """Silence MONAI's notices about optional readers missing here (nvImageCodec, CuPy).

    ``LoadImage`` builds every reader it knows, and the nvImageCodec DICOM reader logs a
    warning per construction when the GPU codec is absent; we never use that reader. Only
    that logger and Python warnings inside the block are affected.
    """
    logger = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def load_volume(path: str | Path):
    """Read a 3-D image as a ``(1, X, Y, Z)`` float32 ``MetaTensor`` (affine: voxel -> RAS).

    Raises:
        DataValidationError: unreadable or truncated file, not 3-D, or a DICOM directory
            without exactly one image series.
    """
    from monai.data import NibabelReader, PydicomReader
    from monai.transforms import LoadImage

    path = Path(path)
    if path.is_dir():
        _check_dicom_dir(path)
        reader = PydicomReader()
    elif is_nifti(path):
        _check_nifti_header(path)
        reader = NibabelReader()
    else:
        raise DataValidationError(f"{path}: not a NIfTI file or DICOM series directory")
    try:
        with quiet_monai_readers():
            image = LoadImage(reader=reader, image_only=True, ensure_channel_first=True,
                              dtype=np.float32)(str(path))
    except READ_ERRORS as err:
        raise DataValidationError(f"{path}: cannot read image data; the file is truncated or "
                                  f"corrupt ({type(err).__name__}: {err})") from None
    if image.ndim != 4 or image.shape[0] != 1:
        raise DataValidationError(f"{path}: expected a single-channel 3-D volume, got shape "
                                  f"{tuple(image.shape)}")
    if min(image.shape[1:]) < 2:
        raise DataValidationError(f"{path}: expected a 3-D volume, got shape "
                                  f"{tuple(image.shape[1:])} (a 2-D image?)")
    return image


def load_label_like(path: str | Path, image, image_path: str | Path):
    """Read a label map and check it matches ``image`` (shape and affine)."""
    label = load_volume(path)
    if tuple(label.shape) != tuple(image.shape):
        raise DataValidationError(f"{path}: label shape {tuple(label.shape[1:])} differs from "
                                  f"its image {image_path} {tuple(image.shape[1:])}")
    if not np.allclose(np.asarray(label.affine), np.asarray(image.affine), atol=1e-3):
        raise DataValidationError(f"{path}: label affine differs from its image {image_path}")
    return label


def save_nifti(array: np.ndarray, affine: np.ndarray, path: str | Path) -> Path:
    """Write ``array`` (X, Y, Z) with ``affine`` to NIfTI atomically."""
    import nibabel as nib

    path = Path(path)
    image = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    image.set_qform(image.affine, code=1)
    image.set_sform(image.affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
    return path


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
            ds.Modality, ds.PatientID = "CT", "phantom"
            ds.SeriesInstanceUID, ds.StudyInstanceUID = series_uid, study_uid
            ds.Rows, ds.Columns = ny, nx          # pixel rows run along y, columns along x
            ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
            ds.SliceThickness = float(spacing[2])
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [0.0, 0.0, float(k * spacing[2])]
            ds.InstanceNumber = k + 1
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
            ds.PixelRepresentation, ds.SamplesPerPixel = 1, 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.RescaleIntercept, ds.RescaleSlope = 0, 1
            ds.PixelData = np.ascontiguousarray(volume[:, :, k].T.astype(np.int16)).tobytes()
            pydicom.dcmwrite(ds.filename, ds, enforce_file_format=True)
    return directory
