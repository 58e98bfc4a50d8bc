"""Fixtures for the driving tests: tiny simulated logs and one tiny trained workspace."""
from dataclasses import replace

import numpy as np
import pytest

from driving.demo import build_demo, sim_config
from driving.model.predictor import OcclusionPredictor
from driving.schema import DriveLog, LogMeta, read_log
from driving.sim.simulator import simulate_logs


@pytest.fixture
def small_log() -> DriveLog:
    """A hand-made 3-frame log on an 8x6 grid."""
    meta = LogMeta(grid_shape=(8, 6), ego_cell=(5, 3))
    t, (h, w) = 3, meta.grid_shape
    truth = np.ones((t, h, w), np.uint8)
    truth[:, 0, :] = 4
    visible = np.ones((t, h, w), bool)
    visible[:, :2, :2] = False
    semantic = np.where(visible, truth, 255).astype(np.uint8)
    return DriveLog(log_id="tiny", meta=meta, frame=np.arange(t), timestamp=np.arange(t) * 0.1,
                    ego_x=np.arange(t, dtype=float), ego_y=np.zeros(t), ego_yaw=np.zeros(t),
                    ego_speed=np.full(t, 10.0), semantic=semantic, visible=visible,
                    semantic_true=truth, anomaly=np.array([False, True, False]),
                    anomaly_kind=[None, "debris", None])


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """``build_demo(size="tiny")``: logs, a trained model and a scored run (built once)."""

    workspace = tmp_path_factory.mktemp("driving_ws")
    run_dir = build_demo(workspace, size="tiny", seed=0)
    return workspace, run_dir


@pytest.fixture(scope="session")
def demo_model_dir(demo_run):
    """The tiny demo's trained model bundle (read it, never change it: tests share it)."""
    workspace, _ = demo_run
    return workspace / "models" / "driving" / "default"


@pytest.fixture(scope="session")
def load_demo_predictor(demo_model_dir):
    """``load_demo_predictor()``: a fresh copy of the tiny demo's predictor, without a
    progress bar, for a test to recalibrate or change."""
    def load() -> OcclusionPredictor:
        predictor = OcclusionPredictor.load(demo_model_dir)
        predictor.progress = False
        return predictor
    return load


@pytest.fixture(scope="session")
def normal_logs(tmp_path_factory):
    """``normal_logs(n, frames, seed)``: ``n`` normal drives (no injected events) of the tiny
    demo's town, ``frames`` frames each, simulated from ``seed`` (as ``simulate_logs``)."""
    config = replace(sim_config("tiny"), anomaly_interval_s=0.0)

    def simulate(n: int, frames: int, seed: int) -> list[DriveLog]:
        root = tmp_path_factory.mktemp(f"normal_logs_{seed}")
        return [read_log(p) for p in simulate_logs(root, n, frames, seed=seed, config=config)]
    return simulate
