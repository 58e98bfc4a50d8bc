"""core.scale.map_parquet: local streaming and Ray Data give the same results."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.errors import DataValidationError
from core.scale import map_parquet, read_output


def _make_scorer():
    weights = np.array([0.5, -2.0, 3.0])  # stands in for a model loaded once per worker

    def score(table: pa.Table) -> pa.Table:
        x = np.column_stack([table.column(c).to_numpy() for c in ("a", "b", "c")])
        return pa.table({"id": table.column("id"), "score": pa.array(x @ weights)})

    return score


@pytest.fixture
def parquet_input(tmp_path):
    rng = np.random.default_rng(0)
    n = 50_000
    table = pa.table({"id": np.arange(n), "a": rng.normal(size=n), "b": rng.normal(size=n),
                      "c": rng.normal(size=n), "unused": rng.normal(size=n)})
    path = tmp_path / "in.parquet"
    pq.write_table(table, path, row_group_size=7_000)
    return path, table


def test_local_engine_streams_every_row_in_order(parquet_input, tmp_path):
    path, table = parquet_input
    out = map_parquet(path, tmp_path / "out", _make_scorer, batch_size=4_096)
    result = read_output(out)
    assert result.column("id").to_pylist() == table.column("id").to_pylist()
    expected = _make_scorer()(table).column("score").to_numpy()
    np.testing.assert_allclose(result.column("score").to_numpy(), expected)


@pytest.mark.slow
def test_ray_engine_matches_local(parquet_input, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import sys

    import ray.cloudpickle

    # Ray workers cannot import this test module; ship the scorer factory by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    path, _ = parquet_input
    local = read_output(map_parquet(path, tmp_path / "local", _make_scorer, batch_size=8_192))
    distributed = read_output(map_parquet(path, tmp_path / "ray", _make_scorer, engine="ray",
                                          batch_size=8_192))
    local_sorted = local.sort_by("id")
    ray_sorted = distributed.sort_by("id")
    assert ray_sorted.num_rows == local_sorted.num_rows
    np.testing.assert_array_equal(ray_sorted.column("id").to_numpy(), local_sorted.column("id").to_numpy())
    np.testing.assert_array_equal(ray_sorted.column("score").to_numpy(),
                                  local_sorted.column("score").to_numpy())


def test_failed_scoring_leaves_previous_output_intact(parquet_input, tmp_path):
    path, _ = parquet_input
    out = map_parquet(path, tmp_path / "out", _make_scorer)
    before = read_output(out)

    def broken():
        def score(table):
            raise RuntimeError("model exploded")
        return score

    with pytest.raises(RuntimeError, match="model exploded"):
        map_parquet(path, tmp_path / "out", broken)
    assert read_output(out).equals(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "out"]


def test_bad_arguments_are_named(parquet_input, tmp_path):
    path, _ = parquet_input
    with pytest.raises(DataValidationError, match="engine must be one of"):
        map_parquet(path, tmp_path / "o", _make_scorer, engine="spark")
    with pytest.raises(DataValidationError, match="missing.parquet: no such Parquet"):
        map_parquet(tmp_path / "missing.parquet", tmp_path / "o", _make_scorer)


def _make_item_scorer():
    import pandas as pd

    def score(paths: list) -> "pd.DataFrame":  # one result row per item, e.g. per volume
        return pd.DataFrame({"item": paths, "length": [len(p) for p in paths]})

    return score


def test_map_items_local_keeps_order_and_batches(tmp_path):
    from core.scale import map_items

    items = [f"case-{i:0{1 + i % 3}d}.nii.gz" for i in range(7)]
    table = map_items(items, _make_item_scorer, batch_size=3)
    assert table.column("item").to_pylist() == items
    assert table.column("length").to_pylist() == [len(i) for i in items]
    with pytest.raises(DataValidationError, match="no items"):
        map_items([], _make_item_scorer)


@pytest.mark.slow
def test_map_items_ray_matches_local():
    pytest.importorskip("ray")
    import sys

    import ray.cloudpickle

    from core.scale import map_items

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    items = [f"log-{i}.parquet" * (1 + i % 2) for i in range(5)]
    local = map_items(items, _make_item_scorer, batch_size=2)
    remote = map_items(items, _make_item_scorer, engine="ray", batch_size=2)
    assert remote.to_pylist() == local.to_pylist()
