"""Property-based fuzz of the NIfTI reader: a damaged or odd file is either read exactly or
refused with a DataValidationError -- never another exception, never wrong voxels."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.errors import DataValidationError
from medical.io import load_volume

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
AFFINE = np.array([[0.0, -1.5, 0.0, 20.0], [2.0, 0.0, 0.0, -10.0],
                   [0.0, 0.0, 3.0, 5.0], [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def valid_file(tmp_path_factory):
    """A valid tiny .nii.gz of a body in air: ``(bytes, voxels)``. Its deflate stream
    compresses, so most flipped bytes there still decode -- to wrong voxels."""
    rng = np.random.default_rng(0)
    hu = np.full((12, 10, 8), -1000.0) + rng.normal(0, 10, (12, 10, 8))
    hu[2:-2, 2:-2] = 40 + rng.normal(0, 15, (8, 6, 8))
    voxels = np.round(hu).astype(np.int16)
    path = tmp_path_factory.mktemp("fuzz") / "valid.nii.gz"
    nib.save(nib.Nifti1Image(voxels, AFFINE), str(path))
    return path.read_bytes(), voxels


def read_or_refuse(path):
    """The volume as float32 ``(X, Y, Z)`` and its affine, or None when refused."""
    try:
        image = load_volume(path, hounsfield=False)
    except DataValidationError as err:
        assert str(path.name) in str(err) and "\n" not in str(err)
        return None
    return image.as_tensor().numpy()[0], np.asarray(image.affine)


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1,
                      max_size=3),
       cut=st.one_of(st.none(), st.integers(0, 10_000)))
def test_corrupted_gzip_reads_exactly_or_is_refused(valid_file, tmp_path, flips, cut):
    data, voxels = valid_file
    damaged = bytearray(data)
    for position, mask in flips:
        damaged[position % len(damaged)] ^= mask
    if cut is not None:
        damaged = damaged[: cut % len(damaged)]
    path = tmp_path / "damaged.nii.gz"
    path.write_bytes(bytes(damaged))
    result = read_or_refuse(path)
    if result is not None:                 # only harmless bytes changed (gzip mtime, OS, ...)
        np.testing.assert_array_equal(result[0], voxels.astype(np.float32))
        np.testing.assert_allclose(result[1], AFFINE, atol=1e-6)


@FUZZ
@given(array=st.sampled_from(["int16", "uint8", "float32", "float64"]).flatmap(
    lambda dtype: arrays(dtype, st.tuples(*[st.integers(2, 5)] * 3))))
def test_random_arrays_read_exactly_or_are_refused(tmp_path, array):
    path = tmp_path / "random.nii.gz"
    nib.save(nib.Nifti1Image(array, AFFINE), str(path))
    result = read_or_refuse(path)
    with np.errstate(over="ignore"):
        expected = array.astype(np.float32)          # what the model computes on
    # refused exactly when a voxel is NaN or infinite (or too large for float32)
    assert (result is not None) == bool(np.isfinite(expected).all())
    if result is not None:
        np.testing.assert_array_equal(result[0], expected)
