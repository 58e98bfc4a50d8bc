"""Experiment behind the driving README's "how the channels are combined" trial: a frame's raw
score from its channels' tail scores ``t_i = -log p_i`` (``FrameScorer.tail_scores``), combined
by rules that need no per-world constant --

* the largest tail score (committed; Bonferroni's ``-log(K min p)`` ranks frames the same);
* the sum of the tail scores (Fisher's ``-log prod p``: agreement between channels adds up);
* the harmonic-mean p-value (Wilson, PNAS 2019), ``-log(K / sum_i 1/p_i)``, which combines
  dependent p-values, as the channels are (they read the same objects);
* the largest plus the second largest tail score (two channels agreeing, not all five).

Each is then smoothed as the product smooths the max (causal mean over the predictor's
window), and its alert threshold is read off its OWN cross-fitted calibration scores at the
predictor's contamination (nominal 5 %), as :func:`driving.scoring.state.cross_fitted_scores`
does. Frame AUROC (the benchmark's 4 test logs, seed 2, and 6 more, seed 3), AUROC by kind,
events alerted, events lost and gained against the committed max (per event, each at its own
threshold), onset and the alert rate on new normal logs (seeds 502, 503).

Decided on the **tuned** configurations only (:func:`decide`, the rule fixed before the run:
adopt a combination if, in both worlds, its tuned frame AUROC does not fall below the max's,
it alerts every event the max alerts, and its normal-log alerts stay within 2x nominal; of
several, the one with the largest smaller gain over the two worlds). The frozen **held-out**
configuration (bench.driving.HELDOUT: the benchmark's 4 held-out test logs and 2 normal logs)
is computed after the decision and never re-decides it. Maps cached by
driving_calibration_cache.py (/tmp/drv19/cache/<world>); results in
bench/results/driving_channel_mix_<world>.json, one entry per configuration.

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_channel_mix town tuned       # ~4 min
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_channel_mix highway tuned
    python -m bench.experiments.driving_channel_mix decide                                          # the rule
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_channel_mix town heldout     # ~3 min
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_channel_mix highway heldout

Its product arm is pinned to ``driving_five_channels.FIVE_CHANNELS`` (with its tail floors and
observed channels), the product's channels when its results were made, not to the default
``frame_score.CHANNELS``, which has since gained ``pedestrian_conflict``.
"""
import json
import sys
from pathlib import Path

import numpy as np

from bench.experiments.driving_path_channel import PathHarness, onsets, report, save_configuration
from bench.experiments.driving_five_channels import FIVE_CHANNELS
from bench.experiments.driving_temporal import evaluate, tail_matrix
from driving.scoring.surprise import causal_mean

RESULTS = Path("bench/results")
MAX_ALERT_RATE = 0.10          # 2x the nominal 5 %
SPEAKS = np.log(20.0)          # a channel's tail at p <= 5 %, the nominal alert rate


def largest(tails: np.ndarray) -> np.ndarray:
    return tails.max(1)


def total(tails: np.ndarray) -> np.ndarray:
    return tails.sum(1)


def harmonic_mean_p(tails: np.ndarray) -> np.ndarray:
    """``-log`` of the harmonic mean of ``p_i = exp(-t_i)`` with equal weights:
    ``log(mean_i exp(t_i))``, computed without overflow."""
    top = tails.max(1, keepdims=True)
    return top[:, 0] + np.log(np.mean(np.exp(tails - top), 1))


def two_largest(tails: np.ndarray) -> np.ndarray:
    ordered = np.sort(tails, 1)
    return ordered[:, -1] + ordered[:, -2]


COMMITTED = "max (committed)"
COMBINATIONS = {COMMITTED: largest, "sum (Fisher)": total,
                "harmonic-mean p-value": harmonic_mean_p, "max + second largest": two_largest}


def alerted_events(harness, alerts) -> list[bool]:
    """Per event of ``harness.events`` (in order), whether any of its frames alerts."""
    labels = [log.anomaly for log, _ in harness.events]
    return [d is not None for d in onsets(alerts.events, labels, alerts.threshold)]


def agreement(harness, fitted) -> dict:
    """Why a combination wins or loses: per event kind, the event logs' normal frames and the
    normal logs, how many channels speak in a frame (tail score >= ``SPEAKS``, mean), the
    share of the frames' summed tail scores their largest channel carries, and how often
    each channel is the largest (unsmoothed tail scores of the full state)."""
    names = [name for name, _, _ in FIVE_CHANNELS]
    tails = np.concatenate(fitted.events)
    kinds = np.concatenate([[k or "normal frames of the event logs" for k in log.anomaly_kind]
                            for log, _ in harness.events])
    groups = {k: tails[kinds == k] for k in sorted(set(kinds))}
    groups["normal logs"] = np.concatenate(fitted.normals)
    return {k: {"channels_speaking": float(np.mean((t >= SPEAKS).sum(1))),
                "largest_share_of_sum": float(t.max(1).sum() / max(t.sum(), 1e-12)),
                "largest_channel": {n: float(np.mean(t.argmax(1) == i)) for i, n in enumerate(names)}}
            for k, t in groups.items()}


def main(world: str, configuration: str) -> dict:
    harness = PathHarness(world, configuration=configuration)
    fitted = harness.cross_fit(FIVE_CHANNELS, lambda state, item: tail_matrix(harness, state, item))
    label_world, results, alerted = f"{world}/{configuration}", {}, {}
    for label, combine in COMBINATIONS.items():
        aggregate = lambda tails, combine=combine: causal_mean(combine(tails), harness.smooth)
        results[label] = evaluate(harness, fitted, aggregate)
        alerts = harness.alerts(fitted, aggregate)
        results[label]["threshold"] = alerts.threshold
        alerted[label] = np.array(alerted_events(harness, alerts))
    for label in COMBINATIONS:
        lost = np.flatnonzero(alerted[COMMITTED] & ~alerted[label])
        gained = np.flatnonzero(~alerted[COMMITTED] & alerted[label])
        results[label].update(events_lost_against_committed=lost.tolist(),
                              events_gained_against_committed=gained.tolist())
        report(label_world, label, results[label])
    why = agreement(harness, fitted)
    print(label_world, json.dumps(why), flush=True)
    return {"variants": results, "agreement between channels": why}


def passes(mine: dict, committed: dict) -> bool:
    """The adoption rule in one world: frame AUROC not below the committed max's, no event the
    max alerts lost, normal-log alerts within 2x nominal."""
    return (mine["auroc"] >= committed["auroc"] and not mine["events_lost_against_committed"]
            and mine["alert_rate_normal_logs"] <= MAX_ALERT_RATE)


def decide() -> str:
    """The decision on the tuned configurations of both worlds (one line)."""
    tuned = {w: json.loads((RESULTS / f"driving_channel_mix_{w}.json").read_text())
             ["configurations"]["tuned"]["variants"] for w in ("town", "highway")}
    gains = {label: min(t[label]["auroc"] - t[COMMITTED]["auroc"] for t in tuned.values())
             for label in COMBINATIONS if label != COMMITTED
             and all(passes(t[label], t[COMMITTED]) for t in tuned.values())}
    if not gains:
        return f"keep the {COMMITTED}: no combination passes the rule in both tuned worlds"
    best = max(gains, key=gains.get)
    return f"adopt {best}: passes in both tuned worlds, smaller AUROC gain {gains[best]:+.4f}"


if __name__ == "__main__":
    if sys.argv[1] == "decide":
        print(decide())
    else:
        world, configuration = sys.argv[1], sys.argv[2]
        save_configuration(RESULTS / f"driving_channel_mix_{world}.json", world, configuration,
                           main(world, configuration))
