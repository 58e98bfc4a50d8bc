"""Fine-tuning from a pretrained bundle: which weights start from pretraining, and how fast
they move (the presets' few-label recipe, the path `unmask medical train --pretrained` runs)."""
from __future__ import annotations

from dataclasses import replace

import torch

from medical.anomaly import AnomalyScorer
from medical.networks import transferable_keys
from medical.presets import preset
from medical.pretrain import pretrain
from medical.segment import train_segmenter
from medical.training_cases import labelled_cases


def _pretrained(tiny_data, path):
    config, _ = preset("tiny")
    pretrain(tiny_data[0], path, replace(config, max_epochs=1, samples_per_epoch=4), progress=False)
    return AnomalyScorer.load(path).network.state_dict()


def _movement(segmenter, start: dict, keys) -> float:
    """Mean absolute change of the tensors ``keys`` from ``start``."""
    own = segmenter.network.state_dict()
    return float(torch.cat([(own[k] - start[k]).abs().flatten() for k in keys]).mean())


def test_the_presets_fine_tune_pretrained_weights_slower_than_new_ones(tiny_data, tmp_path):
    start = _pretrained(tiny_data, tmp_path / "pretrained")
    _, config = preset("tiny")
    config = replace(config, max_epochs=2, patience=2, samples_per_epoch=8)
    assert config.pretrained_lr_scale < 1.0
    cases = labelled_cases(tiny_data[0], 2)
    recipe = train_segmenter(tiny_data[0], None, tmp_path / "pretrained", config=config, cases=cases,
                             progress=False)
    plain = train_segmenter(tiny_data[0], None, tmp_path / "pretrained", cases=cases, progress=False,
                            config=replace(config, pretrained_lr_scale=1.0))
    copied = sorted(k for k in transferable_keys(start, recipe.network, config.encoder_only)
                    if k.endswith("weight"))
    assert copied  # the encoder came from pretraining
    # Adam's steps scale with the learning rate: the scaled weights move about that much less
    ratio = _movement(recipe, start, copied) / _movement(plain, start, copied)
    assert ratio < 0.5 * (1.0 + config.pretrained_lr_scale)
