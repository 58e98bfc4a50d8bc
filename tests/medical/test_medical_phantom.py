"""The phantoms vary as CT varies and teach anatomy: tissues in their HU ranges, bone and
other non-organs (a gallbladder, arms at the sides) present but labelled background, kidneys
on both sides, contrast phases and fields of view that change from case to case, slice
thickness that blurs along z."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.ndimage import binary_erosion, distance_transform_edt, label as connected_parts

from core.errors import DataValidationError
from medical.phantom import LABELS, simulate_case, simulate_dataset
from medical.phantom_anatomy import draw_anatomy
from medical.phantom_body import KIDNEY_LEFT, KIDNEY_RIGHT, LIVER, SPINE, SPLEEN
from medical.phantom_canvas import Canvas, Tissue
from medical.phantom_render import HU_RANGES, PHASES, draw_style

SHAPE = (80, 80, 40)


def _abdomen_style(rng, **changes):
    """A drawn style moved to the upper abdomen (liver, spleen and kidneys in view)."""
    return replace(draw_style(rng), level_mm=-20.0, z_extent_mm=260.0, fov_mm=420.0, **changes)


def _phase_range(tissue, phase):
    ranges = HU_RANGES[tissue]
    return ranges[PHASES.index(phase)] if isinstance(ranges[0], tuple) else ranges


@pytest.mark.parametrize("phase", PHASES)
def test_organ_hu_lies_in_its_tissue_range_for_the_phase(phase):
    rng = np.random.default_rng([7, PHASES.index(phase)])
    case = simulate_case(rng, SHAPE, style=_abdomen_style(rng, phase=phase, noise_hu=8.0))
    for label, tissue, slack in ((LIVER, Tissue.LIVER, 15), (SPLEEN, Tissue.SPLEEN, 25)):
        core = binary_erosion(case.label == label, iterations=1)
        assert core.sum() > 20, LABELS[label]
        low, high = _phase_range(tissue, phase)
        median = float(np.median(case.image[core]))
        assert low - slack <= median <= high + slack, (LABELS[label], phase, median)


def test_native_and_contrast_phases_differ_where_contrast_goes():
    """Same anatomy and noise draw: the aorta and kidneys brighten with contrast, fat does not."""
    images = {}
    for phase in ("native", "arterial"):
        rng = np.random.default_rng(3)
        style = _abdomen_style(np.random.default_rng(3), phase=phase, noise_hu=6.0)
        case = simulate_case(rng, SHAPE, style=style)
        images[phase] = case
    kidney = binary_erosion(images["native"].label == KIDNEY_LEFT)
    assert kidney.any()
    assert np.median(images["arterial"].image[kidney]) > np.median(images["native"].image[kidney]) + 35
    fat = images["native"].image < -60
    assert abs(np.median(images["arterial"].image[fat]) - np.median(images["native"].image[fat])) < 40


def test_bone_beyond_the_spine_is_present_and_labelled_background():
    rng = np.random.default_rng(11)
    case = simulate_case(rng, SHAPE, style=_abdomen_style(rng, noise_hu=6.0))
    bright = case.image > 300
    # ribs (and the pelvis, sternum...) make bright voxels outside the spine label
    assert (bright & (case.label == 0)).sum() > 30
    assert set(np.unique(case.label[bright])) <= {0, SPINE}
    assert (case.label == SPINE).sum() > 0


@pytest.mark.parametrize("seed", range(4))
def test_heart_stomach_bowel_and_bones_are_drawn_and_never_labelled(seed):
    rng = np.random.default_rng(seed)
    style = replace(draw_style(rng), level_mm=0.0, z_extent_mm=440.0, fov_mm=460.0)
    canvas = Canvas((48, 48, 48), (style.fov_mm / 48,) * 2 + (style.z_extent_mm / 48,), style.level_mm)
    draw_anatomy(rng, canvas)
    for tissue in (Tissue.MYOCARDIUM, Tissue.STOMACH_WALL, Tissue.BOWEL_WALL, Tissue.GAS,
                   Tissue.CORTICAL, Tissue.LUNG):
        where = canvas.tissue == tissue
        assert where.any(), tissue.name
        if tissue != Tissue.CORTICAL:  # the spine's cortex is labelled spine
            assert not canvas.label[where].any(), tissue.name
    # the heart sits above the liver
    heart_top = np.argwhere(canvas.tissue == Tissue.MYOCARDIUM)[:, 2].mean()
    liver = np.argwhere(canvas.label == LIVER)[:, 2].mean()
    assert heart_top > liver


@pytest.fixture(scope="module")
def wide_bodies() -> list[Canvas]:
    """Eight bodies drawn on a 48^3 canvas from the heart to the pelvis, 640 mm wide (arms
    at the sides in view)."""
    canvases = []
    for seed in range(8):
        rng = np.random.default_rng([13, seed])
        style = replace(draw_style(rng), level_mm=0.0, z_extent_mm=440.0, fov_mm=640.0)
        canvas = Canvas((48, 48, 48), (style.fov_mm / 48,) * 2 + (style.z_extent_mm / 48,),
                        style.level_mm)
        draw_anatomy(rng, canvas)
        canvases.append(canvas)
    return canvases


def _u_centre(mask: np.ndarray) -> float:
    """Mean index along axis 0 (stored LPS: it runs to the patient's left)."""
    return float(np.argwhere(mask)[:, 0].mean())


def test_a_gallbladder_is_drawn_against_the_liver_on_the_right_and_labelled_background(wide_bodies):
    drawn = 0
    for canvas in wide_bodies:
        gallbladder = canvas.tissue == Tissue.GALLBLADDER
        if not gallbladder.any():        # (one body in five has none)
            continue
        drawn += 1
        assert not canvas.label[gallbladder].any()
        assert _u_centre(gallbladder) < _u_centre(canvas.label == SPINE)        # right side
        from_liver_mm = distance_transform_edt(canvas.label != LIVER, sampling=canvas.spacing)
        assert from_liver_mm[gallbladder].min() < 30.0                  # under the liver
    assert drawn >= 6


def test_arms_lie_apart_at_both_sides_in_about_half_the_bodies_and_are_background(wide_bodies):
    with_arms = 0
    for canvas in wide_bodies:
        axial = canvas.tissue[:, :, 24]                                   # one slice
        parts, n = connected_parts(axial != Tissue.AIR)
        marrow = canvas.tissue == Tissue.YELLOW_MARROW                    # arm bones' shafts
        if n == 1:
            assert not marrow.any()
            continue
        with_arms += 1
        assert n == 3                                                     # trunk and two arms
        trunk = 1 + int(np.argmax(np.bincount(parts.ravel())[1:]))
        arms = [k for k in (1, 2, 3) if k != trunk]
        sides = sorted(_u_centre(parts == k) for k in arms)
        assert sides[0] < _u_centre(parts == trunk) < sides[1]
        for k in arms:
            arm = parts == k
            assert {Tissue.FAT, Tissue.MUSCLE} <= set(np.unique(axial[arm]))
            assert np.isin(axial[arm], (Tissue.CORTICAL, Tissue.YELLOW_MARROW)).any()  # a bone
            assert not canvas.label[:, :, 24][arm].any()
        assert not canvas.label[marrow].any()
    assert 2 <= with_arms <= 6


@pytest.mark.parametrize("seed", range(3))
def test_kidneys_lie_on_both_sides_of_the_spine(seed):
    rng = np.random.default_rng([5, seed])
    case = simulate_case(rng, SHAPE, style=_abdomen_style(rng))
    # stored LPS: axis 0 runs to the patient's left
    centre = {k: np.argwhere(case.label == k)[:, 0].mean() for k in (KIDNEY_RIGHT, KIDNEY_LEFT, SPINE)}
    assert centre[KIDNEY_RIGHT] < centre[SPINE] < centre[KIDNEY_LEFT]
    assert (case.label == KIDNEY_RIGHT).sum() > 20 and (case.label == KIDNEY_LEFT).sum() > 20


def test_cases_vary_in_phase_field_of_view_and_anatomy():
    cases = [simulate_case(np.random.default_rng([9, i]), (48, 48, 24)) for i in range(10)]
    assert len({c.style.phase for c in cases}) >= 2
    levels = [c.style.level_mm for c in cases]
    assert max(levels) - min(levels) > 60
    liver_ml = [(c.label == LIVER).sum() * abs(np.linalg.det(c.affine[:3, :3])) / 1000 for c in cases]
    assert np.std(liver_ml) / np.mean(liver_ml) > 0.15
    livers = [np.median(c.image[c.label == LIVER]) for c in cases if (c.label == LIVER).any()]
    assert max(livers) - min(livers) > 30


def test_thicker_slices_blur_along_z_only():
    """Same anatomy and noise draw, 1 mm vs 5 mm slices on a 2 mm grid: thick slices smooth z."""
    rough = {}
    for thickness in (1.0, 5.0):
        rng = np.random.default_rng(21)
        style = replace(_abdomen_style(np.random.default_rng(21)), slice_thickness_mm=thickness,
                        noise_hu=0.0, z_extent_mm=80.0)
        image = simulate_case(rng, (48, 48, 40), style=style).image.astype(float)
        rough[thickness] = (np.abs(np.diff(image, axis=2)).mean(), np.abs(np.diff(image, axis=0)).mean())
    assert rough[5.0][0] < 0.9 * rough[1.0][0]       # z: smoother
    assert rough[5.0][1] > 0.9 * rough[1.0][1]       # in-plane: about the same


@pytest.mark.parametrize("prefix", ["../escaped", "cal/x", ""])
def test_simulate_dataset_refuses_a_prefix_that_is_no_file_name_start(tmp_path, prefix):
    """``../escaped`` would put image and label in one file beside imagesTr/ and labelsTr/."""
    with pytest.raises(DataValidationError, match=f"--prefix {prefix!r}: expected letters"):
        simulate_dataset(tmp_path / "set", 1, shape=(8, 8, 8), prefix=prefix)
    assert list(tmp_path.iterdir()) == []
