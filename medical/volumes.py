"""Cases on the model grid, and the random-crop datasets that feed ``core.training.fit``.

Example:
    >>> prepared = prepare_cases(find_cases("data"), Preprocessor(cfg), with_truth=True)  # doctest: +SKIP
    >>> dataset = CropDataset([p.image for p in prepared], roi=(64, 64, 32), samples=64)  # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch.utils.data import Dataset

from core.errors import DataValidationError

from .io import Case, load_label_like, load_volume
from .pretexts import CROSS_PHASE_VARIANTS
from .transforms import Preprocessor, median_spacing


@dataclass
class PreparedCase:
    """A case on the model grid: image ``(1, x, y, z)`` in [0, 1], optional truth."""

    case: Case
    image: object                   # MetaTensor, carries the inverse transform
    label: torch.Tensor | None = None   # (1, x, y, z) int64
    lesion: torch.Tensor | None = None  # (1, x, y, z) int64
    input_shape: tuple = ()
    input_affine: np.ndarray | None = None


def read_case(case: Case, with_truth: bool = False, image=None) -> tuple:
    """``(image, label, lesion)`` of ``case`` as loaded (label/lesion checked to agree with
    the image; ``None`` where absent or without ``with_truth``); ``image``: its image if
    already loaded."""
    image = load_volume(case.image) if image is None else image
    label = lesion = None
    if with_truth and case.label is not None:
        label = load_label_like(case.label, image, case.image)
    if with_truth and case.lesion is not None:
        lesion = load_label_like(case.lesion, image, case.image)
    return image, label, lesion


def prepare_read(case: Case, image, label, lesion, pre: Preprocessor) -> PreparedCase:
    """Preprocess the volumes :func:`read_case` loaded for ``case``."""
    shape, affine = tuple(image.shape[1:]), np.asarray(image.affine, dtype=np.float64)
    out = pre(image, label, lesion)
    return PreparedCase(case, out["image"], out.get("label"), out.get("lesion"), shape, affine)


def prepare_case(case: Case, pre: Preprocessor, with_truth: bool = False, image=None) -> PreparedCase:
    """Load ``case`` (checking its label/lesion files agree with the image) and preprocess;
    ``image``: its image if already loaded."""
    return prepare_read(case, *read_case(case, with_truth, image), pre)


def spacing_and_images(cases, spacing=None) -> tuple[tuple, dict]:
    """``spacing``, or else nnU-Net's median spacing of the ``cases``' images together with
    those images by case (``Case.key``), so that preparing the cases need not read them
    again (pop each one as it is prepared, and the raw volume is freed)."""
    if spacing:
        return tuple(spacing), {}
    images = {c.key: load_volume(c.image) for c in cases}
    return tuple(median_spacing(list(images.values()))), images


def prepare_cases(cases, pre: Preprocessor, with_truth: bool = False) -> list[PreparedCase]:
    return [prepare_case(c, pre, with_truth) for c in cases]


def phase_cases(items) -> list[Case]:
    """The cases of pretraining ``items`` (``Case``s, or studies: tuples of one body's phase
    ``Case``s), studies unpacked in order."""
    return [case for item in items for case in (item if isinstance(item, tuple) else (item,))]


def check_studies(items, pretext: str) -> None:
    """Refuse pretraining ``items`` that do not fit ``pretext``, before any is read: the
    cross-phase pretexts train on studies only, each a tuple of 2 or more phase ``Case``s
    of one body, every study in as many phases (their crops are stacked into one batch);
    every other pretext trains on single ``Case``s.

    Raises:
        DataValidationError: naming the first item that does not fit, or the first study
            whose phase count differs from the first study's.
    """
    items, wants_studies = list(items), pretext in CROSS_PHASE_VARIANTS
    wanted = ("multi-phase studies (each a tuple of 2 or more phase Cases of one body)"
              if wants_studies else "single volumes (Cases)")
    for item in items:
        if not (is_study(item) if wants_studies else isinstance(item, Case)):
            raise DataValidationError(f"pretext {pretext!r} trains on {wanted}; "
                                      f"got {item_named(item)}")
    if wants_studies and items:
        first = items[0]
        for study in items:
            if len(study) != len(first):
                raise DataValidationError(
                    f"pretext {pretext!r}: every study needs as many phases; {item_named(study)} "
                    f"has {len(study)}, {item_named(first)} has {len(first)}")


def is_study(item) -> bool:
    """Whether ``item`` is a study: a tuple of 2 or more ``Case``s."""
    return (isinstance(item, tuple) and len(item) >= 2
            and all(isinstance(case, Case) for case in item))


def item_named(item) -> str:
    """A pretraining item as an error names it: a ``Case`` by its name, a tuple or list
    by what it holds (``"a tuple of 2 (a_native, a_portal)"``), anything else by its type."""
    if isinstance(item, Case):
        return item.name
    if isinstance(item, (tuple, list)):
        return (f"a {type(item).__name__} of {len(item)} ("
                + ", ".join(item_named(member) for member in item) + ")")
    return f"a {type(item).__name__}"


def training_volume(item, read) -> np.ndarray:
    """One pretraining item on the model grid: a ``Case`` as ``(1, x, y, z)``, or a study
    (a tuple of one body's phase ``Case``s) with its phases stacked ``(P, x, y, z)``, so a
    crop (``CropDataset``) takes the same window of every phase. ``read``: ``Case ->
    PreparedCase``.

    Raises:
        DataValidationError: a study's phases land on different model grids.
    """
    if isinstance(item, Case):
        return read(item).image.as_tensor().numpy()
    phases = [read(case).image for case in item]
    if any(p.shape != phases[0].shape or not np.allclose(p.affine, phases[0].affine)
           for p in phases):
        names = ", ".join(f"{c.name} {tuple(p.shape[1:])}" for c, p in zip(item, phases))
        raise DataValidationError(f"study of {names}: its phases are not on one grid (a "
                                  "study's phases must share shape and affine)")
    return np.concatenate([p.as_tensor().numpy() for p in phases])


def pad_to(array: np.ndarray, shape) -> np.ndarray:
    """Zero-pad the trailing 3 axes of ``array`` up to at least ``shape``."""
    pads = [(0, 0)] * (array.ndim - 3) + [(0, max(0, s - n)) for n, s in zip(array.shape[-3:], shape)]
    return np.pad(array, pads) if any(p[1] for p in pads) else array


class CropDataset(Dataset):
    """Random ``roi``-sized crops of model-grid volumes, optionally with labels.

    Crop ``i`` is drawn from ``default_rng([seed, i, n_drawn_i])``: a training index gets a
    new crop every epoch, while ``fixed=True`` (validation) repeats the same crops.

    Args:
        images: arrays ``(1, x, y, z)``.
        roi: crop size.
        samples: dataset length (crops per epoch).
        labels: arrays ``(1, x, y, z)`` of class ids, or ``None``.
        foreground: probability that a crop is centred on a labelled voxel.
        seed: base seed.
        fixed: same crop for an index on every call.
        intensity_jitter: +- range of a random contrast/brightness change (augmentation).
        organ_jitter: +- range of a random intensity offset drawn per labelled organ in
            each crop (SynthSeg's idea, Billot et al. 2023: organs' contrast varies by
            scan, so the network must not learn one phase's intensities; a kidney is
            darker than the liver in native scans and brighter in portal ones); applied
            through a Gaussian-softened label mask so that it adds no sharp edge.
    """

    def __init__(self, images, roi, samples: int, labels=None, foreground: float = 0.7,
                 seed: int = 0, fixed: bool = False, intensity_jitter: float = 0.0,
                 organ_jitter: float = 0.0):
        self.images = [pad_to(np.asarray(i, dtype=np.float32), roi) for i in images]
        self.labels = None if labels is None else [pad_to(np.asarray(l), roi) for l in labels]
        self.roi = tuple(roi)
        self.samples = samples
        self.foreground = foreground
        self.seed = seed
        self.fixed = fixed
        self.intensity_jitter = intensity_jitter
        self.organ_jitter = organ_jitter
        self._draws = np.zeros(samples, dtype=np.int64)
        self._fg = None if self.labels is None else [np.argwhere(l[0] > 0) for l in self.labels]

    def __len__(self) -> int:
        return self.samples

    def _corner(self, rng, k: int) -> tuple[int, ...]:
        shape = self.images[k].shape[1:]
        if self._fg is not None and len(self._fg[k]) and rng.random() < self.foreground:
            centre = self._fg[k][rng.integers(len(self._fg[k]))]
            return tuple(int(np.clip(c - r // 2, 0, s - r)) for c, r, s in zip(centre, self.roi, shape))
        return tuple(int(rng.integers(0, s - r + 1)) for r, s in zip(self.roi, shape))

    def __getitem__(self, i: int):
        draw = 0 if self.fixed else int(self._draws[i])
        self._draws[i] += 1
        rng = np.random.default_rng([self.seed, int(i), draw])
        k = int(rng.integers(len(self.images)))
        corner = self._corner(rng, k)
        window = (slice(None),) + tuple(slice(c, c + r) for c, r in zip(corner, self.roi))
        image = self.images[k][window]
        if self.intensity_jitter:
            j = self.intensity_jitter
            image = np.clip(image * rng.uniform(1 - j, 1 + j) + rng.uniform(-j, j) / 4, 0, 1)
        label = None if self.labels is None else self.labels[k][window]
        if self.organ_jitter and label is not None:
            image = shift_organs(image, label, rng, self.organ_jitter)
        image = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        if label is None:
            return (image,)
        return image, torch.from_numpy(np.ascontiguousarray(label, dtype=np.int64))


def shift_organs(image: np.ndarray, label: np.ndarray, rng, jitter: float) -> np.ndarray:
    """``image`` ``(1, x, y, z)`` with every organ of ``label`` (ids 1..max, drawn in that
    order) shifted by its own offset in ``[-jitter, jitter]``, blended over a Gaussian-
    softened (sigma 1 voxel) mask, clipped to the window ``[0, 1]``."""
    offsets = rng.uniform(-jitter, jitter, size=int(label.max()) + 1)
    offsets[0] = 0.0                                    # the background is not shifted
    shift = offsets[label[0]].astype(np.float32)
    return np.clip(image + gaussian_filter(shift, 1.0)[None], 0.0, 1.0)
