"""Preprocessing to the model's grid and back, with MONAI's invertible transforms.

Forward: orientation to RAS, resampling to the model's voxel spacing, foreground (body)
crop, Hounsfield windowing to [0, 1]. MONAI records each spatial step in the
``MetaTensor``'s ``applied_operations``, so :meth:`Preprocessor.invert` maps a model-grid
output (segmentation probabilities, anomaly map) back onto the input's exact voxel grid:
same shape and affine, whatever its orientation and spacing.

Example:
    >>> pre = Preprocessor(PreprocessConfig(spacing=(4.0, 4.0, 5.0)))
    >>> item = pre(load_volume("case.nii.gz"))                       # doctest: +SKIP
    >>> back = pre.invert(probabilities, item["image"])               # (C, X0, Y0, Z0)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from core.io import tuples_as_lists

BODY_HU = -500.0  # voxels above this are inside the patient (foreground crop)


@dataclass
class PreprocessConfig:
    """Model grid and intensity window.

    Args:
        spacing: target voxel size in mm along R, A, S.
        window: Hounsfield window mapped to [0, 1] (abdominal soft tissue by default).
        margin: voxels kept around the body when cropping.
    """

    spacing: tuple[float, float, float] = (4.0, 4.0, 5.0)
    window: tuple[float, float] = (-175.0, 250.0)
    margin: int = 2

    def unit(self, hu):
        """Hounsfield units -> the model's intensity scale (``window`` mapped to [0, 1])."""
        lo, hi = self.window
        return (np.asarray(hu, dtype=np.float64) - lo) / (hi - lo)

    def to_dict(self) -> dict:
        return tuples_as_lists(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        return cls(spacing=tuple(d["spacing"]), window=tuple(d["window"]), margin=int(d["margin"]))


def ras_spacing(affine) -> tuple[float, float, float]:
    """Voxel size along R, A, S of an image with ``affine`` (after reorientation)."""
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    axis_of = np.argmax(np.abs(a), axis=1)  # which voxel axis runs along R, A, S
    return tuple(float(np.linalg.norm(a[:, j])) for j in axis_of)


def median_spacing(images) -> tuple[float, float, float]:
    """nnU-Net's rule: the model grid uses the median spacing of the training images."""
    spacings = np.array([ras_spacing(img.affine) for img in images])
    return tuple(float(s) for s in np.round(np.median(spacings, axis=0), 3))


class Preprocessor:
    """MONAI transform chain from a loaded image (and label) to the model grid."""

    def __init__(self, config: PreprocessConfig):
        self.config = config
        self._chains: dict[bool, object] = {}

    def _chain(self, with_label: bool):
        from monai.transforms import (Compose, CropForegroundd, Orientationd,
                                      ScaleIntensityRanged, Spacingd)

        if with_label not in self._chains:
            keys = ["image", "label"] if with_label else ["image"]
            modes = ["bilinear", "nearest"] if with_label else ["bilinear"]
            lo, hi = self.config.window
            self._chains[with_label] = Compose([
                Orientationd(keys, axcodes="RAS", labels=None),
                Spacingd(keys, pixdim=self.config.spacing, mode=modes),
                CropForegroundd(keys, source_key="image", select_fn=lambda x: x > BODY_HU,
                                margin=self.config.margin, allow_smaller=True),
                ScaleIntensityRanged("image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True),
            ])
        return self._chains[with_label]

    def __call__(self, image, label=None, lesion=None) -> dict:
        """Model-grid tensors: ``{"image": (1, x, y, z)[, "label", "lesion"]}``.

        ``label`` and ``lesion`` (optional) must be on the image's grid; they are resampled
        with nearest-neighbour interpolation.
        """
        import torch

        data = {"image": image}
        extra = [t for t in (label, lesion) if t is not None]
        if label is not None and lesion is not None:
            # one nearest-neighbour key carries both: label + 100 * lesion
            data["label"] = label + 100 * lesion
        elif extra:
            data["label"] = extra[0]
        out = self._chain(bool(extra))(data)
        result = {"image": out["image"]}
        if extra:
            merged = torch.round(out["label"].as_tensor()).to(torch.int64)
            if label is not None and lesion is not None:
                result["label"], result["lesion"] = merged % 100, merged // 100
            elif label is not None:
                result["label"] = merged
            else:
                result["lesion"] = merged
        return result

    def invert(self, output, reference) -> np.ndarray:
        """Map a model-grid output ``(C, x, y, z)`` back to the input grid ``(C, X, Y, Z)``.

        Args:
            output: tensor or array on the grid of ``reference``.
            reference: the preprocessed image ``MetaTensor`` (its affine, and the input's
                shape and affine recorded by the first transform).

        Outside the cropped body the inverse pads with 0 (background / no error).
        Interpolation is linear, so pass probabilities (then argmax, or
        :meth:`invert_argmax`), not label ids.
        """
        shape = input_geometry(reference)[0]
        out = np.empty((np.shape(output)[0], *shape), dtype=np.float32)
        for z, slab in resampled_slabs(output, reference):
            out[..., z] = slab.numpy()
        return out

    def invert_argmax(self, probabilities, reference) -> np.ndarray:
        """The argmax ``(X, Y, Z)`` uint8 of :meth:`invert` (class by class never held on
        the input grid: a 512 x 512 x 300 CT needs one slab of probabilities at a time)."""
        shape = input_geometry(reference)[0]
        out = np.empty(shape, dtype=np.uint8)
        for z, slab in resampled_slabs(probabilities, reference, labels=True):
            out[..., z] = slab.numpy()
        return out


def channel_argmax(values):
    """``argmax`` over the first axis of a ``(C, ...)`` tensor as uint8 (C <= 256), by a
    running maximum: a few passes over contiguous memory instead of a strided reduction."""
    import torch

    best = values[0].clone()
    label = torch.zeros(values.shape[1:], dtype=torch.uint8)
    for c in range(1, values.shape[0]):
        better = values[c] > best            # ties keep the lower class, as argmax does
        label[better] = c
        torch.maximum(best, values[c], out=best)
    return label


# Output voxels resampled per step: bounds the memory of mapping outputs to a large input grid
# (coordinates and C channels of one slab, about 16 bytes x C per voxel).
SLAB_VOXELS = 1 << 22


def input_geometry(reference) -> tuple[tuple[int, int, int], np.ndarray]:
    """The input's ``(X, Y, Z)`` shape and affine, recorded by the first transform
    (``Orientationd``) of a preprocessed image."""
    first = reference.applied_operations[0]
    shape = tuple(int(n) for n in first["orig_size"])
    return shape, np.asarray(first["extra_info"]["original_affine"], dtype=np.float64)


def resampled_slabs(output, reference, labels: bool = False):
    """Yield ``(z_slice, (C, X, Y, dz) float32 tensor)``: a model-grid ``output`` resampled
    (trilinear) onto consecutive slabs of the input's voxels; with ``labels``,
    ``(X, Y, dz)`` uint8: the argmax over C of those values.

    As MONAI's inverse does: 0 outside the body crop, and beyond the edge of the
    resampled scan the value at that edge (:func:`_padded`). Both grids place voxel centres by their affines, so input voxel ``i`` sits at model
    voxel ``inv(A_model) @ A_input @ i``; MONAI resampled the forward way by the same
    relation. When each input axis runs along one model axis (any scan without oblique
    slices) the trilinear weights separate into three 1-D interpolations
    (:func:`_separable_slab`); otherwise ``torch.grid_sample`` reads each slab
    (:func:`_oblique_slab`). Both give the same values.
    """
    import torch

    shape, input_affine = input_geometry(reference)
    to_model = np.linalg.inv(np.asarray(reference.affine, dtype=np.float64)) @ input_affine
    volume = torch.as_tensor(np.asarray(output), dtype=torch.float32)          # (C, x, y, z)
    linear = to_model[:3, :3]
    model_axis = np.argmax(np.abs(linear), axis=0)          # the model axis of each input axis
    separable = (sorted(model_axis) == [0, 1, 2]
                 and np.allclose(np.abs(linear).sum(axis=0), np.abs(linear).max(axis=0)))
    volume = _padded(volume, reference)
    slab = _separable_slab if separable else _oblique_slab
    nx, ny, nz = shape
    depth = max(1, SLAB_VOXELS // (nx * ny))
    for z0 in range(0, nz, depth):
        zs = slice(z0, min(z0 + depth, nz))
        values = slab(volume, to_model, shape, zs, labels)
        yield zs, channel_argmax(values) if labels and not separable else values


def _padded(volume, reference):
    """``volume`` ``(C, x, y, z)`` with one voxel more at each end of each axis: 0 where the
    body crop cut the scan there (MONAI's inverse pads the crop with 0), a copy of the edge
    where the crop reached the scan's edge (its resampling pads with the border)."""
    import torch

    crop = next((op for op in reference.applied_operations
                 if op.get("class") == "CropForeground"), None)
    cropped = crop["extra_info"]["cropped"] if crop else [0] * 6   # (x lo, x hi, y lo, ...)
    for axis in range(3):
        dim = axis + 1
        ends = []
        for side, index in ((0, 0), (1, volume.shape[dim] - 1)):
            edge = volume.narrow(dim, index, 1)
            ends.append(torch.zeros_like(edge) if cropped[2 * axis + side] else edge)
        volume = torch.cat([ends[0], volume, ends[1]], dim=dim)
    return volume


def _axis_weights(coordinate: np.ndarray, size: int):
    """1-D linear interpolation at model ``coordinate``s on an axis of ``size`` voxels that
    is padded with one voxel at each end (which also stands for everything beyond):
    ``(low index, high index, high weight)`` into the padded axis."""
    import torch

    c = np.clip(coordinate + 1.0, 0.0, size + 1.0)           # index into the padded axis
    low = np.minimum(np.floor(c), size).astype(np.int64)
    return torch.from_numpy(low), torch.from_numpy(low + 1), torch.from_numpy(c - low).float()


def _separable_slab(padded, to_model, shape, zs, labels: bool = False):
    """Trilinear resampling of an axis-aligned ``to_model`` as three 1-D interpolations,
    the largest (onto the input's in-plane axes) last; ``padded``: ``(C, x + 2, y + 2,
    z + 2)``, the model-grid output with one voxel around it (:func:`_padded`).

    With ``labels`` the argmax over C is returned, and the last interpolation is done
    only where its two neighbours' argmax differ: a blend of two probability vectors
    with the same argmax has that argmax too.
    """
    sizes = [n - 2 for n in padded.shape[1:]]   # the model grid's own
    ranges = [np.arange(shape[0]), np.arange(shape[1]), np.arange(zs.start, zs.stop)]
    out = padded
    order = []                                                # (model axis, input axis)
    for input_axis in (2, 1, 0):
        model_axis = int(np.argmax(np.abs(to_model[:3, input_axis])))
        order.append((model_axis, input_axis))
        coordinate = to_model[model_axis, input_axis] * ranges[input_axis] + to_model[model_axis, 3]
        low, high, weight = _axis_weights(coordinate, sizes[model_axis])
        if labels and input_axis == 0:
            out = _lerp_labels(out, model_axis, low, high, weight)
            break
        dim = 1 + model_axis
        a, b = out.index_select(dim, low), out.index_select(dim, high)
        view = [1, 1, 1, 1]
        view[dim] = -1
        out = a.lerp_(b, weight.view(view))
    # model axes now hold the input axes in ``order``; put them as input (x, y, z)
    axes = [model for model, _ in sorted(order, key=lambda o: o[1])]
    return out.permute(axes if labels else [0] + [1 + m for m in axes]).contiguous()


def _lerp_labels(values, axis: int, low, high, weight):
    """Argmax ``(x, y, z)`` uint8 of ``values`` ``(C, x, y, z)`` interpolated along model
    ``axis`` (see :func:`_separable_slab`)."""
    label = channel_argmax(values)
    label_low, label_high = label.index_select(axis, low), label.index_select(axis, high)
    mixed = list((label_low != label_high).nonzero(as_tuple=True))   # 3 index tensors
    at_low, at_high = list(mixed), list(mixed)
    at_low[axis], at_high[axis] = low[mixed[axis]], high[mixed[axis]]
    blend = values[(slice(None), *at_low)].lerp(values[(slice(None), *at_high)],
                                               weight[mixed[axis]])            # (C, n)
    label_low[tuple(mixed)] = channel_argmax(blend)
    return label_low


def _oblique_slab(padded, to_model, shape, zs, labels: bool = False):
    """Trilinear resampling of any affine ``to_model`` with ``torch.grid_sample`` (the
    caller takes the argmax for ``labels``); ``padded`` as for :func:`_separable_slab`."""
    import torch
    import torch.nn.functional as F

    size = torch.tensor(padded.shape[1:], dtype=torch.float64)
    # grid_sample wants (z, y, x) order in [-1, 1] with align_corners: -1/+1 = end voxel
    # centres; model voxel i is padded voxel i + 1, and beyond the padding holds its value
    scale = 2.0 / (size - 1).clamp_min(1.0)
    linear = torch.as_tensor(to_model[:3, :3]) * scale[:, None]               # (3, 3)
    offset = (torch.as_tensor(to_model[:3, 3]) + 1.0) * scale - 1.0           # (3,)
    nx, ny, _ = shape
    ii = torch.arange(nx, dtype=torch.float64)[:, None, None, None] * linear[:, 0]
    jj = torch.arange(ny, dtype=torch.float64)[None, :, None, None] * linear[:, 1]
    kk = torch.arange(zs.start, zs.stop, dtype=torch.float64)[None, None, :, None]
    coords = (ii + jj + kk * linear[:, 2] + offset).to(torch.float32)         # (X, Y, dz, 3)
    slab = F.grid_sample(padded[None], coords.flip(-1)[None], mode="bilinear",
                         padding_mode="border", align_corners=True)             # (1, C, X, Y, dz)
    return slab[0]
