"""The finance model: ``core.TabularDetector`` on point-in-time features, plus finance's config.

A saved finance model is a directory::

    MODEL_DIR/
      finance.json        feature config (column mapping, windows, feedback settings), feature
                          list, training period, SHAP background rows, the drift reference
                          (:mod:`finance.drift`)
      detector/           the TabularDetector bundle (config.json + weights.safetensors)
      head/               (when analysts' labels trained one) the supervised feedback head
                          (:mod:`finance.head`), a bundle of exported trees

No pickle anywhere; every part is JSON + safetensors.

Without labels the score is the unsupervised detector's. With enough analysts'
dispositions (``fit(..., labelled=...)``), the detector is fitted on the transaction
features only and a supervised head (:class:`finance.head.FeedbackHead`) is stacked on top:
its inputs are every feature (delayed feedback counts included), the detector's score and
its per-feature reconstruction errors, and the score becomes the head's fraud logit (plus a
tie-break of at most 1e-6 from the detector's score, so rows the trees cannot tell apart
keep the unsupervised order). p-values then come from the combined scores of held-out
training rows.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.bundle import load_bundle, save_bundle
from core.calibration import ScoreCalibration
from core.errors import BundleError, DataValidationError
from core.estimator import Estimator
from core.explain import ShapResult, feature_shap
from core.io import atomic_path
from core.tabular.detector import TabularDetector

from .features import MODEL_CONFIG, FeatureConfig, feature_names
from .head import FeedbackHead, HeadConfig

FORMAT_VERSION = 3   # 3: the column mapping and the drift reference
CONFIG_NAME = MODEL_CONFIG
DETECTOR_DIR = "detector"
HEAD_DIR = "head"
HEAD_KIND = "finance-head"
TIE_BREAK = 1e-6


@dataclass
class FinanceModelConfig:
    """Hyper-parameters of the finance model (saved in ``finance.json``)."""

    random_state: int = 0
    contamination: float = 0.01
    max_train_rows: int = 200_000
    n_background: int = 48
    shap_max_evals: int | None = None
    # Extra TabularDetector arguments. The attention-over-references component is left out:
    # at millions of rows it scores ~400 rows/s on 2 cores, the other two ~15,000.
    detector_params: dict = field(default_factory=lambda: {"components": ["network", "knn"]})
    features: FeatureConfig = field(default_factory=FeatureConfig)
    # The supervised feedback head (finance.head.HeadConfig fields); used when fit() gets
    # labelled rows with at least ``min_labels_per_class`` frauds and legitimate ones.
    head_params: dict = field(default_factory=dict)
    head_calibration_rows: int = 20_000


class FinanceModel(Estimator):
    """Fits and scores the TabularDetector (and the optional feedback head) on finance features.

    The fitted check, ``calibration_``/``threshold_``, ``decision_function``, ``predict``,
    ``p_values`` and ``alerts`` are :class:`core.estimator.Estimator`'s; ``save``/``load``
    are its own, as the model is several bundles (see the module docstring).

    Args:
        config: hyper-parameters and the feature configuration.
        device: where the detector's network trains and scores (auto, cpu, cuda, cuda:N);
            a runtime choice, not saved (:meth:`load` takes its own).
        precision: ``"fp32"``, or ``"bf16"`` (CUDA autocast).
        progress: training progress bars (None: only on a terminal; False: never).

    Example:
        >>> model = FinanceModel(FinanceModelConfig()).fit(features_frame)   # doctest: +SKIP
        >>> model.decision_function(features_frame)                           # doctest: +SKIP
    """

    bundle_kind = "finance"
    bundle_version = FORMAT_VERSION

    def __init__(self, config: FinanceModelConfig, device="cpu", precision: str = "fp32",
                 progress: bool | None = False):
        self.config = config
        self.device = device
        self.precision = precision
        self.progress = progress

    @property
    def contamination(self) -> float:
        return self.config.contamination

    @property
    def feature_names(self) -> list[str]:
        """Every model input (delayed feedback counts included when configured)."""
        return feature_names(self.config.features)

    @property
    def has_head(self) -> bool:
        return getattr(self, "head_", None) is not None

    def _matrix(self, frame: pd.DataFrame, names=None) -> pd.DataFrame:
        names = self.feature_names if names is None else names
        missing = [c for c in names if c not in frame.columns]
        if missing:
            raise DataValidationError(f"features lack column(s) {', '.join(missing)}")
        return frame[names].astype(np.float64).fillna(0.0)

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, features: pd.DataFrame, trained_until=None, labelled: pd.DataFrame | None = None
            ) -> "FinanceModel":
        """Fit on a features frame (never reads ``is_fraud``); returns ``self``.

        Args:
            features: training rows (unlabelled).
            trained_until: recorded in the model (end of the training period).
            labelled: rows analysts labelled, with the feature columns and ``label`` (1 =
                fraud, 0 = legitimate). With enough of both (``head_params``'
                ``min_labels_per_class``, default 5) the supervised head is trained.
        """
        if len(features) < 50:
            raise DataValidationError(f"training needs at least 50 transactions, got {len(features)}")
        head_config = HeadConfig(**{"random_state": self.config.random_state, **self.config.head_params})
        use_head = labelled is not None and self.config.features.feedback and _enough(labelled, head_config)
        R = np.random.default_rng(self.config.random_state)
        if len(features) > self.config.max_train_rows:
            keep = np.sort(R.choice(len(features), self.config.max_train_rows, replace=False))
            features = features.iloc[keep]
        heldout = None
        if use_head:  # rows that calibrate the combined score, never seen by detector or head
            n_cal = min(self.config.head_calibration_rows, len(features) // 5)
            mask = np.zeros(len(features), bool)
            mask[R.choice(len(features), n_cal, replace=False)] = True
            heldout, features = features[mask], features[~mask]
            if "_row" in heldout.columns and "_row" in labelled.columns:  # not the head's rows either
                heldout = heldout[~heldout["_row"].isin(labelled["_row"])]
        self.detector_features_ = (self.feature_names if not use_head else
                                   [n for n in self.feature_names if "_confirmed_fraud_" not in n])
        X = self._matrix(features, self.detector_features_)
        self.detector_ = TabularDetector(random_state=self.config.random_state,
                                         contamination=self.config.contamination,
                                         **self.config.detector_params, device=self.device,
                                         precision=self.precision, progress=self.progress).fit(X)
        self.head_ = None
        self._set_calibration(self.detector_.calibration_)
        if use_head:
            self.head_ = FeedbackHead(head_config).fit(self._head_inputs(labelled)[0],
                                                       labelled["label"].to_numpy().astype(int))
            self._calibrate(self.decision_function(heldout))
        all_rows = self._matrix(features)
        pick = np.sort(R.choice(len(all_rows), min(self.config.n_background, len(all_rows)), replace=False))
        self.background_ = all_rows.to_numpy()[pick]
        self.n_train_ = int(len(X))
        self.trained_until_ = None if trained_until is None else str(trained_until)
        self.expected_score_ = float(np.mean(self.score(pd.DataFrame(self.background_, columns=self.feature_names))))
        return self

    # -- scoring ---------------------------------------------------------------------------

    def _detector_parts(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(detector score ``(n,)``, per-feature errors ``(n, d_detector)``) in one pass."""
        errors = self.detector_.feature_errors(self._matrix(features, self.detector_features_))
        errors = np.asarray(errors, dtype=np.float64)
        return errors.sum(axis=1) - self.detector_.feature_errors_offset_, errors

    def _head_inputs(self, features: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(head input matrix: features, detector score, per-feature errors; detector score)."""
        unsup, errors = self._detector_parts(features)
        return np.column_stack([self._matrix(features).to_numpy(), unsup, errors]), unsup

    def unsupervised_score(self, features: pd.DataFrame) -> np.ndarray:
        """The detector's anomaly score alone (no labels involved)."""
        self._check_fitted()
        return np.asarray(self.detector_.decision_function(
            self._matrix(features, self.detector_features_)), dtype=np.float64)

    def _score(self, features: pd.DataFrame) -> np.ndarray:
        """Scores (higher = more suspicious), ``(n,)`` float64: the detector's, or with a
        feedback head its fraud logit (ties broken by the detector's score)."""
        if not self.has_head:
            return self.unsupervised_score(features)
        inputs, unsup = self._head_inputs(features)
        return self.head_.decision_function(inputs) + TIE_BREAK * np.arctan(unsup) * (2 / np.pi)

    def score(self, features: pd.DataFrame) -> np.ndarray:
        """:meth:`decision_function` under finance's name (its scoring code reads this)."""
        return self.decision_function(features)

    @property
    def calibration(self) -> ScoreCalibration:
        self._check_fitted()
        return self.calibration_

    # -- explanation -----------------------------------------------------------------------

    def explain(self, features: pd.DataFrame):
        """SHAP values of the score for ``features`` rows -> ``core.explain.ShapResult``."""
        self._check_fitted()
        background = pd.DataFrame(self.background_, columns=self.feature_names)
        if not self.has_head:
            return self.detector_.explain(self._matrix(features), background=background,
                                          max_evals=self.config.shap_max_evals)
        names = self.feature_names
        return feature_shap(lambda m: self.score(pd.DataFrame(m, columns=names)),
                            self._matrix(features).to_numpy(), self.background_, feature_names=names,
                            max_evals=self.config.shap_max_evals)

    def error_attribution(self, features: pd.DataFrame):
        """Fast additive attribution from the detector's per-feature reconstruction errors.

        Each feature's value is its error minus its mean error over the SHAP background, so
        the values sum to ``score - expected_score`` exactly, like SHAP's. Only for models
        without a feedback head (whose score is not a sum of errors); returns ``None`` then.
        """
        self._check_fitted()
        if self.has_head:
            return None
        _, errors = self._detector_parts(features)
        _, bg_errors = self._detector_parts(pd.DataFrame(self.background_, columns=self.feature_names))
        values = errors - bg_errors.mean(axis=0)
        scores = errors.sum(axis=1) - self.detector_.feature_errors_offset_
        base = np.full(len(values), self.expected_score_)
        return ShapResult(values, base, scores, list(self.feature_names))

    # -- persistence -----------------------------------------------------------------------

    def save(self, path) -> Path:
        """Write the model directory atomically."""
        self._check_fitted()
        state = {"format_version": FORMAT_VERSION, "kind": self.bundle_kind,
                 "config": {**asdict(self.config), "features": self.config.features.to_dict()},
                 "feature_names": self.feature_names, "detector_features": self.detector_features_,
                 "n_train": self.n_train_,
                 "trained_until": self.trained_until_, "expected_score": self.expected_score_,
                 "background": self.background_.tolist()}
        if self.has_head:
            state["calibration"] = self.calibration_.to_dict()
        if getattr(self, "reference_", None) is not None:
            state["reference"] = self.reference_
        with atomic_path(path) as tmp:
            tmp.mkdir()
            self.detector_.save(tmp / DETECTOR_DIR)
            if self.has_head:
                config, tensors = self.head_.state()
                save_bundle(tmp / HEAD_DIR, HEAD_KIND, config, tensors)
            (tmp / CONFIG_NAME).write_text(json.dumps(state, indent=2))
        return Path(path)

    @classmethod
    def load(cls, path, device="cpu", precision: str = "fp32") -> "FinanceModel":
        """Load a model directory written by :meth:`save`, its network on ``device``."""
        path = Path(path)
        cfg_path = path / CONFIG_NAME
        if not cfg_path.is_file():
            raise BundleError(f"{path}: not a finance model (no {CONFIG_NAME})")
        try:
            state = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as err:
            raise BundleError(f"{cfg_path}: not valid JSON ({err})") from None
        if state.get("kind") != cls.bundle_kind or state.get("format_version", 99) > FORMAT_VERSION:
            raise BundleError(f"{cfg_path}: not a finance model of a format this unmask reads")
        if state.get("format_version", 0) < FORMAT_VERSION:
            raise BundleError(f"{cfg_path}: a finance model of format {state.get('format_version')} (before "
                              "column mappings); retrain it with `unmask finance train`")
        raw = dict(state["config"])
        raw["features"] = FeatureConfig.from_dict(raw["features"])
        model = cls(FinanceModelConfig(**raw), device, precision)
        if model.feature_names != state["feature_names"]:
            raise BundleError(f"{cfg_path}: feature list does not match this unmask's features")
        model.detector_ = TabularDetector.load(path / DETECTOR_DIR, device, precision)
        model.detector_features_ = state.get("detector_features", state["feature_names"])
        model.head_ = None
        model._set_calibration(model.detector_.calibration_)
        if (path / HEAD_DIR).exists() or "calibration" in state:
            if "calibration" not in state:
                raise BundleError(f"{cfg_path}: a feedback head without its calibration")
            model.head_ = FeedbackHead.from_state(*load_bundle(path / HEAD_DIR, HEAD_KIND))
            model._set_calibration(ScoreCalibration.from_dict(state["calibration"]))
        model.background_ = np.asarray(state["background"], dtype=np.float64)
        model.n_train_ = state["n_train"]
        model.trained_until_ = state["trained_until"]
        model.expected_score_ = state["expected_score"]
        model.reference_ = state.get("reference")
        return model


def _enough(labelled: pd.DataFrame, head_config) -> bool:
    """Whether ``labelled`` holds enough frauds and legitimate rows to train the head."""
    if "label" not in labelled.columns:
        raise DataValidationError("labelled rows need a 'label' column (1 = fraud, 0 = legitimate)")
    counts = np.bincount(labelled["label"].to_numpy().astype(int), minlength=2)
    return bool(counts[:2].min() >= head_config.min_labels_per_class)
