"""NIfTI files read whole and verified before a voxel is used.

nibabel decompresses a ``.nii.gz`` only as far as the voxels it needs, so it never reaches
the gzip trailer: a file with a flipped byte (CRC mismatch) or a cut-off trailer loads
with wrong or unverifiable voxels and no error. :func:`read_nifti` decompresses the whole
file once (``gzip.decompress`` checks every member's CRC-32 and length), parses the
verified bytes, and checks the header against them: 3-D, voxel data complete, a usable
voxel-to-patient affine.

Example:
    >>> image = read_nifti(Path("case.nii.gz"))      # doctest: +SKIP
    >>> image.shape
    (512, 512, 120)
"""
from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from core.errors import DataValidationError

NIFTI2_HEADER_SIZE = 540
GZIP_ERRORS = (EOFError, OSError, zlib.error)    # gzip.BadGzipFile is an OSError


def verified_bytes(path: Path) -> bytes:
    """The file's NIfTI bytes; a ``.gz`` is decompressed and its CRC and length checked."""
    data = path.read_bytes()
    if not path.name.endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except GZIP_ERRORS as err:
        raise DataValidationError(f"{path}: damaged gzip data ({err}); the file is corrupt or "
                                  "truncated") from None


def _image_class(raw: bytes):
    import nibabel as nib

    sizes = struct.unpack("<i", raw[:4]) + struct.unpack(">i", raw[:4]) if len(raw) >= 4 else ()
    return nib.Nifti2Image if NIFTI2_HEADER_SIZE in sizes else nib.Nifti1Image


def _parse(raw: bytes, path: Path):
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError
    from nibabel.wrapstruct import WrapStructError

    try:
        return _image_class(raw).from_bytes(raw)
    except (ValueError, OSError, EOFError, struct.error, ImageFileError, HeaderDataError,
            WrapStructError) as err:
        raise DataValidationError(f"{path}: not a readable NIfTI file ({err})") from None


def _check_complete(image, raw: bytes, path: Path) -> None:
    header = image.header
    offset = int(image.dataobj.offset)      # where the voxels start in ``raw``
    needed = math.prod(int(n) for n in image.shape) * header.get_data_dtype().itemsize
    if len(raw) < offset + needed:
        raise DataValidationError(
            f"{path}: truncated: {max(len(raw) - offset, 0)} bytes of voxel data, but the "
            f"header's {tuple(image.shape)} {header.get_data_dtype()} volume needs {needed}")


def _check_affine(image, path: Path) -> None:
    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataValidationError(f"{path}: the voxel-to-patient affine is not usable "
                                  f"({affine[:3].tolist()}); the scan's geometry is unknown")


def read_nifti(path: Path):
    """A nibabel image parsed from ``path``'s verified bytes (voxels held in memory).

    Raises:
        DataValidationError: damaged gzip data, an unreadable header, not 3-D, voxel data
            shorter than the header says, or an affine that is not finite and invertible.
    """
    raw = verified_bytes(path)
    image = _parse(raw, path)
    if len(image.shape) != 3:
        raise DataValidationError(f"{path}: expected a 3-D volume, got a {len(image.shape)}-D "
                                  f"image of shape {tuple(image.shape)}")
    _check_complete(image, raw, path)
    _check_affine(image, path)
    return image
