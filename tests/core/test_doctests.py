"""The runnable examples in the core modules' docstrings stay true."""
import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["core.tabular.detector", "core.tabular.network",
                                  "core.tabular.learned_masks", "core.masking", "core.jit"])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
