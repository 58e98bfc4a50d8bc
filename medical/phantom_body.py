"""The body frame of a phantom (``medical.phantom_anatomy`` draws the organs inside it).

Heights are atlas millimetres (``w``, superior positive; see ``medical.phantom_anatomy``).
Here: the segmenter's organ labels, the case's :class:`Body` (outline, subcutaneous fat,
muscle wall and the cavity inside it; spine position and landmark heights), the height of
the diaphragm domes, and the skeleton drawn last over the organs: vertebrae (cancellous
body in a cortical shell, discs, pedicles, laminae, spinous and transverse processes
around the spinal canal), sacrum, ribs sloping down to the front, sternum, iliac wings,
femoral heads and necks, pubic rami; arms at the sides in half the cases.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .phantom_canvas import Canvas, Tissue

LIVER, SPLEEN, KIDNEY_RIGHT, KIDNEY_LEFT, SPINE = 1, 2, 3, 4, 5


@dataclass
class Body:
    """The case's body frame (mm): outline, spine and landmark heights."""

    c_u: float
    c_v: float
    a_u: float          # half width
    a_v: float          # half depth
    fat: float          # subcutaneous fat thickness
    wall: float         # muscle wall thickness
    sp_u: float         # vertebral body centre
    sp_v: float
    r_vb: float         # vertebral body radius
    dome: float         # right diaphragm dome height
    s1: float           # L5/S1 disc height
    pitch: float        # vertebra + disc height

    @property
    def in_u(self) -> float:
        """Half width of the cavity inside the muscle wall (organs are placed in it)."""
        return self.a_u - self.fat - self.wall

    @property
    def in_v(self) -> float:
        return self.a_v - self.fat - self.wall


def draw_body(rng, canvas: Canvas) -> Body:
    """Outline, fat and muscle wall; fills ``canvas.cavity``."""
    half_u = canvas.axes[0][-1]
    a_u = min(rng.uniform(140, 185), half_u - 12)
    a_v = min(rng.uniform(0.65, 0.8) * a_u, canvas.axes[1][-1] - 12)
    c_u, c_v = rng.normal(0, 5), rng.normal(0, 5) + min(8.0, canvas.axes[1][-1] - a_v - 10)
    stature = rng.uniform(0.9, 1.1)
    fat, wall = rng.uniform(5, 35), rng.uniform(7, 14)
    r_vb = rng.uniform(15, 20)
    sp_v = c_v + a_v - (0.6 * fat + wall + 45 + r_vb)
    body = Body(c_u, c_v, a_u, a_v, fat, wall, c_u + rng.normal(0, 3), sp_v, r_vb,
                dome=90 * stature + rng.normal(0, 8), s1=-150 * stature + rng.normal(0, 8),
                pitch=rng.uniform(28, 34) * stature)

    u, v, w = canvas.coords(tuple(slice(None) for _ in range(3)))
    hips, belly = rng.uniform(0.0, 0.12), rng.uniform(-0.05, 0.12)
    scale_u = 1 + hips * np.exp(-((w - body.s1 + 40) / 90) ** 2)       # wider at the hips
    scale_v = 1 + belly * np.exp(-((w - body.s1 - 110) / 110) ** 2)    # belly in front
    depth = np.where(v > c_v, a_v, a_v * scale_v)                      # flat back on the table
    r = np.sqrt(((u - c_u) / (a_u * scale_u)) ** 2 + ((v - c_v) / depth) ** 2)
    depth_mm = (1.0 - r) * np.hypot(u - c_u, v - c_v) / (r + 1e-9)  # ~ mm below the skin
    canvas.tissue[r <= 1.0] = Tissue.FAT
    canvas.tissue[(r <= 1.0) & (depth_mm >= fat)] = Tissue.MUSCLE
    canvas.cavity = (r <= 1.0) & (depth_mm >= fat + wall)
    canvas.tissue[canvas.cavity] = Tissue.VISCERAL_FAT
    return body


def dome_height(body: Body, u, v, left_drop: float):
    """Height of the diaphragm over (u, v): two domes, lower at the back (the recesses)."""
    side = np.where(u < body.c_u, body.dome, body.dome - left_drop)
    lateral = (np.abs(u - body.c_u) - 0.4 * body.a_u) / (0.5 * body.a_u)
    sag = np.where(lateral > 0, 35.0, 12.0) * lateral ** 2  # the heart sits on the middle
    return side - sag - 0.25 * np.maximum(0, v - body.c_v)


def _bone(canvas: Canvas, outer, inner, core: Tissue = Tissue.CANCELLOUS, label: int = 0):
    """Paint a bone: ``core`` inside a cortical shell.

    Args:
        outer: ``(window, mask)`` of the whole bone.
        inner: ``window -> mask`` of its core on that window (the shape minus the shell).
    """
    win, mask = outer
    if win is None:
        return
    canvas.paint(win, mask, Tissue.CORTICAL, label)
    canvas.paint(win, mask & inner(win), core, label)


def _spine(rng, canvas: Canvas, body: Body) -> None:
    """Vertebrae from the sacrum up: bodies, discs, posterior arch around the canal."""
    shell = max(1.5, 0.6 * min(canvas.spacing[:2]))
    top = canvas.axes[2][-1] + body.pitch
    k = 0
    while body.s1 + k * body.pitch < top:
        lo, hi = body.s1 + k * body.pitch, body.s1 + (k + 1) * body.pitch
        disc = rng.uniform(6, 10)
        lordosis = 12 * np.exp(-((lo + 60 - body.s1) / 90) ** 2)
        r = body.r_vb * (1 - 0.01 * min(k, 12))
        sv = body.sp_v - lordosis
        canvas.paint(*canvas.column((body.sp_u, sv), (1.15 * r, r), (lo, lo + disc)), Tissue.DISC, SPINE)
        vb = (lo + disc, hi)
        _bone(canvas, canvas.column((body.sp_u, sv), (1.15 * r, r), vb),
              lambda win: canvas.column((body.sp_u, sv), (1.15 * r - shell, r - shell), vb,
                                        within=win)[1], label=SPINE)
        canal_v, canal_r = sv + r + 9, rng.uniform(7, 10)
        arch_w = (lo + disc + 2, hi - 3)
        win, ring = canvas.column((body.sp_u, canal_v), (canal_r + 6, canal_r + 6), arch_w)
        if win is not None:
            v = canvas.coords(win)[1]
            canvas.paint(win, ring & (v > sv + r - 3), Tissue.CORTICAL, SPINE)
        lumbar = k < 5
        spinous = canvas.window((body.sp_u - 4, canal_v + canal_r, arch_w[0]),
                                (body.sp_u + 4, canal_v + canal_r + (32 if lumbar else 25), arch_w[1]))
        canvas.paint(spinous, True, Tissue.CORTICAL, SPINE)
        reach, middle = (45 if lumbar else 28), (lo + disc + hi) / 2
        transverse = canvas.window((body.sp_u - reach, canal_v - 5, middle - 5),
                                   (body.sp_u + reach, canal_v + 4, middle + 5))
        canvas.paint(transverse, True, Tissue.CORTICAL, SPINE, onto=(
            Tissue.MUSCLE, Tissue.FAT, Tissue.VISCERAL_FAT, Tissue.LUNG))
        canvas.paint(*canvas.column((body.sp_u, canal_v), (canal_r, canal_r), (lo, hi)), Tissue.CSF)
        k += 1
    centre = (body.sp_u, body.sp_v + 15, body.s1 - 55)
    _bone(canvas, canvas.ellipsoid(centre, (48, 16, 58)),
          lambda win: canvas.ellipsoid(centre, (48 - shell, 16 - shell, 58 - shell), within=win)[1])


def _ribs_and_sternum(rng, canvas: Canvas, body: Body) -> None:
    """Twelve rib pairs from the thoracic vertebrae, sloping down toward the front."""
    q = 1 - (body.fat + 0.5 * body.wall) / body.a_v  # ribs run inside the muscle wall
    for k in range(5, 17):  # T12 .. T1
        w_r = body.s1 + (k + 0.5) * body.pitch
        reach = np.pi * (0.55 if k < 7 else 0.85)  # floating ribs are short
        drop = rng.uniform(50, 90)
        window = canvas.window((-1e4, -1e4, w_r - drop - 10), (1e4, 1e4, w_r + 10))
        if window is None:
            continue
        u, v, w = canvas.coords(window)
        nu, nv = (u - body.c_u) / (q * body.a_u), (v - body.c_v) / (q * body.a_v)
        theta = np.arctan2(np.abs(nu), nv)  # 0 at the spine, pi at the front
        radial = (np.sqrt(nu ** 2 + nv ** 2) - 1) * q * 0.5 * (body.a_u + body.a_v)
        along = w - (w_r - drop * theta / np.pi)
        rib = ((radial / 4.5) ** 2 + (along / 6.0) ** 2 <= 1) & (theta > 0.35) & (theta < reach)
        canvas.paint(window, rib, Tissue.CORTICAL)
        canvas.paint(window, rib & ((radial / 2.5) ** 2 + (along / 3.5) ** 2 <= 1), Tissue.CANCELLOUS)
    front = body.c_v - q * body.a_v
    sternum = canvas.window((body.c_u - 14, front - 6, body.dome - 30), (body.c_u + 14, front + 6, 1e4))
    canvas.paint(sternum, True, Tissue.CANCELLOUS)


def _pelvis(rng, canvas: Canvas, body: Body) -> None:
    """Iliac wings (bowls of bone flaring up and out), femoral heads and necks, pubic rami."""
    shell = max(1.5, 0.6 * min(canvas.spacing[:2]))
    crest = body.s1 + rng.uniform(5, 25)
    for side in (-1, 1):
        centre = (body.sp_u + side * 20, body.sp_v - 60, body.s1 - 50)
        radii = (rng.uniform(85, 105), rng.uniform(75, 90), 75)
        thickness = rng.uniform(7, 12)
        win, wing = canvas.ellipsoid(centre, radii, shell=thickness)
        if win is not None:
            u, v, w = canvas.coords(win)
            wing &= (side * (u - centre[0]) > 10) & (v > centre[1] - 25) & (w < crest)
            _bone(canvas, (win, wing), lambda win: canvas.ellipsoid(
                centre, np.array(radii) - shell, shell=thickness - 2 * shell, within=win)[1])
        head_c = np.array([body.sp_u + side * 95, body.sp_v - 75, body.s1 - 110])
        r_head = rng.uniform(21, 26)
        _bone(canvas, canvas.ellipsoid(head_c, (r_head,) * 3),
              lambda win: canvas.ellipsoid(head_c, (r_head - shell,) * 3, within=win)[1])
        neck = [head_c, head_c + (side * 40, 5, -35), head_c + (side * 45, 5, -120)]
        pubis = [head_c + (-side * 10, -20, -10), (body.sp_u + side * 12, body.sp_v - 140, body.s1 - 125)]
        for path, r in ((neck, 14), (pubis, 9)):
            _bone(canvas, canvas.tube(path, r),
                  lambda win, path=path, r=r: canvas.tube(path, r - shell, within=win)[1])


def _arms(rng, canvas: Canvas, body: Body) -> None:
    """Arms down at the sides (half the cases): fat, muscle, humerus or forearm bones."""
    if rng.random() < 0.5:
        return
    elbow = body.s1 + rng.uniform(-10, 70)
    for side in (-1, 1):
        radius = rng.uniform(35, 50)
        cu = body.c_u + side * (body.a_u + rng.uniform(5, 40) + radius)
        cv = body.c_v + rng.uniform(-0.3, 0.3) * body.a_v
        canvas.paint(*canvas.column((cu, cv), (radius, radius), (-1e4, 1e4)), Tissue.FAT,
                     onto=(Tissue.AIR,))
        inner = radius - rng.uniform(5, 15)
        canvas.paint(*canvas.column((cu, cv), (inner, inner), (-1e4, 1e4)), Tissue.MUSCLE,
                     onto=(Tissue.FAT,))
        for dv, r, span in ((0, 12, (elbow, 1e4)), (-12, 7, (-1e4, elbow)), (12, 7, (-1e4, elbow))):
            centre = (cu, cv + dv)
            _bone(canvas, canvas.column(centre, (r, r), span),
                  lambda win, c=centre, r=r, span=span: canvas.column(c, (r - 3, r - 3), span,
                                                                       within=win)[1],
                  core=Tissue.YELLOW_MARROW)


def draw_skeleton(rng, canvas: Canvas, body: Body) -> None:
    """Spine and sacrum, ribs and sternum, pelvis, then the arms (in that order: the random
    stream is drawn as it always was)."""
    _spine(rng, canvas, body)
    _ribs_and_sternum(rng, canvas, body)
    _pelvis(rng, canvas, body)
    _arms(rng, canvas, body)
