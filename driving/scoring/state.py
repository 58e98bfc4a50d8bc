"""What the frame score reads, fitted once on whole normal training logs.

:class:`ScoringState` is the one object an :class:`~driving.model.predictor.OcclusionPredictor`
holds for scoring (``predictor.scoring_``), saved in its bundle: the per-cell normaliser,
the context prior, the channel tail scores, the road threshold of the reported class, the
smoothing window and the scale of the replay's cell error. :func:`fit_scoring_state` fits
it on whole normal logs; the score's alert threshold and p-values are the predictor's
calibration (``core.estimator``), fitted on the per-log frame scores it returns.

Example:
    >>> state, per_log_scores = fit_scoring_state(predictor, training_logs, smooth_s=0.5)  # doctest: +SKIP
    >>> ScoringState.from_dict(state.to_dict())                                   # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from core.runtime import progress_bar

from ..model.baselines import WorldCells
from ..schema import window_frames
from .context_prior import ContextPrior, fit_on_maps, with_context
from .decision import RoadThresholdFit
from .frame_score import FrameScorer
from .normaliser import CellNormaliser
from .surprise import MAPS, raw_maps, result_from_maps


@dataclass
class ScoringState:
    """Everything scoring reads besides the network.

    Attributes:
        normaliser: expected surprise per map, class and distance band.
        context_prior: ``P(object kind | ground)`` on normal frames.
        frame_scorer: the channels and their tail scores; a frame's raw score.
        road_threshold: belief at which a hidden cell is reported as road layout (None:
            no calibration target was found; the argmax is reported).
        smooth: frames the score is averaged over (causal).
        error_scale: nats of cell surprise that the replay's uint8 error shows as 255.
    """

    normaliser: CellNormaliser
    context_prior: ContextPrior
    frame_scorer: FrameScorer
    road_threshold: float | None
    smooth: int
    error_scale: float

    def to_dict(self) -> dict:
        return {"normaliser": self.normaliser.to_dict(), "context_prior": self.context_prior.to_dict(),
                "frame_scorer": self.frame_scorer.to_dict(), "road_threshold": self.road_threshold,
                "smooth": self.smooth, "error_scale": self.error_scale}

    @classmethod
    def from_dict(cls, d: dict) -> "ScoringState":
        return cls(normaliser=CellNormaliser.from_dict(d["normaliser"]),
                   context_prior=ContextPrior.from_dict(d["context_prior"]),
                   frame_scorer=FrameScorer.from_dict(d["frame_scorer"]),
                   road_threshold=d["road_threshold"], smooth=int(d["smooth"]),
                   error_scale=float(d["error_scale"]))


def fit_scoring_state(predictor, logs: list, smooth_s: float, progress: bool | None = None,
                      frame_scorer: FrameScorer | None = None) -> tuple[ScoringState, list[np.ndarray]]:
    """Fit the scoring state on whole normal ``logs`` (the training logs).

    Every frame of the logs, not only the held-out calibration tails: normal drives hold
    long, rare stretches that score high (10-30 s of unusual traffic), and six 50-frame
    tails either hold one or not, so a state and a threshold read off them alone moved
    between 0 % and 30 % alerts on new normal highway drives. A network scores the frames
    it trained on no lower than new drives (``bench/experiments/driving_alert_calibration.py``:
    a second network's own training frames alerted 10.3 %, new drives' 7.6-12.2 %), so the
    training frames are a fair sample of normal driving for the scoring state.

    The passes run once per log with the argmax decision and an unfitted context prior
    (whose inputs they keep); the normaliser, the prior, the frame scorer and the road
    threshold are fitted on those maps. The frame scores returned for the alert threshold
    are cross-fitted (:func:`cross_fitted_scores`): each log is scored by a state fitted
    without it, as a new drive will be.

    Args:
        predictor: a predictor whose network is trained (see :func:`raw_maps`).
        logs: normal drive logs, checked against the predictor's geometry.
        smooth_s: seconds the score is averaged over (frames at the logs' rate).
        progress: a bar over the logs (None: only on a terminal).
        frame_scorer: the unfitted :class:`FrameScorer` whose parameters (channels, floors,
            observed channels, scored cells, tail) the state's scorer is fitted with; the
            passes compute its observed channels' maps (None: ``FrameScorer()``).

    Returns:
        The state and, per log, its frame scores ``(T,)`` for the calibration.
    """
    frame_scorer = frame_scorer or FrameScorer()
    road = RoadThresholdFit()
    maps = []
    for log in progress_bar(logs, desc="calibrate", unit="log", show=progress):
        world = WorldCells(log)               # the passes' and the road fit's world indices
        m = raw_maps(predictor, log, keep_probabilities=True, context_prior=new_prior(predictor),
                     observed_channels=frame_scorer.observed_channels, world=world)
        road.add(log, m["probabilities"], world)
        m["probabilities"] = None
        maps.append(m)
    smooth = window_frames(smooth_s, predictor.meta_.rate_hz)
    state, context_maps = state_from_maps(predictor, logs, maps, smooth, frame_scorer, road.best())
    results = [result_from_maps(state, log, m) for log, m in zip(logs, context_maps)]
    cells = np.concatenate([r.cell_error[r.cell_error > 0] for r in results])
    state = replace(state, error_scale=float(np.quantile(cells, 0.999)) if cells.size else 1.0)
    if len(logs) < 2:                    # no other log to fit on: the one log in-sample
        return state, [results[0].score]
    return state, cross_fitted_scores(predictor, logs, maps, smooth, frame_scorer)


def new_prior(predictor) -> ContextPrior:
    """An unfitted context prior for ``predictor``'s history and frame rate."""
    rate = predictor.meta_.rate_hz
    # a vehicle in the same cell about a second earlier counts as standing still
    static_offset = min(predictor.history, key=lambda k: abs(k / rate - 1.0), default=10)
    return ContextPrior(predictor.history, static_offset=static_offset)


def state_from_maps(predictor, logs: list, maps: list[dict], smooth: int, frame_scorer: FrameScorer,
                    road_threshold: float | None = None) -> tuple[ScoringState, list[dict]]:
    """The normaliser, context prior and frame scorer fitted on normal ``logs`` and their
    :func:`raw_maps` (computed with an unfitted prior, whose inputs they keep, and
    ``frame_scorer``'s observed channels). The frame scorer is a new one with
    ``frame_scorer``'s parameters (:meth:`FrameScorer.unfitted`); ``frame_scorer`` itself,
    fitted or not, is left as it is.

    Returns:
        The state and ``maps`` with their ``object_context`` under the fitted prior
        (:func:`~driving.scoring.context_prior.with_context`), ready to score.
    """
    prior = fit_on_maps(new_prior(predictor), maps)
    maps = [with_context(prior, m) for m in maps]
    normaliser = CellNormaliser(maps=MAPS).fit(maps, [log.semantic for log in logs], predictor.meta_)
    scorer = frame_scorer.unfitted().fit_logs(maps, logs, normaliser)
    return ScoringState(normaliser, prior, scorer, road_threshold, smooth, error_scale=1.0), maps


def cross_fitted_scores(predictor, logs: list, maps: list[dict], smooth: int,
                        frame_scorer: FrameScorer) -> list[np.ndarray]:
    """Frame scores ``(T,)`` of each of the normal ``logs`` (at least two), each log scored
    by a state fitted on the other logs (leave one log out; ``frame_scorer``: as
    :func:`state_from_maps`').

    The channel tails, the normaliser and the context prior are fitted on the frames they
    then score: read off those frames, the alert threshold is exceeded by new drives
    several times as often as nominal. A log left out of the fit is what a new drive is to
    the full state, so the threshold read off these scores holds its rate on new drives.
    """
    if len(logs) < 2:
        raise ValueError("cross-fitting needs at least two logs")
    scores = []
    for i, (log, m) in enumerate(zip(logs, maps)):
        rest = [j for j in range(len(logs)) if j != i]
        state, _ = state_from_maps(predictor, [logs[j] for j in rest], [maps[j] for j in rest], smooth,
                                   frame_scorer)
        scores.append(result_from_maps(state, log, with_context(state.context_prior, m)).score)
    return scores
