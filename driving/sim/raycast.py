"""Sensor visibility by ray casting on the ego grid (a polar z-buffer).

The sensor sits at the ego cell. Rays are angular bins; every occupied (object) cell
writes its near distance into each bin its footprint spans, so a cell is visible when
nothing in its bin is nearer and it lies within range. Everything geometric is fixed in
the ego frame, so it is precomputed once per grid; a frame costs a few array passes.
"""
from __future__ import annotations

import numpy as np

from ..schema import LogMeta


class Raycaster:
    """Visibility on an ego grid.

    Args:
        meta: the grid's geometry.
        range_m: sensor range (cells farther are never visible).
        n_bins: angular resolution (rays over 360 degrees).
        min_occluder_m: cells this close to the sensor never occlude (the ego's body).
    """

    def __init__(self, meta: LogMeta, range_m: float = 35.0, n_bins: int = 1440,
                 min_occluder_m: float = 1.5):
        h, w = meta.grid_shape
        res = meta.resolution_m
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        forward = (meta.ego_cell[0] - rows).ravel() * res
        right = (cols - meta.ego_cell[1]).ravel() * res
        self.dist = np.hypot(forward, right)                       # (H*W,)
        self.near = np.maximum(self.dist - 0.5 * res, 0.0)          # near edge of each cell
        angle = np.arctan2(right, forward)
        self.n_bins = n_bins
        self.bin = ((angle + np.pi) / (2 * np.pi) * n_bins).astype(np.int64) % n_bins
        half = np.arctan2(0.5 * res * np.sqrt(2), np.maximum(self.dist, 1e-6))
        span = np.ceil(half / (2 * np.pi) * n_bins).astype(np.int64)
        self.max_span = int(span[self.dist >= min_occluder_m].max())
        offsets = np.arange(-self.max_span, self.max_span + 1)
        spans = (self.bin[:, None] + offsets[None, :]) % n_bins     # (H*W, 2*max_span+1)
        outside = np.abs(offsets)[None, :] > span[:, None]
        self.spans = np.where(outside, n_bins, spans)               # n_bins = dummy bin
        self.can_occlude = self.dist >= min_occluder_m
        self.in_range = self.dist <= range_m
        self.shape = (h, w)

    def visible(self, occupied: np.ndarray) -> np.ndarray:
        """Cells the sensor sees, ``(H, W)`` bool, given object cells ``occupied`` ``(H, W)``."""
        occ = np.flatnonzero(occupied.ravel() & self.can_occlude)
        zbuf = np.full(self.n_bins + 1, np.inf)
        if occ.size:
            bins = self.spans[occ]                                   # (n_occ, span)
            np.minimum.at(zbuf, bins.ravel(), np.repeat(self.near[occ], bins.shape[1]))
        vis = (self.near <= zbuf[self.bin] + 1e-9) & self.in_range
        return vis.reshape(self.shape)
