"""core.names: the one check for names that become path segments."""
import doctest

import pytest

import core.names
from core.errors import DataValidationError
from core.names import MAX_NAME_LENGTH, check_name, is_safe_name


@pytest.mark.parametrize("name", ["log_000", "a", "Run-2026.01.01_x", "0", "x" * MAX_NAME_LENGTH,
                                  "patient_001.nii"])
def test_safe_names_pass_unchanged(name):
    assert is_safe_name(name)
    assert check_name(name, "somewhere") == name


@pytest.mark.parametrize("name", [
    "../../../x", "..", ".", ".hidden", "a/b", "a\\b", "/etc/passwd", "", "x" * (MAX_NAME_LENGTH + 1),
    "log 1", "log\n1", "log_1\n", "naïve", "a:b", "C:", "a\x00b", None, 3, b"log"])
def test_unsafe_names_are_refused_in_one_line(name):
    assert not is_safe_name(name)
    with pytest.raises(DataValidationError) as caught:
        check_name(name, "logs/a.parquet: frame 0, column 'log_id'")
    message = str(caught.value)
    assert message.startswith("logs/a.parquet: frame 0, column 'log_id': ")
    assert "\n" not in message and len(message) < 400
    assert "is not a safe name" in message


def test_long_values_are_cut_in_the_message():
    with pytest.raises(DataValidationError) as caught:
        check_name("../" * 10_000, "option --name")
    assert len(str(caught.value)) < 400 and "'../../" in str(caught.value)


def test_docstring_example():
    assert doctest.testmod(core.names).failed == 0
