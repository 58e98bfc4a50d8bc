"""One phantom's anatomy, drawn into a ``Canvas`` as tissues and organ labels.

Heights along the body are atlas millimetres (``w``, superior positive) scaled by the
case's stature: the right diaphragm dome near ``+90``, the L5/S1 disc near ``-150``,
femoral heads near ``-260``. The case's field of view (``Canvas`` level and extent)
picks a slab of that body, so a case may run from the heart to the kidneys or from the
liver to the hips. What is drawn, in painting order (later overwrites earlier; the body
outline and the bone are ``medical.phantom_body``'s, the organs between them this module's):

* body outline with subcutaneous fat and a muscle wall; the cavity inside it;
* lungs above the diaphragm domes, the heart (myocardium, left/right blood pools) on the
  diaphragm, mediastinal fat;
* paraspinal, psoas and gluteal muscles;
* small-bowel loops (wall, fluid, some gas) and the colon (stool and gas), the bladder;
* stomach (wall, contents, an air-fluid level), liver with vessels, gallbladder, spleen,
  kidneys (cortex, medulla, sinus fat; the right one lower; in half the bodies tilted and
  flattened as adult kidneys lie, against the liver), pancreas;
* aorta, iliac arteries, IVC;
* bone: vertebrae (cancellous body in a cortical shell, discs, pedicles, laminae, spinous
  and transverse processes around the spinal canal), sacrum, ribs sloping down to the
  front, sternum, iliac wings, femoral heads and necks, pubic rami; arms at the sides in
  half the cases.

Labels (defined in ``medical.phantom_body``, named in ``medical.phantom.LABELS``) are the
segmenter's organs: liver, spleen, kidneys, spine (vertebrae and discs). Every other tissue
-- ribs, pelvis, sacrum, heart, stomach, bowel, gallbladder -- is background, so a segmenter
learns what is *not* an organ.
"""
from __future__ import annotations

import numpy as np

from .phantom_body import (KIDNEY_LEFT, KIDNEY_RIGHT, LIVER, SPLEEN, Body, dome_height,
                           draw_body, draw_skeleton)
from .phantom_canvas import Canvas, Tissue

# share of bodies drawn with adult kidney anatomy (tilted, flattened kidneys; no fat plane
# to the liver in some; the liver's posterior segment beside the right kidney); the others
# keep upright, rounder kidneys in a fat shell. Half and half kept the phantom world the
# segmenter knew and gained on the adult one (bench.experiments.medical_anatomy, mixed_half)
ADULT_KIDNEY_SHARE = 0.5
SOFT = (Tissue.VISCERAL_FAT, Tissue.BOWEL_WALL, Tissue.BOWEL_CONTENT, Tissue.GAS,
        Tissue.STOOL, Tissue.MUSCLE, Tissue.PANCREAS)  # what organs may push aside


def _thorax(rng, canvas: Canvas, body: Body, left_drop: float):
    """Lungs above the diaphragm, mediastinal fat, the heart sitting on the diaphragm."""
    window = canvas.window((-1e4, -1e4, body.dome - 120), (1e4, 1e4, 1e4))
    if window is None:
        return
    u, v, w = canvas.coords(window)
    canvas.paint(window, w > dome_height(body, u, v, left_drop), Tissue.LUNG, cavity_only=True)
    mediastinum = (np.abs(u - body.c_u - 5) < 28) & (v < body.sp_v) & (w > body.dome - 10)
    canvas.paint(window, mediastinum, Tissue.VISCERAL_FAT, cavity_only=True)
    size = rng.uniform(0.85, 1.15)
    centre = (body.c_u + rng.uniform(5, 25), body.c_v - 0.35 * body.in_v, body.dome + 45 * size)
    radii = np.array([60, 48, 52]) * size
    win, heart = canvas.ellipsoid(centre, radii, rng, wobble=0.08, max_angle=0.3)
    if win is None:
        return
    hu, hv, hw = canvas.coords(win)
    heart &= hw > dome_height(body, hu, hv, left_drop) - 5
    canvas.paint(win, heart, Tissue.MYOCARDIUM, cavity_only=True)
    pools = heart & ~canvas.ellipsoid(centre, radii * 0.8, within=win)[1]
    left = (hu - centre[0]) + 0.5 * (hv - centre[1]) > 0  # left heart lies left and behind
    canvas.paint(win, pools & left, Tissue.ARTERY, cavity_only=True)
    canvas.paint(win, pools & ~left, Tissue.VEIN, cavity_only=True)


def _muscles(rng, canvas: Canvas, body: Body):
    """Paraspinal muscles along the whole back, psoas from L1 down, gluteal muscles."""
    for side in (-1, 1):
        para = canvas.column((body.sp_u + side * 33, body.sp_v + body.r_vb + 35),
                             (rng.uniform(20, 28), rng.uniform(18, 24)), (-1e4, 1e4))
        canvas.paint(*para, Tissue.MUSCLE, onto=(Tissue.FAT, Tissue.VISCERAL_FAT, Tissue.MUSCLE))
        top = body.s1 + 5 * body.pitch
        path = [(body.sp_u + side * (body.r_vb + 6), body.sp_v, top),
                (body.sp_u + side * (body.r_vb + 22), body.sp_v - 12, body.s1 + 20),
                (body.sp_u + side * 55, body.sp_v - 45, body.s1 - 110)]
        canvas.paint(*canvas.tube(path[:2], rng.uniform(9, 13)), Tissue.MUSCLE, cavity_only=True)
        canvas.paint(*canvas.tube(path[1:], rng.uniform(16, 22)), Tissue.MUSCLE, cavity_only=True)
        glut = canvas.ellipsoid((body.c_u + side * 0.55 * body.a_u, body.c_v + 0.55 * body.a_v,
                                 body.s1 - 110), (0.4 * body.a_u, 0.4 * body.a_v, 110))
        canvas.paint(*glut, Tissue.MUSCLE, onto=(Tissue.FAT, Tissue.VISCERAL_FAT, Tissue.MUSCLE))


def _bowel(rng, canvas: Canvas, body: Body):
    """Small-bowel loops (wall, contents, some gas on top), the colon framing them, bladder."""
    for _ in range(int(rng.integers(40, 70))):
        centre = (body.c_u + rng.uniform(-0.75, 0.75) * body.in_u,
                  body.c_v + rng.uniform(-0.85, 0.35) * body.in_v,
                  rng.uniform(body.s1 - 90, body.dome - 100))
        radius = rng.uniform(9, 17)
        canvas.paint(*canvas.ellipsoid(centre, (radius,) * 3, rng, wobble=0.2),
                     Tissue.BOWEL_WALL, onto=(Tissue.VISCERAL_FAT,))
        lumen = canvas.ellipsoid(centre, (radius - 3,) * 3)
        canvas.paint(*lumen, Tissue.BOWEL_CONTENT, onto=(Tissue.BOWEL_WALL,))
        if rng.random() < 0.3:  # gas floats to the front (supine patient)
            win, mask = lumen
            if win is not None:
                v = canvas.coords(win)[1]
                canvas.paint(win, mask & (v < centre[1] - rng.uniform(0, 0.6) * radius),
                             Tissue.GAS, onto=(Tissue.BOWEL_CONTENT,))
    a_u, a_v, c_u, c_v = body.in_u, body.in_v, body.c_u, body.c_v
    colon = np.array([
        (c_u - 0.7 * a_u, c_v - 0.1 * a_v, body.s1 - 40),        # caecum
        (c_u - 0.72 * a_u, c_v + 0.05 * a_v, body.dome - 130),   # hepatic flexure
        (c_u, c_v - 0.75 * a_v, body.dome - 150 - rng.uniform(0, 60)),  # transverse, sagging
        (c_u + 0.75 * a_u, c_v + 0.1 * a_v, body.dome - 100),    # splenic flexure
        (c_u + 0.75 * a_u, c_v + 0.05 * a_v, body.s1 - 10),      # descending
        (c_u + 0.25 * a_u, c_v - 0.3 * a_v, body.s1 - 70),       # sigmoid
        (c_u, body.sp_v + 10, body.s1 - 140)])                   # rectum
    colon += rng.normal(0, 8, size=colon.shape)
    radius = rng.uniform(15, 24)
    canvas.paint(*canvas.tube(colon, radius), Tissue.BOWEL_WALL, cavity_only=True,
                 onto=(Tissue.VISCERAL_FAT, Tissue.BOWEL_WALL, Tissue.BOWEL_CONTENT, Tissue.GAS))
    canvas.paint(*canvas.tube(colon, radius - 3), Tissue.STOOL, onto=(Tissue.BOWEL_WALL,))
    for a, b in zip(colon[:-1], colon[1:]):
        for t in rng.uniform(0, 1, size=3):
            if rng.random() < 0.5:
                canvas.paint(*canvas.ellipsoid(a + (b - a) * t, (radius - 4,) * 3), Tissue.GAS,
                             onto=(Tissue.STOOL,))
    bladder = canvas.ellipsoid((c_u, c_v - 0.35 * a_v, body.s1 - 110),
                               np.array([40, 30, 35]) * rng.uniform(0.6, 1.3), rng, wobble=0.1)
    canvas.paint(*bladder, Tissue.BLADDER, cavity_only=True)


def _upper_organs(rng, canvas: Canvas, body: Body, left_drop: float, adult: bool) -> None:
    """Liver (with vessels), gallbladder, spleen and then the stomach between them, under
    the domes; ``adult``: the right lobe's posterior segment beside the right kidney too."""
    a_u, a_v, c_u, c_v, dome = body.in_u, body.in_v, body.c_u, body.c_v, body.dome

    def below_dome(win, mask, margin=0.0):
        if win is None:
            return win, mask
        u, v, w = canvas.coords(win)
        return win, mask & (w <= dome_height(body, u, v, left_drop) - margin)

    s = rng.uniform(0.8, 1.2)
    right = canvas.ellipsoid((c_u - 0.5 * a_u, c_v - 0.2 * a_v, dome - 70 * s),
                             (0.5 * a_u * s, 0.65 * a_v, rng.uniform(70, 95) * s), rng,
                             wobble=0.12, max_angle=0.25)
    left = canvas.ellipsoid((c_u + rng.uniform(-0.05, 0.15) * a_u, c_v - 0.6 * a_v, dome - 45),
                            (rng.uniform(0.3, 0.45) * a_u, 0.3 * a_v, 40 * s), rng,
                            wobble=0.12, max_angle=0.25)
    parts = [right, left]
    if adult:
        # the right lobe's posterior segment (VI) fills the right paravertebral gutter down
        # lateral to the upper pole of the right kidney, which lies in its renal impression
        s6 = rng.uniform(0.6, 1.2)
        parts.append(canvas.ellipsoid((c_u - rng.uniform(0.6, 0.75) * a_u, c_v + 0.25 * a_v,
                                       dome - rng.uniform(95, 125) * s),
                                      (0.28 * a_u * s6, 0.4 * a_v * s6, 55 * s6), rng,
                                      wobble=0.12, max_angle=0.25))
    for part in parts:
        canvas.paint(*below_dome(*part), Tissue.LIVER, LIVER, onto=SOFT, cavity_only=True)
    hilum = np.array([c_u - 0.2 * a_u, c_v - 0.1 * a_v, dome - 100])
    for _ in range(int(rng.integers(3, 7))):  # portal and hepatic vessel trees, coarsely
        tip = hilum + rng.uniform((-0.5 * a_u, -0.4 * a_v, 0), (0.1 * a_u, 0.3 * a_v, 90))
        canvas.paint(*canvas.tube([hilum, (hilum + tip) / 2 + rng.normal(0, 10, 3), tip],
                                  rng.uniform(3, 6)), Tissue.LIVER_VESSEL, LIVER, onto=(Tissue.LIVER,))
    if rng.random() < 0.8:
        gb = canvas.ellipsoid((c_u - 0.35 * a_u, c_v - 0.6 * a_v, dome - rng.uniform(110, 150)),
                              np.array([14, 14, 30]) * rng.uniform(0.7, 1.3), rng, max_angle=0.5)
        canvas.paint(*gb, Tissue.GALLBLADDER, cavity_only=True)

    s = rng.uniform(0.8, 1.25)
    radii = np.array([rng.uniform(22, 30), rng.uniform(45, 60), rng.uniform(42, 58)]) * s
    centre = (c_u + a_u - radii[0] * rng.uniform(0.9, 1.3), c_v + 0.35 * a_v,
              dome - rng.uniform(55, 80))  # against the left posterolateral wall
    win, spleen = below_dome(*canvas.ellipsoid(centre, radii, rng, wobble=0.12, max_angle=0.4))
    if win is not None:
        hollow = canvas.ellipsoid((centre[0] - radii[0] * 1.3, centre[1] - radii[1] * 0.4,
                                   centre[2]), radii, within=win)[1]  # concave medial face
        spleen &= ~hollow
        canvas.paint(win, spleen, Tissue.SPLEEN, SPLEEN, onto=SOFT, cavity_only=True)

    s = rng.uniform(0.75, 1.3)
    centre = (c_u + 0.4 * a_u, c_v - 0.3 * a_v, dome - 60)
    radii = (0.3 * a_u * s, 0.35 * a_v * s, 55 * s)
    win, stomach = below_dome(*canvas.ellipsoid(centre, radii, rng, wobble=0.15, max_angle=0.4),
                              margin=3)
    if win is not None:
        canvas.paint(win, stomach, Tissue.STOMACH_WALL, onto=SOFT, cavity_only=True)
        wall = rng.uniform(3, 6)
        inner = stomach & canvas.ellipsoid(centre, np.array(radii) - wall, within=win)[1]
        canvas.paint(win, inner, Tissue.STOMACH_CONTENT, onto=(Tissue.STOMACH_WALL,))
        v = canvas.coords(win)[1]
        level = centre[1] - radii[1] * rng.uniform(0.2, 1.1)  # air-fluid level (or none)
        canvas.paint(win, inner & (v < level), Tissue.GAS, onto=(Tissue.STOMACH_CONTENT,))


def kidney_axes(rng, side: int) -> np.ndarray:
    """An adult kidney's axes as rows (``Canvas.ellipsoid``'s ``rotation``): the long axis
    tilts with the upper pole medial (0-25 deg, coronal) and posterior (0-30 deg, sagittal),
    as the kidneys lie along the psoas; a small random turn about that axis."""
    coronal, sagittal = np.radians(rng.uniform(0, 25)), np.radians(rng.uniform(0, 30))
    long_axis = np.array([-side * np.tan(coronal), np.tan(sagittal), 1.0])  # medial = -side
    long_axis /= np.linalg.norm(long_axis)
    across = np.array([1.0, 0.0, 0.0]) - long_axis[0] * long_axis
    across /= np.linalg.norm(across)
    depth = np.cross(long_axis, across)
    turn = rng.uniform(-0.25, 0.25)
    across, depth = (np.cos(turn) * across + np.sin(turn) * depth,
                     -np.sin(turn) * across + np.cos(turn) * depth)
    return np.stack([across, depth, long_axis])


def _kidneys(rng, canvas: Canvas, body: Body, adult: bool) -> None:
    """Both kidneys beside the spine, the right one lower; cortex, medulla, sinus fat.
    ``adult``: tilted and flattened as adult kidneys are, the fat plane to the liver and
    spleen often too thin to see; else upright, rounder, in a fat shell that parts them."""
    level = body.dome - 105 + rng.normal(0, 12)
    for side, lab in ((-1, KIDNEY_RIGHT), (1, KIDNEY_LEFT)):
        height = level - (rng.uniform(5, 25) if side < 0 else 0)
        centre = np.array([body.sp_u + side * (body.r_vb + rng.uniform(35, 50)),
                           body.sp_v + rng.uniform(-5, 12), height])
        if adult:
            drawn = _adult_kidney(rng, canvas, centre, side)
        else:
            drawn = _upright_kidney(rng, canvas, centre)
        if drawn is None:
            continue
        win, kidney, axes, radii = drawn
        canvas.paint(win, kidney, Tissue.KIDNEY_CORTEX, lab, cavity_only=True)
        cortex = rng.uniform(5, 8)
        medulla = canvas.ellipsoid(centre, radii - cortex, within=win, rotation=axes)[1]
        canvas.paint(win, kidney & medulla, Tissue.KIDNEY_MEDULLA, lab, cavity_only=True)
        hilum = centre + axes.T @ np.array([-side * 0.45 * radii[0], -0.25 * radii[1], 0])
        sinus = canvas.ellipsoid(hilum, radii * np.array([0.45, 0.4, 0.55]), within=win,
                                 rotation=axes)[1]
        canvas.paint(win, kidney & sinus, Tissue.RENAL_SINUS, lab, cavity_only=True)


def _upright_kidney(rng, canvas: Canvas, centre):
    """An upright kidney in a 3-6 mm fat shell painted over liver and spleen: (window,
    kidney mask, axes, radii), None out of view."""
    radii = np.array([rng.uniform(22, 28), rng.uniform(20, 26), rng.uniform(45, 58)])
    win, kidney = canvas.ellipsoid(centre, radii, rng, wobble=0.06, max_angle=0.3)
    if win is None:
        return None
    fat = canvas.ellipsoid(centre, radii + rng.uniform(3, 6), within=win)[1]
    canvas.paint(win, fat, Tissue.VISCERAL_FAT, onto=SOFT + (Tissue.LIVER, Tissue.SPLEEN),
                 cavity_only=True)  # perirenal fat parts kidney from liver and spleen
    # its medulla and sinus are drawn upright, as before the adult kidneys came
    return win, kidney, np.eye(3), radii


def _adult_kidney(rng, canvas: Canvas, centre, side: int):
    """An adult kidney (9-12 cm long, 4.5-6.5 cm wide, 3-5 cm deep) along ``kidney_axes``,
    in perirenal fat that meets liver or spleen in a third of them: (window, kidney mask,
    axes, radii), None out of view."""
    radii = np.array([rng.uniform(23, 33), rng.uniform(16, 25), rng.uniform(45, 60)])
    axes = kidney_axes(rng, side)
    fat_mm = rng.uniform(3, 6)
    # the fat between the upper pole and the liver (hepatorenal recess) or spleen is a
    # few mm at most and often none visible at CT resolution: a third of them touch
    organ_fat_mm = max(0.0, rng.uniform(-3, 6))
    win, fat = canvas.ellipsoid(centre, radii + fat_mm, rotation=axes)
    if win is None:
        return None
    kidney = canvas.ellipsoid(centre, radii, rng, wobble=0.06, within=win, rotation=axes)[1]
    canvas.paint(win, fat, Tissue.VISCERAL_FAT, onto=SOFT, cavity_only=True)
    if organ_fat_mm > 0:
        organ_fat = canvas.ellipsoid(centre, radii + organ_fat_mm, within=win, rotation=axes)[1]
        canvas.paint(win, organ_fat, Tissue.VISCERAL_FAT, onto=(Tissue.LIVER, Tissue.SPLEEN),
                     cavity_only=True)
    return win, kidney, axes, radii


def _pancreas_and_vessels(rng, canvas: Canvas, body: Body) -> None:
    """Pancreas across the spine; aorta and IVC in front of it, iliac arteries below."""
    sp_u, sp_v, r = body.sp_u, body.sp_v, body.r_vb
    head = (sp_u - 30, sp_v - r - 45, body.dome - 115)
    path = [head, (sp_u + 10, sp_v - r - 55, body.dome - 100),
            (body.c_u + 0.6 * body.in_u, body.c_v + 0.25 * body.in_v, body.dome - 80)]
    canvas.paint(*canvas.tube(np.array(path) + rng.normal(0, 6, (3, 3)), rng.uniform(8, 13)),
                 Tissue.PANCREAS, onto=(Tissue.VISCERAL_FAT, Tissue.BOWEL_WALL, Tissue.BOWEL_CONTENT))
    bifurcation = body.s1 + 1.5 * body.pitch
    top = canvas.axes[2][-1] + 10
    canvas.paint(*canvas.tube([(sp_u + 12, sp_v - r - 12, bifurcation), (sp_u + 14, sp_v - r - 10, top)],
                              rng.uniform(9, 13)), Tissue.ARTERY, cavity_only=True)
    canvas.paint(*canvas.tube([(sp_u - 22, sp_v - r - 8, bifurcation), (sp_u - 22, sp_v - r - 15,
                                                                      body.dome + 15)],
                              rng.uniform(9, 13)), Tissue.VEIN, cavity_only=True)
    for side in (-1, 1):
        iliac = [(sp_u + 12, sp_v - r - 12, bifurcation),
                 (sp_u + side * 50, sp_v - r - 20, bifurcation - 90),
                 (sp_u + side * 75, sp_v - r - 55, body.s1 - 110)]
        canvas.paint(*canvas.tube(iliac, rng.uniform(4, 7)), Tissue.ARTERY, cavity_only=True)


def adult_kidneys(rng, share: float = ADULT_KIDNEY_SHARE) -> bool:
    """Whether this body gets adult kidney anatomy (``share`` of them), drawn from a child
    stream of ``rng``: its own draws are untouched, so the other bodies are drawn exactly as
    they were before adult kidneys came (``share=0`` draws that older world)."""
    return bool(rng.spawn(1)[0].random() < share)


def draw_anatomy(rng, canvas: Canvas, adult_kidney_share: float = ADULT_KIDNEY_SHARE,
                 ) -> dict[int, np.ndarray]:
    """Draw one body into ``canvas``; returns each organ's parenchyma (where lesions grow).

    ``adult_kidney_share``: the share of bodies with adult kidney anatomy (``adult_kidneys``).
    """
    body = draw_body(rng, canvas)
    left_drop = rng.uniform(5, 20)
    _thorax(rng, canvas, body, left_drop)
    _muscles(rng, canvas, body)
    _bowel(rng, canvas, body)
    adult = adult_kidneys(rng, adult_kidney_share)
    _upper_organs(rng, canvas, body, left_drop, adult)
    _kidneys(rng, canvas, body, adult)
    _pancreas_and_vessels(rng, canvas, body)
    draw_skeleton(rng, canvas, body)
    tissue, label = canvas.tissue, canvas.label
    return {LIVER: (label == LIVER) & (tissue == Tissue.LIVER),
            SPLEEN: (label == SPLEEN) & (tissue == Tissue.SPLEEN),
            KIDNEY_RIGHT: (label == KIDNEY_RIGHT) & (tissue != Tissue.RENAL_SINUS),
            KIDNEY_LEFT: (label == KIDNEY_LEFT) & (tissue != Tissue.RENAL_SINUS)}
