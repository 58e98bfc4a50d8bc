"""In half the bodies the phantom kidneys sit as adult kidneys do: long axes tilted (upper
pole medial and posterior), wider than deep, and the right kidney's upper pole against the
liver in a share of them (no visible fat in the hepatorenal recess) with the liver's
posterior segment lateral to it, as in real CT; the other bodies are drawn as before."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion

from medical.phantom_anatomy import (ADULT_KIDNEY_SHARE, KIDNEY_LEFT, KIDNEY_RIGHT, LIVER,
                                     adult_kidneys, draw_anatomy, kidney_axes)
from medical.phantom_canvas import Canvas

SPACING_MM = 3.0   # a real CT's grid: finer than the fat rim the old phantoms always drew
N_BODIES = 10


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([3, seed])


def _upper_abdomen(seed: int) -> Canvas:
    """One body's upper abdomen (liver, spleen and both kidneys in view) at 3 mm."""
    canvas = Canvas((140, 120, 80), (SPACING_MM,) * 3, level=-20.0)
    draw_anatomy(_rng(seed), canvas)
    return canvas


def _seeds(adult: bool) -> list[int]:
    """The first ``N_BODIES`` seeds whose body does (or does not) get adult kidneys."""
    return [seed for seed in range(1000) if adult_kidneys(_rng(seed)) == adult][:N_BODIES]


@pytest.fixture(scope="module")
def bodies() -> list[Canvas]:
    """Bodies with adult kidney anatomy."""
    return [_upper_abdomen(seed) for seed in _seeds(adult=True)]


def _right_kidney_touching_liver(body: Canvas) -> float:
    """Share of the right kidney's surface voxels next to liver."""
    kidney, liver = body.label == KIDNEY_RIGHT, body.label == LIVER
    surface = kidney & ~binary_erosion(kidney)
    return (surface & binary_dilation(liver)).sum() / surface.sum()


def test_half_the_bodies_get_adult_kidneys_without_changing_the_others_draws():
    shares = np.mean([adult_kidneys(_rng(seed)) for seed in range(400)])
    assert abs(shares - ADULT_KIDNEY_SHARE) < 0.08
    plain, asked = _rng(7), _rng(7)
    adult_kidneys(asked)
    np.testing.assert_array_equal(plain.random(5), asked.random(5))



def _principal_axes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit long axis (pointing up, +w) and the three standard deviations (mm, ascending)."""
    points = np.argwhere(mask) * SPACING_MM
    points -= points.mean(0)
    variances, vectors = np.linalg.eigh(points.T @ points / len(points))
    long_axis = vectors[:, -1] if vectors[2, -1] > 0 else -vectors[:, -1]
    return long_axis, np.sqrt(variances)


def _tilts_deg(long_axis: np.ndarray, side: int) -> tuple[float, float]:
    """(medial, posterior) tilt of the upper pole from the body's long axis, in degrees.
    Canvas axes: u to the patient's left (``side`` +1 = left kidney), v to the back."""
    medial = np.degrees(np.arctan2(-side * long_axis[0], long_axis[2]))
    posterior = np.degrees(np.arctan2(long_axis[1], long_axis[2]))
    return medial, posterior


@pytest.mark.parametrize("side", (-1, 1))
def test_kidney_axes_are_a_rotation_with_the_upper_pole_medial_and_back(side):
    rng = np.random.default_rng(0)
    for _ in range(20):
        axes = kidney_axes(rng, side)
        np.testing.assert_allclose(axes @ axes.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(axes) == pytest.approx(1.0)
        medial, posterior = _tilts_deg(axes[2], side)
        assert -1e-9 <= medial <= 25 + 1e-9 and -1e-9 <= posterior <= 30 + 1e-9


def test_kidneys_tilt_with_the_upper_pole_medial_and_posterior(bodies):
    tilts = [_tilts_deg(_principal_axes(body.label == lab)[0], side)
             for body in bodies for lab, side in ((KIDNEY_RIGHT, -1), (KIDNEY_LEFT, 1))]
    medial, posterior = np.array(tilts).T
    # textbook: about 10-20 deg medial (coronal) and 15-30 deg posterior (sagittal)
    assert 8 < medial.mean() < 25 and (medial > 0).mean() >= 0.9
    assert 8 < posterior.mean() < 30 and (posterior > 0).mean() >= 0.9


def test_kidneys_are_wider_than_they_are_deep(bodies):
    ratios = [np.divide(*_principal_axes(body.label == lab)[1][1::-1])
              for body in bodies for lab in (KIDNEY_RIGHT, KIDNEY_LEFT)]
    # adult kidney: about 6 cm wide, 3-4.5 cm deep
    assert np.median(ratios) > 1.3


def test_right_kidney_touches_the_liver_in_some_bodies(bodies):
    shares = np.array([_right_kidney_touching_liver(body) for body in bodies])
    assert (shares >= 0.1).sum() >= 2       # the upper pole in the liver's renal impression
    assert (shares < 0.05).sum() >= 2       # and still a fat plane in others


def test_liver_reaches_back_beside_the_right_kidney(bodies):
    """The right lobe's posterior segment fills the gutter lateral to the right kidney: at
    the kidney's mid-height, liver lateral to it reaches back to the kidney's centre depth."""
    reach_mm = []
    for body in bodies:
        kidney, liver = body.label == KIDNEY_RIGHT, body.label == LIVER
        u, v, w = np.argwhere(kidney).mean(0).round().astype(int)
        beside = np.argwhere(liver[:u, :, w - 2:w + 3])  # u index grows to the patient's left
        reach_mm.append((beside[:, 1].max() - v) * SPACING_MM if len(beside) else -np.inf)
    assert (np.array(reach_mm) >= 0).sum() >= 5
