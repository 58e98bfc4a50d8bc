"""Fixtures: a small synthetic workspace in docs/runs.md's layout (no models needed)."""
import shutil

import pytest

from dashboard_fixtures import write_workspace


@pytest.fixture(scope="session")
def synthetic_workspace(tmp_path_factory):
    """One run per vertical, built once per session; tests must not write into it."""
    ws = tmp_path_factory.mktemp("ws") / "workspace"
    write_workspace(ws)
    return ws


@pytest.fixture
def workspace(synthetic_workspace, tmp_path):
    """A private copy of the synthetic workspace (its own review store)."""
    ws = tmp_path / "workspace"
    shutil.copytree(synthetic_workspace, ws)
    return ws
