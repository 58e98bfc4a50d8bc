"""Should the town's frame score read a pedestrian and the ego on a collision course
(``pedestrian_conflict``: time to conflict, post-encroachment time)? Designed on the round-20
enriched set, decided on a FRESH tuned set under :mod:`bench.experiments.driving_step_out_enriched`'s
rule, committed before the set was simulated.

**Why**: a step-out that walks on across the ego's lane when the ego is close is read by no
channel (round 19's diagnosis); ``pedestrian_reach`` (any pedestrian on the carriageway ahead,
the ego's speed over its distance) read it, but raised 9.6 % of the normal frames, and
wrong-way vehicles fell 0.834 -> 0.805 (round 20, rejected). A normal crossing and a step-out
both put a pedestrian on the carriageway ahead; what differs is the timing: the simulator
keeps normal pedestrians more than 2.9 m across from the ego whenever they are within 5.4 m
along its heading, while a step-out crosses right in front of it.

**The channel** (:func:`pedestrian_conflict`, 1/s, top 1, tail floor 0.02 1/s as
``path_reach``'s; pedestrians on the carriageway in the score's path,
``driving_step_out.road_pedestrians``): each observed pedestrian blob's velocity from its world
centroid now and :data:`TRACK_LAG_S` earlier (the nearest blob then, within 3 m/s), in the
ego's axes; the ego's arrival at it (distance ahead of the bumper over the closing speed) and
the post-encroachment gap then: how long before or after the arrival the pedestrian's straight
walk is within :data:`CONFLICT_HALF_M` of the ego's heading line (0: in it then). A pedestrian
the ego reaches within :data:`MAX_ARRIVAL_S` and misses by at most :data:`MAX_ENCROACHMENT_S`
scores ``1 / (arrival + gap)``; every other pedestrian 0 (:func:`time_to_conflict`).

**Design** (``design``: the round-20 enriched set's logs and its kept product frames
``W/enriched_product.npz``, the channel's tail fitted on the 6 training logs as calibration
does, each frame's product score before smoothing recovered from the kept smoothed one
(:func:`unsmoothed`) and the max over channels and the causal mean applied again; this
reproduces round 20's kept ``pedestrian_reach_channel`` frames to 5e-14). Pooled AUROC
change, step-out / wrong way, and the share of normal frames the variant raises:

* no limits (corridor 1.75 m): step-out 0.860 -> 0.914 (+0.054) but wrong way 0.833 -> 0.800
  (-0.033): the channel is nonzero on 4.5 % of the training frames, so any nonzero value
  scores about 3 tail units, and it raises 7.4 % of the normal frames;
* limits of 1.5 s, corridor 1.75 m: +0.034 / -0.008 (1.0 %);
* limits of 1.5 s, corridor 2.25 m: **+0.040 / -0.013** (1.7 %), all events +0.021, debris
  -0.005, stalled -0.005: the candidate, the variant with the widest margins on both of the
  rule's limits (step-out +0.03, other kinds -0.02);
* the candidate with velocities over 0.5 s: +0.038 / -0.012 (1.5 %);
* limits of 1.0 s: no training frame is nonzero, so the tail has no spread and the channel
  scores 0 everywhere (``TailScore``): the channel is only as sensitive as the training logs'
  closest calls (5 of 1,500 training frames are nonzero for the candidate).

**Fresh set** (seeds committed with this rule, before the set was simulated): the tuned
configuration, 250 frames a log, :data:`ALL_KINDS_LOGS` event logs with all four kinds (seed
:data:`ALL_KINDS_SEED`), :data:`STEP_OUT_ONLY_LOGS` step-out-only logs (seed
:data:`STEP_OUT_ONLY_SEED`), and the benchmark's 8 tuned normal logs (seed 502). Seeds 59 and
69 (``seed * 1000 + i``) are used by no benchmark or experiment (bench.driving: 1, 2, 502, 70,
570, 71, and 7-9 for timing; the experiments: 3, 19, 21, 29, 39, 49, 72, 79, 90, 503-508,
572, 904; the tests' tiny logs: 11-41 and 100-105).

**Rule, committed before the fresh set was simulated or scored**: round 20's
(:mod:`bench.experiments.driving_step_out_enriched`, commit 4554f21) with this candidate.
Adopt ``pedestrian_conflict_channel`` into the product if, with the tuned network recalibrated
on its 6 training logs with each scorer, pooled over the fresh set:

1. the step-out AUROC rises by at least 0.03 and the bootstrap 95 % interval of that rise
   (1000 draws over the event logs, each event set its own stratum, the normal logs in every
   draw) lies above 0;
2. the overall frame AUROC falls by no more than 0.005;
3. no other event kind's AUROC (debris, stalled vehicle, wrong way) falls by more than 0.02;
4. the alert rate on the 8 normal logs is at most 2x nominal (10 %);
5. a highway log's frame scores are identical to the product's.

Otherwise it is rejected and the product stays as it is. Only after the decision: the
benchmark's three town columns with the candidate (``columns``).

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_conflict --work D --models M design   # D: round 20's W
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_conflict --work W --models M score NAME   # product, pedestrian_conflict_channel
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_conflict --work W highway
    python -m bench.experiments.driving_conflict --work W decide
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_conflict --work W --models M columns COLUMN   # after the decision

Results under ``conflict`` in ``bench/results/driving_step_out.json``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
from scipy import ndimage

from bench.experiments import merge_results
from bench.experiments.driving_step_out import (HELDOUT_COLUMNS, OUT, STEP_OUT, TOWN, Work, add_work_arguments,
                                                column, product_scorer, road_pedestrians, work_from)
from bench.experiments.driving_step_out_confirm import kept_frames
from bench.experiments.driving_step_out_enriched import (ENRICHED_SETS, NORMAL_SET, STAGES, Trial, event_kinds,
                                                         run)
from core.metrics import auroc
from core.pooling import top_k_mean
from core.runtime import configure_threads
from driving.model.predictor import OcclusionPredictor
from driving.schema import PEDESTRIAN
from driving.scoring import frame_score as fs
from driving.scoring.surprise import causal_mean
from driving.warp import cell_offsets, ego_to_world

TRACK_LAG_S = 0.3                # a pedestrian's velocity: its world centroid now against this long ago
MAX_PEDESTRIAN_SPEED_MPS = 3.0   # a blob farther than this (plus a cell) then is another pedestrian
CONFLICT_HALF_M = 2.25           # the ego's half width, a pedestrian's and about 0.9 m
MAX_ARRIVAL_S = 1.5              # the ego reaches the pedestrian's distance within this ...
MAX_ENCROACHMENT_S = 1.5         # ... and the pedestrian is within this of its corridor then


def pedestrian_blobs(observed: np.ndarray, pose, meta) -> tuple[np.ndarray, np.ndarray]:
    """One frame's observed pedestrians as 4-connected blobs: ``(H, W)`` int labels (0: none,
    blob ``i`` is ``i + 1``) and their world centroids ``(n, 2)`` (m)."""
    forward, right = cell_offsets(meta)
    labels, n = ndimage.label(observed == PEDESTRIAN)
    if not n:
        return labels, np.zeros((0, 2))
    index = np.arange(1, n + 1)
    along, across = np.asarray(ndimage.mean(forward, labels, index)), np.asarray(ndimage.mean(right, labels, index))
    return labels, np.stack(ego_to_world(pose, along, across), 1)


def pedestrian_velocities(log, lag_s: float = TRACK_LAG_S) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per frame, its pedestrian blobs' labels (:func:`pedestrian_blobs`) and each blob's
    velocity in the frame's ego axes ``(n, 2)`` (forward, right; m/s): against the blob
    nearest its world centroid ``lag_s`` earlier; NaN where none is within
    :data:`MAX_PEDESTRIAN_SPEED_MPS` (and a cell) or the log is younger than ``lag_s``."""
    lag = max(1, int(round(lag_s * log.meta.rate_hz)))
    dt = lag / log.meta.rate_hz
    reach = MAX_PEDESTRIAN_SPEED_MPS * dt + log.meta.resolution_m
    poses = np.stack([log.ego_x, log.ego_y, log.ego_yaw], 1)
    blobs = [pedestrian_blobs(log.semantic[t], poses[t], log.meta) for t in range(len(log))]
    out = []
    for t, (labels, centroids) in enumerate(blobs):
        velocity = np.full((len(centroids), 2), np.nan)
        before = blobs[t - lag][1] if t >= lag else np.zeros((0, 2))
        if len(centroids) and len(before):
            distance = np.linalg.norm(centroids[:, None] - before[None], axis=2)      # (n, m)
            nearest = distance.argmin(1)
            dx, dy = ((centroids - before[nearest]) / dt).T                            # world m/s
            c, s = np.cos(poses[t, 2]), np.sin(poses[t, 2])
            matched = distance[np.arange(len(centroids)), nearest] <= reach
            velocity[matched] = np.stack([dx * c + dy * s, dx * s - dy * c], 1)[matched]
        out.append((labels, velocity))
    return out


def time_to_conflict(ahead_m, right_m, v_forward, v_right, ego_speed: float,
                     half_m: float = CONFLICT_HALF_M) -> tuple[np.ndarray, np.ndarray]:
    """When the ego reaches a pedestrian and how near its walk is to the ego then.

    Args:
        ahead_m, right_m: the pedestrian's distance ahead of the ego's bumper and across its
            heading line (m), each ``(n,)``.
        v_forward, v_right: its velocity in the ego's axes (m/s), ``(n,)``.
        ego_speed: the ego's speed (m/s).
        half_m: the half width of the corridor the ego sweeps.

    Returns:
        ``arrival`` ``(n,)`` s: the distance over the closing speed (inf: the ego does not
        close in), and ``gap`` ``(n,)`` s: how long before or after the arrival the
        pedestrian's straight walk is in the corridor (0: in it then; inf: it stands, or
        walks along, beside it) -- the post-encroachment time of the two paths.
    """
    closing = ego_speed - np.asarray(v_forward, np.float64)
    arrival = np.full(closing.shape, np.inf)
    np.divide(ahead_m, closing, out=arrival, where=closing > 0)
    lateral = right_m + v_right * np.where(np.isfinite(arrival), arrival, 0.0)
    outside = np.maximum(np.abs(lateral) - half_m, 0.0)
    standing = np.asarray(v_right) == 0
    gap = np.where((outside > 0) & standing, np.inf, 0.0)
    np.divide(outside, np.abs(v_right), out=gap, where=(outside > 0) & ~standing)
    return arrival, gap


def pedestrian_conflict(log, max_arrival_s: float = MAX_ARRIVAL_S, max_gap_s: float = MAX_ENCROACHMENT_S,
                        half_m: float = CONFLICT_HALF_M, lag_s: float = TRACK_LAG_S) -> np.ndarray:
    """How soon the ego and a pedestrian on the carriageway meet: ``1 / (arrival + gap)``
    (:func:`time_to_conflict`, 1/s) where the ego arrives within ``max_arrival_s`` and the
    gap is at most ``max_gap_s``, on that pedestrian's cells among ``road_pedestrians``; 0
    elsewhere (a pedestrian without a velocity too): ``(T, H, W)`` float32. The keywords'
    defaults are the candidate's; other values are the design's variants."""
    forward, right = cell_offsets(log.meta)
    on_road = road_pedestrians(log.semantic, log.meta)
    out = np.zeros(log.semantic.shape, np.float32)
    for t, (labels, velocity) in enumerate(pedestrian_velocities(log, lag_s)):
        if not len(velocity):
            continue
        index = np.arange(1, len(velocity) + 1)
        ahead = np.maximum(ndimage.minimum(forward, labels, index) - fs.EGO_FRONT_M, log.meta.resolution_m)
        across = np.asarray(ndimage.mean(right, labels, index))
        arrival, gap = time_to_conflict(ahead, across, velocity[:, 0], velocity[:, 1], float(log.ego_speed[t]),
                                        half_m)
        close = (arrival <= max_arrival_s) & (gap <= max_gap_s)                   # False where NaN
        value = np.where(close, 1.0 / np.where(close, arrival + gap, 1.0), 0.0)
        out[t] = np.where(on_road[t], np.concatenate([[0.0], value])[labels], 0.0)
    return out


def pedestrian_conflict_channel() -> fs.FrameScorer:
    """The product's channels and ``pedestrian_conflict`` (top 1, ``path_reach``'s floor)."""
    return fs.FrameScorer(fs.CHANNELS + (("pedestrian_conflict", False, 1),),
                          {**fs.MIN_SCALE, "pedestrian_conflict": fs.MIN_SCALE["path_reach"]},
                          {**fs.OBSERVED_CHANNELS, "pedestrian_conflict": pedestrian_conflict})


CANDIDATE = "pedestrian_conflict_channel"
ALL_KINDS_SEED, ALL_KINDS_LOGS = 59, 12
STEP_OUT_ONLY_SEED, STEP_OUT_ONLY_LOGS = 69, 16
FRESH_SETS = {**ENRICHED_SETS,
              "conflict_all_kinds": (ALL_KINDS_LOGS, ALL_KINDS_SEED, TOWN),
              "conflict_step_out": (STEP_OUT_ONLY_LOGS, STEP_OUT_ONLY_SEED, replace(TOWN, anomaly_kinds=STEP_OUT))}
FRESH = Trial("conflict", FRESH_SETS, ("conflict_all_kinds", "conflict_step_out"), CANDIDATE,
              {"product": product_scorer, CANDIDATE: pedestrian_conflict_channel})


# the design's variants: pedestrian_conflict's keywords (the candidate: its defaults)
DESIGN_VARIANTS = {"candidate": {},
                   "no_limits_corridor_1.75": {"max_arrival_s": np.inf, "max_gap_s": np.inf, "half_m": 1.75},
                   "corridor_1.75": {"half_m": 1.75},
                   "limits_1.0": {"max_arrival_s": 1.0, "max_gap_s": 1.0},
                   "velocity_over_0.5s": {"lag_s": 0.5}}


def unsmoothed(scores: np.ndarray, window: int) -> np.ndarray:
    """The frame scores before ``causal_mean(., window)`` (its inverse: the first ``window``
    frames from the growing means, each later one from the change of the mean and the score
    ``window`` frames before)."""
    raw = np.empty(len(scores))
    for t in range(len(scores)):
        if t < window:
            raw[t] = (t + 1) * scores[t] - t * scores[t - 1] if t else scores[0]
        else:
            raw[t] = window * (scores[t] - scores[t - 1]) + raw[t - window]
    return raw


def conflict_statistics(log, **variant) -> np.ndarray:
    """``(T,)`` the channel's frame statistic (top 1 over the scored object cells), as
    ``FrameScorer.observed_statistics`` computes it."""
    objects = fs.scored_objects(log.semantic, log.meta)
    return top_k_mean(pedestrian_conflict(log, **variant) * objects, 1, per_row=True)


def with_channel(product: dict, logs: dict, tail, window: int, **variant) -> tuple[np.ndarray, np.ndarray]:
    """``product``'s kept frames (``W/enriched_product.npz``) with the channel in the max over
    channels: per log the unsmoothed product score, the channel's ``tail`` score, their max,
    smoothed again. Returns the frame scores and whether the channel raised each frame."""
    scores, raised = np.empty(len(product["scores"])), np.zeros(len(product["scores"]), bool)
    for log_id, log in logs.items():
        sel = product["log_ids"] == log_id
        before = unsmoothed(product["scores"][sel], window)
        if not np.allclose(causal_mean(before, window), product["scores"][sel], rtol=0, atol=1e-9):
            raise RuntimeError(f"{log_id}: the kept scores are not smoothed over {window} frames")
        channel = tail(conflict_statistics(log, **variant))
        raised[sel] = channel > before + 1e-9
        scores[sel] = causal_mean(np.maximum(before, channel), window)
    return scores, raised


def design(work: Work) -> dict:
    """Each of :data:`DESIGN_VARIANTS` on the round-20 enriched set (module docstring): per
    kind the pooled AUROC of the product and with the variant, and the share of normal and
    step-out frames it raises (of their unsmoothed scores)."""
    product = kept_frames(work.root / "enriched_product.npz")
    smooth = OcclusionPredictor.load(work.models / "town").scoring_.smooth
    sets = ("enriched_all_kinds", "enriched_step_out", NORMAL_SET)
    logs = {f"{s}/{log.log_id}": log for s in sets for log in work.logs(s)}
    train = work.logs("train")
    labels, kinds = product["labels"], product["kinds"]
    out = {}
    for name, variant in DESIGN_VARIANTS.items():
        values = np.concatenate([conflict_statistics(log, **variant) for log in train])
        tail = fs.TailScore(fs.MIN_SCALE["path_reach"]).fit(values)
        scores, raised = with_channel(product, logs, tail, smooth, **variant)
        aurocs = {}
        for kind in ["all", *event_kinds(product)]:
            event = labels if kind == "all" else kinds == kind
            pool = event | ~labels
            aurocs[kind] = {"product": auroc(event[pool], product["scores"][pool]),
                            "variant": auroc(event[pool], scores[pool])}
        out[name] = {"keywords": {k: float(v) for k, v in variant.items()},
                     "training_frames_nonzero": float(np.mean(values > 0)),
                     "share_raised": {"normal": float(raised[~labels].mean()),
                                      "step_out": float(raised[kinds == STEP_OUT[0]].mean())},
                     "auroc": aurocs}
    return out


# after the decision: the benchmark's town columns -> (network, its training set, event set, normal set)
COLUMNS = {"tuned": ("town", "train", "tuned", "tuned_normal"),
           **{name: (*HELDOUT_COLUMNS[name], "heldout", "heldout_normal") for name in HELDOUT_COLUMNS}}


def benchmark_column(name: str, work: Work) -> dict:
    """After the decision: the candidate on the benchmark's town column ``name`` (its network
    recalibrated with the candidate on its training logs; the benchmark's event and normal
    logs), as ``driving_step_out.column`` computes it."""
    model, train, events, normal = COLUMNS[name]
    return column(work.calibrated(model, train, pedestrian_conflict_channel()), work, events, normal)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments.driving_conflict",
                                     description=__doc__.splitlines()[0])
    add_work_arguments(parser)
    parser.add_argument("stage", choices=("design", *STAGES, "columns"))
    parser.add_argument("name", nargs="?", help="score NAME (product, pedestrian_conflict_channel); "
                                                "columns COLUMN (tuned, heldout, heldout_native)")
    args = parser.parse_args(argv)
    wanted = {"score": FRESH.scorers, "columns": COLUMNS}.get(args.stage, {})
    if (args.name is None) != (not wanted) or (wanted and args.name not in wanted):
        parser.error(f"stage {args.stage} takes {'one of ' + ', '.join(wanted) if wanted else 'no name'}, "
                     f"got {args.name!r}")
    work = work_from(parser, args, FRESH_SETS)
    if args.stage in STAGES:
        run(args.stage, args.name, work, FRESH)
        return
    configure_threads()
    entries = {"design": design(work)} if args.stage == "design" else {args.name: benchmark_column(args.name, work)}
    print(json.dumps(entries, indent=1))
    merge_results(OUT, entries, under=(FRESH.key, "after_decision") if args.stage == "columns" else (FRESH.key,))


if __name__ == "__main__":
    main()
