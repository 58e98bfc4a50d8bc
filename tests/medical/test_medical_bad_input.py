"""Bad CT inputs are refused with one line naming the file and the value (issue 15).

Non-finite voxels, damaged gzip data, DICOM series with missing or duplicated slices or
without position tags, and scans that are not CT in Hounsfield units. Each is refused by
the reader API and through ``unmask medical infer`` (exit code 2, no run written).
"""
from __future__ import annotations

import gzip
import shutil
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest

from core.cli import main
from core.errors import DataValidationError
from medical.dicom import write_dicom_series
from medical.io import load_volume, reader_warnings


def ct_like(shape=(12, 10, 8), seed=0) -> np.ndarray:
    """A small int16 HU volume: air around a soft-tissue body with a bone column."""
    rng = np.random.default_rng(seed)
    hu = np.full(shape, -1000.0) + rng.normal(0, 10, shape)
    hu[2:-2, 2:-2, :] = 40 + rng.normal(0, 15, (shape[0] - 4, shape[1] - 4, shape[2]))
    hu[5:7, 4:6, :] = 900
    return np.round(hu).astype(np.int16)


def ct_series(directory, shape=(8, 8, 6), spacing=(1.0, 1.0, 2.0)):
    return write_dicom_series(ct_like(shape), spacing, directory)


def edit_series(directory, edit):
    """Apply ``edit(dataset, index)`` to every slice file of a series."""
    for k, path in enumerate(sorted(directory.glob("*.dcm"))):  # not the .unmask marker
        ds = pydicom.dcmread(path)
        edit(ds, k)
        ds.save_as(path)


def gzip_flip_that_nibabel_misses(path, original):
    """A copy of ``path`` with one byte of its deflate stream flipped such that nibabel still
    decodes it, to different voxels (nibabel never reaches the gzip CRC)."""
    data = path.read_bytes()
    target = path.with_name("flipped.nii.gz")
    for pos in range(len(data) // 2, len(data) - 8):
        damaged = bytearray(data)
        damaged[pos] ^= 0x10
        target.write_bytes(bytes(damaged))
        try:
            voxels = np.asarray(nib.load(str(target)).dataobj)
        except Exception:
            continue
        if voxels.shape == original.shape and not np.array_equal(voxels, original):
            return target
    raise AssertionError("no silently decodable flip found")


# --- the reader API ----------------------------------------------------------------------

@pytest.mark.parametrize("bad, count", [(np.nan, 1), (np.inf, 3)])
def test_non_finite_voxels_are_named(tmp_path, write_nifti, bad, count):
    hu = ct_like().astype(np.float32)
    hu[3, 4, 5] = bad
    if count == 3:
        hu[6, 1, 7], hu[7, 7, 7] = bad, -bad
    path = write_nifti(tmp_path / "scan.nii.gz", hu)
    with pytest.raises(DataValidationError,
                       match=rf"scan\.nii\.gz: {count} of 960 voxels are not finite \(NaN, "
                             rf"infinite or beyond float32\); the first is voxel \(3, 4, 5\): "
                             rf"{bad}") as info:
        load_volume(path)
    assert "\n" not in str(info.value)


def test_gzip_crc_failure_is_refused(tmp_path, write_nifti):
    hu = ct_like((24, 24, 16))
    path = write_nifti(tmp_path / "scan.nii.gz", hu)
    flipped = gzip_flip_that_nibabel_misses(path, hu)
    with pytest.raises(DataValidationError, match=r"flipped\.nii\.gz: damaged gzip data"):
        load_volume(flipped)


def test_gzip_without_its_trailer_is_refused(tmp_path, write_nifti):
    """All voxels are there, but the CRC and length are cut off: the file cannot be verified."""
    path = write_nifti(tmp_path / "scan.nii.gz", ct_like())
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(path.read_bytes()[:-8])
    assert np.asarray(nib.load(str(cut)).dataobj).shape == (12, 10, 8)   # nibabel reads it
    with pytest.raises(DataValidationError, match=r"cut\.nii\.gz: damaged gzip data .*truncated"):
        load_volume(cut)


def test_uncompressed_nifti_shorter_than_its_header_says(tmp_path, write_nifti):
    path = write_nifti(tmp_path / "scan.nii", ct_like())
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataValidationError, match=r"scan\.nii: truncated: .*bytes of voxel data"):
        load_volume(path)


def drop_slice(series):
    (series / "slice_0003.dcm").unlink()


def duplicate_slice(series):
    shutil.copy(series / "slice_0002.dcm", series / "slice_0002_copy.dcm")


def renumber(series):
    edit_series(series, lambda ds, k: setattr(ds, "InstanceNumber", [1, 2, 4, 3, 5, 6][k]))


@pytest.mark.parametrize("damage, message", [
    (drop_slice, r"slice gap of 4\.0 mm between 4\.0 mm \(instance 3\) and 8\.0 mm "
                 r"\(instance 5\); the series' spacing is 2\.0 mm: a slice is missing"),
    (duplicate_slice, r"two slices at 4\.0 mm along the slice normal \(instances 3 and 3: "
                      r"slice_0002\.dcm, slice_0002_copy\.dcm\)"),
    (renumber, r"slice positions do not follow InstanceNumber: instance 4 at 4\.0 mm comes "
               r"after 6\.0 mm \(instance 3\)"),
])
def test_dicom_series_with_missing_duplicated_or_misnumbered_slices(tmp_path, damage, message):
    """MONAI would stack these with stretched or shifted spacing and wrong organ volumes."""
    series = ct_series(tmp_path / "series")
    damage(series)
    with pytest.raises(DataValidationError, match=rf"series: {message}"):
        load_volume(series)


@pytest.mark.parametrize("edit", [lambda ds, k: delattr(ds, "ImagePositionPatient"),
                                  lambda ds, k: setattr(ds, "ImagePositionPatient", [0.0, 0.0])])
def test_dicom_series_without_position_tags(tmp_path, edit):
    """MONAI would warn and use an identity affine: wrong geometry, silently."""
    series = ct_series(tmp_path / "series")
    edit_series(series, edit)
    with pytest.raises(DataValidationError,
                       match=r"slice_0000\.dcm: no ImagePositionPatient \(missing or not numbers\)"):
        load_volume(series)


def test_dicom_geometry_monai_cannot_use_is_refused(tmp_path):
    """Orientation values longer than DICOM's 16-character DS: pydicom reads them, but
    MONAI drops the tag, warns and falls back to an identity affine. That warning is an error."""
    series = ct_series(tmp_path / "series")
    c, s = float(np.cos(0.3)), float(np.sin(0.3))
    edit_series(series, lambda ds, k: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, c, s]))
    with pytest.raises(DataValidationError,
                       match=r"series: PydicomReader: ImageOrientationPatient .* tags are missing"):
        load_volume(series)


def test_dicom_series_reads_along_an_oblique_normal(tmp_path):
    """Positions are measured along the slice normal, not along z."""
    series = ct_series(tmp_path / "series")
    c, s = round(float(np.cos(0.3)), 6), round(float(np.sin(0.3)), 6)   # DICOM DS: 16 chars

    def tilt(ds, k):
        ds.ImageOrientationPatient = [1, 0, 0, 0, c, s]   # normal (0, -s, c)
        ds.ImagePositionPatient = [0.0, round(-s * 2.0 * k, 6), round(c * 2.0 * k, 6)]
    edit_series(series, tilt)
    image = load_volume(series)
    assert image.shape == (1, 8, 8, 6)
    (series / "slice_0002.dcm").unlink()
    with pytest.raises(DataValidationError, match=r"slice gap of 4\.0 mm"):
        load_volume(series)


@pytest.mark.parametrize("tag, value, message", [
    ("Modality", "MR", r"Modality is 'MR', not CT"),
    ("RescaleType", "US", r"RescaleType is 'US', not HU"),
    ("RescaleIntercept", None, r"no RescaleIntercept"),
])
def test_dicom_that_is_not_ct_in_hu(tmp_path, tag, value, message):
    series = ct_series(tmp_path / "series")
    edit_series(series, lambda ds, k: setattr(ds, tag, value) if value else delattr(ds, tag))
    with pytest.raises(DataValidationError, match=rf"series: {message}"):
        load_volume(series)
    assert load_volume(series, hounsfield=False).shape == (1, 8, 8, 6)


def mr_like(shape=(12, 10, 8)) -> np.ndarray:
    """Arbitrary MR intensities: background near 0, tissue up to a few thousand."""
    rng = np.random.default_rng(1)
    mr = np.abs(rng.normal(0, 5, shape))
    mr[2:-2, 2:-2, :] = rng.uniform(300, 4000, (shape[0] - 4, shape[1] - 4, shape[2]))
    return mr.astype(np.int16)


def test_nifti_that_is_not_on_a_hounsfield_scale(tmp_path, write_nifti):
    path = write_nifti(tmp_path / "mr.nii.gz", mr_like())
    with pytest.raises(DataValidationError,
                       match=r"mr\.nii\.gz: not a CT in Hounsfield units: no air \(0 of 960 "
                             r"voxels at or below -500 HU; values 0\.\.3999\)"):
        load_volume(path)
    tenfold = write_nifti(tmp_path / "tenfold.nii.gz", ct_like().astype(np.float32) * 10)
    with pytest.raises(DataValidationError, match=r"tenfold\.nii\.gz: not a CT in Hounsfield "
                                                  r"units: .* voxels outside -1100\.\.3500 HU"):
        load_volume(tenfold)


def test_real_ct_conventions_are_accepted(tmp_path, write_nifti):
    """Padding outside the reconstruction circle (-3024) and a little metal are CT."""
    hu = ct_like((20, 20, 8)).astype(np.int16)
    hu[:3, :3, :] = -3024                  # corners outside the scanner's field of view
    hu[8, 8, 4] = 14000                    # a metal clip on an extended HU scale
    image = load_volume(write_nifti(tmp_path / "ct.nii.gz", hu))
    np.testing.assert_array_equal(image.as_tensor().numpy()[0], hu)


# --- warnings ----------------------------------------------------------------------------

def test_reader_warnings_keep_unknown_drop_harmless_and_refuse_geometry(tmp_path):
    with pytest.warns(UserWarning, match="something new"):
        with reader_warnings(tmp_path / "x.nii.gz"):
            warnings.warn("something new")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with reader_warnings(tmp_path / "x.nii.gz"):
            warnings.warn("NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register "
                          "successfully. Falling back to default pydicom decoders.")
    with pytest.raises(DataValidationError, match=r"x\.nii\.gz: .*tags are missing"):
        with reader_warnings(tmp_path / "x.nii.gz"):
            warnings.warn("PydicomReader: ImageOrientationPatient (0020,0037) and/or "
                          "ImagePositionPatient (0020,0032) tags are missing, so the affine "
                          "matrix cannot be derived and defaults to the identity.")


def test_a_good_read_emits_no_warning(tmp_path, write_nifti):
    path = write_nifti(tmp_path / "scan.nii.gz", ct_like())
    series = ct_series(tmp_path / "series")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_volume(path)
        load_volume(series)


# --- through the CLI ---------------------------------------------------------------------

def bad_inputs(tmp_path, write_nifti):
    """``{name: (images path, text the error line must hold)}``, one per refusal."""
    nan = ct_like().astype(np.float32)
    nan[3, 4, 5] = np.nan
    flipped_src = write_nifti(tmp_path / "good.nii.gz", ct_like((24, 24, 16)))
    gap = ct_series(tmp_path / "gap")
    drop_slice(gap)
    dup = ct_series(tmp_path / "dup")
    duplicate_slice(dup)
    mr_dicom = ct_series(tmp_path / "mrdicom")
    edit_series(mr_dicom, lambda ds, k: setattr(ds, "Modality", "MR"))
    no_position = ct_series(tmp_path / "nopos")
    edit_series(no_position, lambda ds, k: delattr(ds, "ImageOrientationPatient"))
    return {
        "nan": (write_nifti(tmp_path / "nan.nii.gz", nan),
                "nan.nii.gz: 1 of 960 voxels are not finite (NaN, infinite or beyond float32); "
                "the first is voxel (3, 4, 5): nan"),
        "crc": (gzip_flip_that_nibabel_misses(flipped_src, ct_like((24, 24, 16))),
                "flipped.nii.gz: damaged gzip data"),
        "gap": (gap, "gap: slice gap of 4.0 mm"),
        "duplicate": (dup, "dup: two slices at 4.0 mm"),
        "modality": (mr_dicom, "mrdicom: Modality is 'MR', not CT"),
        "position": (no_position, "slice_0000.dcm: no ImageOrientationPatient"),
        "mr": (write_nifti(tmp_path / "mr.nii.gz", mr_like()), "mr.nii.gz: not a CT"),
    }


def test_infer_refuses_each_bad_input_in_one_line(tiny_models, tmp_path, write_nifti, capsys):
    _, model_dir, _, _ = tiny_models
    for name, (images, expected) in bad_inputs(tmp_path, write_nifti).items():
        out = tmp_path / "runs" / name
        with pytest.raises(SystemExit) as exit_info:
            main(["medical", "infer", "--model", str(model_dir), "--images", str(images),
                  "--out", str(out)])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, (name, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (name, err)
        assert expected in lines[0], (name, err)
        assert not out.exists() and list((tmp_path / "runs").iterdir()) == [], name


def test_good_gzip_is_decompressed_once(tmp_path, write_nifti, monkeypatch):
    """The verified bytes are the ones parsed: nibabel does not open the file again."""
    path = write_nifti(tmp_path / "scan.nii.gz", ct_like())
    calls = []
    real = gzip.decompress
    monkeypatch.setattr(gzip, "decompress", lambda data: calls.append(1) or real(data))
    monkeypatch.setattr(nib, "load", lambda *a, **k: pytest.fail("the file was opened twice"))
    image = load_volume(path)
    np.testing.assert_array_equal(image.as_tensor().numpy()[0], ct_like())
    assert len(calls) == 1
