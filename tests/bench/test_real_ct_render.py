"""bench.experiments.medical_real_ct_render's own reading, on what it builds here (the real
scans of ../shared are not needed): GNU time's report, and where a label lies."""
import shutil
import subprocess

import numpy as np
import pytest

from bench.experiments.medical_real_ct_render import label_facts, map_facts, read_time_report


@pytest.mark.skipif(shutil.which("/usr/bin/time") is None, reason="GNU time is not installed")
@pytest.mark.parametrize("command, status", [("true", 0), ("false", 1)])
def test_time_report_of_a_real_command(tmp_path, command, status):
    report = tmp_path / "time.txt"
    subprocess.run(["/usr/bin/time", "-v", "-o", str(report), command], check=False)
    measured = read_time_report(report)
    assert measured["exit_status"] == status
    assert 0 <= measured["wall_s"] < 5 and 0 < measured["peak_rss_gb"] < 1


def test_a_report_without_its_fields_is_an_error_naming_the_file(tmp_path):
    report = tmp_path / "time.txt"
    report.write_text("Command being timed: \"true\"\n")
    with pytest.raises(ValueError, match="time.txt.*peak_rss_kb"):
        read_time_report(report)


def test_label_side_slices_and_tissue_in_ras():
    """RAS+: a higher first index is further to the patient's right."""
    ct = np.full((20, 10, 8), -1000.0, dtype=np.float32)
    ct[2:18, 2:8, :] = 40.0                 # the body: soft tissue
    ct[3:7, 3:6, 2:5] = 700.0               # bone on the patient's left
    labels = np.zeros(ct.shape, dtype=np.uint8)
    labels[12:16, 3:6, 4:7] = 1             # liver on the right, in soft tissue
    labels[3:7, 3:6, 2:5] = 2               # "spleen" on the bone
    labels[9:11, 3:6, 1] = 4                # "kidney_left": one slice thin, no interior
    facts = label_facts(ct, labels, {1: "liver", 2: "spleen", 3: "kidney_right"}, voxel_ml=0.027)
    assert facts["liver"]["z_range"] == [4, 6] and facts["liver"]["share_on_patient_right"] == 1.0
    assert facts["liver"]["share_soft tissue"] == 1.0 and facts["liver"]["hu_median"] == 40.0
    assert facts["spleen"]["share_on_patient_right"] == 0.0 and facts["spleen"]["share_bone or metal"] == 1.0
    assert facts["liver"]["by_slices"] == {"z 0-7": {"ml": 1.0, "hu_median": 40.0}}
    assert facts["kidney_right"] == {"voxels": 0}
    anomaly = np.where(labels == 2, 5.0, np.where(labels == 1, 1.0, 0.0)).astype(np.float32)
    where = map_facts(ct, labels, anomaly, {1: "liver", 2: "spleen", 3: "kidney_right", 4: "kidney_left"})
    assert where["by_tissue"]["bone or metal"]["share_of_top_1pct"] == 1.0
    assert where["by_organ"]["kidney_right"] == {"voxels": 0, "share_scored": None, "mean": None,
                                                 "share_of_top_1pct": 0.0, "border_mean": None,
                                                 "interior_mean": None}
    assert where["by_organ"]["kidney_left"]["border_mean"] == 0.0
    assert where["by_organ"]["kidney_left"]["interior_mean"] is None
    assert where["top_1pct_hu_p10_p50_p90"] == [700.0, 700.0, 700.0]
    assert where["by_organ"]["spleen"]["mean"] == 5.0 and where["by_organ"]["liver"]["mean"] == 1.0


def test_gas_inside_the_body_is_gas_of_the_body():
    """Gas is below the body's -500 HU outline too: holes of each axial slice are body."""
    ct = np.full((12, 12, 3), -1000.0, dtype=np.float32)
    ct[2:10, 2:10, :] = 40.0                # the body: 8 x 8 voxels a slice
    ct[4:7, 5:7, :] = -900.0                # bowel gas inside it: 3 x 2 a slice
    labels = np.zeros(ct.shape, dtype=np.uint8)
    anomaly = np.zeros(ct.shape, dtype=np.float32)
    where = map_facts(ct, labels, anomaly, {})
    assert where["by_tissue"]["gas"]["voxels"] == 18
    assert where["background (no organ label)"]["voxels"] == 8 * 8 * 3
