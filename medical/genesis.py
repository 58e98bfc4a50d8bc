"""Models Genesis distortions (Zhou et al. 2019/2021) for masked-volume pretraining.

Restoring a crop from a distorted copy teaches what plain in-painting does not: a
non-linear intensity curve can only be undone by knowing which tissue a voxel is
(appearance), shuffled small blocks by knowing the tissue's texture, and out-painting (all
but an inner box hidden) by knowing the anatomy around what is seen (context). Draws are
seeded and separate from applying them (like MONAI's random transforms); every function
works on one crop ``(1, x, y, z)`` in the model's [0, 1] intensity scale.

Example:
    >>> rng = np.random.default_rng(0)
    >>> draw = draw_distortion(rng, (48, 48, 32))
    >>> distorted = apply_distortion(image, draw)        # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .contrast_remap import remap_intensities

CURVE_KNOTS = 64            # samples of the Bezier intensity curve
SHUFFLE_BLOCK = (2, 2, 2)   # voxels per shuffled block (12 mm on the small preset's grid)


@dataclass
class Distortion:
    """One crop's drawn distortion.

    Attributes:
        curve: ``(2, CURVE_KNOTS)`` x and y knots of the intensity curve, or ``None``.
        shuffle_keys: ``(n_blocks, block voxels)`` random sort keys (identity rows for blocks
            left alone), or ``None``.
        outpaint_box: ``((lo, hi), ...)`` per axis: the one visible box, or ``None`` (keep
            the in-painting mask).
        hide_nothing: show the whole (distorted) crop, as segmentation will: nothing hidden.
    """

    curve: np.ndarray | None
    shuffle_keys: np.ndarray | None
    outpaint_box: tuple | None
    hide_nothing: bool = False

    @property
    def changes_appearance(self) -> bool:
        """True when visible voxels differ from the original (they must be restored too)."""
        return self.curve is not None or self.shuffle_keys is not None


def bezier_curve(rng) -> np.ndarray:
    """A monotone intensity map of [0, 1]: a cubic Bezier from (0, 0) to (1, 1) with two
    random control points; inverted (1 - y) half the time, as in Models Genesis."""
    points = np.array([[0.0, 0.0], rng.random(2), rng.random(2), [1.0, 1.0]])
    t = np.linspace(0.0, 1.0, CURVE_KNOTS)[:, None]
    curve = ((1 - t) ** 3 * points[0] + 3 * (1 - t) ** 2 * t * points[1]
             + 3 * (1 - t) * t ** 2 * points[2] + t ** 3 * points[3])  # (K, 2)
    xs, ys = np.sort(curve[:, 0]), np.sort(curve[:, 1])
    if rng.random() < 0.5:
        ys = 1.0 - ys
    return np.stack([xs, ys])


def apply_curve(image: torch.Tensor, curve: np.ndarray) -> torch.Tensor:
    """Piecewise-linear ``np.interp`` of ``image`` through the curve's knots, in torch (the
    crop may live on the GPU): :func:`~medical.contrast_remap.remap_intensities` of one crop."""
    return remap_intensities(image[None], curve[0][None], curve[1][None])[0]


def shuffle_blocks(image: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
    """Permute the voxels inside each ``SHUFFLE_BLOCK`` block of ``image`` ``(1, x, y, z)`` by
    the order of its row of ``keys``; voxels beyond the last whole block stay."""
    bx, by, bz = SHUFFLE_BLOCK
    _, X, Y, Z = image.shape
    nx, ny, nz = X // bx, Y // by, Z // bz
    core = image[:, :nx * bx, :ny * by, :nz * bz]
    blocks = core.reshape(nx, bx, ny, by, nz, bz).permute(0, 2, 4, 1, 3, 5).reshape(-1, bx * by * bz)
    order = torch.as_tensor(np.argsort(keys, axis=1), device=image.device)
    blocks = torch.gather(blocks, 1, order)
    core = blocks.reshape(nx, ny, nz, bx, by, bz).permute(0, 3, 1, 4, 2, 5).reshape(1, nx * bx, ny * by, nz * bz)
    out = image.clone()
    out[:, :nx * bx, :ny * by, :nz * bz] = core
    return out


def draw_distortion(rng, shape, p_curve: float = 0.5, p_shuffle: float = 0.5,
                    p_outpaint: float = 0.5, shuffle_share: float = 0.25,
                    p_hide_nothing: float = 0.0) -> Distortion:
    """Draw one crop's distortion for spatial ``shape``.

    Args:
        rng: ``numpy.random.Generator``.
        p_curve, p_shuffle, p_outpaint: probability of each distortion. Half the crops keep
            the plain picture and the in-painting mask by default: the same network scores
            anomalies on undistorted volumes with the in-painting schedule.
        shuffle_share: share of blocks shuffled when shuffling.
        p_hide_nothing: probability that nothing is hidden (no painting): the network sees
            a whole crop, as in segmentation, and restores only the distortions.
    """
    curve = bezier_curve(rng) if rng.random() < p_curve else None
    keys = None
    if rng.random() < p_shuffle:
        n_blocks = int(np.prod([s // b for s, b in zip(shape, SHUFFLE_BLOCK)]))
        size = int(np.prod(SHUFFLE_BLOCK))
        keys = np.tile(np.arange(size, dtype=np.float64), (n_blocks, 1))
        chosen = rng.random(n_blocks) < shuffle_share
        keys[chosen] = rng.random((int(chosen.sum()), size))
    box = None
    if rng.random() < p_outpaint:  # an inner box of 40-70 % per axis stays visible
        sides = [max(1, int(round(s * rng.uniform(0.4, 0.7)))) for s in shape]
        lows = [int(rng.integers(0, s - side + 1)) for s, side in zip(shape, sides)]
        box = tuple((lo, lo + side) for lo, side in zip(lows, sides))
    # drawn only when asked for, so the other draws do not depend on p_hide_nothing = 0
    hide_nothing = box is None and p_hide_nothing > 0 and rng.random() < p_hide_nothing
    return Distortion(curve, keys, box, hide_nothing)


def apply_distortion(image: torch.Tensor, draw: Distortion) -> torch.Tensor:
    """The distorted crop ``(1, x, y, z)`` (intensity curve, then block shuffling)."""
    out = image
    if draw.curve is not None:
        out = apply_curve(out, draw.curve)
    if draw.shuffle_keys is not None:
        out = shuffle_blocks(out, draw.shuffle_keys)
    return out


def outpaint_mask(shape, box, like: torch.Tensor) -> torch.Tensor:
    """``(1, x, y, z)`` hidden mask: 1 everywhere but inside ``box``."""
    hidden = torch.ones((1, *shape), dtype=like.dtype, device=like.device)
    hidden[(slice(None),) + tuple(slice(lo, hi) for lo, hi in box)] = 0.0
    return hidden
