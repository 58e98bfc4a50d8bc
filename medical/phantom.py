"""CT phantoms from the heart to the pelvis, with organ labels, for training without data.

A case is drawn in two independent parts, following SynthSeg's domain randomisation
(Billot et al., Medical Image Analysis 2023): an anatomy (``phantom_anatomy``: body
habitus, organs with random shape and position, bowel with gas, stomach, gallbladder,
heart, ribs, vertebrae, pelvis, arms) painted as tissues on a voxel grid
(``phantom_canvas``), and an acquisition (``phantom_render``: contrast phase, random HU
per tissue within its realistic range, field of view, slice thickness 1-5 mm, noise).
Labels are the segmenter's organs only (``LABELS``); bone other than the spine, stomach,
heart and bowel are background, so the segmenter learns they are not organs.

Optional lesions (hypo- or hyper-dense, 5-16 mm radius) sit in the parenchyma of liver,
spleen or kidneys, with realistic contrast (liver 30-70 HU below or 30-60 above the
parenchyma, spleen 30-60 below, kidney cysts at water density), each with a lesion mask.

Arrays are stored like NIfTI converted from DICOM: axis 0 runs to the patient's left,
axis 1 to posterior, axis 2 to superior; the affine is ``diag(-sx, -sy, sz)`` (LPS
storage in a RAS world), so readers must reorient.

Example:
    >>> case = simulate_case(np.random.default_rng(0), shape=(96, 96, 48), lesions=True)
    >>> case.image.shape, case.label.max()                  # doctest: +SKIP
    ((96, 96, 48), 5)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_erosion

from core.errors import DataValidationError
from core.io import atomic_path

from .io import save_nifti
from .phantom_anatomy import ADULT_KIDNEY_SHARE, draw_anatomy
from .phantom_canvas import Canvas
from .phantom_render import PHASES, PhantomStyle, acquire, base_image, draw_style

LABELS = {1: "liver", 2: "spleen", 3: "kidney_right", 4: "kidney_left", 5: "spine"}
# bumped whenever the same seed renders different phantoms
PHANTOM_VERSION = 4
# a case name's start: it names the case's files in imagesTr/ and labelsTr/
CASE_PREFIX = r"[A-Za-z0-9][A-Za-z0-9_-]*"


@dataclass
class PhantomCase:
    """One simulated case: HU image, organ labels, lesion mask and geometry."""

    image: np.ndarray    # (X, Y, Z) int16 HU
    label: np.ndarray    # (X, Y, Z) uint8, keys of LABELS
    lesion: np.ndarray   # (X, Y, Z) uint8, 1 inside a lesion
    affine: np.ndarray   # (4, 4) voxel -> RAS mm
    lesion_organs: list[str]
    style: PhantomStyle  # the acquisition it was rendered with

    @property
    def has_lesion(self) -> bool:
        return bool(self.lesion.any())


def _lesion_hu(rng, lab: int, tissue: float) -> tuple[float, bool]:
    """A lesion's HU inside ``tissue`` (parenchyma HU) of organ ``lab``; True if hypo-dense.

    Liver: hypo-dense metastases / cysts 30-70 HU below the parenchyma (70 %) or
    hyper-dense hypervascular lesions 30-60 HU above; spleen: hypo-dense, 30-60 below;
    kidneys: simple cysts at near-water density (0-20 HU).
    """
    if lab == 1:
        if rng.random() < 0.7:
            return tissue - rng.uniform(30, 70), True
        return tissue + rng.uniform(30, 60), False
    if lab == 2:
        return tissue - rng.uniform(30, 60), True
    return rng.uniform(0, 20), True


def _add_lesions(rng, canvas: Canvas, hu, masks) -> tuple[np.ndarray, list[str]]:
    """1-3 lesions (5-16 mm radius) in the parenchyma of liver, spleen or kidneys."""
    lesion = np.zeros(hu.shape, dtype=bool)
    names = []
    weights = {1: 0.6, 2: 0.2, 3: 0.1, 4: 0.1}
    labels = [lab for lab in weights if masks[lab].sum() > 8]
    if not labels:
        return lesion, names
    p = np.array([weights[lab] for lab in labels])
    wanted, attempts, centres = int(rng.integers(1, 4)), 0, {}
    while len(names) < wanted and attempts < 30:  # small organs may reject a placement
        attempts += 1
        lab = int(rng.choice(labels, p=p / p.sum()))
        organ = masks[lab]
        if lab not in centres:  # centres away from the organ's edge
            inner = binary_erosion(organ, iterations=2)
            centres[lab] = np.argwhere(inner if inner.any() else organ)
        idx = centres[lab]
        centre = [axis[i] for axis, i in zip(canvas.axes, idx[rng.integers(len(idx))])]
        radius = rng.uniform(5.0, 16.0)
        win, blob = canvas.ellipsoid(centre, (radius,) * 3, rng, wobble=0.15)
        blob = blob & organ[win] & ~lesion[win]
        if blob.sum() < 2:
            continue
        value, _ = _lesion_hu(rng, lab, float(np.median(hu[organ])))
        region = hu[win]
        region[blob] = value + (region[blob] - region[blob].mean())  # keep the tissue's texture
        lesion[win] |= blob
        names.append(LABELS[lab])
    return lesion, names


def simulate_case(rng: np.random.Generator, shape=(96, 96, 48), lesions: bool = False,
                  noise_hu: tuple[float, float] = (6.0, 22.0),
                  style: PhantomStyle | None = None,
                  adult_kidney_share: float = ADULT_KIDNEY_SHARE) -> PhantomCase:
    """Simulate one CT phantom: anatomy, then an acquisition of it.

    Args:
        rng: the case's random generator (all randomness comes from it).
        shape: voxels per axis; the spacing follows from the style's field of view
            (square in-plane pixels) and slab length.
        lesions: add 1-3 lesions (see ``_lesion_hu``; liver/spleen/kidney parenchyma).
        noise_hu: range of the noise standard deviation in HU (when ``style`` is drawn).
        style: the acquisition (phase, slice thickness, noise, field of view); ``None``
            draws one from ``rng`` (``phantom_render.draw_style``).
        adult_kidney_share: the chance that the body has adult kidney anatomy
            (``phantom_anatomy.adult_kidneys``; 0 draws every body with upright kidneys).

    Returns:
        A :class:`PhantomCase`.
    """
    return _simulate(rng, shape, lesions, noise_hu, style, adult_kidney_share)[0]


def simulate_study(rng: np.random.Generator, shape=(96, 96, 48),
                   noise_hu: tuple[float, float] = (6.0, 22.0),
                   adult_kidney_share: float = ADULT_KIDNEY_SHARE) -> list[PhantomCase]:
    """One lesion-free body scanned in every contrast phase, as a multi-phase CT study is.

    The body, field of view, slab, spacing, affine and protocol (slice thickness, noise
    level, point spread, oral contrast) are the study's; each phase draws its own tissue HU
    (``phantom_render.tissue_hu``), texture and noise. The first phase is the one drawn
    with the style, and its case is :func:`simulate_case`'s for the same ``rng`` state
    (lesion-free), so a study extends a single-phase set drawn from the same seeds; the
    other phases follow in ``PHASES`` order.

    Args:
        rng, shape, noise_hu, adult_kidney_share: as for :func:`simulate_case`.

    Returns:
        One :class:`PhantomCase` per phase (``len(PHASES)``), sharing label and affine.
    """
    first, canvas = _simulate(rng, shape, False, noise_hu, None, adult_kidney_share)
    cases = [first]
    for phase in PHASES:
        if phase != first.style.phase:
            style = replace(first.style, phase=phase)
            image = acquire(rng, base_image(rng, canvas.tissue, style, canvas.spacing), style,
                            canvas.spacing)
            cases.append(replace(first, image=image, style=style))
    return cases


def _simulate(rng, shape, lesions: bool, noise_hu, style, adult_kidney_share,
              ) -> tuple[PhantomCase, Canvas]:
    """:func:`simulate_case`'s case, with the canvas it was drawn on (a study renders its
    other phases on it, at ``canvas.spacing``)."""
    shape = tuple(int(s) for s in shape)
    style = style or draw_style(rng, noise_hu)
    pixel = style.fov_mm / max(shape[:2])
    spacing = (pixel, pixel, style.z_extent_mm / shape[2])
    canvas = Canvas(shape, spacing, style.level_mm)
    masks = draw_anatomy(rng, canvas, adult_kidney_share)
    hu = base_image(rng, canvas.tissue, style, spacing)
    lesion, names = _add_lesions(rng, canvas, hu, masks) if lesions else (
        np.zeros(shape, dtype=bool), [])
    image = acquire(rng, hu, style, spacing)
    origin = np.array([spacing[0] * (shape[0] - 1) / 2, spacing[1] * (shape[1] - 1) / 2,
                       -spacing[2] * (shape[2] - 1) / 2]) + rng.normal(0, 5, size=3)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = origin
    case = PhantomCase(image, canvas.label, lesion.astype(np.uint8), affine, names, style)
    return case, canvas


def simulate_dataset(out: str | Path, n_cases: int, lesions: bool = False, seed: int = 0,
                     shape=(96, 96, 48), lesion_fraction: float = 0.5,
                     prefix: str = "case", adult_kidney_share: float = ADULT_KIDNEY_SHARE,
                     studies: bool = False) -> Path:
    """Write ``n_cases`` phantoms in the Medical Segmentation Decathlon layout.

    ``imagesTr/``, ``labelsTr/`` (organ labels) and, with ``lesions``, ``lesionsTr/``
    (lesion masks; ``round(lesion_fraction * n_cases)`` cases, drawn by ``seed``, have lesions). ``dataset.json``
    names the labels and records ``has_lesion`` per case. The directory appears atomically.

    Args:
        out: dataset root (replaced if it exists).
        n_cases: number of cases (bodies, with ``studies``).
        lesions: simulate lesions in some cases.
        seed: case ``i`` draws its anatomy from ``default_rng([seed, i])``.
        shape: voxels per axis.
        lesion_fraction: share of cases with lesions when ``lesions`` is set.
        prefix: case name prefix (``CASE_PREFIX``: letters, digits, ``-`` and ``_``; it
            starts each case's file name, so ``../x`` or ``a/b`` could write outside ``out``).
        adult_kidney_share: share of bodies with adult kidney anatomy (``simulate_case``).
        studies: write each body as a multi-phase study (:func:`simulate_study`, lesion-free),
            one case per phase named ``<prefix>_<i>_<phase>``, its entry naming its
            ``study`` and ``phase``; the first phase of body ``i`` is case ``i`` of the
            single-phase set with the same seed.

    Returns:
        The dataset root.
    """
    if n_cases < 1:
        raise DataValidationError(f"--cases must be at least 1, got {n_cases}")
    if len(shape) != 3 or min(shape) < 8:
        raise DataValidationError(f"phantom shape must be 3 sizes >= 8, got {tuple(shape)}")
    if studies and lesions:
        raise DataValidationError("multi-phase studies are simulated lesion-free")
    if not re.fullmatch(CASE_PREFIX, prefix):
        raise DataValidationError(f"--prefix {prefix!r}: expected letters, digits, '-' and '_', "
                                  "first a letter or digit, like cal (it starts each case's "
                                  "file name)")
    out = Path(out)
    training = []
    with atomic_path(out) as tmp:
        tmp.mkdir()
        n_lesion = int(round(lesion_fraction * n_cases)) if lesions else 0
        lesion_cases = set(np.random.default_rng([seed, n_cases]).permutation(n_cases)[:n_lesion])
        for i in range(n_cases):
            rng = np.random.default_rng([seed, i])
            name = f"{prefix}_{i:03d}"
            if studies:
                for case in simulate_study(rng, shape, adult_kidney_share=adult_kidney_share):
                    phase = case.style.phase
                    training.append({**_write_case(tmp, f"{name}_{phase}", case, lesions),
                                     "study": name, "phase": phase})
            else:
                case = simulate_case(rng, shape, lesions=i in lesion_cases,
                                     adult_kidney_share=adult_kidney_share)
                training.append(_write_case(tmp, name, case, lesions))
        meta = {"name": "unmask abdominal CT phantoms", "description": "simulated by unmask",
                "tensorImageSize": "3D", "modality": {"0": "CT"},
                "labels": {"0": "background", **{str(k): v for k, v in LABELS.items()}},
                "numTraining": len(training), "numTest": 0, "training": training, "test": [],
                "simulator": {"seed": seed, "shape": list(shape), "lesions": lesions,
                              "studies": studies, "version": PHANTOM_VERSION}}
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2))
    return out


def _write_case(root: Path, name: str, case: PhantomCase, lesions: bool) -> dict:
    """Write ``case``'s image, label (and, with ``lesions``, lesion mask) as ``name`` under
    ``root``; its ``dataset.json`` entry."""
    file = f"{name}.nii.gz"
    entry = {"image": f"./imagesTr/{file}", "label": f"./labelsTr/{file}",
             "has_lesion": case.has_lesion, "lesion_organs": case.lesion_organs}
    save_nifti(case.image, case.affine, root / "imagesTr" / file)
    save_nifti(case.label, case.affine, root / "labelsTr" / file)
    if lesions:
        save_nifti(case.lesion, case.affine, root / "lesionsTr" / file)
        entry["lesion"] = f"./lesionsTr/{file}"
    return entry
