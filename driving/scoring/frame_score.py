"""A frame's anomaly score from its surprise maps, calibrated channel by channel.

Each **channel** reads one surprise map of :func:`driving.scoring.surprise.raw_maps` over the
cells that hold an object (vehicle, pedestrian, static obstacle) and summarises a frame by
the mean of its ``k`` largest values. The channels ask different questions and are
surprising at different scales, so each statistic is turned into a **tail score**
``-log P(X >= x)`` under its distribution on normal frames (an interpolated
empirical survival function, extended past the largest normal value by an exponential
tail fitted on the top tenth: an extreme frame keeps its rank instead of tying at the
end of the table). A frame's raw score is the largest tail score over the channels: a
frame is as anomalous as its most surprising question.

Each frame is judged on its own against the normal frames, not against its log's
recent past: shifting a frame's statistics by the median of its previous 20 s (tried) made
a calm drive with rare spikes look hotter, not a hot drive calmer -- on the tuned
configurations of both worlds it raised the alert rate on new normal drives (13.6 % vs
7.6 % town, 13.6 % vs 0 % highway) and lowered the frame AUROC (0.82 vs 0.88 town, 0.79
vs 0.90 highway; ``bench/README.md``, driving). How far new drives sit from the
training frames is what the cross-fitted calibration
(:func:`driving.scoring.state.cross_fitted_scores`) accounts for.

Default channels, each over the object cells in or next to the ego's path
(:func:`scored_objects`):

* ``revealed`` (normalised, top 4): what came into view disagrees with what the model
  predicted for those cells while they were hidden (a pedestrian stepping out, a car
  coming the wrong way);
* ``object_context`` (nats, top 24): every object hidden with a margin in all frames
  and the memory; the model says what ground it stands on, and
  :class:`~driving.scoring.context_prior.ContextPrior` says how much rarer that kind of object is
  on that ground than anywhere in normal driving (debris on a driving lane, a car
  standing still in one); top 24 cells, an object's extent rather than one cell (16 and
  32: within 0.005 on the validation logs);
* ``object_recon`` (raw nats, top 16): the network's own ``-log p(object)`` under the same
  pass. It knows more of the scene than the prior's five kinds of ground (where
  pedestrians cross), and keeps pedestrians stepping out in view;
* ``lead_closing`` (1/s, top 1): how fast the ego closes in on the car ahead in its lane,
  as a share of the gap (:func:`lead_closing`, an inverse time to collision): a lead car
  braking hard is news whatever the grids look like. It reads the gap and its trend, not
  the lead's deceleration: at 5 Hz and 0.5 m cells a deceleration is a second difference
  of rounded gaps (noise about 3 m/s^2, as large as normal braking), while the closing
  speed, a first difference fitted over a few frames, keeps growing for as long as the
  lead brakes (tuned configurations, cached maps of the same networks: frame AUROC 0.896
  with the deceleration, 0.910 with this channel on the highway; 0.876 and 0.875 in the
  town; ``bench/README.md``, driving). It reads no network output
  (:data:`OBSERVED_CHANNELS`);
* ``path_reach`` (1/s, top 1): how soon the ego reaches a pedestrian or an obstacle in its
  own lane -- its speed over the distance (:func:`path_reach`, an inverse time to reach;
  such objects do not drive away, so the ego closes in at its own speed). A pedestrian
  stepping out from behind a parked car is in the lane a few seconds ahead before the
  network's maps agree that it is unusual: to them it is one more pedestrian on the road
  (tuned town, 10 logs with events on cached maps: step-out frame AUROC 0.83 -> 0.90, all
  frames 0.905 -> 0.917; ``bench/README.md``, driving). Fitted on whole training logs like
  the lead channel; in a world whose normal drives never have an object in the ego's lane
  (the highway) its tail has no spread and it scores 0.

* ``pedestrian_conflict`` (1/s, top 1): a pedestrian on the carriageway and the ego on a
  collision course -- the ego reaches it within 1.5 s and its walk is within 1.5 s of the
  ego's corridor then, scored as the inverse of that time to conflict
  (:mod:`driving.scoring.conflict`). A step-out that walks on out of the ego's lane just
  before the ego arrives is out of ``path_reach``'s lane, and to the network one more
  pedestrian (tuned town, fresh step-out-enriched set under a rule committed first:
  step-out frame AUROC 0.861 -> 0.898, all events 0.867 -> 0.888, wrong way 0.909 -> 0.899,
  normal-log alerts 4.1 % -> 5.0 %; ``bench/experiments/driving_conflict.py``). Read from the
  observed grids alone; in a world without pedestrians its tail has no spread and it scores 0.

Every channel reads only objects in or next to the ego's path (:func:`scored_objects`).

The ``object_forecast`` map (objects hidden in the current frame only: is each where its
history says?) is computed for the replay's cell error, not read by the score.
"""
from __future__ import annotations

from types import MappingProxyType

import numpy as np

from core.pooling import top_k_mean

from ..schema import LAYOUT_CLASSES, OBJECT_CLASSES, PEDESTRIAN, STATIC_OBSTACLE, VEHICLE
from ..warp import cell_offsets
from .conflict import pedestrian_conflict
from .path import LANE_HALF_M, bumper_distance, ego_lane, ego_path

# (map, normalised by the CellNormaliser?, k largest object cells)
CHANNELS = (("revealed", True, 4), ("object_context", False, 24), ("object_recon", False, 16),
            ("lead_closing", False, 1), ("path_reach", False, 1), ("pedestrian_conflict", False, 1))
# The two registries below are the product's defaults, read-only: a candidate channel is
# passed to ``FrameScorer`` and ``raw_maps``, never registered here (a saved scorer names
# its observed channels in ``OBSERVED_CHANNELS``: only those load back).
MIN_SCALE = MappingProxyType({"object_context": 0.5,   # nats; 1/s (TailScore's min_scale)
                              "lead_closing": 0.02, "path_reach": 0.02, "pedestrian_conflict": 0.02})
# Channels read from the observed grids alone, no network (name -> function(log) giving a
# ``(T, H, W)`` map): their maps need no pass of the network
# (``FrameScorer.observed_statistics``); like every channel's, their tails are fitted on
# every frame of the normal training logs.
OBSERVED_CHANNELS = MappingProxyType({
    "lead_closing": lambda log: lead_closing(log.semantic, log.meta),
    "path_reach": lambda log: path_reach(log.semantic, log.ego_speed, log.meta),
    "pedestrian_conflict": pedestrian_conflict})
# what a saved scorer without an "observed_channels" entry reads: the registry's channels
# when scorers left their names out for the default (bundle format 8), pinned here so that
# a later registry does not change what those bundles mean
UNNAMED_OBSERVED_CHANNELS = ("lead_closing", "path_reach")
EDGE_M = 3.0              # the outer band of the sensor range the score leaves out
LEAD_WINDOW_S = 0.4       # the closing speed is the gap's trend fitted over this long
MAX_CLOSING_MPS = 25.0    # a faster change of the gap is another car cutting in or leaving
# objects that stand or walk: the ego closes in on them at its own speed (vehicles drive
# away or towards it: lead_closing reads their gap)
REACH_CLASSES = (PEDESTRIAN, STATIC_OBSTACLE)


def scored_objects(observed: np.ndarray, meta, path: np.ndarray | None = None) -> np.ndarray:
    """Object cells the frame score reads, ``(T, H, W)`` bool: objects in or next to the
    ego's path (:func:`ego_path`) and not at the edge of the sensor's range (the farthest
    ``EDGE_M`` of the layout these frames observed: an object there is only half in
    view, and it concerns the ego less than one in its lane). Debris the ego has driven
    past, a parked car two lanes over, a car at the edge of the range: no news for the ego;
    they stay on the maps, not in the score.

    Args:
        observed: ``(T, H, W)`` observed classes.
        meta: the log's geometry.
        path: ``(H, W)`` or ``(T, H, W)`` bool, the path the objects are read in (None:
            :func:`ego_path`, the frame score's; another for experiments, e.g. per frame).
    """
    forward, right = cell_offsets(meta)
    distance = np.hypot(forward, right)
    layout = np.isin(observed, LAYOUT_CLASSES)
    seen = layout.any(0)
    reach = float(distance[seen].max()) if seen.any() else np.inf
    path = ego_path(meta) if path is None else path
    inside = path & (distance <= reach - EDGE_M)                       # (H, W) or (T, H, W)
    return np.isin(observed, OBJECT_CLASSES) & inside


def lead_gap(observed: np.ndarray, meta, lane: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """The gap to the lead vehicle and its cells: ``(T,)`` float (m; NaN: no lead) and
    ``(T, H, W)`` bool.

    The lead is the nearest observed vehicle ahead in the ego's lane (within
    ``LANE_HALF_M`` of its heading line, in front of its bumper); its cells are the vehicle
    cells of that lane up to a car length behind its nearest one. ``lane``: ``(H, W)`` or
    ``(T, H, W)`` bool, another lane (None: :func:`ego_lane`; another for experiments).
    """
    forward, _ = cell_offsets(meta)
    in_lane = (observed == VEHICLE) & (ego_lane(meta) if lane is None else lane)
    ahead = np.where(in_lane, forward[None], np.inf)
    gap = ahead.reshape(len(observed), -1).min(1)                      # (T,) inf: no lead
    cells = in_lane & (ahead < gap[:, None, None] + 6.0)
    return np.where(np.isfinite(gap), gap, np.nan), cells


def trend(values: np.ndarray, n: int, dt: float) -> np.ndarray:
    """Causal least-squares slope of ``values`` ``(T,)`` over the last ``n`` samples (per
    second; NaN for the first ``n - 1`` and wherever the window holds a NaN)."""
    out = np.full(len(values), np.nan)
    if len(values) < n:
        return out
    t = np.arange(n) - (n - 1) / 2.0
    weights = t / (np.sum(t ** 2) * dt)                                # slope = weights . window
    windows = np.lib.stride_tricks.sliding_window_view(values, n)      # (T - n + 1, n)
    out[n - 1:] = windows @ weights
    return out


def lead_window_frames(rate_hz: float) -> int:
    """Frames the gap's trend is fitted over in :func:`lead_closing`: ``LEAD_WINDOW_S`` at
    ``rate_hz``, at least two."""
    return max(2, int(round(LEAD_WINDOW_S * rate_hz)) + 1)


def lead_closing(observed: np.ndarray, meta, lane: np.ndarray | None = None) -> np.ndarray:
    """How fast the ego closes in on the lead vehicle, per metre of gap (1/s, >= 0; the
    inverse of the time to collision), on the lead's cells: ``(T, H, W)`` float32.

    The closing speed is the gap's trend fitted over ``LEAD_WINDOW_S`` (at least two
    frames); a change of the gap faster than ``MAX_CLOSING_MPS`` (another car cut in or
    left) or a window without a lead gives no value. ``lane``: as :func:`lead_gap`'s.
    """
    gap, cells = lead_gap(observed, meta, lane)
    n = lead_window_frames(meta.rate_hz)
    closing = -trend(gap, n, 1.0 / meta.rate_hz)                       # m/s, > 0: closing in
    closing[~(np.abs(closing) <= MAX_CLOSING_MPS)] = np.nan            # NaN too
    inverse_ttc = np.nan_to_num(np.clip(closing, 0.0, None) / gap, nan=0.0)
    return (inverse_ttc[:, None, None] * cells).astype(np.float32)


def path_reach(observed: np.ndarray, ego_speed: np.ndarray, meta,
               half_width_m: float = LANE_HALF_M, classes=REACH_CLASSES) -> np.ndarray:
    """How soon the ego reaches each pedestrian or obstacle in its lane (``classes`` in
    :func:`ego_lane`): the ego's speed over the distance from its front bumper (1/s, the
    inverse of the time to reach it), on those cells, 0 elsewhere: ``(T, H, W)`` float32.

    Args:
        observed: ``(T, H, W)`` observed classes.
        ego_speed: ``(T,)`` the ego's speed (m/s).
        meta: the log's geometry.
        half_width_m, classes: the corridor's half width and the classes read (the
            defaults are the frame score's; other values for experiments).
    """
    distance = bumper_distance(meta)                                     # (H, W) m
    reach = np.asarray(ego_speed, np.float32)[:, None, None] / distance[None]
    in_lane = np.isin(observed, classes) & ego_lane(meta, half_width_m)[None]
    return np.where(in_lane, reach, 0.0).astype(np.float32)


class TailScore:
    """``-log P(X >= x)`` under the empirical distribution of normal values ``x``.

    Interpolated between the distinct normal values (``P(X >= x)`` counted with one
    pseudo-observation, so the largest normal value scores ``log((n + 1) / 2)``), and
    beyond the largest one continued linearly with slope ``1 / scale``: the mean excess
    of the top tenth of the normal values over their 90 % quantile (an exponential tail),
    at least ``min_scale``. Below the smallest normal value the score is 0.

    Normal values without any spread (a channel that never moved on the calibration frames:
    no lead car closed in on a short drive) leave no tail to extrapolate: ``scale`` is then
    infinite and every value scores as the normal ones, 0. Otherwise the floor alone would
    set the tail, and the first value the calibration never showed would outscore every
    event on the other channels.

    Args:
        min_scale: floor of ``scale``. A few calibration frames can have a top tenth
            bunched together, and the tail fitted to them is so steep that a frame a
            little past them scores as an extreme alarm; for a channel in nats, a floor
            of ``n`` nats means a frame gains at most one unit of tail score per ``n``
            nats of surprise past the most surprising normal frame.
    """

    def __init__(self, min_scale: float = 0.0):
        self.min_scale = float(min_scale)

    def fit(self, values: np.ndarray) -> "TailScore":
        values = np.sort(np.asarray(values, dtype=np.float64).ravel())
        if values.size == 0:
            raise ValueError("TailScore needs at least one normal value")
        n = len(values)
        knots, first = np.unique(values, return_index=True)
        at_least = n - first                                   # normal values >= each knot
        self.knots_ = knots
        self.tails_ = -np.log((at_least + 1.0) / (n + 1.0))
        q90 = np.quantile(values, 0.9)
        excess = values[values > q90] - q90
        floor = max(1e-3 * max(1.0, abs(float(knots[-1]))), self.min_scale)
        self.scale_ = float(max(excess.mean() if excess.size else 0.0, floor))
        if len(knots) == 1:                                    # no spread: no tail to fit
            self.scale_ = np.inf
        return self

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        out = np.interp(x, self.knots_, self.tails_, left=0.0, right=self.tails_[-1])
        beyond = x > self.knots_[-1]
        out[beyond] = self.tails_[-1] + (x[beyond] - self.knots_[-1]) / self.scale_
        return out

    def to_dict(self) -> dict:
        return {"knots": self.knots_.tolist(), "tails": self.tails_.tolist(),
                "scale": self.scale_ if np.isfinite(self.scale_) else None}   # None: JSON has no inf

    @classmethod
    def from_dict(cls, d: dict) -> "TailScore":
        out = cls()
        out.knots_ = np.asarray(d["knots"], dtype=np.float64)
        out.tails_ = np.asarray(d["tails"], dtype=np.float64)
        out.scale_ = float(d["scale"]) if d["scale"] is not None else np.inf
        return out


def registry_channels(names) -> dict:
    """``{name: function}`` of :data:`OBSERVED_CHANNELS` for ``names`` (a saved scorer's
    observed channels), in their order; a name not registered is a ``ValueError``."""
    unknown = [name for name in names if name not in OBSERVED_CHANNELS]
    if unknown:
        raise ValueError(f"observed channels {unknown} are not in driving.scoring.frame_score."
                         f"OBSERVED_CHANNELS ({', '.join(OBSERVED_CHANNELS)})")
    return {name: OBSERVED_CHANNELS[name] for name in names}


class FrameScorer:
    """Per-channel statistics, their tail scores, and a frame's raw score (their max).

    Args:
        channels: ``(map name, normalised, k)`` triples (see :data:`CHANNELS`).
        min_scale: per channel name, the floor of its tail's scale (:class:`TailScore`;
            a channel not named: 0). Used by :meth:`fit` only: the fitted tails keep their
            scale, so a loaded scorer needs none.
        observed_channels: name -> function(log) of the channels read from the observed
            grids alone (see :data:`OBSERVED_CHANNELS`): :meth:`fit` fits their tails on
            the ``observed`` statistics; calibration
            (:func:`~driving.scoring.state.fit_scoring_state`) and
            :func:`~driving.scoring.surprise.score_log` compute their maps with these
            functions. Saved by name: only the registry's load back (:meth:`saved_names`).
        scored_objects: function(observed, meta) -> ``(T, H, W)`` bool, the object cells
            every channel reads (default :func:`scored_objects`; another for experiments,
            which cannot be saved).
        tail: the class each channel's tail is fitted with (default :class:`TailScore`).
            A fitted tail is saved as its knots, tails and scale and loads as a
            :class:`TailScore`: a subclass may change how a tail is fitted, not how it scores.

    Example:
        >>> floors = {**MIN_SCALE, "my_channel": 0.1}
        >>> scorer = FrameScorer(CHANNELS + (("my_channel", False, 1),), min_scale=floors,
        ...                      observed_channels={**OBSERVED_CHANNELS, "my_channel": fn})  # doctest: +SKIP
    """

    def __init__(self, channels=CHANNELS, min_scale=MIN_SCALE, observed_channels=OBSERVED_CHANNELS,
                 scored_objects=scored_objects, tail=TailScore):
        self.channels = tuple((str(m), bool(n), int(k)) for m, n, k in channels)
        # own copies: the defaults are read-only views, which cannot be deep-copied (and
        # predictors are), and a caller changing its dict later must not change a fitted
        # scorer's meaning. The floors are not saved (a loaded scorer has the defaults):
        # only fitting reads them.
        self.min_scale = dict(min_scale)
        self.observed_channels = dict(observed_channels)
        self.scored_objects = scored_objects
        self.tail = tail

    def unfitted(self) -> "FrameScorer":
        """A new scorer of this class with these parameters and no tails (cross-fitting fits
        one per log left out)."""
        return type(self)(self.channels, self.min_scale, self.observed_channels,
                          self.scored_objects, self.tail)

    def channel_maps(self, raw: dict, normalised: dict, objects: np.ndarray) -> dict:
        """``{channel name: (T, H, W)}``: each channel's map over object cells only."""
        out = {}
        for name, norm, _ in self.channels:
            source = normalised if norm else raw
            out[self.key(name, norm)] = source[name] * objects
        return out

    @staticmethod
    def key(name: str, normalised: bool) -> str:
        return name if normalised else f"{name}_raw"

    def statistics(self, maps: dict) -> np.ndarray:
        """``(N, n_channels)``: mean of the ``k`` largest cells of each channel's map."""
        return np.stack([top_k_mean(np.asarray(maps[self.key(name, norm)], dtype=np.float32), k,
                                    per_row=True) for name, norm, k in self.channels], 1)

    def observed_statistics(self, log) -> dict:
        """``{channel: (T,)}``: the frame statistics of this scorer's :attr:`observed_channels`
        among its :attr:`channels` over a whole log (their maps need the observed grids
        only), over the cells its :attr:`scored_objects` reads; :meth:`fit`'s ``observed``."""
        objects = self.scored_objects(log.semantic, log.meta)
        return {name: top_k_mean(self.observed_channels[name](log) * objects, k, per_row=True)
                for name, _, k in self.channels if name in self.observed_channels}

    def fit(self, maps: list[dict], observed: list[dict] | None = None) -> "FrameScorer":
        """Fit each channel's tail on the channel maps of normal frames (a list per log).

        Args:
            maps: channel maps per log of normal frames (the product: whole training logs).
            observed: per log, :meth:`observed_statistics` of other normal frames; the tails
                of the :attr:`observed_channels` are fitted on these instead (None: on
                ``maps``, as the product does).
        """
        stats = np.concatenate([self.statistics(m) for m in maps])
        self.tails_ = []
        for i, (name, _, _) in enumerate(self.channels):
            values = stats[:, i]
            if observed is not None and name in self.observed_channels:
                values = np.concatenate([o[name] for o in observed])
            self.tails_.append(self.tail(self.min_scale.get(name, 0.0)).fit(values))
        return self

    def fit_logs(self, maps: list[dict], logs: list, normaliser,
                 observed: list[dict] | None = None) -> "FrameScorer":
        """:meth:`fit` on :func:`driving.scoring.surprise.raw_maps` outputs of normal logs, with
        the ``CellNormaliser`` fitted on them."""
        channel_maps = []
        for log, m in zip(logs, maps):
            normed = {name: normaliser.apply(name, m[name], log.semantic, log.meta)
                      for name in normaliser.maps}
            channel_maps.append(self.channel_maps(m, normed, self.scored_objects(log.semantic, log.meta)))
        return self.fit(channel_maps, observed)

    def tail_scores(self, maps: dict) -> np.ndarray:
        """``(N, n_channels)`` tail scores of the frames in ``maps``."""
        stats = self.statistics(maps)
        return np.stack([tail(stats[:, i]) for i, tail in enumerate(self.tails_)], 1)

    def raw(self, maps: dict) -> np.ndarray:
        """``(N,)`` a frame's raw score: the largest tail score over the channels."""
        return self.tail_scores(maps).max(1)

    def saved_names(self) -> list[str]:
        """The observed channels' names, as a bundle keeps them: a loaded scorer looks them up
        in :data:`OBSERVED_CHANNELS`. A ``ValueError`` for code it could not find again (it
        would score with other functions): an observed channel that is not the registry's
        function under its name, scored cells other than :func:`scored_objects`."""
        if self.scored_objects is not scored_objects:
            raise ValueError("cannot save a frame scorer with scored cells other than "
                             "driving.scoring.frame_score.scored_objects (got "
                             f"{getattr(self.scored_objects, '__qualname__', self.scored_objects)})")
        foreign = sorted(name for name, fn in self.observed_channels.items()
                         if OBSERVED_CHANNELS.get(name) is not fn)
        if foreign:
            raise ValueError(f"cannot save a frame scorer with observed channels {foreign}: a saved "
                             "scorer names them in driving.scoring.frame_score.OBSERVED_CHANNELS "
                             f"({', '.join(OBSERVED_CHANNELS)}), which holds other functions or none")
        return list(self.observed_channels)

    def to_dict(self) -> dict:
        """The channels, the fitted tails and the observed channels' names
        (:meth:`saved_names`), always: a saved scorer names what it reads, so a later change
        of the registry's defaults does not change what a bundle means."""
        return {"channels": [list(c) for c in self.channels], "tails": [t.to_dict() for t in self.tails_],
                "observed_channels": self.saved_names()}

    @classmethod
    def from_dict(cls, d: dict) -> "FrameScorer":
        names = d.get("observed_channels", list(UNNAMED_OBSERVED_CHANNELS))
        out = cls([tuple(c) for c in d["channels"]], observed_channels=registry_channels(names))
        out.tails_ = [TailScore.from_dict(t) for t in d["tails"]]
        return out
