"""Counts with their noun in the right number, and the CLI lines that use them."""
from click.testing import CliRunner

from core.text import counted
from medical.cli import medical


def test_counted_says_one_noun_and_many_nouns():
    assert [counted(n, "case") for n in (0, 1, 2)] == ["0 cases", "1 case", "2 cases"]
    assert counted(1, "normal score") == "1 normal score"
    assert counted(2, "analysis", "analyses") == "2 analyses"


def test_medical_simulate_says_one_case(tmp_path):
    out = tmp_path / "ct"
    result = CliRunner().invoke(medical, ["simulate", "--cases", "1", "--out", str(out),
                                          "--shape", "32,32,16"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"wrote 1 case to {out}"
