"""Warping follows docs/contracts.md's conventions; ray casting hides what is behind objects."""
import numpy as np

from driving.sim.raycast import Raycaster
from driving.schema import LogMeta
from driving.warp import cell_offsets, ego_to_world, warp_grid, world_to_cell

META = LogMeta(grid_shape=(16, 16), resolution_m=0.5, ego_cell=(10, 8))


def _marker(row, col):
    grid = np.full((16, 16), 255, np.uint8)
    grid[row, col] = 4
    return grid


def test_conventions_ego_facing_north():
    # ego at the origin facing north (+y): 1 m ahead is row - 2, 1 m right (east) is col + 2
    pose = (0.0, 0.0, np.pi / 2)
    row, col = world_to_cell(pose, np.array([0.0, 1.0]), np.array([1.0, 0.0]), META)
    np.testing.assert_allclose(row, [8, 10])       # (x=0, y=1): 2 rows up, straight ahead
    np.testing.assert_allclose(col, [8, 10])       # (x=1, y=0): east is 2 columns right
    forward, right = cell_offsets(META)
    x, y = ego_to_world(pose, forward[8, 10], right[8, 10])   # 1 m ahead, 1 m right
    np.testing.assert_allclose([x, y], [1.0, 1.0], atol=1e-12)


def test_forward_motion_moves_cells_down():
    # ego drives 1 m east while facing east: a static cell moves 2 rows down (closer)
    before, after = (0.0, 0.0, 0.0), (1.0, 0.0, 0.0)
    warped = warp_grid(_marker(4, 5), before, after, META)
    assert warped[6, 5] == 4 and (warped == 4).sum() == 1


def test_left_turn_moves_ahead_to_the_right():
    # ego turns 90 degrees left in place: what was 2 m ahead is now 2 m to the right
    before, after = (0.0, 0.0, 0.0), (0.0, 0.0, np.pi / 2)
    warped = warp_grid(_marker(6, 8), before, after, META)
    assert warped[10, 12] == 4 and (warped == 4).sum() == 1


def test_cells_leaving_the_grid_become_unobserved():
    warped = warp_grid(np.full((16, 16), 1, np.uint8), (0.0, 0.0, 0.0), (3.0, 0.0, 0.0), META)
    assert (warped[:6] == 255).all() and (warped[6:] == 1).all()


def test_ray_cast_hides_cells_behind_an_object():
    meta = LogMeta(grid_shape=(32, 32), ego_cell=(20, 16))
    caster = Raycaster(meta, range_m=9.0)
    occupied = np.zeros((32, 32), bool)
    occupied[12, 14:19] = True                      # a wall 4 m ahead
    visible = caster.visible(occupied)
    assert visible[12, 16]                          # the wall's face is seen
    assert not visible[8, 16] and not visible[5, 16]   # straight behind it is hidden
    assert visible[16, 16] and visible[20, 10]      # in front of it and beside the ego: seen
    assert visible[20, 0]                           # 8 m to the left: within range, nothing between
    assert not visible[31, 31]                      # 9.3 m away: beyond the 9 m range

