"""Baselines for hidden cells: last-seen persistence and a positional class prior.

Both return class probabilities ``(T, C, H, W)`` for every frame of a log, like the
occlusion predictor, so the benchmark scores all three the same way.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np

from core.errors import DataValidationError, NotFittedError

from ..kernels import cell_shape, check_cell_shapes, layout_memory_mix, world_memory_cells
from ..schema import LAYOUT_CLASSES, SIDEWALK, UNOBSERVED, DriveLog
from ..warp import cells_in_world, warp_grid

# The most cells a world raster of a log may have: a log whose poses span more (or a corrupt
# pose far away) is refused with one line instead of trying. world_cells checks it, and every
# world raster is sized from its indices: world_memory's uint8 (2 GiB at the cap), scoring's
# float32 road belief (8 GiB), memory_gate's trace and vehicle tracks (about 13 bytes a cell).
MAX_WORLD_CELLS = 2 ** 31


def persistence_memory(log: DriveLog, before: bool = False) -> np.ndarray:
    """Ego-motion-compensated memory of each cell's last observed class, ``(T, H, W)`` uint8.

    Frame t's memory is frame t-1's memory warped into frame t, overwritten by what is
    visible at t (255 where the cell was never seen).

    Args:
        log: the drive log.
        before: return the memory *before* frame t's observation (frame t-1's memory
            warped into frame t; all 255 at t = 0) -- what a model may use as input
            without seeing frame t's own cells through it.
    """
    memory = np.empty_like(log.semantic)
    poses = log.poses
    current = np.full(log.semantic.shape[1:], UNOBSERVED, dtype=log.semantic.dtype)
    for t in range(len(log)):
        if t:
            current = warp_grid(current, poses[t - 1], poses[t], log.meta)
        if before:
            memory[t] = current
        current = np.where(log.visible[t], log.semantic[t], current)
        if not before:
            memory[t] = current
    return memory


def apply_layout_memory(probs: np.ndarray, memory: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """In place: hidden cells (``observed`` 255) with a remembered layout class give the
    layout classes' probability mass to that class. ``probs`` ``(N, C, H, W)``,
    ``memory`` and ``observed`` ``(N, H, W)``; returns ``probs``."""
    check_cell_shapes("apply_layout_memory", cell_shape(probs), memory=memory, observed=observed)
    layout_memory_mix(probs, memory, observed, len(LAYOUT_CLASSES), UNOBSERVED)   # one pass per cell
    return probs


class PersistenceBaseline:
    """Hidden cells keep the class last seen there; never-seen cells get a uniform guess,
    or the positional prior's.

    Args:
        world_map: keep the memory in a world-fixed map (:func:`world_memory`, all
            classes) instead of resampling it into every frame (:func:`persistence_memory`).
        prior: a fitted :class:`PositionalPrior` for never-seen cells ("persistence +
            prior"; None: uniform).
    """

    def __init__(self, world_map: bool = False, prior: "PositionalPrior | None" = None):
        self.world_map = world_map
        self.prior = prior

    def memory(self, log: DriveLog) -> np.ndarray:
        """``(T, H, W)`` the class this baseline remembers in each cell of ``log``'s frames."""
        return (world_memory(log, before=False, layout_only=False) if self.world_map
                else persistence_memory(log))

    def predict_proba(self, log: DriveLog, memory: np.ndarray | None = None) -> np.ndarray:
        """``(T, C, H, W)`` float32 class probabilities of every cell of ``log``.

        Args:
            log: the drive log.
            memory: :meth:`memory` of ``log``, where the caller has it already (None:
                computed here).

        Raises:
            ValueError: a given ``memory`` is not ``(T, H, W)`` (it would broadcast silently).
        """
        cells = (len(log),) + tuple(log.meta.grid_shape)
        if memory is None:
            memory = self.memory(log)
        else:
            check_cell_shapes("PersistenceBaseline.predict_proba", cells, memory=memory)
        n_classes = len(log.meta.classes)
        probs = np.zeros((len(log), n_classes) + cells[1:], np.float32)
        for c in range(n_classes):
            probs[:, c] = memory == c
        unseen = (memory == UNOBSERVED)[:, None]
        probs += unseen * (self.prior.predict_proba(log) if self.prior is not None
                           else np.float32(1.0 / n_classes))
        return probs


class PositionalPrior:
    """Class frequencies per grid position among visible cells of the training logs."""

    def __init__(self, smoothing: float = 1.0):
        self.smoothing = smoothing

    def fit(self, logs: list[DriveLog]) -> "PositionalPrior":
        n_classes = len(logs[0].meta.classes)
        counts = np.full((n_classes,) + logs[0].meta.grid_shape, self.smoothing / n_classes)
        for log in logs:
            for c in range(n_classes):
                counts[c] += (log.semantic == c).sum(0)
        self.prior_ = (counts / counts.sum(0, keepdims=True)).astype(np.float32)
        return self

    def predict_proba(self, log: DriveLog) -> np.ndarray:
        if not hasattr(self, "prior_"):
            raise NotFittedError("PositionalPrior is not fitted; call fit(logs)")
        return np.broadcast_to(self.prior_, (len(log),) + self.prior_.shape)


def world_memory(log: DriveLog, before: bool = True, layout_only: bool = True,
                 world: WorldCells | None = None) -> np.ndarray:
    """Last-seen class of every cell, kept in a world-fixed map: ``(T, H, W)`` uint8.

    What the sensor saw is written into a world-frame raster at the grid's resolution and
    each frame reads its cells from it (255 = never seen). Unlike
    :func:`persistence_memory`, which resamples its memory into every new frame (the
    nearest-neighbour errors pile up over hundreds of frames), every read is one lookup.

    Args:
        log: the drive log.
        before: each frame reads before its own observation is written (what the sensor
            saw *earlier*); False: after it.
        layout_only: keep only the static layout (off-road, road, lane marking,
            sidewalk): objects move, and an object seen once says nothing about the road
            under it.
        world: the log's :class:`WorldCells` (None: computed here).
    """
    out = np.empty_like(log.semantic)
    if not len(log):
        return out
    world = WorldCells(log) if world is None else world
    raster = np.full(world.shape[0] * world.shape[1], UNOBSERVED, dtype=np.uint8)   # raveled (X, Y)
    max_class = SIDEWALK if layout_only else UNOBSERVED - 1
    world_memory_cells(world.flat, log.visible, log.semantic, before, max_class, raster, out)
    return out


def world_cells(log: DriveLog) -> tuple[np.ndarray, np.ndarray]:
    """World-raster indices ``(ix, iy)``, each ``(T, H, W)`` int64 (from 0), of every
    frame's cells at the grid's resolution: the same world cell has the same index in
    every frame (up to rounding).

    Raises:
        DataValidationError: the raster holding them would have more than
            :data:`MAX_WORLD_CELLS` cells (checked before any caller allocates one).
    """
    res = log.meta.resolution_m
    wx, wy = zip(*(cells_in_world(pose, log.meta) for pose in log.poses))
    ix = np.rint(np.stack(wx) / res).astype(np.int64)
    iy = np.rint(np.stack(wy) / res).astype(np.int64)
    ix, iy = ix - ix.min(), iy - iy.min()
    _check_world_size(log, world_shape(ix, iy))
    return ix, iy


def flat_cells(ix: np.ndarray, iy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """:func:`world_cells`' indices into the raveled world raster of ``shape``: one index
    per cell, so a frame's reads and writes gather once instead of combining two."""
    return ix * shape[1] + iy


def world_shape(ix: np.ndarray, iy: np.ndarray) -> tuple[int, int]:
    """The world raster ``(X, Y)`` that holds every cell of :func:`world_cells`' indices."""
    return int(ix.max()) + 1, int(iy.max()) + 1


class WorldCells:
    """One log's world-raster indices (:func:`world_cells`), computed on first use and
    then kept: one object per log, handed to every world-fixed map over that log -- the
    input memory, the layout memory, the memory trace, the road belief -- which would each
    compute the same indices again.

    Attributes (each computed once, when first read):
        ix, iy: ``(T, H, W)`` int64 world-raster row and column of every cell (a log too
            large for a raster is refused here, like :func:`world_cells`).
        shape: the raster ``(X, Y)`` that holds them (:func:`world_shape`).
        flat: ``(T, H, W)`` int64 indices into that raster raveled (:func:`flat_cells`).
    """

    def __init__(self, log: DriveLog):
        self.log = log

    @cached_property
    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        return world_cells(self.log)

    @property
    def ix(self) -> np.ndarray:
        return self._pairs[0]

    @property
    def iy(self) -> np.ndarray:
        return self._pairs[1]

    @cached_property
    def shape(self) -> tuple[int, int]:
        return world_shape(self.ix, self.iy)

    @cached_property
    def flat(self) -> np.ndarray:
        return flat_cells(self.ix, self.iy, self.shape)


def _check_world_size(log: DriveLog, shape: tuple[int, int]) -> None:
    if shape[0] * shape[1] > MAX_WORLD_CELLS:
        res = log.meta.resolution_m
        raise DataValidationError(
            f"log {log.log_id!r}: a world map spanning {shape[0] * res / 1e3:.1f} km x "
            f"{shape[1] * res / 1e3:.1f} km at {res:g} m per cell needs "
            f"{shape[0] * shape[1]:.3g} cells, more than the {MAX_WORLD_CELLS:.3g} the "
            "world-map memory allocates (poses far apart: check ego_x/ego_y)")
