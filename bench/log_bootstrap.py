"""How far a frame metric over a few drive logs could move had other logs been drawn: a
bootstrap over logs (whole logs resampled with replacement, since frames of one log are not
independent draws), for the driving benchmark and its experiments."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from core.metrics import auprc, auroc

BOOTSTRAP_DRAWS, BOOTSTRAP_SEED = 2000, 0


def log_resamples(log_ids: np.ndarray, keep: np.ndarray | None = None, strata: list | None = None,
                  draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED) -> Iterator[np.ndarray]:
    """Frame indices of ``draws`` resamples of the logs with replacement (seeded).

    Args:
        log_ids: ``(N,)`` each frame's log.
        keep: ``(N,)`` bool, the frames a resample may hold (None: all).
        strata: lists of log ids, each resampled to its own size in every draw; a log in none
            is in every draw once (normal logs beside event logs). None: all logs, one stratum.
        draws: how many resamples.
        seed: the generator's seed.

    Yields:
        Per draw, the indices of the kept frames of the drawn logs (a log drawn twice twice).
    """
    log_ids = np.asarray(log_ids)
    keep = np.ones(len(log_ids), bool) if keep is None else np.asarray(keep, bool)
    strata = [np.unique(log_ids)] if strata is None else [np.asarray(s) for s in strata]
    fixed = np.flatnonzero(~np.isin(log_ids, np.concatenate(strata)) & keep)
    per_log = [[np.flatnonzero((log_ids == i) & keep) for i in ids] for ids in strata]
    rng = np.random.default_rng(seed)
    for _ in range(draws):
        yield np.concatenate([fixed] + [logs[j] for logs in per_log
                                        for j in rng.integers(0, len(logs), len(logs))])


def frame_intervals(labels: np.ndarray, scores: np.ndarray, log_ids: np.ndarray,
                    draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED) -> dict:
    """Frame AUROC and AP of ``scores`` against ``labels`` with their 95 % bootstrap intervals
    over the logs, and each log's own AUROC (its event frames against its normal frames).

    A draw whose frames are all of one label has no AUROC and is skipped (counted); a metric
    with no value (every frame of one label; every draw skipped) is None.

    Args:
        labels: ``(N,)`` bool, the frame is anomalous.
        scores: ``(N,)`` frame scores, higher = more anomalous.
        log_ids: ``(N,)`` each frame's log.
        draws: bootstrap resamples.
        seed: the resampling seed.

    Returns:
        ``{"auroc": {"point", "ci95"}, "average_precision": {...}, "per_log_auroc": {log: value
        or None}, "n_logs", "draws", "skipped", "seed"}``.
    """
    labels, scores, log_ids = np.asarray(labels, bool), np.asarray(scores), np.asarray(log_ids)
    metrics = {"auroc": auroc, "average_precision": auprc}
    drawn, skipped = {name: [] for name in metrics}, 0
    for sel in log_resamples(log_ids, draws=draws, seed=seed):
        if not two_labels(labels[sel]):
            skipped += 1
            continue
        for name, metric in metrics.items():
            drawn[name].append(metric(labels[sel], scores[sel]))
    out = {name: {"point": float(metric(labels, scores)) if two_labels(labels) else None,
                  "ci95": np.percentile(drawn[name], [2.5, 97.5]).tolist() if drawn[name] else None}
           for name, metric in metrics.items()}
    per_log = {}
    for log in dict.fromkeys(log_ids.tolist()):
        own = log_ids == log
        per_log[log] = float(auroc(labels[own], scores[own])) if two_labels(labels[own]) else None
    return {**out, "per_log_auroc": per_log, "n_logs": len(per_log), "draws": draws,
            "skipped": skipped, "seed": seed}


def two_labels(labels: np.ndarray) -> bool:
    """Whether ``labels`` holds both anomalous and normal frames (an AUROC exists)."""
    return bool(labels.any() and not labels.all())
