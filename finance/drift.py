"""Is a file like the training data? A reference saved with the model, compared at score time.

The reference (fitted on the training rows, saved in ``finance.json``) holds, per model
feature, the training deciles and the share of training rows between them; per
passed-through category column of low cardinality, the values seen; and the nominal share
of transactions above the model's threshold (its contamination).

At score time three things are compared, and whatever is off becomes ONE warning line:

* feature shift: the population stability index (PSI) of each feature over the training
  deciles; PSI above 0.25 is the usual "major shift" rule of thumb;
* unseen categories: more than 5 % of rows with a category value training never saw;
* alert share: the share of transactions above the model's threshold more than three
  times the nominal share (and beyond three binomial standard deviations of it).

The scores are still written: the warning says how far to trust them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .reasons import display_name

REFERENCE_VERSION = 1
DECILES = np.linspace(0.1, 0.9, 9)
PSI_WARN = 0.25
UNSEEN_WARN = 0.05
ALERT_FACTOR = 3.0
MAX_CATEGORIES = 200     # a column with more values (device ids) has no closed set to check
EPS = 1e-4


def _bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of ``values`` per bin: ``(-inf, e0], (e0, e1], ..., (e_last, inf)``."""
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=edges.size + 1)


def fit_reference(features: pd.DataFrame, names, categories: dict, nominal_alert_share: float) -> dict:
    """The reference of the training rows.

    Args:
        features: training feature rows.
        names: the model features.
        categories: passed-through category column -> its training values (a Series).
        nominal_alert_share: the share of transactions above the threshold by design.
    """
    reference = {"version": REFERENCE_VERSION, "nominal_alert_share": float(nominal_alert_share),
                 "n_rows": int(len(features)), "features": {}, "categories": {}}
    for name in names:
        values = features[name].astype(np.float64).fillna(0.0).to_numpy()
        edges = np.unique(np.quantile(values, DECILES))
        expected = _bins(values, edges) / max(values.size, 1)
        reference["features"][name] = {"edges": edges.tolist(), "expected": expected.tolist()}
    for column, values in categories.items():
        seen = pd.Series(values).astype(str).unique()
        if seen.size <= MAX_CATEGORIES:
            reference["categories"][column] = sorted(seen.tolist())
    return reference


def psi(expected, counts) -> float:
    """Population stability index of observed bin ``counts`` against ``expected`` shares."""
    expected = np.asarray(expected, dtype=np.float64) + EPS
    actual = np.asarray(counts, dtype=np.float64) / max(np.sum(counts), 1) + EPS
    return float(np.sum((actual - expected) * np.log(actual / expected)))


class DriftCheck:
    """Accumulates a scored file batch by batch (bounded memory), then says what is off.

    Example:
        >>> check = DriftCheck(model.reference_)                 # doctest: +SKIP
        >>> for batch in batches: check.add(batch)               # doctest: +SKIP
        >>> check.warning(share_above_threshold)                 # doctest: +SKIP
    """

    def __init__(self, reference: dict):
        self.reference = reference
        self.counts = {n: np.zeros(len(r["edges"]) + 1, np.int64) for n, r in reference["features"].items()}
        self.known = {c: set(v) for c, v in reference["categories"].items()}
        self.unseen = {c: 0 for c in self.known}
        self.examples = {c: [] for c in self.known}
        self.n = 0

    def columns(self) -> list[str]:
        return list(self.counts) + [f"ctx_cat_{c}" for c in self.known]

    def add(self, frame: pd.DataFrame) -> None:
        self.n += len(frame)
        for name, ref in self.reference["features"].items():
            values = frame[name].astype(np.float64).fillna(0.0).to_numpy()
            self.counts[name] += _bins(values, np.asarray(ref["edges"]))
        for column, known in self.known.items():
            values = frame[f"ctx_cat_{column}"].astype(str)
            new = values[~values.isin(known)]
            self.unseen[column] += len(new)
            self.examples[column] = list(dict.fromkeys(self.examples[column] + new.head(5).tolist()))[:3]

    def findings(self, share_above: float) -> list[str]:
        """Plain-words findings (empty when the file looks like the training data)."""
        if self.n == 0:
            return []
        out = []
        shifted = sorted(((psi(ref["expected"], self.counts[n]), n)
                          for n, ref in self.reference["features"].items()), reverse=True)
        shifted = [(value, n) for value, n in shifted if value > PSI_WARN]
        if shifted:
            top = ", ".join(f"{display_name(n)} (PSI {value:.2f})" for value, n in shifted[:3])
            out.append(f"{len(shifted)} feature(s) shifted from training: {top}")
        for column, unseen in self.unseen.items():
            if unseen / self.n > UNSEEN_WARN:
                shown = ", ".join(map(repr, self.examples[column]))
                out.append(f"{unseen / self.n:.0%} of rows have a {column} value never seen in training "
                           f"({shown})")
        nominal = self.reference["nominal_alert_share"]
        spread = 3 * np.sqrt(nominal * (1 - nominal) / self.n)
        if share_above > max(ALERT_FACTOR * nominal, nominal + spread):
            out.append(f"{share_above:.1%} of transactions score above the model's threshold "
                       f"(nominal {nominal:.1%})")
        return out

    def warning(self, share_above: float) -> str | None:
        """ONE line for the run, or ``None``."""
        found = self.findings(share_above)
        if not found:
            return None
        return "unlike the training data, scores may not be trustworthy: " + "; ".join(found)
