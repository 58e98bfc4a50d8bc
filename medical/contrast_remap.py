"""Random non-monotone intensity remapping: a pretext that cannot be solved from intensity.

Between contrast phases the *order* of tissue intensities changes (a native kidney is darker
than the liver, a portal-venous one brighter; vessels swap places with parenchyma), and a
segmenter fine-tuned on two labelled scans of one phase fails on the other (bench/README.md,
the label-efficiency diagnosis). A monotone curve (Models Genesis, ``medical.genesis``)
keeps the order and so cannot teach this. Here each crop's [0, 1] intensities go through a
random *continuous, piecewise-linear, non-monotone* map: the window is split into 4-8 bands
of random width, and each band gets its own slope, up or down, so neighbouring tissues can
swap order or merge. The network in-paints the *original* crop from the remapped one, so it
must tell tissue apart by shape and context, not by absolute intensity. The map is
continuous, so noise stays noise-like (amplified at most ``MAX_SLOPE`` times), with no
false edges at the band borders.

Draws are seeded and separate from applying them (like MONAI's random transforms); applying
is vectorised over the batch in torch (the crops may live on the GPU).

Example:
    >>> rng = np.random.default_rng(0)
    >>> knots_x, knots_y = draw_remaps(rng, batch=4)          # (4, 9) each
    >>> remapped = remap_intensities(images, knots_x, knots_y)   # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import torch

BANDS = (4, 8)        # number of bands, inclusive range
MAX_SLOPE = 3.0       # |output change / input change| within a band (noise amplification)
MIN_SLOPE = 0.5       # before any shrinking into [0, 1]: no band is flattened to one level
MAX_KNOTS = BANDS[1] + 1


def draw_remap(rng) -> tuple[np.ndarray, np.ndarray]:
    """One crop's map: ``MAX_KNOTS`` x and y knots of a continuous non-monotone function.

    Band widths are drawn in [0.5, 1.5] and normalised, so no band is much narrower than
    the mean (a narrow band with a steep slope would only amplify noise). Slopes alternate
    in sign at least once (the map is never monotone); the start level is chosen so the
    whole map stays inside [0, 1] where the slopes allow, else it is rescaled into it.
    Unused trailing knots repeat the last one (``remap_intensities`` ignores them).
    """
    bands = int(rng.integers(BANDS[0], BANDS[1] + 1))
    widths = rng.uniform(0.5, 1.5, bands)
    xs = np.concatenate([[0.0], np.cumsum(widths / widths.sum())])
    slopes = rng.uniform(MIN_SLOPE, MAX_SLOPE, bands) * rng.choice([-1.0, 1.0], bands)
    if np.all(slopes > 0) or np.all(slopes < 0):  # force at least one change of direction
        flip = int(rng.integers(0, bands))
        slopes[flip] = -slopes[flip]
    ys = np.concatenate([[0.0], np.cumsum(slopes * np.diff(xs))])
    span = ys.max() - ys.min()
    if span > 1.0:  # steeper than [0, 1] holds: shrink (keeps the shape and the order swaps)
        ys = ys / span
        span = 1.0
    ys = ys - ys.min() + rng.uniform(0.0, 1.0 - span)  # a random level inside [0, 1]
    xs[-1] = 1.0
    pad = MAX_KNOTS - len(xs)
    return np.pad(xs, (0, pad), mode="edge"), np.pad(ys, (0, pad), mode="edge")


def draw_remaps(rng, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """``batch`` maps: x and y knots ``(batch, MAX_KNOTS)`` each."""
    draws = [draw_remap(rng) for _ in range(batch)]
    return np.stack([d[0] for d in draws]), np.stack([d[1] for d in draws])


def remap_intensities(image: torch.Tensor, knots_x: np.ndarray, knots_y: np.ndarray) -> torch.Tensor:
    """Each crop of ``image`` ``(B, C, ...)`` through its own piecewise-linear map.

    Args:
        image: intensities in [0, 1] (values outside are clamped first).
        knots_x, knots_y: ``(B, K)`` knots per crop (``draw_remaps``); ``knots_x`` sorted,
            from 0 to 1.

    Returns:
        The remapped crops, same shape, dtype and device as ``image``.
    """
    batch = image.shape[0]
    xs = torch.as_tensor(knots_x, dtype=image.dtype, device=image.device)  # (B, K)
    ys = torch.as_tensor(knots_y, dtype=image.dtype, device=image.device)
    x = image.clamp(0.0, 1.0).reshape(batch, -1)                            # (B, N)
    # the band each voxel lies in: knots right-1 and right; repeated trailing knots are
    # never chosen, as no voxel lies beyond x = 1
    right = torch.searchsorted(xs.contiguous(), x.contiguous()).clamp(1, xs.shape[1] - 1)
    x0, x1 = xs.gather(1, right - 1), xs.gather(1, right)
    y0, y1 = ys.gather(1, right - 1), ys.gather(1, right)
    out = y0 + (y1 - y0) * (x - x0) / (x1 - x0).clamp_min(1e-6)
    return out.reshape(image.shape)
