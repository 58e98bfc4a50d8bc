"""Named configurations: ``tiny`` (tests, seconds), ``small`` (demo), ``default``.

Example:
    >>> pretrain_config, segment_config = preset("tiny")
"""
from __future__ import annotations

from dataclasses import replace

from core.errors import DataValidationError

from .anomaly_config import AnomalyConfig
from .consistency import ConsistencyConfig
from .networks import NetworkConfig
from .pretrain import PretrainConfig
from .segment import SegmentConfig

PRESETS = ("tiny", "small", "default")
SMALL_SPACING = (6.0, 6.0, 7.5)  # mm; the small preset's model grid


def preset(name: str, seed: int = 0) -> tuple[PretrainConfig, SegmentConfig]:
    """The pretraining and segmentation configs of preset ``name``."""
    if name == "tiny":  # 32x32x16 phantoms (~12 mm voxels)
        network = NetworkConfig(channels=(8, 16, 32), strides=(2, 2), num_res_units=0,
                                roi_size=(32, 32, 16))
        # trained to convergence here, so the predicted sd is the better error scale
        anomaly = AnomalyConfig(patch_size=(4, 4, 2), smooth_sigma=0.7, top_k_ml=10.0, noise_hu=None)
        pre = PretrainConfig(network, anomaly, samples_per_epoch=32, max_epochs=60, batch_size=4,
                             lr=5e-3, patience=60, seed=seed)
        seg = SegmentConfig(network, samples_per_epoch=32, max_epochs=15, batch_size=4, lr=5e-3,
                            patience=15, seed=seed)
    elif name == "small":  # a fixed 6 x 6 x 7.5 mm model grid, whatever the images' spacing
        network = NetworkConfig(channels=(16, 32, 64), strides=(2, 2), num_res_units=1,
                                roi_size=(48, 48, 32))
        anomaly = AnomalyConfig(patch_size=(6, 6, 4), top_k_ml=2.0)  # > the largest lesion
        pre = PretrainConfig(network, anomaly, spacing=SMALL_SPACING, samples_per_epoch=32,
                             max_epochs=40, seed=seed)
        seg = SegmentConfig(network, spacing=SMALL_SPACING, samples_per_epoch=32, max_epochs=10,
                            seed=seed)
    elif name == "default":
        pre, seg = PretrainConfig(seed=seed), SegmentConfig(seed=seed)
    else:
        raise DataValidationError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    # masked consistency hides the in-painting blocks
    consistency = ConsistencyConfig(mask_block=pre.anomaly.training_block,
                                    mask_ratio=pre.anomaly.mask_ratio)
    return pre, replace(seg, network=pre.network, consistency=consistency)
