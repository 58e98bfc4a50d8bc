"""ONNX export of a CT model's 3-D UNet (``unmask medical export``).

A CT model directory holds up to two networks, both MONAI ``UNet`` s on the same
two-channel input: the organ segmenter (``segmenter/``, or a ``ct-segmenter`` bundle) and
the masked-reconstruction anomaly network (``anomaly/``, or a ``ct-anomaly`` bundle from
``pretrain``). One file exports one of them. The graph is the UNet alone, with dynamic
batch and spatial axes; resampling, windowing, the sliding window and its Gaussian
blending, the anomaly model's patch schedule and context baseline stay in Python
(:mod:`medical.segment`, :mod:`medical.anomaly`).

Example:
    >>> spec = unet_spec("models/medical/ct", network="segmenter")   # doctest: +SKIP
    >>> core.export.export_onnx(spec, "segmenter.onnx")              # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from core.errors import BundleError
from core.export import CHECK_BATCH_SIZES, EXAMPLE_BATCH, GraphSpec

from .reconstruction import LOG_VAR_RANGE, output_channels
from .infer import load_models

NETWORKS = ("segmenter", "anomaly")
AXES = ("x", "y", "z")

INPUT_DOC = """\
Input (B = any batch size; X, Y, Z any multiples of {multiple}; sliding-window inference
feeds windows of the bundle's roi_size {roi}):
  input  float32 (B, 2, X, Y, Z)
    channel 0: the CT resampled to the model grid (spacing {spacing} mm, RAS axes), HU
               window {window} mapped to [0, 1], hidden voxels set to 0
    channel 1: the hidden-voxel indicator (1 = hidden, 0 = visible)
"""
SEGMENTER_DOC = """\
Output:
  logits  float32 (B, {n_classes}, X, Y, Z)  class logits; class 0 = background, {labels}
The segmenter feeds the whole image: channel 1 all zeros. Outside the graph: sliding windows
(overlap {overlap}, Gaussian blending), softmax over classes, argmax, resampling back."""
ANOMALY_DOC = """\
Output:
  output  float32 (B, {channels}, X, Y, Z)
    channel 0: the correction added to the context baseline (Gaussian-weighted mean of the
               visible voxels, sigma {sigma} voxels) to predict each hidden voxel
    channel 1: log variance of that prediction (clamp to [{lo}, {hi}])
{embedding}Outside the graph: the patch schedule (patches {patch} voxels, every voxel hidden once),
sliding windows (overlap {overlap}, Gaussian blending), context baseline, z-scores, maps."""


def unet_spec(model_dir, network: str | None = None) -> GraphSpec:
    """The :class:`~core.export.GraphSpec` of one UNet of a CT model.

    Args:
        model_dir: ``train``'s output, or a ``ct-segmenter`` / ``ct-anomaly`` bundle.
        network: ``"segmenter"`` or ``"anomaly"``; ``None``: the segmenter when the model
            has one, else the anomaly network.
    """
    segmenter, scorer = load_models(model_dir)
    found = {"segmenter": segmenter, "anomaly": scorer}
    name = network or ("segmenter" if segmenter is not None else "anomaly")
    if found.get(name) is None:
        present = [k for k, v in found.items() if v is not None]
        raise BundleError(f"{model_dir}: has no {name} network (it holds: {', '.join(present)})")
    model = found[name]
    config = model.network_config
    multiple = int(np.prod(config.strides))
    roi = tuple(int(r) for r in config.roi_size)
    head = INPUT_DOC.format(multiple=multiple, roi=list(roi), spacing=list(model.preprocess.spacing),
                            window=list(model.preprocess.window))
    if name == "segmenter":
        labels = ", ".join(f"{k} = {v}" for k, v in sorted(model.labels.items()))
        doc = SEGMENTER_DOC.format(n_classes=len(model.labels) + 1, labels=labels,
                                   overlap=model.overlap)
        output, extra = "logits", {"labels": {str(k): v for k, v in model.labels.items()}}
    else:
        channels = output_channels(model.config.pretext)
        embedding = (f"    channels 2-{channels - 1}: the pretext's voxel embedding, not used in scoring\n"
                     if channels > 2 else "")
        doc = ANOMALY_DOC.format(channels=channels, embedding=embedding,
                                 sigma=list(model.config.context_sigma), lo=LOG_VAR_RANGE[0],
                                 hi=LOG_VAR_RANGE[1], patch=list(model.config.patch_size),
                                 overlap=model.config.overlap)
        output, extra = "output", {}
    sizes = dict(zip(AXES, roi))
    bigger = {a: s + multiple for a, s in sizes.items()}  # another spatial size than traced
    checks = [{"batch": b, **sizes} for b in CHECK_BATCH_SIZES] + [{"batch": 1, **bigger}]
    dynamic = {"input": {0: ("batch", 1), **{2 + i: (a, multiple) for i, a in enumerate(AXES)}}}
    return GraphSpec(model.network, ("input",), (output,), dynamic,
                     _sampler(segmentation=name == "segmenter"), {"batch": EXAMPLE_BATCH, **sizes},
                     checks, head + doc,
                     {"kind": f"ct-{name}", "network": config.to_dict(),
                      "preprocess": model.preprocess.to_dict(), **extra})


def _sampler(segmentation: bool):
    """Inputs like inference's: windowed intensities, hidden voxels zeroed and flagged."""
    def sample(rng: np.random.Generator, sizes: dict) -> tuple:
        shape = (sizes["batch"], 1) + tuple(sizes[a] for a in AXES)
        image = rng.random(shape, dtype=np.float32)
        hidden = (np.zeros(shape, np.float32) if segmentation
                  else (rng.random(shape) < 0.5).astype(np.float32))
        return (np.concatenate([image * (1 - hidden), hidden], axis=1),)  # (B, 2, X, Y, Z)

    return sample
