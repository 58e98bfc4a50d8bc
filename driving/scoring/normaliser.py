"""Expected per-cell surprise on normal frames, by map, observed class and distance.

A pedestrian stepping into view at 30 m is routine, a vehicle on the lane where the model
saw none is not: dividing each surprise map by what normal frames show for that class at
that distance from the ego makes the maps comparable across classes and distances.

Example:
    >>> norm = CellNormaliser(maps=("revealed",)).fit([maps], [observed], meta)  # doctest: +SKIP
    >>> scaled = norm.apply("revealed", maps["revealed"], observed, meta)          # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from ..kernels import check_cell_shapes, divide_by_class_band
from ..warp import cell_offsets


class CellNormaliser:
    """Expected per-cell surprise by map, class and distance band, from normal frames.

    ``scale[m, c, d]`` is the ``quantile`` of map m's values over observed cells of class c
    in distance band d (``band_m`` wide) on normal frames (revealed map: only revealed
    cells); sparse entries fall back to the class's value over all bands, then to the
    largest class value (a class too rare to know counts no more than the noisiest one).

    Args:
        band_m: width of a distance band.
        n_bands: number of bands (the last one reaches to the grid's edge).
        quantile: the quantile of normal values that is one unit after dividing.
        min_cells: fewer cells than this in a (class, band) entry: use the fallback.
        maps: the maps to normalise (None: every map :meth:`fit` is given).
    """

    def __init__(self, band_m: float = 5.0, n_bands: int = 8, quantile: float = 0.99,
                 min_cells: int = 200, maps=None):
        self.maps = None if maps is None else tuple(maps)
        self.band_m = band_m
        self.n_bands = n_bands
        self.quantile = quantile
        self.min_cells = min_cells

    def bands(self, meta) -> np.ndarray:
        forward, right = cell_offsets(meta)
        return np.minimum((np.hypot(forward, right) / self.band_m).astype(np.int64), self.n_bands - 1)

    def fit(self, raw_maps: list[dict], observed: list[np.ndarray], meta) -> "CellNormaliser":
        """``raw_maps``: per log, ``{map: (T, H, W)}``; ``observed``: per log ``(T, H, W)``."""
        n_classes = len(meta.classes)
        bands = self.bands(meta)
        wanted = raw_maps[0] if self.maps is None else self.maps
        self.maps = tuple(name for name in wanted if name in raw_maps[0])
        scale = np.ones((len(self.maps), n_classes, self.n_bands), np.float32)
        for m, name in enumerate(self.maps):
            values = {c: [[] for _ in range(self.n_bands)] for c in range(n_classes)}
            for maps, obs in zip(raw_maps, observed):
                cell_map = maps[name]
                for c in range(n_classes):
                    sel = obs == c
                    if name == "revealed":
                        sel &= cell_map > 0
                    t, r, col = np.nonzero(sel)
                    for d in range(self.n_bands):
                        here = bands[r, col] == d
                        values[c][d].append(cell_map[t[here], r[here], col[here]])
            pooled = [[np.concatenate(v) for v in values[c]] for c in range(n_classes)]
            whole = [np.concatenate(p) for p in pooled]
            known = [float(np.quantile(v, self.quantile)) for v in whole if len(v) >= self.min_cells]
            rare = max(known) if known else 1.0     # sparse classes: the largest known scale
            for c in range(n_classes):
                fallback = (float(np.quantile(whole[c], self.quantile))
                            if len(whole[c]) >= self.min_cells else rare)
                for d in range(self.n_bands):
                    v = pooled[c][d]
                    q = float(np.quantile(v, self.quantile)) if len(v) >= self.min_cells else fallback
                    scale[m, c, d] = max(q, 0.05)
        self.scale_ = scale
        return self

    def apply(self, name: str, cell_map: np.ndarray, observed: np.ndarray, meta) -> np.ndarray:
        """``cell_map / scale[name, observed class, distance band]``, ``(T, H, W)``."""
        bands = self.bands(meta)
        check_cell_shapes("CellNormaliser.apply", (len(cell_map),) + bands.shape, cell_map=cell_map,
                          observed=observed)
        out = np.empty(cell_map.shape, np.float32)
        divide_by_class_band(cell_map, observed, self.scale_[self.maps.index(name)], bands, out)
        return out

    def to_dict(self) -> dict:
        return {"band_m": self.band_m, "n_bands": self.n_bands, "quantile": self.quantile,
                "min_cells": self.min_cells, "maps": list(self.maps), "scale": self.scale_.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "CellNormaliser":
        out = cls(d["band_m"], d["n_bands"], d["quantile"], d["min_cells"], d["maps"])
        out.scale_ = np.asarray(d["scale"], dtype=np.float32)
        return out
