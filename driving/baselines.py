"""Baselines for hidden cells: last-seen persistence and a positional class prior.

Both return class probabilities ``(T, C, H, W)`` for every frame of a log, like the
occlusion predictor, so the benchmark scores all three the same way.
"""
from __future__ import annotations

import numpy as np

from core.errors import NotFittedError

from .schema import UNOBSERVED, DriveLog
from .warp import warp_grid


def persistence_memory(log: DriveLog, before: bool = False) -> np.ndarray:
    """Ego-motion-compensated memory of each cell's last observed class, ``(T, H, W)`` uint8.

    Frame t's memory is frame t-1's memory warped into frame t, overwritten by what is
    visible at t (255 where the cell was never seen).

    Args:
        log: the drive log.
        before: return the memory *before* frame t's observation (frame t-1's memory
            warped into frame t; all 255 at t = 0) -- what a model may use as input
            without seeing frame t's own cells through it.
    """
    memory = np.empty_like(log.semantic)
    poses = log.poses
    current = np.full(log.semantic.shape[1:], UNOBSERVED, dtype=log.semantic.dtype)
    for t in range(len(log)):
        if t:
            current = warp_grid(current, poses[t - 1], poses[t], log.meta)
        if before:
            memory[t] = current
        current = np.where(log.visible[t], log.semantic[t], current)
        if not before:
            memory[t] = current
    return memory


class PersistenceBaseline:
    """Hidden cells keep the class last seen there; never-seen cells get a uniform guess."""

    def predict_proba(self, log: DriveLog) -> np.ndarray:
        memory = persistence_memory(log)
        n_classes = len(log.meta.classes)
        probs = np.zeros((len(log), n_classes) + log.meta.grid_shape, np.float32)
        for c in range(n_classes):
            probs[:, c] = memory == c
        probs += (memory == UNOBSERVED)[:, None] / n_classes
        return probs


class PositionalPrior:
    """Class frequencies per grid position among visible cells of the training logs."""

    def __init__(self, smoothing: float = 1.0):
        self.smoothing = smoothing

    def fit(self, logs: list[DriveLog]) -> "PositionalPrior":
        n_classes = len(logs[0].meta.classes)
        counts = np.full((n_classes,) + logs[0].meta.grid_shape, self.smoothing / n_classes)
        for log in logs:
            for c in range(n_classes):
                counts[c] += (log.semantic == c).sum(0)
        self.prior_ = (counts / counts.sum(0, keepdims=True)).astype(np.float32)
        return self

    def predict_proba(self, log: DriveLog) -> np.ndarray:
        if not hasattr(self, "prior_"):
            raise NotFittedError("PositionalPrior is not fitted; call fit(logs)")
        return np.broadcast_to(self.prior_, (len(log),) + self.prior_.shape)
