"""The pretraining mask: ``mask_ratio`` of blocks of ``mask_block`` voxels hidden, apart
from the ``patch_size`` patches that scoring hides."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from medical.anomaly import AnomalyScorer
from medical.anomaly_config import AnomalyConfig
from medical.presets import preset
from medical.pretrain import pretrain
from medical.reconstruction import reconstruction_loss


def _runs_along_x(hidden: np.ndarray) -> list[int]:
    """Lengths of the runs of hidden voxels along x that touch neither end of the line."""
    lengths = []
    for line in hidden.reshape(hidden.shape[0], -1).T:
        edges = np.flatnonzero(np.diff(np.r_[0, line.astype(np.int8), 0]))
        for start, stop in zip(edges[::2], edges[1::2]):
            if start > 0 and stop < len(line):
                lengths.append(int(stop - start))
    return lengths


def test_the_mask_hides_its_ratio_of_whole_blocks():
    config = AnomalyConfig(patch_size=(4, 4, 2), mask_block=(8, 8, 4), mask_ratio=0.75)
    masker = config.masker()
    masker.set_random_state(0)
    hidden = masker.draw((2, 1, 32, 32, 16))  # a 4 x 4 x 4 grid of blocks per crop
    assert hidden.mean() == 0.75
    blocks = hidden.reshape(2, 1, 4, 8, 4, 8, 4, 4)
    assert np.all(blocks.min(axis=(3, 5, 7)) == blocks.max(axis=(3, 5, 7)))  # whole blocks


def test_without_a_block_the_mask_hides_scoring_patches():
    config = AnomalyConfig(patch_size=(4, 4, 2), mask_ratio=0.5)
    assert config.training_block == (4, 4, 2)
    assert config.masker().patch_size == (4, 4, 2)


class _HiddenProbe(torch.nn.Module):
    """Records the hidden channel the loss shows it; predicts zeros."""

    def __init__(self):
        super().__init__()
        self.hidden = None

    def forward(self, x):
        self.hidden = x[:, 1].numpy()
        return torch.zeros(x.shape[0], 2, *x.shape[2:])


def test_the_loss_hides_whole_blocks_at_a_random_offset():
    config = AnomalyConfig(patch_size=(4, 4, 2), mask_block=(8, 8, 4), mask_ratio=0.5)
    loss = reconstruction_loss(config.masker(), config.context_sigma)
    probe, runs = _HiddenProbe(), []
    for seed in range(4):
        loss(probe, (torch.rand(1, 1, 32, 32, 16),), torch.Generator().manual_seed(seed))
        runs += _runs_along_x(probe.hidden[0] > 0)
    assert runs and all(length % 8 == 0 for length in runs)


def test_the_mask_is_saved_with_the_pretrained_bundle(tiny_data, tmp_path):
    config, _ = preset("tiny")
    config = replace(config, max_epochs=1, samples_per_epoch=4,
                     anomaly=replace(config.anomaly, mask_block=(8, 8, 4), mask_ratio=0.75))
    pretrain(tiny_data[0], tmp_path / "pretrained", config, progress=False)
    loaded = AnomalyScorer.load(tmp_path / "pretrained").config
    assert (loaded.mask_block, loaded.mask_ratio) == ((8, 8, 4), 0.75)
    assert loaded.patch_size == config.anomaly.patch_size  # scoring keeps its patches
