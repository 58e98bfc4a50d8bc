"""A small 2-D convolutional encoder–decoder for grids (U-Net style, CPU-friendly).

The first level patchifies (a 2x2, stride-2 convolution, as in ViT/MAE stems); every
further level halves the resolution with a strided 3x3 convolution; the coarsest level
adds dilated convolutions for context; the decoder upsamples and fuses the skip of the
same level. No layer runs at full resolution: the head sees the half-resolution features
next to the first ``skip_channels`` input channels folded 2x2 into channels
(pixel-unshuffle) and emits 2x2 outputs per position (pixel-shuffle, as in ESPCN). That
keeps every cell's own detail while 128x128 grids stay cheap on a CPU (use
channels-last tensors for speed).

Example:
    >>> net = GridEncoderDecoder(GridNetConfig(in_channels=10, out_channels=7))
    >>> net(torch.zeros(2, 10, 64, 64)).shape                 # doctest: +SKIP
    torch.Size([2, 7, 64, 64])
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class GridNetConfig:
    """Hyper-parameters of :class:`GridEncoderDecoder`.

    Args:
        in_channels: input channels.
        out_channels: output channels (e.g. class logits).
        widths: channels per level; ``len(widths)`` is the depth (each level halves H, W).
        blocks: extra 3x3 convolutions per level after the downsampling one.
        dilations: dilated 3x3 convolutions at the coarsest level.
        fuse_kernel: kernel of the decoder's fusion convolutions (1 or 3).
        head_width: hidden channels of the full-resolution 1x1 head.
        skip_channels: input channels (the first ones) passed to the full-resolution head;
            ``None`` passes all.
    """

    in_channels: int = 8
    out_channels: int = 7
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: int = 0
    dilations: tuple[int, ...] = (2, 4)
    fuse_kernel: int = 1
    head_width: int = 16
    skip_channels: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GridNetConfig":
        d = dict(d)
        d["widths"] = tuple(d["widths"])
        d["dilations"] = tuple(d["dilations"])
        return cls(**d)


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1, kernel: int = 3) -> nn.Sequential:
    padding = dilation * (kernel // 2) if kernel > stride else 0
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class GridEncoderDecoder(nn.Module):
    """Grid in, per-cell outputs out: ``(B, in, H, W) -> (B, out, H, W)``.

    H and W must be divisible by ``2 ** len(widths)``.
    """

    def __init__(self, config: GridNetConfig):
        super().__init__()
        self.config = config
        self.down = nn.ModuleList()
        cin = config.in_channels
        for i, width in enumerate(config.widths):
            first = _conv(cin, width, stride=2, kernel=2 if i == 0 else 3)
            layers = [first] + [_conv(width, width) for _ in range(config.blocks)]
            self.down.append(nn.Sequential(*layers))
            cin = width
        deepest = config.widths[-1]
        self.context = nn.Sequential(*[_conv(deepest, deepest, dilation=d) for d in config.dilations])
        self.up = nn.ModuleList()
        for i in range(len(config.widths) - 1, 0, -1):   # fuse level i into level i-1
            self.up.append(_conv(config.widths[i] + config.widths[i - 1], config.widths[i - 1],
                                 kernel=config.fuse_kernel))
        self.skip = config.in_channels if config.skip_channels is None else config.skip_channels
        self.head = nn.Sequential(
            nn.Conv2d(config.widths[0] + 4 * self.skip, config.head_width, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(config.head_width, 4 * config.out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fine = F.pixel_unshuffle(x[:, : self.skip], 2)        # (B, 4 * skip, H / 2, W / 2)
        return self.forward_from_stem(self.down[0](x), fine)

    def forward_from_stem(self, stem: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """Run everything after the first level.

        For callers with their own input stem (e.g. embeddings of categorical grids):

        Args:
            stem: level-0 features ``(B, widths[0], H / 2, W / 2)``.
            fine: per-position detail for the head ``(B, 4 * skip_channels, H / 2, W / 2)``.

        Returns:
            ``(B, out_channels, H, W)``.
        """
        h = stem
        skips = [h]
        for level in self.down[1:]:
            h = level(h)                                   # (B, w_i, H / 2^(i+1), W / 2^(i+1))
            skips.append(h)
        h = self.context(h)
        for j, fuse in enumerate(self.up):
            skip = skips[-2 - j]
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = fuse(torch.cat([h, skip], 1))
        out = self.head(torch.cat([h, fine], 1))              # (B, 4 * out, H / 2, W / 2)
        return F.pixel_shuffle(out, 2)                        # (B, out, H, W)
