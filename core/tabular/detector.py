"""``TabularDetector``: the public tabular anomaly detector (scikit-learn conventions).

Components, each giving per-column errors over a *fixed* mask set (deterministic scores):

* ``"reference"`` (default) — :class:`~core.tabular.reference.ReferenceMemory`: hidden
  cells are rebuilt from stored training rows, attending to them by distance on the
  visible cells (NPT-AD's idea; non-parametric, nothing to train). Column error: root
  mean square reconstruction error over the masks that hide the column.
* ``"knn"`` (default, weight ``knn_weight``) — the distance to the ``knn_k``-th nearest
  stored row (the same memory), split additively over columns.
* ``"local"`` (default, weight ``local_weight``) — the same KNN distance divided by the
  mean of the neighbours' own ``knn_k``-th neighbour distances (plus a floor): LOF's idea,
  a distance judged against the density of the row's region.
* ``"network"`` (optional) — :class:`~core.tabular.network.LearnedMaskAutoencoder`: an
  autoencoder with ``K`` learned, diverse masks (MCM), trained with
  :func:`core.training.fit`; column error: root mean square error over the ``K`` masks.

Each component's total is standardised by the median and spread (inter-quartile range,
or mean absolute deviation where ties from duplicated rows collapse it) of its scores on
held-out training rows (rows stored in the memory are scored leave-one-out, so
the memory keeps every training row), and the score is their weighted sum. The same
held-out rows calibrate the threshold and conformal p-values (:mod:`core.calibration`).
The default mix is what the nested (leave-sets-out) ADBench selection in
``bench/README.md`` chose.

Example:
    >>> det = TabularDetector(random_state=0).fit(train_df)      # doctest: +SKIP
    >>> scores = det.decision_function(new_df)   # higher = more anomalous  # doctest: +SKIP
    >>> flags = det.alerts(new_df, fdr=0.05)                    # doctest: +SKIP
    >>> det.save("model"); det2 = TabularDetector.load("model") # doctest: +SKIP
"""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from torch.utils.data import TensorDataset

from ..errors import DataValidationError, NotFittedError
from ..estimator import Estimator
from ..explain import feature_shap
from ..masking import RandomCellMasker
from .. import training  # training.fit looked up at each call (patchable in tests)
from ..runtime import (autocast, check_precision, choose_device, configure_threads,
                       module_device)
from . import persist
from .learned_masks import diversity_loss
from .network import LearnedMaskAutoencoder, TabularAEConfig, seeded_init_
from .preprocess import EncodedTable, TabularPreprocessor
from .pyod_api import PyODOutputsMixin
from .reference import ReferenceMemory, dense_encoding, dim_to_column

COMPONENTS = ("reference", "knn", "local", "network")
DEFAULT_COMPONENTS = ("reference", "knn", "local")  # nested selection, bench/README.md
CHUNK_ROWS = 2048  # rows scored at once (one thread each): bounded memory


class _NotFittedError(NotFittedError, SklearnNotFittedError):
    """unmask's NotFittedError that scikit-learn's tooling also recognises."""


class TabularDetector(PyODOutputsMixin, Estimator, BaseEstimator):
    """Masked-reconstruction anomaly detector for numeric + categorical tables.

    scikit-learn's estimator contract with PyOD's outputs (``labels_``,
    ``predict_proba``, ``predict_confidence``, ``fit_predict``; see
    :mod:`core.tabular.pyod_api`), so code written for a PyOD detector runs unchanged.
    The fitted check, ``p_values``, ``alerts`` and ``save``/``load`` are the shared
    :class:`core.estimator.Estimator`'s.

    Args:
        random_state: seed for splits, masks, reference sample and training.
        contamination: expected anomaly fraction; sets ``threshold_``.
        components: which components to sum (``"reference"``, ``"knn"``, ``"network"``).
        calibration_fraction: share of training rows held out to standardise and calibrate.
        n_reference: maximum number of stored training rows (the memory).
        n_reference_masks: number of fixed random masks of the reference component.
        mask_ratio: fraction of columns each mask hides.
        temperature_k: the reference softmax temperature is the median distance to the
            ``temperature_k``-th nearest reference row ...
        temperature_scale: ... times this factor.
        n_learned_masks: ``K``, learned masks of the network component.
        hidden: hidden width of the autoencoder.
        latent: bottleneck width of the autoencoder.
        max_epochs: training epochs (early stopping may end sooner).
        max_steps: cap on total optimiser steps (keeps large fits bounded).
        batch_size: training batch size.
        lr: learning rate.
        diversity_weight: weight of MCM's mask-diversity loss.
        knn_k: neighbour rank of the ``"knn"`` component.
        knn_weight: weight of the ``"knn"`` component in the sum (others weigh 1).
        local_weight: weight of the ``"local"`` component (KNN distance over the
            neighbours' own, as in LOF).
        local_floor: added to the neighbours' mean distance in the ``"local"`` component, as
            a fraction of the median neighbour distance (keeps duplicates finite).
        n_candidates: nearest reference rows the masked attention runs over.
        n_probe: neighbour search visits only the memory groups (k-means, about
            ``2 * sqrt(n_reference)`` of them) with the ``n_probe`` nearest centres;
            ``None`` searches exactly.
        num_threads: torch threads (default: ``UNMASK_NUM_THREADS`` or up to 2).
        progress: training progress bars (None: only on a terminal; False: never).
        device: where the network component trains and scores (auto, cpu, cuda, cuda:N);
            the reference memory is a CPU kernel. A runtime choice: :meth:`load` puts the
            network where it is told, whatever the bundle was trained on.
        precision: ``"fp32"``, or ``"bf16"`` (CUDA autocast of the network).

    Attributes (after ``fit``):
        n_features_in_: number of input columns.
        feature_names_in_: column names (only when fitted on a DataFrame, as in sklearn).
        decision_scores_: training rows' scores (rows stored in the memory leave-one-out).
        threshold_: score above which ``predict`` says 1 (from ``contamination``).
        labels_: training rows' 0/1 labels against ``threshold_`` (PyOD).
        calibration_: :class:`core.calibration.ScoreCalibration` on held-out rows.
        component_stats_: per component, the median and scale that standardise it.

    Example:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(500, 4))
        >>> det = TabularDetector(random_state=0).fit(X)
        >>> int(det.decision_function(np.array([[0.0, 0, 0, 0], [6.0, 0, 0, 0]])).argmax())
        1
        >>> int(det.feature_errors(np.array([[6.0, 0, 0, 0]])).argmax())  # the odd column
        0
    """

    bundle_kind = persist.KIND
    bundle_version = persist.FORMAT_VERSION
    not_fitted_error = _NotFittedError

    def __init__(self, random_state=None, contamination=0.01, components=DEFAULT_COMPONENTS,
                 calibration_fraction=0.2, n_reference=4096, n_reference_masks=8,
                 mask_ratio=0.4, temperature_k=5, temperature_scale=0.3, n_learned_masks=15,
                 hidden=64, latent=16, max_epochs=50, max_steps=2000, batch_size=256, lr=1e-3,
                 diversity_weight=1.0, knn_k=3, knn_weight=0.5, local_weight=0.5, local_floor=0.1,
                 n_candidates=8, n_probe=4,
                 num_threads=None, progress=False, device="cpu", precision="fp32"):
        self.random_state = random_state
        self.contamination = contamination
        self.components = components
        self.calibration_fraction = calibration_fraction
        self.n_reference = n_reference
        self.n_reference_masks = n_reference_masks
        self.mask_ratio = mask_ratio
        self.temperature_k = temperature_k
        self.temperature_scale = temperature_scale
        self.n_learned_masks = n_learned_masks
        self.hidden = hidden
        self.latent = latent
        self.max_epochs = max_epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.lr = lr
        self.diversity_weight = diversity_weight
        self.knn_k = knn_k
        self.knn_weight = knn_weight
        self.local_weight = local_weight
        self.local_floor = local_floor
        self.n_candidates = n_candidates
        self.n_probe = n_probe
        self.num_threads = num_threads
        self.progress = progress
        self.device = device
        self.precision = precision

    # -- fitting ---------------------------------------------------------------------------

    def _check_params(self) -> tuple[str, ...]:
        components = tuple(self.components)
        unknown = [c for c in components if c not in COMPONENTS]
        if not components or unknown:
            raise DataValidationError(f"components must be a non-empty subset of {COMPONENTS}, "
                                      f"got {self.components!r}")
        if not 0.0 < self.contamination < 0.5:
            raise DataValidationError(f"contamination must be in (0, 0.5), got {self.contamination}")
        if not 0.0 <= self.calibration_fraction < 1.0:
            raise DataValidationError("calibration_fraction must be in [0, 1), "
                                      f"got {self.calibration_fraction}")
        return components

    def fit(self, X, y=None):
        """Learn from (mostly normal) rows ``X``; ``y`` is ignored.

        Returns:
            self
        """
        components = self._check_params()
        configure_threads(self.num_threads)
        pre = TabularPreprocessor().fit(X)
        table = pre.transform(X)
        rng = np.random.default_rng(self.random_state)
        n = len(table)
        order = rng.permutation(n)
        n_cal = int(round(n * self.calibration_fraction)) if n >= 20 else 0
        cal_idx, fit_idx = np.sort(order[:n_cal]), np.sort(order[n_cal:])

        self.preprocessor_ = pre
        self.n_features_in_ = pre.n_columns
        if pre.has_names_:
            self.feature_names_in_ = np.asarray(pre.columns_, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self._column_order = np.asarray(pre.numeric_index + pre.categorical_index)
        self.components_ = components
        self.modules_ = {}
        in_memory = np.zeros(n, dtype=bool)  # rows stored in the memory (scored leave-one-out)
        if {"reference", "knn", "local"} & set(components):
            self.modules_["memory"] = self._fit_memory(table, in_memory, rng)
        if "network" in components:
            self.modules_["network"], self.history_ = self._fit_network(table, fit_idx, rng)

        if not n_cal:
            cal_idx = np.arange(n)
        # each row's position in the memory (-1: not stored), over the *whole* table: the
        # calibration rows are a subset, and leave-one-out must skip their own stored copy
        stored = np.where(in_memory, np.cumsum(in_memory) - 1, -1)
        totals = self._component_totals(_take(table, cal_idx), stored[cal_idx])
        self.component_stats_ = {}
        for name, values in totals.items():
            med, spread = robust_location_scale(values)
            self.component_stats_[name] = {"median": float(med), "scale": float(spread)}
        self._calibrate(self._combine(totals))
        background = rng.choice(n, size=min(n, 64), replace=False)
        self.background_ = pre.to_matrix(_take(table, np.sort(background)))
        self.decision_scores_ = self._combine(self._component_totals(table, stored))
        return self

    def _fit_memory(self, table: EncodedTable, in_memory: np.ndarray, rng):
        """Store up to ``n_reference`` training rows (all rows: held-out ones are scored
        leave-one-out, so none is wasted); marks them in ``in_memory``."""
        cards = self.preprocessor_.cardinalities
        n = len(table)
        ref_idx = np.sort(rng.choice(n, size=min(n, self.n_reference), replace=False))
        in_memory[ref_idx] = True
        reference = dense_encoding(table.numeric[ref_idx], table.codes[ref_idx], cards)
        n_columns = self.preprocessor_.n_columns
        if n_columns > 1:
            ratio = min(max(self.mask_ratio, 0.5 / n_columns), 1 - 0.5 / n_columns)
            masker = RandomCellMasker(ratio, random_state=int(rng.integers(2**31)))
            hidden = masker.draw((self.n_reference_masks, n_columns))
        else:
            hidden = np.ones((1, 1), dtype=bool)
        module = ReferenceMemory(reference, torch.as_tensor(hidden),
                                 dim_to_column(table.numeric.shape[1], cards),
                                 n_candidates=self.n_candidates, k=self.knn_k,
                                 n_probe=self.n_probe)
        # temperature from reference rows themselves, skipping each row's own match
        probe = np.sort(rng.choice(len(ref_idx), size=min(len(ref_idx), 512), replace=False))
        module.fit_temperature(reference[probe], probe, k=self.temperature_k,
                               scale=self.temperature_scale)
        module.fit_neighbour_radius(self.local_floor)
        return module

    def _fit_network(self, table: EncodedTable, fit_idx, rng):
        seed = int(rng.integers(2**31))
        config = TabularAEConfig(table.numeric.shape[1], self.preprocessor_.cardinalities,
                                 hidden=self.hidden, latent=self.latent)
        model = seeded_init_(LearnedMaskAutoencoder(config, n_masks=self.n_learned_masks,
                                                    hidden_ratio=self.mask_ratio),
                             torch.Generator().manual_seed(seed))
        dataset = TensorDataset(torch.as_tensor(table.numeric[fit_idx]),
                                torch.as_tensor(table.codes[fit_idx]))
        weight = self.diversity_weight

        def loss_fn(net, batch, generator):
            numeric, codes = batch  # on the training device; the generator draws on CPU
            unknown = (torch.rand(codes.shape, generator=generator) < 0.02).to(codes.device)
            errors, keep = net.masked_errors(numeric, codes, codes.masked_fill(unknown, 0))
            return errors.mean() + weight * diversity_loss(keep)

        steps_per_epoch = max(1, int(np.ceil(len(fit_idx) * 0.9 / self.batch_size)))
        epochs = max(1, min(self.max_epochs, self.max_steps // steps_per_epoch))
        train_config = training.TrainConfig(
            max_epochs=epochs, batch_size=self.batch_size, lr=self.lr, device=self.device,
            precision=self.precision, num_threads=self.num_threads, seed=seed,
            progress=self.progress, patience=8)
        history = training.fit(model, dataset, loss_fn, train_config)
        return model, history.to_dict()

    # -- scoring ---------------------------------------------------------------------------

    def _transform(self, X) -> EncodedTable:
        return self.preprocessor_.transform(X, owner=type(self).__name__)

    def _column_errors(self, table: EncodedTable, in_memory=None, totals: bool = False
                       ) -> dict:
        """Per-column errors ``(n, C)`` per component (model column order).

        Rows go in chunks of ``CHUNK_ROWS`` (bounded memory); with several torch threads the
        chunks run in parallel, one thread each (coarse-grained, like IsolationForest's
        joblib trees, and far more robust on busy machines than threading tiny ops).
        Each chunk's result does not depend on which thread ran it: deterministic.
        ``in_memory`` (training only, int) is each row's position in the memory (-1: not
        stored): stored rows are scored leave-one-out. ``totals``: return each row's sum
        over columns ``(n,)`` instead (summed inside the chunks, in parallel).
        """
        if in_memory is not None and np.asarray(in_memory).dtype == bool:
            raise TypeError("in_memory must hold memory positions (int), not a boolean mask")
        starts = list(range(0, len(table), CHUNK_ROWS))
        threads = torch.get_num_threads()
        if threads > 1 and len(starts) > 1:
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(threads) as pool:
                    parts = list(pool.map(
                        lambda s: self._chunk_errors(table, s, in_memory, totals), starts))
            finally:
                torch.set_num_threads(threads)
        else:
            parts = [self._chunk_errors(table, s, in_memory, totals) for s in starts]
        return {k: np.concatenate([p[k] for p in parts]) for k in self.components_}

    def _chunk_errors(self, table: EncodedTable, start: int, in_memory, totals: bool) -> dict:
        stop = start + CHUNK_ROWS
        out = {}
        memory, network = self.modules_.get("memory"), self.modules_.get("network")
        with torch.no_grad():  # grad mode is per thread
            numeric = torch.as_tensor(table.numeric[start:stop])
            codes = torch.as_tensor(table.codes[start:stop])
            if memory is not None:
                exclude = None if in_memory is None else in_memory[start:stop]
                cards = self.preprocessor_.cardinalities
                dense = (dense_encoding(numeric, codes, cards).numpy() if cards
                         else table.numeric[start:stop])
                out["reference"], out["knn"], out["local"] = memory.errors(dense, exclude)
            if network is not None:
                device = module_device(network)
                with autocast(device, self.precision):  # per thread, like grad mode
                    errors = network(numeric.to(device), codes.to(device))
                out["network"] = errors.float().cpu().numpy()
        errors = {k: np.asarray(v, dtype=np.float64) for k, v in out.items()
                  if k in self.components_}
        for name in ("reference", "network"):  # mean squared error -> root mean square
            if name in errors:
                errors[name] = np.sqrt(errors[name])
        return {k: v.sum(axis=1) for k, v in errors.items()} if totals else errors

    def _component_totals(self, table: EncodedTable, in_memory=None) -> dict:
        return self._column_errors(table, in_memory, totals=True)

    def _weight(self, name: str) -> float:
        weights = {"knn": self.knn_weight, "local": self.local_weight}
        return float(weights.get(name, 1.0))

    def _combine(self, totals: dict) -> np.ndarray:
        score = 0.0
        for name, values in totals.items():
            stats = self.component_stats_[name]
            score = score + self._weight(name) * (values - stats["median"]) / stats["scale"]
        return np.asarray(score, dtype=np.float64)

    def _score_table(self, table: EncodedTable) -> np.ndarray:
        return self._combine(self._component_totals(table))

    def _score(self, X) -> np.ndarray:
        """Anomaly scores ``(n,)`` float64; higher = more anomalous; deterministic."""
        return self._score_table(self._transform(X))

    def score_samples(self, X) -> np.ndarray:
        """scikit-learn's convention (higher = more normal): ``-decision_function(X)``."""
        return -self.decision_function(X)

    def feature_errors(self, X):
        """Per-input-column reconstruction error, the fast built-in attribution.

        Each component's per-column errors are divided by that component's scale and
        summed, so a row's ``decision_function`` equals the sum of its feature errors minus
        a constant (``feature_errors_offset_``).

        Returns:
            ``(n, n_features_in_)``: a DataFrame with the column names when fitted on a
            DataFrame, else a numpy array.
        """
        ordered = sum(self.component_errors(X).values())
        if self.preprocessor_.has_names_:
            index = X.index if isinstance(X, pd.DataFrame) else None
            return pd.DataFrame(ordered, columns=self.preprocessor_.columns_, index=index)
        return ordered

    def component_errors(self, X) -> dict:
        """Per-input-column errors ``(n, n_features_in_)`` of each component (``network``,
        ``knn``, ...), scaled and weighed as in :meth:`feature_errors`, which is their sum
        (for callers that treat the components apart, e.g. finance's per-feature floors)."""
        self._check_fitted()
        out = {}
        for name, errors in self._column_errors(self._transform(X)).items():
            ordered = np.empty_like(errors)                    # input column order
            ordered[:, self._column_order] = (self._weight(name) * errors
                                              / self.component_stats_[name]["scale"])
            out[name] = ordered
        return out

    @property
    def feature_errors_offset_(self) -> float:
        """``sum(feature_errors) - decision_function`` for every row."""
        self._check_fitted()
        return float(sum(self._weight(k) * s["median"] / s["scale"]
                         for k, s in self.component_stats_.items()))

    @property
    def offset_(self) -> float:
        """Deprecated name of :attr:`feature_errors_offset_`.

        scikit-learn's outlier detectors use ``offset_`` for ``score_samples -
        decision_function``; this one never meant that, so the name goes.
        """
        warnings.warn("TabularDetector.offset_ is deprecated (it is not scikit-learn's "
                      "offset_); use feature_errors_offset_", FutureWarning, stacklevel=2)
        return self.feature_errors_offset_

    def explain(self, X, background=None, max_evals: int | None = None):
        """SHAP values of the score over input columns (``shap.PermutationExplainer``).

        SHAP runs on the encoded matrix (scaled numbers; category *codes* for categorical
        columns), so its masker substitutes whole background values, categories included.

        Args:
            X: rows to explain.
            background: reference rows (default: 64 stored training rows).
            max_evals: evaluations per row (default ``2 * n_features + 1`` minimum).

        Returns:
            :class:`core.explain.ShapResult`; ``values.sum(1) + base_values == scores``.
        """
        self._check_fitted()
        pre = self.preprocessor_
        matrix = pre.to_matrix(self._transform(X))
        bg = self.background_ if background is None else pre.to_matrix(self._transform(background))
        return feature_shap(lambda m: self._score_table(pre.from_matrix(m)), matrix, bg,
                            feature_names=pre.columns_, max_evals=max_evals)

    # -- persistence -----------------------------------------------------------------------

    def _bundle_state(self) -> tuple[dict, dict]:
        return persist.detector_state(self)

    @classmethod
    def _from_bundle(cls, config: dict, tensors: dict) -> "TabularDetector":
        return persist.detector_from_state(cls, config, tensors)

    def to(self, device="cpu", precision: str = "fp32") -> "TabularDetector":
        """Run the network component on ``device`` at ``precision`` from now on."""
        chosen = choose_device(device)
        self.set_params(device=str(chosen), precision=check_precision(precision, chosen))
        if "network" in getattr(self, "modules_", {}):
            self.modules_["network"].to(chosen)
        return self


def robust_location_scale(values: np.ndarray) -> tuple[float, float]:
    """Median and spread of a component's calibration scores.

    The spread is the inter-quartile range, or the mean absolute deviation from the median
    when that is larger. With duplicated rows, half or more of the held-out rows can have
    an exact twin in the memory and score exactly 0, so the IQR collapses to 0; dividing by
    it would blow one component up by ~1e12 and drown the others (and the threshold). The
    mean absolute deviation still sees the rows that are not ties. On untied scores the IQR
    is the larger of the two (1.35 vs 0.80 standard deviations for a normal).
    """
    q25, med, q75 = np.quantile(values, [0.25, 0.5, 0.75])
    spread = max(q75 - q25, float(np.mean(np.abs(values - med))))
    return float(med), spread if spread > 1e-12 * max(1.0, abs(med)) else 1.0


def _take(table: EncodedTable, idx) -> EncodedTable:
    return EncodedTable(table.numeric[idx], table.codes[idx])
