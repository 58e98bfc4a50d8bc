"""Experiment behind the driving lead channel (bench/README.md, driving: the lead channel
reads the closing speed over the gap). Frame AUROC and the alert rate on new normal logs of
the **tuned** configurations only, on maps cached by driving_calibration_cache.py as it
was at commit 7f4939d (`git show 7f4939d:bench/experiments/driving_calibration_cache.py`; the
committed run's networks, bundles marked format 5 in /tmp/drv17/models/<world>; maps under
/tmp/drv16/cache/<world>), calibration tails of 50 frames, cross-fitted threshold. Runs
against the code that committed lead_closing; the deceleration channel it replaced is
copied below. The first variants fit every tail on the calibration tails as the code
before did: there TailScore's floor (0.02 1/s) alone set the closing channel's tail. Those
rows were measured before TailScore scored a tail without spread as 0; from this commit on
they read as the channel silent (0.873 on the highway, the row "tail on the calibration
tails").

    UNMASK_NUM_THREADS=1 python -m bench.experiments.driving_lead_channel highway   # ~5 min

Its channels are pinned to ``driving_five_channels.FIVE_CHANNELS`` (with its tail floors and
observed channels), not to the default ``frame_score.CHANNELS``, which has since gained
``pedestrian_conflict``; its runs read the first four, the product's when its results were made.
"""
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from bench.driving import event_kinds
from bench.experiments.driving_five_channels import FIVE_CHANNELS, FIVE_CHANNEL_MIN_SCALE, FIVE_CHANNEL_OBSERVED
from core.calibration import threshold_from_contamination
from driving.model.predictor import OcclusionPredictor
from driving.schema import VEHICLE, read_log, slice_log, window_frames
from driving.scoring import frame_score as fs
from driving.scoring.normaliser import CellNormaliser
from driving.scoring.state import new_prior
from driving.scoring.surprise import MAPS, result_from_maps
from driving.warp import cell_offsets

LANE_HALF_M, EGO_FRONT_M, LEAD_WINDOW_S, MAX_CLOSING_MPS = 1.6, 2.5, 0.4, 25.0


def lead_braking(observed: np.ndarray, ego_speed: np.ndarray, meta) -> np.ndarray:
    """Deceleration (m/s^2, >= 0) of the lead vehicle, on its cells: ``(T, H, W)`` float32.

    The lead is the nearest observed vehicle ahead in the ego's lane (within
    ``LANE_HALF_M`` of its heading line, in front of its bumper). Its speed is the ego's
    plus the rate of change of the gap over ``LEAD_WINDOW_S``, and its deceleration the
    drop of that speed over the next window; a jump of the gap faster than
    ``MAX_CLOSING_MPS`` (another car cut in or left) gives no value.
    """
    forward, right = cell_offsets(meta)
    lane = (np.abs(right) <= LANE_HALF_M) & (forward > EGO_FRONT_M)
    is_vehicle = observed == VEHICLE
    ahead = np.where(is_vehicle & lane[None], forward[None], np.inf)
    gap = ahead.reshape(len(observed), -1).min(1)                      # (T,) inf: no lead
    k = window_frames(LEAD_WINDOW_S, meta.rate_hz)
    dt = k / meta.rate_hz
    out = np.zeros(observed.shape, np.float32)
    if len(gap) <= 2 * k:
        return out
    gap = np.where(np.isfinite(gap), gap, np.nan)                      # NaN: no lead
    closing = np.full(len(gap), np.nan)
    closing[k:] = (gap[k:] - gap[:-k]) / dt                           # m/s
    closing[np.abs(np.nan_to_num(closing, nan=np.inf)) > MAX_CLOSING_MPS] = np.nan
    lead_speed = np.asarray(ego_speed, dtype=np.float64) + closing
    decel = np.zeros(len(gap))
    decel[k:] = (lead_speed[:-k] - lead_speed[k:]) / dt
    decel = np.clip(np.nan_to_num(decel, nan=0.0), 0.0, None)
    lead_cells = is_vehicle & lane[None] & (ahead < np.nan_to_num(gap, nan=-np.inf)[:, None, None] + 6.0)
    out[:] = decel[:, None, None] * lead_cells
    return out


def lead_cells(log):
    gap, cells = fs.lead_gap(log.semantic, log.meta)
    return cells, gap


def on(log, cells, values):
    return (np.nan_to_num(values, nan=0.0)[:, None, None] * cells).astype(np.float32)


def inverse_ttc(n):
    def f(log):
        cells, gap = lead_cells(log)
        closing = -fs.trend(gap, n, 1 / log.meta.rate_hz)
        closing[~(np.abs(closing) <= MAX_CLOSING_MPS)] = np.nan
        return on(log, cells, np.clip(closing, 0, None) / gap)
    return f


def ego_braking(log):
    cells, _ = lead_cells(log)
    return on(log, cells, np.clip(-fs.trend(np.asarray(log.ego_speed, float), 3, 1 / log.meta.rate_hz), 0, None))


def lead_deceleration(log):
    """The lead's deceleration from fitted trends: the ego's and the closing speed's."""
    cells, gap = lead_cells(log)
    dt = 1 / log.meta.rate_hz
    closing = -fs.trend(gap, 3, dt)
    closing[~(np.abs(closing) <= MAX_CLOSING_MPS)] = np.nan
    dec = -fs.trend(np.asarray(log.ego_speed, float), 3, dt) + fs.trend(closing, 3, dt)
    return on(log, cells, np.clip(dec, 0, None))


EXTRA = {"lead_braking": lambda log: lead_braking(log.semantic, log.ego_speed, log.meta),
         "ittc3": inverse_ttc(3), "ittc5": inverse_ttc(5), "leaddec3": lead_deceleration,
         "egob3": ego_braking}
MIN_SCALE = {"lead_braking": 1.0, "ittc3": 0.02, "ittc5": 0.02, "leaddec3": 1.0, "egob3": 0.5}
BASE = FIVE_CHANNELS[:3]
VARIANTS = {"deceleration (as committed before)": BASE + (("lead_braking", False, 1),),
            "no lead channel": BASE,
            "closing / gap, 3 frames": BASE + (("ittc3", False, 1),),
            "closing / gap, 5 frames": BASE + (("ittc5", False, 1),),
            "deceleration from fitted trends": BASE + (("leaddec3", False, 1),),
            "deceleration + ego braking": BASE + (("lead_braking", False, 1), ("egob3", False, 1))}


class Harness:
    """Cached maps of one world's training and evaluation logs, and the scoring states fitted
    on them.

    Attributes:
        observed_channels: name -> function(log) of the channels read from the observed
            grids (their maps are computed, their tails fitted on ``observed``); a candidate
            is added on an instance, the frame score's registry is left as it is.
        min_scale: per channel, the floor of its tail's scale (``FrameScorer``'s).
        scored_objects: function(observed, meta) of the object cells the channels read
            (``FrameScorer``'s; a candidate corridor is set on an instance).
        tail_class: the class of the channels' tails (``FrameScorer``'s ``tail``; a candidate
            on an instance).
    """

    observed_channels = FIVE_CHANNEL_OBSERVED
    min_scale = FIVE_CHANNEL_MIN_SCALE
    scored_objects = staticmethod(fs.scored_objects)   # a function, not a method of the harness
    tail_class = fs.TailScore

    def __init__(self, world, cal_frames=50):
        self.world = world
        self.root = Path("/tmp/drv16/cache") / world
        self.pred = OcclusionPredictor.load(f"/tmp/drv17/models/{world}")
        self.smooth = window_frames(self.pred.smooth_s, self.pred.meta_.rate_hz)
        self.train, self.cal_frames = self.load("train"), cal_frames
        self.tails = [self.tail(it, cal_frames) for it in self.train]
        self.whole = [self.frame_scorer(FIVE_CHANNELS).observed_statistics(log)
                      for log, _ in self.train]   # the lead channel's
        self.evals = {n: self.load(n) for n in ("tuned_normal", "tuned")}

    def load(self, name, maps_prefix=None):
        """The logs of set ``name`` with their cached maps (files ``<maps_prefix>_<log>.npz``;
        default prefix: ``name``); a log without maps is skipped."""
        out = []
        for p in sorted((self.root / "logs" / name).glob("*.parquet")):
            f = self.root / f"{maps_prefix or name}_{p.stem}.npz"
            if f.exists():
                z = np.load(f)
                out.append((read_log(p), {k: z[k] for k in ("revealed", "object_recon",
                                                            "object_forecast", "ground", "category")}))
        return out

    @staticmethod
    def tail(item, n):
        log, m = item
        return slice_log(log, len(log) - n), {k: v[-n:] for k, v in m.items()}

    def maps(self, log, m, prior):
        d = {k: m[k] for k in ("revealed", "object_recon", "object_forecast")}
        d.update({name: fn(log) for name, fn in {**EXTRA, **self.observed_channels}.items()})
        d["object_context"] = prior.surprise(m["ground"], m["category"])
        d.update(predicted=None, confidence=None, road_layout=None, probabilities=None)
        return d

    def frame_scorer(self, channels, scorer=fs.FrameScorer):
        """An unfitted frame scorer of class ``scorer`` over ``channels`` with :attr:`min_scale`,
        :attr:`observed_channels`, :attr:`scored_objects` and :attr:`tail_class`."""
        return scorer(channels, min_scale=self.min_scale, observed_channels=self.observed_channels,
                      scored_objects=self.scored_objects, tail=self.tail_class)

    def fit_state(self, items, channels, observed=None, scorer=fs.FrameScorer):
        """The scoring state fitted on ``items`` (log, maps): context prior, normaliser and
        :meth:`frame_scorer` ``(channels, scorer)`` (``observed``: as :meth:`fitted_states`)."""
        prior = new_prior(self.pred)
        for log, m in items:
            prior.add(m["ground"], m["category"], log.semantic)
        prior.finish()
        logs = [log for log, _ in items]
        maps = [self.maps(log, m, prior) for log, m in items]
        state = type("State", (), {})()
        state.normaliser = CellNormaliser(maps=MAPS).fit(maps, [log.semantic for log in logs], self.pred.meta_)
        state.frame_scorer = self.frame_scorer(channels, scorer).fit_logs(maps, logs, state.normaliser,
                                                                          observed)
        state.context_prior, state.smooth = prior, self.smooth
        return state

    def calibration_items(self, train=None) -> list:
        """The calibration tails of the training items ``train`` (default: :attr:`tails`, those
        of :attr:`train`)."""
        return self.tails if train is None else [self.tail(it, self.cal_frames) for it in train]

    def fitted_states(self, channels, train=None, items=None, observed=True,
                      each=True, scorer=fs.FrameScorer) -> tuple[list, object, list]:
        """The scoring state over ``channels`` fitted without each training log in turn, and on
        all of them.

        Args:
            channels: the frame score's channels.
            train: the training items (log, maps) (default: :attr:`train`).
            items: what the state is fitted on, one per training log (default: ``train``'s
                calibration tails; ``train`` itself: whole logs).
            observed: the observed channels' statistics, one per training log: True: from
                ``train``'s whole logs; None: none (their tails come from ``items`` as the
                other channels'); a list: these.
            each: False: the state on all only (``states`` empty).
            scorer: the frame scorer's class (a subclass of ``FrameScorer`` for a candidate).

        Returns:
            ``(states, full, items)``: ``states[i]`` fitted without log ``i``, ``full`` on all,
            ``items`` what they were fitted on.
        """
        items = self.calibration_items(train) if items is None else items
        train = self.train if train is None else train
        if observed is True:
            observed = [self.frame_scorer(channels).observed_statistics(log) for log, _ in train]
        without = lambda seq, i: None if seq is None else seq[:i] + seq[i + 1:]
        full = self.fit_state(items, channels, observed, scorer)
        states = [self.fit_state(without(items, i), channels, without(observed, i), scorer)
                  for i in range(len(items))] if each else []
        return states, full, items

    def result(self, state, item):
        """The scoring result of ``item`` (a log and its maps) under ``state``."""
        log, m = item
        return result_from_maps(state, log, self.maps(log, m, state.context_prior))

    def score(self, state, item):
        return self.result(state, item).score

    def run(self, channels, label, whole=False):
        states, full, tails = self.fitted_states(channels, observed=self.whole if whole else None)
        oof = [self.score(state, t) for state, t in zip(states, tails)]
        threshold = threshold_from_contamination(np.concatenate(oof), 0.05)
        out = {}
        for name, items in self.evals.items():
            scores = np.concatenate([self.score(full, it) for it in items])
            labels = np.concatenate([it[0].anomaly for it in items])
            kinds = np.concatenate([[k or "" for k in it[0].anomaly_kind] for it in items])
            o = {"alert_rate_normal": round(float(np.mean(scores[~labels] > threshold)), 3)}
            if labels.any():
                o["auroc"] = round(float(roc_auc_score(labels, scores)), 3)
                for k in event_kinds(kinds):
                    sel = (kinds == "") | (kinds == k)
                    o[k] = round(float(roc_auc_score(kinds[sel] == k, scores[sel])), 2)
            out[name] = o
        print(self.world, label, json.dumps(out), flush=True)


if __name__ == "__main__":
    harness = Harness(sys.argv[1])
    harness.min_scale = {**FIVE_CHANNEL_MIN_SCALE, **MIN_SCALE}
    for label, channels in VARIANTS.items():
        harness.run(channels, label)
    for floor in (0.1, 0.25):
        harness.min_scale = {**harness.min_scale, "ittc3": floor}
        harness.run(VARIANTS["closing / gap, 3 frames"], f"closing / gap, 3 frames, floor {floor} 1/s")
    # the committed channel (3 frames at 5 Hz, 5 at 10 Hz): tail fitted on the calibration
    # tails (empty on the highway: scores 0), then on the whole training logs
    # (the frame score's channels up to lead_closing: path_reach came a round later)
    harness.run(FIVE_CHANNELS[:4], "lead_closing, tail on the calibration tails")
    harness.run(FIVE_CHANNELS[:4], "lead_closing, tail on the whole training logs", whole=True)
