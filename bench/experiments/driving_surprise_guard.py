"""Does the model's own surprise say when a drive log is unlike its training logs?

The input guard (``driving.guard``: frame rate, speed, hidden share, class shares) warns on
none of the benchmark's held-out highway normal logs (4 lanes of 3.5 m, other traffic),
which alert on 32.4 % of their frames. The medical vertical warns on the model's own error
instead, fitted from the user's training data and needing no guess of which feature moved.
This experiment asks the same of the driving frame score.

**Check** (defined and this rule committed before any candidate was run): a log's
*surprise* is the median of its frame scores (robust to a few events). The training logs'
surprise is the median of each training log's cross-fitted frame scores (each log scored by
the state fitted without it: the scores the alert threshold is read off,
``ScoreCalibration.fit_groups``). A log warns when its surprise exceeds ``factor`` times the
largest training log's. Candidates, smallest first: :data:`FACTORS` = 1.25, 1.5, 2, 3 (the
frame score is a tail score ``-log P(X >= x)``, never negative, so a factor is a margin in
nats that grows with how surprised the model already is on its own drives).

Networks, cache and scoring state: those of ``driving_object_count`` (``Harness``: the
benchmark's retrained networks, state fitted on the whole training logs, threshold from the
leave-one-log-out level).

**Decision rule** (``decide``): adopt the smallest factor that warns on at most 1 of the 16
fresh tuned normal logs (8 per world, both worlds together) and at most 1 of the 10 tuned
event logs of each world. None passes: the product stays as it is.

**After the decision** (``heldout``): the chosen factor (and, for the record, every
candidate) on the 8 held-out highway normal logs cached by ``driving_object_count
cache_heldout``: logs warned, their alert rates beside the unwarned logs'; and the training
logs' own (in-sample) surprise. By construction the check is related to the alert rate: a
log whose median frame score is high alerts often. The warning explains a high alert rate
as unfamiliar input; it does not lower it.

**Result**: ``bench/results/driving_surprise_guard.json``, described in ``bench/README.md``
("Driving: input guard").

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_surprise_guard tuned highway  # and town
    python -m bench.experiments.driving_surprise_guard decide
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_surprise_guard heldout highway  # after
    python -m bench.experiments.driving_surprise_guard compare                                          # after
"""
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from bench.experiments import merge_results
from bench.experiments.driving_object_count import Harness
from core.runtime import configure_threads

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "results" / "driving_surprise_guard.json"
FACTORS = (1.25, 1.5, 2.0, 3.0)
MAX_NORMAL_WARNED = 1        # of the 16 fresh tuned normal logs, both worlds together
MAX_EVENT_WARNED = 1         # of each world's 10 tuned event logs


def scoring(h: Harness) -> tuple:
    """``(state, threshold, training_surprise)``: the product's state on the whole training
    logs, its leave-one-log-out threshold, and each training log's median cross-fitted score."""
    state, threshold, per_log = h.scoring_with_scores()
    return state, threshold, [float(np.median(s)) for s in per_log]


def log_rows(h: Harness, state, threshold: float, items) -> list:
    """Per log: its surprise (median frame score) and its alert rate."""
    rows = []
    for it in items:
        score = h.view(state, it)["score"]
        rows.append({"surprise": round(float(np.median(score)), 4),
                     "alert_rate": round(float(np.mean(score > threshold)), 3)})
    return rows


def measure(world: str, normals: tuple, events: tuple) -> dict:
    """The training logs' surprise (cross-fitted and in-sample), and per log of each normal
    set in ``normals`` (under its name) and of the event sets ``events``: surprise and alert
    rate."""
    h = Harness(world, events=events, normals=())
    state, threshold, training = scoring(h)
    out = {"threshold": float(threshold), "training_surprise": training,
           "training_in_sample": log_rows(h, state, threshold, h.train)}
    for name in normals:
        out[name] = log_rows(h, state, threshold, h.load(name))
    if events:
        out["events"] = log_rows(h, state, threshold, h.events)
    print(world, json.dumps(out), flush=True)
    return out


def warned(rows: list, training: list, factor: float) -> list:
    """Indices of the logs whose surprise exceeds ``factor`` times the largest training log's."""
    limit = factor * max(training)
    return [i for i, r in enumerate(rows) if r["surprise"] > limit]


def decide(results: dict) -> dict:
    """The module docstring's rule over both worlds' tuned results."""
    verdicts = {}
    for factor in FACTORS:
        normal = {w: warned(r["fresh_normal"], r["training_surprise"], factor) for w, r in results.items()}
        events = {w: warned(r["events"], r["training_surprise"], factor) for w, r in results.items()}
        passes = (sum(len(v) for v in normal.values()) <= MAX_NORMAL_WARNED
                  and all(len(v) <= MAX_EVENT_WARNED for v in events.values()))
        verdicts[str(factor)] = {"normal_warned": normal, "event_warned": events, "passes": passes}
    adopted = next((f for f in FACTORS if verdicts[str(f)]["passes"]), None)
    return {"verdicts": verdicts, "adopted": adopted}


def split(rows: list, training: list, factor: float) -> dict:
    """Logs warned at ``factor``, and the alert rates of warned and unwarned logs."""
    hit = warned(rows, training, factor)
    rates = [r["alert_rate"] for r in rows]
    return {"limit": round(factor * max(training), 4), "warned": hit,
            "alert_rate_warned": [rates[i] for i in hit],
            "alert_rate_unwarned": [x for i, x in enumerate(rates) if i not in hit]}


def heldout(world: str) -> dict:
    """After the decision: every candidate on the held-out normal logs, beside the fresh
    tuned ones and the training logs in-sample (recomputed from the same cache)."""
    out = measure(world, ("heldout_normal", "fresh_normal"), ())
    for factor in FACTORS:
        out[f"factor_{factor}"] = {k: split(out[k], out["training_surprise"], factor)
                                   for k in ("heldout_normal", "fresh_normal", "training_in_sample")}
    return out


def compare(results: dict) -> dict:
    """After the decision, from the stored per-log numbers: how well a log's surprise tells
    the held-out highway logs from the fresh tuned ones (AUROC), beside the alert rate's
    own; and the rank correlation of surprise and alert rate over every log measured."""
    held = results["after_decision_heldout"]["highway"]
    is_held = [1] * len(held["heldout_normal"]) + [0] * len(held["fresh_normal"])
    logs = held["heldout_normal"] + held["fresh_normal"]
    every = held["heldout_normal"] + [r for w in results["tuned"].values()
                                      for r in w["fresh_normal"] + w["events"]]
    return {"highway_heldout_vs_fresh_auroc": {
                k: float(roc_auc_score(is_held, [r[k] for r in logs])) for k in ("surprise", "alert_rate")},
            "surprise_vs_alert_rate_spearman": float(spearmanr([r["surprise"] for r in every],
                                                               [r["alert_rate"] for r in every]).statistic),
            "logs": len(every)}


if __name__ == "__main__":
    if len(sys.argv) < 3 and sys.argv[1:] not in (["decide"], ["compare"]):
        print(__doc__)
    elif sys.argv[1] == "tuned":
        configure_threads()
        merge_results(OUT, {sys.argv[2]: measure(sys.argv[2], ("fresh_normal",), ("tuned", "extra"))},
                      under=("tuned",))
    elif sys.argv[1] == "decide":
        decision = decide(json.loads(OUT.read_text())["tuned"])
        print(json.dumps(decision, indent=1))
        merge_results(OUT, {"decision": decision})
    elif sys.argv[1] == "heldout":                # after the decision (module docstring)
        configure_threads()
        merge_results(OUT, {sys.argv[2]: heldout(sys.argv[2])}, under=("after_decision_heldout",))
    elif sys.argv[1] == "compare":                # after the decision (module docstring)
        comparison = compare(json.loads(OUT.read_text()))
        print(json.dumps(comparison, indent=1))
        merge_results(OUT, {"after_decision_compare": comparison})
