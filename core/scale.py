"""Batch scoring at scale: one pure batch function, two engines.

A scorer is a pure function ``pyarrow.Table -> pyarrow.Table`` built once per worker by a
picklable zero-argument factory (e.g. ``functools.partial(load_batch_scorer, model_dir)``),
so the same code runs

* ``engine="local"``: streamed over a Parquet dataset in record batches (peak memory
  bounded by the batch size, independent of the input size), and
* ``engine="ray"``: Ray Data ``read_parquet`` -> ``map_batches`` over an actor pool that
  holds the model -> ``write_parquet``, on a local Ray or an existing cluster (``address``).

Output is a directory of Parquet files, written atomically; read it with
:func:`read_output` or ``pyarrow.dataset.dataset(path)``. The local engine keeps the input's
row order; Ray writes one file per block, whose order is not guaranteed, so scorers carry
a key column (finance's ``_row``, transaction ids) and callers join on it.

Inputs that are not rows (CT volumes, drive logs) go through :func:`map_items`: the batch
is a list of items (file paths), the scorer returns one result row per item, and the
results come back as one table (local loop, or Ray Data ``from_items`` -> actor pool).

Example:
    >>> map_parquet("features.parquet", "scores", partial(load_batch_scorer, "model"),
    ...             engine="ray")                                   # doctest: +SKIP
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .errors import DataValidationError
from .io import atomic_path
from .runtime import configure_threads, usable_cpus

BatchFn = Callable[["object"], "object"]  # pyarrow.Table -> pyarrow.Table
ENGINES = ("local", "ray")


def _check_input(input_path) -> None:
    if not Path(input_path).exists():
        raise DataValidationError(f"{input_path}: no such Parquet file or directory")


def _map_local(input_path, out_dir: Path, make_scorer, batch_size: int, columns) -> int:
    import pyarrow as pa
    import pyarrow.dataset as pads
    import pyarrow.parquet as pq

    scorer = make_scorer()
    dataset = pads.dataset(str(input_path), format="parquet")
    # Bounded memory, whatever the input size (measured by bench/scale.py): read ahead one
    # batch (the default buffers up to 16 batches x 4 files); no pre-buffering (its cache
    # keeps every byte read from a file until the scan ends: 2.2 GiB at 10 M rows); decode
    # on this thread (batches decoded on pool threads and freed here kept ~0.5 GiB more
    # resident at 10 M rows than at 1 M). The scorer uses the cores.
    no_cache = pads.ParquetFragmentScanOptions(pre_buffer=False)
    writer, n_rows = None, 0
    try:
        for batch in dataset.to_batches(columns=columns, batch_size=batch_size, batch_readahead=1,
                                        fragment_readahead=1, fragment_scan_options=no_cache,
                                        use_threads=False):
            if batch.num_rows == 0:
                continue
            result = scorer(pa.Table.from_batches([batch]))
            if writer is None:
                writer = pq.ParquetWriter(str(out_dir / "part-00000.parquet"), result.schema)
            writer.write_table(result)
            n_rows += result.num_rows
    finally:
        if writer is not None:
            writer.close()
    return n_rows


class _ScorerActor:
    """Ray actor holding one scorer (the model is loaded once per actor)."""

    def __init__(self, make_scorer, num_threads: int):
        configure_threads(num_threads)
        self.scorer = make_scorer()

    def __call__(self, batch):
        return self.scorer(batch)


def init_ray(address: str | None = None, num_cpus: int | None = None):
    """Join a cluster at ``address`` or start a small local Ray (no dashboard) over the CPUs this
    process may use (its affinity and cgroup quota, not the machine's count)."""
    import ray

    if not ray.is_initialized():
        kwargs = dict(include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
                      configure_logging=False)
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus or usable_cpus(), **kwargs)
    return ray


def _map_with_actors(make_dataset, actor_cls, make_scorer, batch_size: int, address: str | None,
                     num_actors: int | None, actor_cpus: float, max_actors: int | None = None):
    """Ray Data: ``make_dataset(ray.data)`` -> ``map_batches`` over a pool of ``actor_cls``."""
    ray = init_ray(address)
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    if num_actors is None:
        # Leave room for read/write tasks: full-CPU actors on a 2-CPU machine starve the
        # read tasks and the pipeline stalls.
        total_cpus = int(ray.cluster_resources().get("CPU", 1))
        num_actors = max(1, int((total_cpus - 1) / actor_cpus))
        if max_actors is not None:
            num_actors = min(num_actors, max_actors)
    return ray, make_dataset(ray.data).map_batches(
        actor_cls, fn_constructor_args=(make_scorer, max(1, int(actor_cpus))),
        batch_format="pyarrow", batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=num_actors), num_cpus=actor_cpus)


def _map_ray(input_path, out_dir: Path, make_scorer, batch_size: int, columns,
             address: str | None, num_actors: int | None, actor_cpus: float) -> int:
    _, scored = _map_with_actors(
        lambda data: data.read_parquet(str(input_path), columns=columns), _ScorerActor,
        make_scorer, batch_size, address, num_actors, actor_cpus)
    scored.write_parquet(str(out_dir))
    return int(sum(f.metadata.num_rows for f in _parquet_files(out_dir)))


def _parquet_files(directory: Path):
    import pyarrow.parquet as pq

    return [pq.ParquetFile(p) for p in sorted(Path(directory).glob("*.parquet"))]


def map_parquet(input_path, output_path, make_scorer: Callable[[], BatchFn], engine: str = "local",
                batch_size: int = 65_536, columns: list[str] | None = None,
                address: str | None = None, num_actors: int | None = None,
                actor_cpus: float = 1.0) -> Path:
    """Apply a batch scorer over a Parquet dataset; write a Parquet directory atomically.

    Args:
        input_path: Parquet file or directory.
        output_path: output directory (replaced atomically on success).
        make_scorer: picklable zero-arg factory returning ``Table -> Table``.
        engine: ``"local"`` (streaming, bounded memory) or ``"ray"``.
        batch_size: rows per batch.
        columns: input columns to read (default: all).
        address: Ray cluster address (``"auto"`` or ``"ray://host:10001"``); local Ray if None.
        num_actors: Ray actor-pool size (default: leaves one CPU for reading).
        actor_cpus: CPUs each Ray actor requests (and torch threads it uses).

    Returns:
        ``output_path``.
    """
    if engine not in ENGINES:
        raise DataValidationError(f"engine must be one of {ENGINES}, got {engine!r}")
    if batch_size < 1:
        raise DataValidationError(f"batch_size must be >= 1, got {batch_size}")
    _check_input(input_path)
    output_path = Path(output_path)
    with atomic_path(output_path) as tmp:
        tmp.mkdir()
        if engine == "local":
            _map_local(input_path, tmp, make_scorer, batch_size, columns)
        else:
            _map_ray(input_path, tmp, make_scorer, batch_size, columns, address, num_actors,
                     actor_cpus)
    return output_path


def map_items(items, make_scorer: Callable[[], Callable[[list], "object"]], engine: str = "local",
              batch_size: int = 1, address: str | None = None, num_actors: int | None = None,
              actor_cpus: float = 1.0):
    """Apply a batch scorer to a list of items (e.g. volume or log paths); return a table.

    Args:
        items: the inputs, picklable (usually file paths readable from every worker).
        make_scorer: picklable zero-arg factory returning ``scorer(list_of_items) -> table``
            (a ``pyarrow.Table`` or ``pandas.DataFrame``, one row per item).
        engine: ``"local"`` or ``"ray"``.
        batch_size: items per scorer call.
        address, num_actors, actor_cpus: as in :func:`map_parquet`.

    Returns:
        A ``pyarrow.Table`` of all result rows, in input order.
    """
    import pyarrow as pa

    if engine not in ENGINES:
        raise DataValidationError(f"engine must be one of {ENGINES}, got {engine!r}")
    items = [str(i) if isinstance(i, os.PathLike) else i for i in items]
    if not items:
        raise DataValidationError("no items to score")
    if engine == "local":
        scorer = make_scorer()
        parts = [_as_arrow(scorer(items[i:i + batch_size])) for i in range(0, len(items), batch_size)]
        return pa.concat_tables(parts, promote_options="default")
    ray, scored = _map_with_actors(lambda data: data.from_items([{"item": i} for i in items]),
                                   _ItemActor, make_scorer, batch_size, address, num_actors,
                                   actor_cpus, max_actors=len(items))
    return pa.concat_tables([t for t in ray.get(scored.to_arrow_refs()) if t.num_rows],
                            promote_options="default")


def _as_arrow(result):
    import pyarrow as pa

    return result if isinstance(result, pa.Table) else pa.Table.from_pandas(result, preserve_index=False)


class _ItemActor(_ScorerActor):
    """Ray actor: a batch of ``{"item": ...}`` rows -> the scorer's result rows."""

    def __call__(self, batch):
        return _as_arrow(self.scorer(batch.column("item").to_pylist()))


def read_output(path):
    """Read a ``map_parquet`` output directory into one ``pyarrow.Table`` (row order kept)."""
    import pyarrow as pa

    files = _parquet_files(Path(path))
    if not files:
        raise DataValidationError(f"{path}: no Parquet parts")
    return pa.concat_tables([f.read() for f in files])
