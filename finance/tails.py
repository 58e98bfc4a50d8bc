"""Right-tail surprise of each feature (ECOD's right tails, Li et al. 2022), fitted from training rows.

Masked reconstruction scores *inconsistency*: a cell the other cells do not predict. A
transaction whose features are all extreme together (a large amount is large against the
card's median, its robust z and the terminal's median alike) is consistent, and its cells
reconstruct each other; what is unusual about it is how far out it lies on each feature.
This component measures exactly that, with nothing to tune: each feature's empirical right
tail probability under the training rows, ``-log P(X >= x)``, one term per feature.

Only the right tail: finance's features are built so that the unusual side is the high one
(amount above the card's habit, counts, distances, speeds, rarity, terminal anomalies).
ECOD's rule (the largest of the left, right and skewness-chosen sums) was measured on our
simulator: its left sums put tiny legitimate purchases (small against every amount
feature at once) above leaked-credential frauds (bench/README.md, finance).

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
    """Right tails on a numeric matrix: ``fit(X)``, ``feature_scores(X)`` (n, d), ``score(X)`` (n,).

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
        return self

    def feature_scores(self, X: np.ndarray) -> np.ndarray:
        """``-log P(X >= x)`` per cell ``(n, d)``, with +1 smoothing; rows sum to :meth:`score`."""
        X = np.asarray(X, dtype=np.float64)
        m = len(self.sorted_)
        above = m - np.column_stack([np.searchsorted(self.sorted_[:, j], X[:, j], side="left")
                                     for j in range(X.shape[1])])
        return -np.log((above + 1.0) / (m + 1.0))

    def score(self, X: np.ndarray) -> np.ndarray:
        return self.feature_scores(X).sum(axis=1)

    def save(self, path) -> None:
        save_bundle(path, KIND, {"n_sample": self.n_sample, "random_state": self.random_state},
                    {"sorted": torch.as_tensor(self.sorted_)})

    @classmethod
    def load(cls, path) -> "MarginalTails":
        config, tensors = load_bundle(path, KIND)
        tails = cls(**config)
        tails.sorted_ = tensors["sorted"].numpy().astype(np.float64)
        if tails.sorted_.ndim != 2:
            raise BundleError(f"{path}: tails of inconsistent shape")
        return tails
