"""Decoy holes (object-shaped masks over empty layout) and warm-started training."""
import numpy as np
import pytest

from core.errors import DataValidationError
from driving.model.masking import decoy_regions
from driving.model.predictor import OcclusionPredictor
from driving.schema import OFF_ROAD, ROAD, SIDEWALK, UNOBSERVED, VEHICLE, list_logs, read_log


def test_decoys_cover_only_empty_layout_and_are_deterministic_per_seed():
    current = np.full((3, 64, 64), ROAD, np.uint8)
    current[:, :, :32] = VEHICLE                  # left half: objects; right half: empty road
    margins, counts = np.array([0, 0, 0]), np.array([12, 12, 0])
    decoys = decoy_regions(current, margins, counts, random_state=1)
    assert decoys[:2].sum(axis=(1, 2)).min() > 12           # holes drawn in both grids ...
    assert not decoys[:, :, :28].any()            # ... centred on empty cells (half-width <= 4)
    assert not decoys[2].any()                    # count 0: none
    np.testing.assert_array_equal(decoys, decoy_regions(current, margins, counts, random_state=1))
    assert not np.array_equal(decoys, decoy_regions(current, margins, counts, random_state=2))
    wide = decoy_regions(current, np.array([4, 4, 4]), counts, random_state=1)
    assert wide.sum() > decoys.sum() and (wide | ~decoys).all()   # the margin grows each hole
    assert not decoy_regions(np.full((1, 16, 16), UNOBSERVED, np.uint8), [2], [5], 0).any()


def test_decoys_visit_each_layout_group_not_just_the_largest():
    current = np.full((1, 128, 128), OFF_ROAD, np.uint8)
    current[0, 60:64] = ROAD                      # a thin road and a thin sidewalk in a field
    current[0, 70:72] = SIDEWALK
    rows = np.nonzero(decoy_regions(current, [0], [300], random_state=0)[0])[0]
    on_road = ((rows >= 55) & (rows < 69)).mean()  # around the 3 % of cells that are road
    assert on_road > 0.2


def test_warm_start_continues_from_the_given_weights_and_is_recorded(demo_run, tmp_path):
    workspace, _ = demo_run
    logs = [read_log(p) for p in list_logs(workspace / "data" / "driving")][:2]
    kw = dict(history=(2,), widths=(8, 16), batch_size=8, random_state=0, progress=False)
    base = OcclusionPredictor(epochs=1, max_steps_per_epoch=2, **kw).fit(logs)
    base.save(tmp_path / "base")
    tuned = OcclusionPredictor(epochs=1, max_steps_per_epoch=2, lr=1e-12, decoy_masks=1.0,
                               **kw).fit(logs, init=tmp_path / "base")
    tuned_params = dict(tuned.net_.named_parameters())       # (norm statistics do move)
    for name, value in base.net_.named_parameters():          # a zero-size step: same weights
        np.testing.assert_allclose(tuned_params[name].detach().numpy(), value.detach().numpy(),
                                   atol=1e-6)
    assert tuned.warm_start_["source"] == str(tmp_path / "base")
    tuned.save(tmp_path / "tuned")
    again = OcclusionPredictor.load(tmp_path / "tuned")
    assert again.decoy_masks == 1.0 and again.warm_start_["params"]["epochs"] == 1
    assert OcclusionPredictor.load(tmp_path / "base").decoy_masks == 0.0
    with pytest.raises(DataValidationError, match="network config"):
        OcclusionPredictor(epochs=1, max_steps_per_epoch=1, **{**kw, "widths": (8, 8)}).fit(
            logs, init=base)
