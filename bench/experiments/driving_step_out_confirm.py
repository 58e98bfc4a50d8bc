"""Round 19's confirmation of ``pedestrian_reach_channel``
(:mod:`bench.experiments.driving_step_out`) on fresh tuned town logs, and the bootstrap over
logs of an AUROC difference that it and :mod:`bench.experiments.driving_step_out_enriched`
use. Networks, logs and ``--work``/``--models`` as :mod:`bench.experiments.driving_step_out`'s
(round 19 ran it with ``--work /tmp/r19-ped2 --models /tmp/r19-ped/models``).

**Confirmation on fresh tuned logs** (``confirm``; rule written and committed before it ran,
but after the held-out results of :mod:`bench.experiments.driving_step_out` had been seen: a
confirmation on fresh tuned data, not a held-out test). The rejection turned on a 0.0016
loss on the tuned column's 4 event logs (7 events); ``confirm_tuned`` is :data:`CONFIRM_LOGS` fresh event logs of the tuned
configuration (``SimConfig()``, all four event kinds as the benchmark's test logs, 250
frames, seed :data:`CONFIRM_SEED`, used by no benchmark or experiment), scored by the product
(``driving_five_channels.five_channel_scorer``: pinned to the five channels it had then, not the
product's default, which has since gained ``pedestrian_conflict``) and by
``pedestrian_reach_channel`` (the tuned network recalibrated on the 6 training logs,
as ``candidate`` does), with the 8 tuned normal logs for the alert rate; a bootstrap over
the event logs (:data:`BOOTSTRAP_DRAWS` draws of 12 with replacement, seed
:data:`BOOTSTRAP_SEED`) gives a 95 % interval of the AUROC difference candidate - product.
**Rule**: recommend adopting ``pedestrian_reach_channel`` in a later round if on the fresh
logs its overall frame AUROC is not below the product's by more than
:data:`MAX_CONFIRM_AUROC_LOSS` (0.005) AND its step-out AUROC (per kind, as the benchmark's)
is higher; otherwise the rejection stands. It adopts nothing today: the product is unchanged.
The set, simulated before this rule was committed and before any scoring, holds one
pedestrian step-out (``log_006``, 27 labelled frames) among its 12 logs, so the rule's
step-out leg rests on that one event; the rule is kept as the brief worded it.

**Confirmation result** (``confirmation`` in the JSON; 13 events: 4 debris, 7 stalled vehicles,
1 step-out, 1 wrong way): **the rejection stands**. Overall frame
AUROC product 0.8466, ``pedestrian_reach_channel`` 0.8619 (+0.015, bootstrap 95 % [-0.007,
+0.046], above 0 in 82 % of draws: passes); step-out AUROC 0.9637 -> 0.9606 (lower: fails;
the one event: 2 -> 1 of its 3 runs of labelled frames alerted). By kind: debris 0.839 -> 0.853,
stalled vehicle 0.882 -> 0.875, wrong way 0.724 -> 0.813; events alerted 16 of 23 both;
normal-log alerts 4.1 % -> 4.35 % (threshold 4.28 -> 4.71).

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_step_out_confirm --work W2 --models M confirm NAME   # product, pedestrian_reach_channel
    python -m bench.experiments.driving_step_out_confirm --work W2 confirm-decide

Results under ``confirmation`` in ``bench/results/driving_step_out.json``; each scorer's frames
are kept in ``W2/<name>.npz`` for the bootstrap.
"""
import json
from pathlib import Path

import numpy as np

from bench.experiments import merge_results
from bench.experiments.driving_step_out import (CANDIDATES, FRAMES, OUT, SETS, STEP_OUT, TOWN, Work,
                                                column_metrics, parse_stage, set_frames)
from bench.log_bootstrap import log_resamples, two_labels
from core.io import atomic_path
from core.metrics import auroc
from core.runtime import configure_threads

# the confirmation's fresh tuned event logs (seed 29: used by no benchmark or experiment), and
# its bootstrap over them
CONFIRM_SEED, CONFIRM_LOGS = 29, 12
BOOTSTRAP_DRAWS, BOOTSTRAP_SEED = 1000, 0
MAX_CONFIRM_AUROC_LOSS = 0.005
CONFIRM_SETS = {**SETS, "confirm_tuned": (CONFIRM_LOGS, CONFIRM_SEED, TOWN)}
CONFIRMED = "pedestrian_reach_channel"


def confirm(name: str, work: Work) -> dict:
    """Candidate ``name`` (``driving_step_out.CANDIDATES``) with the tuned network recalibrated
    with it, as ``driving_step_out.candidate`` does, on the fresh tuned event logs
    (``confirm_tuned``) and the 8 tuned normal logs; its frame scores are kept in
    ``work.root/<name>.npz`` for the bootstrap."""
    pred = work.calibrated("town", "train", CANDIDATES[name]())
    frames = set_frames(pred, work.logs("confirm_tuned"))
    keep_frames(work.root / f"{name}.npz", frames)
    return column_metrics(pred, frames, work.logs("tuned_normal"))


def keep_frames(path: Path, frames: dict[str, np.ndarray]) -> None:
    """Write ``frames`` (:func:`set_frames`) to ``path`` (``.npz``, atomically)."""
    with atomic_path(path) as tmp:
        np.savez(tmp, **frames)


def kept_frames(path: Path) -> dict[str, np.ndarray]:
    """The frames :func:`keep_frames` wrote to ``path``."""
    with np.load(path) as kept:
        return {k: kept[k] for k in kept.files}


def bootstrap_difference(base: dict, other: dict, kind: str | None = None,
                         strata: list | None = None) -> dict:
    """The AUROC difference ``other`` - ``base`` (frames of :func:`set_frames`, the same logs)
    over :data:`BOOTSTRAP_DRAWS` resamples of the logs with replacement: all event frames
    (``kind`` None) or ``kind``'s alone against every normal frame, as ``frames_by_kind``.
    A draw with no frame of the kind, or no normal frame, is skipped (counted).

    ``strata``: lists of log ids, each resampled to its own size in every draw; a log in none
    is in every draw once (normal logs beside event logs). None: all logs, one stratum."""
    if not (np.array_equal(base["log_ids"], other["log_ids"])
            and np.array_equal(base["labels"], other["labels"])):
        raise ValueError("the two runs scored different logs or labels")
    keep = np.ones(len(base["labels"]), bool) if kind is None else (base["kinds"] == kind) | ~base["labels"]
    differences, skipped = [], 0
    for sel in log_resamples(base["log_ids"], keep, strata, BOOTSTRAP_DRAWS, BOOTSTRAP_SEED):
        labels = base["labels"][sel]
        if not two_labels(labels):
            skipped += 1
            continue
        differences.append(auroc(labels, other["scores"][sel]) - auroc(labels, base["scores"][sel]))
    point = (auroc(base["labels"][keep], other["scores"][keep])
             - auroc(base["labels"][keep], base["scores"][keep]))
    low, high = np.percentile(differences, [2.5, 97.5])
    return {"difference": float(point), "ci95": [float(low), float(high)],
            "share_above_zero": float(np.mean(np.asarray(differences) > 0)),
            "draws": BOOTSTRAP_DRAWS, "skipped": skipped, "seed": BOOTSTRAP_SEED}


def confirm_decide(results: dict) -> dict:
    """The confirmation rule of the module docstring over ``confirm``'s results."""
    base, other = results["product"], results[CONFIRMED]
    step_out = STEP_OUT[0]
    checks = {"auroc_not_below_by_more_than_0.005":
              other["frames"]["auroc"] >= base["frames"]["auroc"] - MAX_CONFIRM_AUROC_LOSS,
              "step_out_auroc_higher": other["by_kind"][step_out]["auroc"] > base["by_kind"][step_out]["auroc"]}
    return {"candidate": CONFIRMED, **checks, "recommend_adopting_later": all(checks.values())}


def main(argv=None) -> None:
    args, work = parse_stage(argv, "python -m bench.experiments.driving_step_out_confirm", __doc__,
                             ("confirm", "confirm-decide"), {"confirm": tuple(CANDIDATES)}, CONFIRM_SETS)
    if args.stage == "confirm":
        configure_threads()
        result = confirm(args.name, work)
        print(json.dumps(result, indent=1))
        merge_results(OUT, {args.name: result}, under=("confirmation",))
        return
    kept = json.loads(OUT.read_text())["confirmation"]
    base, other = (kept_frames(work.root / f"{n}.npz") for n in ("product", CONFIRMED))
    entries = {"set": {"logs": CONFIRM_LOGS, "seed": CONFIRM_SEED, "frames": FRAMES,
                       "config": repr(TOWN),
                       "normal_logs": "tuned_normal ({}, seed {})".format(*SETS["tuned_normal"][:2])},
               "bootstrap": {"all_frames": bootstrap_difference(base, other),
                             STEP_OUT[0]: bootstrap_difference(base, other, STEP_OUT[0])},
               "decision": confirm_decide(kept)}
    print(json.dumps(entries, indent=1))
    merge_results(OUT, entries, under=("confirmation",))


if __name__ == "__main__":
    main()
