"""The occlusion network's inputs and extra targets, built from a drive log.

``stack_frames``: the current grid, K earlier grids warped into the current ego frame and
optionally a world-fixed memory; ``future_targets``: what later frames saw of the cells
hidden now (self-supervision from the log itself, never from simulator truth).
"""
from __future__ import annotations

import numpy as np

from .model.baselines import WorldCells, world_memory
from .schema import UNOBSERVED, DriveLog
from .warp import cells_in_world, warp_into


def stack_frames(log: DriveLog, history, memory: bool = False,
                 world: WorldCells | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Network input for every frame: ``(T, 1 + K [+ 1], H, W)`` uint8 and speed ``(T,)``.

    Slot 0 is the current observed grid; slot i is frame ``t - history[i-1]`` warped
    into frame t (all unobserved before the log starts). With ``memory``, a last slot
    holds the last-seen class of every cell *before* frame t, from a world-fixed map
    (``baselines.world_memory(log, before=True, layout_only=False)``): long-term context
    (parked cars and obstacles passed a while ago, the road behind) that the K frames do
    not reach. The network learns how far to trust it: the training term on cells hidden
    now and seen later is exactly the case of a stale memory. ``world``: the log's
    :class:`~driving.model.baselines.WorldCells` for that memory (None: computed here).
    """
    t_total = len(log)
    h, w = log.meta.grid_shape
    grids = np.full((t_total, 1 + len(history) + bool(memory), h, w), UNOBSERVED, dtype=np.uint8)
    grids[:, 0] = log.semantic
    poses = log.poses
    for t in range(t_total):
        here = cells_in_world(poses[t], log.meta)       # shared by the K warps into frame t
        for i, k in enumerate(history, start=1):
            if t >= k:
                grids[t, i] = warp_into(log.semantic[t - k], poses[t - k], here, log.meta)
    if memory:
        grids[:, -1] = world_memory(log, before=True, layout_only=False, world=world)
    return grids, log.ego_speed.astype(np.float32)


def future_targets(log: DriveLog, offsets) -> np.ndarray:
    """What each frame's hidden cells turned out to be: ``(T, H, W)`` uint8 (255 = unknown).

    For frame t, the observations of frames ``t + k`` (``k`` in ``offsets``, nearest first)
    warped into frame t fill the cells hidden at t. Self-supervision from the log itself
    (later frames), never from simulator truth.
    """
    target = np.full(log.semantic.shape, UNOBSERVED, dtype=np.uint8)
    poses = log.poses
    for t in range(len(log)):
        need = ~log.visible[t]
        here = None                                     # shared by the offsets' warps into t
        for k in offsets:
            if t + k >= len(log) or not need.any():
                break
            here = cells_in_world(poses[t], log.meta) if here is None else here
            seen = warp_into(log.semantic[t + k], poses[t + k], here, log.meta)
            fill = need & (seen != UNOBSERVED)
            target[t][fill] = seen[fill]
            need &= ~fill
    return target
