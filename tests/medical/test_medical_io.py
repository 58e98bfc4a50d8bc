"""Reading cases (MSD, NIfTI, DICOM), geometry round trips and bad-input errors."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from core.errors import DataValidationError, UnmaskWarning
from medical.dicom import write_dicom_series
from medical.io import find_cases, load_label_like, load_volume
from medical.transforms import Preprocessor, PreprocessConfig, ras_spacing

# anisotropic and not RAS: axes permuted and flipped
OBLIQUE_AFFINE = np.array([[0.0, -7.0, 0.0, 90.0], [9.0, 0.0, 0.0, -100.0],
                           [0.0, 0.0, 17.0, -60.0], [0.0, 0.0, 0.0, 1.0]])


def test_msd_cases_and_labels(tiny_data):
    train, test = tiny_data
    cases = find_cases(train)
    assert [c.name for c in cases] == [f"case_{i:03d}" for i in range(6)]
    assert all(c.label is not None and c.lesion is None for c in cases)
    test_cases = find_cases(test)
    assert sum(bool(c.has_lesion) for c in test_cases) == 2
    assert all(c.lesion is not None for c in test_cases)


def test_preprocess_inverse_restores_input_geometry(tmp_path, write_nifti):
    """An anisotropic, non-RAS volume goes to the model grid and back onto its own voxels."""
    rng = np.random.default_rng(0)
    hu = np.full((20, 14, 10), -1000.0)
    hu[3:17, 2:12, 1:9] = 40 + rng.normal(0, 5, size=(14, 10, 8))  # "body"
    path = write_nifti(tmp_path / "oblique.nii.gz", hu.astype(np.float32), OBLIQUE_AFFINE)
    image = load_volume(path)
    assert ras_spacing(image.affine) == (7.0, 9.0, 17.0)   # R runs along voxel axis 1
    pre = Preprocessor(PreprocessConfig(spacing=(4.0, 4.0, 5.0)))
    grid = pre(image)["image"]
    assert grid.shape[1:] != image.shape[1:]               # really resampled
    back = pre.invert(grid.as_tensor(), grid)              # windowed intensities, input grid
    assert back.shape == (1, 20, 14, 10)
    expected = np.clip((hu + 175) / 425, 0, 1)
    interior = np.zeros(hu.shape, dtype=bool)
    interior[5:15, 4:10, 2:8] = True                       # away from partial-volume edges
    assert np.abs(back[0][interior] - expected[interior]).mean() < 0.03
    assert ((back[0] > 0.25) == (hu > 0)).mean() > 0.9     # same body, same place


def test_infer_outputs_match_an_oblique_input(tiny_models, tiny_data, tmp_path, write_nifti):
    from medical.infer import infer

    _, model_dir, _, _ = tiny_models
    source = find_cases(tiny_data[1])[0].image
    image = nib.load(str(source))
    data = np.asarray(image.dataobj)
    oblique = np.transpose(data, (1, 0, 2))[::-1]          # new voxel order, new affine
    affine = np.array([[0.0, -12.5, 0.0, 190.0], [-11.0, 0.0, 0.0, 180.0],
                       [0.0, 0.0, 15.5, -120.0], [0.0, 0.0, 0.0, 1.0]])
    src = write_nifti(tmp_path / "oblique.nii.gz", oblique.astype(np.int16), affine)
    run = infer(model_dir, src, tmp_path / "run")
    for name in ("oblique_seg.nii.gz", "oblique_anomaly.nii.gz"):
        out = nib.load(str(run / name))
        assert out.shape == oblique.shape
        np.testing.assert_allclose(out.affine, affine, atol=1e-5)
    seg = np.asarray(nib.load(str(run / "oblique_seg.nii.gz")).dataobj)
    assert seg.dtype == np.uint8 and seg.max() >= 1


def test_dicom_series_round_trip(tmp_path):
    volume = (np.arange(6 * 8 * 5).reshape(6, 8, 5) * 3 - 200).astype(np.int16)
    write_dicom_series(volume, (1.5, 2.0, 3.0), tmp_path / "series")
    image = load_volume(tmp_path / "series", hounsfield=False)   # a ramp, not a body
    np.testing.assert_array_equal(image.as_tensor().numpy()[0], volume)
    assert ras_spacing(image.affine) == pytest.approx((1.5, 2.0, 3.0))
    cases = find_cases(tmp_path)                           # a directory of series directories
    assert [c.name for c in cases] == ["series"]


def test_dicom_mixed_series_and_no_series(tmp_path):
    from pydicom.uid import generate_uid

    volume = np.zeros((4, 4, 3), dtype=np.int16)
    uid_a, uid_b = generate_uid(), generate_uid()
    write_dicom_series(volume, (1, 1, 1), tmp_path / "a", series_uid=uid_a)
    write_dicom_series(volume, (1, 1, 1), tmp_path / "b", series_uid=uid_b)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for src in ("a", "b"):
        for f in (tmp_path / src).iterdir():
            f.rename(mixed / f"{src}_{f.name}")
    with pytest.raises(DataValidationError, match=rf"mixes 2 DICOM series.*{uid_a}"):
        load_volume(mixed)
    empty = tmp_path / "nodicom"
    empty.mkdir()
    (empty / "readme.dcm").write_text("not dicom")
    with pytest.raises(DataValidationError, match="nodicom: no DICOM image series"):
        load_volume(empty)


@pytest.mark.parametrize("shape, message", [((8, 8, 4, 2), "expected a 3-D volume, got a 4-D"),
                                            ((8, 8), "expected a 3-D volume, got a 2-D")])
def test_wrong_dimensionality(tmp_path, shape, message, write_nifti):
    path = write_nifti(tmp_path / "bad.nii.gz", np.zeros(shape, dtype=np.float32))
    with pytest.raises(DataValidationError, match=rf"bad\.nii\.gz: {message}"):
        load_volume(path)


def test_truncated_nifti(tmp_path, write_nifti):
    path = write_nifti(tmp_path / "full.nii.gz", np.random.default_rng(0).random((30, 30, 20)))
    data = path.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataValidationError, match=r"cut\.nii\.gz: damaged gzip data .*truncated"):
        load_volume(cut)
    stub = tmp_path / "stub.nii.gz"
    stub.write_bytes(data[:100])
    with pytest.raises(DataValidationError, match=r"stub\.nii\.gz"):
        load_volume(stub)


def test_label_disagreeing_with_image(tmp_path, write_nifti):
    image_path = write_nifti(tmp_path / "img.nii.gz", np.zeros((8, 8, 4), np.float32))
    image = load_volume(image_path, hounsfield=False)
    wrong_shape = write_nifti(tmp_path / "lab1.nii.gz", np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(DataValidationError, match=r"lab1\.nii\.gz: label shape \(8, 8, 5\) differs .*img\.nii\.gz"):
        load_label_like(wrong_shape, image, image_path)
    wrong_affine = write_nifti(tmp_path / "lab2.nii.gz", np.zeros((8, 8, 4), np.uint8), np.diag([2, 1, 1, 1.0]))
    with pytest.raises(DataValidationError, match=r"lab2\.nii\.gz: label affine differs"):
        load_label_like(wrong_affine, image, image_path)


def test_directory_without_cases(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataValidationError, match="no cases found"):
        find_cases(tmp_path)
    msd = tmp_path / "msd"
    (msd / "imagesTr").mkdir(parents=True)
    with pytest.raises(DataValidationError, match="MSD layout without dataset.json"):
        find_cases(msd)
    with pytest.raises(DataValidationError, match="no such file"):
        find_cases(tmp_path / "missing")


def test_dataset_json_pointing_to_missing_file(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"labels": {"0": "background", "1": "liver"},
         "training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}]}))
    with pytest.raises(DataValidationError, match=r"image file ./imagesTr/x.nii.gz does not exist"):
        find_cases(tmp_path)


def test_an_image_linked_twice_is_one_case_with_a_warning(tmp_path, write_nifti):
    """A link beside its file lists one image twice: the first listing is kept, the other
    named in one warning (trained on twice, it could fall on both sides of a split)."""
    for name in ("a", "c"):
        write_nifti(tmp_path / f"{name}.nii.gz", np.zeros((4, 4, 4)))
    (tmp_path / "b.nii.gz").symlink_to(tmp_path / "a.nii.gz")
    (tmp_path / "d.nii.gz").symlink_to(tmp_path / "a.nii.gz")
    with pytest.warns(UnmaskWarning) as caught:
        cases = find_cases(tmp_path)
    assert [c.name for c in cases] == ["a", "c"]
    assert [str(w.message) for w in caught] == [
        f"{tmp_path.resolve()}: left out 2 cases, each the image file of an earlier one: "
        "b (the image of a), d (the image of a)"]


def _msd_listing_one_image_twice(root, write_nifti, second_label: str | None, test=()):
    """An MSD root whose dataset.json lists ``x``'s image twice, with its own label file and
    then ``second_label`` (None: under ``test``, beside the ``test`` images given)."""
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (root / folder).mkdir(parents=True)
    write_nifti(root / "imagesTr" / "x.nii.gz", np.zeros((4, 4, 4)))
    for name in ("x", "y"):
        write_nifti(root / "labelsTr" / f"{name}.nii.gz", np.zeros((4, 4, 4)))
    for name in test:
        write_nifti(root / "imagesTs" / f"{name}.nii.gz", np.zeros((4, 4, 4)))
    training = [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}]
    if second_label:
        training.append({"image": "imagesTr/x.nii.gz", "label": f"labelsTr/{second_label}.nii.gz"})
    test = [f"./imagesTs/{name}.nii.gz" for name in test] + ([] if second_label else ["imagesTr/x.nii.gz"])
    (root / "dataset.json").write_text(json.dumps(
        {"labels": {"0": "background", "1": "liver"}, "training": training, "test": test}))
    return root


def test_an_msd_image_listed_twice_with_other_truth_is_refused(tmp_path, write_nifti):
    same = _msd_listing_one_image_twice(tmp_path / "same", write_nifti, "x")
    with pytest.warns(UnmaskWarning) as caught:
        assert [c.label.name for c in find_cases(same)] == ["x.nii.gz"]
    assert [str(w.message) for w in caught] == [
        f"{same.resolve()}: left out 1 case, each the image file of an earlier one: x listed twice"]
    other = _msd_listing_one_image_twice(tmp_path / "other", write_nifti, "y")
    with pytest.raises(DataValidationError) as refused:
        find_cases(other)
    labels = other.resolve() / "labelsTr"
    assert str(refused.value) == (
        f"{other.resolve()}: an image file listed twice with different truth: "
        f"{other.resolve()}/imagesTr/x.nii.gz: label {labels}/x.nii.gz vs {labels}/y.nii.gz")


def test_one_repeat_reads_alike_whole_and_by_split(tmp_path, write_nifti):
    """A folder read by split and whole says one repeat in the same words (the test
    images read in one reading and not the other do not change it)."""
    root = _msd_listing_one_image_twice(tmp_path / "msd", write_nifti, "x", test=("t",))
    lines = []
    for split in ("training", None):
        with pytest.warns(UnmaskWarning) as caught:
            find_cases(root, split=split)
        lines += [str(w.message) for w in caught]
    assert len(lines) == 2 and lines[0] == lines[1]


def test_an_msd_image_listed_for_training_and_test_is_refused_as_such(tmp_path, write_nifti):
    root = _msd_listing_one_image_twice(tmp_path / "msd", write_nifti, None, test=("t",))
    with pytest.raises(DataValidationError) as refused:
        find_cases(root)
    assert str(refused.value) == (
        f"{root.resolve()}: an image file listed twice with different truth: "
        f"{root.resolve()}/imagesTr/x.nii.gz: one listing is in the test list, which gives no truth")
    assert [c.name for c in find_cases(root, split="training")] == ["x"]
    # listed twice for training as well: that conflict is said as it is
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"].append({"image": "imagesTr/x.nii.gz", "label": "labelsTr/y.nii.gz"})
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataValidationError, match=r"x.nii.gz: label .*/x.nii.gz vs .*/y.nii.gz; "
                                                  r".*x.nii.gz: one listing is in the test list"):
        find_cases(root)
