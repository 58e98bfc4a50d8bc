"""Surprise: where reality disagrees with what the model believed, cell by cell.

Per frame t, forward passes batched over frames:

* **occlusion pass** on the frame as observed: class probabilities for hidden cells, the
  reported class (``driving.scoring.decision``: road layout first, with a calibrated
  threshold) and ``P(road surface)`` of every cell;
* **revealed surprise**: cells hidden at t-1 and visible at t get ``-log p(observed class)``
  under the t-1 prediction warped into frame t;
* **object passes**: every observed object grown by ``OBJECT_MARGIN`` cells hidden at once
  -- in all frames (``object_recon``: does an object belong here at all, judged from the
  layout around it: debris on the lane, a car stopped in a driving lane) and in the
  current frame only (``object_forecast``: where should each object be now, given its
  history). Hiding whole objects keeps the visible rest of an object from giving its
  hidden part away. The all-frames pass also gives the ground under the objects, which
  the context prior (``driving.scoring.context_prior``) turns into ``object_context``.

Every per-cell surprise is divided by the surprise expected for that class at that
distance from the ego on normal frames (:class:`~driving.scoring.normaliser.CellNormaliser`,
fitted on the normal training logs). A frame's raw score comes from the
:class:`~driving.scoring.frame_score.FrameScorer`: per channel (revealed, object context,
object reconstruction; over object cells not yet passed) the mean of its largest cells,
turned into a tail score ``-log P(X >= x)`` under normal frames, and the largest of them
(``surprise_revealed`` is the revealed channel's, ``visible_error`` the largest of the
others). The frame ``score`` is the causal mean of the raw score over the last ``smooth``
frames (a real event persists; a one-frame glitch does not). Region SHAP switches blocks
of the channel maps on and off in every frame of that window (``core.explain``), so the
SHAP values add up to the frame's score.

Example:
    >>> result = score_log(predictor, log)        # a fitted OcclusionPredictor  # doctest: +SKIP
    >>> result.score.shape, result.cell_error.shape                              # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.explain import region_shap

from ..kernels import class_confidence, revealed_cells
from ..model.baselines import WorldCells
from ..model.masking import object_regions
from ..schema import LANE_MARKING, OBJECT_CLASSES, ROAD, UNOBSERVED, DriveLog
from ..warp import cells_in_world, source_frame
from .decision import RoadBelief, decide, layout_mass, road_mass
from .frame_score import OBSERVED_CHANNELS

EPS = 1e-6
OBJECT_MAPS = ("object_recon", "object_forecast")
MAPS = ("revealed",) + OBJECT_MAPS   # the surprise maps the normaliser scales
OBJECT_MARGIN = 4                # cells an object pass hides around each observed object


@dataclass
class SurpriseResult:
    """Scores ``(T,)`` and per-cell maps ``(T, H, W)`` of one log (maps normalised)."""

    surprise_revealed: np.ndarray
    visible_error: np.ndarray
    score: np.ndarray
    predicted: np.ndarray        # uint8: observed class where visible, decided class where hidden
    confidence: np.ndarray       # float32 probability of that class (1 where visible)
    revealed_error: np.ndarray   # float32
    recon_error: np.ndarray      # float32: max of the object passes' and the context surprise
    object_cells: np.ndarray     # bool: cells the frame score reads (objects not yet passed)
    raw_score: np.ndarray        # (T,) before temporal smoothing
    smooth: int
    score_maps: dict             # {channel: (T, H, W)} the raw score reads
    raw_fn: object               # score_maps-like dict (N, H, W) -> raw (N,)
    road_layout: np.ndarray      # float32 P(road surface), under objects too
    probabilities: np.ndarray | None = None   # float32 (T, C, H, W) when kept

    @property
    def cell_error(self) -> np.ndarray:
        return np.maximum(self.revealed_error, self.recon_error)

    def window(self, t: int) -> slice:
        """The frames of frame ``t``'s smoothing window."""
        return slice(max(0, t - self.smooth + 1), t + 1)

    def frame_maps(self, t: int) -> dict:
        """The maps frame ``t``'s score is computed from: ``{channel: (W, H, W)}``, the
        frames of its smoothing window (object cells only)."""
        return {name: m[self.window(t)] for name, m in self.score_maps.items()}

    def explain(self, t: int, ego_cell, resolution_m: float, blocks: int = 4,
                max_evals: int = 400, seed: int = 0):
        """Region SHAP of frame ``t``'s score (see :func:`explain_frame`)."""
        return explain_frame(self.frame_maps(t), self.raw_fn,
                             ego_cell, resolution_m, blocks, max_evals, seed)


def causal_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and the ``window - 1`` before it (fewer at the start)."""
    values = np.asarray(values, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(len(values))
    lo = np.maximum(idx + 1 - window, 0)
    return (csum[idx + 1] - csum[lo]) / (idx + 1 - lo)


def _cross_entropy(probs: np.ndarray, observed: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """``-log p(observed)`` on ``cells`` (``(N, H, W)`` bool), 0 elsewhere: ``(N, H, W)``
    float32 from ``probs`` ``(N, C, H, W)`` and ``observed`` ``(N, H, W)``. Only those
    cells are read (the same values as computing every cell and keeping these)."""
    n, r, c = np.nonzero(cells)
    out = np.zeros(cells.shape, np.float32)
    out[n, r, c] = _nats(probs[n, _class_index(observed[n, r, c], probs.shape[1]), r, c])
    return out


def _class_index(observed: np.ndarray, n_classes: int) -> np.ndarray:
    """Observed classes as indices into the probabilities (unobserved: the last class)."""
    return np.minimum(observed, n_classes - 1).astype(np.int64)


def _nats(p: np.ndarray) -> np.ndarray:
    """``-log p``, with ``p`` floored at ``EPS``."""
    return -np.log(np.maximum(p, EPS))


def _object_passes(predictor, grids, speed, observed, is_object, visible, batch_size,
                   context_prior, resolution_m, out, road_layout, context_inputs) -> None:
    """The two object passes over one batch of frames, written into ``out`` (the maps of
    the batch; ``is_object``: the batch's observed object cells), ``road_layout`` (the ground
    under the objects seen) and, with a context
    prior, ``out["object_context"]`` (fitted prior) or ``context_inputs`` (calibration:
    the prior is fitted on these)."""
    grown = object_regions(observed, OBJECT_MARGIN).numpy() & visible
    for name, tube in (("object_recon", True), ("object_forecast", False)):
        if tube:                                    # all frames and the memory
            masked = np.where(grown[:, None], np.uint8(UNOBSERVED), grids)
        else:                                       # the current frame only
            masked = grids.copy()
            masked[:, 0][grown] = UNOBSERVED
        rec = predictor.predict_proba(masked, speed, batch_size)
        out[name][:] = _cross_entropy(rec, observed, grown)
        if not tube:
            continue
        layout_mass(rec, is_object, road_layout)    # the ground under the objects
        if context_prior is not None:               # what ground the objects stand on
            ground, category = context_prior.inputs(rec, observed, grids, resolution_m)
            if context_prior.fitted:
                out["object_context"][:] = context_prior.surprise(ground, category)
            else:
                context_inputs.append((ground.astype(np.float16), category, observed))


def _revealed(maps_revealed, probs, prev_probs, start, log) -> None:
    """Revealed surprise of the frames ``start .. start + B - 1`` (``probs`` their
    occlusion-pass probabilities, ``prev_probs`` those of frame ``start - 1`` or None)."""
    poses, visible, observed = log.poses, log.visible, log.semantic
    revealed = np.empty(log.meta.grid_shape, bool)
    probability = np.empty(log.meta.grid_shape, np.float32)
    for i, t in enumerate(range(start, start + len(probs))):   # what the hidden cells turned into
        before = probs[i - 1] if i > 0 else prev_probs
        if before is None:
            continue
        here = cells_in_world(poses[t], log.meta)
        revealed_cells(before, visible[t - 1], visible[t], observed[t], *here,
                       source_frame(poses[t - 1], log.meta), revealed, probability)
        maps_revealed[t][revealed] = _nats(probability[revealed])   # t-1's prediction; 0 elsewhere


def raw_maps(predictor, log: DriveLog, batch_size: int = 32, keep_probabilities: bool = False,
             road_threshold: float | None = None, context_prior=None,
             observed_channels=OBSERVED_CHANNELS, world: WorldCells | None = None) -> dict:
    """Run the passes over a log: ``{"revealed", "object_recon", "object_forecast":
    (T, H, W) float32}`` (surprise in nats, un-normalised), plus ``"object_context"`` with a
    context prior, ``"predicted"``, ``"confidence"``, ``"road_layout"`` and
    ``"probabilities"`` (None unless ``keep_probabilities``). ``road_layout`` is
    ``P(road surface)`` of every cell: observed layout cells as seen, hidden ones from the
    occlusion pass, observed objects from the object pass (the ground under them;
    ``decision.layout_mass``).

    Args:
        predictor: a fitted network (``OcclusionPredictor``: ``check_log``, ``stack``,
            ``predict_proba``, ``memory_context``, ``apply_memory``; the log's world-raster
            indices, :class:`~driving.model.baselines.WorldCells`, are computed once here
            and passed to ``stack`` and ``memory_context``).
        log: the drive log.
        batch_size: frames per forward pass.
        keep_probabilities: also return the occlusion pass's ``(T, C, H, W)`` probabilities.
        road_threshold: the reported class's road threshold (None: the argmax).
        context_prior: a :class:`~driving.scoring.context_prior.ContextPrior`; fitted: the
            ``object_context`` map; not fitted yet (calibration): the map stays 0 and the
            prior's inputs are returned as ``"context_inputs"`` to fit it on.
        observed_channels: name -> function(log) of the maps read from the observed grids
            alone, one map each (default: the frame score's
            :data:`~driving.scoring.frame_score.OBSERVED_CHANNELS`).
        world: the log's :class:`~driving.model.baselines.WorldCells` (None: made here), for
            a caller that needs them after the passes too.
    """
    predictor.check_log(log)
    world = WorldCells(log) if world is None else world   # shared by every world-fixed map below
    grids, speed = predictor.stack(log, world)
    t_total, _, h, w = grids.shape
    visible = log.visible
    observed = log.semantic
    predicted = np.empty((t_total, h, w), np.uint8)
    confidence = np.empty((t_total, h, w), np.float32)
    road_layout = np.empty((t_total, h, w), np.float32)
    is_object = np.isin(observed, OBJECT_CLASSES)
    names = MAPS + (("object_context",) if context_prior is not None else ())
    maps = {name: np.zeros((t_total, h, w), np.float32) for name in names}
    context_inputs = []
    kept = [] if keep_probabilities else None
    prev_probs = None
    memory = predictor.memory_context(log, world)
    belief = RoadBelief(log, world=world) if road_threshold is not None else None
    for start in range(0, t_total, batch_size):
        sl = slice(start, min(start + batch_size, t_total))
        probs = predictor.predict_proba(grids[sl], speed[sl], batch_size)      # (B, C, H, W)
        predictor.apply_memory(probs, memory, sl, observed[sl])
        vis = visible[sl]
        decided = decide(probs, road_threshold,
                         belief.update(sl.start, road_mass(probs)) if belief is not None else None)
        predicted[sl] = np.where(vis, observed[sl], decided)
        class_confidence(probs, decided, vis, confidence[sl])
        seen_layout = vis & ~is_object[sl]
        road_layout[sl] = np.isin(observed[sl], (ROAD, LANE_MARKING))   # as seen there
        layout_mass(probs, ~seen_layout, road_layout[sl])                # believed elsewhere
        _object_passes(predictor, grids[sl], speed[sl], observed[sl], is_object[sl], vis,
                       batch_size, context_prior, log.meta.resolution_m,
                       {name: m[sl] for name, m in maps.items()}, road_layout[sl], context_inputs)
        _revealed(maps["revealed"], probs, prev_probs, sl.start, log)
        prev_probs = probs[-1]
        if kept is not None:
            kept.append(probs)
    maps.update({name: channel(log) for name, channel in observed_channels.items()})
    maps.update(predicted=predicted, confidence=confidence, road_layout=road_layout,
                probabilities=np.concatenate(kept) if kept else None)
    if context_inputs:
        maps["context_inputs"] = context_inputs
    return maps


def score_log(predictor, log: DriveLog, batch_size: int = 32,
              keep_probabilities: bool = False) -> SurpriseResult:
    """Run the passes over a log with a fitted predictor and compute every map and score."""
    predictor._check_fitted()
    state = predictor.scoring_
    maps = raw_maps(predictor, log, batch_size, keep_probabilities, state.road_threshold,
                    state.context_prior, state.frame_scorer.observed_channels)
    return result_from_maps(state, log, maps)


def result_from_maps(state, log: DriveLog, maps: dict) -> SurpriseResult:
    """Normalise :func:`raw_maps`' output and score it with a
    :class:`~driving.scoring.state.ScoringState` (``normaliser``, ``frame_scorer``,
    ``smooth``)."""
    normaliser, scorer = state.normaliser, state.frame_scorer
    raw = dict(maps)                             # un-normalised, for raw channels
    maps = dict(maps)
    observed = log.semantic
    present = [name for name in MAPS if name in maps and name in normaliser.maps]
    for name in present:
        maps[name] = normaliser.apply(name, maps[name], observed, log.meta)
    objects = scorer.scored_objects(observed, log.meta)
    revealed = maps["revealed"]
    visible_map = np.maximum.reduce([maps[name] for name in present if name != "revealed"])
    if "object_context" in maps:                 # the replay shows what the score reads
        visible_map = np.maximum(visible_map, maps["object_context"])
    score_maps = scorer.channel_maps(raw, maps, objects)
    tails = scorer.tail_scores(score_maps)
    is_revealed = np.array([name == "revealed" for name, _, _ in scorer.channels])
    surprise_revealed = tails[:, is_revealed].max(1) if is_revealed.any() else np.zeros(len(tails))
    visible_error = tails[:, ~is_revealed].max(1) if (~is_revealed).any() else np.zeros(len(tails))
    raw_score = tails.max(1)
    return SurpriseResult(surprise_revealed=surprise_revealed, visible_error=visible_error,
                          score=causal_mean(raw_score, state.smooth), predicted=maps["predicted"],
                          confidence=maps["confidence"], revealed_error=revealed,
                          recon_error=visible_map, object_cells=objects, raw_score=raw_score,
                          smooth=state.smooth, score_maps=score_maps, raw_fn=scorer.raw,
                          road_layout=maps["road_layout"], probabilities=maps["probabilities"])


def _span(low_m: float, high_m: float, below: str, above: str) -> str:
    """``"ahead 10-20 m"``: a stretch of one axis (metres from the ego, + = ``above``)."""
    low, high = round(low_m), round(high_m)
    if low >= 0:
        return f"{above} {low}-{high} m"
    if high <= 0:
        return f"{below} {-high}-{-low} m"
    return f"{-low} m {below} to {high} m {above}"


def region_masks(grid_shape, ego_cell, resolution_m: float,
                 blocks: int = 4) -> tuple[np.ndarray, list[str]]:
    """``blocks x blocks`` rectangular regions: ``(n, H, W)`` bool and names that say where
    each lies from the ego, e.g. ``"ahead 10-20 m, left 0-8 m"`` (the grid's convention:
    forward = decreasing row, increasing column = the ego's right)."""
    h, w = grid_shape
    rows = np.minimum(np.arange(h) * blocks // h, blocks - 1)
    cols = np.minimum(np.arange(w) * blocks // w, blocks - 1)
    ids = rows[:, None] * blocks + cols[None, :]
    masks = np.stack([ids == i for i in range(blocks * blocks)])
    ego_row, ego_col = (e + 0.5 for e in ego_cell)   # the ego cell's centre, in cells

    def name(block_row: int, block_col: int) -> str:
        r0, r1 = np.flatnonzero(rows == block_row)[[0, -1]]
        c0, c1 = np.flatnonzero(cols == block_col)[[0, -1]]
        ahead = _span((ego_row - r1 - 1) * resolution_m, (ego_row - r0) * resolution_m,
                      "behind", "ahead")
        right = _span((c0 - ego_col) * resolution_m, (c1 + 1 - ego_col) * resolution_m,
                      "left", "right")
        return f"{ahead}, {right}"

    return masks, [name(i // blocks, i % blocks) for i in range(blocks * blocks)]


def explain_frame(maps: dict, raw_fn, ego_cell, resolution_m: float, blocks: int = 4,
                  max_evals: int = 400, seed: int = 0):
    """Region SHAP of one frame's score (regions switched off = their errors set to 0).

    Args:
        maps: ``{channel: (H, W)}`` the frame's score maps, or ``(W, H, W)`` for the
            frames of its smoothing window (the score is then the mean over them); see
            :meth:`SurpriseResult.frame_maps`.
        raw_fn: ``{channel: (N, H, W)} -> (N,)`` the raw frame score
            (:attr:`SurpriseResult.raw_fn`).
        ego_cell, resolution_m: the log's geometry, which names the regions.

    Returns:
        ``core.explain.ShapResult`` with one row of ``blocks**2`` values.
    """
    maps = {name: np.asarray(m, dtype=np.float32) for name, m in maps.items()}
    maps = {name: (m[None] if m.ndim == 2 else m) for name, m in maps.items()}
    first = next(iter(maps.values()))
    masks, names = region_masks(first.shape[-2:], ego_cell, resolution_m, blocks)
    region_of = np.argmax(masks, 0)                               # (H, W) region index

    def score_of_keep(keep: np.ndarray) -> np.ndarray:
        keep = np.asarray(keep, dtype=np.float32)
        cell_keep = keep[:, region_of]                            # (m, H, W)
        return np.array([raw_fn({name: m * row[None] for name, m in maps.items()}).mean()
                         for row in cell_keep])

    return region_shap(score_of_keep, len(names), names, max_evals=max_evals, seed=seed)
