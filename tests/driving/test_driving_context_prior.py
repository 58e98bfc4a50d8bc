"""The context prior: how rare an object is on the ground the model says it stands on."""
import numpy as np

from driving.scoring.context_prior import CATEGORIES, GROUNDS, ContextPrior, ground_posterior, object_category
from driving.schema import PEDESTRIAN, ROAD, SIDEWALK, STATIC_OBSTACLE, VEHICLE

RES = 0.5


def _street(n=4):
    """``n`` frames of a 12x20 street: sidewalk in columns 0-2 and 17-19, road between."""
    grid = np.full((n, 12, 20), ROAD, np.uint8)
    grid[:, :, :3] = SIDEWALK
    grid[:, :, 17:] = SIDEWALK
    return grid


def _layout_probs(grid):
    """What the object pass would say: the street's layout under every cell."""
    probs = np.zeros((len(grid), 4) + grid.shape[1:], np.float32)
    under = _street(len(grid))
    for c in range(4):
        probs[:, c] = under == c
    return probs


def test_ground_splits_road_into_kerbside_and_lane():
    grid = _street(1)
    ground = ground_posterior(_layout_probs(grid), grid, RES, kerb_m=2.0)
    assert ground.shape == (1, len(GROUNDS), 12, 20)
    np.testing.assert_allclose(ground.sum(1), 1.0, atol=1e-5)
    soft = ground_posterior(0.5 * _layout_probs(grid) + 0.125, grid, RES, kerb_m=2.0)
    np.testing.assert_array_equal(soft, ground)      # observed layout cells are certain
    best = ground.argmax(1)[0]
    assert (best[:, 1:3] == GROUNDS.index("sidewalk")).all()
    kerbside = GROUNDS.index("road_kerbside")                        # under 2 m from the kerb
    assert (best[:, 3:6] == kerbside).all() and (best[:, 14:17] == kerbside).all()
    assert (best[:, 6:14] == GROUNDS.index("road_lane")).all()


def test_vehicles_seen_in_the_same_cell_earlier_are_static():
    now = np.full((1, 3, 3), ROAD, np.uint8)
    now[0, 0, :] = VEHICLE
    now[0, 2, 0] = PEDESTRIAN
    earlier = np.full((1, 3, 3), ROAD, np.uint8)
    earlier[0, 0, :2] = VEHICLE
    category = object_category(now, earlier)[0]
    assert [CATEGORIES[c] for c in category[0]] == ["vehicle_static", "vehicle_static", "vehicle"]
    assert CATEGORIES[category[2, 0]] == "pedestrian" and category[1, 1] == -1
    assert (object_category(now, None)[0, 0] == CATEGORIES.index("vehicle")).all()


def _normal_frames():
    """Obstacles and pedestrians on the sidewalk, parked cars at the kerb, traffic in the lanes."""
    grid = _street(8)
    earlier = grid.copy()
    grid[:, 2:4, 1] = STATIC_OBSTACLE
    grid[:, 6, 18] = PEDESTRIAN
    grid[:, 1:5, 4] = VEHICLE                    # parked: there 10 frames ago too
    earlier[:, 1:5, 4] = VEHICLE
    for t in range(len(grid)):                   # moving: somewhere else every frame
        grid[t, (t % 3) * 4:(t % 3) * 4 + 3, 9:11] = VEHICLE
    return grid, earlier


def test_debris_and_a_stopped_car_in_the_lane_are_surprising_parked_cars_are_not():
    grid, earlier = _normal_frames()
    prior = ContextPrior(history=(10,), static_offset=10, kerb_m=2.0)
    stack = np.stack([grid, earlier], 1)
    ground, category = prior.inputs(_layout_probs(grid), grid, stack, RES)
    prior.add(ground, category, grid)
    prior.finish()
    normal = prior.surprise(ground, category)
    odd, odd_earlier = _street(1), _street(1)
    odd[0, 0:2, 11:13] = STATIC_OBSTACLE         # debris in the lane
    odd[0, 6:10, 12] = VEHICLE                   # a car standing in the lane
    odd_earlier[0, 6:10, 12] = VEHICLE
    odd[0, 2:4, 1] = STATIC_OBSTACLE             # a bin on the sidewalk
    g, c = prior.inputs(_layout_probs(odd), odd, np.stack([odd, odd_earlier], 1), RES)
    s = prior.surprise(g, c)[0]
    assert s[0:2, 11:13].min() > 1.5 and s[6:10, 12].min() > 1.5      # > 4x rarer than anywhere
    assert s[2:4, 1].max() == 0.0                # where obstacles belong
    assert normal.max() < 1.0                    # nothing normal is surprising
    assert (s[odd[0] == ROAD] == 0).all()        # only objects are scored
    again = ContextPrior.from_dict(prior.to_dict())
    np.testing.assert_allclose(again.surprise(g, c), prior.surprise(g, c))
