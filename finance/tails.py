"""Marginal tail surprise of each feature (ECOD, Li et al. 2022), fitted from training rows.

Masked reconstruction scores *inconsistency*: a cell the other cells do not predict. A
transaction whose features are all extreme together (a large amount is large against the
card's median, its robust z and the terminal's median alike) is consistent, and its cells
reconstruct each other; what is unusual about it is how far out it lies on each feature.
This component measures exactly that, with nothing to tune: each feature's empirical
left and right tail probability under the training rows,
``-log P(X <= x)`` and ``-log P(X >= x)``, summed over features for the left tails, the
right tails and the tail each feature's skewness points to; the score is the largest of
the three sums (ECOD's rule). Per-feature terms of the winning sum add up to the score, so
reason codes keep working.

The training distribution is kept as a sorted sample of at most ``n_sample`` values per
feature (saved with the model in safetensors), so a tail probability is a binary search.
"""
from __future__ import annotations

import numpy as np
import torch

from core.bundle import load_bundle, save_bundle
from core.errors import BundleError

KIND = "finance-tails"


class MarginalTails:
    """ECOD on a numeric matrix: ``fit(X)``, ``feature_scores(X)`` (n, d), ``score(X)`` (n,).

    Args:
        n_sample: at most this many training rows are kept (sorted, per feature).
        random_state: seed of that sample.
    """

    def __init__(self, n_sample: int = 16_384, random_state: int = 0):
        self.n_sample = n_sample
        self.random_state = random_state

    def fit(self, X: np.ndarray) -> "MarginalTails":
        X = np.asarray(X, dtype=np.float64)
        R = np.random.default_rng(self.random_state)
        if len(X) > self.n_sample:
            X = X[np.sort(R.choice(len(X), self.n_sample, replace=False))]
        self.sorted_ = np.sort(X, axis=0)                                   # (m, d)
        centred = X - X.mean(axis=0)
        third = (centred ** 3).mean(axis=0)
        self.right_skewed_ = third >= 0                                     # (d,) which tail "auto" takes
        return self

    def _tails(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(-log P(X <= x), -log P(X >= x)) per cell, ``(n, d)`` each, with +1 smoothing."""
        X = np.asarray(X, dtype=np.float64)
        m = len(self.sorted_)
        below = np.column_stack([np.searchsorted(self.sorted_[:, j], X[:, j], side="right")
                                 for j in range(X.shape[1])])
        above = m - np.column_stack([np.searchsorted(self.sorted_[:, j], X[:, j], side="left")
                                     for j in range(X.shape[1])])
        return -np.log((below + 1.0) / (m + 1.0)), -np.log((above + 1.0) / (m + 1.0))

    def feature_scores(self, X: np.ndarray) -> np.ndarray:
        """Per-feature terms ``(n, d)`` of the winning sum (left, right or skewness-chosen
        tails); each row sums to :meth:`score`."""
        left, right = self._tails(X)
        auto = np.where(self.right_skewed_, right, left)
        options = np.stack([left, right, auto])                              # (3, n, d)
        pick = options.sum(axis=2).argmax(axis=0)                           # (n,)
        return options[pick, np.arange(len(pick))]

    def score(self, X: np.ndarray) -> np.ndarray:
        return self.feature_scores(X).sum(axis=1)

    def save(self, path) -> None:
        save_bundle(path, KIND, {"n_sample": self.n_sample, "random_state": self.random_state},
                    {"sorted": torch.as_tensor(self.sorted_),
                     "right_skewed": torch.as_tensor(self.right_skewed_.astype(np.uint8))})

    @classmethod
    def load(cls, path) -> "MarginalTails":
        config, tensors = load_bundle(path, KIND)
        tails = cls(**config)
        tails.sorted_ = tensors["sorted"].numpy().astype(np.float64)
        tails.right_skewed_ = tensors["right_skewed"].numpy().astype(bool)
        if tails.sorted_.ndim != 2 or tails.right_skewed_.shape != tails.sorted_.shape[1:]:
            raise BundleError(f"{path}: tails of inconsistent shape")
        return tails
