"""Abdominal CT phantoms: anatomy in millimetres, rendered to a voxel grid in Hounsfield units.

Each case draws its own anatomy (body size and position, organ sizes, positions and
shapes, tissue densities), then renders body outline with subcutaneous fat and a muscle
wall, visceral fat with bowel loops and gas, liver, spleen, both kidneys (cortex around a
fat-density renal sinus, which the kidney label includes), the spine with
its canal and paraspinal muscles, aorta and IVC. Partial-volume blur (anisotropic: slices
are thicker than pixels) and correlated noise come last. Optional lesions (hypo- or
hyper-dense, 5-16 mm radius) sit in the parenchyma of liver, spleen or kidneys, with
realistic contrast (liver 30-70 HU below or 30-60 above the parenchyma, spleen 30-60
below, kidney cysts at water density), each with a lesion mask.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import DataValidationError
from core.io import atomic_path

from .io import save_nifti

LABELS = {1: "liver", 2: "spleen", 3: "kidney_right", 4: "kidney_left", 5: "spine"}
FIELD_OF_VIEW_MM = (380.0, 380.0, 240.0)
AIR_HU = -1000.0
# bumped whenever the same seed renders different phantoms (2: fat-density renal sinus)
PHANTOM_VERSION = 2


@dataclass
class PhantomCase:
    """One simulated case: HU image, organ labels, lesion mask and geometry."""

    image: np.ndarray    # (X, Y, Z) int16 HU
    label: np.ndarray    # (X, Y, Z) uint8, keys of LABELS
    lesion: np.ndarray   # (X, Y, Z) uint8, 1 inside a lesion
    affine: np.ndarray   # (4, 4) voxel -> RAS mm
    lesion_organs: list[str]

    @property
    def has_lesion(self) -> bool:
        return bool(self.lesion.any())


def _grid(shape, spacing):
    """Millimetre coordinates (u left+, v posterior+, w superior+) centred on the volume."""
    axes = [(np.arange(n) - (n - 1) / 2.0) * s for n, s in zip(shape, spacing)]
    return np.meshgrid(*axes, indexing="ij")  # 3 x (X, Y, Z)


def _random_rotation(rng, max_angle: float) -> np.ndarray:
    """Small random rotation (radians per axis) so organs are not axis-aligned."""
    a, b, c = rng.uniform(-max_angle, max_angle, size=3)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


def _blob(coords, center, radii, rng, wobble: float = 0.12, max_angle: float = 0.3) -> np.ndarray:
    """Boolean ellipsoid with a smooth random surface perturbation (organ-like shape)."""
    u, v, w = coords
    rot = _random_rotation(rng, max_angle)
    d = np.stack([u - center[0], v - center[1], w - center[2]], axis=-1) @ rot.T  # (X,Y,Z,3)
    n = d / np.asarray(radii)
    radius = np.sqrt((n ** 2).sum(-1)) + 1e-9
    direction = n / radius[..., None]
    bump = np.zeros_like(radius)
    for _ in range(4):  # a few low-frequency lobes on the unit sphere
        k = rng.normal(size=3) * rng.uniform(1.0, 2.5)
        bump += np.cos(direction @ k + rng.uniform(0, 2 * np.pi)) / 4.0
    return radius <= 1.0 + wobble * bump


def _smooth_noise(rng, shape, sigma_vox, amplitude) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    field = gaussian_filter(rng.normal(size=shape), sigma_vox)
    return field / (field.std() + 1e-9) * amplitude


def _anatomy(rng, coords, spacing):
    """Draw one case's anatomy; returns (hu, label) before blur and noise."""
    u, v, w = coords
    shape = u.shape
    hu = np.full(shape, AIR_HU)
    label = np.zeros(shape, dtype=np.uint8)

    # body: elliptic cylinder with per-slice wobble, subcutaneous fat, muscle wall
    a_u, a_v = rng.uniform(140, 172), rng.uniform(100, 125)
    c_u, c_v = rng.normal(0, 6), rng.normal(0, 6)
    taper = 1.0 + rng.uniform(-0.06, 0.06) * w / 120.0
    r_body = np.sqrt(((u - c_u) / (a_u * taper)) ** 2 + ((v - c_v) / (a_v * taper)) ** 2)
    body = r_body <= 1.0
    fat_mm, muscle_mm = rng.uniform(10, 28), rng.uniform(8, 14)
    inner_fat = r_body <= 1.0 - fat_mm / a_v
    inner_muscle = r_body <= 1.0 - (fat_mm + muscle_mm) / a_v
    hu[body] = rng.uniform(-110, -90)                        # subcutaneous fat
    hu[inner_fat] = rng.uniform(40, 60)                      # abdominal wall muscle
    hu[inner_muscle] = rng.uniform(-100, -80)                # visceral fat

    # bowel loops (soft tissue) with a few gas pockets, anterior half
    for _ in range(rng.integers(5, 9)):
        centre = (c_u + rng.uniform(-0.5, 0.5) * a_u, c_v + rng.uniform(-0.75, 0.0) * a_v,
                  rng.uniform(-110, 60))
        loop = _blob(coords, centre, rng.uniform(14, 28, size=3), rng, wobble=0.2) & inner_muscle
        hu[loop] = rng.uniform(20, 45)
        if rng.random() < 0.5:
            gas = _blob(coords, centre, rng.uniform(4, 9, size=3), rng) & loop
            hu[gas] = rng.uniform(-950, -700)

    # spine: vertebral body (cancellous + cortex), canal, paraspinal muscles
    sp_u, sp_v = c_u + rng.normal(0, 3), c_v + 0.55 * a_v
    r_vb = rng.uniform(16, 21)
    d_vb = np.sqrt((u - sp_u) ** 2 + (v - sp_v) ** 2)
    for side in (-1, 1):
        para = _blob(coords, (sp_u + side * 36, sp_v + 20, 0), (20, 18, 400), rng, 0.05, 0.05)
        hu[para & inner_fat] = rng.uniform(45, 60)
    canal = np.sqrt((u - sp_u) ** 2 + (v - sp_v - r_vb - 9) ** 2) <= 8
    vertebra = (d_vb <= r_vb) | ((np.abs(u - sp_u) <= 5) & (v > sp_v) & (v < sp_v + r_vb + 24) & ~canal)
    hu[vertebra] = rng.uniform(250, 350)
    hu[vertebra & (d_vb > r_vb - 3)] = rng.uniform(600, 800)
    hu[canal] = rng.uniform(5, 20)
    label[vertebra] = 5

    # vessels: aorta (contrast) left-anterior of the spine, IVC right
    aorta = np.sqrt((u - sp_u - 14) ** 2 + (v - sp_v + r_vb + 12) ** 2) <= rng.uniform(9, 13)
    ivc = np.sqrt((u - sp_u + 24) ** 2 + (v - sp_v + r_vb + 10) ** 2) <= rng.uniform(8, 12)
    hu[aorta] = rng.uniform(150, 220)
    hu[ivc] = rng.uniform(90, 130)

    # organs: (label, centre, radii, HU); right = negative u
    organs = [
        (1, (c_u - rng.uniform(55, 80), c_v - rng.uniform(0, 20), rng.uniform(25, 55)),
         rng.uniform((65, 60, 55), (85, 78, 75)), rng.uniform(90, 120)),
        (2, (c_u + rng.uniform(75, 95), c_v + rng.uniform(25, 45), rng.uniform(35, 65)),
         rng.uniform((22, 35, 35), (32, 50, 55)), rng.uniform(100, 130)),
        (3, (sp_u - rng.uniform(55, 70), sp_v - rng.uniform(0, 12), rng.uniform(-40, -10)),
         rng.uniform((22, 20, 40), (30, 27, 55)), rng.uniform(150, 190)),
        (4, (sp_u + rng.uniform(55, 70), sp_v - rng.uniform(0, 12), rng.uniform(-25, 5)),
         rng.uniform((22, 20, 40), (30, 27, 55)), rng.uniform(150, 190)),
    ]
    masks = {}
    for lab, centre, radii, density in organs:
        organ = _blob(coords, centre, radii, rng) & inner_muscle & (label == 0)
        if lab in (3, 4):  # renal sinus: fat-density centre (hilar fat around the pelvis)
            sinus = _blob(coords, centre, np.asarray(radii) * 0.4, rng) & organ
            hu[organ] = density
            hu[sinus] = rng.uniform(-110, -60)
            masks[lab] = organ & ~sinus  # lesions grow in the parenchyma
        else:
            hu[organ] = density + _smooth_noise(rng, shape, 2.0, 6.0)[organ]
            masks[lab] = organ
        label[organ] = lab
    return hu, label, masks


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


def _add_lesions(rng, coords, hu, masks, spacing) -> tuple[np.ndarray, list[str]]:
    """1-3 lesions (5-16 mm radius) in the parenchyma of liver, spleen or kidneys."""
    from scipy.ndimage import binary_erosion

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
        centre_vox = idx[rng.integers(len(idx))]
        centre = [c[tuple(centre_vox)] for c in coords]
        radius = rng.uniform(5.0, 16.0)
        blob = _blob(coords, centre, (radius,) * 3, rng, wobble=0.15) & organ & ~lesion
        if blob.sum() < 2:
            continue
        value, _ = _lesion_hu(rng, lab, float(np.median(hu[organ])))
        hu[blob] = value + (hu[blob] - hu[blob].mean())  # keep the tissue's texture
        lesion |= blob
        names.append(LABELS[lab])
    return lesion, names


def simulate_case(rng: np.random.Generator, shape=(96, 96, 48), lesions: bool = False,
                  noise_hu: tuple[float, float] = (10.0, 16.0)) -> PhantomCase:
    """Simulate one abdominal CT phantom.

    Args:
        rng: the case's random generator (all randomness comes from it).
        shape: voxels per axis; spacing follows from a ~380x380x240 mm field of view.
        lesions: add 1-3 lesions (see ``_lesion_hu``; liver/spleen/kidney parenchyma).
        noise_hu: range of the noise standard deviation in HU.

    Returns:
        A :class:`PhantomCase`.
    """
    from scipy.ndimage import gaussian_filter

    shape = tuple(int(s) for s in shape)
    scale = rng.uniform(0.96, 1.04)
    spacing = tuple(f * scale / n for f, n in zip(FIELD_OF_VIEW_MM, shape))
    coords = _grid(shape, spacing)
    hu, label, masks = _anatomy(rng, coords, spacing)
    lesion, names = _add_lesions(rng, coords, hu, masks, spacing) if lesions else (
        np.zeros(shape, dtype=bool), [])
    # partial-volume blur: ~1.2 mm in-plane PSF, slice profile ~0.4 of the thickness
    sigma = (1.2 / spacing[0], 1.2 / spacing[1], 0.4)
    hu = gaussian_filter(hu, sigma)
    noise = gaussian_filter(rng.normal(size=shape), (0.5, 0.5, 0.3))
    hu = hu + noise / noise.std() * rng.uniform(*noise_hu)
    hu = np.clip(np.round(hu), -1024, 3071).astype(np.int16)
    origin = np.array([spacing[0] * (shape[0] - 1) / 2, spacing[1] * (shape[1] - 1) / 2,
                       -spacing[2] * (shape[2] - 1) / 2]) + rng.normal(0, 5, size=3)
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    affine[:3, 3] = origin
    return PhantomCase(hu, label, lesion.astype(np.uint8), affine, names)


def simulate_dataset(out: str | Path, n_cases: int, lesions: bool = False, seed: int = 0,
                     shape=(96, 96, 48), lesion_fraction: float = 0.5,
                     prefix: str = "case") -> Path:
    """Write ``n_cases`` phantoms in the Medical Segmentation Decathlon layout.

    ``imagesTr/``, ``labelsTr/`` (organ labels) and, with ``lesions``, ``lesionsTr/``
    (lesion masks; ``round(lesion_fraction * n_cases)`` cases, drawn by ``seed``, have lesions). ``dataset.json``
    names the labels and records ``has_lesion`` per case. The directory appears atomically.

    Args:
        out: dataset root (replaced if it exists).
        n_cases: number of cases.
        lesions: simulate lesions in some cases.
        seed: case ``i`` draws its anatomy from ``default_rng([seed, i])``.
        shape: voxels per axis.
        lesion_fraction: share of cases with lesions when ``lesions`` is set.
        prefix: case name prefix.

    Returns:
        The dataset root.
    """
    if n_cases < 1:
        raise DataValidationError(f"--cases must be at least 1, got {n_cases}")
    if len(shape) != 3 or min(shape) < 8:
        raise DataValidationError(f"phantom shape must be 3 sizes >= 8, got {tuple(shape)}")
    out = Path(out)
    training = []
    with atomic_path(out) as tmp:
        tmp.mkdir()
        n_lesion = int(round(lesion_fraction * n_cases)) if lesions else 0
        lesion_cases = set(np.random.default_rng([seed, n_cases]).permutation(n_cases)[:n_lesion])
        for i in range(n_cases):
            rng = np.random.default_rng([seed, i])
            with_lesion = i in lesion_cases
            case = simulate_case(rng, shape, lesions=with_lesion)
            name = f"{prefix}_{i:03d}.nii.gz"
            entry = {"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}",
                     "has_lesion": case.has_lesion, "lesion_organs": case.lesion_organs}
            save_nifti(case.image, case.affine, tmp / "imagesTr" / name)
            save_nifti(case.label, case.affine, tmp / "labelsTr" / name)
            if lesions:
                save_nifti(case.lesion, case.affine, tmp / "lesionsTr" / name)
                entry["lesion"] = f"./lesionsTr/{name}"
            training.append(entry)
        meta = {"name": "unmask abdominal CT phantoms", "description": "simulated by unmask",
                "tensorImageSize": "3D", "modality": {"0": "CT"},
                "labels": {"0": "background", **{str(k): v for k, v in LABELS.items()}},
                "numTraining": n_cases, "numTest": 0, "training": training, "test": [],
                "simulator": {"seed": seed, "shape": list(shape), "lesions": lesions,
                              "version": PHANTOM_VERSION}}
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2))
    return out
