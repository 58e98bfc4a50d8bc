"""A healthy phantom and its twin with one placed lesion, for paired lesion experiments.

The simulator's own lesions (``simulate_case(..., lesions=True)``) have drawn sizes and
contrasts, and at a coarse test grid some are one or two voxels. A paired twin holds
everything but the lesion fixed: the same body, acquisition and noise, one block of
``size`` voxels ``drop_hu`` below the parenchyma, so a score's change is the lesion's.

Example:
    >>> case, sick, lesion = lesion_twin(np.random.default_rng(0), (32, 32, 16), 50.0)  # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_erosion, distance_transform_edt

from .phantom import PhantomCase, simulate_case
from .phantom_anatomy import ADULT_KIDNEY_SHARE, LIVER


def lesion_block(organ: np.ndarray, size=(3, 3, 2), spacing=(1.0, 1.0, 1.0),
                 deepest: bool = True) -> np.ndarray:
    """A ``size``-voxel block inside ``organ`` (bool ``(X, Y, Z)``).

    ``deepest``: centred on the organ voxel farthest (in mm) from the organ's border, so
    the whole block is parenchyma wherever the organ lies in the field of view; else on
    the middle voxel (in index order) of the organ eroded by one voxel, which can lie at
    its edge and reach past it.

    Raises:
        ValueError: the organ is too thin (or out of view) to hold a voxel inside its border.
    """
    if not binary_erosion(organ).any():
        raise ValueError("the organ has no voxel inside its border to centre a lesion on")
    if deepest:
        # padded: where the slab cuts the organ is its border too, not deep parenchyma
        depth = distance_transform_edt(np.pad(organ, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
        centre = np.unravel_index(int(np.argmax(depth)), organ.shape)
    else:
        inner = np.argwhere(binary_erosion(organ))
        centre = inner[len(inner) // 2]
    start = [int(c) - (s - 1) // 2 for c, s in zip(centre, size)]
    block = np.zeros(organ.shape, dtype=bool)
    block[tuple(slice(max(0, a), a + s) for a, s in zip(start, size))] = True
    # deepest: inside the organ even where it is thin; middle: as the old tests placed it,
    # partly outside at the liver's edge (what bench.experiments.medical_lesion_twins compares)
    return block & organ if deepest else block


def place_lesion(case: PhantomCase, drop_hu: float, size=(3, 3, 2), deepest: bool = True,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``case``'s twin with one liver lesion ``drop_hu`` HU below the parenchyma
    (hypo-dense, as most metastases), placed by :func:`lesion_block`.

    Returns:
        ``(sick_image, lesion_mask)``: the twin's HU image and the lesion's voxels.
    """
    spacing = np.abs(np.diag(case.affine)[:3])
    lesion = lesion_block(case.label == LIVER, size, spacing, deepest)
    sick = case.image.copy()
    sick[lesion] = np.round(sick[lesion] - drop_hu).astype(sick.dtype)  # the image is int16 HU
    return sick, lesion


def lesion_twin(rng: np.random.Generator, shape, drop_hu: float, size=(3, 3, 2),
                deepest: bool = True, adult_kidney_share: float = ADULT_KIDNEY_SHARE,
                ) -> tuple[PhantomCase, np.ndarray, np.ndarray]:
    """A fresh healthy phantom and its twin (:func:`place_lesion`); ``adult_kidney_share``
    as in :func:`~medical.phantom.simulate_case`.

    Returns:
        ``(case, sick_image, lesion_mask)``: the healthy case, the twin's HU image and the
        lesion's voxels.
    """
    case = simulate_case(rng, shape, adult_kidney_share=adult_kidney_share)
    return (case, *place_lesion(case, drop_hu, size, deepest))
