"""`medical infer --dicom-seg`: a DICOM SEG and Parametric Map over the input CT series."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

from core.cli import main

from medical.cli import medical
from medical.dicom import write_dicom_series
from medical.io import load_volume
from medical.phantom import simulate_case

SERIES_SHAPE = (32, 32, 8)


def _series(tmp_path):
    """An 8-slice 32 x 32 CT series cut from a tiny phantom; returns (dir, volume, uid)."""
    case = simulate_case(np.random.default_rng(11), (32, 32, 16))
    volume = np.round(case.image[:, :, 4:12]).astype(np.int16)
    spacing = np.abs(np.diag(case.affine)[:3])
    uid = pydicom.uid.generate_uid()
    directory = write_dicom_series(volume, spacing, tmp_path / "series", series_uid=uid)
    return directory, volume, uid


def _slice_uids(directory) -> dict[str, int]:
    """SOP instance UID -> slice index (the writer's ``slice_kkkk.dcm``)."""
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): int(p.stem[-4:])
            for p in sorted(directory.glob("slice_*.dcm"))}


def _frame_sources(ds, uids):
    """Per frame: (source slice index, segment number or None)."""
    out = []
    for item in ds.PerFrameFunctionalGroupsSequence:
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        segment = (int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
                   if "SegmentIdentificationSequence" in item else None)
        out.append((uids[str(source)], segment))
    return out


def test_dicom_seg_and_parametric_map_reference_the_series(tiny_models, tmp_path):
    _, model_dir, _, _ = tiny_models
    directory, volume, uid = _series(tmp_path)
    # the volume the model sees holds the series as written (so the NIfTI outputs index it)
    assert np.array_equal(load_volume(directory).array[0], volume)
    run = tmp_path / "run"
    result = CliRunner().invoke(medical, ["infer", "--model", str(model_dir), "--images",
                                          str(directory), "--out", str(run), "--dicom-seg",
                                          "--quiet"])
    assert result.exit_code == 0, result.output
    uids = _slice_uids(directory)
    seg_nifti = np.asarray(nib.load(str(run / "series_seg.nii.gz")).dataobj)
    assert seg_nifti.shape == SERIES_SHAPE and seg_nifti.max() >= 1

    seg = pydicom.dcmread(run / "series_seg.dcm")
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == uid
    assert {str(i.ReferencedSOPInstanceUID) for i in referenced.ReferencedInstanceSequence} == set(uids)
    codes = {int(s.SegmentNumber): (s.SegmentLabel, s.SegmentedPropertyTypeCodeSequence[0].CodeValue)
             for s in seg.SegmentSequence}
    assert codes[1] == ("liver", "10200004") and codes[2] == ("spleen", "78961009")
    frames = seg.pixel_array.reshape(-1, 32, 32)            # (frames, rows, columns)
    written = set()
    for frame, (k, segment) in zip(frames, _frame_sources(seg, uids)):
        expected = seg_nifti[:, :, k].T == segment           # rows along y, columns along x
        np.testing.assert_array_equal(frame.astype(bool), expected)
        written.add((k, segment))
    present = {(k, int(s)) for k in range(SERIES_SHAPE[2]) for s in np.unique(seg_nifti[:, :, k]) if s}
    assert present <= written                                 # no organ slice left out

    anomaly_nifti = np.asarray(nib.load(str(run / "series_anomaly.nii.gz")).dataobj)
    pm = pydicom.dcmread(run / "series_anomaly.dcm")
    assert pm.Modality == "OT" or pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"
    assert pm.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    pm_frames = pm.pixel_array.reshape(-1, 32, 32)
    sources = _frame_sources(pm, uids)
    assert sorted(k for k, _ in sources) == list(range(SERIES_SHAPE[2]))
    for frame, (k, _) in zip(pm_frames, sources):
        np.testing.assert_allclose(frame, anomaly_nifti[:, :, k].T, rtol=1e-6, atol=1e-7)


def test_dicom_seg_refuses_nifti_input_in_one_line(tiny_models, tiny_data, tmp_path, capsys):
    _, model_dir, _, _ = tiny_models
    image = sorted((tiny_data[1] / "imagesTr").glob("*.nii.gz"))[0]
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["medical", "infer", "--model", str(model_dir), "--images", str(image), "--out",
              str(run), "--dicom-seg", "--quiet"])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "NIfTI" in lines[0]
    assert str(image) in lines[0] and "--dicom-seg" in lines[0]
    assert not run.exists()
