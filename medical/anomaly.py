"""Anomaly maps from masked reconstruction, case scores and region SHAP values.

A voxel's error is measured when it is hidden *whole with its surroundings*: hidden
patches (``patch_size``, larger than the lesions looked for) force the network to inpaint
healthy tissue from context instead of continuing a lesion from its visible rim. The
fixed schedule (:func:`core_schedule`) shifts the patch grid by half a patch along every
axis (8 offsets) and hides a 3-D checkerboard of patches per pass (2 passes per offset);
each voxel takes its error from the one pass in which it lies in the central half of a
hidden patch. The prediction is a context baseline (Gaussian-weighted mean of the
visible voxels around the patch) plus the network's correction; the network also
predicts a variance. The residual in units of CT noise (``noise_hu``; or of the
predicted sd), clipped, is smoothed with a Gaussian of about a small lesion's size (a
matched filter: noise averages out, a lesion's coherent offset does not) and squared.
Scoring is restricted to soft tissue whose *predicted healthy* intensity is organ
parenchyma (``tissue_hu``, ``observed_hu``): bone, fat, gas and the body outline, whose
borders are never inpainted exactly, are left out. The same input always gives the
same map.

With a segmentation (``error_map(image, labels)``, once the scorer is calibrated with a
segmenter, ``calibrate(cases, segmenter=...)``) only organ parenchyma
is scored, and hidden organ voxels are predicted from the visible parenchyma of the same
organ (``organ_prediction="context"``) or by the network (``"network"``); each organ's
residual offset and SD on healthy cases turn residuals into z-scores. This removes the
organ/fat mixture bias of the plain prediction (see :mod:`medical.organ_scoring`).

Case score: the mean of the ``top_k_ml`` millilitres of highest map values (higher =
more anomalous). Conformal p-values come from held-out healthy cases.

Region SHAP: regions (organs from the segmentation, plus the rest of the body) are
switched on/off; a region switched *off* has its voxel errors replaced by the healthy
baseline error (the median map value of the healthy calibration cases), and the score is
recomputed. So the values say which regions hold the error that lifts this case above a
healthy one; they sum to ``score - baseline``.

The settings live in :mod:`medical.anomaly_config`, the shared numerics (schedule,
context baseline, loss) in :mod:`medical.reconstruction`; this module holds the
estimator: ``fit`` (train, then calibrate), ``calibrate``, maps, scores and the bundle.

Example:
    >>> scorer = AnomalyScorer(NetworkConfig(), PreprocessConfig(), AnomalyConfig())  # doctest: +SKIP
    >>> scorer.fit(train_cases, calibration_cases, PretrainConfig())                   # doctest: +SKIP
    >>> scorer.p_values(images)                                                         # doctest: +SKIP
"""
from __future__ import annotations

from functools import partial

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from core.errors import DataValidationError
from core.estimator import Estimator
from core.explain import region_shap
from core.pooling import top_k_mean
from core.runtime import NetworkPlacement, autocast, progress_bar
from core.training import TrainConfig, fit

from .anomaly_config import AnomalyConfig
from .networks import NetworkConfig, build_network, load_weights
from .organ_scoring import (confident_labels, divide_by_tails, organ_error_map, organ_map,
                            organ_reconstruction, organ_residual_stats, organ_tails,
                            scored_parenchyma)
from .reconstruction import (MeanAndLogVariance, body_mask, context_baseline, core_schedule,
                             masked_input, output_channels, reconstruction_loss, split_output)
from .transforms import Preprocessor, PreprocessConfig
from .volumes import CropDataset, check_studies, phase_cases, prepare_case, training_volume


def grid_array(image) -> np.ndarray:
    """A model-grid image ``(1, x, y, z)`` (tensor, MetaTensor or array) as float32 ``(x, y, z)``."""
    return np.asarray(torch.as_tensor(np.asarray(image), dtype=torch.float32))[0]


class AnomalyScorer(NetworkPlacement, Estimator):
    """A masked-reconstruction network plus its scoring state (``core.estimator.Estimator``).

    Args:
        network_config, preprocess, config: the saved configuration.
        contamination: expected anomaly share among calibration scores (sets ``threshold_``).
        seed: seeds the initial weights.

    Fitted state (by :meth:`fit` or :meth:`calibrate`, saved in the bundle):
        calibration_, threshold_: on held-out healthy case scores (the base's).
        healthy_error: median smoothed body error of those cases (SHAP baseline).
        organ_stats: per-organ residual ``{label: (offset, sd)}`` (HU) of healthy cases,
            from calibrating with a segmenter; ``None`` without one.
        organ_tails: per-organ top-k mean of those cases' organ maps ``{label: value}``;
            each organ's map is divided by it (``organ_tail_reference``), else ``None``.
        provenance_: what the model was trained and calibrated on (``training``, with
            the training cases' names and image files, ``images``, by which a later
            calibration leaves them out; ``organ_calibration_cases``), kept in the
            bundle's config.
        history_: the training history (after :meth:`fit` only).

    The network runs where it lives (:attr:`device`; move it with :meth:`to`): every
    tensor it is fed is put there first, and ``precision`` says whether its forward
    passes run under bf16 CUDA autocast. Neither is saved with the bundle.

    ``decision_function(X)``, ``predict``, ``p_values`` and ``alerts`` (the base's) take
    a list of model-grid images ``(1, x, y, z)``, or of ``(image, labels)`` pairs (or
    ``(image, labels, probs)`` triples, with ``config.organ_confidence``) to score organs
    with a segmentation.
    """

    bundle_kind = "ct-anomaly"
    # 2: organ scoring settings, the contamination and the provenance are always saved
    bundle_version = 2

    def __init__(self, network_config: NetworkConfig, preprocess: PreprocessConfig,
                 config: AnomalyConfig, contamination: float = 0.05, seed: int = 0):
        self.network_config = network_config
        self.preprocess = preprocess
        self.config = config
        self.contamination = contamination
        self.seed = seed
        # mean and log variance of each hidden voxel (channels 0-1, all that scoring reads),
        # then any embedding channels the pretext trains (``output_channels``)
        self.network = build_network(network_config, out_channels=output_channels(config.pretext),
                                     seed=seed)
        self.healthy_error: float | None = None
        # per-organ residual (offset, sd) in HU on healthy cases; set by calibrating with a
        # segmenter, and only then are maps given a label map scored organ by organ
        self.organ_stats: dict | None = None
        # per-organ healthy tail of the organ map ({label: top-k mean}); the same calibration
        self.organ_tails: dict | None = None
        self.provenance_: dict = {}

    # --- fitting ----------------------------------------------------------------------------

    def fit(self, cases, calibration_cases, config, progress: bool | None = None,
            read=None) -> "AnomalyScorer":
        """Train on lesion-free ``cases``, then :meth:`calibrate` on ``calibration_cases``.

        Args:
            cases, calibration_cases: ``medical.io.Case`` lists (disjoint, healthy); with
                a cross-phase ``config.pretext`` (this scorer's ``AnomalyConfig``)
                ``cases`` are studies instead, tuples of one body's phase ``Case``s
                (``medical.volumes.training_volume``).
            config: loop settings (``medical.pretrain.PretrainConfig``: samples_per_epoch,
                max_epochs, batch_size, lr, patience, seed, checkpoint_dir, snapshot_epochs).
            progress: bars on stderr (None: only on a terminal; False: never).
            read: ``Case -> PreparedCase`` on this scorer's grid for ``cases`` (default:
                :meth:`case_reader`'s).

        Runs on this scorer's device and precision (:meth:`to`).

        Raises:
            DataValidationError: ``cases`` do not fit the pretext (single ``Case``s, or
                studies of 2 or more phases, all as many: :func:`medical.volumes.check_studies`),
                before any is read.
        """
        read = read or self.case_reader()
        check_studies(cases, self.config.pretext)
        images = [training_volume(item, read) for item in cases]
        roi = self.network_config.roi_size
        dataset = CropDataset(images, roi, config.samples_per_epoch, seed=config.seed,
                              intensity_jitter=0.0)
        val = CropDataset(images, roi, max(4, config.samples_per_epoch // 8), seed=config.seed + 7,
                          fixed=True)
        train_config = TrainConfig(max_epochs=config.max_epochs, batch_size=config.batch_size,
                                   lr=config.lr, patience=config.patience, seed=config.seed,
                                   progress=progress, weight_decay=1e-5,
                                   device=str(self.device), precision=self.precision,
                                   checkpoint_dir=config.checkpoint_dir,
                                   snapshot_epochs=config.snapshot_epochs)
        loss = reconstruction_loss(self.config.masker(), self.config.context_sigma, self.config.pretext)
        self.history_ = fit(self.network, dataset, loss, train_config, val_dataset=val)
        self.network.eval()
        self.calibrate(calibration_cases, progress=progress)
        trained = phase_cases(cases)
        self.provenance_["training"] = {
            "cases": [c.name for c in trained],
            "calibration_cases": [c.name for c in calibration_cases],
            "images": [str(c.key) for c in trained],  # the files trained on, by Case.key
            "epochs": len(self.history_.train_loss), "best_val_loss": self.history_.best_val_loss,
            "samples_per_epoch": config.samples_per_epoch, "seed": config.seed}
        return self

    def calibrate(self, cases, segmenter=None, progress: bool | None = None,
                  read=None) -> "AnomalyScorer":
        """Fit the calibration and the SHAP baseline on held-out healthy ``cases``.

        With ``segmenter`` (same model grid), first each organ's residual offset and SD on
        the cases segmented by it (:attr:`organ_stats`; organ scoring on), then the
        calibration from the organ-scored maps. Without one, plain maps are calibrated
        and organ scoring is off. Call again after changing :attr:`config` (its scoring
        settings change the scores). Runs where the network is; ``progress``: a bar.
        ``read``: ``Case -> PreparedCase`` on this scorer's grid (default:
        :meth:`case_reader`'s); ``train_segmenter`` hands back the cases it has already prepared.

        Raises:
            DataValidationError: the segmenter uses another grid than the scorer.
        """
        if segmenter is not None and segmenter.preprocess != self.preprocess:
            raise DataValidationError("the segmenter and the anomaly model use different grids "
                                      f"({segmenter.preprocess} vs {self.preprocess})")
        read = read or self.case_reader()
        prepared = progress_bar(map(read, cases), desc="calibrate", total=len(cases), unit="case",
                                show=progress)
        images = [p.image.as_tensor() for p in prepared]
        if segmenter is None:
            self.organ_stats = None
            maps = [self.error_map(image) for image in images]
        else:
            maps = self._fit_organ_stats(images, segmenter)
            self.provenance_["organ_calibration_cases"] = [c.name for c in cases]
        scores, medians = [], []
        for image, error in zip(images, maps):
            scores.append(self.case_score(error, body_mask(grid_array(image))))
            scored = error[error > 0]  # maps are 0 outside scored tissue (inside the body)
            medians.append(float(np.median(scored)) if scored.size else 0.0)
        self.healthy_error = float(np.median(medians))
        return self._calibrate(scores)

    def case_reader(self):
        """``Case -> PreparedCase``: a case loaded and preprocessed onto this scorer's grid."""
        return partial(prepare_case, pre=Preprocessor(self.preprocess))

    def _fit_organ_stats(self, images, segmenter) -> list[np.ndarray]:
        """Set :attr:`organ_stats` from the healthy ``images``; return their organ maps."""
        lo, hi = self.preprocess.window
        items = []
        for image in images:
            probs, labels = segmenter.segment(image)[:2]   # post-processed, as infer scores them
            labels = confident_labels(labels, probs, self.config.organ_confidence)
            items.append((grid_array(image), labels, organ_reconstruction(self, image, labels)))
        self.organ_stats = organ_residual_stats(
            [(x - pred) * (hi - lo) for x, _, pred in items], [labels for _, labels, _ in items],
            [scored_parenchyma(self, x, labels) for x, labels, _ in items], self.config.organ_labels)
        maps = [organ_map(self, x, labels, pred, self.organ_stats) for x, labels, pred in items]
        self.organ_tails = None
        if self.config.organ_tail_reference:
            self.organ_tails = organ_tails(maps, [labels for _, labels, _ in items],
                                           self.config.organ_labels, self.top_k)
            maps = [divide_by_tails(m, labels, self.organ_tails) for m, (_, labels, _) in zip(maps, items)]
        return maps

    # --- maps and scores ----------------------------------------------------------------------

    @property
    def top_k(self) -> int:
        voxel_ml = float(np.prod(self.preprocess.spacing)) / 1000.0
        return max(1, int(round(self.config.top_k_ml / voxel_ml)))

    @torch.no_grad()
    def reconstruct(self, image) -> tuple[np.ndarray, np.ndarray]:
        """Core-pass prediction of a model-grid image ``(1, x, y, z)``: ``(mean, sd)`` arrays."""
        from monai.inferers import SlidingWindowInferer  # heavy optional dependency

        device = self.device
        x = torch.as_tensor(np.asarray(image), dtype=torch.float32)[None].to(device)  # (1, 1, x, y, z)
        inferer = SlidingWindowInferer(self.network_config.roi_size,
                                       sw_batch_size=self.config.sw_batch_size,
                                       overlap=self.config.overlap, mode="gaussian",
                                       sw_device=device, device=device)
        shape = tuple(x.shape[2:])
        mean_map = np.zeros(shape, dtype=np.float32)
        sd_map = np.ones(shape, dtype=np.float32)
        network = MeanAndLogVariance(self.network).eval()  # blends only the 2 channels read
        for hidden_np, core in core_schedule(shape, self.config.patch_size):
            hidden = torch.from_numpy(hidden_np.astype(np.float32))[None, None].to(device)
            with autocast(device, self.precision):
                output = inferer(masked_input(x, hidden), network)
            mean, log_var = split_output(output.float())
            mean = mean + context_baseline(x, hidden, self.config.context_sigma)
            mean_map[core] = mean[0, 0].cpu().numpy()[core]
            sd_map[core] = torch.exp(0.5 * log_var)[0, 0].cpu().numpy()[core]
        return mean_map, sd_map

    def tissue_mask(self, image: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """Voxels scored: predicted healthy intensity in ``tissue_hu`` (organ parenchyma)
        and observed intensity soft tissue (``observed_hu``: not fat, gas or bone)."""
        unit = self.preprocess.unit
        (a, b), (c, d) = unit(self.config.tissue_hu), unit(self.config.observed_hu)
        return (mean >= a) & (mean <= b) & (image >= c) & (image <= d)

    @property
    def uses_organs(self) -> bool:
        """True once calibrated with a segmenter: label maps switch on organ scoring."""
        return self.organ_stats is not None

    def error_map(self, image, labels: np.ndarray | None = None, probs=None) -> np.ndarray:
        """Anomaly map ``(x, y, z)`` of a model-grid image ``(1, x, y, z)`` (0 outside tissue).

        Args:
            image: the preprocessed image.
            labels: the segmenter's organ label map on the same grid; used when the scorer
                was calibrated with a segmenter (:attr:`uses_organs`), ignored otherwise.
            probs: the segmenter's softmax ``(C, x, y, z)`` on that grid
                (``Segmenter.segment``); organ scoring needs it when
                ``config.organ_confidence`` is set.
        """
        if labels is not None and self.uses_organs:
            return organ_error_map(self, image, np.asarray(labels), probs)
        return self.map_from_reconstruction(grid_array(image), *self.reconstruct(image))

    def map_from_reconstruction(self, x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """The anomaly map of image ``x`` ``(x, y, z)`` given its core-pass prediction
        (:meth:`reconstruct`): clipped, smoothed, squared z-scores over scored tissue."""
        tissue = self.tissue_mask(x, mean) & body_mask(x)
        lo, hi = self.preprocess.window
        scale = sd if self.config.noise_hu is None else self.config.noise_hu / (hi - lo)
        z = np.where(tissue, np.clip((x - mean) / scale, -self.config.z_clip, self.config.z_clip), 0.0)
        if self.config.smooth_sigma > 0:
            z = gaussian_filter(z, self.config.smooth_sigma)
        return (z ** 2 * tissue).astype(np.float32)

    def case_score(self, error: np.ndarray, body: np.ndarray) -> float:
        """Mean of the ``top_k_ml`` highest map values inside ``body`` (higher = more anomalous)."""
        return top_k_mean(error[body], self.top_k)

    def _score(self, X) -> np.ndarray:
        scores = []
        for item in X:
            image, *organs = item if isinstance(item, tuple) else (item,)
            scores.append(self.case_score(self.error_map(image, *organs), body_mask(grid_array(image))))
        return np.asarray(scores)

    def region_shap(self, error: np.ndarray, regions: dict[str, np.ndarray], max_evals: int = 200):
        """SHAP values of the case score over ``regions`` (disjoint masks covering the body).

        Returns:
            ``core.explain.ShapResult`` (one row).
        """
        k, baseline = self.top_k, float(self.healthy_error or 0.0)
        names = list(regions)
        # only each region's own k largest errors can ever enter the top k
        tops = [np.sort(error[m])[-k:] if m.any() else np.zeros(0) for m in regions.values()]

        def score_of_keep(keep: np.ndarray) -> np.ndarray:
            # a region switched off shows the healthy error in place of its own top values,
            # so with every region on the pool is the body's and the score is case_score's
            out = np.empty(len(keep))
            for row, switches in enumerate(np.asarray(keep)):
                pool = np.concatenate([t if on > 0.5 else np.full(len(t), baseline)
                                       for t, on in zip(tops, switches)])
                out[row] = top_k_mean(pool, k) if pool.size else baseline
            return out

        return region_shap(score_of_keep, len(names), names, max_evals=max_evals)

    # --- bundles (``save`` / ``load`` are the base's) ------------------------------------------

    def _bundle_state(self) -> tuple[dict, dict]:
        config = {"network": self.network_config.to_dict(), "preprocess": self.preprocess.to_dict(),
                  "anomaly": self.config.to_dict(), "contamination": self.contamination,
                  "healthy_error": self.healthy_error, "organ_stats": self.organ_stats,
                  "organ_tails": self.organ_tails,
                  **self.provenance_}
        return config, self.network.state_dict()

    @classmethod
    def _from_bundle(cls, config: dict, tensors: dict) -> "AnomalyScorer":
        scorer = cls(NetworkConfig.from_dict(config["network"]),
                     PreprocessConfig.from_dict(config["preprocess"]),
                     AnomalyConfig.from_dict(config["anomaly"]), config["contamination"])
        load_weights(scorer.network, tensors)
        scorer.network.eval()
        scorer.healthy_error = config["healthy_error"]
        scorer.organ_stats = config["organ_stats"]
        scorer.organ_tails = config.get("organ_tails")
        scorer.provenance_ = {k: config[k] for k in PROVENANCE_KEYS if k in config}
        return scorer


PROVENANCE_KEYS = ("training", "organ_calibration_cases")
