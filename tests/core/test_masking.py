"""Maskers: seeded draws separate from applying, exact ratios, patch schedules."""
import numpy as np
import pytest
import torch

from core import DataValidationError
from core.masking import GivenMasker, Masker, PatchMasker, RandomCellMasker


def test_random_cell_ratio_and_seeding():
    masker = RandomCellMasker(ratio=0.3, random_state=0)
    mask = masker.draw((50, 10))
    assert mask.dtype == bool and mask.shape == (50, 10)
    np.testing.assert_array_equal(mask.sum(axis=1), 3)  # exactly round(0.3 * 10) per row
    again = RandomCellMasker(ratio=0.3).set_random_state(0).draw((50, 10))
    np.testing.assert_array_equal(mask, again)
    assert not np.array_equal(masker.draw((50, 10)), mask)  # the generator advances


def test_masker_does_not_touch_global_rng():
    np.random.seed(5)
    expected = np.random.random()
    np.random.seed(5)
    RandomCellMasker(0.5, random_state=1).draw((10, 10))
    assert np.random.random() == expected


def test_bad_ratio():
    with pytest.raises(DataValidationError, match="mask ratio"):
        RandomCellMasker(ratio=1.5).draw((2, 4))


def test_apply_numpy_and_torch():
    x = np.arange(6, dtype=float).reshape(2, 3)
    mask = np.array([[True, False, False], [False, False, True]])
    np.testing.assert_array_equal(Masker.apply(x, mask, fill=-1), [[-1, 1, 2], [3, 4, -1]])
    t = Masker.apply(torch.as_tensor(x), mask)
    assert isinstance(t, torch.Tensor) and t[0, 0] == 0 and t[1, 2] == 0 and t[0, 1] == 1


@pytest.mark.parametrize("shape,patch", [((2, 16, 16), 4), ((1, 8, 12, 10), (4, 4, 5))])
def test_patch_masks_are_whole_patches(shape, patch):
    masker = PatchMasker(patch_size=patch, ratio=0.5, ndim=len(shape) - 1, random_state=0)
    mask = masker.draw(shape)
    assert mask.shape == shape
    p = (patch,) * (len(shape) - 1) if isinstance(patch, int) else patch
    blocks = mask[(0,) + tuple(slice(0, s) for s in p)]
    assert blocks.all() or not blocks.any()  # a patch is hidden entirely or not at all
    assert abs(mask.mean() - 0.5) < 0.15


def test_patch_schedule_covers_every_element_once():
    masks = PatchMasker(patch_size=4, ratio=0.25).schedule((1, 10, 13))  # ragged edges
    assert len(masks) == 4
    coverage = np.sum(masks, axis=0)
    np.testing.assert_array_equal(coverage, 1)
    again = PatchMasker(patch_size=4, ratio=0.25, random_state=9).schedule((1, 10, 13))
    for a, b in zip(masks, again):  # deterministic regardless of the masker's seed
        np.testing.assert_array_equal(a, b)


def test_given_masker():
    hidden = np.array([[True, False]])
    np.testing.assert_array_equal(GivenMasker(hidden).draw((1, 2)), hidden)
    with pytest.raises(DataValidationError, match="shape"):
        GivenMasker(hidden).draw((2, 2))
    with pytest.raises(DataValidationError, match="needs the hidden mask"):
        GivenMasker().draw((1, 2))


def test_learned_masks_keep_ratio_and_diversity_loss():
    from core.tabular.learned_masks import LearnedMaskGenerator, diversity_loss

    gen = LearnedMaskGenerator(n_inputs=6, n_columns=6, n_masks=5, hidden_ratio=0.4)
    keep = gen(torch.randn(32, 6))
    assert keep.shape == (5, 32, 6)
    assert float(keep.min()) >= 0 and float(keep.max()) <= 1
    assert abs(float(keep.mean()) - 0.6) < 0.05
    same = torch.ones(3, 4, 6)
    different = torch.eye(6)[:3, None, :].expand(3, 4, 6)
    assert diversity_loss(same) > diversity_loss(different)
    # training on the diversity loss alone spreads the masks apart
    opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    x = torch.randn(64, 6)
    before = float(diversity_loss(gen(x)))
    for _ in range(50):
        opt.zero_grad()
        loss = diversity_loss(gen(x))
        loss.backward()
        opt.step()
    assert float(diversity_loss(gen(x))) < before
