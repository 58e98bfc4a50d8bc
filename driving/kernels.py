"""Compiled (numba) per-cell loops of driving scoring, each one pass over the maps instead
of the several whole-array numpy passes (and their temporaries) it replaces.

Scoring a log runs a handful of cheap per-cell steps on every ``(N, C, H, W)`` batch of
probabilities -- the reported class (an argmax over classes), its confidence, the road
layout mass, the layout memory and the memory gate's mix, the context prior's ground
posterior and kerb strip, the revealed cells -- warps every history frame into every
frame, and keeps world-fixed rasters (the world memory, the memory trace). In numpy each
step is several passes over the maps, each allocating a temporary (``bench/README.md``,
driving's full-scoring speed, has the profile and the speed-up). Each kernel below works
a cell, or a row of cells, at a time, with the same float32/float64 operations in the same
order as the numpy expression it replaces, so the results are bit-identical
(``tests/driving/test_driving_kernels.py`` and ``test_driving_scoring_shortcuts.py`` pin
each to that expression). They run on one thread (scoring's parallelism is the
network's), release the GIL (``nogil``) and are compiled once per cache location and
cached on disk where numba can write (:func:`core.jit.compiled`).
"""
from __future__ import annotations

import numpy as np

from core.jit import compiled

_MINUS_ONE = np.float32(-1.0)
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)


def cell_shape(probs) -> tuple:
    """``(N, H, W)``: the cells of class probabilities ``probs`` ``(N, C, H, W)``, the shape
    every per-cell array beside them must have (:func:`check_cell_shapes`)."""
    return (len(probs),) + np.shape(probs)[2:]


def check_cell_shapes(what: str, cells_shape: tuple, **arrays) -> None:
    """Raise a ValueError naming ``what``, the array and both shapes unless every array in
    ``arrays`` has shape ``cells_shape``: the kernels do no bounds checks (numba's
    default), so a mismatched array would be read past its end silently."""
    for name, array in arrays.items():
        if np.shape(array) != tuple(cells_shape):
            raise ValueError(f"{what}: {name} has shape {np.shape(array)}, "
                             f"expected {tuple(cells_shape)}")


@compiled
def _keep_first_max(value, best, best_k, k):
    """One step of numpy's ``argmax``: ``value`` (class ``k``) replaces ``best`` when it is
    larger or NaN, unless ``best`` already is NaN (numpy stops at the first NaN)."""
    if not value <= best and best == best:
        return value, k
    return best, best_k


@compiled
def decide_cells(probs, is_layout, road, lane, out):
    """Into ``out`` ``(N, H, W)`` uint8: ``lane`` or ``road`` (the likelier) where
    ``is_layout``, else the argmax over classes, and where that is ``road`` or ``lane``
    the argmax with those two read as -1 (``driving.scoring.decision.decide``;
    ``road = lane = -1``: the plain argmax). A row of cells at a time, classes outer, so
    the compare-and-keep steps vectorise."""
    n_frames, n_classes, height, width = probs.shape
    best = np.empty(width, probs.dtype)
    best_k = np.empty(width, np.int32)
    other = np.empty(width, probs.dtype)             # the argmax without road and lane
    other_k = np.empty(width, np.int32)
    for n in range(n_frames):
        for r in range(height):
            for c in range(width):
                best[c] = probs[n, 0, r, c]
                other[c] = _MINUS_ONE if road == 0 or lane == 0 else probs[n, 0, r, c]
                best_k[c] = other_k[c] = 0
            for k in range(1, n_classes):
                skipped = k == road or k == lane
                for c in range(width):
                    value = probs[n, k, r, c]
                    best[c], best_k[c] = _keep_first_max(value, best[c], best_k[c], k)
                    value = _MINUS_ONE if skipped else value
                    other[c], other_k[c] = _keep_first_max(value, other[c], other_k[c], k)
            for c in range(width):
                if is_layout[n, r, c]:
                    out[n, r, c] = lane if probs[n, lane, r, c] > probs[n, road, r, c] else road
                elif best_k[c] == road or best_k[c] == lane:
                    out[n, r, c] = other_k[c]
                else:
                    out[n, r, c] = best_k[c]


@compiled
def _layout_sum(probs, n, r, c, n_layout):
    """The first ``n_layout`` classes' probabilities of cell ``(n, r, c)`` summed in class
    order, in ``probs``' dtype: the order the layout memory and the layout mass both keep."""
    total = probs[n, 0, r, c]
    for k in range(1, n_layout):
        total += probs[n, k, r, c]
    return total


@compiled
def layout_memory_mix(probs, memory, observed, n_layout, unobserved):
    """In place on ``probs`` ``(N, C, H, W)``: hidden cells (``observed == unobserved``)
    whose ``memory`` holds a layout class (``< n_layout``) give the layout classes' mass
    (summed in class order) to that class (``driving.model.baselines.apply_layout_memory``)."""
    n_frames, _, height, width = probs.shape
    for n in range(n_frames):
        for r in range(height):
            for c in range(width):
                remembered = memory[n, r, c]
                if remembered >= n_layout or observed[n, r, c] != unobserved:
                    continue
                mass = _layout_sum(probs, n, r, c, n_layout)
                for k in range(n_layout):
                    probs[n, k, r, c] = mass if k == remembered else _ZERO


@compiled
def _scale_cell(probs, n, r, c, factor):
    for k in range(probs.shape[1]):
        probs[n, k, r, c] *= factor


@compiled
def memory_gate_mix(probs, observed, remembered, age_s, streak, moved_age_s, weights,
                    moved_weights, age_edges, streak_edges, vehicle, unobserved):
    """In place on the hidden cells (``observed == unobserved``) of ``probs``
    ``(N, C, H, W)``: ``p = w * onehot(remembered) + (1 - w) * p`` with ``w`` of the
    cell's remembered class, age bin and streak bin (``weights`` ``(classes, bins)``),
    then ``p = v * onehot(vehicle) + (1 - v) * p`` where a lost car was carried
    (``moved_weights`` per age bin; ``driving.model.memory_gate.MemoryGate.apply``)."""
    n_frames, n_classes, height, width = probs.shape
    n_streak_bins = len(streak_edges) + 1
    last_class = weights.shape[0] - 1
    for n in range(n_frames):
        for r in range(height):
            for c in range(width):
                if observed[n, r, c] != unobserved:
                    continue
                cls = remembered[n, r, c]
                if cls != unobserved:
                    # the flat (age bin, streak bin) of memory_gate.gate_bins
                    age_bin = np.searchsorted(age_edges, age_s[n, r, c], side="right")
                    streak_bin = np.searchsorted(streak_edges, streak[n, r, c], side="right")
                    b = age_bin * n_streak_bins + streak_bin
                    w = weights[min(cls, last_class), b]
                    if w != 0:                   # w = 0 would multiply by 1 and add 0
                        _scale_cell(probs, n, r, c, _ONE - w)
                        if cls < n_classes:
                            probs[n, cls, r, c] += w
                moved = moved_age_s[n, r, c]
                if np.isfinite(moved):
                    v = moved_weights[np.searchsorted(age_edges, moved, side="right")]
                    _scale_cell(probs, n, r, c, _ONE - v)
                    probs[n, vehicle, r, c] += v


@compiled
def _source_cell(world_x, world_y, frame):
    """Grid ``(row, col)`` (int64, maybe outside the grid) nearest to a world point in the
    source frame ``(x, y, cos yaw, sin yaw, ego row, ego col, resolution)``: the float64
    operations of ``driving.warp.world_to_cell`` then ``np.rint``, in that order."""
    x, y, cos_yaw, sin_yaw, ego_row, ego_col, resolution_m = frame
    dx = world_x - x
    dy = world_y - y
    forward = dx * cos_yaw + dy * sin_yaw
    right = dx * sin_yaw - dy * cos_yaw
    row = np.rint(ego_row - forward / resolution_m)
    col = np.rint(ego_col + right / resolution_m)
    return np.int64(row), np.int64(col)


@compiled
def warp_cells(source, world_x, world_y, frame, fill, out):
    """Into ``out`` ``(H, W)``: the ``source`` grid's cell nearest to every world point
    (``world_x``, ``world_y`` ``(H, W)``) in the source ``frame`` (see :func:`_source_cell`),
    ``fill`` where it falls outside (the numpy reference: ``tests/driving/warp_reference.py``)."""
    height, width = source.shape
    for i in range(world_x.shape[0]):
        for j in range(world_x.shape[1]):
            row, col = _source_cell(world_x[i, j], world_y[i, j], frame)
            inside = row >= 0 and row < height and col >= 0 and col < width
            out[i, j] = source[row, col] if inside else fill


@compiled
def revealed_cells(before, visible_before, visible, observed, world_x, world_y, frame,
                   revealed, probability):
    """Into ``revealed`` ``(H, W)``: cells visible now whose nearest cell in the frame
    before (``frame``, see :func:`_source_cell`) lies in its grid and was hidden; into
    ``probability``, on those cells: the frame before's probability ``before``
    ``(C, H, W)`` of the class observed now (unobserved: the last class) at that cell."""
    n_classes, height, width = before.shape
    for i in range(world_x.shape[0]):
        for j in range(world_x.shape[1]):
            revealed[i, j] = False
            if not visible[i, j]:
                continue
            row, col = _source_cell(world_x[i, j], world_y[i, j], frame)
            if row < 0 or row >= height or col < 0 or col >= width or visible_before[row, col]:
                continue
            revealed[i, j] = True
            probability[i, j] = before[min(observed[i, j], n_classes - 1), row, col]


@compiled
def layout_posterior(probs, observed, n_layout, kerb_a, kerb_b, posterior, kerb):
    """Into ``posterior`` ``(N, n_layout, H, W)``: the first ``n_layout`` classes of
    ``probs`` renormalised (their sum, in class order, floored at 1e-6), one-hot where
    ``observed`` is a layout class; into ``kerb`` ``(N, H, W)``: whether that posterior's
    argmax is ``kerb_a`` or ``kerb_b`` (``driving.scoring.context_prior.ground_posterior``).
    A row of cells at a time, classes outer."""
    n_frames, _, height, width = probs.shape
    floor = np.float32(1e-6)
    total = np.empty(width, probs.dtype)
    best = np.empty(width, probs.dtype)
    best_k = np.empty(width, np.int32)
    for n in range(n_frames):
        for r in range(height):
            for c in range(width):
                total[c] = probs[n, 0, r, c]
            for k in range(1, n_layout):
                for c in range(width):
                    total[c] += probs[n, k, r, c]
            for c in range(width):
                if total[c] < floor:             # np.maximum: NaN stays NaN
                    total[c] = floor
            for k in range(n_layout):
                for c in range(width):
                    seen = observed[n, r, c]
                    if seen < n_layout:
                        value = _ONE if k == seen else _ZERO
                    else:
                        value = probs[n, k, r, c] / total[c]
                    posterior[n, k, r, c] = value
                    if k == 0:
                        best[c], best_k[c] = value, 0
                    else:
                        best[c], best_k[c] = _keep_first_max(value, best[c], best_k[c], k)
            for c in range(width):
                kerb[n, r, c] = best_k[c] == kerb_a or best_k[c] == kerb_b


@compiled
def layout_mass_cells(probs, cells, n_layout, road, lane, floor, half, out):
    """Into ``out`` ``(N, H, W)`` where ``cells``: ``(p[road] + p[lane]) / (sum of the first
    n_layout classes, in class order)`` where that sum exceeds ``floor``, else ``half``
    (``floor``, ``half`` of ``probs``' dtype; ``driving.scoring.decision.layout_mass``)."""
    n_frames, _, height, width = probs.shape
    for n in range(n_frames):
        for r in range(height):
            for c in range(width):
                if not cells[n, r, c]:
                    continue
                layout = _layout_sum(probs, n, r, c, n_layout)
                on_road = probs[n, road, r, c] + probs[n, lane, r, c]
                out[n, r, c] = on_road / layout if layout > floor else half


def class_confidence(probs, classes, visible, out):
    """Into ``out`` ``(N, H, W)``: 1 where ``visible``, else the probability of the cell's
    class in ``classes`` (``np.take_along_axis`` over the classes of ``probs``
    ``(N, C, H, W)``)."""
    check_cell_shapes("class_confidence", cell_shape(probs), classes=classes, visible=visible,
                      out=out)
    _class_confidence_cells(probs, classes, visible, out)


@compiled
def _class_confidence_cells(probs, classes, visible, out):
    """The loop of :func:`class_confidence`."""
    n_frames, _, height, width = probs.shape
    for n in range(n_frames):
        for r in range(height):
            for c in range(width):
                out[n, r, c] = _ONE if visible[n, r, c] else probs[n, classes[n, r, c], r, c]


@compiled
def world_memory_cells(flat, visible, semantic, before, max_class, raster, out):
    """Into ``out`` ``(T, H, W)``: every frame's cells read from the world ``raster``
    (raveled, indices ``flat`` ``(T, H, W)``) before or after (``before``) the frame's
    visible cells of class ``<= max_class`` are written into it, in raster order (a world
    cell two of them share keeps the later one's class, as numpy's indexed assignment
    does; ``driving.model.baselines.world_memory``)."""
    n_frames, height, width = semantic.shape
    for t in range(n_frames):
        if before:
            _read_raster(raster, flat[t], out[t])
        for i in range(height):
            for j in range(width):
                if visible[t, i, j] and semantic[t, i, j] <= max_class:
                    raster[flat[t, i, j]] = semantic[t, i, j]
        if not before:
            _read_raster(raster, flat[t], out[t])


@compiled
def _read_raster(raster, flat, out):
    for i in range(flat.shape[0]):
        for j in range(flat.shape[1]):
            out[i, j] = raster[flat[i, j]]


@compiled
def trace_cells(flat, visible, semantic, times, unobserved, cls, run, seen_at,
                remembered, age_s, streak):
    """The world-fixed memory trace of a log (``driving.model.memory_gate.memory_trace``):
    per frame, its observed cells update the rasters ``cls`` (class last seen), ``run``
    (frames in a row seen as it) and ``seen_at`` (when), then every cell reads them into
    ``remembered``, ``age_s`` (float64 difference stored as float32) and ``streak``.

    A world cell that two cells of one frame share takes the later cell's update computed
    from the raster *before* the frame, as numpy's gather-then-indexed-assignment does: the
    updates are computed for all the frame's cells first, then written in raster order.
    """
    n_frames, height, width = semantic.shape
    index = np.empty(height * width, np.int64)
    new_run = np.empty(height * width, run.dtype)
    new_cls = np.empty(height * width, cls.dtype)
    for t in range(n_frames):
        count = 0
        for i in range(height):
            for j in range(width):
                c = semantic[t, i, j]
                if visible[t, i, j] and c != unobserved:
                    w = flat[t, i, j]
                    index[count] = w
                    new_cls[count] = c
                    new_run[count] = run[w] + 1 if cls[w] == c else 1
                    count += 1
        for k in range(count):
            w = index[k]
            run[w] = new_run[k]
            cls[w] = new_cls[k]
            seen_at[w] = times[t]
        for i in range(height):
            for j in range(width):
                w = flat[t, i, j]
                remembered[t, i, j] = cls[w]
                age_s[t, i, j] = times[t] - seen_at[w]
                streak[t, i, j] = run[w]


@compiled
def divide_by_class_band(cell_map, observed, table, bands, out):
    """Into ``out``: ``cell_map / table[min(observed, classes - 1), bands]`` per cell
    (``table`` ``(classes, bands)``, ``bands`` ``(H, W)``;
    ``driving.scoring.normaliser.CellNormaliser.apply``)."""
    last_class = table.shape[0] - 1
    for t in range(cell_map.shape[0]):
        for i in range(cell_map.shape[1]):
            for j in range(cell_map.shape[2]):
                out[t, i, j] = cell_map[t, i, j] / table[min(observed[t, i, j], last_class), bands[i, j]]


@compiled
def dilate_by_rows(mask, row_offsets, half_widths, out):
    """Into ``out`` ``(N, H, W)``: whether any ``mask`` cell lies ``row_offsets[k]`` rows
    away and at most ``half_widths[k]`` columns away, for some k (a dilation by a shape
    given as one centred run of columns per row offset; boolean, so exact). Counts along
    each row make every run one subtraction."""
    n_frames, height, width = mask.shape
    counts = np.empty((height, width + 1), np.int32)
    for n in range(n_frames):
        for r in range(height):
            counts[r, 0] = 0
            for c in range(width):
                counts[r, c + 1] = counts[r, c] + mask[n, r, c]
        for r in range(height):
            for c in range(width):
                hit = False
                for k in range(len(row_offsets)):
                    source = r + row_offsets[k]
                    if source < 0 or source >= height:
                        continue
                    low = max(c - half_widths[k], 0)
                    high = min(c + half_widths[k] + 1, width)
                    if counts[source, high] > counts[source, low]:
                        hit = True
                        break
                out[n, r, c] = hit
