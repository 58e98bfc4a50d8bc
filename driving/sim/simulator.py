"""Simulated drive logs: a town, traffic, pedestrians, ray-cast visibility, anomalies.

Everything moving follows a precomputed path, so all trajectories for a log are computed
at once; a frame then samples the static class raster, rasterises the nearby objects
(oriented boxes) and ray-casts visibility. A perception-style rule fills in objects: an
object with any visible cell is observed whole (as a detector would report its box);
everything behind it stays hidden.

Traffic follows its lane at its own speed and does not brake, so a car that would drive
through another car (or the ego) at some frame of the log is left out, as are bins and
poles whose box would touch a road (near a junction, another street's carriageway): normal
drives show no merged cars and no obstacles on the road (without these checks about one
frame in nine showed two cars merged into one blob, and 7 % of the obstacles stood on a road).

Injected anomaly events, labelled per frame while the event is *observable*: its object
is observed (the sensor sees at least one of its cells, so the whole box is reported) and
has not been passed (some of its observed cells are less than 1 m behind the ego or
ahead). Frames where the object is inside the range but hidden behind other objects are
not labelled: nothing in them could reveal the event. The events:
``pedestrian_step_out`` (from behind a parked car into the ego's lane), ``stalled_vehicle``
(stopped askew in the oncoming lane), ``debris`` (static obstacles on the ego's lane) and
``wrong_way_vehicle`` (driving against the direction of the oncoming lane).

Example:
    >>> log = simulate_log(SimConfig(), n_frames=200, seed=0, log_id="log_000")  # doctest: +SKIP
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .raycast import Raycaster
from ..schema import (CLASSES, LANE_MARKING, PEDESTRIAN, ROAD, STATIC_OBSTACLE, UNOBSERVED,
                     VEHICLE, DriveLog, LogMeta, write_logs)
from ..warp import cell_offsets, ego_to_world, not_passed, world_to_ego
from .world import World, WorldConfig, tangents

ANOMALY_KINDS = ("pedestrian_step_out", "stalled_vehicle", "debris", "wrong_way_vehicle")
CAR = (2.2, 0.95)         # half length, half width (m)
PED = (0.4, 0.4)


@dataclass
class SimConfig:
    """Simulator settings; the grid defaults are docs/contracts.md's 128x128 at 0.5 m."""

    grid_shape: tuple[int, int] = (128, 128)
    resolution_m: float = 0.5
    ego_cell: tuple[int, int] | None = None   # default: 5/8 down, centred (sees further ahead)
    rate_hz: float = 10.0
    sensor_range_m: float = 35.0
    ego_speed_mps: tuple[float, float] = (6.0, 10.0)
    n_vehicles: int = 45
    n_pedestrians: int = 40
    crossing_fraction: float = 0.4
    parked_fraction: float = 0.4
    n_obstacles: int = 150
    anomaly_interval_s: float = 20.0    # mean time between injected events (0 = none)
    world: WorldConfig = field(default_factory=WorldConfig)
    # the kinds an event is drawn from, uniformly (one kind: a set of that event alone, to
    # study it; the default draws as before, so existing configurations give the same logs)
    anomaly_kinds: tuple[str, ...] = ANOMALY_KINDS

    def __post_init__(self):
        unknown = [kind for kind in self.anomaly_kinds if kind not in ANOMALY_KINDS]
        if unknown or not self.anomaly_kinds:
            raise ValueError(f"SimConfig.anomaly_kinds={self.anomaly_kinds!r}: each must be one of "
                             f"{ANOMALY_KINDS} (at least one)")

    def meta(self) -> LogMeta:
        h, w = self.grid_shape
        ego = self.ego_cell or (h * 5 // 8, w // 2)
        return LogMeta(grid_shape=(h, w), resolution_m=self.resolution_m, classes=CLASSES,
                       ego_cell=tuple(ego), rate_hz=self.rate_hz)

    def build(self, seed: int) -> "Simulator":
        """The simulator of this world (``simulate_logs`` calls it)."""
        return Simulator(self, seed)


def _along(points, s, s_query):
    """Positions ``(..., 2)`` and yaw ``(...)`` at arc lengths ``s_query`` of a path."""
    s_query = np.clip(s_query, 0, s[-1])
    x = np.interp(s_query, s, points[:, 0])
    y = np.interp(s_query, s, points[:, 1])
    t = tangents(points)
    yaw = np.arctan2(np.interp(s_query, s, t[:, 1]), np.interp(s_query, s, t[:, 0]))
    return np.stack([x, y], -1), yaw


def _right_of(yaw):
    return np.stack([np.sin(yaw), -np.cos(yaw)], -1)


class _Scene:
    """All objects of one log: static boxes and per-frame dynamic boxes."""

    def __init__(self, n_frames: int):
        self.static: list[list[float]] = []     # [x, y, yaw, hl, hw, cls, oid]
        self.dyn_pose: list[np.ndarray] = []     # each (T, 3)
        self.dyn_attr: list[list[float]] = []    # [hl, hw, cls, oid]
        self.dyn_active: list[np.ndarray] = []   # each (T,) bool
        self.n_frames = n_frames
        self.next_id = 0
        self.anomalous_ids: dict[int, int] = {}  # object id -> event index

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def add_static(self, x, y, yaw, half, cls, oid=None) -> int:
        oid = self.new_id() if oid is None else oid
        self.static.append([x, y, yaw, half[0], half[1], cls, oid])
        return oid

    def add_dynamic(self, pose, half, cls, active=None, oid=None) -> int:
        oid = self.new_id() if oid is None else oid
        self.dyn_pose.append(pose)
        self.dyn_attr.append([half[0], half[1], cls, oid])
        self.dyn_active.append(np.ones(self.n_frames, bool) if active is None else active)
        return oid

    def freeze(self) -> None:
        self.static_arr = np.asarray(self.static, dtype=np.float64).reshape(-1, 7)
        self.pose_arr = (np.stack(self.dyn_pose, 1) if self.dyn_pose
                         else np.zeros((self.n_frames, 0, 3)))                # (T, Nd, 3)
        self.attr_arr = np.asarray(self.dyn_attr, dtype=np.float64).reshape(-1, 4)
        self.active_arr = (np.stack(self.dyn_active, 1) if self.dyn_active
                           else np.zeros((self.n_frames, 0), bool))

    def boxes_at(self, t: int) -> np.ndarray:
        """``(N, 7)`` boxes present at frame ``t``: static first, then dynamic."""
        keep = self.active_arr[t]
        dyn = np.concatenate([self.pose_arr[t][keep], self.attr_arr[keep]], 1)
        return np.concatenate([self.static_arr, dyn], 0)


class Simulator:
    """Builds a town and renders drive logs from it.

    Args:
        config: simulator settings.
        seed: seeds the town, traffic, ego route and anomalies (same seed, same log).
    """

    def __init__(self, config: SimConfig | None = None, seed: int = 0):
        self.config = config or SimConfig()
        self.seed = seed
        self.meta = self.config.meta()
        self.raycaster = Raycaster(self.meta, self.config.sensor_range_m)
        self.forward, self.right = cell_offsets(self.meta)

    # --- scene construction -------------------------------------------------------------
    def _populate(self, world: World, scene: _Scene, rng, n_frames: int) -> None:
        c, wc = self.config, self.config.world
        times = np.arange(n_frames) / c.rate_hz
        for edge in world.edges:  # parked cars in the parking strips, obstacles on sidewalks
            t = tangents(edge.points)
            yaw = np.arctan2(t[:, 1], t[:, 0])
            for side in (-1.0, 1.0):
                s = wc.junction_clear_m + 3.0
                while s < edge.length - wc.junction_clear_m - 3.0:
                    i = int(np.searchsorted(edge.s, s))
                    pos = edge.points[i] + side * wc.parking_offset_m * _right_of(yaw[i])
                    if rng.random() < c.parked_fraction:
                        scene.add_static(pos[0], pos[1], yaw[i] + rng.normal(0, 0.03), CAR, VEHICLE)
                    s += 2 * CAR[0] + rng.uniform(0.8, 2.5)
        n_edges = len(world.edges)
        for _ in range(c.n_obstacles):  # bins, poles, trees: sidewalks and off-road
            edge = world.edges[int(rng.integers(n_edges))]
            i = int(rng.integers(len(edge.s)))
            t = tangents(edge.points)[i]
            off = rng.choice([-1, 1]) * (rng.uniform(6.2, 7.6) if rng.random() < 0.6
                                         else rng.uniform(9.5, 16.0))
            pos = edge.points[i] + off * np.array([t[1], -t[0]])
            half = rng.uniform(0.3, 0.8, 2)
            yaw = rng.uniform(0, np.pi)
            if not _on_road(world, pos, yaw, half):   # near a junction, another street's road
                scene.add_static(pos[0], pos[1], yaw, half, STATIC_OBSTACLE)
        for _ in range(c.n_vehicles):   # traffic following lanes
            speed = rng.uniform(5.0, 11.0)
            pts, s = world.random_route(rng, speed * times[-1] + 20, lateral=wc.lane_offset_m)
            xy, yaw = _along(pts, s, rng.uniform(0, 10) + speed * times)
            scene.add_dynamic(np.concatenate([xy, yaw[:, None]], 1), CAR, VEHICLE)
        for _ in range(c.n_pedestrians):
            edge = world.edges[int(rng.integers(n_edges))]
            t_all = tangents(edge.points)
            speed = rng.uniform(0.8, 1.6)
            if rng.random() < c.crossing_fraction:   # cross near a junction, and back
                near_end = wc.junction_clear_m + rng.uniform(0.0, 4.0)
                s_cross = near_end if rng.random() < 0.5 else edge.length - near_end
                i = int(np.clip(np.searchsorted(edge.s, s_cross), 0, len(edge.s) - 1))
                r = np.array([t_all[i, 1], -t_all[i, 0]])
                a, b = edge.points[i] - 7.0 * r, edge.points[i] + 7.0 * r
                path = np.stack([a, b])
                length = 14.0
            else:                                     # walk along a sidewalk and back
                side = rng.choice([-1, 1]) * rng.uniform(6.3, 7.4)
                path = edge.points + side * np.stack([t_all[:, 1], -t_all[:, 0]], 1)
                length = edge.length
            u = (rng.uniform(0, 2 * length) + speed * times) % (2 * length)
            frac = (length - np.abs(u - length)) / length          # ping-pong in [0, 1]
            xy = path[0] + frac[:, None] * (path[-1] - path[0]) if len(path) == 2 else \
                _along(path, edge.s, frac * edge.length)[0]
            scene.add_dynamic(np.concatenate([xy, np.zeros((n_frames, 1))], 1), PED, PEDESTRIAN)

    def _inject(self, scene: _Scene, rng, route, ego_s, n_frames: int) -> list[dict]:
        """Anomaly events placed ahead on the ego's route; returns their descriptions."""
        c, wc = self.config, self.config.world
        pts, s = route
        events = []
        if c.anomaly_interval_s <= 0:
            return events
        t0 = int(rng.uniform(3, c.anomaly_interval_s) * c.rate_hz)
        while t0 < n_frames - 20:
            kind = c.anomaly_kinds[int(rng.integers(len(c.anomaly_kinds)))]
            active = np.zeros(n_frames, bool)
            active[t0:] = True
            ahead = ego_s[t0] + rng.uniform(34.0, 40.0)
            (x, y), yaw = _along(pts, s, ahead)
            right = _right_of(yaw)
            idx = len(events)
            if kind == "debris":
                pos = np.array([x, y]) + rng.uniform(-0.5, 0.5) * right
                oid = scene.new_id()
                for _ in range(int(rng.integers(3, 6))):
                    d = pos + rng.normal(0, 0.8, 2)
                    scene.add_dynamic(np.tile([d[0], d[1], rng.uniform(0, np.pi)], (n_frames, 1)),
                                      rng.uniform(0.3, 0.8, 2), STATIC_OBSTACLE, active, oid)
            elif kind == "stalled_vehicle":
                pos = np.array([x, y]) - 2 * wc.lane_offset_m * right
                skew = rng.choice([-1, 1]) * rng.uniform(0.35, 0.7)
                oid = scene.add_dynamic(np.tile([pos[0], pos[1], yaw + np.pi + skew], (n_frames, 1)),
                                        CAR, VEHICLE, active)
            elif kind == "wrong_way_vehicle":
                speed = rng.uniform(4.0, 7.0)
                xy, yw = _along(pts, s, ahead - 10.0 + speed * (np.arange(n_frames) - t0) / c.rate_hz)
                xy = xy - 2 * wc.lane_offset_m * _right_of(yw)
                oid = scene.add_dynamic(np.concatenate([xy, yw[:, None]], 1), CAR, VEHICLE, active)
            else:  # pedestrian_step_out: parked car, pedestrian hidden past its front bumper
                offset = wc.parking_offset_m - wc.lane_offset_m
                car = np.array([x, y]) + offset * right
                scene.add_static(car[0], car[1], yaw, CAR, VEHICLE)
                (px, py), pyaw = _along(pts, s, ahead + CAR[0] + 0.7)
                start = np.array([px, py]) + offset * _right_of(pyaw)
                step = int(rng.uniform(0.5, 1.5) * c.rate_hz)
                walk = np.clip(np.arange(n_frames) - t0 - step, 0, None) / c.rate_hz * 1.4
                xy = start[None] - np.minimum(walk, 2 * offset + 4.0)[:, None] * _right_of(pyaw)[None]
                ped_active = np.zeros(n_frames, bool)
                ped_active[t0:] = True
                oid = scene.add_dynamic(np.concatenate([xy, np.zeros((n_frames, 1))], 1), PED,
                                        PEDESTRIAN, ped_active)
                active = np.zeros(n_frames, bool)
                active[t0 + step:] = True          # the event starts when it steps out
            scene.anomalous_ids[oid] = idx
            events.append({"kind": kind, "object": oid, "start": t0, "active": active})
            t0 += int(rng.uniform(0.6, 1.4) * c.anomaly_interval_s * c.rate_hz)
        return events

    # --- rendering ----------------------------------------------------------------------
    def _render(self, world: World, boxes: np.ndarray, pose,
                layout: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """True class grid and object-id grid (-1 = no object) at ``pose``; ``layout``
        (optional ``(H, W)`` out) receives the static layout under the objects."""
        meta = self.meta
        h, w = meta.grid_shape
        res = meta.resolution_m
        wx, wy = ego_to_world(pose, self.forward, self.right)
        classes = world.lookup(wx, wy)
        if layout is not None:
            layout[...] = classes
        ids = np.full((h, w), -1, dtype=np.int64)
        reach = 0.5 * np.hypot(h, w) * res + 3.0
        fwd, rgt = world_to_ego(pose, boxes[:, 0], boxes[:, 1])
        near = np.flatnonzero(np.hypot(fwd, rgt) < reach)
        rel = boxes[near, 2] - pose[2]
        for k, f, r, a in zip(near, fwd[near], rgt[near], rel):
            hl, hw, cls, oid = boxes[k, 3:7]
            ext = max(hl, hw) * 1.42
            r0 = max(int(np.floor(meta.ego_cell[0] - (f + ext) / res)), 0)
            r1 = min(int(np.ceil(meta.ego_cell[0] - (f - ext) / res)) + 1, h)
            c0 = max(int(np.floor(meta.ego_cell[1] + (r - ext) / res)), 0)
            c1 = min(int(np.ceil(meta.ego_cell[1] + (r + ext) / res)) + 1, w)
            if r0 >= r1 or c0 >= c1:
                continue
            df = self.forward[r0:r1, c0:c1] - f
            dr = self.right[r0:r1, c0:c1] - r
            along = df * np.cos(a) - dr * np.sin(a)
            across = df * np.sin(a) + dr * np.cos(a)
            inside = (np.abs(along) <= hl) & (np.abs(across) <= hw)
            classes[r0:r1, c0:c1][inside] = int(cls)
            ids[r0:r1, c0:c1][inside] = int(oid)
        return classes, ids

    def _observe(self, classes: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Visibility: ray casting, then whole objects where any of their cells is seen."""
        occupied = ids >= 0
        visible = self.raycaster.visible(occupied)
        seen = np.unique(ids[visible & occupied])
        if seen.size:
            visible |= np.isin(ids, seen)
        return visible

    def simulate(self, n_frames: int, log_id: str = "log_000") -> DriveLog:
        """Simulate one log of ``n_frames`` frames."""
        c = self.config
        rng = np.random.default_rng(self.seed)
        world = World(c.world, rng)
        scene = _Scene(n_frames)
        self._populate(world, scene, rng, n_frames)
        times = np.arange(n_frames) / c.rate_hz
        v0 = rng.uniform(*c.ego_speed_mps)
        speed = v0 * (1 + 0.15 * np.sin(2 * np.pi * times / rng.uniform(15, 30) + rng.uniform(0, 6)))
        ego_s = 5.0 + np.concatenate([[0.0], np.cumsum(speed[:-1] / c.rate_hz)])
        route = world.random_route(rng, ego_s[-1] + 80.0, lateral=c.world.lane_offset_m)
        xy, yaw = _along(*route, ego_s)
        poses = np.concatenate([xy, yaw[:, None]], 1)
        events = self._inject(scene, rng, route, ego_s, n_frames)
        _drop_colliding(scene, poses)
        scene.freeze()
        return self._render_log(world, scene, poses, speed, events, n_frames, times, log_id)

    def _render_log(self, world, scene, poses, speed, events, n_frames, times, log_id) -> DriveLog:
        """Render every frame of a frozen scene along the ego's ``poses``; events are
        labelled while their object is observed and not yet passed."""
        h, w = self.meta.grid_shape
        truth = np.empty((n_frames, h, w), np.uint8)
        layout = np.empty((n_frames, h, w), np.uint8)
        visible = np.empty((n_frames, h, w), bool)
        anomaly = np.zeros(n_frames, bool)
        kinds: list = [None] * n_frames
        ahead = self.raycaster.in_range.reshape(h, w) & not_passed(self.meta)
        started = time.perf_counter()
        for t in range(n_frames):
            classes, ids = self._render(world, scene.boxes_at(t), poses[t], layout[t])
            truth[t], visible[t] = classes, self._observe(classes, ids)
            for event in events:
                if event["active"][t] and ((ids == event["object"]) & ahead & visible[t]).any():
                    anomaly[t], kinds[t] = True, event["kind"]
        self.render_seconds_ = time.perf_counter() - started
        semantic = np.where(visible, truth, UNOBSERVED).astype(np.uint8)
        return DriveLog(log_id=log_id, meta=self.meta, frame=np.arange(n_frames), timestamp=times,
                        ego_x=poses[:, 0], ego_y=poses[:, 1], ego_yaw=poses[:, 2], ego_speed=speed,
                        semantic=semantic, visible=visible, semantic_true=truth, anomaly=anomaly,
                        anomaly_kind=kinds, layout_true=layout)



def _on_road(world: World, pos, yaw: float, half) -> bool:
    """Whether a box's centre or a corner lies on road or lane marking."""
    along = np.array([0.0, -half[0], -half[0], half[0], half[0]])
    across = np.array([0.0, -half[1], half[1], -half[1], half[1]])
    wx, wy = ego_to_world((pos[0], pos[1], yaw), along, across)
    return bool(np.isin(world.lookup(wx, wy), (ROAD, LANE_MARKING)).any())


def _near(p: np.ndarray, q: np.ndarray, across_m: float) -> bool:
    """Whether path ``q`` ever comes within a car's length (plus 1 m) of path ``p`` along
    ``p``'s heading and within ``across_m`` across it (paths ``(T, 3)``, same frames)."""
    fwd, rgt = world_to_ego(p.T, q[:, 0], q[:, 1])
    return bool(((np.abs(fwd) < 2 * CAR[0] + 1.0) & (np.abs(rgt) < across_m)).any())


def _conflict(a: np.ndarray, b: np.ndarray, when: np.ndarray) -> bool:
    """Whether two car paths come, in frames ``when``, within a car's length of each other
    along either car's heading and within a car's width across it (one drives through
    the other; cars in the next lane pass)."""
    across = 2 * CAR[1] + 0.3
    return _near(a[when], b[when], across) or _near(b[when], a[when], across)


def _drop_colliding(scene: _Scene, poses: np.ndarray) -> None:
    """Remove normal traffic and pedestrians that would ever drive through the ego, and
    normal traffic that would drive through a vehicle already kept (the events' first,
    then traffic in order): traffic here follows its lane at its own speed and does not
    brake, so two cars on one lane would otherwise pass through each other."""
    keep = [i for i, attr in enumerate(scene.dyn_attr) if int(attr[3]) in scene.anomalous_ids]
    cars = [i for i in keep if scene.dyn_attr[i][2] == VEHICLE]
    for i, pose in enumerate(scene.dyn_pose):
        if i in keep:
            continue
        if _near(poses, pose, 2 * CAR[1] + 1.0):      # through the ego
            continue
        if scene.dyn_attr[i][2] == VEHICLE:
            if any(_conflict(pose, scene.dyn_pose[j], scene.dyn_active[i] & scene.dyn_active[j])
                   for j in cars):
                continue
            cars.append(i)
        keep.append(i)
    keep.sort()
    scene.dyn_pose = [scene.dyn_pose[i] for i in keep]
    scene.dyn_attr = [scene.dyn_attr[i] for i in keep]
    scene.dyn_active = [scene.dyn_active[i] for i in keep]


def simulate_logs(out_dir: str | os.PathLike, n_logs: int, n_frames: int, seed: int = 0,
                  config: SimConfig | None = None) -> list[Path]:
    """Simulate ``n_logs`` logs into the folder ``out_dir`` (``log_000.parquet``, ...).

    The folder is published whole and atomically (written beside it, then renamed, with
    unmask's marker), as ``import`` publishes its logs: a reader never sees half a set, a
    rerun replaces an earlier folder of simulated logs (no stale log of another world or
    size stays in it), and a non-empty folder unmask did not write is refused.

    Args:
        out_dir: the folder to publish.
        n_logs: how many logs; log ``i`` is simulated from seed ``seed * 1000 + i``.
        n_frames: frames per log.
        seed: the set's seed.
        config: a :class:`SimConfig` (town) or ``highway.HighwayConfig`` (default: the town).

    Returns:
        The published log files, in order.

    Raises:
        DataValidationError: ``out_dir`` is a non-empty folder unmask did not write.
    """
    config = config or SimConfig()
    logs = (config.build(seed * 1000 + i).simulate(n_frames, log_id=f"log_{i:03d}")
            for i in range(n_logs))  # a generator: one log in memory at a time
    return write_logs(out_dir, logs)
