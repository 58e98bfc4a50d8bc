"""The step-out experiments' command lines: a stage given the wrong names is a usage error
(exit 2, a line saying what it takes), not an IndexError or KeyError deep in a run."""
import pytest

from bench.experiments import driving_conflict, driving_step_out, driving_step_out_confirm, driving_step_out_enriched


@pytest.mark.parametrize("argv, message", [
    (["--work", "w", "candidate"], "takes NAME, got 0"),
    (["--work", "w", "heldout", "product"], "takes NAME COLUMN, got 1"),
    (["--work", "w", "candidate", "nope"], "NAME 'nope': one of product"),
    (["--work", "w", "heldout", "product", "nope"], "COLUMN 'nope': one of heldout, heldout_native"),
    (["decide", "product"], "takes no names, got 1"),
])
def test_step_out_names(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        driving_step_out.main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("module, stage", [(driving_step_out_enriched, "score"), (driving_step_out_confirm, "confirm")])
def test_a_stage_without_its_name(module, stage, capsys):
    with pytest.raises(SystemExit) as stop:
        module.main(["--work", "w", stage])
    assert stop.value.code == 2 and f"stage {stage} needs NAME" in capsys.readouterr().err


@pytest.mark.parametrize("module, argv, message", [
    (driving_conflict, ["score"], "stage score needs NAME: one of product, pedestrian_conflict_channel"),
    (driving_conflict, ["columns", "nope"], "stage columns needs NAME: one of tuned, "),
    (driving_conflict, ["design", "tuned"], "stage design takes no NAME, got 'tuned'"),
    (driving_step_out_enriched, ["highway", "product"], "stage highway takes no NAME, got 'product'"),
    (driving_step_out_confirm, ["confirm", "nope"], "stage confirm needs NAME: one of "),
])
def test_a_stage_given_a_name_it_does_not_take(module, argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        module.main(["--work", "w", *argv])
    assert stop.value.code == 2 and message in capsys.readouterr().err
