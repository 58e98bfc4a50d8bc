"""A second simulated world: a straight multi-lane highway with car-following traffic.

Unlike the town (``driving.sim.simulator``), traffic here reacts to what is ahead of it:
every car, the ego included, follows its lane with the Intelligent Driver Model (IDM:
it keeps a time gap to its leader and brakes for stopped objects) and changes lanes when
its lane is slow or blocked and the next lane has room (a gap check in the spirit of
MOBIL). Carriageways run both ways with ``lanes`` lanes each, dashed lane lines, solid
edge lines, a paved shoulder and a grass median; there are no sidewalks or pedestrians
(its logs list only the classes it draws).
Off-road sign posts are the only normal static obstacles. The log rate defaults to 5 Hz
(the town's is 10 Hz) and speeds to 20-35 m/s.

Every log starts in settled traffic: cars are placed at random, then the traffic, the ego
included, drives for ``warmup_s`` before the first recorded frame (a real drive log starts
in flowing traffic, not with every car at its own speed a few metres from the next).

Injected events (labelled like the town's: while the event's object is observed and not
yet passed): ``stalled_vehicle`` (a car stopped askew in a lane ahead), ``debris``
(obstacles strewn over a lane ahead), ``crash`` (one car ran into the back of another,
both stopped askew in a lane) and ``hard_braking`` (the ego's lead car brakes at 6-8 m/s^2;
labelled while it brakes and one second after). Placed beyond the sensor range, so they
come into view as the ego approaches; traffic, and the ego, brake and change lanes
around them.

Example:
    >>> log = HighwaySimulator(HighwayConfig(), seed=0).simulate(250)   # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..schema import CLASSES, LANE_MARKING, OFF_ROAD, ROAD, STATIC_OBSTACLE, VEHICLE, DriveLog, \
    LogMeta
from .simulator import CAR, Simulator, _Scene

HIGHWAY_EVENTS = ("stalled_vehicle", "debris", "crash", "hard_braking")
# every class the highway draws: its layout (HighwayWorld.lookup) and its objects (cars,
# sign posts, event obstacles); its logs declare only these, so scoring never predicts a
# sidewalk or a pedestrian on them (driving.guard.predictable_classes)
HIGHWAY_CLASSES = tuple(CLASSES[c] for c in sorted((OFF_ROAD, ROAD, LANE_MARKING, VEHICLE,
                                                    STATIC_OBSTACLE)))
# IDM parameters (Treiber, Hennecke & Helbing 2000; typical highway values)
IDM_ACCEL, IDM_DECEL, IDM_HEADWAY_S, IDM_MIN_GAP_M = 1.5, 2.5, 1.3, 2.5
MAX_BRAKE = 9.0              # m/s^2, physical limit
LANE_CHANGE_S = 3.0          # duration of a lane change
HAZARD_LOOKAHEAD_M = 150.0   # drivers see stopped objects this far (beyond the BEV grid)


@dataclass
class HighwayConfig:
    """Highway world settings (metres, seconds)."""

    grid_shape: tuple[int, int] = (128, 128)
    resolution_m: float = 0.5
    ego_cell: tuple[int, int] | None = None   # default: 5/8 down, centred
    rate_hz: float = 5.0
    sensor_range_m: float = 38.0
    lanes: int = 3                 # per direction
    lane_width_m: float = 3.6
    shoulder_m: float = 2.5
    median_m: float = 3.0
    marking_half_m: float = 0.25
    dash_m: float = 3.0            # dashed lane line: 3 m painted, 9 m gap
    gap_m: float = 9.0
    speed_mps: tuple[float, float] = (20.0, 35.0)   # desired speeds of traffic and ego
    vehicles_per_km_lane: float = 18.0
    signs_per_km: float = 12.0
    anomaly_interval_s: float = 20.0
    # traffic (the ego included) drives this long before the first recorded frame, as a real
    # drive log starts in traffic that has long been flowing. 20 s is about four of the IDM's
    # speed relaxation times (v0 / 4a = 4-6 s at 25-35 m/s) and more than the ~13 s the ego
    # took to fall in behind slower traffic when logs started from the cars' random placement
    warmup_s: float = 20.0

    def meta(self) -> LogMeta:
        h, w = self.grid_shape
        ego = self.ego_cell or (h * 5 // 8, w // 2)
        return LogMeta(grid_shape=(h, w), resolution_m=self.resolution_m, classes=CLASSES,
                       ego_cell=tuple(ego), rate_hz=self.rate_hz, world_classes=HIGHWAY_CLASSES)

    def build(self, seed: int) -> "HighwaySimulator":
        """The simulator of this world (``simulate_logs`` calls it)."""
        return HighwaySimulator(self, seed)


class HighwayWorld:
    """The static layout: a straight highway along heading ``yaw`` through ``origin``.

    Road frame: ``s`` along the road, ``d`` to its left; the ego's carriageway (driving
    +s, right-hand traffic) lies at ``d < 0``, the oncoming one at ``d > 0``.
    """

    def __init__(self, config: HighwayConfig, origin, yaw: float):
        self.config = config
        self.origin = np.asarray(origin, dtype=np.float64)
        self.yaw = float(yaw)

    def lane_centre(self, lane: float) -> float:
        """``|d|`` of a lane's centre (lane 0 next to the median)."""
        c = self.config
        return c.median_m / 2 + (lane + 0.5) * c.lane_width_m

    def to_world(self, s, d) -> tuple[np.ndarray, np.ndarray]:
        cos, sin = np.cos(self.yaw), np.sin(self.yaw)
        return self.origin[0] + s * cos - d * sin, self.origin[1] + s * sin + d * cos

    def to_road(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = np.asarray(x) - self.origin[0], np.asarray(y) - self.origin[1]
        cos, sin = np.cos(self.yaw), np.sin(self.yaw)
        return dx * cos + dy * sin, -dx * sin + dy * cos

    def lookup(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Static class at world points."""
        c = self.config
        s, d = self.to_road(x, y)
        a = np.abs(d) - c.median_m / 2                       # from the median's edge
        width = c.lanes * c.lane_width_m
        out = np.full(np.shape(a), OFF_ROAD, np.uint8)
        out[(a >= 0) & (a < width + c.shoulder_m)] = ROAD
        line = np.rint(a / c.lane_width_m)                    # nearest lane line 0 .. lanes
        near_line = (np.abs(a - line * c.lane_width_m) < c.marking_half_m) & (line >= 0) & \
            (line <= c.lanes)
        dashed = (s % (c.dash_m + c.gap_m)) < c.dash_m
        edge = (line == 0) | (line == c.lanes)
        out[near_line & (edge | dashed)] = LANE_MARKING
        return out


class _Carriageway:
    """Cars of one direction: position ``s`` along it, speed, lane; IDM and lane changes."""

    def __init__(self, lanes: int, s, v0, lane, rng):
        self.lanes = lanes
        self.s = np.asarray(s, dtype=np.float64)
        self.v0 = np.asarray(v0, dtype=np.float64)
        self.v = self.v0 * rng.uniform(0.85, 1.0, len(self.s))
        self.lane = np.asarray(lane, dtype=np.int64)          # target lane
        self.lane_from = self.lane.copy()
        self.change_t = np.full(len(self.s), np.inf)          # time since a change began
        self.brake = np.zeros(len(self.s))                    # forced deceleration (event)
        self.brake_until = np.full(len(self.s), -np.inf)
        self.rng = rng
        self.obstacles = np.zeros((0, 3))                     # [s, lane, half length]

    def lateral(self) -> np.ndarray:
        """Fractional lane of every car (moving between lanes while it changes)."""
        u = np.clip(self.change_t / LANE_CHANGE_S, 0.0, 1.0)
        u = 0.5 - 0.5 * np.cos(np.pi * u)
        return self.lane_from + (self.lane - self.lane_from) * u

    def _entities(self, lane: int):
        """Cars and obstacles in a lane: ``(s, speed, half length, car index or -1)``, sorted."""
        cars = np.flatnonzero((self.lane == lane) | ((self.lane_from == lane) &
                                                       (self.change_t < LANE_CHANGE_S / 2)))
        obs = self.obstacles[self.obstacles[:, 1] == lane]
        s = np.concatenate([self.s[cars], obs[:, 0]])
        v = np.concatenate([self.v[cars], np.zeros(len(obs))])
        half = np.concatenate([np.full(len(cars), CAR[0]), obs[:, 2]])
        idx = np.concatenate([cars, np.full(len(obs), -1)])
        order = np.argsort(s, kind="stable")
        return s[order], v[order], half[order], idx[order]

    def leaders(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per car: bumper gap to the next entity ahead in its lane, that entity's speed,
        and the distance to the nearest stopped obstacle ahead (inf: none)."""
        n = len(self.s)
        gap, lead_v, hazard = np.full(n, 1e4), self.v0.copy(), np.full(n, np.inf)
        for lane in range(self.lanes):
            s, v, half, idx = self._entities(lane)
            for k in np.flatnonzero(idx >= 0):
                i = idx[k]
                if (self.lane[i] != lane):
                    continue
                if k + 1 < len(s):
                    gap[i] = s[k + 1] - s[k] - half[k + 1] - CAR[0]
                    lead_v[i] = v[k + 1]
                ahead = (idx[k + 1:] < 0)
                if ahead.any():
                    hazard[i] = s[k + 1:][ahead][0] - s[k]
        return gap, lead_v, hazard

    def step(self, dt: float, now: float) -> None:
        gap, lead_v, hazard = self.leaders()
        dv = self.v - lead_v
        desired = IDM_MIN_GAP_M + np.maximum(
            0.0, self.v * IDM_HEADWAY_S + self.v * dv / (2 * np.sqrt(IDM_ACCEL * IDM_DECEL)))
        accel = IDM_ACCEL * (1 - (self.v / self.v0) ** 4 - (desired / np.maximum(gap, 0.1)) ** 2)
        forced = now < self.brake_until
        accel = np.where(forced, np.minimum(accel, -self.brake), accel)
        accel = np.maximum(accel, -MAX_BRAKE)
        self.v = np.maximum(self.v + accel * dt, 0.0)
        self.s = self.s + self.v * dt
        self.change_t = self.change_t + dt
        self._change_lanes(gap, lead_v, hazard, dt)

    def _room(self, i: int, lane: int) -> tuple[float, float]:
        """Gaps ahead of and behind car ``i`` if it were in ``lane``."""
        s, v, half, idx = self._entities(lane)
        s, half, idx = s[idx != i], half[idx != i], idx[idx != i]
        k = np.searchsorted(s, self.s[i])
        ahead = s[k] - half[k] - CAR[0] - self.s[i] if k < len(s) else 1e4
        behind = self.s[i] - s[k - 1] - half[k - 1] - CAR[0] if k > 0 else 1e4
        return ahead, behind

    def _change_lanes(self, gap, lead_v, hazard, dt) -> None:
        blocked = hazard < HAZARD_LOOKAHEAD_M
        slow = (lead_v < self.v0 - 3.0) & (gap < 60.0)
        whim = self.rng.random(len(self.s)) < 0.01 * dt          # now and then, for no reason
        settled = self.change_t >= LANE_CHANGE_S
        for i in np.flatnonzero((blocked | slow | whim) & settled):
            options = [lane for lane in (self.lane[i] - 1, self.lane[i] + 1)
                       if 0 <= lane < self.lanes]
            self.rng.shuffle(options)
            for lane in options:
                ahead, behind = self._room(i, lane)
                need_ahead = max(20.0, min(gap[i] + 10.0, 60.0)) if not blocked[i] else 12.0
                need_behind = 6.0 if blocked[i] and self.v[i] < 3.0 else 10.0 + 0.5 * self.v[i]
                if ahead > need_ahead and behind > need_behind:   # (a stopped car squeezes in)
                    self.lane_from[i], self.lane[i], self.change_t[i] = self.lane[i], lane, 0.0
                    break


class HighwaySimulator(Simulator):
    """Renders drive logs on a highway (see the module docstring).

    Args:
        config: highway settings.
        seed: seeds the layout, traffic, ego and events (same seed, same log).
    """

    def __init__(self, config: HighwayConfig | None = None, seed: int = 0):
        self.config = config or HighwayConfig()
        super().__init__(self.config, seed)

    def _traffic(self, rng, length: float, duration_s: float):
        """Both carriageways, the ego as car 0 of the first, placed at random (unsettled).

        The ego's way spans ``length`` ahead of the ego's start, plus room behind for the cars
        that overtake it during the warm-up; the oncoming way spans what the ego meets while
        both drive for ``duration_s`` (closing at up to twice the top speed)."""
        c = self.config
        lo, hi = c.speed_mps
        behind = 200.0 + (hi - lo) * c.warmup_s
        spans = ((-behind, length - 200.0), (-200.0, 2 * hi * duration_s + 200.0))
        ways = []
        for direction, (start, end) in enumerate(spans):
            n = rng.poisson(c.vehicles_per_km_lane * c.lanes * (end - start) / 1000.0)
            s = rng.uniform(start, end, n)
            lane = rng.integers(0, c.lanes, n)
            v0 = rng.uniform(lo + 3.0, hi, n) - 1.0 * lane            # slower lanes on the right
            if direction == 0:
                ego_lane = int(rng.integers(0, c.lanes))
                s, lane, v0 = np.r_[0.0, s], np.r_[ego_lane, lane], np.r_[rng.uniform(lo + 5, hi), v0]
                near = (np.abs(s - 0.0) < 15.0) & (lane == ego_lane)
                near[0] = False
                s, lane, v0 = s[~near], lane[~near], v0[~near]
            else:
                # it drives -s: placed along the same stretch as the ego's way, so the ego
                # meets oncoming cars all along its drive, not only near its start
                s = -s
            ways.append(_Carriageway(c.lanes, s, np.maximum(v0, 12.0), lane, rng))
        return ways

    def _event(self, kind, way, rng, world, scene, t, n_frames, times):
        """Start an event at frame ``t``; returns ``(object id, active frames)`` or None."""
        c = self.config
        ego_s, ego_lane = way.s[0], int(way.lane[0])
        active = np.zeros(n_frames, bool)
        if kind == "hard_braking":
            _, _, _, idx = way._entities(ego_lane)
            order = np.flatnonzero(idx == 0)
            ahead = [j for j in idx[order[0] + 1:] if j > 0][:1] if order.size else []
            if not ahead or way.s[ahead[0]] - ego_s > 45.0 or way.change_t[ahead[0]] < LANE_CHANGE_S:
                return None
            j = ahead[0]
            duration = rng.uniform(1.5, 3.0)
            way.brake[j], way.brake_until[j] = rng.uniform(6.0, 8.0), times[t] + duration
            active[t: t + int(np.ceil((duration + 1.0) * c.rate_hz))] = True
            return ("car", j), active
        lane = int(np.clip(ego_lane + rng.choice([0, 0, -1, 1]), 0, c.lanes - 1))
        at = ego_s + c.sensor_range_m + rng.uniform(15.0, 45.0)
        for _ in range(6):            # not on top of a car
            if not (np.abs(way.s - at)[way.lane == lane] < 12.0).any():
                break
            at += 15.0
        active[t:] = True
        oid = scene.new_id()
        d = -world.lane_centre(lane)
        if kind == "debris":
            for _ in range(int(rng.integers(3, 7))):
                ds, dd = rng.normal(0, 1.5), rng.normal(0, 0.7)
                x, y = world.to_world(at + ds, d + dd)
                scene.add_static(x, y, rng.uniform(0, np.pi), rng.uniform(0.25, 0.7, 2),
                                 STATIC_OBSTACLE, oid)
            obstacle = [[at, lane, 3.0]]
        elif kind == "stalled_vehicle":
            x, y = world.to_world(at, d + rng.uniform(-0.4, 0.4))
            scene.add_static(x, y, world.yaw + rng.choice([-1, 1]) * rng.uniform(0.2, 0.6), CAR,
                             VEHICLE, oid)
            obstacle = [[at, lane, CAR[0] + 0.5]]
        else:   # crash: one car ran into the back of another; both stopped askew in the lane
            for k in range(2):
                x, y = world.to_world(at - k * 2 * CAR[0] - 0.3, d + rng.uniform(-0.3, 0.3))
                scene.add_static(x, y, world.yaw + rng.choice([-1, 1]) * rng.uniform(0.15, 0.35),
                                 CAR, VEHICLE, oid)
            obstacle = [[at - CAR[0], lane, 2 * CAR[0] + 0.5]]
        way.obstacles = np.concatenate([way.obstacles, np.asarray(obstacle, dtype=np.float64)])
        return ("object", oid), active

    def simulate(self, n_frames: int, log_id: str = "log_000") -> DriveLog:
        """Simulate one log of ``n_frames`` frames."""
        c = self.config
        rng = np.random.default_rng(self.seed)
        world = HighwayWorld(c, rng.uniform(-500, 500, 2), rng.uniform(-np.pi, np.pi))
        times = np.arange(n_frames) / c.rate_hz
        length = c.speed_mps[1] * times[-1] + 600.0
        ways = self._traffic(rng, length, times[-1])
        dt = 1.0 / c.rate_hz
        substeps = max(1, int(np.ceil(dt / 0.1)))                  # IDM at <= 0.1 s
        _warm_up(ways, c.warmup_s, dt / substeps)
        scene = _Scene(n_frames)
        for side in (-1.0, 1.0):   # sign posts beyond the shoulders
            half_road = c.median_m / 2 + c.lanes * c.lane_width_m + c.shoulder_m
            for s in rng.uniform(-200.0, length, rng.poisson(c.signs_per_km * length / 1000.0)):
                x, y = world.to_world(s, side * (half_road + rng.uniform(1.5, 6.0)))
                scene.add_static(x, y, rng.uniform(0, np.pi), rng.uniform(0.2, 0.5, 2), STATIC_OBSTACLE)
        schedule = {}
        if c.anomaly_interval_s > 0:
            t = int(rng.uniform(3, c.anomaly_interval_s) * c.rate_hz)
            while t < n_frames - 3 * c.rate_hz:
                schedule[t] = HIGHWAY_EVENTS[int(rng.integers(len(HIGHWAY_EVENTS)))]
                t += int(rng.uniform(0.6, 1.4) * c.anomaly_interval_s * c.rate_hz)
        n_cars = [len(w.s) for w in ways]
        pose = [np.zeros((n_frames, n, 3)) for n in n_cars]
        events = []
        for t in range(n_frames):
            if t in schedule:
                started = self._event(schedule[t], ways[0], rng, world, scene, t, n_frames, times)
                if started is not None:
                    events.append({"kind": schedule[t], "target": started[0], "active": started[1]})
            for k, way in enumerate(ways):
                sign = 1.0 if k == 0 else -1.0          # along the road; the ego's way is +s
                d = -sign * world.lane_centre(way.lateral())
                x, y = world.to_world(sign * way.s, d)
                heading = np.arctan2(-sign * _lateral_speed(way) * c.lane_width_m, sign * way.v)
                yaw = world.yaw + heading
                pose[k][t] = np.stack([x, y, yaw], 1)
                for _ in range(substeps):
                    way.step(dt / substeps, times[t])
        ego = pose[0][:, 0].copy()
        ego_speed = np.r_[np.hypot(*np.diff(ego[:, :2], axis=0).T) * c.rate_hz, 0.0]
        ego_speed[-1] = ego_speed[-2] if n_frames > 1 else ways[0].v[0]
        for k in range(2):
            for i in range(n_cars[k]):
                if k == 0 and i == 0:
                    continue
                oid = scene.add_dynamic(pose[k][:, i], CAR, VEHICLE)
                for event in events:
                    if event["target"] == ("car", i) and k == 0:
                        event["object"] = oid
        for event in events:
            if event["target"][0] == "object":
                event["object"] = event["target"][1]
        scene.freeze()
        return self._render_log(world, scene, ego, ego_speed, events, n_frames, times, log_id)


def _warm_up(ways: list[_Carriageway], seconds: float, step_s: float) -> None:
    """Drive the traffic for ``seconds`` (no events), then move each carriageway back by how
    far it went (the ego's way: the ego back to ``s = 0``), so the recorded drive starts where
    the layout and the sign posts were placed. Carriageways never interact, and the road is
    uniform along ``s``, so shifting one is only a change of where the recording starts."""
    n_steps = int(round(seconds / step_s))
    start = [way.s.copy() for way in ways]
    for k in range(n_steps):
        for way in ways:
            way.step(step_s, (k - n_steps) * step_s)     # negative times: before the recording
    if n_steps:
        ways[0].s -= ways[0].s[0]
        for way, s0 in zip(ways[1:], start[1:]):
            way.s -= np.median(way.s - s0)


def _lateral_speed(way: _Carriageway) -> np.ndarray:
    """Lanes per second each car is moving sideways (0 when not changing lanes)."""
    u = np.clip(way.change_t / LANE_CHANGE_S, 0.0, 1.0)
    rate = 0.5 * np.pi * np.sin(np.pi * u) / LANE_CHANGE_S
    return np.where(way.change_t < LANE_CHANGE_S, rate * (way.lane - way.lane_from), 0.0)
