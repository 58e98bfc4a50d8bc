"""Simulated driving logs for the benchmark and its experiments: simulated into a folder and
read back, or read back from a folder that already holds exactly them (``--log-dir``)."""
from __future__ import annotations

import json
from pathlib import Path

from core.io import write_text_atomic
from driving.schema import read_log
from driving.sim.simulator import simulate_logs

MARKER = "simulation.json"       # what a kept folder's logs were simulated with, written last


def simulated_logs(out_dir: Path, n_logs: int, frames: int, seed: int, config) -> list:
    """``n_logs`` logs of ``frames`` frames, simulated into ``out_dir`` and read back (the
    experiments under bench/experiments simulate their logs with it too)."""
    return [read_log(p) for p in simulate_logs(out_dir, n_logs, frames, seed=seed,
                                               config=config)]


def kept_logs(out_dir: Path, n_logs: int, frames: int, seed: int, config) -> list:
    """:func:`simulated_logs`, read back instead when ``out_dir`` already holds them.

    The folder is reused when its marker (``simulation.json``) names the same seed, frames
    and configuration and at least ``n_logs`` logs (a log's seed is ``seed * 1000 + i``, so the
    first ``n_logs`` of a larger set are the same logs). Otherwise the marker and every
    ``log_*.parquet`` are removed (a folder without unmask's own marker is replaced only when
    empty), ``simulate_logs`` publishes the new set in their place, whole, and the marker is
    written only once all logs are there: a folder whose simulation stopped half-way, or that
    holds logs of another setting, is never read back.

    Args:
        out_dir: the folder of the set's logs (created if missing).
        n_logs: how many logs.
        frames: frames per log.
        seed: the set's seed.
        config: the simulator configuration (its ``repr`` goes into the marker).

    Returns:
        The ``n_logs`` logs, in order.
    """
    out_dir = Path(out_dir)
    marker = out_dir / MARKER
    spec = {"seed": seed, "frames": frames, "config": repr(config)}
    if marker.exists():
        kept = json.loads(marker.read_text())
        if kept.pop("n_logs", -1) >= n_logs and kept == spec:
            return [read_log(out_dir / f"log_{i:03d}.parquet") for i in range(n_logs)]
    marker.unlink(missing_ok=True)              # first: a crash below leaves no marker
    for stale in out_dir.glob("log_*.parquet"):
        stale.unlink()
    logs = simulated_logs(out_dir, n_logs, frames, seed, config)
    write_text_atomic(marker, json.dumps({**spec, "n_logs": n_logs}))
    return logs
