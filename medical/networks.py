"""The 3-D network: MONAI's ``UNet``, configured by one dataclass shared by both tasks.

Input has two channels: the (partly hidden) CT and a hidden-voxel indicator. Masked
pretraining predicts the hidden voxels (2 output channels: mean, log variance); segmentation feeds the
whole image with an all-zero indicator and predicts ``n_labels + 1`` classes. Everything
but the last layer has the same shape in both, so pretrained weights carry over
(segmentation takes the encoder only by default, see ``transfer_weights``).

Example:
    >>> net = build_network(NetworkConfig(), out_channels=6)         # doctest: +SKIP
    >>> transfer_weights(pretrained_state, net)                      # doctest: +SKIP
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch

from core.errors import BundleError
from core.io import tuples_as_lists

IN_CHANNELS = 2  # image, hidden-voxel indicator


@dataclass
class NetworkConfig:
    """MONAI ``UNet`` hyper-parameters and the sliding-window size.

    Args:
        channels: feature channels per level.
        strides: down-sampling per level (the window must be divisible by their product).
        num_res_units: residual units per block.
        roi_size: training crop / inference window in voxels (model grid).
        norm: MONAI norm layer name, or ``"none"``. Instance norm rescales every window
            on its own, which loses the absolute intensity a reconstruction must predict.
    """

    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 1
    roi_size: tuple[int, int, int] = (64, 64, 32)
    norm: str = "instance"

    def to_dict(self) -> dict:
        return tuples_as_lists(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkConfig":
        return cls(channels=tuple(d["channels"]), strides=tuple(d["strides"]),
                   num_res_units=int(d["num_res_units"]), roi_size=tuple(d["roi_size"]),
                   norm=str(d.get("norm", "instance")))


def build_network(config: NetworkConfig, out_channels: int, state: dict | None = None,
                  seed: int = 0):
    """A MONAI 3-D ``UNet`` taking the two input channels.

    Args:
        config: architecture.
        out_channels: output channels.
        state: weights to load (from a bundle); must fit exactly.
        seed: seeds the initial weights (torch's default initialisation, drawn inside
            ``torch.random.fork_rng`` so the global RNG is left as it was).

    Raises:
        BundleError: ``state`` does not fit the configured network.
    """
    from monai.networks.nets import UNet  # heavy optional dependency (the medical extra)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = UNet(spatial_dims=3, in_channels=IN_CHANNELS, out_channels=out_channels,
                       channels=config.channels, strides=config.strides,
                       num_res_units=config.num_res_units,
                       norm=None if config.norm == "none" else config.norm)
    if state is not None:
        load_weights(network, state)
    return network.eval()


def load_weights(network, state: dict) -> None:
    """Load bundle weights into ``network``.

    Raises:
        BundleError: ``state`` does not fit the network.
    """
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        raise BundleError(f"weights do not fit the configured network ({err})") from None


def is_decoder_key(name: str) -> bool:
    """True for a MONAI ``UNet`` up-sampling (decoder) tensor: index 2 of a level."""
    return re.search(r"(^model|submodule)\.2\.", name) is not None


def transfer_weights(state: dict, model, encoder_only: bool = False) -> set[str]:
    """Copy every tensor of ``state`` whose name and shape match ``model``'s.

    Args:
        state: pretrained weights.
        model: the network to initialise.
        encoder_only: copy only the down-sampling path; the decoder starts fresh. The
            masked-reconstruction decoder is tuned to output a small correction to the
            context baseline, and starting segmentation from it cost Dice in our benchmark.

    Returns:
        The names of the tensors copied (the output layer differs and is skipped).
    """
    matched = {k: state[k] for k in transferable_keys(state, model, encoder_only)}
    # strict=False: load only the matched tensors (every one named in the model); the rest
    # keep their initialisation
    model.load_state_dict(matched, strict=False)
    return set(matched)


def transferable_keys(state: dict, model, encoder_only: bool = False) -> set[str]:
    """Names of the tensors :func:`transfer_weights` copies from ``state`` into ``model``."""
    own = model.state_dict()
    return {k for k, v in state.items() if k in own and own[k].shape == v.shape
            and not (encoder_only and is_decoder_key(k))}
