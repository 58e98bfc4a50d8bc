"""The occlusion predictor: an estimator around :class:`~driving.model.network.OcclusionNet`.

Self-supervised: it hides *visible* cells of the current frame (occlusion-shaped shadows
plus patches, :class:`~driving.model.masking.ShadowMasker`) and learns to reconstruct them from
the rest of the frame and K earlier frames warped into the current ego frame; a second
term asks it for the truly hidden cells that *later* frames of the same log saw (warped
back). It never reads ``semantic_true`` or ``anomaly``. At use, the truly hidden cells get class
probabilities. Training runs through ``core.training.fit``; the memory gate is fitted on
the last frames of every log, which training never sees, and the frame surprise score's
state and calibration (``core.calibration.ScoreCalibration``) on the whole logs.

The fitted check, the score calibration (threshold, p-values, alerts), ``predict`` and
bundle save/load come from ``core.estimator.Estimator``; what scoring reads besides the
network is one :class:`~driving.scoring.state.ScoringState` (``scoring_``).

Example:
    >>> predictor = OcclusionPredictor(epochs=4).fit([read_log(p) for p in paths])  # doctest: +SKIP
    >>> predictor.save("models/driving/default")                                      # doctest: +SKIP
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from core.calibration import ScoreCalibration
from core.errors import DataValidationError, NotFittedError, UnmaskWarning
from core.estimator import Estimator
from core.io import tuples_as_lists
from core.runtime import autocast, check_precision, choose_device, configure_threads, module_device
from core.training import TrainConfig, fit

from ..guard import fit_input_profile
from ..inputs import future_targets, stack_frames  # noqa: F401  (stack_frames re-exported)
from ..schema import UNOBSERVED, DriveLog, LogMeta, slice_log, window_frames
from ..scoring.decision import decide_log
from ..scoring.state import fit_scoring_state
from ..scoring.surprise import score_log
from .baselines import WorldCells, apply_layout_memory, world_memory
from .calibration_windows import select_windows
from .bundle import (BUNDLE_KIND, BUNDLE_VERSION, OLDEST_READ_VERSION, bundle_state,
                     check_bundle_format, predictor_from_bundle)
from .masking import ShadowMasker, decoy_regions, object_regions
from .memory_gate import MemoryGate, memory_trace
from .network import OcclusionNet, OcclusionNetConfig

DEFAULT_LR = 3e-3         # the learning rate of a training from scratch


class OcclusionPredictor(Estimator):
    """Predicts hidden cells' classes; scores frames by surprise (see ``driving.scoring.surprise``).

    Args:
        history: frame offsets of the earlier frames fed to the network (K = len).
        memory: also feed the last-seen memory before the current frame (one more slot).
        future: offsets of later frames whose observations, warped back, are extra targets
            for the cells hidden now (empty: visible-cell masking only).
        future_weight: weight of that extra loss term.
        class_weight_power: loss weight of class c is ``(0.01 / freq_c) ** power``
            clipped to ``[1, max_class_weight]`` (freq over the training logs' observed
            cells): rare object classes (pedestrians) count more; 0 = unweighted.
        max_class_weight: the clip of those weights.
        forecast_masks: share of training grids whose patches hide the current frame only
            (``ShadowMasker.forecast_fraction``); the rest hide spatio-temporal tubes.
        object_masks: share of training grids that also hide every observed object grown
            by 2-6 cells (``masking.object_regions``), half in the current frame only (where
            is each object now, given its history?), half in all frames (does an object
            belong here at all?): what scoring's object passes ask.
        decoy_masks: share of those object-masked grids that also get 1..``max_decoys``
            object-shaped holes over cells with *no* object (``masking.decoy_regions``:
            vehicle, pedestrian or obstacle rectangles with the same margin, same frames),
            so that a hole no longer implies "an object is here" (0 = none).
        max_decoys: the most decoys per grid.
        memory_gate: at inference, mix every hidden cell's probabilities with the class
            the world-fixed memory last saw there, weighted by how recently and how surely
            it was seen, and with "a vehicle" where a lost car's constant-velocity
            extrapolation puts it (:mod:`~driving.model.memory_gate`; the weights are fitted
            on the held-out calibration frames, against what later frames revealed).
        layout_fallback: at inference, hidden cells whose layout the log saw earlier
            (``baselines.world_memory``: a world-fixed map of the static layout) give the
            model's layout probability mass (off-road, road, lane marking, sidewalk) to the
            remembered class; object probabilities are the model's.
        widths: channels per level of the encoder–decoder.
        blocks: extra convolutions per level.
        epochs: training epochs (early stopping on a held-out split may end sooner).
        batch_size: frames per step.
        lr: learning rate.
        max_steps_per_epoch: cap on steps per epoch (None = all frames).
        calibration_fraction: tail fraction of each log held out for calibration.
        contamination: expected anomalous fraction of frames (sets the alert threshold).
        calibration_max_frames: the most training frames the scoring state and the alert
            threshold are fitted on. Calibration keeps every frame's surprise maps in memory
            for its leave-one-log-out refits (peak about 1.6 MB a frame at 128x128: 5 GB at
            the default; ``bench/experiments/driving_calibration_budget.py``), so without a
            bound its memory grows with the training set. Logs holding more frames than this
            share it by water-filling: each gives one contiguous window of
            ``min(its length, c)`` frames at a seeded position, ``c`` the largest cap that fits
            (:meth:`calibration_windows`); at or under it every frame is used. With two or
            more logs it must be at least twice :meth:`shortest_calibration_window`, so
            that the threshold is cross-fitted. ``None``: no bound (every frame). A smaller
            budget bounds memory and time, at the cost of fitting the threshold on fewer of
            a drive's stretches.
        smooth_s: a frame's score is the mean of its raw surprise over this many seconds
            (itself and the frames before, at the logs' rate; 0 = no smoothing).
        device: where training, calibration and scoring run (``"cpu"``, ``"auto"``,
            ``"cuda"``, ``"cuda:N"``); the network stays there after ``fit``. A runtime
            choice: :meth:`load` puts the network where it is told, whatever the bundle
            was trained on.
        precision: ``"fp32"``, or ``"bf16"`` (CUDA autocast).
        random_state: seeds the masks, the split and the initial weights.
        progress: progress bars on stderr (None: only on a terminal; False: never).
    """

    bundle_kind = BUNDLE_KIND
    bundle_version = BUNDLE_VERSION
    oldest_bundle_version = OLDEST_READ_VERSION

    def __init__(self, history=(2, 5, 10, 20), memory: bool = True, future=(5, 10, 20),
                 future_weight: float = 0.5, class_weight_power: float = 0.5,
                 max_class_weight: float = 8.0, forecast_masks: float = 0.5,
                 object_masks: float = 0.5, decoy_masks: float = 0.0, max_decoys: int = 12,
                 layout_fallback: bool = True, memory_gate: bool = True,
                 widths=(16, 32, 64), blocks: int = 0,
                 epochs: int = 8, batch_size: int = 32, lr: float = DEFAULT_LR,
                 max_steps_per_epoch: int | None = None, calibration_fraction: float = 0.2,
                 contamination: float = 0.05, calibration_max_frames: int | None = 3000,
                 smooth_s: float = 0.5, device: str = "cpu",
                 precision: str = "fp32", random_state: int = 0, progress: bool | None = None):
        self.history = history
        self.memory = memory
        self.class_weight_power = class_weight_power
        self.max_class_weight = max_class_weight
        self.forecast_masks = forecast_masks
        self.object_masks = object_masks
        self.decoy_masks = decoy_masks
        self.max_decoys = max_decoys
        self.layout_fallback = layout_fallback
        self.memory_gate = memory_gate
        self.future = future
        self.future_weight = future_weight
        self.widths = widths
        self.blocks = blocks
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.max_steps_per_epoch = max_steps_per_epoch
        self.calibration_fraction = calibration_fraction
        self.contamination = contamination
        self.calibration_max_frames = calibration_max_frames
        self.smooth_s = smooth_s
        self.device = device
        self.precision = precision
        self.random_state = random_state
        self.progress = progress

    # --- fitting ----------------------------------------------------------------------
    def _check_logs(self, logs: list[DriveLog]) -> LogMeta:
        if not logs:
            raise DataValidationError("training needs at least one drive log")
        meta = logs[0].meta
        for log in logs[1:]:
            if (log.meta.grid_shape, log.meta.classes, log.meta.ego_cell, log.meta.resolution_m) != \
                    (meta.grid_shape, meta.classes, meta.ego_cell, meta.resolution_m):
                raise DataValidationError(f"{log.path or log.log_id}: grid geometry or classes "
                                          f"differ from {logs[0].path or logs[0].log_id}")
        factor = 2 ** len(self.widths)
        if meta.grid_shape[0] % factor or meta.grid_shape[1] % factor:
            raise DataValidationError(f"grid_shape {list(meta.grid_shape)} must be divisible by "
                                      f"{factor} for this network depth")
        return meta

    def fit(self, logs: list[DriveLog], init=None) -> "OcclusionPredictor":
        """Train on the logs' observed grids, then calibrate the surprise score.

        Args:
            logs: training drive logs (observed grids only are read).
            init: warm start: a fitted :class:`OcclusionPredictor` (or the path of its
                bundle) whose network weights training continues from instead of a seeded
                initialisation; its network config must equal this one's. The bundle
                records where the weights came from (``warm_start_``).
        """
        configure_threads()
        meta = self.meta_ = self._check_logs(logs)
        self.input_profile_ = fit_input_profile(logs)  # what scoring compares logs with
        # enough held-out frames, and a usable budget: refused now, not after the epochs
        self.calibration_windows([log for log, _ in self._calibration_pairs(logs)])
        train_grids, train_speed, train_future = [], [], []
        for log in logs:
            grids, speed = self.stack(log)
            cut = len(log) - self._tail_frames(len(log))
            train_grids.append(grids[:cut])
            train_speed.append(speed[:cut])
            train_future.append(future_targets(slice_log(log, 0, cut), self.future))
        grids = torch.from_numpy(np.concatenate(train_grids))
        speed = torch.from_numpy(np.concatenate(train_speed))
        future = torch.from_numpy(np.concatenate(train_future))
        n_frames = 1 + len(self.history) + bool(self.memory)
        self.net_config_ = OcclusionNetConfig(n_classes=len(meta.classes), n_frames=n_frames,
                                              widths=tuple(self.widths), blocks=self.blocks,
                                              grid_shape=tuple(meta.grid_shape))
        net = OcclusionNet(self.net_config_)
        counts = np.bincount(grids[:, 0].numpy().ravel(), minlength=256)[: len(meta.classes)]
        freq = counts / max(counts.sum(), 1)
        self.warm_start_ = None
        if init is not None:
            self._warm_start(net, init)
        else:
            net.reset_parameters(torch.Generator().manual_seed(self.random_state))
            net.set_class_prior(freq)
        weight = np.clip((0.01 / np.maximum(freq, 1e-6)) ** self.class_weight_power, 1.0,
                         self.max_class_weight)
        self.class_weights_ = [float(v) for v in weight]
        weight = torch.tensor(weight, dtype=torch.float32)
        net = net.to(memory_format=torch.channels_last)
        masker = ShadowMasker(meta, forecast_fraction=self.forecast_masks)

        def loss_fn(model, batch, generator):
            frames, spd, later = batch
            seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
            hidden = torch.from_numpy(masker.set_random_state(seed).draw(tuple(frames.shape)))
            hidden = hidden.to(frames.device)                         # (B, F, H, W)
            current = frames[:, 0]
            if self.object_masks:
                n = len(frames)
                pick = torch.rand(n, generator=generator) < self.object_masks
                tube = torch.rand(n, generator=generator) < 0.5
                margins = torch.randint(2, 7, (n,), generator=generator)
                grown = object_regions(current.cpu(), margins) & pick[:, None, None]
                if self.decoy_masks:
                    decoys = torch.randint(1, self.max_decoys + 1, (n,), generator=generator)
                    decoys *= pick & (torch.rand(n, generator=generator) < self.decoy_masks)
                    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
                    grown |= torch.from_numpy(decoy_regions(current.cpu().numpy(), margins.numpy(),
                                                            decoys.numpy(), seed))
                grown = grown.to(frames.device)
                hidden[:, 0] |= grown
                hidden[:, 1:] |= (grown & tube.to(frames.device)[:, None, None])[:, None]
            target = current.long()
            target[~hidden[:, 0] | (current == UNOBSERVED)] = -100    # only hidden visible cells
            masked = masker.apply(frames, hidden, fill=UNOBSERVED)
            logits = model(masked, spd)
            loss = logits.sum() * 0.0
            if (target >= 0).any():
                loss = loss + _weighted_ce(logits, target, weight)
            revealed = later.long()                                    # truly hidden cells,
            revealed[(current != UNOBSERVED) | (later == UNOBSERVED)] = -100   # seen later
            if self.future_weight and (revealed >= 0).any():
                loss = loss + self.future_weight * _weighted_ce(logits, revealed, weight)
            return loss

        config = TrainConfig(max_epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                             patience=max(3, self.epochs // 3), device=self.device,
                             precision=self.precision, seed=self.random_state, progress=self.progress,
                             max_steps_per_epoch=self.max_steps_per_epoch, weight_decay=1e-4)
        self.history_ = fit(net, TensorDataset(grids, speed, future), loss_fn, config)
        self.net_ = net.eval()  # calibration and scoring run where training did
        return self.calibrate(logs)

    def _warm_start(self, net, init) -> None:
        """Copy ``init``'s weights into ``net`` (same config) and note where they came from."""
        source = None
        if not isinstance(init, OcclusionPredictor):
            source = str(init)
            init = OcclusionPredictor.load(init)
        init._check_fitted()
        grid, ours = init.net_config_.grid_shape, self.net_config_.grid_shape
        if tuple(grid) != tuple(ours):
            raise DataValidationError(
                f"warm start {source or 'predictor'}: its network reads {grid[0]}x{grid[1]} grids, "
                f"these logs are {ours[0]}x{ours[1]}; fine-tune it on logs of its grid, or train "
                "a model from scratch on these")
        if init.net_config_ != self.net_config_:
            raise DataValidationError(f"warm start {source or 'predictor'}: network config "
                                      f"{init.net_config_} differs from this model's {self.net_config_}")
        net.load_state_dict(init.net_.state_dict())
        self.warm_start_ = {"source": source, "params": init.get_params(),
                            "training": init.history_.to_dict(),
                            "warm_start": init.warm_start_}

    def calibration_logs(self, logs: list[DriveLog]) -> list[DriveLog]:
        """The held-out tail (``calibration_fraction``) of every log, which training skips."""
        return [tail for _, tail in self._calibration_pairs(logs)]

    def _calibration_pairs(self, logs: list[DriveLog]) -> list[tuple[DriveLog, DriveLog]]:
        """``(log, its held-out tail)`` for every log with a tail of ``MIN_TAIL`` frames or more."""
        shortest = self.shortest_training_log()
        out = [(log, slice_log(log, len(log) - self._tail_frames(len(log))))
               for log in logs if len(log) >= shortest]
        if not out:   # the CLI cannot set calibration_fraction: say what a log needs
            longest = max((len(log) for log in logs), default=0)
            raise DataValidationError(
                f"calibration needs a held-out tail of at least {MIN_TAIL} frames (the last "
                f"{self.calibration_fraction:.0%} of a log), and the longest training log has "
                f"{longest} frames: train on logs of at least {shortest} frames (from Python, "
                "OcclusionPredictor(calibration_fraction=...) sets the share held out)")
        return out

    def _tail_frames(self, n_frames: int) -> int:
        """Frames held out for calibration at the end of a log of ``n_frames``."""
        return int(round(n_frames * self.calibration_fraction))

    def shortest_training_log(self) -> int:
        """The fewest frames a log needs for a held-out tail of ``MIN_TAIL`` frames (8 at
        the default ``calibration_fraction`` 0.2); shorter logs are trained on, never
        calibrated on."""
        fraction = self.calibration_fraction
        if not 0 < fraction < 1:
            raise DataValidationError(f"calibration_fraction={fraction!r} must be between 0 and 1")
        n_frames = max(MIN_TAIL, int((MIN_TAIL - 0.5) / fraction) - 1)   # just below the answer
        while self._tail_frames(n_frames) < MIN_TAIL:
            n_frames += 1
        return n_frames

    def calibrate(self, logs: list[DriveLog], frame_scorer=None) -> "OcclusionPredictor":
        """Fit the memory gate on the held-out tails of ``logs`` (the training logs:
        :meth:`fit` calls this), then the scoring state
        (:func:`~driving.scoring.state.fit_scoring_state`) and the score calibration on the
        whole logs (within ``calibration_max_frames``: :meth:`calibration_windows`). The
        alert threshold is read off cross-fitted scores (each log scored by a state fitted
        without it) at the level at which a log left out alerts at ``contamination``
        (``core.calibration.threshold_from_groups``): drives differ from each other more
        than their frames do. With one log there is no other to fit on: the threshold is
        read off that log's own scores, and an ``UnmaskWarning`` says why.

        ``frame_scorer``: the unfitted :class:`~driving.scoring.frame_score.FrameScorer`
        whose channels the scoring state fits (None: the default ``FrameScorer()``); a bundle
        saves its observed channels by name (registry channels only)."""
        self._check_network()
        pairs = self._calibration_pairs(logs)
        for log, _ in pairs:
            self.check_log(log)
        self.fit_memory_gate([tail for _, tail in pairs])
        windows = self.calibration_windows([log for log, _ in pairs])
        if len(windows) < 2:
            warnings.warn("the alert threshold was calibrated on one training log, read off its own "
                          "frames: new drives may alert more often than the nominal "
                          f"{self.contamination:.0%}; "
                          f"{_one_log_cause(len(logs), len(pairs), self.shortest_training_log())}",
                          UnmaskWarning, stacklevel=2)
        self.scoring_, per_log = fit_scoring_state(self, windows, self.smooth_s, self.progress,
                                                   frame_scorer)
        return self._set_calibration(ScoreCalibration(self.contamination).fit_groups(per_log))

    def calibration_windows(self, logs: list[DriveLog]) -> list[DriveLog]:
        """What the scoring state is fitted on: ``logs`` themselves within
        ``calibration_max_frames``, else one seeded window per log, water-filled
        (:func:`~driving.model.calibration_windows.select_windows`). Each window stays a
        group of its own for the leave-one-log-out threshold."""
        shortest = self.shortest_calibration_window()
        return select_windows(logs, self.calibration_max_frames, shortest, self.random_state)

    def shortest_calibration_window(self) -> int:
        """Frames a calibration window needs: its first ``max(history)`` frames see a
        clamped history and its first smoothing window averages fewer frames than scoring
        does, so twice that warm-up keeps at least half of every window scored as a new
        drive's frames are (50 frames with the defaults at 10 Hz)."""
        warm_up = max(self.history, default=0) + window_frames(self.smooth_s, self.meta_.rate_hz)
        return 2 * warm_up

    def fit_memory_gate(self, logs: list[DriveLog]) -> "OcclusionPredictor":
        """Fit ``memory_gate_`` (``None`` with ``memory_gate`` off) from what later frames of
        ``logs`` revealed (self-supervised; :meth:`calibrate` passes the held-out tails of
        :meth:`calibration_logs`); returns ``self``."""
        self.memory_gate_ = None                  # the network alone while fitting
        if not self.memory_gate:
            return self
        gate = MemoryGate(self.random_state)
        for log in logs:
            world = WorldCells(log)
            context = self.memory_context(log, world)
            grids, speed = self.stack(log, world)
            probs = self.apply_memory(self.predict_proba(grids, speed), context, slice(None),
                                      log.semantic)
            gate.add(probs, context[1], future_targets(log, GATE_FUTURE), log.semantic)
        self.memory_gate_ = gate.finish()
        return self

    # --- inference ----------------------------------------------------------------------
    def _check_network(self) -> None:
        """The network is trained (calibration runs it before the model is fitted)."""
        if not hasattr(self, "net_"):
            raise NotFittedError("OcclusionPredictor is not fitted; call fit(logs) or load(path)")

    def check_log(self, log: DriveLog) -> None:
        """The log must have the geometry and classes the model was trained on; the refusal
        says the two ways on (no mapping between geometries is guessed)."""
        self._check_network()
        m = self.meta_
        for name in ("grid_shape", "classes", "ego_cell", "resolution_m"):
            if tuple(np.atleast_1d(getattr(log.meta, name))) != tuple(np.atleast_1d(getattr(m, name))):
                raise DataValidationError(
                    f"{log.path or log.log_id}: metadata {name} {getattr(log.meta, name)} differs "
                    f"from the model's {getattr(m, name)}: score logs with the model's {name}, "
                    "or train a model on logs like this one (unmask driving train --logs DIR)")

    def stack(self, log: DriveLog, world: WorldCells | None = None) -> tuple[np.ndarray, np.ndarray]:
        """This model's network input for every frame of ``log`` (see :func:`stack_frames`;
        ``world``: the log's ``WorldCells``, None: computed when needed)."""
        return stack_frames(log, self.history, memory=self.memory, world=world)

    def predict_proba(self, grids: np.ndarray, speed: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Class probabilities ``(N, C, H, W)`` float32 for stacked inputs ``(N, 1+K, H, W)``."""
        self._check_network()
        device = module_device(self.net_)
        out = []
        with torch.inference_mode(), autocast(device, self.precision):
            for i in range(0, len(grids), batch_size):
                g = torch.from_numpy(np.ascontiguousarray(grids[i : i + batch_size])).to(device)
                s = torch.from_numpy(np.ascontiguousarray(speed[i : i + batch_size])).to(device)
                probabilities = self.net_.predict(g, s).probabilities
                out.append(probabilities.float().contiguous().cpu().numpy())
        if len(out) == 1:                         # one batch: no copy
            return out[0]
        return np.concatenate(out) if out else np.zeros((0,), np.float32)

    def layout_memory(self, log: DriveLog, world: WorldCells | None = None) -> np.ndarray | None:
        """The world-fixed layout memory the fallback uses (None when it is off)."""
        return world_memory(log, before=False, world=world) if self.layout_fallback else None

    def memory_context(self, log: DriveLog, world: WorldCells | None = None) -> tuple:
        """What :meth:`apply_memory` reads of a log: ``(layout memory or None, memory
        trace or None)``; ``world``: the log's ``WorldCells`` (None: computed when needed)."""
        trace = memory_trace(log, world) if self.memory_gate else None
        return self.layout_memory(log, world), trace

    def apply_memory(self, probs: np.ndarray, context: tuple, frames: slice,
                     observed: np.ndarray) -> np.ndarray:
        """In place: the layout fallback, then the memory gate (when fitted), on the hidden
        cells of ``probs`` ``(B, C, H, W)``, the log's ``frames`` (``observed`` their grids)."""
        layout, trace = context
        if layout is not None:
            apply_layout_memory(probs, layout[frames], observed)
        gate = getattr(self, "memory_gate_", None)
        if gate is not None and trace is not None:
            gate.apply(probs, trace[frames], observed)
        return probs

    def predict_log_proba(self, log: DriveLog, batch_size: int = 32) -> np.ndarray:
        """Class probabilities ``(T, C, H, W)`` for every frame of a log: the network on
        the stacked input, then the layout fallback and the memory gate (see
        ``layout_fallback`` and ``memory_gate``)."""
        self.check_log(log)
        world = WorldCells(log)                   # shared by the memory slot and the context
        grids, speed = self.stack(log, world)
        probs = self.predict_proba(grids, speed, batch_size)
        return self.apply_memory(probs, self.memory_context(log, world), slice(None), log.semantic)

    def decide(self, log: DriveLog, probs: np.ndarray) -> np.ndarray:
        """Reported classes ``(T, H, W)`` for a log's probabilities ``(T, C, H, W)``: road
        layout where its filtered belief reaches the calibrated road threshold (see
        ``driving.scoring.decision``), else the likeliest class."""
        self._check_fitted()
        return decide_log(log, probs, self.scoring_.road_threshold)

    def _score(self, log: DriveLog) -> np.ndarray:
        """Frame surprise scores ``(T,)`` of a log (``decision_function``; higher = more
        anomalous)."""
        return score_log(self, log).score

    # --- persistence --------------------------------------------------------------------
    def get_params(self) -> dict:
        return tuples_as_lists({k: v for k, v in vars(self).items() if not k.endswith("_")})

    def _bundle_state(self) -> tuple[dict, dict]:
        return bundle_state(self)

    @classmethod
    def _from_bundle(cls, config: dict, tensors: dict) -> "OcclusionPredictor":
        return predictor_from_bundle(cls, config, tensors)

    def to(self, device="cpu", precision: str = "fp32") -> "OcclusionPredictor":
        """Run the network on ``device`` at ``precision`` from now on."""
        chosen = choose_device(device)
        self.precision = check_precision(precision, chosen)
        self.device = str(chosen)
        if hasattr(self, "net_"):
            self.net_.to(chosen)
        return self

    @classmethod
    def load(cls, path: str | os.PathLike, device="cpu", precision: str = "fp32"
             ) -> "OcclusionPredictor":
        """Load a bundle written by :meth:`save` onto ``device`` (the device it was trained
        on, saved among its parameters, does not matter); a bundle of an older format is
        refused in one line that says to retrain."""
        check_bundle_format(path)
        return super().load(path, device, precision)


GATE_FUTURE = (1, 2, 5, 10, 20)   # later frames whose observations the gate is fitted on
MIN_TAIL = 2                      # held-out frames a log needs to be calibrated on


def _weighted_ce(logits, target, weight):
    """Class-weighted cross-entropy, normalised by the weights of the counted cells."""
    return F.cross_entropy(logits, target, weight=weight.to(logits.device), ignore_index=-100)


def _one_log_cause(n_logs: int, n_usable: int, shortest: int) -> str:
    """What to change when calibration ended up with one log's frames (the budget never
    leaves one window of two or more logs: :meth:`OcclusionPredictor.calibration_windows`);
    ``shortest``: the frames a log needs for a held-out tail."""
    if n_logs < 2:
        return "train on two or more logs"
    return (f"{n_logs - n_usable} of the {n_logs} logs were too short for a held-out tail "
            f"of {MIN_TAIL} frames (calibration_fraction); use logs of at least {shortest} frames")
