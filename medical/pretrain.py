"""Masked-volume self-supervised pretraining (MAE-style 3-D patch masking on a MONAI UNet).

The network sees a crop with a random half of its ``patch_size`` patches hidden (set to 0,
flagged in the indicator channel) and is trained, through ``core.training.fit``, to
predict each hidden voxel as a Gaussian: the mean by squared error, the log variance by
negative log-likelihood given the (detached) mean, over hidden voxels only. The variance learns where healthy anatomy is unpredictable
(organ borders, bowel gas, bone edges); the anomaly map can scale residuals by it
(``AnomalyConfig.noise_hu=None``). The mean is the context baseline plus the network's
correction (``reconstruction.predict_hidden``). Trained on
lesion-free volumes, the same network is the anomaly model: ``AnomalyScorer.fit`` trains
it and calibrates it on held-out healthy cases (conformal p-values and the SHAP baseline);
it is saved as a ``ct-anomaly`` bundle, whose weights also initialise the segmenter.

Example:
    >>> scorer = pretrain("data/medical/train", "models/medical/pretrained")  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.errors import DataValidationError
from core.training import is_main_process

from .anomaly import AnomalyScorer
from .anomaly_config import AnomalyConfig
from .io import find_cases
from .networks import NetworkConfig
from .training_cases import unseen_calibration
from .transforms import Preprocessor, PreprocessConfig
from .volumes import prepare_case, spacing_and_images


@dataclass
class PretrainConfig:
    """Everything ``pretrain`` needs besides the data.

    Args:
        network: the UNet.
        anomaly: masking and scoring.
        spacing: model grid (mm); ``None`` = median spacing of the training images.
        samples_per_epoch: random crops per epoch.
        max_epochs, batch_size, lr, patience: loop settings for ``core.training.fit``.
        calibration_fraction: share of healthy cases held out for calibration.
        contamination: expected anomaly share (sets the calibration threshold).
        seed: crops, masks and the split.
        checkpoint_dir, snapshot_epochs: where ``core.training.fit`` writes the best weights
            (``best.safetensors``) and, after each of ``snapshot_epochs``, the best weights so
            far (``epoch-<n>.safetensors``: shorter budgets read off one run); off by default.
    """

    network: NetworkConfig = field(default_factory=NetworkConfig)
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
    spacing: tuple[float, float, float] | None = None
    samples_per_epoch: int = 64
    max_epochs: int = 30
    batch_size: int = 2
    lr: float = 2e-3
    patience: int = 8
    calibration_fraction: float = 0.2
    contamination: float = 0.05
    seed: int = 0
    checkpoint_dir: str | None = None
    snapshot_epochs: tuple[int, ...] = ()


def healthy_cases(data, purpose: str = "pretraining") -> list:
    """Cases of ``data`` not known to hold lesions (``has_lesion`` false or unknown); at
    least 2, or an error naming what they were for (``purpose``)."""
    cases = [c for c in find_cases(data) if not c.has_lesion]
    if len(cases) < 2:
        raise DataValidationError(f"{data}: {purpose} needs at least 2 lesion-free cases, "
                                  f"found {len(cases)}")
    return cases


def calibration_split(items: list, config: PretrainConfig, data="the data") -> tuple[list, list]:
    """``(training, calibration)`` items: a seeded (``config.seed``) ``calibration_fraction``
    of ``items`` (at least one) calibrates, the rest trains. The items are cases, or studies
    (one body's phases), split as bodies so no body is on both sides.

    Raises:
        DataValidationError: nothing would be left to train on (naming ``data``).
    """
    order = np.random.default_rng(config.seed).permutation(len(items))
    n_cal = max(1, int(round(config.calibration_fraction * len(items))))
    if len(items) - n_cal < 1:
        raise DataValidationError(f"{data}: too few cases to hold out {n_cal} for calibration")
    return [items[i] for i in order[n_cal:]], [items[i] for i in order[:n_cal]]


def pretrain(data, out=None, config: PretrainConfig | None = None, progress: bool | None = None,
             cases=None, device="auto", precision: str = "fp32") -> AnomalyScorer:
    """Pretrain on unlabelled, lesion-free volumes; calibrate; save to ``out``.

    A seeded ``calibration_fraction`` of the cases calibrates, the rest trains; a
    calibration case that is also a training one (the same image file) is left out with a
    warning (``medical.training_cases.unseen_calibration``).

    Args:
        data: dataset root / directory / file (see ``medical.io.find_cases``).
        out: bundle directory (``None``: do not save).
        config: settings.
        progress: progress bars on stderr (None: only on a terminal; False: never).
        cases: use these ``Case`` objects instead of all healthy cases of ``data``.
        device: where training and calibration run (auto, cpu, cuda, cuda:N); the network
            stays there (move it with ``scorer.to``); the bundle does not record it.
        precision: ``"fp32"``, or ``"bf16"`` (CUDA autocast).

    Returns:
        The fitted :class:`AnomalyScorer`.
    """
    config = config or PretrainConfig()
    cases = list(cases) if cases is not None else healthy_cases(data)
    train_cases, cal_cases = calibration_split(cases, config, data)
    # cases given may list one image twice (find_cases lists each once), on both sides of the split
    cal_cases = unseen_calibration(cal_cases, {"pretraining": train_cases}, minimum=1)

    spacing, images = spacing_and_images(train_cases, config.spacing)
    scorer = AnomalyScorer(config.network, PreprocessConfig(spacing=spacing), config.anomaly,
                           config.contamination, seed=config.seed)
    pre = Preprocessor(scorer.preprocess)

    def read(case):    # training prepares each image from the median spacing's read
        return prepare_case(case, pre, image=images.pop(case.key, None))

    # one device for training and calibration alike
    scorer.to(device, precision).fit(train_cases, cal_cases, config, progress, read=read)
    if out is not None and is_main_process():  # under torchrun, rank 0 writes the model
        scorer.save(out)
    return scorer
