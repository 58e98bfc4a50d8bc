"""Masked-volume self-supervised pretraining (MAE-style 3-D patch masking on a MONAI UNet).

The network sees a crop with a random half of its ``patch_size`` patches hidden (set to 0,
flagged in the indicator channel) and is trained, through ``core.training.fit``, to
predict each hidden voxel as a Gaussian: the mean by squared error, the log variance by
negative log-likelihood given the (detached) mean, over hidden voxels only. The variance learns where healthy anatomy is unpredictable
(organ borders, bowel gas, bone edges); the anomaly map can scale residuals by it
(``AnomalyConfig.noise_hu=None``). The mean is the context baseline plus the network's
correction (``anomaly.predict_hidden``). Trained on
lesion-free volumes, the same network is the anomaly model: after training it is
calibrated on held-out healthy cases (conformal p-values and the SHAP baseline) and saved
as a ``ct-anomaly`` bundle, whose weights also initialise the segmenter.

Example:
    >>> scorer = pretrain("data/medical/train", "models/medical/pretrained")  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.calibration import ScoreCalibration
from core.errors import DataValidationError
from core.runtime import progress_bar
from core.training import TrainConfig, fit, is_main_process

from .anomaly import AnomalyConfig, AnomalyScorer, body_mask, predict_hidden, reconstruction_nll
from .io import find_cases, load_volume
from .networks import NetworkConfig
from .transforms import Preprocessor, PreprocessConfig, median_spacing
from .volumes import CropDataset, prepare_cases


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


def reconstruction_loss(masker, patch_size, sigma=None):
    """``loss_fn`` for ``fit``: MSE over hidden voxels of a random patch mask per crop.

    The patch grid gets a random offset per batch: aligned to the crop it would line up
    with the UNet's stride grid, and the network would learn that shortcut and fail on
    windows whose patches are not aligned (sliding-window inference).
    """

    def loss_fn(model, batch, generator):
        image = batch[0]  # (B, 1, x, y, z)
        masker.set_random_state(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        spatial = tuple(image.shape[2:])
        big = masker.draw(tuple(image.shape[:2]) + tuple(s + p for s, p in zip(spatial, patch_size)))
        offset = [int(torch.randint(0, p, (1,), generator=generator)) for p in patch_size]
        window = (slice(None), slice(None)) + tuple(slice(o, o + s) for o, s in zip(offset, spatial))
        hidden = torch.from_numpy(np.ascontiguousarray(big[window], dtype=np.float32)).to(image.device)
        # (B, 2, x, y, z): mean (context baseline + network correction), log variance
        output = predict_hidden(model, image, hidden, sigma or tuple(p / 2.0 for p in patch_size))
        nll = reconstruction_nll(output, image)
        return (nll * hidden).sum() / hidden.sum().clamp_min(1.0)

    return loss_fn


def calibrate(scorer: AnomalyScorer, cases, contamination: float = 0.05,
              progress: bool | None = None) -> AnomalyScorer:
    """Fit the scorer's calibration and SHAP baseline on held-out healthy ``cases``.

    Call again after changing ``scorer.config`` (its scoring settings change the scores).
    Runs where the scorer's network is (``scorer.device``); ``progress``: a bar over cases.
    """
    pre = Preprocessor(scorer.preprocess)
    scores, medians = [], []
    for prepared in progress_bar(prepare_cases(cases, pre), desc="calibrate", total=len(cases),
                                 unit="case", show=progress):
        image = prepared.image.as_tensor().numpy()[0]
        error = scorer.error_map(prepared.image.as_tensor())
        body = body_mask(image)
        scores.append(scorer.case_score(error, body))
        scored = error[body & (error > 0)]  # the map is 0 outside scored tissue
        medians.append(float(np.median(scored)) if scored.size else 0.0)
    scorer.calibration = ScoreCalibration(contamination).fit(scores)
    scorer.healthy_error = float(np.median(medians))
    return scorer


def healthy_cases(data) -> list:
    """Cases of ``data`` not known to hold lesions (``has_lesion`` false or unknown)."""
    cases = [c for c in find_cases(data) if not c.has_lesion]
    if len(cases) < 2:
        raise DataValidationError(f"{data}: pretraining needs at least 2 lesion-free cases, "
                                  f"found {len(cases)}")
    return cases


def pretrain(data, out=None, config: PretrainConfig | None = None, progress: bool | None = None,
             cases=None, device="auto", precision: str = "fp32") -> AnomalyScorer:
    """Pretrain on unlabelled, lesion-free volumes; calibrate; save to ``out``.

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
    order = np.random.default_rng(config.seed).permutation(len(cases))
    n_cal = max(1, int(round(config.calibration_fraction * len(cases))))
    if len(cases) - n_cal < 1:
        raise DataValidationError(f"{data}: too few cases to hold out {n_cal} for calibration")
    cal_cases = [cases[i] for i in order[:n_cal]]
    train_cases = [cases[i] for i in order[n_cal:]]

    spacing = config.spacing or median_spacing([load_volume(c.image) for c in train_cases])
    preprocess = PreprocessConfig(spacing=tuple(spacing))
    pre = Preprocessor(preprocess)
    train = prepare_cases(train_cases, pre)
    roi = config.network.roi_size
    images = [p.image.as_tensor().numpy() for p in train]
    dataset = CropDataset(images, roi, config.samples_per_epoch, seed=config.seed,
                          intensity_jitter=0.0)
    val = CropDataset(images, roi, max(4, config.samples_per_epoch // 8), seed=config.seed + 7,
                      fixed=True)
    scorer = AnomalyScorer(config.network, preprocess, config.anomaly, seed=config.seed)
    scorer.to(device, precision)  # one device for training and calibration alike
    masker = config.anomaly.masker()
    train_config = TrainConfig(max_epochs=config.max_epochs, batch_size=config.batch_size,
                               lr=config.lr, patience=config.patience, seed=config.seed,
                               progress=progress, weight_decay=1e-5,
                               device=str(scorer.device), precision=precision)
    history = fit(scorer.network, dataset,
                  reconstruction_loss(masker, config.anomaly.patch_size, config.anomaly.context_sigma),
                  train_config,
                  val_dataset=val)
    scorer.network.eval()

    calibrate(scorer, cal_cases, config.contamination, progress)
    scorer.history_ = history
    if out is not None and is_main_process():  # under torchrun, rank 0 writes the model
        scorer.save(out, extra={"training": {
            "cases": [c.name for c in train_cases], "calibration_cases": [c.name for c in cal_cases],
            "epochs": len(history.train_loss), "best_val_loss": history.best_val_loss,
            "samples_per_epoch": config.samples_per_epoch, "seed": config.seed}})
    return scorer
