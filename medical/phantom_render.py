"""From a tissue map to a CT image: random HU per tissue, contrast phase, blur, noise.

This is SynthSeg's idea (Billot et al., Medical Image Analysis 2023) kept inside CT's
physics: each case draws one acquisition ``PhantomStyle`` (contrast phase, slice
thickness, noise, field of view) and, per tissue, a mean HU uniformly within that
tissue's realistic range for the phase, plus a smooth texture. A segmenter trained on
such cases cannot key on one exact density; it has to learn shape and context.

Ranges (HU) are textbook values for abdominal CT: unenhanced organs 40-65, arterial
phase aorta 250-450 with a corticomedullary kidney and heterogeneous spleen, portal-venous
liver 95-130, kidneys 140-200, cortical bone 700-1300 (before partial volume).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from .phantom_canvas import Tissue

PHASES = ("native", "arterial", "portal")
# (low, high) HU per phase: native, arterial, portal-venous; one pair = phase-independent
HU_RANGES = {
    Tissue.AIR: (-1000, -990), Tissue.LUNG: (-880, -780), Tissue.FAT: (-120, -85),
    Tissue.VISCERAL_FAT: (-115, -80),
    Tissue.MUSCLE: ((40, 55), (45, 62), (50, 68)),
    Tissue.LIVER: ((50, 65), (60, 82), (95, 130)),
    Tissue.LIVER_VESSEL: ((30, 45), (45, 75), (130, 185)),
    Tissue.SPLEEN: ((40, 55), (90, 140), (105, 135)),
    Tissue.KIDNEY_CORTEX: ((25, 40), (150, 240), (140, 200)),
    Tissue.KIDNEY_MEDULLA: ((25, 40), (55, 100), (130, 190)),
    Tissue.RENAL_SINUS: (-100, -40),
    Tissue.PANCREAS: ((35, 50), (95, 140), (80, 110)),
    Tissue.GALLBLADDER: (0, 25), Tissue.BLADDER: (0, 15),
    Tissue.STOMACH_WALL: ((35, 50), (70, 110), (70, 100)),
    Tissue.STOMACH_CONTENT: (-5, 45),
    Tissue.BOWEL_WALL: ((35, 50), (60, 100), (70, 100)),
    Tissue.BOWEL_CONTENT: (-5, 40), Tissue.STOOL: (-120, 30), Tissue.GAS: (-1000, -880),
    Tissue.ARTERY: ((35, 50), (250, 450), (140, 200)),
    Tissue.VEIN: ((35, 50), (50, 110), (130, 180)),
    Tissue.MYOCARDIUM: ((40, 55), (80, 130), (90, 120)),
    Tissue.CANCELLOUS: (150, 320), Tissue.CORTICAL: (700, 1300), Tissue.YELLOW_MARROW: (-60, 40),
    Tissue.DISC: (70, 110), Tissue.CSF: (0, 20),
}
ORAL_CONTRAST = (150, 350)  # positive oral contrast in bowel and stomach, some cases
# (smoothing sigma mm, amplitude HU) of each tissue's texture
TEXTURE = {Tissue.LIVER: (4.0, 5.0), Tissue.SPLEEN: (4.0, 6.0), Tissue.STOOL: (2.0, 45.0),
           Tissue.CANCELLOUS: (2.0, 35.0), Tissue.KIDNEY_CORTEX: (4.0, 8.0),
           Tissue.BOWEL_CONTENT: (4.0, 8.0), Tissue.STOMACH_CONTENT: (4.0, 8.0),
           Tissue.MUSCLE: (4.0, 4.0), Tissue.LUNG: (4.0, 25.0)}  # two scales: two filters
SPLEEN_ARTERIAL_MOTTLE = 25.0  # arciform enhancement: the arterial spleen is heterogeneous
CORTEX_MM = 2.0  # real cortical bone thickness: thinner than a voxel, so partial volume


@dataclass(frozen=True)
class PhantomStyle:
    """One case's acquisition: what a scanner and protocol choose, not the anatomy.

    Args:
        phase: ``"native"``, ``"arterial"`` or ``"portal"`` (portal-venous).
        slice_thickness_mm: reconstructed slice thickness (full width at half maximum of
            the slice profile, blur along z).
        noise_hu: standard deviation of the image noise.
        fov_mm: in-plane field of view along the longer in-plane axis.
        z_extent_mm: length of the scanned slab.
        level_mm: atlas height of the slab's centre (``medical.phantom_anatomy``): high
            levels reach the heart, low ones the hips.
        psf_mm: in-plane point-spread function (Gaussian sigma).
        oral_contrast: positive oral contrast in bowel and stomach.
    """

    phase: str
    slice_thickness_mm: float
    noise_hu: float
    fov_mm: float
    z_extent_mm: float
    level_mm: float
    psf_mm: float
    oral_contrast: bool


def draw_style(rng, noise_hu=(6.0, 22.0)) -> PhantomStyle:
    """A random acquisition (uniform over the ranges CT protocols use)."""
    return PhantomStyle(phase=PHASES[int(rng.integers(len(PHASES)))],
                        slice_thickness_mm=float(rng.uniform(1.0, 5.0)),
                        noise_hu=float(rng.uniform(*noise_hu)),
                        fov_mm=float(rng.uniform(340, 480)),
                        z_extent_mm=float(rng.uniform(220, 320)),
                        level_mm=float(rng.uniform(-130, 30)),
                        psf_mm=float(rng.uniform(0.5, 1.0)),
                        oral_contrast=bool(rng.random() < 0.25))


def tissue_hu(rng, style: PhantomStyle) -> np.ndarray:
    """Mean HU of every tissue for one case: uniform within its range for the phase."""
    phase = PHASES.index(style.phase)
    table = np.zeros(len(Tissue))
    for tissue in Tissue:
        ranges = HU_RANGES[tissue]
        low, high = ranges[phase] if isinstance(ranges[0], tuple) else ranges
        table[tissue] = rng.uniform(low, high)
    if style.oral_contrast:
        table[Tissue.BOWEL_CONTENT] = rng.uniform(*ORAL_CONTRAST)
        table[Tissue.STOMACH_CONTENT] = rng.uniform(*ORAL_CONTRAST)
    return table


def base_image(rng, tissue: np.ndarray, style: PhantomStyle, spacing) -> np.ndarray:
    """Noise-free, unblurred HU: each tissue's mean plus its smooth texture."""
    table = tissue_hu(rng, style)
    cortex_share = min(1.0, CORTEX_MM / min(spacing[:2]))  # a voxel is mostly marrow
    table[Tissue.CORTICAL] = (table[Tissue.CANCELLOUS]
                              + cortex_share * (table[Tissue.CORTICAL] - table[Tissue.CANCELLOUS]))
    hu = table.astype(np.float32)[tissue]
    textures = dict(TEXTURE)
    if style.phase == "arterial":
        textures[Tissue.SPLEEN] = (4.0, SPLEEN_ARTERIAL_MOTTLE)
    fields = {}
    for kind, (sigma_mm, amplitude) in textures.items():
        where = tissue == kind
        if not where.any():
            continue
        if sigma_mm not in fields:  # one field per scale, shared by the tissues using it
            field = gaussian_filter(rng.standard_normal(tissue.shape, dtype=np.float32),
                                    [sigma_mm / s for s in spacing])
            fields[sigma_mm] = field / (field.std() + 1e-9)
        hu[where] += amplitude * fields[sigma_mm][where]
    return hu


def blur(hu: np.ndarray, style: PhantomStyle, spacing) -> np.ndarray:
    """Scanner blur: the in-plane PSF, and along z the slice profile as well."""
    slice_sigma = style.slice_thickness_mm / 2.355  # FWHM -> Gaussian sigma
    sigma = (style.psf_mm / spacing[0], style.psf_mm / spacing[1],
             np.hypot(style.psf_mm, slice_sigma) / spacing[2])
    return gaussian_filter(hu, sigma)


def add_noise(rng, image: np.ndarray, style: PhantomStyle) -> np.ndarray:
    """Correlated noise of ``style.noise_hu`` SD; rounded and clipped to int16 HU."""
    noise = gaussian_filter(rng.standard_normal(image.shape, dtype=np.float32), (0.6, 0.6, 0.3))
    image = image + noise / (noise.std() + 1e-9) * style.noise_hu
    return np.clip(np.round(image), -1024, 3071).astype(np.int16)


def acquire(rng, hu: np.ndarray, style: PhantomStyle, spacing) -> np.ndarray:
    """Blur and noise: what the scanner makes of ``hu``; int16 HU."""
    return add_noise(rng, blur(hu, style, spacing), style)
