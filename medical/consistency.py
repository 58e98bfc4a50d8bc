"""Masked consistency on unlabelled volumes while fine-tuning the segmenter (MIC).

After Hoyer et al., "MIC: Masked Image Consistency for Context-Enhanced Domain Adaptation"
(CVPR 2023): an exponential moving average (EMA) of the student network, the teacher,
segments an unlabelled crop as it is; the student must give the teacher's confident labels
from the same crop with random 3-D patches hidden (the in-painting mask,
``medical.reconstruction.draw_hidden``). Unlabelled volumes show what a few labelled ones
cannot (other contrast phases, body habitus, fields of view), and hiding patches makes the
student infer a label from its context. One departure from MIC: voxels the teacher is unsure
of are dropped (a hard gate, :func:`confident_cross_entropy`), where MIC keeps every pixel
and scales the whole term by the confident share.

Each training batch carries one unlabelled crop per labelled crop (:class:`PairedCrops`);
the loss (:func:`with_consistency`) adds ``weight`` x the masked-consistency term to the
supervised loss. Validation batches hold labelled crops only and get the supervised loss.

Example:
    >>> loss_fn = with_consistency(dice_ce_loss(), network, ConsistencyConfig())  # doctest: +SKIP
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from core.io import tuples_as_lists
from core.masking import PatchMasker

from .reconstruction import draw_hidden, masked_input, unmasked_input


@dataclass(frozen=True)
class ConsistencyConfig:
    """Masked-consistency settings (used when unlabelled volumes are given).

    Args:
        weight: factor of the consistency term in the loss.
        ema: the teacher's EMA decay (after the mean-teacher warm-up ``1 - 1/(t + 1)``).
        confidence: teacher softmax maximum below which a voxel is ignored.
        mask_block: edge (voxels) of the hidden blocks; the presets use their in-painting
            blocks (``AnomalyConfig.training_block``).
        mask_ratio: share of the blocks hidden.
    """

    weight: float = 1.0
    ema: float = 0.99
    confidence: float = 0.9
    mask_block: tuple[int, int, int] = (8, 8, 6)
    mask_ratio: float = 0.5

    def to_dict(self) -> dict:
        return tuples_as_lists(asdict(self))

    def masker(self) -> PatchMasker:
        return PatchMasker(patch_size=tuple(self.mask_block), ratio=self.mask_ratio, ndim=3)


class EmaTeacher:
    """The teacher: a copy of the student whose weights follow the student's by EMA.

    The first :meth:`update` copies the student; update ``t`` (from 1) moves each weight
    ``w <- a w + (1 - a) w_student`` with ``a = min(1 - 1/(t + 1), ema)``, so early on the
    teacher follows the student closely (MIC's code does the same).
    """

    def __init__(self, ema: float):
        self.ema = ema
        self.network: nn.Module | None = None
        self.updates = 0

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        if self.network is None:
            self.network = copy.deepcopy(student).eval().requires_grad_(False)
        else:
            keep = min(1.0 - 1.0 / (self.updates + 1), self.ema)
            for mine, theirs in zip(self.network.state_dict().values(), student.state_dict().values()):
                if mine.is_floating_point():
                    mine.mul_(keep).add_(theirs.detach(), alpha=1.0 - keep)
                else:
                    mine.copy_(theirs)
        self.updates += 1

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """Softmax ``(B, C, x, y, z)`` of an unmasked batch ``image`` ``(B, 1, x, y, z)``."""
        logits = self.network(unmasked_input(image))
        return torch.softmax(logits.float(), dim=1)


def confident_cross_entropy(student_logits: torch.Tensor, teacher_probs: torch.Tensor,
                            confidence: float) -> torch.Tensor:
    """Cross-entropy of the student's logits ``(B, C, ...)`` against the teacher's argmax,
    summed over the voxels where the teacher's softmax maximum is at least ``confidence``
    and divided by the number of all voxels: a hard confidence gate (as FixMatch's), the
    confident share times their mean cross-entropy; unconfident voxels add nothing, not
    even gradient. This is not MIC's own weighting, which keeps every voxel's cross-entropy
    and scales it by one number, the confident share (``get_pseudo_label_and_weight`` in
    MIC's ``teacher_module.py``); that variant was not measured (bench/README.md)."""
    top, pseudo = teacher_probs.max(dim=1)                      # (B, x, y, z) each
    confident = (top >= confidence).float()
    ce = F.cross_entropy(student_logits.float(), pseudo, reduction="none")   # (B, x, y, z)
    return (ce * confident).sum() / confident.numel()


class PairedCrops(Dataset):
    """Item ``i``: labelled crop ``i`` ``(image, label)`` and unlabelled crop ``i``
    ``(image,)`` as one tuple ``(image, label, unlabelled_image)``; both datasets have the
    same length."""

    def __init__(self, labelled: Dataset, unlabelled: Dataset):
        if len(labelled) != len(unlabelled):
            raise ValueError(f"{len(labelled)} labelled crops but {len(unlabelled)} unlabelled ones")
        self.labelled, self.unlabelled = labelled, unlabelled

    def __len__(self) -> int:
        return len(self.labelled)

    def __getitem__(self, i: int):
        return (*self.labelled[i], *self.unlabelled[i])


def with_consistency(supervised, network: nn.Module, config: ConsistencyConfig):
    """``loss_fn`` for ``core.training.fit``: ``supervised(model, (image, label), generator)``
    plus ``config.weight`` x the masked-consistency term on a batch's unlabelled crops
    ``(B, 1, x, y, z)`` (its third tensor; a batch without one, validation, gets only the
    supervised loss). ``network`` is the student itself (the module ``fit`` trains); the
    teacher is updated from it at the start of every training step, before it labels the
    step's crops."""
    teacher, masker = EmaTeacher(config.ema), config.masker()

    def loss_fn(model, batch, generator):
        loss = supervised(model, batch[:2], generator)
        if len(batch) < 3:
            return loss
        unlabelled = batch[2]
        teacher.update(network)
        probs = teacher.predict(unlabelled)
        hidden = draw_hidden(masker, unlabelled, generator)
        student_logits = model(masked_input(unlabelled, hidden))
        return loss + config.weight * confident_cross_entropy(student_logits, probs, config.confidence)

    return loss_fn
