"""Why pedestrian step-outs go unseen in the town's frame score: a set of logs with step-outs
alone, scored per frame with the benchmark's kept networks, and where each step-out's
pedestrian sits in the surprise maps.

Networks: ``bench.driving --worlds town --model-dir MODELS`` (``MODELS/town`` trained on the
tuned configuration's 6 normal logs, ``MODELS/town_heldout_native`` on the held-out
configuration's; ``--models MODELS``, default ``WORK/models``), recalibrated on their training
logs as the benchmark's reuse does (``OcclusionPredictor.calibrate``). The logs are simulated
under ``WORK/logs/<set>`` (``--work WORK``; round 19 ran the stages up to ``heldout`` with
``--work /tmp/r19-ped/step_out --models /tmp/r19-ped/models``) (the benchmark's sets with its
seeds, and so the same logs; the step-out sets with seeds no benchmark or earlier experiment
uses):

* ``step_out``: :data:`STEP_OUT_LOGS` logs of the tuned configuration (``SimConfig()``)
  whose events are all pedestrian step-outs (``SimConfig.anomaly_kinds``), seed
  :data:`STEP_OUT_SEED`;
* ``heldout_step_out``: the same of ``bench.driving.HELDOUT['town']``, seed
  :data:`HELDOUT_STEP_OUT_SEED`: frozen, simulated and scored only after the decision.

**Diagnosis** (``diagnose``): per step-out event (its pedestrian's cells per frame from the
simulator's object ids, :func:`event_cells`), over its labelled frames: where the pedestrian
is (ahead, across), whether its observed cells are in the path the score reads, in the ego's
lane (``path_reach``'s), among the scored object cells, revealed this frame; per channel the
tail score of the pedestrian's own cells (the channel's top-k mean over them alone) against
the frame's; which channel holds the frame's score; and the frame score against the alert
threshold and against the normal frames' scores.

What the diagnosis found (``diagnosis`` in the JSON; tuned network, threshold 4.28; 24 logs,
28 step-outs, 995 labelled frames): step-out frame AUROC 0.817 against the normal frames of
the same logs (0.871 against the 8 tuned normal logs), 22 of 28 events alerted. The
pedestrian is in the ego's lane (``path_reach``'s 1.6 m) in 52 % of the labelled frames;
there ``path_reach`` holds the frame's score (425 of 522 frames; the pedestrian's tail 4.6)
and those frames rank at 0.90 (their share of normal frames below them). In 44 % (437
frames) it is in the path the score reads but out of the lane -- it walks on across the
oncoming lane, and does so mostly when the ego is close (0-10 m ahead: 22 % of frames in
the lane) --, and there nothing reads it: ``path_reach`` is 0, to the network it is one
more pedestrian (its own ``object_recon`` tail 0.3, holding that channel in 1 % of frames;
``object_context`` 1.2, ``revealed`` 0.3); those frames rank at 0.73, 16 % alerted. Far
in the lane (20-30 m) the frames rank at 0.83, 9 % alerted: ``path_reach``'s tail (3.0
units there) is shared with the obstacles a straight lane sweeps over at corners, which
reach 2.6 1/s in normal drives (pedestrians alone: 1.2 1/s, and in 0.9 % of the training
frames against 2.5 % for both; computed from the observed grids before this rule, with
single-channel AUROCs of pedestrian corridors on these logs: lane 0.75, lane and 3.5 m to
its left 0.87, 5.5 m either side 0.85).

**Rule, committed before any candidate is run.** Two candidates, each aimed at that cause
(a pedestrian on the road beside the ego's lane is read by no channel), both reading the
observed grids alone (:func:`road_pedestrians`: a pedestrian cell in the score's path,
``ego_path``, whose observed layout within 1 m is at least half road or lane marking --
on the carriageway, not on a sidewalk):

* ``road_pedestrians_in_path_reach``: ``path_reach`` reads those pedestrians too (the ego's
  speed over their distance ahead), besides the pedestrians and obstacles in its lane;
* ``pedestrian_reach_channel``: ``path_reach`` as it is, and those pedestrians as a channel
  of their own (``pedestrian_reach``, top 1, tail floor 0.02 1/s as ``path_reach``'s), whose
  tail is fitted on pedestrians alone.

(a) A candidate is adopted if, with the tuned network (``MODELS/town``) recalibrated with
it on the benchmark's 6 training logs, (1) the step-out AUROC on the tuned step-out set
(against the normal frames of those logs, as the benchmark's per-kind AUROC) is at least
0.05 above the product's (0.817: >= 0.867), (2) on the benchmark's tuned town column (its 4
event logs and 8 normal logs, this harness) the frame AUROC is not below the product's and
(3) the normal-log alert rate is at most 2x nominal (10 %). If both pass, the one with the
higher step-out AUROC. (c) Its frame scores of a highway log must equal the product's
(:func:`highway_identity`); a candidate that changes them is not adopted this round (no time
to rerun the highway benchmark). (b) The held-out step-out set (``heldout_step_out``) and the
benchmark's held-out columns are scored only after the decision is written, reported, never
used to choose.

**Result** (``candidates``, ``decision``): **neither adopted**. The product's row is read from
the diagnosis and the committed benchmark (``product_from_runs``). ``pedestrian_reach_channel``:
step-out 0.817 -> 0.878 (passes), but the tuned town column 0.8911 -> 0.8895 (fails: debris
0.947 -> 0.944, wrong way 0.873 -> 0.861, step-out 0.839 -> 0.867; events alerted 5 of 7
against 7), normal-log alerts 4.35 %. ``road_pedestrians_in_path_reach``: step-out 0.846
(+0.029, fails), tuned column 0.8849 (fails), alerts 5.9 %. Both leave a highway log's scores
identical. (Events in ``candidates`` are runs of labelled frames, as ``frame_metrics`` counts
them: the 28 step-outs make 43 runs, a pedestrian hidden for a frame splitting one.)

After the decision (``after_decision_heldout``; 27 step-outs in the held-out set): step-out
AUROC with the tuned / the held-out configuration's own network: product 0.827 / 0.812,
``pedestrian_reach_channel`` 0.875 / 0.861, ``road_pedestrians_in_path_reach`` 0.847 /
0.816; the benchmark's held-out column 0.854 (benchmark) / 0.877 / 0.870, its own-training
column 0.825 / 0.846 / 0.834. The rejected channel is better on all of it.

**Scorers pinned**: every stage here scores with :func:`five_channel_scorer` (the product's
channels when these results were made: ``revealed``, ``object_context``, ``object_recon``,
``lead_closing``, ``path_reach``) as ``product`` and as the candidates' base, not with the
product's default ``FrameScorer()``, which has since gained ``pedestrian_conflict``: a rerun
reproduces the committed results. ``highway_identity`` judges a candidate against the scorer
it was judged against (its ``base``).

**Confirmation on fresh tuned logs**: :mod:`bench.experiments.driving_step_out_confirm`
(``confirmation`` in the JSON): the rejection stands.

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_step_out --work W --models M diagnose
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_step_out --work W --models M candidate NAME   # each, and "product"
    python -m bench.experiments.driving_step_out decide
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_step_out --work W --models M heldout NAME COLUMN   # after the decision
"""
import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

import numpy as np

from bench.driving import HELDOUT, MODEL, TUNED, frames_by_kind, normal_alert_rate
from bench.driving_logs import kept_logs
from bench.experiments import merge_results
from bench.experiments.driving_five_channels import (FIVE_CHANNEL_MIN_SCALE, FIVE_CHANNEL_OBSERVED, FIVE_CHANNELS,
                                                     five_channel_scorer)
from core.metrics import auroc
from core.runtime import configure_threads
from driving.evaluate import frame_metrics
from driving.model.predictor import OcclusionPredictor
from driving.scoring import frame_score as fs
from driving.scoring.conflict import road_pedestrians
from driving.scoring.path import bumper_distance
from driving.scoring.surprise import score_log
from driving.sim.simulator import Simulator
from driving.warp import cell_offsets, not_passed

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
OUT = RESULTS / "driving_step_out.json"
FRAMES = 250
STEP_OUT = ("pedestrian_step_out",)
# seed * 1000 + i; distinct from bench.driving's 1, 2, 502, 70, 570, 71 and every earlier
# experiment's (3, 21, 72, 90, 503-508, 572, 904, ...)
STEP_OUT_SEED, HELDOUT_STEP_OUT_SEED = 19, 79
STEP_OUT_LOGS = 24            # about one step-out a 25 s log: >= 20 events
TOWN = TUNED["town"]
HELD = HELDOUT["town"]


def normal(config):
    return replace(config, anomaly_interval_s=0.0)


# set name -> (logs, seed, configuration): the benchmark's town sets (bench.driving.run_world)
# and the step-out sets
SETS = {"train": (6, 1, normal(TOWN)), "tuned": (4, 2, TOWN), "tuned_normal": (8, 502, normal(TOWN)),
        "step_out": (STEP_OUT_LOGS, STEP_OUT_SEED, replace(TOWN, anomaly_kinds=STEP_OUT)),
        "native_train": (6, HELD["seed"] + 1, normal(HELD["config"])),
        "heldout": (4, HELD["seed"], HELD["config"]),
        "heldout_normal": (8, HELD["seed"] + 500, normal(HELD["config"])),
        "heldout_step_out": (STEP_OUT_LOGS, HELDOUT_STEP_OUT_SEED,
                             replace(HELD["config"], anomaly_kinds=STEP_OUT)),
        # the highway check: the benchmark's first 3 training logs and first event log
        "highway_train": (3, 1, normal(TUNED["highway"])), "highway_tuned": (1, 2, TUNED["highway"])}


@dataclass(frozen=True)
class Work:
    """Where a stage finds its logs and networks and keeps what it writes (``--work``,
    ``--models``).

    Attributes:
        root: set ``name``'s logs live in ``root/logs/<name>`` (simulated there unless that
            folder already holds them, ``bench.driving_logs.kept_logs``); a stage's kept frame
            scores and rows go to ``root`` too.
        models: the benchmark's kept networks (``bench.driving --model-dir``): ``models/town``,
            ``models/town_heldout_native``; only read.
        sets: set name -> ``(logs, seed, configuration)`` (:data:`SETS`; another experiment
            adds its own).
    """
    root: Path
    models: Path
    sets: Mapping = field(default_factory=lambda: MappingProxyType(SETS))

    def logs(self, name: str) -> list:
        """Set ``name``'s logs, in order."""
        n, seed, config = self.sets[name]
        return kept_logs(self.root / "logs" / name, n, FRAMES, seed, config)

    def calibrated(self, model: str, train: str, frame_scorer: fs.FrameScorer) -> OcclusionPredictor:
        """The kept network ``models/<model>`` recalibrated on set ``train`` (as the
        benchmark's reuse does), with ``frame_scorer``'s channels (unfitted)."""
        return OcclusionPredictor.load(self.models / model).calibrate(self.logs(train), frame_scorer)


class _EventCellsSimulator(Simulator):
    """The simulator, keeping every frame's cells of each injected event's object."""

    def _inject(self, scene, rng, route, ego_s, n_frames):
        self.events_ = super()._inject(scene, rng, route, ego_s, n_frames)
        self.object_cells_ = {event["object"]: [] for event in self.events_}
        return self.events_

    def _render(self, world, boxes, pose, layout=None):
        classes, ids = super()._render(world, boxes, pose, layout)
        for oid, cells in self.object_cells_.items():
            cells.append(ids == oid)
        return classes, ids


def event_cells(work: Work, name: str, index: int, log) -> list[dict]:
    """Set ``name``'s log ``index`` simulated again, keeping its events' object cells: per
    event ``{"cells": (T, H, W) bool (truth, seen or not), "labelled": (T,) bool}``, its
    frames labelled as the simulator labels them (the object observed and not passed). The
    log simulated again must be ``log`` (checked)."""
    _, seed, config = work.sets[name]
    sim = _EventCellsSimulator(config, seed * 1000 + index)
    again = sim.simulate(len(log), log.log_id)
    if not np.array_equal(again.semantic, log.semantic):
        raise RuntimeError(f"{name}/{log.log_id}: simulated again, the log differs")
    ahead = sim.raycaster.in_range.reshape(log.meta.grid_shape) & not_passed(log.meta)
    out = []
    for event in sim.events_:
        cells = np.stack(sim.object_cells_[event["object"]])
        labelled = event["active"] & (cells & ahead & log.visible).any((1, 2))
        out.append({"kind": event["kind"], "cells": cells, "labelled": labelled})
    return out


def channel_keys(scorer) -> list[str]:
    return [scorer.key(name, norm) for name, norm, _ in scorer.channels]


def pedestrian_frames(scorer, result, log, cells, labelled) -> list[dict]:
    """Per labelled frame: where the event's pedestrian is and what each channel makes of it."""
    forward, right = cell_offsets(log.meta)
    path, lane = fs.ego_path(log.meta), fs.ego_lane(log.meta)
    tails = scorer.tail_scores(result.score_maps)                   # (T, channels)
    rows = []
    for t in np.flatnonzero(labelled):
        seen = cells[t] & log.visible[t]
        scored_cells = seen & result.object_cells[t]
        own = {}
        for i, (key, (_, _, k)) in enumerate(zip(channel_keys(scorer), scorer.channels)):
            values = result.score_maps[key][t][scored_cells]
            stat = np.sort(values)[::-1][:k].sum() / k if values.size else 0.0
            own[key] = float(scorer.tails_[i](np.array([stat]))[0])
        rows.append({
            "frame": int(t), "ahead_m": float(forward[seen].min()) if seen.any() else None,
            "right_m": float(right[seen].mean()) if seen.any() else None,
            "cells_seen": int(seen.sum()), "cells_in_path": int((seen & path).sum()),
            "cells_in_lane": int((seen & lane).sum()), "cells_scored": int(scored_cells.sum()),
            "cells_revealed": int((seen & (result.revealed_error[t] > 0)).sum()),
            "pedestrian_tails": own,
            "frame_tails": dict(zip(channel_keys(scorer), tails[t].round(3).tolist())),
            "top_channel": channel_keys(scorer)[int(tails[t].argmax())],
            "raw_score": float(result.raw_score[t]), "score": float(result.score[t])})
    return rows


AHEAD_BANDS_M = (0.0, 10.0, 20.0, 30.0, np.inf)


def share_below(scores: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Per score, the share of ``normal`` scores below it (ties count half): the AUROC is the
    mean of this over the event frames, so it says which frames pull the AUROC down."""
    normal = np.sort(normal)
    below = np.searchsorted(normal, scores, side="left")
    ties = np.searchsorted(normal, scores, side="right") - below
    return (below + 0.5 * ties) / len(normal)


def summarise(rows: list[dict], keys: list[str], threshold: float) -> dict:
    """Over pedestrian frames ``rows`` (each with its ``share_below``): where the pedestrian
    is, which channel sees it, and how the frame score ranks."""
    def mean(values):
        return round(float(np.mean(values)), 3) if len(values) else None

    seen = [r for r in rows if r["cells_seen"]]
    out = {"frames": len(rows),
           "share_in_path": mean([r["cells_in_path"] > 0 for r in rows]),
           "share_in_lane": mean([r["cells_in_lane"] > 0 for r in rows]),
           "share_scored": mean([r["cells_scored"] > 0 for r in rows]),
           "share_revealed_this_frame": mean([r["cells_revealed"] > 0 for r in rows]),
           "mean_cells_seen": mean([r["cells_seen"] for r in seen]),
           "alerted": mean([r["score"] > threshold for r in rows]),
           "auroc_contribution": mean([r["share_below"] for r in rows]),
           "median_score": round(float(np.median([r["score"] for r in rows])), 3) if rows else None,
           "top_channel": {k: sum(r["top_channel"] == k for r in rows) for k in keys},
           "pedestrian_tail_mean": {k: mean([r["pedestrian_tails"][k] for r in rows]) for k in keys},
           "frame_tail_mean": {k: mean([r["frame_tails"][k] for r in rows]) for k in keys},
           "pedestrian_holds_channel": {k: mean([r["pedestrian_tails"][k] >= r["frame_tails"][k] - 1e-3
                                                 and r["frame_tails"][k] > 0 for r in rows]) for k in keys}}
    return out


def diagnose(work: Work, model: str = "town", train: str = "train", step_set: str = "step_out",
             normal_set: str = "tuned_normal") -> tuple[dict, list[dict]]:
    """The diagnosis of the module docstring: set ``step_set`` scored by the network ``model``
    recalibrated on ``train``; ``normal_set``: normal logs to rank the frames against too.

    Returns:
        The summary, and the pedestrian's rows per labelled frame (:func:`pedestrian_frames`).
    """
    pred = work.calibrated(model, train, five_channel_scorer())
    scorer, threshold = pred.scoring_.frame_scorer, float(pred.calibration_.threshold_)
    keys = channel_keys(scorer)
    rows, per_event, scores, labels, unlabelled = [], [], [], [], 0
    for i, log in enumerate(work.logs(step_set)):
        result = score_log(pred, log)
        scores.append(result.score)
        labels.append(log.anomaly)
        found = event_cells(work, step_set, i, log)
        if not np.array_equal(np.any([e["labelled"] for e in found], 0) if found else log.anomaly,
                              log.anomaly):
            raise RuntimeError(f"{step_set}/{log.log_id}: the events' frames are not the log's labels")
        for e in found:
            if not e["labelled"].any():
                unlabelled += 1           # never observed before it was passed: no frames
                continue
            event_rows = pedestrian_frames(scorer, result, log, e["cells"], e["labelled"])
            for r in event_rows:
                r["log"] = log.log_id
            per_event.append(event_rows)
            rows += event_rows
    flat, truth = np.concatenate(scores), np.concatenate(labels)
    normal_same_logs = flat[~truth]
    normal_logs = np.concatenate([score_log(pred, log).score for log in work.logs(normal_set)])
    for r in rows:
        r["share_below"] = float(share_below(np.array([r["score"]]), normal_same_logs)[0])
    bands = {f"{lo:g}-{hi:g} m": [r for r in rows if r["ahead_m"] is not None and lo <= r["ahead_m"] < hi]
             for lo, hi in zip(AHEAD_BANDS_M[:-1], AHEAD_BANDS_M[1:])}
    return {
        "model": model, "threshold": threshold, "logs": len(scores), "events": len(per_event),
        "events_never_labelled": unlabelled,
        "events_alerted": sum(any(r["score"] > threshold for r in e) for e in per_event),
        "auroc_vs_normal_frames_of_these_logs": auroc(truth, flat),
        "auroc_vs_normal_logs": auroc(np.r_[np.ones(truth.sum(), bool), np.zeros(len(normal_logs), bool)],
                                      np.r_[flat[truth], normal_logs]),
        "normal_frames_alert_rate": {"these_logs": float(np.mean(normal_same_logs > threshold)),
                                     normal_set: float(np.mean(normal_logs > threshold))},
        "all_frames": summarise(rows, keys, threshold),
        "by_distance_ahead": {band: summarise(r, keys, threshold) for band, r in bands.items()},
        "in_lane": summarise([r for r in rows if r["cells_in_lane"]], keys, threshold),
        "scored_not_in_lane": summarise([r for r in rows if r["cells_scored"] and not r["cells_in_lane"]],
                                        keys, threshold),
        "not_scored": summarise([r for r in rows if not r["cells_scored"]], keys, threshold),
        "per_event": [{"log": e[0]["log"], "first_frame": e[0]["frame"], **summarise(e, keys, threshold)}
                      for e in per_event]}, rows


def set_frames(pred, event_logs: list, prefix: str = "") -> dict[str, np.ndarray]:
    """``pred``'s frame scores over ``event_logs``: ``(N,)`` arrays ``scores``, ``labels``,
    ``kinds`` (``""`` on normal frames) and ``log_ids`` (``prefix`` + the log's id: sets
    number their logs alike), the logs in order."""
    scores, labels, kinds, log_ids = [], [], [], []
    for log in event_logs:
        scores.append(score_log(pred, log).score)
        labels.append(log.anomaly)
        kinds += [k or "" for k in log.anomaly_kind]
        log_ids += [prefix + log.log_id] * len(log)
    return {"scores": np.concatenate(scores), "labels": np.concatenate(labels),
            "kinds": np.asarray(kinds), "log_ids": np.asarray(log_ids)}


def column(pred, work: Work, event_set: str, normal_set: str | None = None) -> dict:
    """``pred``'s frame metrics on ``work``'s set ``event_set`` (:func:`column_metrics`)."""
    return column_metrics(pred, set_frames(pred, work.logs(event_set)),
                          None if normal_set is None else work.logs(normal_set))


def column_metrics(pred, frames: dict, normal_logs: list | None = None) -> dict:
    """``pred``'s frame metrics on ``frames`` (:func:`set_frames`) as
    ``bench.driving.evaluate_logs`` computes them (all frames and by kind; alerts at its
    calibrated threshold) and its alert rate on ``normal_logs``
    (``bench.driving.normal_alert_rate``), over nominal. The committed JSON's ``per_log`` is a
    list of rates rounded to 3 places; a rerun writes the benchmark's dict (log id -> rate)
    and its ``n_frames``."""
    scores, labels, kinds, log_ids = (frames[k] for k in ("scores", "labels", "kinds", "log_ids"))
    alerts = pred.calibration_.alerts(scores)
    out = {"threshold": float(pred.calibration_.threshold_),
           "frames": frame_metrics(labels, scores, alerts, log_ids),
           "by_kind": frames_by_kind(labels, scores, alerts, log_ids, kinds)}
    if normal_logs is None:
        return out
    normal = normal_alert_rate(pred, normal_logs)
    out["normal_logs"] = {**normal, "over_nominal": normal["alert_rate"] / pred.contamination}
    return out


def pedestrian_reach(log) -> np.ndarray:
    """The ego's speed over the distance ahead of :func:`road_pedestrians` (1/s, as
    ``path_reach``), 0 elsewhere: ``(T, H, W)`` float32."""
    reach = np.asarray(log.ego_speed, np.float32)[:, None, None] / bumper_distance(log.meta)[None]
    return np.where(road_pedestrians(log.semantic, log.meta), reach, 0.0).astype(np.float32)


def reach_with_road_pedestrians(log) -> np.ndarray:
    """``path_reach`` that also reads :func:`road_pedestrians`."""
    return np.maximum(fs.OBSERVED_CHANNELS["path_reach"](log), pedestrian_reach(log))


def road_pedestrians_in_path_reach() -> fs.FrameScorer:
    """:func:`five_channel_scorer` whose ``path_reach`` also reads :func:`road_pedestrians`."""
    channels = tuple(c if c[0] != "path_reach" else ("path_reach_road", False, 1) for c in FIVE_CHANNELS)
    observed = {"lead_closing": FIVE_CHANNEL_OBSERVED["lead_closing"],
                "path_reach_road": reach_with_road_pedestrians}
    floors = {**FIVE_CHANNEL_MIN_SCALE, "path_reach_road": FIVE_CHANNEL_MIN_SCALE["path_reach"]}
    return fs.FrameScorer(channels, floors, observed)


def pedestrian_reach_channel() -> fs.FrameScorer:
    """:func:`five_channel_scorer` and :func:`pedestrian_reach` as a channel of its own."""
    return five_channel_scorer((("pedestrian_reach", False, 1),),
                               {"pedestrian_reach": FIVE_CHANNEL_MIN_SCALE["path_reach"]},
                               {"pedestrian_reach": pedestrian_reach})


CANDIDATES = {"product": five_channel_scorer, "road_pedestrians_in_path_reach": road_pedestrians_in_path_reach,
              "pedestrian_reach_channel": pedestrian_reach_channel}
MIN_STEP_OUT_GAIN, MAX_ALERTS_OVER_NOMINAL = 0.05, 2.0


def candidate(name: str, work: Work) -> dict:
    """Candidate ``name`` (:data:`CANDIDATES`) with the tuned network recalibrated with it: the
    step-out set, the benchmark's tuned column and the highway check."""
    pred = work.calibrated("town", "train", CANDIDATES[name]())
    step_out = column(pred, work, "step_out")
    tuned = column(pred, work, "tuned", "tuned_normal")
    return {"step_out": step_out["by_kind"]["pedestrian_step_out"], "step_out_threshold": step_out["threshold"],
            "tuned": tuned, "highway": highway_identity(CANDIDATES[name](), five_channel_scorer(), work)}


def product_from_runs(kept: dict) -> dict:
    """The product's row without running it again: its step-out AUROC from ``diagnose`` (the
    same calibration and scoring as :func:`candidate`) and its tuned town column as the
    benchmark measured it for the five pinned channels (``product_tuned`` in this experiment's
    results: ``bench/results/driving_town.json`` of round 16, which this run's networks
    reproduce, frame AUROC 0.8911 and normal-log alerts 4.1 %, to the digit; that file has
    since gained a sixth channel and 12 event logs a column)."""
    diagnosis, tuned = kept["diagnosis"], kept["product_tuned"]
    return {"step_out": {"auroc": diagnosis["auroc_vs_normal_frames_of_these_logs"],
                         "n_events": diagnosis["events"], "detected": diagnosis["events_alerted"]},
            "tuned": {"frames": tuned["frames"], "normal_logs": tuned["normal_logs"]},
            "highway": {"identical_scores": True},
            "source": f"diagnosis; {tuned['source']}"}


def decide(results: dict) -> dict:
    """The rule of the module docstring over the candidates' results (``"product"`` among them)."""
    base = results["product"]
    verdicts = {}
    for name, r in results.items():
        if name == "product":
            continue
        checks = {"step_out_gain": r["step_out"]["auroc"] - base["step_out"]["auroc"] >= MIN_STEP_OUT_GAIN,
                  "tuned_auroc_not_lower": r["tuned"]["frames"]["auroc"] >= base["tuned"]["frames"]["auroc"],
                  "normal_alerts": r["tuned"]["normal_logs"]["over_nominal"] <= MAX_ALERTS_OVER_NOMINAL,
                  "highway_identical": r["highway"]["identical_scores"]}
        verdicts[name] = {"passes": all(checks.values()), **checks}
    passing = [n for n, v in verdicts.items() if v["passes"]]
    adopted = max(passing, key=lambda n: results[n]["step_out"]["auroc"]) if passing else None
    return {"verdicts": verdicts, "adopted": adopted}


HELDOUT_COLUMNS = {"heldout": ("town", "train"), "heldout_native": ("town_heldout_native", "native_train")}


def heldout(name: str, column_name: str, work: Work) -> dict:
    """After the decision: candidate ``name`` on the held-out configuration with the network of
    ``column_name`` (``heldout``: the tuned network, the benchmark's held-out column;
    ``heldout_native``: the held-out configuration's own): the held-out step-out set, and the
    benchmark's held-out event and normal logs (not for the product: the benchmark's own)."""
    model, train = HELDOUT_COLUMNS[column_name]
    pred = work.calibrated(model, train, CANDIDATES[name]())
    step_out = column(pred, work, "heldout_step_out")
    out = {"step_out": step_out["by_kind"]["pedestrian_step_out"], "step_out_threshold": step_out["threshold"]}
    if name != "product":
        out["benchmark_logs"] = column(pred, work, "heldout", "heldout_normal")
    return out


def highway_identity(frame_scorer: fs.FrameScorer, base: fs.FrameScorer, work: Work) -> dict:
    """Does ``frame_scorer`` score the highway as ``base`` (the scorer it is judged against,
    both unfitted) does? A network trained briefly on 3 normal highway logs (1 epoch of 5
    steps: the check is of the scoring, any network will do), calibrated on them once with
    ``base`` and once with ``frame_scorer``; both score the benchmark's first highway event log."""
    train = work.logs("highway_train")
    pred = OcclusionPredictor(epochs=1, max_steps_per_epoch=5, random_state=0, progress=False,
                              **MODEL).fit(train).calibrate(train, base)
    log = work.logs("highway_tuned")[0]
    product, threshold = score_log(pred, log).score, float(pred.calibration_.threshold_)
    candidate = score_log(pred.calibrate(train, frame_scorer), log).score
    return {"frames": len(log), "identical_scores": bool(np.array_equal(product, candidate)),
            "thresholds": [threshold, float(pred.calibration_.threshold_)],
            "max_abs_difference": float(np.max(np.abs(product - candidate)))}


def add_work_arguments(parser: argparse.ArgumentParser) -> None:
    """``--work`` and ``--models``, :class:`Work`'s folders (:func:`work_from`)."""
    parser.add_argument("--work", type=Path, default=None,
                        help="folder of the logs (WORK/logs/<set>, simulated there unless kept) and "
                             "of the kept frame scores")
    parser.add_argument("--models", type=Path, default=None,
                        help="the benchmark's kept networks (bench.driving --model-dir; default WORK/models)")


def work_from(parser: argparse.ArgumentParser, args, sets: Mapping | None = None) -> Work:
    """The :class:`Work` that ``args`` name (``--work`` is needed), with ``sets`` (None:
    :data:`SETS`)."""
    if args.work is None:
        parser.error(f"stage {args.stage} needs --work")
    given = {} if sets is None else {"sets": MappingProxyType(sets)}
    return Work(args.work, args.models or args.work / "models", **given)


def parse_stage(argv, prog: str, doc: str, stages: tuple, named: Mapping[str, tuple],
                sets: Mapping, options=None) -> tuple[argparse.Namespace, Work]:
    """The command line of the experiments built on this one: ``--work``/``--models``
    (:func:`add_work_arguments`), a stage of ``stages``, and ``NAME``, which each stage of
    ``named`` (stage -> the names it takes) needs and the other stages refuse (a usage
    error either way, naming what the stage takes).

    Args:
        options: ``options(parser)`` adds the experiment's own options (None: none).

    Returns:
        The parsed arguments and their :class:`Work` over ``sets``.
    """
    parser = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    add_work_arguments(parser)
    parser.add_argument("stage", choices=stages)
    parser.add_argument("name", nargs="?", help="; ".join(f"{stage} NAME ({', '.join(names)})"
                                                          for stage, names in named.items()))
    if options is not None:
        options(parser)
    args = parser.parse_args(argv)
    names = named.get(args.stage)
    if names is None and args.name is not None:
        parser.error(f"stage {args.stage} takes no NAME, got {args.name!r}")
    if names is not None and args.name not in names:
        parser.error(f"stage {args.stage} needs NAME: one of {', '.join(names)}"
                     + (f", got {args.name!r}" if args.name is not None else ""))
    return args, work_from(parser, args, sets)


def check_names(parser: argparse.ArgumentParser, args) -> None:
    """A usage error unless ``args.names`` are what ``args.stage`` takes: ``candidate NAME``
    (:data:`CANDIDATES`), ``heldout NAME COLUMN`` (:data:`HELDOUT_COLUMNS`), none for the
    other stages."""
    wanted = {"candidate": ("NAME",), "heldout": ("NAME", "COLUMN")}.get(args.stage, ())
    if len(args.names) != len(wanted):
        parser.error(f"stage {args.stage} takes {' '.join(wanted) or 'no names'}, got {len(args.names)}")
    choices = {"NAME": CANDIDATES, "COLUMN": HELDOUT_COLUMNS}
    for role, value in zip(wanted, args.names):
        if value not in choices[role]:
            parser.error(f"{role} {value!r}: one of {', '.join(choices[role])}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments.driving_step_out",
                                     description=__doc__.splitlines()[0])
    add_work_arguments(parser)
    parser.add_argument("stage", choices=("diagnose", "candidate", "decide", "heldout"))
    parser.add_argument("names", nargs="*", help="candidate NAME, heldout NAME COLUMN")
    args = parser.parse_args(argv)
    check_names(parser, args)
    if args.stage == "decide":
        kept = json.loads(OUT.read_text())
        results = {"product": product_from_runs(kept), **kept["candidates"]}
        decision = decide(results)
        print(json.dumps(decision, indent=1))
        merge_results(OUT, {"decision": decision})
        return
    work = work_from(parser, args)
    configure_threads()
    if args.stage == "diagnose":
        result, frames = diagnose(work)
        print(json.dumps({k: v for k, v in result.items() if k != "per_event"}, indent=1))
        merge_results(OUT, {"diagnosis": result})
        merge_results(work.root / "diagnosis_frames.json", {"step_out": frames})
    elif args.stage == "candidate":
        result = candidate(args.names[0], work)
        print(json.dumps(result, indent=1))
        merge_results(OUT, {args.names[0]: result}, under=("candidates",))
    elif args.stage == "heldout":            # after the decision (module docstring)
        name, column_name = args.names
        result = heldout(name, column_name, work)
        print(json.dumps(result, indent=1))
        merge_results(OUT, {column_name: result}, under=("after_decision_heldout", name))


if __name__ == "__main__":
    main()
