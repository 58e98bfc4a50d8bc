"""Experiment behind the driving README's "temporal evidence" trial: causal aggregations of the
frame score over a window given in seconds -- of each channel's tail score before the max over
channels, or of the final frame score -- against the per-frame max and the committed causal
mean of the frame score over the predictor's smoothing window (0.5 s). Frame AUROC (the
benchmark's 4 test logs, seed 2, and 6 more, seed 3), AUROC by kind, events alerted, onset
(seconds from an event's first frame to its first alert) and the alert rate on new normal logs
(seeds 502, 503), decided on the **tuned** configurations; the frozen **held-out** one
(bench.driving.HELDOUT: the benchmark's 4 test logs and 2 normal logs, never tuned on) is
reported beside it, computed after the decision. On the maps cached by
driving_calibration_cache.py (/tmp/drv19/cache/<world>); results in
bench/results/driving_temporal_<world>.json, one entry per configuration. The scoring state
and the alert threshold of every variant come from the training logs' tails in both (the
threshold from the cross-fitted scores of the same aggregation).

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_temporal town   # ~6 min

Its product arm is pinned to ``driving_five_channels.FIVE_CHANNELS`` (with its tail floors and
observed channels), the product's channels when its results were made, not to the default
``frame_score.CHANNELS``, which has since gained ``pedestrian_conflict``.
"""
import sys
from pathlib import Path

import numpy as np

from bench.experiments.driving_path_channel import (CrossFit, PathHarness, onsets, report,
                                                    save_configuration)
from bench.experiments.driving_five_channels import FIVE_CHANNELS
from driving.schema import window_frames
from driving.scoring.surprise import causal_mean

WINDOWS_S = (0.3, 0.6, 1.0, 2.0)


def causal_kth(values: np.ndarray, window: int, k: int = 2) -> np.ndarray:
    """The ``k``-th largest of each value and the ``window - 1`` before it (the smallest
    in the window while it holds fewer than ``k``)."""
    padded = np.concatenate([np.full(window - 1, np.nan), values])
    windows = np.lib.stride_tricks.sliding_window_view(padded, window)
    ordered = -np.sort(-np.nan_to_num(windows, nan=-np.inf), axis=1)
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return ordered[np.arange(len(values)), np.minimum(k, counts) - 1]


def causal_ema(values: np.ndarray, window_s: float, rate_hz: float) -> np.ndarray:
    """Exponential moving average with time constant ``window_s`` (started at the first value)."""
    alpha = 1.0 - np.exp(-1.0 / (window_s * rate_hz))
    out = np.empty(len(values))
    level = values[0]
    for t, v in enumerate(values):
        level = level + alpha * (v - level) if t else v
        out[t] = level
    return out


def per_channel(fn):
    """Aggregate each channel's tail score ``(T, C)`` over time, then the max over channels."""
    return lambda tails: np.max(np.stack([fn(tails[:, c]) for c in range(tails.shape[1])], 1), 1)


def on_frame(fn):
    """The max over channels first, then the aggregation over time."""
    return lambda tails: fn(tails.max(1))


def variants(harness) -> dict:
    """Label -> aggregation of a log's ``(T, C)`` tail scores into its frame scores; the
    committed one is the causal mean of the frame score over the predictor's smoothing window."""
    rate = harness.pred.meta_.rate_hz
    out = {"per frame (no window)": on_frame(lambda s: s),
           f"frame score, mean {harness.pred.smooth_s} s (committed)":
               on_frame(lambda s: causal_mean(s, harness.smooth))}
    for w in WINDOWS_S:
        n = window_frames(w, rate)
        out[f"channel mean {w} s"] = per_channel(lambda s, n=n: causal_mean(s, n))
        out[f"channel 2nd largest {w} s"] = per_channel(lambda s, n=n: causal_kth(s, n))
        out[f"channel EMA {w} s"] = per_channel(lambda s, w=w: causal_ema(s, w, rate))
        out[f"frame score, mean {w} s"] = on_frame(lambda s, n=n: causal_mean(s, n))
        out[f"frame score, 2nd largest {w} s"] = on_frame(lambda s, n=n: causal_kth(s, n))
        # a strong one-frame spike still alerts at once; sustained moderate evidence adds up
        out[f"per frame or channel mean {w} s"] = per_channel(
            lambda s, n=n: np.maximum(s, causal_mean(s, n)))
    return out


def tail_matrix(harness, state, item) -> np.ndarray:
    """``(T, C)`` each channel's tail score on every frame of ``item``."""
    return state.frame_scorer.tail_scores(harness.result(state, item).score_maps)


def evaluate(harness, fitted: CrossFit, aggregate) -> dict:
    """:meth:`PathHarness.metrics` of one aggregation and the seconds from each alerted
    event's first frame to its first alert (median, mean)."""
    alerts = harness.alerts(fitted, aggregate)
    out = harness.metrics(alerts)
    delays = onsets(alerts.events, [it[0].anomaly for it in harness.events], alerts.threshold)
    seconds = [d / harness.pred.meta_.rate_hz for d in delays if d is not None]
    out["onset_median_s"] = float(np.median(seconds)) if seconds else None
    out["onset_mean_s"] = float(np.mean(seconds)) if seconds else None
    return out


def main(world: str, configuration: str = "tuned") -> dict:
    harness = PathHarness(world, configuration=configuration)
    fitted = harness.cross_fit(FIVE_CHANNELS, lambda state, item: tail_matrix(harness, state, item))
    results = {}
    for label, aggregate in variants(harness).items():
        results[label] = evaluate(harness, fitted, aggregate)
        report(f"{world}/{configuration}", label, results[label])
    return results


if __name__ == "__main__":
    world = sys.argv[1]
    for configuration in ("tuned", "heldout"):
        save_configuration(Path("bench/results") / f"driving_temporal_{world}.json", world, configuration,
                           {"variants": main(world, configuration)})
