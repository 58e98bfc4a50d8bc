"""Keep each organ's largest connected part where that helps; measure how fragmented a label is.

nnU-Net's post-processing (Isensee et al., Nature Methods 2021): for each class, keep only
its largest connected component, and adopt that per class only when it raises the mean Dice
on validation cases (a class whose true shape has several parts, or that the validation
cases never show in pieces, is left as predicted: the data decide, not a rule). Components come from
``scipy.ndimage.label`` with full (26-) connectivity, as in nnU-Net's own implementation and
MONAI's ``KeepLargestConnectedComponent`` default (MONAI's needs scikit-image, which the
medical extra does not install). Removed voxels become background, as in nnU-Net.

The same components give the anatomy check of :func:`medical.guard.fragmentation_warnings`:
the share of an organ's raw label volume outside its largest part. An organ is one piece;
a segmenter that labels "liver" on the bladder too leaves a large share outside. The
validation cases' largest share per organ is the reference, fitted with the decisions.

Example:
    >>> post = PostProcessing.fit(predictions, truths, {1: "liver", 2: "spleen"})  # doctest: +SKIP
    >>> labels, shares = post.apply(probabilities)   # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.ndimage import generate_binary_structure, label

from core.metrics import dice

from .transforms import channel_argmax

FULL_CONNECTIVITY = generate_binary_structure(3, 3)   # faces, edges and corners: 26 neighbours


def largest_part(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a boolean ``(x, y, z)`` mask (empty stays empty)."""
    components, count = label(mask, structure=FULL_CONNECTIVITY)
    if count <= 1:
        return mask.astype(bool)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0                                          # background is not a part
    return components == int(np.argmax(sizes))


def largest_parts(labels: np.ndarray, classes) -> dict[int, np.ndarray]:
    """Per class id, the largest connected part of its voxels in ``labels``."""
    return {k: largest_part(labels == k) for k in classes}


def outside_share(labels: np.ndarray, k: int, largest: np.ndarray) -> float:
    """Share of class ``k``'s voxels outside ``largest`` (0 for an absent class)."""
    total = int(np.count_nonzero(labels == k))
    return 1.0 - int(np.count_nonzero(largest)) / total if total else 0.0


def keep_largest(labels: np.ndarray, parts: dict[int, np.ndarray], classes) -> np.ndarray:
    """``labels`` with every part of each class in ``classes`` but the largest set to 0."""
    out = labels.copy()
    for k in classes:
        out[(labels == k) & ~parts[k]] = 0
    return out


@dataclass
class PostProcessing:
    """Per-organ decisions and the fragmentation reference, fitted on validation cases.

    Attributes:
        keep_largest: organ names whose parts beyond the largest are removed.
        dice_change: per organ, mean validation Dice with minus without keeping the
            largest part (why it was adopted or not).
        fragment_max: per organ, the largest share of its raw label volume outside its
            largest part over the validation cases; ``None`` without validation cases
            (no fragmentation warnings).
        cases: how many validation cases decided.
    """

    keep_largest: list
    dice_change: dict
    fragment_max: dict | None
    cases: int

    @classmethod
    def none(cls) -> "PostProcessing":
        """No validation cases: nothing removed, no reference."""
        return cls([], {}, None, 0)

    @classmethod
    def fit(cls, predictions, truths, names: dict[int, str]) -> "PostProcessing":
        """Decide per organ from validation cases (nnU-Net's rule: adopt only if Dice rises).

        Args:
            predictions: list, per case, of the raw argmax label map ``(x, y, z)``.
            truths: per case the reference label map on the same grid.
            names: ``{class id: organ name}``.
        """
        if len(predictions) == 0:
            return cls.none()
        before, after, shares = ({k: [] for k in names} for _ in range(3))
        for predicted, truth in zip(predictions, truths, strict=True):
            parts = largest_parts(predicted, names)
            for k in names:
                before[k].append(dice(truth == k, predicted == k))
                after[k].append(dice(truth == k, parts[k]))
                shares[k].append(outside_share(predicted, k, parts[k]))
        change = {names[k]: float(np.mean(after[k]) - np.mean(before[k])) for k in names}
        return cls([names[k] for k in names if change[names[k]] > 0.0], change,
                   {names[k]: float(max(shares[k])) for k in names}, len(predictions))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PostProcessing":
        return cls(list(d["keep_largest"]), dict(d["dice_change"]), d["fragment_max"],
                   int(d["cases"]))

    def apply(self, probabilities, names: dict[int, str]) -> tuple[np.ndarray, dict[str, float]]:
        """Post-process a softmax in place; return its argmax labels and the raw shares.

        Args:
            probabilities: ``(C, x, y, z)`` CPU tensor or array; removed voxels become
                certain background, so resampling it to another grid agrees.
            names: ``{class id: organ name}``.

        Returns:
            ``(labels (x, y, z), {organ: share of its raw volume outside its largest part})``.
        """
        probabilities = torch.as_tensor(probabilities)      # an array's memory is shared
        raw = channel_argmax(probabilities).numpy()
        values = probabilities.numpy()                      # a view: edits reach the tensor
        parts = largest_parts(raw, names)
        shares = {names[k]: outside_share(raw, k, parts[k]) for k in names}
        kept = [k for k in names if names[k] in self.keep_largest]
        labels = keep_largest(raw, parts, kept)
        removed = labels != raw
        values[:, removed] = 0.0
        values[0, removed] = 1.0
        return labels, shares
