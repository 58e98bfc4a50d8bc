"""core.pooling.top_k_mean: the one top-k pooling of driving's and medical's scores."""
import doctest

import numpy as np

import core.pooling
from core.pooling import top_k_mean


def test_matches_a_sort_and_keeps_dtype():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(6, 8, 9)).astype(np.float32)
    pooled = top_k_mean(maps, 5, per_row=True)
    expected = np.sort(maps.reshape(6, -1), axis=1)[:, -5:].mean(axis=1)
    assert pooled.dtype == np.float32 and pooled.shape == (6,)
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)
    volume = rng.normal(size=(4, 5, 6))
    assert np.isclose(top_k_mean(volume, 7), np.sort(volume.ravel())[-7:].mean())


def test_k_is_clamped_to_the_values():
    values = np.array([2.0, 9.0, 4.0])
    assert top_k_mean(values, 0) == 9.0            # at least one value
    assert top_k_mean(values, 10) == 5.0           # at most all of them
    assert top_k_mean(np.array([[1.0, 3.0]]), 99, per_row=True).tolist() == [2.0]


def test_docstring_examples():
    assert doctest.testmod(core.pooling).failed == 0
