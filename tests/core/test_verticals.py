"""Vertical specs: core knows verticals only through the ``unmask.verticals`` entry points."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core import verticals
from core.errors import DataValidationError
from core.review_store import ReviewStore, decisions
from core.runs import create_run, read_items

ROOT = Path(__file__).resolve().parents[2]


def test_every_vertical_publishes_its_spec():
    assert verticals.names() == ("finance", "medical", "driving")
    assert decisions() == {("finance", "disposition"): ("fraud", "legitimate", "needs_information"),
                           ("medical", "review"): ("accept", "reject", "needs_correction"),
                           ("driving", "bookmark"): ("bookmark",)}
    assert verticals.get("driving").palette["road"] == (110, 110, 120)
    with pytest.raises(DataValidationError, match="unknown vertical 'space'"):
        verticals.get("space")


def test_the_store_takes_the_specs_vocabulary(tmp_path):
    store = ReviewStore(tmp_path / "reviews.sqlite")
    store.record("medical", "review", "case-1", "needs_correction", reviewer="ana")
    with pytest.raises(DataValidationError, match="not one of"):
        store.record("medical", "review", "case-1", "fraud", reviewer="ana")


def test_listing_verticals_loads_no_heavy_dependency():
    code = ("import sys; from core import verticals; "
            "[s.demo_description for s in verticals.specs()]; "
            "print(sorted(m for m in ('torch', 'duckdb', 'monai', 'streamlit', 'click', "
            "'finance.demo', 'finance.cli') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_read_items_reads_the_specs_table_inside_the_run(tmp_path):
    run_dir = tmp_path / "runs" / "driving" / "r1"
    with create_run(run_dir, "driving") as run:
        pd.DataFrame({"frame": [0, 1], "score": [0.5, 2.0]}).to_parquet(
            run.path("frames", "frames.parquet"))
    assert read_items(run_dir)["score"].tolist() == [0.5, 2.0]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["outputs"]["frames"] = "../../../../secret.parquet"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataValidationError, match="points outside the run"):
        read_items(run_dir)


def test_core_spells_no_vertical_name():
    """Outside docstrings, no string in core is a vertical's name."""
    found = []
    for path in (ROOT / "core").rglob("*.py"):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)}
        found += [f"{path.name}:{node.lineno}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and id(node) not in docstrings
                  and node.value in ("finance", "medical", "driving")]
    assert found == []
