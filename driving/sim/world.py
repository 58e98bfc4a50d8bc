"""The simulator's static world: a road network rasterised to a fine class map.

Roads run between jittered grid nodes (so there are intersections of three and four
roads); some edges are quadratic Bézier curves. Each road has two lanes (right-hand
traffic), a parking strip on both sides and sidewalks. Distances to the nearest
centre line come from a Euclidean distance transform, so the class raster is exact at
junctions and curves.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..schema import LANE_MARKING, OFF_ROAD, ROAD, SIDEWALK


@dataclass
class WorldConfig:
    """Geometry of the simulated town (metres)."""

    n_nodes: int = 3              # nodes per side of the road grid
    spacing_m: float = 110.0
    jitter_m: float = 12.0
    curve_fraction: float = 0.4
    margin_m: float = 60.0        # off-road border around the network
    raster_m: float = 0.25        # resolution of the world class raster
    road_half_m: float = 5.5      # centre line to kerb (two lanes + parking strip)
    lane_offset_m: float = 1.75   # centre line to lane centre
    parking_offset_m: float = 4.5
    sidewalk_outer_m: float = 8.0
    marking_half_m: float = 0.3
    dash_m: float = 3.0           # dashed centre line: 3 m painted, 3 m gap
    junction_clear_m: float = 12.0


@dataclass
class Edge:
    a: int
    b: int
    points: np.ndarray   # (n, 2) centre line sampled every ~0.25 m, from node a to node b
    s: np.ndarray        # (n,) arc length

    @property
    def length(self) -> float:
        return float(self.s[-1])


def resample(points: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """A polyline resampled at equal arc-length ``step``: ``(points, s)``."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    s_new = np.arange(0.0, s[-1], step)
    s_new = np.append(s_new, s[-1]) if s[-1] - s_new[-1] > 1e-6 else s_new
    return np.stack([np.interp(s_new, s, points[:, 0]), np.interp(s_new, s, points[:, 1])], 1), s_new


def tangents(points: np.ndarray) -> np.ndarray:
    """Unit tangents ``(n, 2)`` of a polyline (central differences)."""
    d = np.gradient(points, axis=0)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)


class World:
    """Nodes, edges and the class raster of one simulated town."""

    def __init__(self, config: WorldConfig, rng: np.random.Generator):
        self.config = config
        self._build_network(rng)
        self._rasterise()

    def _build_network(self, rng: np.random.Generator) -> None:
        c = self.config
        n = c.n_nodes
        ij = np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1).reshape(-1, 2)
        self.nodes = c.margin_m + ij * c.spacing_m + rng.uniform(-c.jitter_m, c.jitter_m, (n * n, 2))
        self.edges: list[Edge] = []
        for k, (i, j) in enumerate(ij):
            for di, dj in ((1, 0), (0, 1)):
                if i + di < n and j + dj < n:
                    self._add_edge(k, (i + di) * n + (j + dj), rng)
        self.adjacency: dict[int, list[tuple[int, bool]]] = {k: [] for k in range(n * n)}
        for e, edge in enumerate(self.edges):   # (edge index, forward?)
            self.adjacency[edge.a].append((e, True))
            self.adjacency[edge.b].append((e, False))

    def _add_edge(self, a: int, b: int, rng) -> None:
        p, q = self.nodes[a], self.nodes[b]
        if rng.random() < self.config.curve_fraction:
            normal = np.array([-(q - p)[1], (q - p)[0]]) / np.linalg.norm(q - p)
            control = (p + q) / 2 + normal * rng.choice([-1, 1]) * rng.uniform(15, 30)
            u = np.linspace(0, 1, 200)[:, None]
            raw = (1 - u) ** 2 * p + 2 * (1 - u) * u * control + u ** 2 * q
        else:
            raw = np.stack([p, q])
        points, s = resample(raw, self.config.raster_m)
        self.edges.append(Edge(a, b, points, s))

    def _rasterise(self) -> None:
        from scipy.ndimage import distance_transform_edt

        c = self.config
        extent = c.margin_m * 2 + (c.n_nodes - 1) * c.spacing_m
        n = int(np.ceil(extent / c.raster_m))
        self.size = n
        centre = np.zeros((n, n), dtype=bool)          # indexed [ix, iy]
        arc = np.zeros((n, n), dtype=np.float32)
        near_node = np.zeros((n, n), dtype=bool)
        for edge in self.edges:
            ix, iy = self._index(edge.points[:, 0], edge.points[:, 1])
            centre[ix, iy] = True
            arc[ix, iy] = edge.s
        dist, (nx, ny) = distance_transform_edt(~centre, return_indices=True)
        dist = dist * c.raster_m
        s_near = arc[nx, ny]
        ix, iy = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        for node in self.nodes:
            nix, niy = self._index(node[0], node[1])
            r = c.junction_clear_m / c.raster_m
            near_node |= (ix - nix) ** 2 + (iy - niy) ** 2 < r * r
        classes = np.full((n, n), OFF_ROAD, dtype=np.uint8)
        classes[dist < c.sidewalk_outer_m] = SIDEWALK
        classes[dist < c.road_half_m] = ROAD
        dashed = (s_near % (2 * c.dash_m)) < c.dash_m
        classes[(dist < c.marking_half_m) & dashed & ~near_node] = LANE_MARKING
        self.classes = classes

    def _index(self, x, y):
        r = self.config.raster_m
        n = self.size if hasattr(self, "size") else None
        ix = np.floor(np.asarray(x) / r).astype(np.int64)
        iy = np.floor(np.asarray(y) / r).astype(np.int64)
        if n is not None:
            ix, iy = np.clip(ix, 0, n - 1), np.clip(iy, 0, n - 1)
        return ix, iy

    def lookup(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Static class at world points (off-road outside the town)."""
        r, n = self.config.raster_m, self.size
        ix = np.floor(x / r).astype(np.int64)
        iy = np.floor(y / r).astype(np.int64)
        inside = (ix >= 0) & (ix < n) & (iy >= 0) & (iy < n)
        out = self.classes[np.clip(ix, 0, n - 1), np.clip(iy, 0, n - 1)]
        return np.where(inside, out, OFF_ROAD).astype(np.uint8)

    def random_route(self, rng: np.random.Generator, min_length: float,
                     lateral: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """A random walk over the network (no U-turns), offset ``lateral`` m to the right.

        Returns:
            ``(points, s)``: the path resampled every 0.25 m and its arc length.
        """
        e = int(rng.integers(len(self.edges)))
        forward = bool(rng.integers(2))
        pieces, total = [], 0.0
        while total < min_length:
            edge = self.edges[e]
            pts = edge.points if forward else edge.points[::-1]
            t = tangents(pts)
            right = np.stack([t[:, 1], -t[:, 0]], 1)
            pieces.append(pts + lateral * right)
            total += edge.length
            node = edge.b if forward else edge.a
            options = [(k, f) for k, f in self.adjacency[node] if k != e] or self.adjacency[node]
            e, forward = options[int(rng.integers(len(options)))]
        return resample(np.concatenate(pieces), self.config.raster_m)
