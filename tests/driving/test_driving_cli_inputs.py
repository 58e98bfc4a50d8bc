"""`unmask driving` given what a user plausibly gets wrong: a reused output folder, logs
without simulator truth, the wrong log for a run. Each stops in one line that says what to do."""
from click.testing import CliRunner, Result

from core.cli import cli


def simulate(out, *options) -> Result:
    return CliRunner().invoke(cli, ["driving", "simulate", "--frames", "6", "--grid", "64",
                                    "--out", str(out), *options])


def test_simulate_again_replaces_the_folder_so_no_stale_log_of_another_world_stays(tmp_path):
    out = tmp_path / "normal"
    assert simulate(out, "--logs", "3").exit_code == 0
    result = simulate(out, "--logs", "1", "--world", "highway")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote 1 log to {out}"
    assert sorted(p.name for p in out.glob("*.parquet")) == ["log_000.parquet"]


def test_simulate_refuses_a_folder_it_did_not_write(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    result = simulate(out, "--logs", "1")
    assert result.exit_code != 0
    assert "a folder unmask did not write" in str(result.exception)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
