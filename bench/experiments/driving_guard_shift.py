"""Does the driving input guard say so when the highway traffic is unlike training?

The benchmark's held-out highway (4 lanes of 3.5 m, denser and faster traffic) alerts on
32.4 % of normal frames with the tuned network (``bench/results/driving_highway.json``);
a diagnosis read after its decision ties those alerts to the number of object cells. This
experiment reads, for each world and column, whether the bundle's guard
(``driving.guard.log_differences``, the call ``unmask driving score`` makes through
``input_warnings``) warns on each of the 8 normal and 4 event logs, and why, beside the
log's alert rate from the benchmark. No network is retrained and ``bench.driving`` is not
rerun: the logs and bundles it kept (``/tmp/drv/logs``, ``/tmp/drv/models``) are read.

Columns: ``tuned`` (the tuned configuration's fresh logs, tuned network), ``heldout`` (the
held-out configuration's logs, the same network), ``heldout_native`` (the same held-out
logs, the network trained on the held-out configuration's own logs).

Measured with the bundles' guard before any change (their saved profiles; ``existing_reasons``
below repeats it on the refitted ones): it warns on none of the 48 normal logs of any
column or world, held-out included; on the highway it warns on event logs for their ego
speed (the event's braking: 2 of 4 tuned, 3 of 4 held-out, 2 of 4 own-training, one of
them also for its hidden share); on no town log.

The density check is implemented HERE, not in the product (``driving.guard`` has no such
check; it was measured and not adopted): :func:`object_density` is a log's mean scored
object cells a frame (``driving.scoring.frame_score.scored_objects``); a log is compared
with the training logs' per-log range ``[lo, hi]`` and warned outside ``[lo / m, hi * m]``
-- the frame-rate check's form (:func:`density_reason`). The range is fitted here from the
training logs each network was trained on (``train`` for the tuned and held-out columns,
``heldout_native_train`` for the own-training one), and the guard's profile is refitted
from the same logs and compared with the bundle's saved one.

Decision rule (written and committed before any candidate ran and before any held-out
log's density was read): candidates ``m`` in (1.25, 1.5, 2.0, 3.0). Chosen: the smallest
``m`` whose density check warns on at most 1 of the 16 TUNED fresh normal logs (8
highway + 8 town; ``tuned_normal``). The tuned event logs are reported, not part of the
rule. If no candidate passes, none is adopted and the check is left out. Only then are the
held-out and own-training columns read with the chosen ``m`` and reported.

Read after the decision, and after the chosen check stayed silent on every held-out highway
log (step ``shares``; a diagnosis, not a candidate): each highway normal log's class shares
and class-share distance from the tuned training logs, beside its alert rate.

    UNMASK_NUM_THREADS=1 python -m bench.experiments.driving_guard_shift decide
    UNMASK_NUM_THREADS=1 python -m bench.experiments.driving_guard_shift after
    UNMASK_NUM_THREADS=1 python -m bench.experiments.driving_guard_shift shares
    # -> bench/results/driving_guard_shift.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from bench.experiments import merge_results
from driving.guard import (SHARE_MARGIN, InputProfile, class_counts, class_shares,
                           fit_input_profile, log_differences, share_distance)
from driving.schema import CLASSES, DriveLog, list_logs, read_log
from driving.scoring.frame_score import scored_objects

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "results" / "driving_guard_shift.json"
LOGS, MODELS = Path("/tmp/drv/logs"), Path("/tmp/drv/models")
WORLDS = ("highway", "town")
CANDIDATES = (1.25, 1.5, 2.0, 3.0)
ALLOWED_TUNED_WARNINGS = 1
# column -> (model suffix, training logs, normal logs, event logs)
COLUMNS = {"tuned": ("", "train", "tuned_normal", "tuned"),
           "heldout": ("", "train", "heldout_normal", "heldout"),
           "heldout_native": ("_heldout_native", "heldout_native_train", "heldout_normal",
                              "heldout")}


def object_density(log: DriveLog) -> float:
    """Mean object cells a frame in the region the frame score reads (objects in or next
    to the ego's path, ``scored_objects``): the traffic the score's tails were calibrated
    on. Denser traffic than training puts more cells in every frame's top-k, so it raises
    the scores of normal frames."""
    return float(scored_objects(log.semantic, log.meta).sum((1, 2)).mean())


def density_reason(training: tuple[float, float], density: float,
                   margin: float) -> str | None:
    """The difference a log of ``density`` shows from the training logs' per-log density
    range ``training``, or ``None`` when it lies within ``margin`` times that range."""
    lo, hi = training
    if lo / margin <= density <= hi * margin:
        return None
    return (f"traffic density {density:.1f} object cells a frame near the ego's path "
            f"(training logs {lo:.1f}-{hi:.1f})")


def _bundle_profile(world: str, column: str) -> dict:
    config = json.loads((MODELS / f"{world}{COLUMNS[column][0]}" / "config.json").read_text())
    return config["config"]["input_profile"]


def _alert_rates(world: str, column: str) -> dict:
    bench = json.loads((ROOT / "bench" / "results" / f"driving_{world}.json").read_text())
    return bench["worlds"][world][column]["normal_logs"]["per_log"]


def _profile(world: str, column: str) -> tuple[InputProfile, tuple[float, float], float]:
    """The guard's profile refitted from the column's training logs, their per-log density
    range, and the largest difference of the refitted profile from the bundle's."""
    logs = [read_log(p) for p in list_logs(LOGS / world / COLUMNS[column][1])]
    refit = fit_input_profile(logs).to_dict()
    density = [object_density(log) for log in logs]
    saved = _bundle_profile(world, column)
    gap = max(float(np.max(np.abs(np.subtract(refit[k], saved[k], dtype=float))))
              for k in saved if k != "class_everywhere")
    assert refit["class_everywhere"] == saved["class_everywhere"], (world, column)
    return InputProfile.from_dict(refit), (min(density), max(density)), gap


def _read(profile: InputProfile, training: tuple[float, float], world: str, folder: str,
          alerts: dict | None, margin: float | None) -> dict:
    out = {}
    for path in list_logs(LOGS / world / folder):
        log = read_log(path)
        density = object_density(log)
        row = {"existing_reasons": log_differences(profile, log),
               "object_density": round(density, 2)}
        if alerts is not None:
            row["alert_rate"] = alerts[path.stem]
        if margin is not None:
            row["density_reason"] = density_reason(training, density, margin)
        out[path.stem] = row
    return out


def decide_step() -> dict:
    """Densities of the tuned logs, each candidate's warnings on them, the decision."""
    tuned = {}
    for world in WORLDS:
        profile, training, gap = _profile(world, "tuned")
        normal = _read(profile, training, world, "tuned_normal", _alert_rates(world, "tuned"),
                       None)
        events = _read(profile, training, world, "tuned", None, None)
        tuned[world] = {"training_density": list(training),
                        "refit_vs_bundle_max_difference": gap, "normal": normal,
                        "events": events, "warned": {}}
        for m in CANDIDATES:
            tuned[world]["warned"][str(m)] = {
                kind: sorted(k for k, r in rows.items()
                             if density_reason(training, r["object_density"], m))
                for kind, rows in (("normal", normal), ("events", events))}
    passing = [m for m in CANDIDATES if sum(len(tuned[w]["warned"][str(m)]["normal"])
                                            for w in WORLDS) <= ALLOWED_TUNED_WARNINGS]
    decision = {"rule": f"smallest margin warning on <= {ALLOWED_TUNED_WARNINGS} of the 16 "
                        "tuned normal logs", "passing": passing,
                "chosen": passing[0] if passing else None}
    return {"tuned_logs": tuned, "decision": decision}


def _summary(rows: dict) -> dict:
    warned = [r["alert_rate"] for r in rows.values() if r["density_reason"]]
    silent = [r["alert_rate"] for r in rows.values() if not r["density_reason"]]
    mean = (lambda v: round(float(np.mean(v)), 4) if v else None)
    return {"warned_logs": len(warned), "logs": len(rows),
            "mean_alert_rate_warned": mean(warned), "mean_alert_rate_silent": mean(silent)}


def after_step(margin: float) -> dict:
    """Every column with the chosen margin (read only after the decision)."""
    out = {}
    for world in WORLDS:
        for column in COLUMNS:
            profile, training, gap = _profile(world, column)
            _, _, normal_dir, event_dir = COLUMNS[column]
            normal = _read(profile, training, world, normal_dir, _alert_rates(world, column),
                           margin)
            events = _read(profile, training, world, event_dir, None, margin)
            out[f"{world}/{column}"] = {
                "training_density": list(training),
                "refit_vs_bundle_max_difference": gap, "normal_summary": _summary(normal),
                "events_density_warned": sum(bool(r["density_reason"]) for r in events.values()),
                "events_existing_warned": sum(bool(r["existing_reasons"])
                                              for r in events.values()),
                "normal": normal, "events": events}
    return out


def shares_step() -> dict:
    """Class shares of each highway normal log against the tuned training logs' pooled ones
    (the guard's class-share check reads their total-variation distance)."""
    profile, _, _ = _profile("highway", "tuned")
    reference = np.asarray(profile.class_share)
    factor, slack = SHARE_MARGIN
    out = {"training": dict(zip(CLASSES, np.round(reference, 4).tolist())),
           "distance_limit_of_the_check": round(profile.class_distance * factor + slack, 4)}
    for column in ("tuned", "heldout"):
        alerts = _alert_rates("highway", column)
        for path in list_logs(LOGS / "highway" / COLUMNS[column][2]):
            log_shares = class_shares(class_counts(read_log(path)))
            out[f"{column}/{path.stem}"] = {
                "alert_rate": alerts[path.stem],
                "distance": round(share_distance(log_shares, reference), 4),
                "shares": dict(zip(CLASSES, np.round(log_shares, 4).tolist()))}
    return out


if __name__ == "__main__":
    if sys.argv[1] == "decide":
        merge_results(OUT, decide_step())
    elif sys.argv[1] == "after":       # after the decision (module docstring)
        chosen = json.loads(OUT.read_text())["decision"]["chosen"]
        if chosen is None:
            raise SystemExit("no margin passed the rule; nothing to measure")
        merge_results(OUT, {"margin": chosen, "columns": after_step(chosen)})
    elif sys.argv[1] == "shares":      # after the decision and its held-out reading
        merge_results(OUT, {"class_shares_after_decision": shares_step()})
    else:
        raise SystemExit(f"unknown step {sys.argv[1]!r}: decide | after | shares")
