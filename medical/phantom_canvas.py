"""A tissue canvas for the phantoms: shapes in millimetres painted into a voxel tissue map.

The canvas holds two maps on the case's voxel grid: ``tissue`` (a ``Tissue`` per voxel,
rendered to Hounsfield units later by ``medical.phantom_render``) and ``label`` (the
segmenter's organ label). Every shape is evaluated only inside its bounding box, so a
256 x 256 grid costs about as much per organ as a small one does.

Coordinates: ``u`` runs to the patient's left, ``v`` to posterior, ``w`` to superior, in
millimetres; ``u`` and ``v`` are centred on the volume, ``w`` is the level along the body
(the "atlas" height, see ``medical.phantom_anatomy``).
"""
from __future__ import annotations

from enum import IntEnum

import numpy as np


class Tissue(IntEnum):
    """Tissue classes: each gets its own random HU per case (``phantom_render``)."""

    AIR = 0
    LUNG = 1
    FAT = 2              # subcutaneous
    VISCERAL_FAT = 3
    MUSCLE = 4
    LIVER = 5
    LIVER_VESSEL = 6
    SPLEEN = 7
    KIDNEY_CORTEX = 8
    KIDNEY_MEDULLA = 9
    RENAL_SINUS = 10
    PANCREAS = 11
    GALLBLADDER = 12
    BLADDER = 13
    STOMACH_WALL = 14
    STOMACH_CONTENT = 15
    BOWEL_WALL = 16
    BOWEL_CONTENT = 17
    STOOL = 18
    GAS = 19
    ARTERY = 20          # aorta, iliac arteries, left heart
    VEIN = 21            # IVC, right heart
    MYOCARDIUM = 22
    CANCELLOUS = 23      # vertebral bodies, pelvis, ribs: red marrow bone
    CORTICAL = 24
    YELLOW_MARROW = 25   # shafts of long bones
    DISC = 26
    CSF = 27


def random_rotation(rng, max_angle: float) -> np.ndarray:
    """Small random rotation (radians per axis) so organs are not axis-aligned."""
    a, b, c = rng.uniform(-max_angle, max_angle, size=3)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


class Canvas:
    """Tissue and label maps on a voxel grid, painted shape by shape.

    Args:
        shape: voxels per axis.
        spacing: mm per voxel along u, v, w.
        level: the atlas height (mm) of the volume's centre along w.
    """

    def __init__(self, shape, spacing, level: float = 0.0):
        self.shape = tuple(int(n) for n in shape)
        self.spacing = tuple(float(s) for s in spacing)
        centre = (0.0, 0.0, float(level))
        self.axes = [(c + (np.arange(n) - (n - 1) / 2.0) * s).astype(np.float32)  # float32: speed
                     for n, s, c in zip(self.shape, self.spacing, centre)]
        self.tissue = np.full(self.shape, Tissue.AIR, dtype=np.uint8)
        self.label = np.zeros(self.shape, dtype=np.uint8)
        self.cavity = np.zeros(self.shape, dtype=bool)  # inside the muscle wall

    def window(self, lo, hi):
        """Index slices of the voxels inside the mm box ``lo``..``hi``; None if empty."""
        out = []
        for axis, a, b in zip(self.axes, lo, hi):
            i0, i1 = np.searchsorted(axis, a), np.searchsorted(axis, b, side="right")
            if i1 <= i0:
                return None
            out.append(slice(int(i0), int(i1)))
        return tuple(out)

    def coords(self, window):
        """Open-grid coordinates (u (x,1,1), v (1,y,1), w (1,1,z)) of ``window``."""
        u, v, w = (axis[s] for axis, s in zip(self.axes, window))
        return u[:, None, None], v[None, :, None], w[None, None, :]

    def paint(self, window, mask, tissue: Tissue, label: int = 0, onto=None, cavity_only=False):
        """Set ``tissue`` and ``label`` where ``mask`` (shape of ``window``) holds.

        ``onto``: only over these tissues; ``cavity_only``: only inside the muscle wall.
        Returns the painted voxels as a mask of ``window``.
        """
        if window is None:
            return None
        mask = np.broadcast_to(mask, tuple(s.stop - s.start for s in window)).copy()
        if onto is not None:
            mask &= np.isin(self.tissue[window], [int(t) for t in onto])
        if cavity_only:
            mask &= self.cavity[window]
        self.tissue[window][mask] = int(tissue)
        self.label[window][mask] = label
        return mask

    # --- shapes: each returns (window, mask) ------------------------------------------------

    def ellipsoid(self, centre, radii, rng=None, wobble: float = 0.0, max_angle: float = 0.0,
                  shell: float = 0.0, within=None, rotation=None):
        """An ellipsoid; ``wobble`` adds smooth random lobes to its surface, ``max_angle`` a
        random rotation; ``shell`` > 0 keeps only the outer ``shell`` mm; ``within``
        evaluates it on that window (another shape's) instead of its own; ``rotation``
        (3 x 3, organ axes as rows) orients it instead of ``max_angle``."""
        reach = max(radii) * (1.0 + wobble) + 1.0
        window = within or self.window([c - reach for c in centre], [c + reach for c in centre])
        if window is None:
            return None, None
        u, v, w = self.coords(window)
        if rotation is not None:
            rot = np.asarray(rotation, dtype=float)
        else:
            rot = random_rotation(rng, max_angle) if max_angle > 0 else np.eye(3)
        d = np.stack(np.broadcast_arrays(u - centre[0], v - centre[1], w - centre[2]), -1) @ rot.T
        n = d / np.asarray(radii, dtype=float)
        radius = np.sqrt((n ** 2).sum(-1)) + 1e-9
        limit = 1.0
        if wobble > 0:
            direction = n / radius[..., None]
            bump = np.zeros_like(radius)
            for _ in range(4):  # a few low-frequency lobes on the unit sphere
                k = rng.normal(size=3) * rng.uniform(1.0, 2.5)
                bump += np.cos(direction @ k + rng.uniform(0, 2 * np.pi)) / 4.0
            limit = 1.0 + wobble * bump
        mask = radius <= limit
        if shell > 0:
            mask &= radius > limit - shell / min(radii)
        return window, mask

    def tube(self, points, radius: float, within=None):
        """A tube of ``radius`` mm through ``points`` ((N, 3) mm), as overlapping balls."""
        points = np.asarray(points, dtype=float)
        step = max(radius / 2.0, 0.5)
        samples = [points[0]]
        for a, b in zip(points[:-1], points[1:]):
            n = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
            samples.extend(a + (b - a) * t for t in np.arange(1, n + 1) / n)
        samples = np.asarray(samples)
        window = within or self.window(samples.min(0) - radius - 1, samples.max(0) + radius + 1)
        if window is None:
            return None, None
        u, v, w = self.coords(window)
        mask = np.zeros(tuple(s.stop - s.start for s in window), dtype=bool)
        for p in samples:
            mask |= (u - p[0]) ** 2 + (v - p[1]) ** 2 + (w - p[2]) ** 2 <= radius ** 2
        return window, mask

    def column(self, centre_uv, radii_uv, w_range, shell: float = 0.0, within=None):
        """An elliptic cylinder along ``w`` over ``w_range`` (mm); ``shell`` as for ellipsoids."""
        lo = [centre_uv[0] - radii_uv[0] - 1, centre_uv[1] - radii_uv[1] - 1, w_range[0]]
        hi = [centre_uv[0] + radii_uv[0] + 1, centre_uv[1] + radii_uv[1] + 1, w_range[1]]
        window = within or self.window(lo, hi)
        if window is None:
            return None, None
        u, v, w = self.coords(window)
        r = np.sqrt(((u - centre_uv[0]) / radii_uv[0]) ** 2 + ((v - centre_uv[1]) / radii_uv[1]) ** 2)
        mask = np.broadcast_to((r <= 1.0) & (w >= w_range[0]) & (w <= w_range[1]),
                               tuple(s.stop - s.start for s in window))
        if shell > 0:
            mask = mask & (r > 1.0 - shell / min(radii_uv))
        return window, mask
