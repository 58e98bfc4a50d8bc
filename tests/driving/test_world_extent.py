"""Every world raster sized from a log's poses refuses an absurd extent with one line
(``driving.model.baselines.MAX_WORLD_CELLS``) before allocating it."""
import numpy as np
import pytest

from core.errors import DataValidationError
from driving.model.baselines import PersistenceBaseline, world_memory
from driving.model.memory_gate import memory_trace
from driving.schema import ROAD, DriveLog, LogMeta
from driving.scoring.decision import RoadBelief

EXTENT = r"log 'far-apart': a world map spanning 10000\.0 km x 10000\.0 km at 0\.5 m per cell"


def _far_apart_log() -> DriveLog:
    """Three frames whose poses lie 10 000 km apart (each a valid coordinate): a world
    raster over them would be 2e7 x 2e7 cells, hundreds of TiB."""
    meta = LogMeta(grid_shape=(8, 6), resolution_m=0.5, ego_cell=(6, 3))
    t, (h, w) = 3, meta.grid_shape
    semantic = np.full((t, h, w), ROAD, np.uint8)
    return DriveLog(log_id="far-apart", meta=meta, frame=np.arange(t),
                    timestamp=np.arange(t) * 0.1, ego_x=np.array([0.0, 1e7, 0.0]),
                    ego_y=np.array([0.0, 1e7, 0.0]), ego_yaw=np.zeros(t),
                    ego_speed=np.full(t, 10.0), semantic=semantic, visible=np.ones((t, h, w), bool))


@pytest.mark.parametrize("build", [
    world_memory,                                            # the layout memory / input channel
    PersistenceBaseline(world_map=True).predict_proba,       # the world-map baseline
    memory_trace,                                            # memory gate fitting + vehicle tracks
    RoadBelief,                                              # scoring's world-fixed road belief
], ids=["world_memory", "persistence_world_map", "memory_trace", "road_belief"])
def test_an_absurd_extent_is_refused_with_one_line(build):
    with pytest.raises(DataValidationError, match=EXTENT) as err:
        build(_far_apart_log())
    assert "\n" not in str(err.value)
