"""MONAI's image loading, fed with input that ``medical.io`` has already verified.

This module imports MONAI at its top; ``medical.io`` imports it where an image is read,
because MONAI takes seconds to import and most of the package does not need it.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from monai.data import NibabelReader, PydicomReader
from monai.data.utils import correct_nifti_header_if_necessary
from monai.transforms import LoadImage
from monai.utils import ensure_tuple


class VerifiedNiftiReader(NibabelReader):
    """MONAI's NIfTI reader handed an image that ``medical.nifti.read_nifti`` verified, so
    ``LoadImage`` builds the ``MetaTensor`` without opening the file a second time."""

    def __init__(self, image):
        super().__init__()
        self.image = image

    def read(self, data, **kwargs):
        self.filenames = ensure_tuple(data)
        return correct_nifti_header_if_necessary(self.image)


def series_reader(slice_files) -> PydicomReader:
    """A DICOM reader that stacks exactly ``slice_files`` (the checked slices) of their
    folder; MONAI would otherwise take every file there, a DICOMDIR or report included."""
    names = "|".join(re.escape(Path(f).name) for f in slice_files)
    return PydicomReader(fname_regex=rf".*[\\/](?:{names})$")


def load_channel_first(path: Path, nifti_image=None, slice_files=()):
    """``(1, X, Y, Z)`` float32 ``MetaTensor`` of ``nifti_image`` (already read from
    ``path``) or of the DICOM ``slice_files`` in folder ``path``."""
    reader = series_reader(slice_files) if nifti_image is None else VerifiedNiftiReader(nifti_image)
    return LoadImage(reader=reader, image_only=True, ensure_channel_first=True,
                     dtype=np.float32)(str(path))
