"""CT input and output: finding cases, reading NIfTI and DICOM series, writing NIfTI.

Cases come from the Medical Segmentation Decathlon layout (``dataset.json`` +
``imagesTr/``, ``labelsTr/``, ``imagesTs/``; our simulator adds ``lesionsTr/``), a
directory of NIfTI files, a single NIfTI file, a DICOM series directory or a directory of
series directories; an image file listed twice (two links to it, a link beside it) is one
case, with a warning. Images are read with MONAI's ``LoadImage`` (``NibabelReader`` or
``PydicomReader``) into a channel-first ``MetaTensor`` whose affine maps voxels to RAS mm,
once they have been checked: a NIfTI file's gzip CRC and length (``medical.nifti``), a
DICOM series' slice positions (``medical.dicom``), finite voxels, and -- for images, not
label maps -- a CT in Hounsfield units (``medical.guard``). Every failure is a
:class:`~core.errors.DataValidationError` that names the file.

Example:
    >>> cases = find_cases("data/medical")                    # doctest: +SKIP
    >>> image = load_volume(cases[0].image)                   # (1, X, Y, Z) MetaTensor
"""
from __future__ import annotations

import json
import logging
import re
import warnings
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from core.errors import DataValidationError, UnmaskWarning
from core.io import atomic_path
from core.text import counted

from .dicom import is_dicom_dir, read_series_headers
from .guard import check_ct_header, check_hounsfield
from .nifti import read_nifti

NIFTI_SUFFIXES = (".nii.gz", ".nii")
READ_ERRORS = (EOFError, OSError, RuntimeError, ValueError, zlib.error)


@dataclass(frozen=True)
class Case:
    """One case: an image (NIfTI file or DICOM directory) and optional truth files; frozen,
    so the :attr:`key` kept from its first use always names its ``image``
    (``dataclasses.replace`` makes a new case with its own)."""

    name: str
    image: Path
    label: Path | None = None
    lesion: Path | None = None
    has_lesion: bool | None = None

    @cached_property
    def key(self) -> Path:
        """Which case this is wherever cases are matched (trained, validated, calibrated on,
        unlabelled; read once and kept): its image file (:func:`file_key`), so a link or a
        relative path to it names the same case, and two files that share a name are two.
        Resolved on first use and kept: matching asks for it many times per case, and a
        case's ``image`` cannot change (the dataclass is frozen; ``cached_property`` writes
        the instance's ``__dict__``, which freezing leaves open)."""
        return file_key(self.image)


def file_key(path: str | Path) -> Path:
    """A file's identity wherever files are matched: its path resolved (links followed,
    relative paths made absolute)."""
    return Path(path).resolve()


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


def _msd_cases(root: Path, split: str | None) -> tuple[list[Case], set[Path]]:
    """The cases ``root/dataset.json`` lists under ``split`` (training first), and the image
    files (:attr:`Case.key`) of its test listings, which carry no truth."""
    meta = read_dataset_json(root)
    json_path = root / "dataset.json"
    training, test = [], []
    if split in (None, "training"):
        for entry in meta.get("training", []):
            image = _entry_path(root, entry.get("image"), "image", json_path)
            training.append(Case(case_name(image), image,
                                 _entry_path(root, entry.get("label"), "label", json_path),
                                 _entry_path(root, entry.get("lesion"), "lesion", json_path),
                                 entry.get("has_lesion")))
    if split in (None, "test"):
        for entry in meta.get("test", []):
            value = entry if isinstance(entry, str) else entry.get("image")
            image = _entry_path(root, value, "image", json_path)
            test.append(Case(case_name(image), image))
    return training + test, {c.key for c in test}


# --- case discovery ----------------------------------------------------------------------

def find_cases(path: str | Path, split: str | None = None) -> list[Case]:
    """All cases under ``path`` (see the module docstring for the layouts read).

    Args:
        path: MSD root, NIfTI file, directory of NIfTI files, DICOM series directory or a
            directory of DICOM series directories.
        split: for MSD roots, ``"training"``, ``"test"`` or ``None`` (both).

    Warns:
        UnmaskWarning: an image file listed twice (:func:`first_listings`).

    Raises:
        DataValidationError: ``path`` is missing or holds no cases, two cases share a name,
            or one image is listed twice with different truth files.
    """
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise DataValidationError(f"{path}: no such file or directory")
    if path.is_file():
        if not is_nifti(path):
            raise DataValidationError(f"{path}: not a NIfTI file (.nii or .nii.gz)")
        return [Case(case_name(path), path)]
    test_images: set[Path] = set()
    if (path / "dataset.json").is_file():
        cases, test_images = _msd_cases(path, split)
    elif (path / "imagesTr").is_dir() or (path / "imagesTs").is_dir():
        raise DataValidationError(f"{path}: MSD layout without dataset.json")
    elif is_dicom_dir(path):
        cases = [Case(path.name, path)]
    else:
        cases = [Case(case_name(p), p) for p in sorted(path.iterdir()) if is_nifti(p)]
        cases += [Case(p.name, p) for p in sorted(path.iterdir())
                  if p.is_dir() and not p.name.startswith(".") and is_dicom_dir(p)]
    if not cases:
        raise DataValidationError(f"{path}: no cases found (expected an MSD dataset.json, "
                                  "NIfTI files or DICOM series directories)")
    cases = first_listings(cases, path, test_images)
    duplicates = sorted(name for name, count in Counter(c.name for c in cases).items() if count > 1)
    if duplicates:
        raise DataValidationError(f"{path}: case names occur twice: {', '.join(duplicates)}")
    return cases


def first_listings(cases: list[Case], path: Path, test_images) -> list[Case]:
    """``cases`` with each image file (:attr:`Case.key`) once, where it is first listed.

    A second listing of one file (two links to it, a link beside it, an MSD entry written
    twice) would be trained on twice and could land on both sides of a split. The later
    listings are left out with one :class:`~core.errors.UnmaskWarning` naming them (a
    ``warning:`` line on the CLI), as ``medical.training_cases`` leaves out the calibration
    cases a model saw. The line counts neither the cases found nor those left, so reading
    one folder whole and by split says one repeat in the same words.

    Args:
        cases: the listings, in order.
        path: where they were found (it starts each message).
        test_images: the image files an MSD ``dataset.json`` lists under ``test`` (a
            listing there has no truth, so one also listed for training is refused as such).

    Raises:
        DataValidationError: two listings of one image give it different truth files.
    """
    first: dict[Path, Case] = {}
    repeats = []                                        # (later listing, the first one)
    for case in cases:
        kept = first.setdefault(case.key, case)
        if kept is not case:
            repeats.append((case, kept))
    if not repeats:
        return cases
    conflicting = [conflict for case, kept in repeats
                   if (conflict := _conflict(kept, case, test_images))]
    if conflicting:
        raise DataValidationError(f"{path}: an image file listed twice with different truth: "
                                  + "; ".join(dict.fromkeys(conflicting)))
    warnings.warn(f"{path}: left out {counted(len(repeats), 'case')}, each the image file of an "
                  f"earlier one: {_repeats_named(repeats)}", UnmaskWarning, stacklevel=3)
    return list(first.values())


def _repeats_named(repeats: list[tuple[Case, Case]]) -> str:
    """``"b (the image of a), x listed twice"``: each later listing (``(later, first)``), by
    the first one's name where they differ, by how often a name is listed where they agree
    (an MSD entry written more than once)."""
    times = Counter(case.name for case, kept in repeats if case.name == kept.name)
    named = []
    for case, kept in repeats:
        if case.name != kept.name:
            named.append(f"{case.name} (the image of {kept.name})")
        elif case.name in times:
            listed = times.pop(case.name) + 1
            named.append(f"{case.name} listed " + ("twice" if listed == 2 else f"{listed} times"))
    return ", ".join(named)


def _truth(case: Case) -> dict:
    """What a listing says of its image: its truth files (resolved) and ``has_lesion``."""
    return {"label": case.label and file_key(case.label),
            "lesion": case.lesion and file_key(case.lesion), "has_lesion": case.has_lesion}


def _conflict(first: Case, second: Case, test_images) -> str:
    """``"<image>: label <one> vs <other>"``: where two listings of one image differ
    (``"<image>: one listing is in the test list ..."`` where a test listing's want of truth
    is why); ``""`` where they agree."""
    one, other = _truth(first), _truth(second)
    differing = [f"{field} {one[field]} vs {other[field]}" for field in one
                 if one[field] != other[field]]
    no_truth = {"label": None, "lesion": None, "has_lesion": None}                 # what a test listing says
    if differing and first.key in test_images and no_truth in (one, other):
        return f"{first.key}: one listing is in the test list, which gives no truth"
    return f"{first.key}: {', '.join(differing)}" if differing else ""


# --- reading -----------------------------------------------------------------------------

# Notices about optional readers absent here (we never use nvImageCodec): safe to drop.
HARMLESS_WARNINGS = (r"NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register",
                     r"NvImgCodecPydicomReader ignores to_gpu")
# MONAI's notices that it read an image with guessed or partial geometry (identity affine,
# dropped slices): the scan would be segmented and measured wrongly, so they are errors.
GEOMETRY_WARNINGS = (r"PydicomReader: ImageOrientationPatient .* tags are missing",
                     r"slice: .* does not have InstanceNumber tag",
                     r"the list contains slices that have different",
                     r"the directory: .* contains more than one DICOM series",
                     r"Failed to read ")


@contextmanager
def reader_warnings(path):
    """Drop known-harmless reader notices; raise geometry warnings as errors naming ``path``.

    Every other warning passes through unchanged. The nvImageCodec plugin's logger, which
    reports the absent GPU codec once per ``LoadImage``, is quieted inside the block.
    """
    logger = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for message in HARMLESS_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=UserWarning)
            for message in GEOMETRY_WARNINGS:
                warnings.filterwarnings("error", message=message, category=UserWarning)
            yield
    except UserWarning as warning:
        if not any(re.match(message, str(warning), re.IGNORECASE) for message in GEOMETRY_WARNINGS):
            raise
        raise DataValidationError(f"{path}: {' '.join(str(warning).split())}") from None
    finally:
        logger.setLevel(level)


def check_finite(values: np.ndarray, path) -> None:
    """Refuse NaN or infinite voxels: one makes the whole network output NaN."""
    bad = ~np.isfinite(values)
    count = int(np.count_nonzero(bad))
    if count:
        index = np.unravel_index(int(np.argmax(bad)), values.shape)
        raise DataValidationError(
            f"{path}: {count} of {values.size} voxels are not finite (NaN, infinite or beyond "
            f"float32); the first is voxel {tuple(int(i) for i in index)}: {values[index]}")


def _checked_source(path: Path, hounsfield: bool) -> dict:
    """Check ``path`` before MONAI reads it: ``{"nifti_image": ...}`` (verified bytes) or
    ``{"slice_files": [...]}`` (a DICOM series whose slice geometry is sound)."""
    if path.is_dir():
        slices = read_series_headers(path)
        if hounsfield:
            check_ct_header(slices[0].header, path)
        return {"slice_files": [s.path for s in slices]}
    if is_nifti(path):
        return {"nifti_image": read_nifti(path)}
    raise DataValidationError(f"{path}: not a NIfTI file or DICOM series directory")


def load_volume(path: str | Path, hounsfield: bool = True):
    """Read a 3-D image as a ``(1, X, Y, Z)`` float32 ``MetaTensor`` (affine: voxel -> RAS).

    Args:
        path: a NIfTI file or a DICOM series directory.
        hounsfield: refuse what is not a CT in Hounsfield units (``medical.guard``); label
            maps and model outputs pass ``False``.

    Raises:
        DataValidationError: unreadable, damaged or truncated file; not 3-D; a DICOM series
            with missing, duplicated or untagged slices; NaN or infinite voxels; not CT.
    """
    from .readers import load_channel_first  # lazy: readers imports MONAI

    path = Path(path)
    source = _checked_source(path, hounsfield)
    with reader_warnings(path):
        try:
            image = load_channel_first(path, **source)
        except READ_ERRORS as err:
            raise DataValidationError(f"{path}: cannot read image data; the file is truncated "
                                      f"or corrupt ({type(err).__name__}: {err})") from None
    if image.ndim != 4 or image.shape[0] != 1:
        raise DataValidationError(f"{path}: expected a single-channel 3-D volume, got shape "
                                  f"{tuple(image.shape)}")
    if min(image.shape[1:]) < 2:
        raise DataValidationError(f"{path}: expected a 3-D volume, got shape "
                                  f"{tuple(image.shape[1:])} (a 2-D image?)")
    values = image.as_tensor().numpy()[0]
    check_finite(values, path)
    if hounsfield:
        check_hounsfield(values, path)
    return image


def load_label_like(path: str | Path, image, image_path: str | Path):
    """Read a label map and check it matches ``image`` (shape and affine)."""
    label = load_volume(path, hounsfield=False)
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
