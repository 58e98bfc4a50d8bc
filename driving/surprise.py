"""Surprise scores: where reality disagrees with what the model believed.

Per frame t, three forward passes (batched over frames):

* **occlusion pass** on the frame as observed: class probabilities for hidden cells;
* **revealed surprise**: cells hidden at t-1 and visible at t get ``-log p(observed class)``
  under the t-1 prediction warped into frame t;
* **reconstruction passes**: a fixed patch schedule (``core.masking.PatchMasker.schedule``)
  hides every visible cell exactly once, in the current and the earlier frames alike (so
  an odd object cannot be copied from the history); each gets ``-log p(observed class)``.

A frame's score is ``surprise_revealed + visible_error``, each the mean of the ``TOP_K``
largest values of its error map after a 3x3 average (a blob, not a lone cell, is what
matters), taken over cells that hold an object (vehicle, pedestrian, static obstacle):
an odd object is what an engineer replays a log for, while layout surprises (a side
street coming into view) are routine. The per-cell maps keep every cell for the replay.
Region SHAP switches blocks of the frame-score maps on and off (``core.explain``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schema import PEDESTRIAN, STATIC_OBSTACLE, UNOBSERVED, VEHICLE, DriveLog
from .warp import warp_indices

TOP_K = 8
OBJECT_CLASSES = (VEHICLE, PEDESTRIAN, STATIC_OBSTACLE)
POOL = 3
EPS = 1e-6


@dataclass
class SurpriseResult:
    """Scores ``(T,)`` and per-cell maps ``(T, H, W)`` of one log."""

    surprise_revealed: np.ndarray
    visible_error: np.ndarray
    score: np.ndarray
    predicted: np.ndarray        # uint8: observed class where visible, argmax where hidden
    confidence: np.ndarray       # float32 max probability (1 where visible)
    revealed_error: np.ndarray   # float32
    recon_error: np.ndarray      # float32
    object_cells: np.ndarray     # bool: cells whose observed class is an object
    probabilities: np.ndarray | None = None   # float32 (T, C, H, W) when kept

    @property
    def cell_error(self) -> np.ndarray:
        return np.maximum(self.revealed_error, self.recon_error)

    def frame_maps(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """The two error maps frame ``t``'s score is computed from (object cells only)."""
        return self.revealed_error[t] * self.object_cells[t], self.recon_error[t] * self.object_cells[t]


def pooled_top_k(error_maps: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Mean of the ``k`` largest 3x3-averaged values of each map ``(N, H, W)`` -> ``(N,)``."""
    from scipy.ndimage import uniform_filter

    pooled = uniform_filter(error_maps.astype(np.float32), size=(1, POOL, POOL), mode="constant")
    flat = pooled.reshape(len(pooled), -1)
    k = min(k, flat.shape[1])
    return np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:].mean(1)


def _cross_entropy(probs: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """``-log p(observed)`` per cell; ``probs`` ``(N, C, H, W)``, ``observed`` ``(N, H, W)``."""
    cls = np.minimum(observed, probs.shape[1] - 1).astype(np.int64)
    p = np.take_along_axis(probs, cls[:, None], axis=1)[:, 0]
    return -np.log(np.maximum(p, EPS))


def score_log(predictor, log: DriveLog, batch_size: int = 32, keep_probabilities: bool = False,
              patch_size: int = 8) -> SurpriseResult:
    """Run the three passes over a log and compute every map and score."""
    from core.masking import PatchMasker

    from .predictor import stack_frames

    predictor.check_log(log)
    grids, speed = stack_frames(log, predictor.history)
    t_total, _, h, w = grids.shape
    visible = log.visible
    observed = log.semantic
    schedule = PatchMasker(patch_size, ratio=0.5).schedule((h, w))
    predicted = np.empty((t_total, h, w), np.uint8)
    confidence = np.empty((t_total, h, w), np.float32)
    revealed_err = np.zeros((t_total, h, w), np.float32)
    recon_err = np.zeros((t_total, h, w), np.float32)
    kept = [] if keep_probabilities else None
    prev_probs = None
    poses = log.poses
    for start in range(0, t_total, batch_size):
        sl = slice(start, min(start + batch_size, t_total))
        probs = predictor.predict_proba(grids[sl], speed[sl], batch_size)      # (B, C, H, W)
        vis = visible[sl]
        predicted[sl] = np.where(vis, observed[sl], probs.argmax(1))
        confidence[sl] = np.where(vis, 1.0, probs.max(1))
        for mask in schedule:                       # reconstruction of visible cells
            masked = grids[sl].copy()
            masked[:, :, mask] = UNOBSERVED          # a tube: current and earlier frames
            rec = predictor.predict_proba(masked, speed[sl], batch_size)
            ce = _cross_entropy(rec, observed[sl])
            recon_err[sl] += np.where(vis & mask[None], ce, 0.0)
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
                revealed_err[t] = np.where(revealed, ce, 0.0)
        prev_probs = probs[-1]
        if kept is not None:
            kept.append(probs)
    objects = np.isin(observed, OBJECT_CLASSES)
    surprise_revealed = pooled_top_k(revealed_err * objects)
    visible_error = pooled_top_k(recon_err * objects)
    return SurpriseResult(surprise_revealed=surprise_revealed, visible_error=visible_error,
                          score=surprise_revealed + visible_error, predicted=predicted,
                          confidence=confidence, revealed_error=revealed_err, recon_error=recon_err,
                          object_cells=objects,
                          probabilities=np.concatenate(kept) if kept else None)


def region_masks(grid_shape, blocks: int = 4) -> tuple[np.ndarray, list[str]]:
    """``blocks x blocks`` rectangular regions: ``(n, H, W)`` bool and names ``"r{i}c{j}"``."""
    h, w = grid_shape
    rows = np.minimum(np.arange(h) * blocks // h, blocks - 1)
    cols = np.minimum(np.arange(w) * blocks // w, blocks - 1)
    ids = rows[:, None] * blocks + cols[None, :]
    masks = np.stack([ids == i for i in range(blocks * blocks)])
    return masks, [f"r{i // blocks}c{i % blocks}" for i in range(blocks * blocks)]


def explain_frame(revealed_error: np.ndarray, recon_error: np.ndarray, blocks: int = 4,
                  max_evals: int = 400, seed: int = 0):
    """Region SHAP of one frame's score (regions switched off = their errors set to 0).

    Returns:
        ``core.explain.ShapResult`` with one row of ``blocks**2`` values.
    """
    from core.explain import region_shap

    masks, names = region_masks(revealed_error.shape, blocks)
    region_of = np.argmax(masks, 0)                               # (H, W) region index

    def score_of_keep(keep: np.ndarray) -> np.ndarray:
        keep = np.asarray(keep, dtype=np.float32)
        cell_keep = keep[:, region_of]                            # (m, H, W)
        return pooled_top_k(revealed_error[None] * cell_keep) + pooled_top_k(recon_error[None] * cell_keep)

    return region_shap(score_of_keep, len(names), names, max_evals=max_evals, seed=seed)
