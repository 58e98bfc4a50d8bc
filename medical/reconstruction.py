"""Masked-reconstruction numerics shared by the anomaly scorer, organ scoring,
segmentation and export: the fixed hiding schedule, the network's 2-channel input and
output (mean, log variance; the ``"inpaint_invariant"`` pretext adds embedding channels after
them, which only its loss reads), the context baseline, the training loss and the case-score
reduction.

Shapes: images and masks are ``(B, 1, x, y, z)`` tensors on the network side and
``(x, y, z)`` arrays on the map side.

Example:
    >>> passes = core_schedule((16, 16, 8), (4, 4, 2))   # 16 (hidden, core) mask pairs
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_fill_holes

from core.errors import DataValidationError

from .contrast_remap import draw_remaps, remap_intensities
from .dense_contrast import EMBED, WEIGHT, dense_info_nce
from .genesis import apply_distortion, draw_distortion, outpaint_mask
from .pretexts import (CROSS_PHASE_VARIANTS, GENESIS_VARIANTS, INVARIANT, PHASE_FILL, PRETEXTS,
                       REMAP_VARIANTS)


def core_schedule(shape, patch) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed ``(hidden, core)`` masks: every voxel lies in the core of a hidden patch once.

    The patch grid is shifted by half a patch along each axis (8 offsets); per offset two
    passes hide the two colours of a 3-D checkerboard of patches, so every hidden patch
    has visible face neighbours. ``core`` marks the hidden voxels in the central half of
    their patch (per axis ``[p/4, 3p/4)``); the cores of all passes cover every voxel,
    and a voxel in two cores keeps the later one.
    """
    idx = np.indices(tuple(shape))
    out = []
    for shift in np.ndindex(2, 2, 2):
        offset = [s * p // 2 for s, p in zip(shift, patch)]
        block = [(idx[a] + offset[a]) // patch[a] for a in range(3)]
        pos = [(idx[a] + offset[a]) % patch[a] for a in range(3)]
        central = np.all([(pos[a] >= patch[a] // 4) & (pos[a] < -(-3 * patch[a] // 4))
                          for a in range(3)], axis=0)
        colour = (block[0] + block[1] + block[2]) % 2
        for c in (0, 1):
            hidden = colour == c
            out.append((hidden, hidden & central))
    return out


LOG_VAR_RANGE = (-10.0, 4.0)


def split_output(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Network output ``(B, C, ...)`` -> mean ``(B, 1, ...)``, clamped log variance (channels
    0 and 1; any further channels are the embedding of ``"inpaint_invariant"``)."""
    return output[:, :1], output[:, 1:2].clamp(*LOG_VAR_RANGE)


class MeanAndLogVariance(torch.nn.Module):
    """``network`` with only its mean and log-variance channels (0 and 1) as output.

    What a sliding-window inferer blends over a volume: an ``"inpaint_invariant"`` network's
    16 embedding channels would be blended too, then dropped (at 512 x 512 x 300 a float32
    output of 18 channels is 5.7 GB, of 2 channels 0.63 GB). A module, not a function: the
    inferer reads the device from the network it is given, and this one's parameters
    (device, dtype) are the network's.
    """

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.network(x, *args, **kwargs)[:, :2]                 # (B, 2, x, y, z)


def reconstruction_nll(output: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Per-voxel training loss: squared error of the mean + Gaussian NLL of the variance.

    The variance term sees the mean through ``detach``, so the mean is fitted exactly as
    by plain MSE (a jointly learned variance would let the network give up on hard
    voxels, Seitzer et al. 2022) while the variance learns the expected squared error.
    The NLL is shifted by ``-min log variance / 2`` to stay >= 0, which
    ``core.training.fit``'s relative early-stopping test assumes.
    """
    mean, log_var = split_output(output)
    squared = (image - mean) ** 2
    nll = 0.5 * (log_var + squared.detach() * torch.exp(-log_var)) - 0.5 * LOG_VAR_RANGE[0]
    return squared + nll


def context_baseline(image: torch.Tensor, hidden: torch.Tensor, sigma) -> torch.Tensor:
    """Gaussian-weighted mean of the *visible* voxels around each voxel ``(B, 1, ...)``.

    Normalised convolution: ``G * (x visible) / G * visible``. Inside an organ it is the
    organ's intensity, rebuilt from the tissue around a hidden patch; the network only
    predicts the correction to it (borders, vessels), which it can do without knowing
    absolute intensities (instance norm discards them per window).
    """
    visible = 1.0 - hidden
    num, den = gaussian_smooth(image * visible, sigma), gaussian_smooth(visible, sigma)
    return num / den.clamp_min(1e-3)


def gaussian_smooth(volume: torch.Tensor, sigma) -> torch.Tensor:
    """Separable Gaussian filter (sigma in voxels per axis, replicate padding) of every
    channel of a ``(B, C, x, y, z)`` tensor on its own."""
    channels = volume.shape[1]
    for axis, s in enumerate(sigma):
        radius = max(1, int(round(3 * s)))
        t = torch.arange(-radius, radius + 1, dtype=volume.dtype, device=volume.device)
        kernel = torch.exp(-0.5 * (t / s) ** 2)
        kernel = (kernel / kernel.sum()).view(1, 1, *[-1 if a == axis else 1 for a in range(3)])
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        volume = F.conv3d(F.pad(volume, pad, mode="replicate"), kernel.repeat(channels, 1, 1, 1, 1),
                          groups=channels)
    return volume


def predict_hidden(network, image: torch.Tensor, hidden: torch.Tensor, sigma,
                   fill: torch.Tensor | None = None) -> torch.Tensor:
    """Network output ``(B, C, ...)`` with the context baseline (of ``image``'s visible
    voxels) added to the mean channel (channel 0); the others (log variance, any embedding)
    as the network gave them. ``fill``: what the input shows behind ``hidden``
    (:func:`masked_input`)."""
    output = network(masked_input(image, hidden, fill))
    baseline = context_baseline(image, hidden, sigma)
    return torch.cat([output[:, :1] + baseline, output[:, 1:]], dim=1)


def masked_input(image: torch.Tensor, hidden: torch.Tensor,
                 fill: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, 1, ...)`` image and ``(B, 1, ...)`` 0/1 hidden -> the 2-channel network input:
    the image with its hidden voxels set to 0, or to ``fill``'s ``(B, 1, ...)`` there (the
    ``"cross_phase_fill"`` pretext: another phase of the same window), then the hidden flag."""
    shown = image * (1.0 - hidden)
    return torch.cat([shown if fill is None else shown + fill * hidden, hidden], dim=1)


def unmasked_input(image: torch.Tensor) -> torch.Tensor:
    """:func:`masked_input` with nothing hidden: the input segmentation gives the network."""
    return masked_input(image, torch.zeros_like(image))


def body_mask(image: np.ndarray) -> np.ndarray:
    """Inside-the-patient mask of a windowed image ``(x, y, z)`` (gas pockets filled)."""
    return binary_fill_holes(image > 0.05)


def output_channels(pretext: str) -> int:
    """Output channels of the reconstruction UNet: mean and log variance, then, for
    ``"inpaint_invariant"``, its ``EMBED`` embedding channels (``medical.dense_contrast``)."""
    return 2 + (EMBED if pretext == INVARIANT else 0)


def draw_hidden(masker, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A 0/1 hidden mask ``(B, 1, x, y, z)`` for a batch ``image`` of the same shape: the
    ``masker``'s blocks (a 3-D ``core.masking.PatchMasker`` with a tuple ``patch_size``) on a
    grid shifted by a random offset, both drawn from ``generator``.

    The offset keeps the patch grid from lining up with the UNet's stride grid: the network
    would learn that shortcut and fail on windows whose patches are not aligned.
    """
    patch_size = tuple(masker.patch_size)  # (px, py, pz) voxels
    masker.set_random_state(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    spatial = tuple(image.shape[2:])
    big = masker.draw(tuple(image.shape[:2]) + tuple(s + p for s, p in zip(spatial, patch_size)))
    offset = [int(torch.randint(0, p, (1,), generator=generator)) for p in patch_size]
    window = (slice(None), slice(None)) + tuple(slice(o, o + s) for o, s in zip(offset, spatial))
    return torch.from_numpy(np.ascontiguousarray(big[window], dtype=np.float32)).to(image.device)


def reconstruction_loss(masker, sigma=None, pretext: str = "inpaint"):
    """``loss_fn`` for ``fit``: MSE over hidden voxels of a random patch mask per crop.

    ``masker`` is a 3-D ``core.masking.PatchMasker`` with a tuple ``patch_size``
    (:meth:`medical.anomaly_config.AnomalyConfig.masker`); its blocks also set the random
    offset's range and, without ``sigma``, the context baseline's width (half a block).

    The patch grid gets a random offset per batch (:func:`draw_hidden`).

    ``pretext="genesis"`` adds the Models Genesis distortions (:mod:`medical.genesis`):
    per crop, maybe an intensity curve and shuffled blocks on the input, and out-painting
    instead of the patch mask; the target stays the original crop, over every voxel when
    the visible ones were distorted (they must be restored too), else over hidden ones.

    ``pretext="remap"`` passes every crop through its own random non-monotone intensity map
    (:mod:`medical.contrast_remap`) before the patch mask; the target is the original,
    unmapped crop on the hidden voxels (``"remap_everywhere"``: on every voxel).

    ``pretext="inpaint_invariant"`` is in-painting as it is, plus ``WEIGHT`` x a dense
    InfoNCE loss (:mod:`medical.dense_contrast`) between the embedding channels of the crop
    and of a second view: the crop through its own random non-monotone map, behind the same
    mask (:func:`invariance_loss`).

    ``pretext="cross_phase"`` trains on multi-phase studies: each batch item is one window
    (same corner) of every phase of one body, ``(P, x, y, z)``. Per crop a source phase A
    and a target phase B != A are drawn (:func:`phase_pair`); the network sees A behind the
    patch mask and predicts B, on **every** voxel. It is not told which phase B is: with 3
    phases B is either of the other two, drawn uniformly, so the best it can learn is their
    mean (with 2 phases, the other phase itself; a retry should give it B as an input).
    Everywhere, not only on the hidden patches, because what the pretext is for lives at
    every voxel: a visible kidney voxel of a native crop must move towards the contrast
    phases' kidney intensity, which only a network that knows it is kidney (not liver, not
    muscle: their native HU overlap) can give, and the visible voxels are half the signal;
    the hidden ones ask for that plus in-painting. The context baseline is phase A's, so the
    network predicts the phase change as its correction. Such a network predicts another
    phase, so its anomaly maps are not in-painting's; it is a segmenter initialisation.
    ``"cross_phase_hidden"`` takes the same loss on the hidden voxels only, as in-painting
    does (on a visible voxel the context baseline is a Gaussian average of its
    neighbourhood, which the network must first sharpen back before it can change the
    phase).

    ``"cross_phase_fill"`` (cross-phase in-painting, conditioned by context) shows the crop
    in phase B with its hidden blocks filled by the SAME voxels of phase A (where in-painting
    shows zeros), and asks for B on the hidden voxels, with B's context baseline. The visible
    context tells the network which phase to give (it sees B's organ intensities around
    the block), which ``"cross_phase"`` never learns; the block shows the anatomy in phase A,
    and to give it in phase B the network must know which organ each of the block's voxels
    belongs to (enhancement is organ-specific; native HU of kidney, liver and muscle
    overlap). The input is in-painting's 2 channels (image, hidden flag), so the segmenter
    takes the encoder as from any pretrained bundle. The shortcut it leaves open: an organ
    that crosses the block's edge shows its A intensity inside and its B intensity outside,
    so matching intensities across the edge (A's level here was B's level there) fills much
    of the block without knowing the organ; only voxels whose organ does not reach the
    visible context need the organ's enhancement itself.
    """
    if pretext not in PRETEXTS:
        raise ValueError(f"unknown pretext {pretext!r}; choose one of {', '.join(PRETEXTS)}")
    patch_size = tuple(masker.patch_size)  # (px, py, pz) voxels

    def loss_fn(model, batch, generator):
        image = batch[0]  # (B, 1, x, y, z); cross_phase: (B, P, x, y, z), one study's phases
        hidden = draw_hidden(masker, image[:, :1], generator)
        seen, weight, fill = image, hidden, None
        if pretext != "inpaint":  # the distortions' own stream, after the mask's draws
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        if pretext in GENESIS_VARIANTS:
            seen, hidden, weight = distort_batch(image, hidden, rng, **GENESIS_VARIANTS[pretext])
        elif pretext in REMAP_VARIANTS:
            seen = remap_intensities(image, *draw_remaps(rng, image.shape[0]))
            weight = torch.ones_like(hidden) if REMAP_VARIANTS[pretext] else hidden
        elif pretext in CROSS_PHASE_VARIANTS:
            seen, image = phase_pair(image, rng)   # the target is the other phase
            if pretext == PHASE_FILL:              # the target phase around the source's blocks
                seen, fill = image, seen
            weight = torch.ones_like(hidden) if CROSS_PHASE_VARIANTS[pretext] else hidden
        # (B, C, x, y, z): mean (context baseline + network correction), log variance, then
        # any embedding channels
        output = predict_hidden(model, seen, hidden, sigma or tuple(p / 2.0 for p in patch_size), fill)
        nll = reconstruction_nll(output, image)
        loss = (nll * weight).sum() / weight.sum().clamp_min(1.0)
        if pretext == INVARIANT:
            loss = loss + WEIGHT * invariance_loss(model, image, hidden, output[:, 2:], rng)
        return loss

    return loss_fn


def phase_pair(studies: torch.Tensor, rng) -> tuple[torch.Tensor, torch.Tensor]:
    """A source and a target phase per crop of ``studies`` ``(B, P, x, y, z)``: phase ``a``
    uniform, phase ``b`` uniform among the others; ``(B, 1, x, y, z)`` each.

    Raises:
        DataValidationError: fewer than 2 phases (single-phase volumes, not studies).
    """
    batch, phases = studies.shape[:2]
    if phases < 2:
        raise DataValidationError("the cross-phase pretexts train on multi-phase studies (one "
                                  f"body in 2 or more contrast phases); got {phases} phase")
    source = rng.integers(0, phases, batch)
    target = (source + rng.integers(1, phases, batch)) % phases       # never the source
    rows = torch.arange(batch)
    return studies[rows, source][:, None], studies[rows, target][:, None]


def invariance_loss(model, image: torch.Tensor, hidden: torch.Tensor, embedding: torch.Tensor,
                    rng) -> torch.Tensor:
    """Dense InfoNCE between ``embedding`` ``(B, EMBED, ...)`` (the network's on ``image``
    behind ``hidden``) and its embedding of a second view: every crop through its own random
    non-monotone map, behind the same ``hidden``; voxels sampled inside each crop's body."""
    remapped = remap_intensities(image, *draw_remaps(rng, image.shape[0]))
    other = model(masked_input(remapped, hidden))[:, 2:]
    bodies = [body_mask(crop[0].detach().float().cpu().numpy()) for crop in image]
    return dense_info_nce(embedding, other, bodies, rng)


def distort_batch(image: torch.Tensor, hidden: torch.Tensor, rng, **probabilities):
    """Models Genesis distortions of a batch ``(B, 1, x, y, z)``: the distorted input, the
    hidden mask (out-painting replaces the patch mask where drawn) and the loss weight."""
    spatial = tuple(image.shape[2:])
    seen, masks, weights = [], [], []
    for crop, mask in zip(image, hidden):  # (1, x, y, z) each
        draw = draw_distortion(rng, spatial, **probabilities)
        seen.append(apply_distortion(crop, draw))
        if draw.outpaint_box is not None:
            mask = outpaint_mask(spatial, draw.outpaint_box, crop)
        elif draw.hide_nothing:
            mask = torch.zeros_like(mask)
        masks.append(mask)
        weights.append(torch.ones_like(mask) if draw.changes_appearance else mask)
    return torch.stack(seen), torch.stack(masks), torch.stack(weights)
