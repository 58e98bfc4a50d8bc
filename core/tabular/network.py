"""The tabular masked autoencoder: a plain ``nn.Module`` over numeric and categorical cells.

Internally columns are ordered numeric first, then categorical. A numeric cell enters as
its standardised value, a categorical cell as a learned embedding (code 0 = "unknown",
used for categories not seen in training). A soft keep mask ``(B, C)`` scales every cell
(0 = hidden) and is also given to the encoder, so the network knows what it must rebuild.

Example:
    >>> net = TabularMaskedAutoencoder(TabularAEConfig(n_numeric=3, cardinalities=[5]))
    >>> out = net(torch.randn(8, 3), torch.randint(0, 5, (8, 1)), torch.ones(8, 4))
    >>> net.column_errors(out, torch.randn(8, 3), torch.randint(0, 5, (8, 1))).shape
    torch.Size([8, 4])
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .learned_masks import LearnedMaskGenerator


@dataclass
class TabularAEConfig:
    """Shape and size of the network (saved in bundles)."""

    n_numeric: int
    cardinalities: list[int] = field(default_factory=list)  # codes per categorical column
    embedding_dim: int = 4
    hidden: int = 64
    latent: int = 16

    @property
    def n_columns(self) -> int:
        return self.n_numeric + len(self.cardinalities)

    @property
    def n_inputs(self) -> int:
        return self.n_numeric + self.embedding_dim * len(self.cardinalities)


@dataclass
class TabularReconstruction:
    """Network output: rebuilt numbers ``(B, n_numeric)`` and per-column logits."""

    numeric: torch.Tensor
    logits: list[torch.Tensor]


class TabularMaskedAutoencoder(nn.Module):
    """MLP encoder-decoder that rebuilds all cells of a (partly hidden) row."""

    def __init__(self, config: TabularAEConfig):
        super().__init__()
        self.config = config
        self.embeddings = nn.ModuleList(nn.Embedding(c, config.embedding_dim)
                                        for c in config.cardinalities)
        n_out = config.n_numeric + sum(config.cardinalities)
        self.encoder = nn.Sequential(nn.Linear(config.n_inputs + config.n_columns, config.hidden),
                                     nn.LeakyReLU(0.1), nn.Linear(config.hidden, config.latent))
        self.decoder = nn.Sequential(nn.LeakyReLU(0.1), nn.Linear(config.latent, config.hidden),
                                     nn.LeakyReLU(0.1), nn.Linear(config.hidden, n_out))

    def features(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Unmasked row features ``(B, n_inputs)``: numbers then embeddings."""
        parts = [numeric] + [emb(codes[:, j]) for j, emb in enumerate(self.embeddings)]
        return torch.cat(parts, dim=1)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor,
                keep: torch.Tensor) -> TabularReconstruction:
        """Rebuild rows from their visible cells.

        Args:
            numeric: ``(B, n_numeric)`` standardised numbers.
            codes: ``(B, n_categorical)`` category codes.
            keep: ``(B, C)`` soft keep mask (1 = visible, 0 = hidden).
        """
        cfg = self.config
        keep_numeric = keep[:, : cfg.n_numeric]
        parts = [numeric * keep_numeric]
        for j, emb in enumerate(self.embeddings):
            parts.append(emb(codes[:, j]) * keep[:, cfg.n_numeric + j, None])
        h = self.encoder(torch.cat(parts + [1.0 - keep], dim=1))
        out = self.decoder(h)
        logits = list(torch.split(out[:, cfg.n_numeric:], cfg.cardinalities, dim=1)) \
            if cfg.cardinalities else []
        return TabularReconstruction(out[:, : cfg.n_numeric], logits)

    @staticmethod
    def column_errors(result: TabularReconstruction, numeric: torch.Tensor,
                      codes: torch.Tensor) -> torch.Tensor:
        """Per-column error ``(B, C)``: squared error (numbers), cross-entropy (categories)."""
        errors = [(result.numeric - numeric) ** 2]
        for j, logits in enumerate(result.logits):
            ce = nn.functional.cross_entropy(logits, codes[:, j], reduction="none")
            errors.append(ce[:, None])
        return torch.cat(errors, dim=1)


@torch.no_grad()
def seeded_init_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-draw every parameter from ``generator`` (no global seeds).

    Linear layers as torch's default (``U(+-1/sqrt(fan_in))``), embeddings ``N(0, 1)``,
    other matrices ``U(+-1/sqrt(rows))`` and other vectors zero.
    """
    done = set()
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            bound = sub.in_features ** -0.5
            for param in (sub.weight, sub.bias):
                if param is not None:
                    param.uniform_(-bound, bound, generator=generator)
                    done.add(id(param))
        elif isinstance(sub, nn.Embedding):
            sub.weight.normal_(generator=generator)
            done.add(id(sub.weight))
    for param in module.parameters():
        if id(param) in done:
            continue
        if param.dim() >= 2:
            bound = param.shape[-2] ** -0.5
            param.uniform_(-bound, bound, generator=generator)
        else:
            param.zero_()
    return module


class LearnedMaskAutoencoder(nn.Module):
    """MCM-style model: ``K`` learned masks + one shared masked autoencoder.

    ``forward`` returns the per-column reconstruction error averaged over the ``K`` masks,
    ``(B, C)``; that is the anomaly evidence (MCM scores the mean error over masks).
    """

    def __init__(self, config: TabularAEConfig, n_masks: int = 15, mask_hidden: int = 32,
                 hidden_ratio: float = 0.4):
        super().__init__()
        self.autoencoder = TabularMaskedAutoencoder(config)
        self.masks = LearnedMaskGenerator(config.n_inputs, config.n_columns, n_masks,
                                          mask_hidden, hidden_ratio)

    def masked_errors(self, numeric, codes, input_codes=None):
        """Errors ``(K, B, C)`` and keep masks ``(K, B, C)``.

        ``input_codes`` (default ``codes``) are what the encoder sees; training replaces a
        few with the unknown code so its embedding is learned.
        """
        input_codes = codes if input_codes is None else input_codes
        keep = self.masks(self.autoencoder.features(numeric, input_codes).detach())
        k, b, c = keep.shape
        rep = (numeric.repeat(k, 1), codes.repeat(k, 1), input_codes.repeat(k, 1))
        out = self.autoencoder(rep[0], rep[2], keep.reshape(k * b, c))
        errors = self.autoencoder.column_errors(out, rep[0], rep[1])
        return errors.view(k, b, c), keep

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        errors, _ = self.masked_errors(numeric, codes)
        return errors.mean(0)
