"""Models Genesis pretext (medical.genesis): distortions that keep a crop's content, a loss
whose target is the undistorted crop, and the setting saved with the pretrained bundle."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from medical.anomaly import AnomalyScorer
from medical.genesis import (SHUFFLE_BLOCK, apply_curve, bezier_curve, draw_distortion,
                             shuffle_blocks)
from medical.presets import preset
from medical.pretrain import pretrain
from medical.reconstruction import distort_batch
from pretext_restorer import Restorer, pretext_loss


def test_block_shuffle_moves_voxels_only_within_their_block():
    image = torch.rand(1, 8, 8, 4)
    keys = np.random.default_rng(0).random((4 * 4 * 2, int(np.prod(SHUFFLE_BLOCK))))
    shuffled = shuffle_blocks(image, keys)
    assert not torch.equal(shuffled, image)
    for i, j, k in np.ndindex(4, 4, 2):
        block = (slice(None), slice(2 * i, 2 * i + 2), slice(2 * j, 2 * j + 2), slice(2 * k, 2 * k + 2))
        assert torch.equal(shuffled[block].flatten().sort().values, image[block].flatten().sort().values)
    identity = np.tile(np.arange(8.0), (32, 1))
    assert torch.equal(shuffle_blocks(image, identity), image)


def test_intensity_curves_are_monotone_maps_of_the_unit_interval():
    rng = np.random.default_rng(3)
    x = torch.linspace(0, 1, 101)
    directions = set()
    for _ in range(20):
        y = apply_curve(x, bezier_curve(rng))
        steps = torch.diff(y)
        assert bool((steps >= -1e-6).all()) or bool((steps <= 1e-6).all())
        assert {round(float(y[0]), 4), round(float(y[-1]), 4)} == {0.0, 1.0}
        directions.add(float(y[-1]) > float(y[0]))
    assert directions == {True, False}  # inverted half the time


def test_distortions_are_drawn_from_the_seed_alone():
    a = draw_distortion(np.random.default_rng(7), (16, 16, 8), 1, 1, 1)
    b = draw_distortion(np.random.default_rng(7), (16, 16, 8), 1, 1, 1)
    assert np.array_equal(a.curve, b.curve) and np.array_equal(a.shuffle_keys, b.shuffle_keys)
    assert a.outpaint_box == b.outpaint_box and a.changes_appearance


def test_genesis_loss_asks_for_the_original_volume_everywhere_it_was_distorted():
    image = torch.rand(2, 1, 8, 8, 4)
    seeds = range(6)  # several draws: curves, shuffles, out-painting, whole crops
    copier = Restorer(image, copy_visible=True)
    # copying the visible voxels is enough for in-painting, not once they are distorted
    assert max(pretext_loss("inpaint", copier, image, seed) for seed in seeds) < 1e-5
    for pretext in ("genesis", "genesis_whole"):
        # the loss is at its floor (0: no error, smallest variance) only for the original
        assert max(pretext_loss(pretext, Restorer(image), image, seed) for seed in seeds) < 1e-5
        assert max(pretext_loss(pretext, copier, image, seed) for seed in seeds) > 1e-3


def test_whole_crops_hide_nothing():
    draw = draw_distortion(np.random.default_rng(0), (8, 8, 4), p_outpaint=0.0, p_hide_nothing=1.0)
    assert draw.hide_nothing and draw.outpaint_box is None
    image, hidden = torch.rand(1, 1, 8, 8, 4), torch.ones(1, 1, 8, 8, 4)
    _, mask, _ = distort_batch(image, hidden, np.random.default_rng(0), p_outpaint=0.0,
                               p_hide_nothing=1.0)
    assert float(mask.sum()) == 0.0


@pytest.mark.parametrize("pretext", ["genesis", "remap"])
def test_pretext_is_saved_with_the_pretrained_bundle(tiny_data, tmp_path, pretext):
    config, _ = preset("tiny")
    config = replace(config, max_epochs=1, samples_per_epoch=4,
                     anomaly=replace(config.anomaly, pretext=pretext))
    pretrain(tiny_data[0], tmp_path / "pretrained", config, progress=False)
    assert AnomalyScorer.load(tmp_path / "pretrained").config.pretext == pretext
