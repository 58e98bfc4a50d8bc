"""Dense contrastive loss: voxel features that stay the same when the contrast changes.

The ``"inpaint_invariant"`` pretext (``medical.reconstruction``) shows the network each crop
twice, as it is and through a random non-monotone intensity map (``medical.contrast_remap``),
behind the same patch mask. The UNet's output channels beyond the mean and log variance are
an ``EMBED``-dimensional voxel embedding (only this loss reads them; scoring reads channels
0-1 and the segmenter takes the encoder). At up to ``N_POINTS`` body voxels of a lattice of
stride ``STRIDE`` (so no two sampled voxels are neighbours, whose features would be near
copies), each voxel's L2-normalised embedding in one view must pick the same voxel among all
sampled voxels of the other view (InfoNCE, temperature ``TAU``), both directions. Between
contrast phases the order of tissue intensities changes (bench/README.md, the label-efficiency
diagnosis): a feature that matches across such maps must tell tissue by shape and context.

The constants were fixed before any run (``bench/experiments/medical_invariant_pretext.py``,
one setting, not tuned).

Example:
    >>> loss = dense_info_nce(first, second, bodies, np.random.default_rng(0))  # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

EMBED = 16       # embedding channels
N_POINTS = 256   # sampled voxels per crop, at most
STRIDE = 4       # lattice spacing of the sampled voxels (voxels, every axis)
TAU = 0.1        # InfoNCE temperature
WEIGHT = 1.0     # factor on the InfoNCE term beside the in-painting loss


def lattice_points(body: np.ndarray, rng) -> np.ndarray:
    """Flat indices of up to ``N_POINTS`` voxels of ``body`` ``(x, y, z)`` on a ``STRIDE``
    lattice; the lattice's offset is random per crop, so every voxel is sampled over training."""
    offset = rng.integers(0, STRIDE, 3)
    lattice = np.zeros(body.shape, dtype=bool)
    lattice[offset[0]::STRIDE, offset[1]::STRIDE, offset[2]::STRIDE] = True
    points = np.flatnonzero(lattice & body)
    if len(points) > N_POINTS:
        points = np.sort(rng.choice(points, N_POINTS, replace=False))
    return points


def info_nce(first: torch.Tensor, second: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of one crop's two embeddings ``(EMBED, x, y, z)`` at flat voxel
    indices ``points``: each voxel's match is the same voxel of the other view."""
    a = F.normalize(first.flatten(1)[:, points].T.float(), dim=1)   # (N, EMBED)
    b = F.normalize(second.flatten(1)[:, points].T.float(), dim=1)
    logits = a @ b.T / TAU
    target = torch.arange(len(points), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def dense_info_nce(first: torch.Tensor, second: torch.Tensor, bodies, rng) -> torch.Tensor:
    """Mean :func:`info_nce` over a batch's crops ``(B, EMBED, x, y, z)`` at lattice voxels of
    each crop's body mask (``bodies``: ``(x, y, z)`` arrays); crops with fewer than 2 such
    voxels (outside the patient) add nothing, and a batch of only those gives 0."""
    losses = []
    for a, b, body in zip(first, second, bodies):
        points = lattice_points(body, rng)
        if len(points) >= 2:
            losses.append(info_nce(a, b, torch.as_tensor(points, device=a.device)))
    return torch.stack(losses).mean() if losses else first.sum() * 0.0
