"""The step-out experiments' command lines: a stage given the wrong names is a usage error
(exit 2, a line saying what it takes), not an IndexError or KeyError deep in a run."""
import pytest

from bench.experiments import driving_step_out, driving_step_out_confirm, driving_step_out_enriched


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
