"""Readers of files anyone can hand us (run manifests, bundle configs, review stores): on
any content they return or raise unmask's one-line error, never another exception."""
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import BundleError, DataValidationError
from core.bundle import load_bundle
from core.review_store import ReviewStore
from core.runs import REQUIRED, load_manifest

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=6), max_leaves=20)
# Objects that look like the real thing: the documented keys with values of any type.
MANIFEST_LIKE = st.fixed_dictionaries({}, optional={key: JSON for key in REQUIRED})
BUNDLE_LIKE = st.fixed_dictionaries({}, optional={"format_version": st.integers(-1, 3) | JSON,
                                                  "kind": st.just("tabular") | JSON,
                                                  "weights": JSON | st.fixed_dictionaries(
                                                      {}, optional={"file": JSON, "sha256": JSON}),
                                                  "config": JSON})
CONTENT = (st.binary(max_size=300)
           | JSON.map(lambda v: json.dumps(v).encode())
           | MANIFEST_LIKE.map(lambda v: json.dumps(v).encode())
           | BUNDLE_LIKE.map(lambda v: json.dumps(v).encode())
           | st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n))   # deep nesting


@SETTINGS
@given(content=CONTENT)
def test_load_manifest_on_anything(tmp_path, content):
    (tmp_path / "manifest.json").write_bytes(content)
    try:
        manifest = load_manifest(tmp_path)
    except DataValidationError as err:
        assert "\n" not in str(err) and "manifest.json" in str(err)
        return
    assert all(isinstance(manifest[key], kind) for key, kind in REQUIRED.items())


@SETTINGS
@given(content=CONTENT)
def test_load_bundle_on_anything(tmp_path, content):
    (tmp_path / "config.json").write_bytes(content)
    (tmp_path / "weights.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(BundleError):
        load_bundle(tmp_path, kind="tabular")


@SETTINGS
@given(content=st.binary(min_size=1, max_size=2000)
       | st.binary(max_size=2000).map(lambda tail: b"SQLite format 3\x00" + tail))
def test_review_store_on_anything(tmp_path, content):
    path = tmp_path / "reviews.sqlite"
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"reviews.sqlite{suffix}").unlink(missing_ok=True)
    path.write_bytes(content)
    with pytest.raises(DataValidationError, match="reviews.sqlite"):
        ReviewStore(path).verify()
    try:  # SQLite takes a file shorter than its header for an empty database
        assert ReviewStore(path).history().empty
    except DataValidationError as err:
        assert "reviews.sqlite: not a review store" in str(err)
