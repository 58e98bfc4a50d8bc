"""Input guard, refusal part: is a volume a CT in Hounsfield units?

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

Example:
    >>> check_hounsfield(volume, "scan.nii.gz")   # doctest: +SKIP
"""
from __future__ import annotations

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
