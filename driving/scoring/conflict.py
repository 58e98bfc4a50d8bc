"""The pedestrian-conflict channel: a pedestrian on the carriageway and the ego on a collision
course, read from the observed grids alone (the frame score's ``pedestrian_conflict``).

The surrogate-safety measures of traffic engineering, per observed pedestrian: when the ego
reaches it (time to collision) and how near in time its walk is to the ego's corridor then
(post-encroachment time). A normal crossing happens ahead of a distant ego, or clears its
corridor well before the ego gets there; a pedestrian stepping out from behind a parked car
crosses right in front of a moving ego -- and often walks on out of the ego's lane just before
the ego arrives, where ``path_reach`` (objects in the lane) no longer reads it.

Each pedestrian is an observed 4-connected blob; its velocity is the change of its world
centroid over :data:`TRACK_LAG_S` (the nearest blob then), in the ego's axes. A pedestrian
on the carriageway (:func:`road_pedestrians`) that the ego reaches within
:data:`MAX_ARRIVAL_S` and whose straight walk is within :data:`MAX_ENCROACHMENT_S` of the
ego's corridor then scores ``1 / (arrival + gap)`` (1/s); every other cell 0. The limits keep
the channel to close calls: without them (and with the corridor narrowed to 1.75 m, the
design's ``no_limits_corridor_1.75``) it is nonzero on 4.5 % of normal training frames, each
such frame scores about 3 tail units, and frames with a normal crossing outrank events the
other channels read (tuned town, round 20's enriched set: wrong-way vehicles 0.833 -> 0.800);
with them 5 of 1,500 training frames are nonzero (``bench/experiments/driving_conflict.py``).

The channel reads a moving ego: a frame where the ego drives slower than
:data:`MIN_EGO_SPEED_MPS`, a walking pace, scores 0 -- there the pedestrian's own walk does the
closing (one walking towards a car waiting at a crossing is ordinary), and a pedestrian can
keep clear of a car no faster than they walk. On the 36 simulated town logs the benchmark
reads the ego drives at 5.1 m/s or more, and the gate changes no map there.

Limits:
    * Velocities are resolved to a cell over :data:`TRACK_LAG_S`: 0.5 m / 0.3 s = 1.67 m/s on
      the town grid. A centroid moves by a fraction of a cell when a blob's cells change, so a
      standing pedestrian whose blob changes shape as the ego passes can read as walking.
    * A pedestrian beside the bumper is scored too: the path reaches ``PASSED_M`` behind the
      ego, and a pedestrian's distance from the bumper is clamped to a cell, so one beside it
      scores up to the ego's speed over a cell (16 /s at 8 m/s). Scoring only pedestrians
      ahead of the bumper would change the maps of the town logs the benchmark reads (24
      frames of 8 of the 36 logs zeroed, 11 of them a tuned log's step-out frames, six of
      those scoring 13.3-13.9 /s), so it stays.

In a world without pedestrians (the highway) the channel is 0 everywhere, its tail has no
spread and it scores 0.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from ..schema import LANE_MARKING, LAYOUT_CLASSES, PEDESTRIAN, ROAD, window_frames
from ..warp import cell_offsets, ego_to_world, world_to_ego
from .path import bumper_distance, ego_path

ROAD_NEIGHBOURHOOD_M = 1.0       # how far around a pedestrian cell its ground is read
TRACK_LAG_S = 0.3                # a pedestrian's velocity: its world centroid now against this long ago
                                 # (a design choice: 0.5 s did about the same, step-out +0.038 vs +0.040)
MAX_PEDESTRIAN_SPEED_MPS = 3.0   # a blob farther than this (plus a cell) then is another pedestrian
CONFLICT_HALF_M = 2.25           # the ego's half width, a pedestrian's and about 0.9 m
MAX_ARRIVAL_S = 1.5              # the ego reaches the pedestrian's distance within this ...
MAX_ENCROACHMENT_S = 1.5         # ... and the pedestrian is within this of its corridor then
MIN_EGO_SPEED_MPS = 1.4          # an adult's walking pace: a slower ego leaves the closing to the pedestrian


def road_pedestrians(observed: np.ndarray, meta) -> np.ndarray:
    """``(T, H, W)`` bool: pedestrian cells in the score's path (:func:`ego_path`) standing on
    the carriageway -- at least half of the observed layout cells within
    :data:`ROAD_NEIGHBOURHOOD_M` of them are road or lane marking."""
    size = 2 * int(round(ROAD_NEIGHBOURHOOD_M / meta.resolution_m)) + 1
    out = (observed == PEDESTRIAN) & ego_path(meta)[None]
    frames = np.flatnonzero(out.any((1, 2)))                  # the ground is read where one walks
    grids = observed[frames]
    layout = np.isin(grids, LAYOUT_CLASSES)
    road = np.isin(grids, (ROAD, LANE_MARKING))
    near_layout = ndimage.uniform_filter(layout.astype(np.float32), (1, size, size), mode="constant")
    near_road = ndimage.uniform_filter(road.astype(np.float32), (1, size, size), mode="constant")
    out[frames] &= (near_layout > 0) & (near_road >= 0.5 * near_layout)
    return out


class PedestrianBlobs(NamedTuple):
    """One frame's observed pedestrians as 4-connected blobs."""

    labels: np.ndarray      # (H, W) int: 0 none, blob i is i + 1
    across: np.ndarray      # (n,) m: each blob's mean offset across the ego's heading (right +)
    world: np.ndarray       # (n, 2) m: each blob's world centroid


def pedestrian_blobs(observed: np.ndarray, pose, meta) -> PedestrianBlobs:
    """One frame's observed pedestrians (``observed``: ``(H, W)``) as blobs: their labels,
    their mean offsets across the ego's heading (what the conflict reads) and their world
    centroids (what a velocity is read from)."""
    labels, n = ndimage.label(observed == PEDESTRIAN)
    if not n:
        return PedestrianBlobs(labels, np.zeros(0), np.zeros((0, 2)))
    along, across = blob_means(labels, n, *cell_offsets(meta))
    return PedestrianBlobs(labels, across, np.stack(ego_to_world(pose, along, across), 1))


def blob_means(labels: np.ndarray, n: int, *values: np.ndarray) -> list[np.ndarray]:
    """Per blob of ``labels`` (``1..n``), the mean of each ``(H, W)`` array of ``values`` over
    its cells, ``(n,)`` each (over the blobs' cells alone: a frame holds a few)."""
    cells = np.flatnonzero(labels)
    which = labels.ravel()[cells] - 1
    counts = np.bincount(which, minlength=n)
    return [np.bincount(which, v.ravel()[cells], minlength=n) / counts for v in values]


def pedestrian_velocities(log, frames, lag_s: float = TRACK_LAG_S
                          ) -> dict[int, tuple[PedestrianBlobs, np.ndarray]]:
    """For each of ``frames``, its pedestrian blobs (:func:`pedestrian_blobs`) and each
    blob's velocity in the frame's ego axes ``(n, 2)`` (forward, right; m/s): against the
    blob nearest its world centroid ``lag_s`` earlier; NaN where none is within
    :data:`MAX_PEDESTRIAN_SPEED_MPS` (and a cell) or the log is younger than ``lag_s``.
    Only those frames and the frames ``lag_s`` before them are labelled (the conflict asks
    for the few with a pedestrian on the carriageway)."""
    lag = window_frames(lag_s, log.meta.rate_hz)
    dt = lag / log.meta.rate_hz
    reach = MAX_PEDESTRIAN_SPEED_MPS * dt + log.meta.resolution_m
    poses = log.poses
    frames = [int(t) for t in frames]
    labelled = sorted(set(frames) | {t - lag for t in frames if t >= lag})
    blobs = {t: pedestrian_blobs(log.semantic[t], poses[t], log.meta) for t in labelled}
    out = {}
    for t in frames:
        centroids = blobs[t].world
        velocity = np.full((len(centroids), 2), np.nan)
        before = blobs[t - lag].world if t >= lag else np.zeros((0, 2))
        if len(centroids) and len(before):
            distance = np.linalg.norm(centroids[:, None] - before[None], axis=2)      # (n, m)
            nearest = distance.argmin(1)
            dx, dy = ((centroids - before[nearest]) / dt).T                            # world m/s
            matched = distance[np.arange(len(centroids)), nearest] <= reach
            velocity[matched] = np.stack(world_to_ego((0.0, 0.0, poses[t, 2]), dx, dy), 1)[matched]
        out[t] = (blobs[t], velocity)
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

    Example:
        >>> arrival, gap = time_to_conflict([8.0], [5.0], [0.0], [-1.0], ego_speed=8.0)
        >>> arrival.tolist(), gap.tolist()        # 1 s away; 1.75 m (1.75 s) short of the corridor then
        ([1.0], [1.75])
    """
    closing = ego_speed - np.asarray(v_forward, np.float64)
    arrival = np.full(closing.shape, np.inf)
    np.divide(ahead_m, closing, out=arrival, where=closing > 0)
    lateral = np.asarray(right_m) + np.asarray(v_right) * np.where(np.isfinite(arrival), arrival, 0.0)
    outside = np.maximum(np.abs(lateral) - half_m, 0.0)
    standing = np.asarray(v_right) == 0
    gap = np.where((outside > 0) & standing, np.inf, 0.0)
    np.divide(outside, np.abs(v_right), out=gap, where=(outside > 0) & ~standing)
    return arrival, gap


def pedestrian_conflict(log, max_arrival_s: float = MAX_ARRIVAL_S, max_gap_s: float = MAX_ENCROACHMENT_S,
                        half_m: float = CONFLICT_HALF_M, lag_s: float = TRACK_LAG_S) -> np.ndarray:
    """How soon the ego and a pedestrian on the carriageway meet: ``1 / (arrival + gap)``
    (:func:`time_to_conflict`, 1/s) where the ego arrives within ``max_arrival_s`` and the
    gap is at most ``max_gap_s``, on that pedestrian's cells among :func:`road_pedestrians`;
    0 elsewhere (a pedestrian without a velocity, a frame where the ego drives slower than
    :data:`MIN_EGO_SPEED_MPS` too): ``(T, H, W)`` float32. A pedestrian's distance is from the
    bumper to its nearest cell, at least a cell (one beside the bumper is read as a cell ahead).

    Args:
        log: the drive log (observed grids, poses, speeds).
        max_arrival_s, max_gap_s, half_m, lag_s: the limits, the corridor's half width and
            the velocity's lag (the defaults are the frame score's; other values for
            experiments).
    """
    bumper = bumper_distance(log.meta)                                            # (H, W) m
    on_road = road_pedestrians(log.semantic, log.meta)
    out = np.zeros(log.semantic.shape, np.float32)
    slow = log.ego_speed < MIN_EGO_SPEED_MPS
    frames = np.flatnonzero(on_road.any((1, 2)) & ~slow)
    for t, ((labels, across, _), velocity) in pedestrian_velocities(log, frames, lag_s).items():
        ahead = np.asarray(ndimage.minimum(bumper, labels, np.arange(1, len(velocity) + 1)),
                           float)                                                   # (n,) to its nearest cell
        arrival, gap = time_to_conflict(ahead, across, velocity[:, 0], velocity[:, 1], float(log.ego_speed[t]),
                                        half_m)
        close = (arrival <= max_arrival_s) & (gap <= max_gap_s)                   # False where NaN
        value = np.where(close, 1.0 / np.where(close, arrival + gap, 1.0), 0.0)
        out[t] = np.where(on_road[t], np.concatenate([[0.0], value])[labels], 0.0)
    return out
