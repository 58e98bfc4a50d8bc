"""Pretraining and segmentation run on the preset's fixed model grid, whatever the images'
spacing: the demo shows 256 x 256 phantoms while its models work at 6 x 6 x 7.5 mm."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from medical.demo import SIZES
from medical.io import find_cases, load_volume
from medical.phantom import simulate_dataset
from medical.presets import SMALL_SPACING, preset
from medical.pretrain import pretrain
from medical.transforms import Preprocessor, ras_spacing


def test_small_preset_pretrains_on_its_fixed_grid_not_the_images(tmp_path):
    data = simulate_dataset(tmp_path / "ct", 3, seed=0, shape=(64, 64, 24))
    spacing = ras_spacing(load_volume(find_cases(data)[0].image).affine)
    assert abs(spacing[0] - SMALL_SPACING[0]) > 0.3  # the images are on another grid
    pre_config, seg_config = preset("small")
    assert seg_config.spacing == SMALL_SPACING
    pre_config = replace(pre_config, max_epochs=1, samples_per_epoch=2, batch_size=2)
    scorer = pretrain(data, None, pre_config, progress=False)
    assert tuple(scorer.preprocess.spacing) == SMALL_SPACING
    grid = Preprocessor(scorer.preprocess)(load_volume(find_cases(data)[0].image))["image"]
    np.testing.assert_allclose(ras_spacing(grid.affine), SMALL_SPACING, atol=1e-3)


def test_demo_shows_ct_sized_phantoms_and_trains_on_a_budget():
    spec = SIZES["small"]
    assert min(spec.test_shape[:2]) >= 256
    _, seg_config = preset(spec.preset)
    # the training phantoms need not be finer than the model grid: about 6 mm pixels
    assert 420 / max(spec.train_shape[:2]) >= 0.8 * SMALL_SPACING[0]
    assert spec.pretrain_epochs < preset(spec.preset)[0].max_epochs


def test_the_small_demo_keeps_enough_healthy_cases_to_flag_at_fdr_0_1():
    """The calibration phantoms calibrate the CT anomaly model: with fewer than 9 the
    demo's CT run could never flag a case at FDR 0.1."""
    from core.calibration import ScoreCalibration

    spec = SIZES["small"]
    assert spec.calibration_cases >= ScoreCalibration().scores_needed(0.1) == 9
