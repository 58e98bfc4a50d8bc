"""Contrast-remap pretext (medical.contrast_remap): random non-monotone intensity maps, and a
loss whose target is the original, unmapped crop."""
from __future__ import annotations

import numpy as np
import torch

from medical import reconstruction
from medical.contrast_remap import MAX_SLOPE, draw_remap, draw_remaps, remap_intensities
from pretext_restorer import Restorer, pretext_loss


def _curve(seed: int) -> np.ndarray:
    """One drawn map evaluated on a fine ramp of [0, 1]."""
    x = torch.linspace(0, 1, 1001).view(1, 1, -1)
    knots_x, knots_y = draw_remaps(np.random.default_rng(seed), 1)
    return remap_intensities(x, knots_x, knots_y).flatten().numpy()


def test_maps_are_non_monotone_continuous_and_stay_in_the_unit_interval():
    for seed in range(50):
        y = _curve(seed)
        steps = np.diff(y)
        assert (steps > 1e-6).any() and (steps < -1e-6).any(), seed   # goes up and down
        assert np.abs(steps).max() <= MAX_SLOPE * 1e-3 + 1e-6        # continuous, slope bounded
        assert y.min() >= -1e-6 and y.max() <= 1 + 1e-6


def test_maps_swap_the_order_of_some_tissue_pairs():
    # liver ~100 HU vs kidney ~150 HU in the -175..250 window: 0.65 vs 0.76
    liver, kidney = (np.array([100.0, 150.0]) + 175) / 425
    x = np.linspace(0, 1, 1001)
    swapped = []
    for seed in range(40):
        y = _curve(seed)
        swapped.append(np.interp(kidney, x, y) < np.interp(liver, x, y))
    assert 0.2 < np.mean(swapped) < 0.8   # sometimes kept, sometimes swapped


def test_remap_keeps_shape_dtype_and_is_reproducible_per_seed():
    image = torch.rand(3, 1, 6, 5, 4, dtype=torch.float64)
    a = remap_intensities(image, *draw_remaps(np.random.default_rng(5), 3))
    b = remap_intensities(image, *draw_remaps(np.random.default_rng(5), 3))
    c = remap_intensities(image, *draw_remaps(np.random.default_rng(6), 3))
    assert a.shape == image.shape and a.dtype == image.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    # each crop gets its own map: crop 0 alone through the first map gives the same voxels
    knots_x, knots_y = draw_remaps(np.random.default_rng(5), 3)
    alone = remap_intensities(image[:1], knots_x[:1], knots_y[:1])
    assert torch.equal(alone, a[:1])
    assert not torch.allclose(remap_intensities(image[:1], knots_x[1:2], knots_y[1:2]), a[:1])


def test_remap_matches_numpy_interpolation():
    rng = np.random.default_rng(11)
    knots_x, knots_y = draw_remap(rng)
    x = rng.random(500)
    expected = np.interp(x, knots_x, knots_y)
    got = remap_intensities(torch.from_numpy(x).view(1, 1, -1), knots_x[None], knots_y[None])
    np.testing.assert_allclose(got.flatten().numpy(), expected, atol=1e-9)


def test_the_network_sees_remapped_crops_and_is_asked_for_the_original(monkeypatch):
    image = torch.rand(2, 1, 8, 8, 4)
    restorer = Restorer(image)
    for seed in range(4):
        # at the loss's floor (no error, smallest variance) only when predicting the original
        assert pretext_loss("remap", restorer, image, seed) < 1e-5
        shown, hidden = restorer.shown[:, :1], restorer.shown[:, 1:]
        visible = hidden == 0
        assert hidden.sum() > 0 and visible.sum() > 0
        # what it was shown is not the original crop (it was remapped)
        assert (shown - image).abs()[visible].mean() > 0.05
    # a network that predicts what it is shown (the remapped crop) pays on the hidden voxels
    shown_everywhere = Restorer(torch.zeros_like(image))
    # one loss for seed 0: it records what was shown, and the remapped crop whole it made
    mapped = _remapped_crop(lambda: pretext_loss("remap", shown_everywhere, image), monkeypatch)
    remapped_target = shown_everywhere.shown[:, :1]   # remapped visible voxels, 0 where hidden
    assert torch.allclose(mapped * (shown_everywhere.shown[:, 1:] == 0), remapped_target, atol=1e-6)
    assert pretext_loss("remap", Restorer(mapped), image) > 1e-3


def _remapped_crop(loss, monkeypatch):
    """Run ``loss()`` and return the remapped crop it made, read from the loss itself (its
    ``remap_intensities`` call recorded), not replayed from its order of random draws."""
    made = []

    def recorded(*args):
        made.append(remap_intensities(*args))
        return made[-1]

    with monkeypatch.context() as patch:
        patch.setattr(reconstruction, "remap_intensities", recorded)
        loss()
    assert len(made) == 1                  # one remap of the whole batch
    return made[0]


def test_remap_everywhere_also_asks_for_the_visible_voxels_unmapped():
    image = torch.rand(2, 1, 8, 8, 4)
    copier = Restorer(image, copy_visible=True)  # original on hidden, shown (remapped) on visible
    assert pretext_loss("remap", copier, image) < 1e-5
    assert pretext_loss("remap_everywhere", copier, image) > 1e-3
    assert pretext_loss("remap_everywhere", Restorer(image), image) < 1e-5

