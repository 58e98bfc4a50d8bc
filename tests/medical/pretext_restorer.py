"""A stand-in network for pretext-loss tests: it predicts a given target exactly, so a
loss at its floor shows what the loss asks for."""
from __future__ import annotations

import torch

from medical.presets import preset
from medical.reconstruction import LOG_VAR_RANGE, context_baseline, reconstruction_loss


class Restorer(torch.nn.Module):
    """Predicts ``target`` exactly from what it is shown (the correction to the context
    baseline of the visible voxels, computable from its input); with ``copy_visible`` it
    predicts the visible voxels as it sees them instead. Keeps its last input in ``shown``."""

    def __init__(self, target: torch.Tensor, copy_visible: bool = False):
        super().__init__()
        self.target = target
        self.copy_visible = copy_visible
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.shown = None

    def forward(self, x):
        seen, hidden = x[:, :1], x[:, 1:]  # seen = shown image * visible
        self.shown = x
        baseline = context_baseline(seen, hidden, (1.0, 1.0, 1.0))
        wanted = torch.where(hidden > 0, self.target, seen) if self.copy_visible else self.target
        log_var = torch.full_like(seen, LOG_VAR_RANGE[0])
        return torch.cat([wanted - baseline, log_var], dim=1) + 0 * self.anchor


def pretext_loss(pretext: str, model, image: torch.Tensor, seed: int = 0) -> float:
    """The tiny preset's pretraining loss of ``model`` on ``image`` for one seeded draw."""
    masker = preset("tiny")[0].anomaly.masker()
    loss = reconstruction_loss(masker, (1.0, 1.0, 1.0), pretext=pretext)
    with torch.no_grad():
        return float(loss(model, (image,), torch.Generator().manual_seed(seed)))
