"""The supervised feedback head: gradient-boosted trees trained on analysts' dispositions.

A mature fraud system learns from its analysts. :class:`FeedbackHead` is a
``sklearn.ensemble.HistGradientBoostingClassifier`` fitted on the transactions analysts
actually labelled (fraud / legitimate), with the engineered features, the delayed feedback
features, the unsupervised anomaly score and the detector's per-feature reconstruction
errors as inputs. The unsupervised score as an input lets the trees learn how far to trust
it in each region, and keeps unlabelled patterns ranked by it (see
:func:`combine_scores`).

No pickle: after fitting, the trees are exported to flat arrays (feature, threshold,
children, leaf values) and scored by :meth:`FeedbackHead.decision_function` in numpy, so
the head saves as safetensors like every other bundle; the exported trees reproduce
scikit-learn's ``decision_function`` exactly (tested).

scikit-learn has no public export of a histogram-boosting model's trees, so the export
reads its fitted predictors, whose layout has held over the versions ``pyproject.toml``
allows (1.6 up to 2). Every fit checks the export against the public
``decision_function`` on the training rows; a scikit-learn that stores its trees
differently stops the fit with one line instead of a silently different score.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from core.errors import BundleError, DataValidationError, NotFittedError, UnmaskError
from core.runtime import default_threads

CHUNK_ROWS = 16_384
NODE_FIELDS = ("feature_idx", "num_threshold", "left", "right", "is_leaf",
               "missing_go_to_left", "value", "depth")


@dataclass
class HeadConfig:
    """Hyper-parameters of the boosted trees (fixed a priori, not tuned on test data)."""

    max_iter: int = 200
    learning_rate: float = 0.05
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 10
    l2_regularization: float = 1.0
    min_labels_per_class: int = 5
    random_state: int = 0


class FeedbackHead:
    """Boosted trees on labelled rows; numpy inference from exported arrays.

    Args:
        config: hyper-parameters.

    Example:
        >>> head = FeedbackHead(HeadConfig()).fit(X, y)      # doctest: +SKIP
        >>> head.decision_function(X_new)                     # logit of P(fraud)  # doctest: +SKIP
    """

    def __init__(self, config: HeadConfig | None = None):
        self.config = config or HeadConfig()

    def fit(self, X, y, sample_weight=None) -> "FeedbackHead":
        """Fit on ``X`` ``(n, d)`` float and ``y`` in {0, 1}; returns ``self``."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y).astype(np.int64)
        counts = np.bincount(y, minlength=2)
        if y.size != len(X) or counts.size > 2:
            raise DataValidationError("feedback head: labels must be 0/1, one per row")
        if counts.min() < self.config.min_labels_per_class:
            raise DataValidationError(
                f"feedback head needs at least {self.config.min_labels_per_class} fraud and "
                f"{self.config.min_labels_per_class} legitimate dispositions, got {counts[1]} and {counts[0]}")
        c = self.config
        clf = HistGradientBoostingClassifier(
            max_iter=c.max_iter, learning_rate=c.learning_rate, max_leaf_nodes=c.max_leaf_nodes,
            min_samples_leaf=c.min_samples_leaf, l2_regularization=c.l2_regularization,
            early_stopping=False, random_state=c.random_state)
        from threadpoolctl import threadpool_limits


        # OpenMP's default (every core, spin-waiting) crawls on shared machines.
        with threadpool_limits(limits=default_threads(), user_api="openmp"):
            clf.fit(X, y, sample_weight=sample_weight)
        self._export(clf)
        self.n_features_in_ = X.shape[1]
        self._check_export(clf, X)
        self.n_labels_ = [int(counts[0]), int(counts[1])]
        return self

    def _export(self, clf) -> None:
        """Flatten every tree's nodes into global arrays (children as global indices)."""
        feature, threshold, left, right, leaf, missing_left, value, roots = [], [], [], [], [], [], [], []
        offset = 0
        for nodes in _tree_nodes(clf):
            roots.append(offset)
            feature.append(nodes["feature_idx"].astype(np.int64))
            threshold.append(nodes["num_threshold"].astype(np.float64))
            left.append(nodes["left"].astype(np.int64) + offset)
            right.append(nodes["right"].astype(np.int64) + offset)
            leaf.append(nodes["is_leaf"].astype(bool))
            missing_left.append(nodes["missing_go_to_left"].astype(bool))
            value.append(nodes["value"].astype(np.float64))
            offset += len(nodes)
        cat = np.concatenate
        self.trees_ = {"feature": cat(feature), "threshold": cat(threshold), "left": cat(left),
                       "right": cat(right), "is_leaf": cat(leaf), "missing_left": cat(missing_left),
                       "value": cat(value), "roots": np.asarray(roots, dtype=np.int64)}
        self.baseline_ = float(np.ravel(clf._baseline_prediction)[0])
        self.max_depth_ = max(int(nodes["depth"].max()) for nodes in _tree_nodes(clf))

    def _check_export(self, clf, X: np.ndarray) -> None:
        """The exported trees must score the training rows as scikit-learn does."""
        if np.abs(self.decision_function(X) - clf.decision_function(X)).max() > 1e-9:
            raise _unsupported_sklearn("its trees score differently once exported")

    def _check(self):
        if not hasattr(self, "trees_"):
            raise NotFittedError("FeedbackHead is not fitted")

    def decision_function(self, X) -> np.ndarray:
        """Logit of P(fraud) ``(n,)`` (scikit-learn's ``decision_function``)."""
        self._check()
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise DataValidationError(f"feedback head expects {self.n_features_in_} columns, got {X.shape}")
        out = np.empty(len(X))
        for start in range(0, len(X), CHUNK_ROWS):
            out[start:start + CHUNK_ROWS] = self._raw(X[start:start + CHUNK_ROWS])
        return out

    def _raw(self, X: np.ndarray) -> np.ndarray:
        t = self.trees_
        idx = np.broadcast_to(t["roots"], (len(X), t["roots"].size)).copy()
        rows = np.arange(len(X))[:, None]
        for _ in range(self.max_depth_):
            x = X[rows, t["feature"][idx]]
            go_left = np.where(np.isnan(x), t["missing_left"][idx], x <= t["threshold"][idx])
            idx = np.where(t["is_leaf"][idx], idx, np.where(go_left, t["left"][idx], t["right"][idx]))
        return self.baseline_ + t["value"][idx].sum(axis=1)

    def predict_proba(self, X) -> np.ndarray:
        """P(fraud) ``(n,)``."""
        return 1.0 / (1.0 + np.exp(-self.decision_function(X)))

    # -- persistence (safetensors tensors + a JSON-able dict) ------------------------------

    def state(self) -> tuple[dict, dict]:
        """``(config dict, tensors)`` for :func:`core.bundle.save_bundle`."""
        import torch

        self._check()
        config = {"head": asdict(self.config), "baseline": self.baseline_, "max_depth": self.max_depth_,
                  "n_features_in": self.n_features_in_, "n_labels": self.n_labels_}
        tensors = {f"trees.{k}": torch.from_numpy(v.astype(np.uint8) if v.dtype == bool else v)
                   for k, v in self.trees_.items()}
        return config, tensors

    @classmethod
    def from_state(cls, config: dict, tensors: dict) -> "FeedbackHead":
        head = cls(HeadConfig(**config["head"]))
        try:
            trees = {k.split(".", 1)[1]: v.numpy() for k, v in tensors.items() if k.startswith("trees.")}
            for k in ("is_leaf", "missing_left"):
                trees[k] = trees[k].astype(bool)
            n = trees["feature"].size
            if any(trees[k].size != n for k in ("threshold", "left", "right", "is_leaf", "missing_left", "value")):
                raise KeyError("node arrays differ in length")
        except KeyError as err:
            raise BundleError(f"feedback head bundle is incomplete ({err})") from None
        head.trees_ = trees
        head.baseline_ = float(config["baseline"])
        head.max_depth_ = int(config["max_depth"])
        head.n_features_in_ = int(config["n_features_in"])
        head.n_labels_ = list(config["n_labels"])
        return head


def _tree_nodes(clf) -> list:
    """Each boosting stage's node array (a binary classifier: one tree per stage)."""
    try:
        nodes = [stage[0].nodes for stage in clf._predictors]
        missing = [f for f in NODE_FIELDS if f not in nodes[0].dtype.names]
    except (AttributeError, IndexError, TypeError) as err:
        raise _unsupported_sklearn(f"its fitted trees are not where expected ({err})") from None
    if missing:
        raise _unsupported_sklearn(f"its tree nodes lack {', '.join(missing)}")
    return nodes


def _unsupported_sklearn(why: str) -> UnmaskError:
    import sklearn

    return UnmaskError(f"feedback head: scikit-learn {sklearn.__version__} cannot be exported "
                       f"({why}); install a version pyproject.toml allows "
                       "(scikit-learn>=1.6,<2)")
