"""Real grids: outputs mapped back to the input's voxels slab by slab, as MONAI's inverse would."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medical import transforms
from medical.io import load_volume
from medical.transforms import Preprocessor, PreprocessConfig, _oblique_slab, _separable_slab

# a fine, anisotropic, non-RAS grid: voxel axis 0 runs along A, axis 1 along -R
FINE_AFFINE = np.array([[0.0, -1.5, 0.0, 60.0], [1.2, 0.0, 0.0, -40.0],
                        [0.0, 0.0, 2.5, -30.0], [0.0, 0.0, 0.0, 1.0]])


def _fine_ct(tmp_path, write_nifti):
    rng = np.random.default_rng(3)
    hu = np.full((70, 60, 36), -1000.0, dtype=np.float32)
    hu[8:62, 6:54, 3:33] = 40 + rng.normal(0, 8, size=(54, 48, 30))
    hu[20:40, 15:35, 10:25] = 160.0                          # an "organ"
    return load_volume(write_nifti(tmp_path / "fine.nii.gz", hu, FINE_AFFINE))


def _monai_inverse(pre, output, grid):
    """MONAI's own inverse of the transform chain (the reference the slabs must match)."""
    meta = MetaTensor(torch.as_tensor(output), meta=dict(grid.meta))
    meta.applied_operations = list(grid.applied_operations)
    return pre._chain(False).inverse({"image": meta})["image"].as_tensor().numpy()


def test_outputs_on_the_input_grid_match_monai_inverse(tmp_path, write_nifti, monkeypatch):
    image = _fine_ct(tmp_path, write_nifti)
    pre = Preprocessor(PreprocessConfig(spacing=(4.0, 4.0, 5.0)))
    grid = pre(image)["image"]
    assert grid.shape[1:] != image.shape[1:]
    rng = np.random.default_rng(0)
    logits = torch.as_tensor(rng.normal(size=(4, *grid.shape[1:])), dtype=torch.float32)
    probabilities = torch.softmax(torch.nn.functional.avg_pool3d(logits[None], 3, 1, 1)[0] * 4, 0)
    monkeypatch.setattr(transforms, "SLAB_VOXELS", 70 * 60 * 5)   # several slabs, one short
    expected = _monai_inverse(pre, probabilities, grid)
    values = pre.invert(probabilities, grid)
    assert values.shape == (4, 70, 60, 36)
    np.testing.assert_allclose(values, expected, atol=1e-5)
    labels = pre.invert_argmax(probabilities, grid)
    assert labels.dtype == np.uint8 and labels.shape == (70, 60, 36)
    np.testing.assert_array_equal(labels, expected.argmax(0))


@pytest.mark.parametrize("permutation", [(0, 1, 2), (1, 0, 2), (2, 0, 1)])
def test_separable_and_oblique_resampling_agree(permutation):
    rng = np.random.default_rng(1)
    volume = torch.as_tensor(rng.random((3, 9, 7, 5)), dtype=torch.float32)
    to_model = np.eye(4)
    to_model[:3, :3] = 0.0
    for input_axis, (model_axis, sign) in enumerate(zip(permutation, (1, -1, 1))):
        to_model[model_axis, input_axis] = sign * rng.uniform(0.3, 0.9)
    to_model[:3, 3] = [4.0, 6.5, -0.4]
    padded = torch.nn.functional.pad(volume, (1, 1, 1, 1, 1, 1))
    zs = slice(2, 7)
    oblique = _oblique_slab(padded, to_model, (13, 11, 8), zs)
    separable = _separable_slab(padded, to_model, (13, 11, 8), zs)
    np.testing.assert_allclose(separable.numpy(), oblique.numpy(), atol=1e-6)
    labels = _separable_slab(padded, to_model, (13, 11, 8), zs, labels=True)
    np.testing.assert_array_equal(labels.numpy(), oblique.numpy().argmax(0))


def test_infer_on_a_fine_grid_keeps_shape_and_affine(tiny_models, tmp_path, write_nifti):
    from medical.infer import infer

    _, model_dir, _, _ = tiny_models
    _fine_ct(tmp_path, write_nifti)
    run = infer(model_dir, tmp_path / "fine.nii.gz", tmp_path / "run", shap_evals=0)
    for name in ("fine_seg.nii.gz", "fine_anomaly.nii.gz"):
        out = nib.load(str(run / name))
        assert out.shape == (70, 60, 36)
        np.testing.assert_allclose(out.affine, FINE_AFFINE, atol=1e-5)
