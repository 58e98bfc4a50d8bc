"""The occlusion network: categorical BEV frames in, per-cell class logits out.

Input: the current grid and K earlier grids already warped into the current ego frame,
as uint8 classes (255 = not observed), plus the ego speed. The stem is a *categorical
patch embedding*: for every 2x2 patch, each (frame, position-in-patch, class-or-unobserved)
has a learned vector and the patch's feature is their sum -- exactly a 2x2 stride-2
convolution over one-hot channels, computed with ``embedding_bag`` so no one-hot tensor
is ever built. A learned per-position embedding (the ego cell is fixed, so position
carries meaning: lanes, sensor range) and a speed term are added. The rest is core's
:class:`~core.grid_network.GridEncoderDecoder` (``forward_from_stem``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from core.grid_network import GridEncoderDecoder, GridNetConfig


@dataclass
class OcclusionNetConfig:
    """Hyper-parameters of :class:`OcclusionNet` (saved in the bundle)."""

    n_classes: int = 7
    n_frames: int = 4                    # current + K earlier frames
    grid_shape: tuple[int, int] = (128, 128)
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: int = 0
    dilations: tuple[int, ...] = (2, 4)
    head_width: int = 32

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "OcclusionNetConfig":
        d = dict(d)
        d["widths"], d["dilations"] = tuple(d["widths"]), tuple(d["dilations"])
        d["grid_shape"] = tuple(d["grid_shape"])
        return cls(**d)


@dataclass
class OcclusionOutput:
    """What inference returns: class probabilities ``(B, C, H, W)``."""

    probabilities: torch.Tensor


class OcclusionNet(nn.Module):
    """``forward(grids, speed) -> logits``; ``grids`` is ``(B, F, H, W)`` uint8, F = 1 + K."""

    def __init__(self, config: OcclusionNetConfig):
        super().__init__()
        self.config = config
        vocab = config.n_classes + 1                       # classes + "not observed"
        width = config.widths[0]
        self.backbone = GridEncoderDecoder(GridNetConfig(
            in_channels=config.n_frames * vocab, out_channels=config.n_classes,
            widths=config.widths, blocks=config.blocks, dilations=config.dilations,
            head_width=config.head_width, skip_channels=vocab))
        self.backbone.down[0] = nn.Identity()              # replaced by the embedding stem
        self.patch_embed = nn.Parameter(torch.zeros(config.n_frames * 4 * vocab, width))
        self.fine_embed = nn.Parameter(torch.zeros(4 * vocab, 4 * vocab))
        h, w = config.grid_shape
        self.position = nn.Parameter(torch.zeros(1, width, h // 2, w // 2))
        self.speed = nn.Parameter(torch.zeros(1, width, 1, 1))
        self.stem_norm = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=True))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> "OcclusionNet":
        """Seeded re-initialisation (PyTorch's default uniform bounds, no global seed)."""
        def uniform(t: torch.Tensor, bound: float):
            t.copy_((torch.rand(t.shape, generator=generator) * 2 - 1) * bound)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                bound = 1.0 / module.weight[0].numel() ** 0.5
                uniform(module.weight, bound)
                if module.bias is not None:
                    uniform(module.bias, bound)
        n_bag = self.config.n_frames * 4
        uniform(self.patch_embed, 1.0 / n_bag ** 0.5)
        uniform(self.fine_embed, 0.5)
        uniform(self.position, 0.1)
        uniform(self.speed, 0.1)
        return self

    @torch.no_grad()
    def set_class_prior(self, frequencies) -> "OcclusionNet":
        """Start the output biases at log class frequencies (faster, calmer early training)."""
        last = self.backbone.head[-1]                     # 4*C outputs, pixel-shuffled: c*4 + i
        prior = torch.log(torch.as_tensor(frequencies, dtype=torch.float32).clamp_min(1e-4))
        last.bias.copy_(prior.repeat_interleave(4))
        return self

    def _patch_indices(self, grids: torch.Tensor) -> torch.Tensor:
        """``(B, F, H, W)`` uint8 -> ``(B*H/2*W/2, F*4)`` rows of the embedding table,
        ordered frame, patch row, patch column (the order ``embedding_bag`` sums them in)."""
        b, f, h, w = grids.shape
        vocab = self.config.n_classes + 1
        idx = grids.clamp(max=vocab - 1)                                  # 255 -> not observed
        if torch.compiler.is_compiling():
            # a captured graph (torch.export for ONNX, which cannot view bytes as int16):
            # pixel-unshuffle gathers each patch into channels f*4 + 2*row + col
            patches = F.pixel_unshuffle(idx, 2).permute(0, 2, 3, 1)       # (B, h, w, F*4)
        else:
            # a patch row's two cells are adjacent bytes: the transposing copy moves them
            # as one int16 (half the elements of a uint8 copy, about 2.5x faster than pixel-unshuffle)
            pairs = idx.contiguous().view(torch.int16).view(b, f, h // 2, 2, w // 2)  # (B, F, h, 2, w)
            patches = pairs.permute(0, 2, 4, 1, 3).contiguous().view(torch.uint8)  # (B, h, w, F, 4)
        idx = patches.reshape(b * (h // 2) * (w // 2), f * 4).long()
        slots = torch.arange(f * 4, device=grids.device) * vocab
        return idx + slots

    def forward(self, grids: torch.Tensor, speed: torch.Tensor) -> torch.Tensor:
        b, f, h, w = grids.shape
        vocab = self.config.n_classes + 1
        rows = self._patch_indices(grids)
        stem = F.embedding_bag(rows, self.patch_embed, mode="sum")          # (B*h*w, width)
        stem = stem.view(b, h // 2, w // 2, -1).permute(0, 3, 1, 2)       # channels-last memory
        stem = stem + self.position + self.speed * (speed.float() / 10.0).view(b, 1, 1, 1)
        fine = F.embedding_bag(rows[:, :4], self.fine_embed, mode="sum")   # current frame only
        fine = fine.view(b, h // 2, w // 2, 4 * vocab).permute(0, 3, 1, 2)
        return self.backbone.forward_from_stem(self.stem_norm(stem), fine)

    @torch.no_grad()
    def predict(self, grids: torch.Tensor, speed: torch.Tensor) -> OcclusionOutput:
        self.eval()
        return OcclusionOutput(torch.softmax(self.forward(grids, speed), 1))
