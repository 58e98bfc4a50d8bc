"""``build_demo``: simulate drive logs, train the occlusion predictor, score, export replays.

Workspace layout (``docs/runs.md``): the replayed logs (with injected events) in
``WS/data/driving/``, the model's training logs (normal driving, other seeds) in
``WS/data/driving_train/``, the model in ``WS/models/driving/default/``, the run in
``WS/runs/driving/<run_id>/`` with ``recordings/<log_id>.rrd``.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from core.runs import new_run_id

from .model.predictor import OcclusionPredictor
from .schema import read_log
from .scoring.run import score_logs
from .sim.highway import HighwayConfig
from .sim.simulator import SimConfig, simulate_logs
from .sim.world import WorldConfig

SIZES = {
    # The alert threshold is cross-fitted (each training log scored by a state fitted on the
    # others), so the small demo trains on five logs: with three, each fold's state saw two
    # logs and it flagged few frames (10 of 130 anomalous). The tiny demo keeps three: it
    # is for tests, which need it fast, not for its alerts.
    # grid cells per side, sensor range (m), replayed logs, training logs, frames per log,
    # training epochs, steps per epoch (None = all), batch, network widths, history offsets,
    # frames explained with region SHAP and the SHAP evaluations each
    "tiny": dict(grid=64, range_m=20.0, logs=3, train_logs=3, frames=80, epochs=6, steps=None,
                 batch=16, widths=(8, 16, 32), history=(2, 5), top_frames=2, shap_evals=80),
    "small": dict(grid=128, range_m=35.0, logs=3, train_logs=5, frames=150, epochs=2, steps=15,
                  batch=32, widths=(16, 32, 64), history=(2, 5, 10), top_frames=3,
                  shap_evals=120),
}


def sim_config(size: str = "small", world: str = "town"):
    """The simulator settings of a demo size in a world (``"town"`` or ``"highway"``)."""
    spec = SIZES[size]
    if world == "highway":
        return HighwayConfig(grid_shape=(spec["grid"], spec["grid"]),
                             sensor_range_m=spec["range_m"] + 3.0, lanes=3 if spec["grid"] >= 128 else 2)
    world = WorldConfig(raster_m=0.25 if spec["grid"] >= 128 else 0.5)   # coarser town: faster
    return SimConfig(grid_shape=(spec["grid"], spec["grid"]), sensor_range_m=spec["range_m"],
                     world=world)


def build_demo(workspace: str | os.PathLike, size: str = "small", seed: int = 0) -> Path:
    """Build the driving part of a demo workspace; returns the run directory.

    Args:
        workspace: the workspace root (created if missing).
        size: ``"small"`` (128x128 grids, what ``unmask demo`` builds) or ``"tiny"``
            (64x64, seconds; for tests).
        seed: seeds the simulator and the model.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    spec = SIZES[size]
    workspace = Path(workspace)
    data = workspace / "data" / "driving"
    config = sim_config(size)
    simulate_logs(data, spec["logs"], spec["frames"], seed=seed, config=config)   # replayed
    # the model learns normal driving from other logs, without injected events
    paths = simulate_logs(workspace / "data" / "driving_train", spec["train_logs"], spec["frames"],
                          seed=seed + 1, config=replace(config, anomaly_interval_s=0.0))
    model_dir = workspace / "models" / "driving" / "default"
    predictor = OcclusionPredictor(history=spec["history"], widths=spec["widths"],
                                   epochs=spec["epochs"], max_steps_per_epoch=spec["steps"],
                                   batch_size=spec["batch"],
                                   random_state=seed, progress=False)
    predictor.fit([read_log(p) for p in paths]).save(model_dir)
    run_dir = workspace / "runs" / "driving" / new_run_id()
    return score_logs(model_dir, data, run_dir, top_frames=spec["top_frames"],
                      shap_evals=spec["shap_evals"], recordings=True)
