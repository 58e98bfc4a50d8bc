"""Every experiment under bench/experiments imports: a helper it names that moved or was
removed fails here, not only when someone reruns the experiment months later."""
import importlib
from pathlib import Path

import pytest

EXPERIMENTS = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "bench" / "experiments").glob("*.py")
                     if p.stem != "__init__")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_imports(name):
    module = importlib.import_module(f"bench.experiments.{name}")
    assert module.__doc__, f"{name} says what it measures in its docstring"
