"""Organ segmentation: fine-tune the UNet with Dice + cross-entropy, infer by sliding window.

Fine-tuning starts from a ``ct-anomaly`` bundle's weights (masked-volume pretraining) or
from scratch, on the first ``n_labels`` labelled cases; ``core.training.fit`` runs the
loop with MONAI's ``DiceCELoss`` on random crops (most centred on organ voxels); given
unlabelled volumes, plus masked consistency on their crops (``medical.consistency``).
Inference runs MONAI's ``SlidingWindowInferer`` (Gaussian blending,
``sw_batch_size >= 4``) over the model grid; the softmax is mapped back onto the input's
grid before the argmax.

Example:
    >>> seg = train_segmenter("data/medical/train", "models/medical/ct", n_labels=4,
    ...                       pretrained="models/medical/pretrained")   # doctest: +SKIP
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.bundle import load_bundle, save_bundle
from core.errors import DataValidationError, NotFittedError
from core.estimator import Estimator
from core.io import atomic_path
from core.runtime import NetworkPlacement, autocast, progress_bar
from core.training import TrainConfig, fit, is_main_process

from .anomaly import AnomalyScorer
from .consistency import ConsistencyConfig, PairedCrops, with_consistency
from .guard import InputReference, fragmentation_warnings
from .io import read_dataset_json
from .networks import NetworkConfig, build_network, load_weights, transfer_weights
from .postprocess import PostProcessing
from .reconstruction import unmasked_input
from .transforms import Preprocessor, PreprocessConfig, channel_argmax
from .training_cases import (CaseReader, first_labelled, labelled_cases, listed_for_training,
                             not_among, organ_calibration_cases, select_unlabelled)
from .volumes import CropDataset, prepare_case, spacing_and_images

BUNDLE_KIND = "ct-segmenter"
MIN_SW_BATCH = 4


@dataclass
class SegmentConfig:
    """Fine-tuning and inference settings.

    Args:
        network: the UNet (must match the pretrained one when fine-tuning).
        spacing: model grid; ``None`` = the pretrained bundle's, else the median spacing.
        samples_per_epoch, max_epochs, batch_size, lr, patience: loop settings (60 epochs:
            with 20 labelled phantoms the Dice of the labelled cases not trained on rose
            from 30 to 60 epochs and by less than half a point more to 90;
            ``bench.experiments.medical_epochs``).
        foreground: share of crops centred on an organ voxel.
        intensity_jitter: contrast/brightness augmentation range.
        organ_jitter: range of the random per-organ intensity offset (window units;
            ``medical.volumes.shift_organs``), 0 = off: on the phantoms it helped 2 labels
            of one contrast phase generalise to others, but cost 2 points of Dice at 8
            labels and did not change what pretraining adds (bench/README.md).
        overlap, sw_batch_size: sliding-window inference.
        pretrained_lr_scale: learning-rate factor for the weights taken from pretraining
            (the re-initialised layers keep ``lr``): with few labels, full-rate updates
            overwrite what pretraining learned before the new layers fit (0.3: of the
            recipes compared in bench/README.md, the only one better than scratch at 2 labels).
        encoder_only: take only the pretrained encoder (down path); the decoder starts fresh.
        consistency: masked consistency on unlabelled volumes (``medical.consistency``),
            used only when :func:`train_segmenter` is given unlabelled cases.
        seed: crops and the loop.
    """

    network: NetworkConfig = field(default_factory=NetworkConfig)
    spacing: tuple[float, float, float] | None = None
    samples_per_epoch: int = 64
    max_epochs: int = 60
    batch_size: int = 2
    lr: float = 2e-3
    patience: int = 10
    foreground: float = 0.7
    intensity_jitter: float = 0.1
    organ_jitter: float = 0.0
    overlap: float = 0.25
    sw_batch_size: int = 4
    pretrained_lr_scale: float = 0.3
    encoder_only: bool = True
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    seed: int = 0


def dice_ce_loss():
    """``loss_fn`` for ``fit``: MONAI ``DiceCELoss`` on the full-image (nothing hidden) input."""
    from monai.losses import DiceCELoss  # heavy optional dependency

    criterion = DiceCELoss(to_onehot_y=True, softmax=True)

    def loss_fn(model, batch, generator):
        image, label = batch  # (B, 1, x, y, z) float, (B, 1, x, y, z) int64
        logits = model(unmasked_input(image))
        return criterion(logits, label)

    return loss_fn


class Segmenter(NetworkPlacement, Estimator):
    """An organ segmenter on a fixed model grid (``core.estimator.Estimator``'s bundles).

    Args:
        network_config, preprocess: saved configuration.
        labels: ``{1: "liver", ...}``.
        overlap, sw_batch_size: sliding-window inference.
        seed: seeds the initial weights.

    Fitted state (by :meth:`fit` or ``load``): ``provenance_`` (the ``training`` record
    kept in the bundle), ``input_reference_`` (``medical.guard.InputReference`` of the
    training volumes, set by :func:`train_segmenter`; ``None``: no field-of-view and
    histogram warnings), ``postprocessing_`` (``medical.postprocess.PostProcessing``
    fitted on the validation cases by :meth:`fit_postprocessing`; ``None``: labels as the
    network gives them, no fragmentation warning) and, after :meth:`fit`, ``history_`` and
    ``transferred_``.

    A segmenter has no anomaly score and so no calibration: it writes its own
    :meth:`save`/:meth:`load` around the base's ``_bundle_state``/``_from_bundle``, and
    is fitted once it has a ``provenance_``.

    Like :class:`medical.anomaly.AnomalyScorer`, the network runs where it lives
    (:attr:`device`, :meth:`to`) with ``precision``; neither is saved.
    """

    bundle_kind = "ct-segmenter"
    bundle_version = 3      # 3: the post-processing decisions (medical.postprocess) are saved

    def __init__(self, network_config: NetworkConfig, preprocess: PreprocessConfig,
                 labels: dict[int, str], overlap: float = 0.25, sw_batch_size: int = 4,
                 seed: int = 0):
        if sw_batch_size < MIN_SW_BATCH:
            raise DataValidationError(f"sw_batch_size must be >= {MIN_SW_BATCH}, got {sw_batch_size}")
        self.network_config = network_config
        self.preprocess = preprocess
        self.labels = {int(k): v for k, v in labels.items()}
        self.overlap = overlap
        self.sw_batch_size = sw_batch_size
        self.seed = seed
        self.network = build_network(network_config, out_channels=len(self.labels) + 1, seed=seed)
        self.input_reference_: InputReference | None = None
        self.postprocessing_: PostProcessing | None = None

    def inferer(self):
        from monai.inferers import SlidingWindowInferer  # heavy optional dependency

        return SlidingWindowInferer(self.network_config.roi_size, sw_batch_size=self.sw_batch_size,
                                    overlap=self.overlap, mode="gaussian",
                                    sw_device=self.device, device=self.device)

    def fit(self, prepared, config: SegmentConfig, init_state: dict | None = None,
            progress: bool | None = None, unlabelled=()):
        """Fine-tune on prepared, labelled cases (``init_state``: pretrained weights), on
        this segmenter's device and precision (:meth:`to`); with prepared ``unlabelled``
        cases, plus ``config.consistency``'s masked consistency on them."""
        params = None
        if init_state is not None:
            copied = transfer_weights(init_state, self.network, config.encoder_only)
            self.transferred_ = len(copied)
            if config.pretrained_lr_scale != 1.0:
                named = list(self.network.named_parameters())
                params = [{"params": [p for k, p in named if k in copied],
                           "lr": config.lr * config.pretrained_lr_scale},
                          {"params": [p for k, p in named if k not in copied]}]
        images = [p.image.as_tensor().numpy() for p in prepared]
        labels = [p.label.numpy() for p in prepared]
        roi = self.network_config.roi_size
        dataset = CropDataset(images, roi, config.samples_per_epoch, labels, config.foreground,
                              seed=config.seed, intensity_jitter=config.intensity_jitter,
                              organ_jitter=config.organ_jitter)
        val = CropDataset(images, roi, max(4, config.samples_per_epoch // 8), labels,
                          config.foreground, seed=config.seed + 7, fixed=True)
        loss_fn = dice_ce_loss()
        if unlabelled:
            dataset = PairedCrops(dataset, CropDataset(
                [p.image.as_tensor().numpy() for p in unlabelled], roi, config.samples_per_epoch,
                seed=config.seed + 11, intensity_jitter=config.intensity_jitter))
            loss_fn = with_consistency(loss_fn, self.network, config.consistency)
        train_config = TrainConfig(max_epochs=config.max_epochs, batch_size=config.batch_size,
                                   lr=config.lr, patience=config.patience, seed=config.seed,
                                   progress=progress, weight_decay=1e-5,
                                   device=str(self.device), precision=self.precision)
        self.history_ = fit(self.network, dataset, loss_fn, train_config, val_dataset=val,
                            params=params)
        self.network.eval()
        self.provenance_ = {"training": {
            "cases": [p.case.name for p in prepared], "pretrained": init_state is not None,
            "epochs": len(self.history_.train_loss), "max_epochs": config.max_epochs,
            "seed": config.seed, "unlabelled_cases": [p.case.name for p in unlabelled],
            "consistency": config.consistency.to_dict() if unlabelled else None}}
        return self

    @torch.no_grad()
    def predict_proba(self, image) -> torch.Tensor:
        """Softmax ``(C, x, y, z)`` of a model-grid image ``(1, x, y, z)``."""
        x = torch.as_tensor(np.asarray(image), dtype=torch.float32)[None].to(self.device)
        self.network.eval()
        with autocast(self.device, self.precision):
            logits = self.inferer()(unmasked_input(x), self.network)
        return torch.softmax(logits.float(), dim=1)[0].cpu()

    def segment(self, image) -> tuple[torch.Tensor, np.ndarray, list[str]]:
        """Post-processed softmax ``(C, x, y, z)`` of a model-grid image ``(1, x, y, z)``,
        its argmax labels, and the guard's fragmentation warning lines
        (``medical.guard.fragmentation_warnings``).

        The one place where no :attr:`postprocessing_` (no validation cases) is handled:
        the labels are the network's, and there is no reference to warn against.
        """
        probs = self.predict_proba(image)
        if self.postprocessing_ is None:
            return probs, channel_argmax(probs).numpy(), []
        labels, shares = self.postprocessing_.apply(probs, self.labels)
        return probs, labels, fragmentation_warnings(shares, self.postprocessing_.fragment_max)

    def fit_postprocessing(self, prepared) -> "Segmenter":
        """Decide per organ whether to keep only its largest part, and fit the fragmentation
        reference, on labelled ``prepared`` cases it did not train on (none: decide nothing;
        an iterable, so one case at a time is loaded)."""
        predictions, truths = [], []          # model-grid uint8 label maps
        for p in prepared:
            predictions.append(channel_argmax(self.predict_proba(p.image.as_tensor())).numpy())
            truths.append(p.label.numpy()[0].astype(np.uint8))
        post = PostProcessing.fit(predictions, truths, self.labels)
        self.postprocessing_ = post if post.cases else None   # no validation cases: none
        return self

    # --- bundles --------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if getattr(self, "provenance_", None) is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit() or load() first")

    def _bundle_state(self) -> tuple[dict, dict]:
        config = {"network": self.network_config.to_dict(), "preprocess": self.preprocess.to_dict(),
                  "labels": {str(k): v for k, v in self.labels.items()}, "overlap": self.overlap,
                  "sw_batch_size": self.sw_batch_size,
                  "input_reference": (self.input_reference_.to_dict()
                                      if self.input_reference_ is not None else None),
                  "postprocessing": (self.postprocessing_.to_dict()
                                     if self.postprocessing_ is not None else None),
                  **self.provenance_}
        return config, self.network.state_dict()

    @classmethod
    def _from_bundle(cls, config: dict, tensors: dict) -> "Segmenter":
        segmenter = cls(NetworkConfig.from_dict(config["network"]),
                        PreprocessConfig.from_dict(config["preprocess"]), config["labels"],
                        config["overlap"], config["sw_batch_size"])
        load_weights(segmenter.network, tensors)
        segmenter.network.eval()
        segmenter.provenance_ = {"training": config["training"]}
        reference = config["input_reference"]
        segmenter.input_reference_ = InputReference.from_dict(reference) if reference else None
        post = config["postprocessing"]
        segmenter.postprocessing_ = PostProcessing.from_dict(post) if post else None
        return segmenter

    def save(self, path):
        """Save as a bundle directory (no calibration: a segmenter has no anomaly score)."""
        self._check_fitted()
        return save_bundle(path, self.bundle_kind, *self._bundle_state(), self.bundle_version)

    @classmethod
    def load(cls, path, device="cpu", precision: str = "fp32") -> "Segmenter":
        """Load a bundle onto CPU (weights are saved from CPU), then move it to ``device``."""
        config, tensors = load_bundle(path, cls.bundle_kind, cls.bundle_version)
        return cls._from_bundle(config, tensors).to(device, precision)


def train_segmenter(data, out=None, pretrained=None, n_labels: int | None = None,
                    config: SegmentConfig | None = None, progress: bool | None = None,
                    cases=None, calibration_cases=None, device="auto",
                    precision: str = "fp32", validation_cases=None,
                    unlabelled_cases=None) -> Segmenter:
    """Fine-tune (or train from scratch) and save ``out/segmenter`` (+ ``out/anomaly``).

    With ``pretrained`` (a ``ct-anomaly`` bundle) the weights initialise the network, and
    the anomaly model is saved to ``out/anomaly`` so ``infer`` produces anomaly maps too:
    calibrated with this segmenter for organ scoring (``medical.organ_scoring``) on
    healthy cases neither the segmenter nor the pretrained network trained on
    (``calibration_cases``; by default the lesion-free cases of ``data`` beyond both, or
    with a warning beyond the training ones alone when fewer than 2 are left:
    ``medical.training_cases.organ_calibration_cases``), or, with fewer than 2 such cases,
    copied as pretrained (scoring without organs).

    The input guard's reference (``medical.guard.InputReference``: fields of view, body
    HU distribution, organ volumes) is fitted on every labelled case of ``data``, not only
    the ``n_labels`` trained on, so its spread is that of the training data.

    The labelled cases of ``data`` beyond the ``n_labels`` trained on are the validation
    cases of the post-processing (``medical.postprocess``: per organ, keep only its largest
    part where that raises their Dice; how fragmented each organ's label is on
    them); ``validation_cases`` replaces them (``[]``: decide nothing, as a benchmark that
    scores the network's own labels does). With none (every labelled case trained on),
    nothing is post-processed and no fragmentation warning is given.

    ``unlabelled_cases`` (volumes whose labels, if any, are not read) turn on masked
    consistency (``config.consistency``, ``medical.consistency``): an EMA teacher labels
    their crops, the student must give its confident labels with patches hidden. Those
    among the training cases are left out, and so are the validation and calibration
    cases, which must stay unseen (``--unlabelled`` may name ``data`` itself); the
    training record (``provenance_``) counts them by role in ``unlabelled_left_out``.

    Which case has which role is decided in ``medical.training_cases``, where a case is
    its image file however its path is written (``medical.io.Case.key``): a training case
    given through a link is not validated, calibrated or unlabelled-trained on again.

    Training, the organ calibration and both networks run on one ``device`` (auto, cpu,
    cuda, cuda:N) with ``precision`` (fp32, or bf16 autocast on CUDA); ``progress``: bars
    on stderr (None: only on a terminal; False: never).
    """
    config = config or SegmentConfig()
    init_state, network_config, spacing, scorer = None, config.network, config.spacing, None
    if pretrained is not None:
        scorer = AnomalyScorer.load(pretrained, device, precision)
        init_state, network_config = scorer.network.state_dict(), scorer.network_config
        spacing = spacing or scorer.preprocess.spacing
    listed = listed_for_training(data, scorer, spacing, out, calibration_cases)
    labelled = labelled_cases(data, listed=listed)
    cases = list(cases) if cases is not None else first_labelled(labelled, n_labels, data)
    validation_cases = (list(validation_cases) if validation_cases is not None
                        else not_among(labelled, cases))
    calibration = organ_calibration_cases(data, listed, cases, calibration_cases, scorer,
                                          spacing, out)
    # before any volume is read; the validation and calibration cases must stay unseen
    unlabelled_cases, left_out = select_unlabelled(unlabelled_cases, {
        "training": cases, "validation": validation_cases, "calibration": calibration})
    spacing, images = spacing_and_images(cases, spacing)     # the images prepared below
    preprocess = PreprocessConfig(spacing=spacing)
    labels = read_dataset_json(data)["labels"] if (Path(data) / "dataset.json").is_file() else None
    held_out = calibration if is_main_process() else []    # under torchrun rank 0 calibrates
    reader = CaseReader(Preprocessor(preprocess), keep=held_out)
    # each raw volume handed out once, so freed as it is prepared
    prepared = [reader.prepare(c, images.pop(c.key, None)) for c in cases]
    if labels is None:
        top = int(max(int(p.label.max()) for p in prepared))
        labels = {i: f"label_{i}" for i in range(1, top + 1)}
    segmenter = Segmenter(network_config, preprocess, labels, overlap=config.overlap,
                          sw_batch_size=config.sw_batch_size, seed=config.seed)
    # the image alone; none is kept by the reader (select_unlabelled left the held-out ones out)
    unlabelled = [prepare_case(c, reader.preprocessor) for c in progress_bar(
        unlabelled_cases, desc="unlabelled", unit="case", show=progress)]
    segmenter.to(device, precision).fit(prepared, config, init_state, progress, unlabelled)
    segmenter.provenance_["training"]["unlabelled_left_out"] = left_out
    segmenter.fit_postprocessing(reader.prepare(c) for c in validation_cases)
    segmenter.input_reference_ = reader.input_reference(labelled, labels)
    if out is not None and is_main_process():  # under torchrun, rank 0 writes the model
        with atomic_path(out) as tmp:
            tmp.mkdir()
            segmenter.save(tmp / "segmenter")
            if held_out:
                # the pretraining record travels in the scorer's provenance_; the held-out
                # cases validated on above are not read again
                scorer.calibrate(held_out, segmenter=segmenter, progress=progress,
                                 read=reader.prepare_image)
                scorer.save(tmp / "anomaly")
            elif pretrained is not None:
                shutil.copytree(pretrained, tmp / "anomaly")
    return segmenter
