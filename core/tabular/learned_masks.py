"""Learned, diverse masks in the style of MCM (Yin et al., ICLR 2024).

``K`` small mask networks each map a row to a soft *keep* mask over its columns; the
masked-reconstruction loss trains them jointly with the autoencoder, and a contrastive
diversity loss keeps the ``K`` masks different from one another, so that together they
probe many different column dependencies. Each mask is rescaled to keep on average
``1 - hidden_ratio`` of the columns, which rules out the trivial "keep everything" mask.

Example:
    >>> gen = LearnedMaskGenerator(n_inputs=10, n_columns=10, n_masks=15)
    >>> keep = gen(torch.randn(4, 10))          # (15, 4, 10) values in [0, 1]
    >>> loss = diversity_loss(keep)             # scalar, lower = more diverse
"""
from __future__ import annotations

import math

import torch
from torch import nn


class LearnedMaskGenerator(nn.Module):
    """``K`` mask networks (2-layer MLPs, evaluated together as one batched op).

    Args:
        n_inputs: width of the row features the masks are computed from.
        n_columns: number of maskable columns.
        n_masks: ``K``.
        hidden: hidden width of each mask network.
        hidden_ratio: average fraction of columns each mask hides.
    """

    def __init__(self, n_inputs: int, n_columns: int, n_masks: int = 15, hidden: int = 32,
                 hidden_ratio: float = 0.4):
        super().__init__()
        self.n_masks, self.hidden, self.hidden_ratio = n_masks, hidden, hidden_ratio
        self.first = nn.Linear(n_inputs, n_masks * hidden)
        self.second_weight = nn.Parameter(torch.empty(n_masks, hidden, n_columns))
        self.second_bias = nn.Parameter(torch.zeros(n_masks, 1, n_columns))
        nn.init.uniform_(self.second_weight, -1 / math.sqrt(hidden), 1 / math.sqrt(hidden))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Soft keep masks ``(K, B, C)`` in ``[0, 1]`` (1 = visible)."""
        batch = features.shape[0]
        h = torch.relu(self.first(features)).view(batch, self.n_masks, self.hidden)
        logits = torch.einsum("bkh,khc->kbc", h, self.second_weight) + self.second_bias
        keep = torch.sigmoid(logits)  # (K, B, C)
        target = 1.0 - self.hidden_ratio
        keep = keep * (target / keep.mean(-1, keepdim=True).clamp_min(1e-6))
        return keep.clamp(max=1.0)


def diversity_loss(keep: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """MCM's diversity loss: each mask's log-sum-exp similarity to the *other* masks.

    Args:
        keep: ``(K, B, C)`` masks.
        tau: temperature of the cosine similarities.

    Returns:
        Scalar; minimising it pushes the masks of each row apart.
    """
    k = keep.shape[0]
    if k < 2:
        return keep.new_zeros(())
    unit = nn.functional.normalize(keep, dim=-1).transpose(0, 1)  # (B, K, C)
    sim = unit @ unit.transpose(1, 2) / tau  # (B, K, K)
    eye = torch.eye(k, dtype=torch.bool, device=keep.device)
    sim = sim.masked_fill(eye, float("-inf"))
    return (torch.logsumexp(sim, dim=-1) - math.log(k - 1)).mean() * tau
