"""The pretext experiments' shared harness: pretraining on the first cases of a larger folder
with snapshots, post-decision options refused before the decision, the dose-response arithmetic."""
import json

import pytest

from bench.experiments import medical_pretrain_scale
from bench.experiments.medical_remap_pretext import pretrain_step
from medical.anomaly import AnomalyScorer
from medical.phantom import simulate_dataset


def test_pretrain_step_reads_the_first_unlabelled_cases_and_writes_snapshots(tmp_path):
    simulate_dataset(tmp_path / "data" / "unlabelled", 6, seed=100, shape=(32, 32, 16))
    settings = ["--preset", "tiny", "--shape", "32,32,16", "--unlabelled", "5",
                "--pretrain-epochs", "2", "--pretrain-samples", "2"]
    step = pretrain_step(tmp_path, settings, "inpaint", "named", (1,))
    assert step["epochs"] == 2
    assert (tmp_path / "snapshots-named" / "epoch-1.safetensors").is_file()
    training = AnomalyScorer.load(tmp_path / "pretrained-named").provenance_["training"]
    used = sorted(training["cases"] + training["calibration_cases"])
    assert used == [f"case_{i:03d}" for i in range(5)]     # the sixth case is left out


def test_a_later_option_is_refused_before_the_decision_and_the_held_out_set(tmp_path):
    out = tmp_path / "result.json"
    argv = ["--work", str(tmp_path), "--out", str(out), "--snapshots"]
    with pytest.raises(SystemExit):                      # no results file yet
        medical_pretrain_scale.main(argv)
    out.write_text(json.dumps({"decision": {}, "seconds": {}, "steps": {}}))
    with pytest.raises(SystemExit, match="--heldout first"):
        medical_pretrain_scale.main(argv)


def test_two_steps_in_one_command_are_refused(tmp_path, capsys):
    """``--heldout --snapshots`` ran the snapshots alone; it is refused, naming both."""
    out = tmp_path / "result.json"
    out.write_text(json.dumps({"decision": {}, "seconds": {}, "steps": {}}))
    with pytest.raises(SystemExit) as stop:
        medical_pretrain_scale.main(["--work", str(tmp_path), "--out", str(out), "--heldout",
                                     "--snapshots"])
    assert stop.value.code == 2
    assert "--heldout and --snapshots: one step at a time" in capsys.readouterr().err
    assert json.loads(out.read_text()) == {"decision": {}, "seconds": {}, "steps": {}}


def test_dose_row_gain_and_share_against_scratch():
    steps = {f"arm-2-{r}": {"heldout_mean_dice": value} for r, value in enumerate([0.5, 0.6, 0.7, 0.6])}
    scratch = {"2": {"scratch": {"heldout_mean_dice": 0.5, "subsets": [0.0] * 4}},
               "8": {"scratch": {"heldout_mean_dice": 0.9}}}
    row = medical_pretrain_scale.dose_row(steps, "arm", scratch, "heldout_")
    assert row["mean_dice"] == pytest.approx(0.6)
    assert row["gain_points"] == pytest.approx(10.0)
    assert row["share_closed"] == pytest.approx(0.25)
