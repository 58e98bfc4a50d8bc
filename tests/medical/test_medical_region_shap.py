"""Region SHAP of the case score: the regions split the body, and the values add up to the score."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from core.pooling import top_k_mean
from medical.anomaly import AnomalyScorer
from medical.infer import OTHER_REGION, organ_regions


def _case():
    """A body with a liver and a spleen label, and a liver label that spills outside the body
    where the error map is highest (a segmentation can label air the score never reads)."""
    body = np.zeros((12, 12, 6), bool)
    body[2:10, 2:10] = True
    labels = np.zeros(body.shape, np.int16)
    labels[2:6, 2:6] = 1
    labels[6:10, 6:10] = 2
    labels[0:2, 0:4] = 1                      # outside the body
    error = np.random.default_rng(0).random(body.shape)
    error[0:2, 0:4] += 5.0
    return body, labels, error


def test_organ_regions_lie_inside_the_body_and_split_it():
    body, labels, _ = _case()
    regions = organ_regions(labels, body, {1: "liver", 2: "spleen"})
    assert set(regions) == {"liver", "spleen", OTHER_REGION}
    stacked = np.stack(list(regions.values()))
    assert not (stacked & ~body).any()                    # nothing outside the body
    np.testing.assert_array_equal(stacked.sum(0), body)   # every body voxel in exactly one


@pytest.mark.parametrize("sparse", [False, True])
def test_region_shap_adds_up_to_the_case_score(sparse):
    body, labels, error = _case()
    # organ scoring: 0 off the parenchyma, so the top k can hold values under the healthy baseline
    if sparse:
        error = np.where(body, 0.0, error)   # fewer scored voxels than k in the body
        error[3, 3, :] = 0.5
    scorer = SimpleNamespace(top_k=20, healthy_error=0.1)
    regions = organ_regions(labels, body, {1: "liver", 2: "spleen"})
    result = AnomalyScorer.region_shap(scorer, error, regions)
    total = result.values[0].sum() + result.base_values[0]
    np.testing.assert_allclose(total, top_k_mean(error[body], scorer.top_k), rtol=1e-6)
