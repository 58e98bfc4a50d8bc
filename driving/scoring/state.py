"""What the frame score reads, fitted once on the held-out calibration frames.

:class:`ScoringState` is the one object an :class:`~driving.model.predictor.OcclusionPredictor`
holds for scoring (``predictor.scoring_``), saved in its bundle: the per-cell normaliser,
the context prior, the channel tail scores, the road threshold of the reported class, the
smoothing window and the scale of the replay's cell error. :func:`fit_scoring_state` fits
it on normal frames; the score's alert threshold and p-values are the predictor's
calibration (``core.estimator``), fitted on the frame scores it returns.

Example:
    >>> state, scores = fit_scoring_state(predictor, calibration_logs, smooth_s=0.5)  # doctest: +SKIP
    >>> ScoringState.from_dict(state.to_dict())                                   # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from core.runtime import progress_bar

from .context_prior import ContextPrior, fit_on_maps
from .decision import RoadThresholdFit
from .frame_score import CHANNELS, FrameScorer
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


def fit_scoring_state(predictor, logs: list, smooth_s: float,
                      progress: bool | None = None) -> tuple[ScoringState, np.ndarray]:
    """Fit the scoring state on normal ``logs`` (the held-out calibration tails).

    The passes run once per log with the argmax decision and an unfitted context prior
    (whose inputs they keep); the normaliser, the prior, the frame scorer and the road
    threshold are fitted on those maps, and the frames are scored with them.

    Args:
        predictor: a predictor whose network is trained (see :func:`raw_maps`).
        logs: normal drive logs, checked against the predictor's geometry.
        smooth_s: seconds the score is averaged over (frames at the logs' rate).
        progress: a bar over the logs (None: only on a terminal).

    Returns:
        The state and the frame scores ``(sum of T,)`` of ``logs``, for the calibration.
    """
    rate = predictor.meta_.rate_hz
    # a vehicle in the same cell about a second earlier counts as standing still
    static_offset = min(predictor.history, key=lambda k: abs(k / rate - 1.0), default=10)
    prior = ContextPrior(predictor.history, static_offset=static_offset)
    road = RoadThresholdFit()
    maps = []
    for log in progress_bar(logs, desc="calibrate", unit="log", show=progress):
        m = raw_maps(predictor, log, keep_probabilities=True, context_prior=prior)
        road.add(log, m["probabilities"])
        m["probabilities"] = None
        maps.append(m)
    normaliser = CellNormaliser(maps=MAPS).fit(maps, [log.semantic for log in logs], predictor.meta_)
    fit_on_maps(prior, maps)                       # counted on the same frames
    scorer = FrameScorer(CHANNELS).fit_logs(maps, logs, normaliser)
    smooth = max(1, int(round(smooth_s * rate)))
    state = ScoringState(normaliser, prior, scorer, road.best(), smooth, error_scale=1.0)
    results = [result_from_maps(state, log, m) for log, m in zip(logs, maps)]
    cells = np.concatenate([r.cell_error[r.cell_error > 0] for r in results])
    state = replace(state, error_scale=float(np.quantile(cells, 0.999)) if cells.size else 1.0)
    return state, np.concatenate([r.score for r in results])
