"""World-fixed memory, the layout fallback and object-centred masks."""
import numpy as np
import pytest

from core.errors import DataValidationError
from driving.evaluate import HiddenCellAccumulator
from driving.model.baselines import PersistenceBaseline, persistence_memory, world_memory
from driving.model.masking import object_regions
from driving.model.predictor import OcclusionPredictor, apply_layout_memory
from driving.schema import ROAD, SIDEWALK, VEHICLE, DriveLog, LogMeta, list_logs, read_log
from driving.scoring.surprise import OBJECT_MAPS, raw_maps, score_log


def _driving_log() -> DriveLog:
    """Ego drives 1 m forward per frame (2 rows); a sidewalk cell and a car, seen at t=0."""
    meta = LogMeta(grid_shape=(8, 6), resolution_m=0.5, ego_cell=(6, 3))
    t, (h, w) = 3, meta.grid_shape
    truth = np.full((t, h, w), ROAD, np.uint8)
    truth[0, 1, 1], truth[1, 3, 1], truth[2, 5, 1] = (SIDEWALK,) * 3   # static: 2 rows down a frame
    truth[0, 1, 4] = truth[1, 3, 4] = VEHICLE                          # a parked car
    visible = np.ones((t, h, w), bool)
    visible[1, 3, :] = visible[2, 5, :] = False                        # hidden later
    semantic = np.where(visible, truth, 255).astype(np.uint8)
    return DriveLog(log_id="drive", meta=meta, frame=np.arange(t), timestamp=np.arange(t) * 0.1,
                    ego_x=np.arange(t, dtype=float), ego_y=np.zeros(t), ego_yaw=np.zeros(t),
                    ego_speed=np.full(t, 10.0), semantic=semantic, visible=visible,
                    semantic_true=truth)


def test_world_memory_keeps_static_cells_in_place():
    log = _driving_log()
    after = world_memory(log, before=False, layout_only=False)
    assert (after[log.visible] == log.semantic[log.visible]).all()
    assert after[1, 3, 1] == SIDEWALK and after[2, 5, 1] == SIDEWALK   # hidden, remembered
    assert after[1, 3, 4] == VEHICLE
    layout = world_memory(log, before=False)                          # objects are not kept
    assert layout[1, 3, 1] == SIDEWALK and layout[1, 3, 4] == 255        # under the car: unseen
    before = world_memory(log, before=True)
    assert (before[0] == 255).all()                                   # nothing seen before t=0
    assert before[1, 3, 1] == SIDEWALK
    np.testing.assert_array_equal(persistence_memory(log)[2], after[2])   # short drive: same
    probs = PersistenceBaseline(world_map=True).predict_proba(log)
    assert probs[2, SIDEWALK, 5, 1] == 1.0


@pytest.mark.parametrize("world_map", [False, True])
def test_persistence_reads_a_memory_given_as_its_own(world_map):
    """A caller that keeps the log's memory passes it (bench/experiments/driving_pedestrian_memory);
    the probabilities are those the baseline computes from it, and they come from it alone."""
    log = _driving_log()
    baseline = PersistenceBaseline(world_map=world_map)
    memory = world_memory(log, before=False, layout_only=False) if world_map else persistence_memory(log)
    assert np.array_equal(baseline.memory(log), memory)
    expected = baseline.predict_proba(log)
    got = baseline.predict_proba(log, memory)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    n_classes = len(log.meta.classes)
    forgotten = baseline.predict_proba(log, np.full_like(memory, 255))
    assert np.array_equal(forgotten, np.full_like(expected, np.float32(1.0 / n_classes)))


@pytest.mark.parametrize("world_map", [False, True])
def test_persistence_refuses_a_memory_of_another_shape(world_map):
    """One frame's memory for a 3-frame log would broadcast over every frame: refused, named."""
    log = _driving_log()
    memory = persistence_memory(log)
    with pytest.raises(ValueError, match=r"PersistenceBaseline\.predict_proba: memory has shape "
                       r"\(1, \d+, \d+\), expected \(3, \d+, \d+\)"):
        PersistenceBaseline(world_map=world_map).predict_proba(log, memory[:1])
    with pytest.raises(ValueError, match="memory has shape"):
        PersistenceBaseline(world_map=world_map).predict_proba(log, memory[:, :, :-1])


def test_world_memory_refuses_a_map_it_cannot_allocate():
    """Poses 10 000 km apart (each one a valid coordinate) would need a 2e7 x 2e7 raster:
    one line, not an attempt to allocate hundreds of TiB."""
    log = _driving_log()
    log.ego_x = np.array([0.0, 1e7, 0.0])
    log.ego_y = np.array([0.0, 1e7, 0.0])
    with pytest.raises(DataValidationError, match=r"log 'drive': a world map spanning "
                       r"10000\.0 km x 10000\.0 km at 0\.5 m"):
        world_memory(log)
    with pytest.raises(DataValidationError, match="world map"):
        PersistenceBaseline(world_map=True).predict_proba(log)


def test_layout_fallback_moves_only_layout_mass_of_hidden_cells():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), size=(2, 3, 3)).transpose(0, 3, 1, 2).astype(np.float32)
    memory = np.full((2, 3, 3), 255, np.uint8)
    memory[:, 0, 0] = SIDEWALK
    memory[:, 1, 1] = VEHICLE                                          # an object: not used
    observed = np.full((2, 3, 3), 255, np.uint8)
    observed[1] = ROAD                                                 # frame 1 all visible
    out = apply_layout_memory(probs.copy(), memory, observed)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)
    assert out[0, SIDEWALK, 0, 0] == pytest.approx(probs[0, :4, 0, 0].sum())
    np.testing.assert_array_equal(out[0, 4:, 0, 0], probs[0, 4:, 0, 0])
    np.testing.assert_array_equal(out[0, :, 1, 1], probs[0, :, 1, 1])
    np.testing.assert_array_equal(out[1], probs[1])


def test_object_regions_grow_each_grid_by_its_margin():
    current = np.full((2, 9, 9), ROAD, np.uint8)
    current[:, 4, 4] = VEHICLE
    grown = object_regions(current, np.array([1, 2])).numpy()
    assert grown[0].sum() == 9 and grown[0, 3:6, 3:6].all()
    assert grown[1].sum() == 25 and grown[1, 2:7, 2:7].all()
    assert not object_regions(np.full((1, 9, 9), ROAD, np.uint8), 3).any()


def test_fallback_improves_hidden_layout_and_object_passes_round_trip(demo_run, tmp_path):
    workspace, _ = demo_run
    logs = [read_log(p) for p in list_logs(workspace / "data" / "driving")]
    predictor = OcclusionPredictor(history=(2,), widths=(8, 16), epochs=1, batch_size=8,
                                   max_steps_per_epoch=4, object_masks=0.5, random_state=0,
                                   progress=False).fit(logs[:2])
    assert predictor.scoring_.normaliser.maps[-2:] == OBJECT_MAPS
    log = logs[-1]
    classes = list(log.meta.classes)
    iou = {}
    for fallback in (False, True):
        predictor.layout_fallback = fallback
        acc = HiddenCellAccumulator(len(classes), sample=1.0)
        acc.add(predictor.predict_log_proba(log), log.semantic_true, log.visible)
        iou[fallback] = acc.metrics(classes)["road_iou"]
    assert iou[True] > iou[False]
    maps = raw_maps(predictor, log)
    for name in OBJECT_MAPS:
        objects = np.isin(log.semantic, (4, 5, 6))
        assert (maps[name][objects & log.visible] > 0).mean() > 0.99   # every object scored
    predictor.save(tmp_path / "model")
    again = OcclusionPredictor.load(tmp_path / "model")
    assert again.object_masks == 0.5 and again.layout_fallback
    np.testing.assert_allclose(score_log(again, log).score, score_log(predictor, log).score, atol=1e-6)
