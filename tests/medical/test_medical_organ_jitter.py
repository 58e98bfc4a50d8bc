"""Per-organ intensity augmentation of the segmentation crops (``organ_jitter``)."""
from __future__ import annotations

import numpy as np

from medical.volumes import CropDataset


def _two_organs():
    """A flat 0.5 image ``(1, 24, 24, 12)`` with organ 1 and organ 3 (cubes of 8 voxels)."""
    image = np.full((1, 24, 24, 12), 0.5, dtype=np.float32)
    label = np.zeros((1, 24, 24, 12), dtype=np.int64)
    label[0, 2:10, 2:10, 2:10] = 1
    label[0, 14:22, 14:22, 2:10] = 3
    return image, label


def _crops(organ_jitter: float, n: int = 8):
    image, label = _two_organs()
    dataset = CropDataset([image], (24, 24, 12), n, [label], seed=0, organ_jitter=organ_jitter)
    return [dataset[i] for i in range(n)]


def test_each_organ_gets_its_own_offset_and_the_background_none():
    offsets = []
    for image, label in _crops(0.25):
        image = image.numpy()[0]
        first, second = image[5, 5, 5], image[17, 17, 5]  # organ centres, > 2 sigma inside
        assert abs(first - 0.5) <= 0.25 + 1e-6 and abs(second - 0.5) <= 0.25 + 1e-6
        assert np.allclose(image[4:8, 4:8, 4:8], first, atol=0.01)  # one offset per organ
        assert abs(image[21, 2, 5] - 0.5) < 1e-3          # background, far from both organs
        assert label.numpy().max() == 3                   # labels untouched
        offsets.append((first - 0.5, second - 0.5))
    offsets = np.array(offsets)
    assert np.ptp(offsets[:, 0]) > 0.1 and np.ptp(offsets[:, 1]) > 0.1  # drawn per crop
    assert not np.allclose(offsets[:, 0], offsets[:, 1])                 # and per organ


def test_the_shift_adds_no_sharp_edge_at_an_organ_border():
    image, _ = _crops(0.25)[0]
    profile = image.numpy()[0, :, 5, 5]   # across organ 1's border at x = 10
    assert np.max(np.abs(np.diff(profile))) < 0.5 * abs(profile[5] - 0.5)


def test_without_organ_jitter_crops_are_unchanged():
    for image, _ in _crops(0.0, n=3):
        assert np.all(image.numpy() == 0.5)
