"""Surprise scores: where reality disagrees with what the model believed.

Per frame t, forward passes batched over frames:

* **occlusion pass** on the frame as observed: class probabilities for hidden cells;
* **revealed surprise**: cells hidden at t-1 and visible at t get ``-log p(observed class)``
  under the t-1 prediction warped into frame t;
* **reconstruction passes** (context): a fixed patch schedule
  (``core.masking.PatchMasker.schedule``) hides every visible cell exactly once, in the
  current frame, the earlier frames and the memory alike (a tube, so an odd static object
  cannot be copied from the history); each gets ``-log p(observed class)`` -- does this
  object fit its surroundings (debris or a pedestrian on the lane, a car askew)?
* **forecast passes** (motion): the same patches hidden in the current frame only; the
  earlier frames stay, so the model predicts where the objects it saw moving should be
  now -- a vehicle that moved against its lane's direction is not where traffic goes.
* **object passes** (models trained with ``object_masks``): every observed object grown
  by ``OBJECT_MARGIN`` cells hidden at once -- in all frames (``object_recon``: does an
  object belong here at all, judged from the layout around it: debris on the lane, a car
  stopped in a driving lane) and in the current frame only (``object_forecast``: where
  should each object be now, given its history). A patch of the schedule cuts objects in
  pieces, and the visible rest of an object gives its hidden part away; these do not.
  Such models are scored with the object passes instead of the patch passes (3 forward
  passes per frame instead of 5; the benchmark found them better, see bench/README.md).

Every per-cell surprise is divided by the surprise expected for that class at that
distance from the ego on normal frames (``CellNormaliser``, fitted on the held-out
calibration frames): a pedestrian stepping into view at 30 m is routine, a vehicle on
the lane where the model saw none is not. Models calibrated since round 4 score a frame
with a :class:`~driving.scoring.frame_score.FrameScorer` (also fitted on the calibration frames):
per channel (revealed, object reconstruction, object forecast; over object cells) the
mean of its largest cells, turned into a tail score ``-log P(X >= x)`` under normal
frames; the raw score is the largest of them (``surprise_revealed`` is the revealed
channel's, ``visible_error`` the largest of the others). Older bundles keep round 3's
form: ``surprise_revealed + visible_error``, each the mean of the ``TOP_K`` largest 3x3
averages of the normalised maps over object cells. The frame ``score`` is the causal mean
of the raw score over the last ``SMOOTH`` frames (a real event persists; a one-frame
glitch does not). Region SHAP switches blocks of the channel maps on and off in every
frame of the window (``core.explain``), so the SHAP values add up to the frame's score.
The reported class of a hidden cell comes from ``driving.scoring.decision`` (road layout first,
with a calibrated threshold).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..schema import LANE_MARKING, OBJECT_CLASSES, ROAD, UNOBSERVED, DriveLog
from ..warp import PASSED_M, cell_offsets, not_passed, warp_indices  # noqa: F401 (PASSED_M)

TOP_K = 8
POOL = 3
EPS = 1e-6
SMOOTH = 5
MAPS = ("revealed", "recon", "forecast")
OBJECT_MAPS = ("object_recon", "object_forecast")
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
    recon_error: np.ndarray      # float32: max of reconstruction, forecast and context surprise
    object_cells: np.ndarray     # bool: cells whose observed class is an object
    raw_score: np.ndarray | None = None       # (T,) before temporal smoothing
    smooth: int = 1
    probabilities: np.ndarray | None = None   # float32 (T, C, H, W) when kept
    score_maps: dict | None = None            # {channel: (T, H, W)} the raw score reads
    raw_fn: object = None                     # score_maps-like dict (N, H, W) -> raw (N,)
    road_layout: np.ndarray | None = None     # float32 P(road surface), under objects too

    @property
    def cell_error(self) -> np.ndarray:
        return np.maximum(self.revealed_error, self.recon_error)

    def frame_maps(self, t: int) -> dict:
        """The maps frame ``t``'s score is computed from: ``{channel: (W, H, W)}``, the
        frames of its smoothing window (object cells only)."""
        window = slice(max(0, t - self.smooth + 1), t + 1)
        if self.score_maps is not None:
            return {name: m[window] for name, m in self.score_maps.items()}
        objects = self.object_cells[window]
        return {"revealed": self.revealed_error[window] * objects,
                "recon": self.recon_error[window] * objects}

    def explain(self, t: int, blocks: int = 4, max_evals: int = 400, seed: int = 0):
        """Region SHAP of frame ``t``'s score (see :func:`explain_frame`)."""
        return explain_frame(self.frame_maps(t), self.raw_fn, blocks, max_evals, seed)


def round3_raw(maps: dict) -> np.ndarray:
    """Round 3's raw score: pooled top-k of the revealed map plus that of the others."""
    return pooled_top_k(maps["revealed"]) + pooled_top_k(maps["recon"])


def pooled_top_k(error_maps: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Mean of the ``k`` largest 3x3-averaged values of each map ``(N, H, W)`` -> ``(N,)``."""
    from scipy.ndimage import uniform_filter

    pooled = uniform_filter(error_maps.astype(np.float32), size=(1, POOL, POOL), mode="constant")
    flat = pooled.reshape(len(pooled), -1)
    k = min(k, flat.shape[1])
    return np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:].mean(1)


def causal_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and the ``window - 1`` before it (fewer at the start)."""
    values = np.asarray(values, dtype=np.float64)
    csum = np.concatenate([[0.0], np.cumsum(values)])
    idx = np.arange(len(values))
    lo = np.maximum(idx + 1 - window, 0)
    return (csum[idx + 1] - csum[lo]) / (idx + 1 - lo)


def _cross_entropy(probs: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """``-log p(observed)`` per cell; ``probs`` ``(N, C, H, W)``, ``observed`` ``(N, H, W)``."""
    cls = np.minimum(observed, probs.shape[1] - 1).astype(np.int64)
    p = np.take_along_axis(probs, cls[:, None], axis=1)[:, 0]
    return -np.log(np.maximum(p, EPS))


class CellNormaliser:
    """Expected per-cell surprise by map, class and distance band, from normal frames.

    ``scale[m, c, d]`` is the ``quantile`` of map m's values over observed cells of class c
    in distance band d (``band_m`` wide) on normal frames (revealed map: only revealed
    cells); sparse entries fall back to the class's value over all bands, then to the
    largest class value (a class too rare to know counts no more than the noisiest one).
    """

    def __init__(self, band_m: float = 5.0, n_bands: int = 8, quantile: float = 0.99,
                 min_cells: int = 200, maps=MAPS):
        self.maps = tuple(maps)
        self.band_m = band_m
        self.n_bands = n_bands
        self.quantile = quantile
        self.min_cells = min_cells

    def bands(self, meta) -> np.ndarray:
        forward, right = cell_offsets(meta)
        return np.minimum((np.hypot(forward, right) / self.band_m).astype(np.int64), self.n_bands - 1)

    def fit(self, raw_maps: list[dict], observed: list[np.ndarray], meta) -> "CellNormaliser":
        """``raw_maps``: per log, ``{map: (T, H, W)}``; ``observed``: per log ``(T, H, W)``."""
        n_classes = len(meta.classes)
        bands = self.bands(meta)
        self.maps = tuple(name for name in self.maps if name in raw_maps[0])
        scale = np.ones((len(self.maps), n_classes, self.n_bands), np.float32)
        for m, name in enumerate(self.maps):
            values = {c: [[] for _ in range(self.n_bands)] for c in range(n_classes)}
            for maps, obs in zip(raw_maps, observed):
                cell_map = maps[name]
                for c in range(n_classes):
                    sel = obs == c
                    if name == "revealed":
                        sel &= cell_map > 0
                    t, r, col = np.nonzero(sel)
                    for d in range(self.n_bands):
                        here = bands[r, col] == d
                        values[c][d].append(cell_map[t[here], r[here], col[here]])
            pooled = [[np.concatenate(v) for v in values[c]] for c in range(n_classes)]
            whole = [np.concatenate(p) for p in pooled]
            known = [float(np.quantile(v, self.quantile)) for v in whole if len(v) >= self.min_cells]
            rare = max(known) if known else 1.0     # sparse classes: the largest known scale
            for c in range(n_classes):
                fallback = (float(np.quantile(whole[c], self.quantile))
                            if len(whole[c]) >= self.min_cells else rare)
                for d in range(self.n_bands):
                    v = pooled[c][d]
                    q = float(np.quantile(v, self.quantile)) if len(v) >= self.min_cells else fallback
                    scale[m, c, d] = max(q, 0.05)
        self.scale_ = scale
        return self

    def apply(self, name: str, cell_map: np.ndarray, observed: np.ndarray, meta) -> np.ndarray:
        """``cell_map / scale[name, observed class, distance band]``, ``(T, H, W)``."""
        if not hasattr(self, "scale_"):
            return cell_map
        cls = np.minimum(observed, self.scale_.shape[1] - 1).astype(np.int64)
        scale = self.scale_[self.maps.index(name)][cls, self.bands(meta)[None]]
        return (cell_map / scale).astype(np.float32)

    def to_dict(self) -> dict:
        return {"band_m": self.band_m, "n_bands": self.n_bands, "quantile": self.quantile,
                "min_cells": self.min_cells, "maps": list(self.maps), "scale": self.scale_.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "CellNormaliser":
        out = cls(d["band_m"], d["n_bands"], d["quantile"], d["min_cells"], d.get("maps", MAPS))
        out.scale_ = np.asarray(d["scale"], dtype=np.float32)
        return out


def map_names(patches: bool = True, objects: bool = False) -> tuple[str, ...]:
    """The surprise maps :func:`raw_maps` returns for these passes."""
    return ("revealed",) + (MAPS[1:] if patches else ()) + (OBJECT_MAPS if objects else ())


def raw_maps(predictor, log: DriveLog, batch_size: int = 32, keep_probabilities: bool = False,
             patch_size: int = 8, forecast: bool = True, objects: bool | None = None,
             patches: bool | None = None) -> dict:
    """Run the passes over a log: ``{"revealed": (T, H, W) float32, "predicted",
    "confidence", "road_layout", "probabilities"}`` plus ``"recon", "forecast"``
    (``patches``) and ``"object_recon", "object_forecast"`` (``objects``); surprise in
    nats, un-normalised. ``road_layout`` is ``P(road surface)`` of every cell: observed
    layout cells as seen, hidden ones from the occlusion pass, observed objects from the
    object pass (the ground under them; ``decision.layout_mass``).

    ``objects`` defaults to whether the model was trained with object masks, ``patches``
    to the opposite (a model that knows the object passes needs no patch passes).
    """
    from core.masking import PatchMasker

    from ..model.baselines import apply_layout_memory
    from .decision import RoadBelief, decide, layout_mass, road_mass
    from ..model.masking import object_regions

    if objects is None:
        objects = bool(getattr(predictor, "object_masks", 0.0))
    if patches is None:
        patches = not objects

    predictor.check_log(log)
    grids, speed = predictor.stack(log)
    t_total, _, h, w = grids.shape
    visible = log.visible
    observed = log.semantic
    schedule = PatchMasker(patch_size, ratio=0.5).schedule((h, w)) if patches else []
    predicted = np.empty((t_total, h, w), np.uint8)
    confidence = np.empty((t_total, h, w), np.float32)
    road_layout = np.empty((t_total, h, w), np.float32)
    is_object = np.isin(observed, OBJECT_CLASSES)
    prior = getattr(predictor, "context_prior_", None) if objects else None
    names = map_names(patches, objects) + (("object_context",) if prior is not None else ())
    maps = {name: np.zeros((t_total, h, w), np.float32) for name in names}
    context_inputs = []
    kept = [] if keep_probabilities else None
    prev_probs = None
    memory = predictor.layout_memory(log)
    road_threshold = getattr(predictor, "road_threshold_", None)
    belief = RoadBelief(log) if road_threshold is not None else None
    poses = log.poses
    for start in range(0, t_total, batch_size):
        sl = slice(start, min(start + batch_size, t_total))
        probs = predictor.predict_proba(grids[sl], speed[sl], batch_size)      # (B, C, H, W)
        if memory is not None:
            apply_layout_memory(probs, memory[sl], observed[sl])
        vis = visible[sl]
        decided = decide(probs, road_threshold,
                         belief.update(sl.start, road_mass(probs)) if belief is not None else None)
        predicted[sl] = np.where(vis, observed[sl], decided)
        chosen = np.take_along_axis(probs, decided[:, None].astype(np.int64), 1)[:, 0]
        confidence[sl] = np.where(vis, 1.0, chosen)
        seen_road = np.isin(observed[sl], (ROAD, LANE_MARKING))
        road_layout[sl] = np.where(vis & ~is_object[sl], seen_road, layout_mass(probs))
        for mask in schedule:
            passes = [("recon", slice(None))] + ([("forecast", slice(0, 1))] if forecast else [])
            for name, slots in passes:
                masked = grids[sl].copy()
                masked[:, slots][:, :, mask] = UNOBSERVED   # recon: a tube; forecast: now only
                rec = predictor.predict_proba(masked, speed[sl], batch_size)
                ce = _cross_entropy(rec, observed[sl])
                maps[name][sl] += np.where(vis & mask[None], ce, 0.0)
        if objects:                       # every object (and a margin) hidden at once
            grown = object_regions(observed[sl], OBJECT_MARGIN).numpy() & vis
            for name, tube in (("object_recon", True), ("object_forecast", False)):
                masked = grids[sl].copy()
                if tube:
                    masked[np.broadcast_to(grown[:, None], masked.shape)] = UNOBSERVED
                else:
                    masked[:, 0][grown] = UNOBSERVED
                rec = predictor.predict_proba(masked, speed[sl], batch_size)
                maps[name][sl] = np.where(grown, _cross_entropy(rec, observed[sl]), 0.0)
                if tube:                            # the layout under the objects seen
                    road_layout[sl] = np.where(is_object[sl], layout_mass(rec), road_layout[sl])
                if tube and prior is not None:      # what ground the objects stand on
                    ground, category = prior.inputs(rec, observed[sl], grids[sl], log.meta.resolution_m)
                    if hasattr(prior, "table_"):
                        maps["object_context"][sl] = prior.surprise(ground, category)
                    else:                           # calibration: the prior is fitted on these
                        context_inputs.append((ground.astype(np.float16), category, observed[sl]))
        for i, t in enumerate(range(sl.start, sl.stop)):   # what the hidden cells turned into
            before = probs[i - 1] if i > 0 else prev_probs
            if before is None:
                continue
            rows, cols, inside = warp_indices(poses[t - 1], poses[t], log.meta)
            was_hidden = inside & ~visible[t - 1][rows, cols]
            revealed = was_hidden & visible[t]
            if revealed.any():
                p = before[:, rows, cols]                          # (C, H, W) in frame t
                ce = _cross_entropy(p[None], observed[t][None])[0]
                maps["revealed"][t] = np.where(revealed, ce, 0.0)
        prev_probs = probs[-1]
        if kept is not None:
            kept.append(probs)
    maps.update(predicted=predicted, confidence=confidence, road_layout=road_layout,
                probabilities=np.concatenate(kept) if kept else None)
    if context_inputs:
        maps["context_inputs"] = context_inputs
    return maps


def score_log(predictor, log: DriveLog, batch_size: int = 32, keep_probabilities: bool = False,
              patch_size: int = 8) -> SurpriseResult:
    """Run the passes over a log and compute every map and score."""
    forecast = getattr(predictor, "normaliser_", None) is not None   # older bundles: none
    maps = raw_maps(predictor, log, batch_size, keep_probabilities, patch_size, forecast=forecast)
    return result_from_maps(predictor, log, maps)


def result_from_maps(predictor, log: DriveLog, maps: dict) -> SurpriseResult:
    """Normalise :func:`raw_maps`' output with the predictor's ``normaliser_`` and score."""
    normaliser = getattr(predictor, "normaliser_", None)
    smooth = int(getattr(predictor, "smooth_", 1))
    raw = dict(maps)                             # un-normalised, for raw channels
    maps = dict(maps)
    observed = log.semantic
    present = [name for name in MAPS + OBJECT_MAPS if name in maps]
    if normaliser is not None:                   # the maps it was fitted on
        present = [name for name in present if name in normaliser.maps]
        for name in present:
            maps[name] = normaliser.apply(name, maps[name], observed, log.meta)
    objects = scored_objects(observed, log.meta)
    revealed = maps["revealed"]
    visible_map = np.maximum.reduce([maps[name] for name in present if name != "revealed"])
    if "object_context" in maps:                 # the replay shows what the score reads
        visible_map = np.maximum(visible_map, maps["object_context"])
    scorer = getattr(predictor, "frame_scorer_", None)
    score_maps = None
    if scorer is not None:
        score_maps = scorer.channel_maps(raw, maps, objects)
        tails = scorer.tail_scores(score_maps)
        is_revealed = np.array([name == "revealed" for name, _, _ in scorer.channels])
        surprise_revealed = tails[:, is_revealed].max(1) if is_revealed.any() else np.zeros(len(tails))
        visible_error = tails[:, ~is_revealed].max(1) if (~is_revealed).any() else np.zeros(len(tails))
        raw_score = tails.max(1)
        raw_fn = scorer.raw
    else:
        surprise_revealed = pooled_top_k(revealed * objects)
        visible_error = pooled_top_k(visible_map * objects)
        raw_score = surprise_revealed + visible_error
        raw_fn = round3_raw
    return SurpriseResult(surprise_revealed=surprise_revealed, visible_error=visible_error,
                          score=causal_mean(raw_score, smooth), predicted=maps["predicted"],
                          confidence=maps["confidence"], revealed_error=revealed,
                          recon_error=visible_map, object_cells=objects, raw_score=raw_score,
                          smooth=smooth, probabilities=maps["probabilities"],
                          score_maps=score_maps, raw_fn=raw_fn, road_layout=maps.get("road_layout"))


def region_masks(grid_shape, blocks: int = 4) -> tuple[np.ndarray, list[str]]:
    """``blocks x blocks`` rectangular regions: ``(n, H, W)`` bool and names ``"r{i}c{j}"``."""
    h, w = grid_shape
    rows = np.minimum(np.arange(h) * blocks // h, blocks - 1)
    cols = np.minimum(np.arange(w) * blocks // w, blocks - 1)
    ids = rows[:, None] * blocks + cols[None, :]
    masks = np.stack([ids == i for i in range(blocks * blocks)])
    return masks, [f"r{i // blocks}c{i % blocks}" for i in range(blocks * blocks)]


def explain_frame(maps: dict, raw_fn=None, blocks: int = 4, max_evals: int = 400, seed: int = 0):
    """Region SHAP of one frame's score (regions switched off = their errors set to 0).

    Args:
        maps: ``{channel: (H, W)}`` the frame's score maps, or ``(W, H, W)`` for the
            frames of its smoothing window (the score is then the mean over them); see
            :meth:`SurpriseResult.frame_maps`.
        raw_fn: ``{channel: (N, H, W)} -> (N,)`` the raw frame score
            (:attr:`SurpriseResult.raw_fn`); None: round 3's (``"revealed"`` and
            ``"recon"`` maps, pooled top-k of each, summed).

    Returns:
        ``core.explain.ShapResult`` with one row of ``blocks**2`` values.
    """
    from core.explain import region_shap

    raw_fn = round3_raw if raw_fn is None else raw_fn
    maps = {name: np.asarray(m, dtype=np.float32) for name, m in maps.items()}
    maps = {name: (m[None] if m.ndim == 2 else m) for name, m in maps.items()}
    first = next(iter(maps.values()))
    masks, names = region_masks(first.shape[-2:], blocks)
    region_of = np.argmax(masks, 0)                               # (H, W) region index

    def score_of_keep(keep: np.ndarray) -> np.ndarray:
        keep = np.asarray(keep, dtype=np.float32)
        cell_keep = keep[:, region_of]                            # (m, H, W)
        return np.array([raw_fn({name: m * row[None] for name, m in maps.items()}).mean()
                         for row in cell_keep])

    return region_shap(score_of_keep, len(names), names, max_evals=max_evals, seed=seed)
