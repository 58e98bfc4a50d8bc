"""``Estimator``: the shell every unmask model shares (PyOD's ``BaseDetector`` in spirit).

The base holds what is the same for every model -- the fitted check, the calibration
(:class:`core.calibration.ScoreCalibration`, fitted on held-out normal scores), the
threshold, ``decision_function``/``predict``/``p_values``/``alerts`` and bundle
save/load -- so a model writes only what is new:

* ``fit(...)``: learn, then call :meth:`Estimator._calibrate` on held-out normal scores
  and return ``self`` (``__init__`` only stores parameters, as in scikit-learn);
* ``_score(X)``: scores ``(n,)``, higher = more anomalous (never called before ``fit``);
* ``_bundle_state()`` -> ``(config dict, tensors)`` and ``_from_bundle(config, tensors)``:
  what the model stores; the base adds the calibration, the kind and the format version
  (:mod:`core.bundle`), and refuses a bundle of another kind or version in one line.

Class attributes: ``bundle_kind`` (checked on load), ``bundle_version`` (bump it when what
the model stores changes: older bundles are then refused with "retrain the model", unless
``oldest_bundle_version`` names the oldest format the model still reads).
A model whose saved form is several bundles (finance's) overrides ``save``/``load``.

Example:
    >>> import numpy as np, torch
    >>> class MeanDistance(Estimator):
    ...     bundle_kind = "mean-distance"
    ...     def fit(self, X):
    ...         self.mean_ = np.asarray(X, dtype=np.float64).mean(axis=0)
    ...         return self._calibrate(self._score(X))
    ...     def _score(self, X):
    ...         return np.abs(np.asarray(X, dtype=np.float64) - self.mean_).sum(axis=1)
    ...     def _bundle_state(self):
    ...         return {}, {"mean": torch.as_tensor(self.mean_)}
    ...     @classmethod
    ...     def _from_bundle(cls, config, tensors):
    ...         model = cls()
    ...         model.mean_ = tensors["mean"].double().numpy()
    ...         return model
    >>> X = np.random.default_rng(0).normal(size=(200, 3))
    >>> model = MeanDistance().fit(X)
    >>> model.predict(np.array([[0.0, 0, 0], [9.0, 9, 9]])).tolist()
    [0, 1]
"""
from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from .bundle import FORMAT_VERSION, load_bundle, save_bundle
from .calibration import ScoreCalibration
from .errors import BundleError, NotFittedError


class Estimator:
    """Base of unmask's models: fitted check, calibration, scoring methods, save/load.

    Attributes (after ``fit`` or ``load``):
        calibration_: :class:`~core.calibration.ScoreCalibration` on held-out normal scores.
        threshold_: score above which :meth:`predict` says 1 (the calibration's).
    """

    bundle_kind: ClassVar[str] = ""
    bundle_version: ClassVar[int] = FORMAT_VERSION
    oldest_bundle_version: ClassVar[int | None] = None   # None: only bundle_version is read
    contamination: float = 0.01  # a hyper-parameter of most subclasses; this is the default
    # the error raised before ``fit``; a scikit-learn estimator adds sklearn's NotFittedError
    not_fitted_error: ClassVar[type[Exception]] = NotFittedError

    # -- what a subclass writes ------------------------------------------------------------

    def _score(self, X) -> np.ndarray:
        """Scores ``(n,)`` of a fitted model; higher = more anomalous."""
        raise NotImplementedError(f"{type(self).__name__} must implement _score(X)")

    def _bundle_state(self) -> tuple[dict, dict]:
        """``(config, tensors)``: JSON-serialisable config (e.g. ``asdict`` of the model's
        config dataclass plus fitted state) and name -> ``torch.Tensor``."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved")

    @classmethod
    def _from_bundle(cls, config: dict, tensors: dict) -> "Estimator":
        """The model :meth:`_bundle_state` described (the base restores the calibration)."""
        raise NotImplementedError(f"{cls.__name__} cannot be loaded")

    # -- fitted state ----------------------------------------------------------------------

    def _check_fitted(self) -> None:
        """The one "not fitted" guard: every public method of a fitted model calls it."""
        if getattr(self, "calibration_", None) is None:
            raise self.not_fitted_error(
                f"{type(self).__name__} is not fitted: call fit() or load() first")

    def _calibrate(self, normal_scores) -> "Estimator":
        """Fit the calibration (threshold, conformal reference) on held-out normal scores;
        returns ``self`` so ``fit`` can end with ``return self._calibrate(scores)``."""
        return self._set_calibration(ScoreCalibration(self.contamination).fit(normal_scores))

    def _set_calibration(self, calibration: ScoreCalibration) -> "Estimator":
        self.calibration_ = calibration
        self.threshold_ = float(calibration.threshold_)
        return self

    # -- scoring ---------------------------------------------------------------------------

    def decision_function(self, X) -> np.ndarray:
        """Anomaly scores ``(n,)`` float64; higher = more anomalous."""
        self._check_fitted()
        return np.asarray(self._score(X), dtype=np.float64)

    def predict(self, X) -> np.ndarray:
        """0/1 per input: 1 where the score exceeds ``threshold_``."""
        return (self.decision_function(X) > self.threshold_).astype(int)

    def p_values(self, X) -> np.ndarray:
        """Conformal p-values of the scores against the held-out normal scores."""
        scores = self.decision_function(X)  # the fitted check, before calibration_ is read
        return self.calibration_.p_values(scores)

    def alerts(self, X, fdr: float | None = None, budget: int | None = None) -> np.ndarray:
        """Boolean alerts: Benjamini–Hochberg at false-discovery rate ``fdr``, the top
        ``budget`` scores, or (neither given) the threshold."""
        scores = self.decision_function(X)
        return self.calibration_.alerts(scores, fdr=fdr, budget=budget)

    # -- persistence -----------------------------------------------------------------------

    def to(self, device="cpu", precision: str = "fp32") -> "Estimator":
        """Where the model computes; a model without a network has nothing to move."""
        return self

    def save(self, path: str | os.PathLike):
        """Save as a bundle directory (``config.json`` + safetensors weights), atomically."""
        self._check_fitted()
        config, tensors = self._bundle_state()
        config = {**config, "calibration": self.calibration_.to_dict()}
        return save_bundle(path, self.bundle_kind, config, tensors, self.bundle_version)

    @classmethod
    def load(cls, path: str | os.PathLike, device="cpu", precision: str = "fp32"):
        """Load a bundle written by :meth:`save`, computing on ``device`` at ``precision``."""
        config, tensors = load_bundle(path, cls.bundle_kind, cls.bundle_version,
                                      cls.oldest_bundle_version)
        try:
            model = cls._from_bundle(config, tensors)
            model._set_calibration(ScoreCalibration.from_dict(config["calibration"]))
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise BundleError(f"{path}: bundle content does not describe a {cls.__name__} "
                              f"({type(err).__name__}: {err})") from None
        return model.to(device, precision)
