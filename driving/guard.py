"""The input guard: is a drive log like the logs the model was trained on?

``driving train`` fits an :class:`InputProfile` on the training logs and saves it in the
bundle: the frame rate (from the timestamps, not the metadata), the ego-speed range, the
share of hidden cells, the class shares of the observed cells (and how far one training
log's share of each class strays from the others'), the width of the carriageway the ego
drives on (:mod:`driving.carriageway`: more or fewer lanes than in training put vehicles
where the network has never seen a lane) and the grid geometry. Training logs of
different frame rates are refused (:func:`check_one_rate`): the model counts time in frames.
``driving score`` and ``driving batch-score`` compare each log with it
(:func:`input_warnings`): a log unlike the training logs gets ONE ``warning:`` line listing
every difference; geometry that cannot be mapped stays refused
(``OcclusionPredictor.check_log``).

Two kinds of classes are never predicted (:func:`predictable_classes`, applied by
:class:`ClassMaskedPredictor`): a class the training logs never showed (the network has
no evidence for it) and a class the log's world lacks (its file's ``classes`` list).

Every band is fitted from the training logs; the margins around them are the only
constants, and they are loose on purpose: the guard flags a different world (5 Hz
instead of 10, highway speeds for a town model), not a quiet drive.

Example:
    >>> profile = fit_input_profile(training_logs)               # doctest: +SKIP
    >>> input_warnings(profile, [read_log("highway.parquet")])    # doctest: +SKIP
    ['highway.parquet: unlike the training logs: frame rate 5 Hz (training 10 Hz); ...']
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from core.errors import DataValidationError
from core.io import tuples_as_lists

from .carriageway import carriageway_profile, log_carriageway
from .schema import CLASSES, UNOBSERVED, DriveLog

RATE_MARGIN = 1.25          # a rate within 1.25x of the training rates is the same rate
SPEED_MARGIN = (1.25, 1.0)  # the training speed range stretched by 25 % and 1 m/s
SPEED_OUTSIDE = 0.2         # warn when more of the log's frames than this are above it
HIDDEN_MARGIN = 0.05        # absolute margin around the training frames' hidden share
SHARE_MARGIN = (1.5, 0.05)  # class-share distance allowed: 1.5x the training logs' + 0.05
COMMON_CLASS = 0.01         # a training class this common should show up in a log
# a common class's share may move |log(share / training share)| up to 1.5x the training logs'
# spread + 0.1: one small class can move by half without moving the distance above
CLASS_SHIFT_MARGIN = (1.5, 0.1)
# the per-class check needs this many training logs: a spread over fewer is the largest of too
# few values (a new log of the same world exceeds the largest of n with chance 1 / (n + 1))
MIN_SPREAD_LOGS = 5
# the log's carriageway width may move |log(width / training width)| up to FACTOR x the training
# logs' spread + SLACK (decided in bench/experiments/driving_layout_guard.py)
CARRIAGEWAY_MARGIN = (1.5, 0.1)
# the fine-tune measured on unfamiliar roads (bench/experiments/driving_fine_tune.py), which
# the carriageway warning names
FINE_TUNE = {"epochs": 2, "lr": 1e-3}


@dataclass
class InputProfile:
    """What the training logs looked like (fitted state saved in the bundle).

    Attributes:
        rate_hz: lowest and highest frame rate of a training log.
        speed_m_s: 1st and 99th percentile of the training frames' ego speed.
        hidden_share: 1st and 99th percentile of the training frames' share of hidden cells.
        class_share: share of each class among the training logs' observed cells.
        class_distance: the largest total-variation distance of one training log's class
            shares from those of the other training logs.
        class_everywhere: per class, whether every training log showed it.
        grid_shape, resolution_m: the training logs' geometry.
        class_spread: per class, the largest ``|log|`` ratio of one training log's share to
            the other training logs' (0 for a class some training log lacks); empty when
            fewer than ``MIN_SPREAD_LOGS`` logs were fitted, and the per-class check is off.
        class_share_range: per class, the lowest and highest share of a training log.
        carriageway_m: the width of the carriageway the ego drove on, the median over the
            training logs' measured frames (:mod:`driving.carriageway`); None when fewer than
            ``MIN_SPREAD_LOGS`` training logs have a width (or a bundle of format 8, fitted
            before the check): the carriageway check is off.
        carriageway_spread: the largest ``|log|`` ratio of one training log's width to the
            other training logs' (None with ``carriageway_m``).
    """

    rate_hz: tuple[float, float]
    speed_m_s: tuple[float, float]
    hidden_share: tuple[float, float]
    class_share: tuple[float, ...]
    class_distance: float
    class_everywhere: tuple[bool, ...]
    grid_shape: tuple[int, int]
    resolution_m: float
    class_spread: tuple[float, ...]
    class_share_range: tuple[tuple[float, float], ...]
    carriageway_m: float | None = None
    carriageway_spread: float | None = None

    def to_dict(self) -> dict:
        return tuples_as_lists(asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "InputProfile":
        return cls(**{k: _tuples(v) for k, v in d.items()})

    @property
    def seen_classes(self) -> np.ndarray:
        """``(C,)`` bool: classes the training logs showed at least once."""
        return np.asarray(self.class_share) > 0


def _tuples(value):
    """``value`` with its lists, nested ones too, as tuples (as the profile holds them)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def frame_rate(log: DriveLog) -> float:
    """The rate the log's timestamps show (its metadata's for a one-frame log)."""
    steps = np.diff(log.timestamp)
    steps = steps[steps > 0]
    return float(1.0 / np.median(steps)) if steps.size else float(log.meta.rate_hz)


def class_counts(log: DriveLog) -> np.ndarray:
    """``(C,)`` observed cells of each class over the whole log."""
    observed = log.semantic[log.semantic != UNOBSERVED]
    return np.bincount(observed, minlength=len(CLASSES))[: len(CLASSES)].astype(np.float64)


def hidden_shares(log: DriveLog) -> np.ndarray:
    """``(T,)`` share of each frame's cells that are not visible."""
    return 1.0 - log.visible.reshape(len(log), -1).mean(1)


def class_shares(counts: np.ndarray) -> np.ndarray:
    """``(C,)`` shares of class counts (all zero for no counts)."""
    return counts / max(counts.sum(), 1.0)


def share_distance(shares: np.ndarray, reference: np.ndarray) -> float:
    """Total-variation distance of two class-share vectors (0 = equal, 1 = disjoint)."""
    return float(0.5 * np.abs(shares - reference).sum())


def class_spread(shares: np.ndarray, others: np.ndarray, everywhere: np.ndarray) -> np.ndarray:
    """``(C,)`` per class, the largest ``|log(shares / others)|`` over the training logs
    (rows of ``(logs, C)`` shares: each log's own, and the pool of the other logs'); 0 for a
    class not ``everywhere`` (some log lacks it)."""
    ratios = np.where(everywhere, shares, 1.0) / np.where(everywhere, others, 1.0)
    return np.abs(np.log(ratios)).max(0)


def check_one_rate(logs: list[DriveLog], rates: list[float]) -> None:
    """Training logs share one frame rate (``rates``, theirs, within ``RATE_MARGIN``): the
    model's history, its smoothing window and its scoring state count frames (one rate,
    the first log's, in its metadata), so 20 frames back are 2 s at 10 Hz but 4 s at 5 Hz.

    Raises:
        DataValidationError: naming the slowest and the fastest log and their rates.
    """
    slow, fast = int(np.argmin(rates)), int(np.argmax(rates))
    if rates[fast] > rates[slow] * RATE_MARGIN:
        raise DataValidationError(
            f"training logs at different frame rates: {logs[slow].path or logs[slow].log_id} "
            f"at {rates[slow]:.3g} Hz, {logs[fast].path or logs[fast].log_id} at "
            f"{rates[fast]:.3g} Hz; the model's history is counted in frames, so mixed rates "
            "mix time spans: train one model per frame rate (one folder of logs each)")


def fit_input_profile(logs: list[DriveLog]) -> InputProfile:
    """The :class:`InputProfile` of training logs (all their frames), which must share one
    frame rate (:func:`check_one_rate`)."""
    rates = [frame_rate(log) for log in logs]
    check_one_rate(logs, rates)
    speed = np.concatenate([log.ego_speed for log in logs])
    hidden = np.concatenate([hidden_shares(log) for log in logs])
    counts = [class_counts(log) for log in logs]
    blind = [log.path or log.log_id for log, c in zip(logs, counts) if not c.any()]
    if blind:            # it would make every class look absent from a training log
        raise DataValidationError(f"{', '.join(map(str, blind))}: no observed cell in the whole "
                                  "log; a training log must show its world")
    total = np.sum(counts, axis=0)
    pooled = class_shares(total)
    # each log against the others (itself left out): the spread a new log of the world
    # shows; against a pool that includes it, the spread shrinks with the number of logs
    others = [class_shares(total - c) if len(counts) > 1 else pooled for c in counts]
    shares = np.array([class_shares(c) for c in counts])                  # (logs, C)
    everywhere = np.all(shares > 0, axis=0)
    carriageway_m, carriageway_spread = carriageway_profile(logs, MIN_SPREAD_LOGS)
    return InputProfile(
        rate_hz=(min(rates), max(rates)),
        speed_m_s=tuple(float(v) for v in np.percentile(speed, [1, 99])),
        hidden_share=tuple(float(v) for v in np.percentile(hidden, [1, 99])),
        class_share=tuple(float(v) for v in pooled),
        class_distance=max(share_distance(own, rest) for own, rest in zip(shares, others)),
        class_everywhere=tuple(bool(v) for v in everywhere),
        grid_shape=tuple(logs[0].meta.grid_shape), resolution_m=float(logs[0].meta.resolution_m),
        class_spread=(tuple(float(v) for v in class_spread(shares, np.array(others), everywhere))
                      if len(logs) >= MIN_SPREAD_LOGS else ()),
        class_share_range=tuple((float(lo), float(hi))
                                for lo, hi in zip(shares.min(0), shares.max(0))),
        carriageway_m=carriageway_m, carriageway_spread=carriageway_spread)


def _rate_reason(profile: InputProfile, log: DriveLog) -> str | None:
    rate, (lo, hi) = frame_rate(log), profile.rate_hz
    if lo / RATE_MARGIN <= rate <= hi * RATE_MARGIN:
        return None
    training = f"{lo:.3g} Hz" if lo == hi else f"{lo:.3g}-{hi:.3g} Hz"
    return f"frame rate {rate:.3g} Hz (training {training})"


def _speed_reason(profile: InputProfile, log: DriveLog) -> str | None:
    """A faster world shows on many frames, a slower one in the median: an ego braking
    hard for an event (the anomaly itself) spends a few seconds below the training speeds
    and is not another world."""
    (lo, hi), (factor, slack) = profile.speed_m_s, SPEED_MARGIN
    fastest, slowest = hi * factor + slack, lo / factor - slack
    above = float(np.mean(log.ego_speed > fastest))
    median = float(np.median(log.ego_speed))
    found = ([f"{above:.0%} of frames above {fastest:.1f} m/s, the highest accepted"]
             if above > SPEED_OUTSIDE else [])
    if median < slowest:
        found.append(f"median {median:.1f} m/s, below the lowest accepted {slowest:.1f} m/s")
    if not found:
        return None
    p5, p95 = np.percentile(log.ego_speed, [5, 95])
    return (f"ego speed {p5:.1f}-{p95:.1f} m/s on most frames (training {lo:.1f}-{hi:.1f} m/s; "
            f"{', '.join(found)})")


def _hidden_reason(profile: InputProfile, log: DriveLog) -> str | None:
    share, (lo, hi) = float(np.median(hidden_shares(log))), profile.hidden_share
    if lo - HIDDEN_MARGIN <= share <= hi + HIDDEN_MARGIN:
        return None
    return f"hidden cells {share:.0%} of a frame (training {lo:.0%}-{hi:.0%})"


def _carriageway_reason(profile: InputProfile, log: DriveLog) -> str | None:
    """A road of another width than the training logs' (more or fewer lanes): the network
    has never seen a lane where this log has one. The line names the remedy measured in
    ``bench/experiments/driving_fine_tune.py`` (2 epochs on 6 normal logs of the new road)."""
    if profile.carriageway_m is None:
        return None
    width, _ = log_carriageway(log)
    factor, slack = CARRIAGEWAY_MARGIN
    if width is None or abs(np.log(width / profile.carriageway_m)) <= \
            factor * profile.carriageway_spread + slack:
        return None
    return (f"carriageway {width:.1f} m wide at the ego (training {profile.carriageway_m:.1f} m: "
            "another number or width of lanes; to fit such a road, fine-tune on a few of its "
            f"normal logs: unmask driving train --init MODEL --epochs {FINE_TUNE['epochs']} "
            f"--lr {FINE_TUNE['lr']:g})")


def _class_reasons(profile: InputProfile, log: DriveLog) -> list[str]:
    """How the log's classes differ: classes new to it or missing from it (alone: the
    shares moved with them), else each class whose share moved past its margin, then the
    distance of all the shares (naming other classes than those)."""
    counts = class_counts(log)
    reference = np.asarray(profile.class_share)
    reasons = []
    unseen = [CLASSES[c] for c in np.flatnonzero((counts > 0) & ~profile.seen_classes)]
    if unseen:
        reasons.append(f"classes never seen in training: {', '.join(unseen)}")
    expected = (reference >= COMMON_CLASS) & np.asarray(profile.class_everywhere)
    missing = [CLASSES[c] for c in np.flatnonzero(expected & (counts == 0))]
    if missing:
        reasons.append(f"training classes never seen in the log: {', '.join(missing)}")
    if reasons:             # the other classes' shares moved with these: said once
        return reasons
    shares = class_shares(counts)
    shifted = (shifted_classes(shares, reference, np.asarray(profile.class_spread), expected)
               if profile.class_spread else np.array([], int))   # no spread: too few logs
    ranges = profile.class_share_range
    reasons = [f"{CLASSES[c]} {reference[c]:.1%} -> {shares[c]:.1%} of observed cells "
               f"(training logs {ranges[c][0]:.1%}-{ranges[c][1]:.1%})" for c in shifted]
    distance = _distance_reason(profile, shares, np.isin(CLASSES, log.meta.world), shifted)
    return reasons + ([distance] if distance else [])


def shifted_classes(shares: np.ndarray, reference: np.ndarray, spread: np.ndarray,
                    checked: np.ndarray, margin: tuple[float, float] = CLASS_SHIFT_MARGIN) -> np.ndarray:
    """Indices of the ``checked`` classes whose share moved from the training share
    ``reference`` by more than ``margin`` allows: ``|log(share / reference)| > factor *
    spread + slack`` (a share of 0 always does). All arrays are per class, ``(C,)``."""
    factor, slack = margin
    ratio = np.divide(shares, reference, out=np.ones_like(reference), where=checked)
    with np.errstate(divide="ignore"):      # a share of 0: log 0 = -inf, past any margin
        moved = np.abs(np.log(ratio))
    return np.flatnonzero(moved > factor * spread + slack)


def _distance_reason(profile: InputProfile, shares: np.ndarray, in_world: np.ndarray,
                     named: np.ndarray) -> str | None:
    """The class shares' distance from the training shares when it is past
    ``SHARE_MARGIN``, with the two classes that moved most among those the per-class reasons
    did not already name (``named``: a class is said once in a warning line) and whose
    share, shown in whole percent, changed (no "sidewalk 15% -> 15%")."""
    reference = np.asarray(profile.class_share)
    factor, slack = SHARE_MARGIN
    limit = profile.class_distance * factor + slack
    # a class the log's world lacks by declaration is not a difference to report twice
    distance = share_distance(shares, class_shares(np.where(in_world, reference, 0.0)))
    if distance <= limit:
        return None
    moved = [f"{CLASSES[c]} {reference[c]:.0%} -> {shares[c]:.0%}"
             for c in np.argsort(-np.abs(shares - reference))
             if c not in named and f"{reference[c]:.0%}" != f"{shares[c]:.0%}"]
    shifts = ", ".join(moved[:2])
    measured = f"distance {distance:.2f}, training logs up to {profile.class_distance:.2f}"
    return f"class shares differ ({shifts}; {measured})" if shifts else f"class shares differ ({measured})"


def log_differences(profile: InputProfile, log: DriveLog) -> list[str]:
    """How ``log`` differs from the training logs, in words (empty: it is like them)."""
    reasons = [_rate_reason(profile, log), _speed_reason(profile, log),
               _hidden_reason(profile, log), _carriageway_reason(profile, log)]
    return [r for r in reasons if r] + _class_reasons(profile, log)


def input_warnings(profile: InputProfile, logs: list[DriveLog]) -> list[str]:
    """One line per log unlike the training logs: ``"<file>: unlike the training logs:
    <difference>; <difference>"``."""
    lines = []
    for log in logs:
        reasons = log_differences(profile, log)
        if reasons:
            lines.append(f"{log.path or log.log_id}: unlike the training logs: "
                         f"{'; '.join(reasons)}")
    return lines


def predictable_classes(profile: InputProfile, log: DriveLog) -> np.ndarray:
    """``(C,)`` bool: classes scoring may predict in ``log``: seen in training and in the
    log's world."""
    return profile.seen_classes & np.isin(CLASSES, log.meta.world)


def mask_classes(probabilities: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` probabilities with the classes not ``allowed`` set to 0 and the
    rest renormalised (in place; returned). A cell whose mass was all on masked classes
    gets the allowed classes evenly."""
    probabilities[:, ~allowed] = 0.0
    total = probabilities.sum(1, keepdims=True)                # (N, 1, H, W)
    even = np.where(allowed, 1.0 / allowed.sum(), 0.0).astype(probabilities.dtype)
    np.divide(probabilities, total, out=probabilities, where=total > 0)
    probabilities[:] = np.where(total > 0, probabilities, even[None, :, None, None])
    return probabilities


class ClassMaskedPredictor:
    """A fitted predictor whose class probabilities never hold the classes it may not
    predict in one log (:func:`predictable_classes`); everything else is the predictor's.

    Scoring runs every pass (occlusion, object passes) through ``predict_proba``, so the
    masked classes are neither reported nor expected anywhere in the log.
    """

    def __init__(self, predictor, allowed: np.ndarray):
        self.predictor = predictor
        self.allowed = np.asarray(allowed, bool)

    def __getattr__(self, name):
        return getattr(self.predictor, name)

    def predict_proba(self, grids: np.ndarray, speed: np.ndarray,
                      batch_size: int = 32) -> np.ndarray:
        probabilities = self.predictor.predict_proba(grids, speed, batch_size)
        if self.allowed.all():
            return probabilities
        return mask_classes(probabilities, self.allowed)


def guarded(predictor, log: DriveLog):
    """``predictor`` for scoring ``log``: masked to its predictable classes."""
    return ClassMaskedPredictor(predictor, predictable_classes(predictor.input_profile_, log))
