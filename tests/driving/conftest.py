"""Fixtures for the driving tests: tiny simulated logs and one tiny trained workspace."""
import numpy as np
import pytest

from driving.demo import build_demo
from driving.schema import DriveLog, LogMeta


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
