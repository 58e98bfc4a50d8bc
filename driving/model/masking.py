"""Training masks shaped like occlusion: angular shadows cast from the sensor, plus patches.

Masks cover a stack of frames ``(B, F, H, W)`` (frame 0 = current, the rest = earlier
frames warped into it). A shadow starts at a random distance and covers a random angular
sector out to the grid's edge, like the cells behind an object; it hides the *current*
frame only, as a real occlusion does (the history may have seen those cells). Patches
(MAE-style squares) hide *all* frames -- spatio-temporal tubes -- so the model also learns
to fill a region from its surroundings alone, which is what scoring's reconstruction
passes ask of it (otherwise an odd static object would be "explained" by the history).
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter1d

from core.masking import Masker, PatchMasker

from ..schema import LANE_MARKING, OBJECT_CLASSES, OFF_ROAD, ROAD, SIDEWALK, LogMeta


class ShadowMasker(Masker):
    """Hide occlusion-shaped regions; ``draw((B, F, H, W))`` -> bool, True = hidden.

    Args:
        meta: the grids' geometry (ego cell, resolution).
        max_shadows: each grid gets 1..max_shadows shadows.
        half_angle_deg: range of a shadow's half-width.
        patch_size: edge of the square patches.
        max_patch_ratio: each grid hides a fraction in [0, max_patch_ratio] of its patches.
        forecast_fraction: share of grids whose patches hide the current frame only (the
            earlier frames stay, as in scoring's forecast passes: the model learns where
            the objects it saw moving are now); the others hide tubes.
        random_state: seed of this masker's own generator.
    """

    def __init__(self, meta: LogMeta, max_shadows: int = 4, half_angle_deg=(2.0, 25.0),
                 patch_size: int = 8, max_patch_ratio: float = 0.5, forecast_fraction: float = 0.0,
                 random_state=None):
        super().__init__(random_state)
        self.meta = meta
        self.max_shadows = max_shadows
        self.half_angle_deg = half_angle_deg
        self.patch_size = patch_size
        self.max_patch_ratio = max_patch_ratio
        self.forecast_fraction = forecast_fraction

    def draw(self, shape) -> np.ndarray:
        b, f, h, w = shape
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        forward = (self.meta.ego_cell[0] - rows) * self.meta.resolution_m
        right = (cols - self.meta.ego_cell[1]) * self.meta.resolution_m
        angle = np.arctan2(right, forward).ravel()                   # (H*W,)
        dist = np.hypot(forward, right).ravel()
        s = self.max_shadows
        centre = self.R.uniform(-np.pi, np.pi, (b, s, 1))
        half = np.deg2rad(self.R.uniform(*self.half_angle_deg, (b, s, 1)))
        start = self.R.uniform(1.5, dist.max() * 0.8, (b, s, 1))
        used = np.arange(s)[None, :, None] < self.R.integers(1, s + 1, (b, 1, 1))
        gap = np.abs((angle[None, None] - centre + np.pi) % (2 * np.pi) - np.pi)
        hidden = np.zeros((b, f, h, w), dtype=bool)
        hidden[:, 0] = ((gap < half) & (dist[None, None] > start) & used).any(1).reshape(b, h, w)
        ratios = self.R.uniform(0.0, self.max_patch_ratio, b)
        forecast = self.R.random(b) < self.forecast_fraction
        for i, ratio in enumerate(ratios):
            if ratio * (h // self.patch_size) * (w // self.patch_size) >= 1:
                patches = PatchMasker(self.patch_size, ratio, ndim=2,
                                      random_state=int(self.R.integers(2 ** 31)))
                frames = slice(0, 1) if forecast[i] else slice(None)  # now only, or a tube
                hidden[i, frames] |= patches.draw((h, w))[None]
        return hidden


def object_regions(current, margins) -> "torch.Tensor":
    """Cells within ``margin`` cells (Chebyshev) of an observed object, per grid.

    Args:
        current: ``(B, H, W)`` uint8 observed classes (array or CPU tensor; 255 = not seen).
        margins: one margin (cells) for all grids, or ``(B,)`` margins.

    Returns:
        ``(B, H, W)`` bool CPU tensor: the objects (vehicle, pedestrian, static obstacle) grown
        by their margin -- what an object-centred mask hides, so that the model must say
        where an object is (forecast) or whether one belongs there at all (tube) from the
        surroundings, not from the object's own visible cells.
    """
    import torch

    objects = np.isin(np.asarray(current), OBJECT_CLASSES)
    margins = np.broadcast_to(np.asarray(margins).reshape(-1), (len(objects),))
    out = np.zeros_like(objects)
    for m in np.unique(margins).tolist():
        sel = margins == m
        # the (2m+1)^2 square's max as a pass along the rows, then one along the columns
        # (scipy's running max on bools: about 10x torch's float max-pool on one channel)
        rows = maximum_filter1d(objects[sel], 2 * m + 1, axis=2, mode="constant", cval=0)
        out[sel] = maximum_filter1d(rows, 2 * m + 1, axis=1, mode="constant", cval=0)
    return torch.from_numpy(out)


# decoy shapes, (rows, cols) in cells at 0.5 m: a car (either way round), a pedestrian, an
# obstacle's range (bins, poles, debris pieces); sampled with these weights
DECOY_SHAPES = (((9, 4), (4, 9)), ((2, 2),), ((1, 1), (2, 2), (3, 3), (2, 3), (3, 2)))
DECOY_WEIGHTS = (0.4, 0.2, 0.4)


def decoy_regions(current, margins, counts, random_state=None) -> np.ndarray:
    """Object-shaped holes over cells where *no* object was observed, per grid.

    Scoring's object passes hide every observed object with a margin, so a hole shaped like
    one says "an object is here" unless training also shows such holes over empty layout.
    Each decoy is a vehicle-, pedestrian- or obstacle-sized rectangle grown by the grid's
    margin, centred on an observed cell that is not an object; the centre's layout group
    (road or lane marking / sidewalk / off-road) is drawn uniformly among the groups the
    grid shows, so empty road gets decoys as often as the (larger) off-road area.

    Args:
        current: ``(B, H, W)`` uint8 observed classes (255 = not seen).
        margins: ``(B,)`` margins (cells), as given to :func:`object_regions`.
        counts: ``(B,)`` number of decoys per grid (0 = none).
        random_state: seed or numpy Generator for the placements.

    Returns:
        ``(B, H, W)`` bool array, True = hidden by a decoy.
    """

    rng = np.random.default_rng(random_state)
    current = np.asarray(current)
    b, h, w = current.shape
    out = np.zeros((b, h, w), dtype=bool)
    groups = ((ROAD, LANE_MARKING), (SIDEWALK,), (OFF_ROAD,))
    for i in range(b):
        n = int(counts[i])
        if n <= 0:
            continue
        cells = [np.flatnonzero(np.isin(current[i], g)) for g in groups]
        cells = [c for c in cells if c.size]
        if not cells:
            continue
        m = int(margins[i])
        for _ in range(n):
            pool = cells[int(rng.integers(len(cells)))]
            r, c = divmod(int(pool[rng.integers(pool.size)]), w)
            kind = DECOY_SHAPES[int(rng.choice(len(DECOY_SHAPES), p=DECOY_WEIGHTS))]
            rows, cols = kind[int(rng.integers(len(kind)))]
            r0, c0 = r - rows // 2 - m, c - cols // 2 - m
            out[i, max(r0, 0) : max(r0 + rows + 2 * m, 0), max(c0, 0) : max(c0 + cols + 2 * m, 0)] = True
    return out
