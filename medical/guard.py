"""Input guard: refuse what is not a CT in Hounsfield units; warn when a CT is unlike training.

The CT model windows and crops by Hounsfield units (HU), so a volume on another scale (an
MR, a CT exported without its rescale) would be segmented and scored as nonsense. The
rules come from the physics of the scale, not from any one scan:

* air is -1000 HU, and a body CT always holds some (around the patient, lungs, bowel gas;
  the model's body crop, ``transforms.BODY_HU``, needs it too): fewer than
  ``MIN_AIR_SHARE`` of voxels at or below -500 HU is not CT in HU -- an MR's background is
  near 0 and its tissue in arbitrary positive units;
* HU of real matter lie in ``HU_RANGE`` (air with noise down to about -1100, dense bone up
  to about 3000); metal goes higher but fills a tiny share of a scan, so more than
  ``MAX_OUTSIDE_SHARE`` of voxels outside it is another scale (HU x 10, attenuation
  coefficients, raw detector values). Scanners fill the outside of the reconstruction
  circle with one padding value (-1024, -2048, -3024); a minimum at or below
  ``PADDING_HU`` is that padding and is not counted;
* a DICOM series must say it is CT (``Modality``) and carry the rescale to HU.

A CT that passes can still be unlike what the model was trained on. :class:`InputReference`
(fitted on the training volumes, saved in the segmenter's bundle) gives one warning line
each for a field of view far outside the training extents, a body-HU histogram further
from the training pool than the training volumes are from each other, and
:func:`organ_warnings` / :func:`error_warning` for implausible adult organ volumes and a
reconstruction error far above the healthy calibration cases'; :func:`fragmentation_warnings`
for organs labelled in pieces far more than on the segmenter's validation cases.

Example:
    >>> check_hounsfield(volume, "scan.nii.gz")   # doctest: +SKIP
    >>> reference.image_warnings(volume, affine)   # doctest: +SKIP
    ['field of view unlike the training volumes: S 40 mm (training 230-250)']
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from core.errors import DataValidationError

from .transforms import BODY_HU

HU_RANGE = (-1100.0, 3500.0)
MIN_AIR_SHARE = 0.001
MAX_OUTSIDE_SHARE = 0.01
PADDING_HU = -1024.0


def check_ct_header(header, directory) -> None:
    """Refuse a DICOM series that is not CT or whose stored values cannot become HU.

    Args:
        header: the first slice's pydicom ``Dataset``.
        directory: the series folder, named in the error.
    """
    modality = str(header.get("Modality", ""))
    if modality != "CT":
        raise DataValidationError(f"{directory}: Modality is {modality!r}, not CT; the CT model "
                                  "reads CT series only")
    rescale_type = header.get("RescaleType")
    if rescale_type is not None and str(rescale_type).strip().upper() != "HU":
        raise DataValidationError(f"{directory}: RescaleType is {str(rescale_type)!r}, not HU; "
                                  "the stored values are not Hounsfield units")
    missing = [tag for tag in ("RescaleIntercept", "RescaleSlope") if tag not in header]
    if missing:
        raise DataValidationError(f"{directory}: no {' or '.join(missing)}; the stored values "
                                  "cannot be mapped to Hounsfield units")


def check_hounsfield(values: np.ndarray, path) -> None:
    """Refuse a finite ``(X, Y, Z)`` volume whose values cannot be HU (see the module doc)."""
    air = int(np.count_nonzero(values <= BODY_HU))
    if air < MIN_AIR_SHARE * values.size:
        raise DataValidationError(
            f"{path}: not a CT in Hounsfield units: no air ({air} of {values.size} voxels at or "
            f"below {BODY_HU:.0f} HU; values {values.min():g}..{values.max():g}); an MR?")
    lowest = values.min()
    counted = values != lowest if lowest <= PADDING_HU else np.ones(values.shape, dtype=bool)
    outside = ((values < HU_RANGE[0]) | (values > HU_RANGE[1])) & counted
    share = np.count_nonzero(outside) / max(np.count_nonzero(counted), 1)
    if share > MAX_OUTSIDE_SHARE:
        index = np.unravel_index(int(np.argmax(outside)), values.shape)
        raise DataValidationError(
            f"{path}: not a CT in Hounsfield units: {share:.0%} of voxels outside "
            f"{HU_RANGE[0]:.0f}..{HU_RANGE[1]:.0f} HU (e.g. {values[index]:g} at voxel "
            f"{tuple(int(i) for i in index)})")


# --- warnings: a CT unlike the training data -----------------------------------------------
#
# The reference for "like the training data" is fitted on the training volumes and saved in
# the segmenter's bundle (``InputReference``). Each check gives at most one ``warning:`` line.

HU_EDGES = np.arange(BODY_HU, 1500.0 + 10.0, 10.0)   # body HU histogram bins (10 HU)
FOV_RANGE_FACTORS = (0.5, 2.0)   # extent below half the training minimum / above twice the max
HISTOGRAM_FACTOR = 2.0           # distance above twice the training volumes' largest one
HISTOGRAM_FLOOR_HU = 5.0         # and above this, when the training volumes barely differ
HISTOGRAM_VOXELS = 4_000_000     # voxels read for a histogram (a lattice over larger volumes)
ERROR_FACTOR = 3.0               # median map error above 3x the calibration cases' median
FRAGMENT_MARGIN = 0.10           # share outside the largest part: 10 points above calibration
FRAGMENT_WARNING = "segmentation in pieces"   # the line's start, for whoever counts them
# Adult organ volumes (ml), wide enough for the extremes seen in practice (a 95th-percentile
# liver is about 2.2 l; kidneys 100-250 ml each; a normal spleen 100-250 ml, splenomegaly up
# to about 1.5 l). Heymsfield et al., Ann Intern Med 1979 (liver by CT); Emamian et al., AJR
# 1993 (kidneys); Prassopoulos et al., Eur Radiol 1997 (spleen).
ADULT_ORGAN_ML = {"liver": (800.0, 3500.0), "spleen": (40.0, 1500.0), "kidney": (70.0, 400.0),
                  "pancreas": (30.0, 200.0)}


def ras_extent_mm(shape, affine) -> np.ndarray:
    """Field of view ``(R, A, S)`` in mm of a volume of ``shape`` with ``affine``."""
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    axis_of = np.argmax(np.abs(a), axis=1)      # which voxel axis runs along R, A, S
    return np.array([shape[j] * np.linalg.norm(a[:, j]) for j in axis_of])


def body_hu_cdf(values: np.ndarray) -> np.ndarray:
    """Cumulative distribution of body voxels' HU over :data:`HU_EDGES` (dense bone clipped).

    A large volume is read on a regular in-plane lattice of about :data:`HISTOGRAM_VOXELS`
    voxels: a 512 x 512 x 300 CT's distribution does not need all 78 M of them.
    """
    step = max(1, int(np.sqrt(values.size / HISTOGRAM_VOXELS)))
    values = values[::step, ::step]
    body = np.clip(values[values > BODY_HU], HU_EDGES[0], HU_EDGES[-1])
    counts = np.histogram(body, bins=HU_EDGES)[0].astype(np.float64)
    return np.cumsum(counts) / max(counts.sum(), 1.0)


def hu_distance(cdf_a: np.ndarray, cdf_b: np.ndarray) -> float:
    """Earth mover's (Wasserstein-1) distance in HU between two :func:`body_hu_cdf`."""
    return float(np.abs(cdf_a - cdf_b).sum() * (HU_EDGES[1] - HU_EDGES[0]))


def adult_range(organ: str) -> tuple[float, float] | None:
    """Documented adult volume range (ml) of a label name (``kidney_left`` -> kidney)."""
    name = organ.lower()
    return next((r for key, r in ADULT_ORGAN_ML.items() if key in name), None)


def touches_edge(mask: np.ndarray) -> bool:
    """True when ``mask`` reaches a face of the volume (the organ may be cut off)."""
    return any(np.take(mask, i, axis=a).any() for a in range(3) for i in (0, -1))


@dataclass
class InputReference:
    """What the training volumes looked like, fitted by :meth:`fit` and saved in a bundle.

    Attributes:
        extent_mm: per R, A, S axis the smallest and largest field of view (mm).
        hu_cdf: pooled cumulative body-HU distribution (:func:`body_hu_cdf`).
        hu_distance_max: largest distance of one training volume to the others' pool
            (leave one out; 0 with one volume).
        organ_ml: per organ name the smallest and largest training label volume (ml).
    """

    extent_mm: list
    hu_cdf: list
    hu_distance_max: float
    organ_ml: dict

    @classmethod
    def fit(cls, extents, cdfs, organ_volumes=()) -> "InputReference":
        """Fit on the training volumes' summaries.

        Args:
            extents: per volume :func:`ras_extent_mm`.
            cdfs: per volume :func:`body_hu_cdf`.
            organ_volumes: per labelled volume ``{organ: ml}``.
        """
        extents, cdfs = np.asarray(extents, dtype=np.float64), np.asarray(cdfs)  # (n, 3), (n, bins)
        leave_one_out = [hu_distance(cdfs[i], np.delete(cdfs, i, axis=0).mean(axis=0))
                         for i in range(len(cdfs))] if len(cdfs) > 1 else [0.0]
        names = sorted({k for volumes_ml in organ_volumes for k in volumes_ml})
        organ_ml = {k: [min(v[k] for v in organ_volumes if k in v),
                        max(v[k] for v in organ_volumes if k in v)] for k in names}
        return cls([[float(lo), float(hi)] for lo, hi in zip(extents.min(0), extents.max(0))],
                   cdfs.mean(axis=0).tolist(), float(max(leave_one_out)), organ_ml)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "InputReference":
        return cls(d["extent_mm"], d["hu_cdf"], float(d["hu_distance_max"]), d["organ_ml"])

    @property
    def hu_distance_threshold(self) -> float:
        return max(HISTOGRAM_FACTOR * self.hu_distance_max, HISTOGRAM_FLOOR_HU)

    def image_warnings(self, values: np.ndarray, affine) -> list[str]:
        """Field of view and intensity warnings for one ``(X, Y, Z)`` HU volume."""
        out = []
        extent = ras_extent_mm(values.shape, affine)
        low, high = FOV_RANGE_FACTORS
        odd = [f"{axis} {mm:.0f} mm (training {lo:.0f}-{hi:.0f})"
               for axis, mm, (lo, hi) in zip("RAS", extent, self.extent_mm)
               if mm < low * lo or mm > high * hi]
        if odd:
            out.append(f"field of view unlike the training volumes: {', '.join(odd)}")
        distance = hu_distance(body_hu_cdf(values), np.asarray(self.hu_cdf))
        if distance > self.hu_distance_threshold:
            out.append(f"intensity histogram unlike the training volumes: {distance:.0f} HU from "
                       f"their distribution (training volumes differ by up to "
                       f"{self.hu_distance_max:.0f} HU; warning above "
                       f"{self.hu_distance_threshold:.0f})")
        return out

    def organ_range(self, organ: str) -> tuple[float, float] | None:
        """Plausible volume (ml): the adult range widened to the training labels' range;
        without a documented range, half the training minimum to twice its maximum."""
        documented, trained = adult_range(organ), self.organ_ml.get(organ)
        if documented and trained:
            return min(documented[0], trained[0]), max(documented[1], trained[1])
        if trained:
            return trained[0] / 2.0, trained[1] * 2.0
        return documented


def organ_warnings(labels: np.ndarray, names: dict[int, str], voxel_ml: float,
                   reference: InputReference | None) -> list[str]:
    """Organs whose segmented volume is implausible for an adult (one line for all).

    An organ that reaches a face of the volume may be cut off by the field of view, so
    only its upper bound is checked.
    """
    odd = []
    for k, organ in names.items():
        plausible = reference.organ_range(organ) if reference else adult_range(organ)
        if plausible is None:
            continue
        mask = labels == k
        ml = float(np.count_nonzero(mask) * voxel_ml)
        too_small = ml < plausible[0] and mask.any() and not touches_edge(mask)
        if too_small or ml > plausible[1]:
            odd.append(f"{organ} {ml:.0f} ml (plausible {plausible[0]:.0f}-{plausible[1]:.0f})")
    if not odd:
        return []
    return [f"organ volumes implausible for an adult: {', '.join(odd)}; the segmentation "
            "is likely wrong"]


def error_warning(median_error: float, healthy_error: float | None) -> list[str]:
    """The map's median error far above the healthy calibration cases' (``ERROR_FACTOR``)."""
    if not healthy_error or median_error <= ERROR_FACTOR * healthy_error:
        return []
    return [f"reconstruction error far above the calibration range: median map value "
            f"{median_error:.3g}, {median_error / healthy_error:.1f}x that of the healthy "
            f"calibration cases ({healthy_error:.3g})"]


def fragmentation_warnings(shares: dict[str, float], fragment_max: dict | None) -> list[str]:
    """Organs whose raw label lies in pieces far more than on the validation cases (one line).

    Args:
        shares: per organ, the share of its raw label volume outside its largest connected
            part (``medical.postprocess.PostProcessing.apply``).
        fragment_max: per organ, the largest such share on the validation cases (``None``:
            no reference, no warning); a share above it by ``FRAGMENT_MARGIN`` is flagged.
    """
    if not fragment_max:
        return []
    odd = [f"{organ} {share:.0%} outside its largest part (validation cases up to "
           f"{fragment_max[organ]:.0%})" for organ, share in shares.items()
           if organ in fragment_max and share > fragment_max[organ] + FRAGMENT_MARGIN]
    if not odd:
        return []
    return [f"{FRAGMENT_WARNING}: {', '.join(odd)}; labels lie apart from the organ, where "
            "it cannot be"]
