"""Maskers: draw which elements to hide, separately from hiding them.

Each masker owns a seeded ``numpy.random.Generator`` (like MONAI's ``Randomizable``:
``set_random_state`` then ``draw``), so a masker's draws never touch global RNG state.
Masks are boolean arrays/tensors where ``True`` means *hidden* (to be reconstructed).

Example:
    >>> m = RandomCellMasker(ratio=0.3).set_random_state(0)
    >>> mask = m.draw((4, 10))           # (4, 10) bool, ~30 % True
    >>> x_hidden = m.apply(x, mask)      # hidden cells set to 0  # doctest: +SKIP
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .errors import DataValidationError


class Masker:
    """Base class: seeded RNG, ``draw`` a mask, ``apply`` it."""

    def __init__(self, random_state: int | None = None):
        self.random_state = random_state
        self.R = np.random.default_rng(random_state)

    def set_random_state(self, seed: int | None = None) -> "Masker":
        self.R = np.random.default_rng(seed)
        return self

    def draw(self, shape: Sequence[int]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def apply(x, mask, fill: float = 0.0):
        """Return ``x`` with hidden elements replaced by ``fill`` (numpy or torch)."""
        if isinstance(x, torch.Tensor):
            mask_t = torch.as_tensor(mask, device=x.device)
            return torch.where(mask_t, torch.as_tensor(fill, dtype=x.dtype, device=x.device), x)
        return np.where(mask, fill, x)


class RandomCellMasker(Masker):
    """Hide each cell independently; exactly ``round(ratio * n)`` cells per row.

    Args:
        ratio: fraction of cells hidden per row (last axis).
    """

    def __init__(self, ratio: float = 0.3, random_state: int | None = None):
        super().__init__(random_state)
        self.ratio = ratio

    def draw(self, shape):
        if not 0.0 < self.ratio < 1.0:
            raise DataValidationError(f"mask ratio must be in (0, 1), got {self.ratio}")
        *lead, n = shape
        k = max(1, int(round(self.ratio * n)))
        scores = self.R.random((*lead, n))  # (..., n)
        kth = np.partition(scores, k - 1, axis=-1)[..., k - 1 : k]
        return scores <= kth


class PatchMasker(Masker):
    """MAE-style masking of non-overlapping 2-D or 3-D patches.

    Args:
        patch_size: patch edge per spatial axis (int or tuple; len 2 or 3 decides ndim).
        ratio: fraction of patches hidden.
        ndim: number of trailing spatial axes when ``patch_size`` is an int.
    """

    def __init__(self, patch_size: int | Sequence[int] = 8, ratio: float = 0.5,
                 ndim: int = 2, random_state: int | None = None):
        super().__init__(random_state)
        self.patch_size = patch_size
        self.ratio = ratio
        self.ndim = ndim

    def _patch(self) -> tuple[int, ...]:
        if isinstance(self.patch_size, int):
            return (self.patch_size,) * self.ndim
        return tuple(self.patch_size)

    def draw(self, shape):
        patch = self._patch()
        spatial = tuple(shape[-len(patch):])
        lead = tuple(shape[: -len(patch)])
        grid = tuple(math.ceil(s / p) for s, p in zip(spatial, patch))
        n = int(np.prod(grid))
        k = max(1, int(round(self.ratio * n)))
        keys = self.R.random((*lead, n))
        kth = np.partition(keys, k - 1, axis=-1)[..., k - 1 : k]
        coarse = (keys <= kth).reshape(*lead, *grid)
        for axis, p in enumerate(patch):  # upsample patch grid to the full grid
            coarse = np.repeat(coarse, p, axis=len(lead) + axis)
        slices = tuple(slice(None) for _ in lead) + tuple(slice(0, s) for s in spatial)
        return coarse[slices]

    def schedule(self, shape) -> list[np.ndarray]:
        """A fixed set of masks that together hide every element exactly once.

        Used at inference so each element's reconstruction error is defined and the
        same input always gets the same error map.
        """
        patch = self._patch()
        spatial = tuple(shape[-len(patch):])
        grid = tuple(math.ceil(s / p) for s, p in zip(spatial, patch))
        n = int(np.prod(grid))
        n_masks = max(1, int(round(1.0 / self.ratio)))
        order = np.random.default_rng(0).permutation(n)
        masks = []
        for i in range(n_masks):
            coarse = np.zeros(n, dtype=bool)
            coarse[order[i::n_masks]] = True
            coarse = coarse.reshape(grid)
            for axis, p in enumerate(patch):
                coarse = np.repeat(coarse, p, axis=axis)
            coarse = coarse[tuple(slice(0, s) for s in spatial)]
            masks.append(np.broadcast_to(coarse, tuple(shape)).copy())
        return masks


class GivenMasker(Masker):
    """Masks supplied by the caller, e.g. a sensor's visibility (hidden = not visible)."""

    def __init__(self, hidden=None):
        super().__init__(None)
        self.hidden = hidden

    def draw(self, shape):
        if self.hidden is None:
            raise DataValidationError("GivenMasker needs the hidden mask")
        hidden = np.asarray(self.hidden, dtype=bool)
        if hidden.shape != tuple(shape):
            raise DataValidationError(f"given mask has shape {hidden.shape}, expected {tuple(shape)}")
        return hidden
