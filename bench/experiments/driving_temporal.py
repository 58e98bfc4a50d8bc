"""Experiment behind the driving README's "temporal evidence" trial: causal aggregations of
the frame score over a window given in seconds -- of each channel's tail score before the
max over channels, or of the final frame score -- against the per-frame max and the
committed causal mean of the frame score over 0.5 s. Frame AUROC (the benchmark's 4 test
logs, seed 2, and 6 more, seed 3), AUROC by kind, events alerted, onset (seconds from an
event's first frame to its first alert) and the alert rate on new normal logs (seeds 502,
503), all on the **tuned** configurations only, on the maps cached by
driving_calibration_cache.py (/tmp/drv19/cache/<world>); results in
bench/results/driving_temporal_<world>.json. The alert threshold of every
variant is read from the cross-fitted scores of the same aggregation.

    UNMASK_NUM_THREADS=1 python -m bench.experiments.driving_temporal town      # ~4 min
"""
import json
import sys
from pathlib import Path

import numpy as np

from bench.experiments.driving_path_channel import PathHarness
from core.calibration import threshold_from_contamination
from core.io import write_text_atomic
from driving.scoring import frame_score as fs
from driving.scoring.surprise import causal_mean, result_from_maps

WINDOWS_S = (0.3, 0.6, 1.0, 2.0)


def frames(window_s: float, rate_hz: float) -> int:
    """Frames in a window of ``window_s`` seconds at ``rate_hz`` (at least one)."""
    return max(1, int(round(window_s * rate_hz)))


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


def variants(rate: float) -> dict:
    out = {"per frame (no window)": on_frame(lambda s: s),
           "frame score, mean 0.5 s (committed)": on_frame(lambda s: causal_mean(s, frames(0.5, rate)))}
    for w in WINDOWS_S:
        n = frames(w, rate)
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
    log, m = item
    result = result_from_maps(state, log, harness.maps(log, m, state.context_prior))
    return state.frame_scorer.tail_scores(result.score_maps)


def onsets(scores, labels, threshold, rate) -> tuple[int, int, list]:
    """Events alerted, events, and seconds from each alerted event's start to its first alert."""
    hit = total = 0
    delays = []
    for s, lab in zip(scores, labels):
        edges = np.flatnonzero(np.diff(np.r_[0, lab.astype(int), 0]))
        for a, b in zip(edges[::2], edges[1::2]):
            total += 1
            above = np.flatnonzero(s[a:b] > threshold)
            if above.size:
                hit += 1
                delays.append(above[0] / rate)
    return hit, total, delays


def evaluate(harness, tails_oof, tails_events, tails_normal, aggregate, rate) -> dict:
    """Every metric of one aggregation, its threshold read from its cross-fitted scores."""
    threshold = threshold_from_contamination(np.concatenate([aggregate(t) for t in tails_oof]), 0.05)
    scores = [aggregate(t) for t in tails_events]
    normal = np.concatenate([aggregate(t) for t in tails_normal])
    out = harness.frame_metrics(scores, normal, threshold)
    hit, total, delays = onsets(scores, [it[0].anomaly for it in harness.events], threshold, rate)
    out["events_alerted"] = f"{hit}/{total}"
    out["onset_median_s"] = float(np.median(delays)) if delays else None
    out["onset_mean_s"] = float(np.mean(delays)) if delays else None
    return out


def main(world: str) -> dict:
    harness = PathHarness(world)
    rate = harness.pred.meta_.rate_hz
    observed = [fs.observed_statistics(log, fs.CHANNELS) for log, _ in harness.train]
    full = harness.fit_state(harness.tails, fs.CHANNELS, observed)
    tails_oof = []
    for i, item in enumerate(harness.tails):
        rest = harness.tails[:i] + harness.tails[i + 1:]
        state = harness.fit_state(rest, fs.CHANNELS, observed[:i] + observed[i + 1:])
        tails_oof.append(tail_matrix(harness, state, item))
    tails_events = [tail_matrix(harness, full, it) for it in harness.events]
    tails_normal = [tail_matrix(harness, full, it) for it in harness.normals]
    results = {}
    for label, aggregate in variants(rate).items():
        out = evaluate(harness, tails_oof, tails_events, tails_normal, aggregate, rate)
        results[label] = out
        print(world, label, json.dumps({k: round(v, 3) if isinstance(v, float) else v
                                        for k, v in out.items()}), flush=True)
    return results


if __name__ == "__main__":
    world = sys.argv[1]
    results = {"world": world, "configuration": "tuned", "variants": main(world)}
    out = Path("bench/results") / f"driving_temporal_{world}.json"
    write_text_atomic(out, json.dumps(results, indent=1) + "\n")
