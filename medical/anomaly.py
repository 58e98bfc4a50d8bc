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
segmenter, :func:`medical.organ_scoring.calibrate_with_segmenter`) only organ parenchyma
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
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from core.calibration import ScoreCalibration
from core.runtime import NetworkPlacement, autocast

from .networks import NetworkConfig, build_network
from .transforms import PreprocessConfig

BUNDLE_KIND = "ct-anomaly"


@dataclass
class AnomalyConfig:
    """Masking and scoring settings saved with the reconstruction network.

    Args:
        patch_size: hidden patch size in voxels (model grid); larger than the lesions.
        mask_ratio: fraction of patches hidden per training crop.
        smooth_sigma: Gaussian smoothing of the signed z-score, in voxels.
        organ_smooth_sigma: the same for organ scoring (``medical.organ_scoring``), whose
            z-scores are per organ and need less smoothing (development set, 0.5-1.5).
        top_k_ml: volume of highest map values averaged into the case score.
        tissue_hu: predicted healthy intensity range (HU) that is scored.
        observed_hu: observed intensity range (HU) that is scored (soft tissue; keeps
            bone, fat and gas, whose borders are never inpainted exactly, out).
        noise_hu: residuals are divided by this (HU, about the CT noise) to give z-scores;
            ``None`` divides by the network's predicted standard deviation instead (only
            worth it once the variance head is well trained: in our short runs it was not,
            and dividing by it lowered case AUROC).
        z_clip: per-voxel z-scores are clipped to this magnitude before smoothing.
        overlap: sliding-window overlap.
        sw_batch_size: windows per forward pass.
        organ_labels: label ids scored with a segmentation (parenchymal organs).
        organ_prediction: ``"context"`` (visible same-organ parenchyma) or ``"network"``.
        organ_band_hu: visible voxels further than this from the organ's median are not
            its parenchyma (context prediction).
        organ_erosion: voxels eroded from each organ's parenchyma before scoring, per
            entry of ``organ_labels`` (the liver is thick enough for 2: its border with
            the bowel is where the segmentation errs most).
        fat_hu: smoothed intensities below this are fat (renal sinus), not parenchyma.
        organ_context_scale: factor on ``context_sigma`` for the same-organ context, per
            entry of ``organ_labels`` (or one for all): the liver and spleen are large and
            uniform enough for a wide context, which a lesion's own visible rim skews less;
            the kidneys need a narrow one (development set, bench/README.md).
    """

    patch_size: tuple[int, int, int] = (8, 8, 6)
    mask_ratio: float = 0.5
    smooth_sigma: float = 1.0
    top_k_ml: float = 1.0
    tissue_hu: tuple[float, float] = (50.0, 240.0)
    observed_hu: tuple[float, float] = (-30.0, 240.0)
    noise_hu: float | None = 20.0
    z_clip: float = 4.0
    overlap: float = 0.25
    sw_batch_size: int = 4
    organ_labels: tuple[int, ...] = (1, 2, 3, 4)
    organ_prediction: str = "context"
    organ_band_hu: float = 80.0
    organ_erosion: tuple[int, ...] = (2, 1, 1, 1)
    fat_hu: float = -30.0
    organ_context_scale: float | tuple[float, ...] = (3.0, 3.0, 1.0, 1.0)
    organ_smooth_sigma: float = 0.7

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "AnomalyConfig":
        from dataclasses import fields

        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d.setdefault("organ_context_scale", 1.0)  # bundles calibrated before these existed
        d.setdefault("organ_smooth_sigma", d.get("smooth_sigma", 1.0))
        for key in ("patch_size", "tissue_hu", "observed_hu", "organ_labels", "organ_erosion",
                    "organ_context_scale"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        return cls(**d)

    @property
    def context_sigma(self) -> tuple[float, ...]:
        """Gaussian sigma (voxels) of the context baseline: half a patch per axis."""
        return tuple(p / 2.0 for p in self.patch_size)

    def masker(self):
        from core.masking import PatchMasker

        return PatchMasker(patch_size=self.patch_size, ratio=self.mask_ratio, ndim=3)


def core_schedule(shape, patch) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed ``(hidden, core)`` masks: every voxel lies in the core of a hidden patch once.

    The patch grid is shifted by half a patch along each axis (8 offsets); per offset two
    passes hide the two colours of a 3-D checkerboard of patches, so every hidden patch
    has visible face neighbours. ``core`` marks the hidden voxels in the central half of
    their patch (per axis ``[p/4, 3p/4)``); the cores of all passes cover every voxel,
    and a voxel in two cores keeps the later one.
    """
    idx = np.indices(tuple(shape))
    out = []
    for shift in np.ndindex(2, 2, 2):
        offset = [s * p // 2 for s, p in zip(shift, patch)]
        block = [(idx[a] + offset[a]) // patch[a] for a in range(3)]
        pos = [(idx[a] + offset[a]) % patch[a] for a in range(3)]
        central = np.all([(pos[a] >= patch[a] // 4) & (pos[a] < -(-3 * patch[a] // 4))
                          for a in range(3)], axis=0)
        colour = (block[0] + block[1] + block[2]) % 2
        for c in (0, 1):
            hidden = colour == c
            out.append((hidden, hidden & central))
    return out


LOG_VAR_RANGE = (-10.0, 4.0)


def split_output(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Network output ``(B, 2, ...)`` -> mean ``(B, 1, ...)``, clamped log variance."""
    return output[:, :1], output[:, 1:2].clamp(*LOG_VAR_RANGE)


def reconstruction_nll(output: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Per-voxel training loss: squared error of the mean + Gaussian NLL of the variance.

    The variance term sees the mean through ``detach``, so the mean is fitted exactly as
    by plain MSE (a jointly learned variance would let the network give up on hard
    voxels, Seitzer et al. 2022) while the variance learns the expected squared error.
    The NLL is shifted by ``-min log variance / 2`` to stay >= 0, which
    ``core.training.fit``'s relative early-stopping test assumes.
    """
    mean, log_var = split_output(output)
    squared = (image - mean) ** 2
    nll = 0.5 * (log_var + squared.detach() * torch.exp(-log_var)) - 0.5 * LOG_VAR_RANGE[0]
    return squared + nll


def context_baseline(image: torch.Tensor, hidden: torch.Tensor, sigma) -> torch.Tensor:
    """Gaussian-weighted mean of the *visible* voxels around each voxel ``(B, 1, ...)``.

    Normalised convolution: ``G * (x visible) / G * visible``. Inside an organ it is the
    organ's intensity, rebuilt from the tissue around a hidden patch; the network only
    predicts the correction to it (borders, vessels), which it can do without knowing
    absolute intensities (instance norm discards them per window).
    """
    visible = 1.0 - hidden
    num, den = gaussian_smooth(image * visible, sigma), gaussian_smooth(visible, sigma)
    return num / den.clamp_min(1e-3)


def gaussian_smooth(volume: torch.Tensor, sigma) -> torch.Tensor:
    """Separable Gaussian filter (sigma in voxels per axis, replicate padding) of every
    channel of a ``(B, C, x, y, z)`` tensor on its own."""
    import torch.nn.functional as F

    channels = volume.shape[1]
    for axis, s in enumerate(sigma):
        radius = max(1, int(round(3 * s)))
        t = torch.arange(-radius, radius + 1, dtype=volume.dtype, device=volume.device)
        kernel = torch.exp(-0.5 * (t / s) ** 2)
        kernel = (kernel / kernel.sum()).view(1, 1, *[-1 if a == axis else 1 for a in range(3)])
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        volume = F.conv3d(F.pad(volume, pad, mode="replicate"), kernel.repeat(channels, 1, 1, 1, 1),
                          groups=channels)
    return volume


def predict_hidden(network, image: torch.Tensor, hidden: torch.Tensor, sigma) -> torch.Tensor:
    """Network output ``(B, 2, ...)`` with the context baseline added to the mean channel."""
    output = network(masked_input(image, hidden))
    baseline = context_baseline(image, hidden, sigma)
    return torch.cat([output[:, :1] + baseline, output[:, 1:2]], dim=1)


def masked_input(image: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """``(B, 1, ...)`` image and ``(B, 1, ...)`` 0/1 hidden -> the 2-channel network input."""
    return torch.cat([image * (1.0 - hidden), hidden], dim=1)


def body_mask(image: np.ndarray) -> np.ndarray:
    """Inside-the-patient mask of a windowed image ``(x, y, z)`` (gas pockets filled)."""
    from scipy.ndimage import binary_fill_holes

    return binary_fill_holes(image > 0.05)


def top_k_mean(values: np.ndarray, k: int) -> float:
    k = int(min(max(1, k), values.size))
    return float(np.partition(values.ravel(), values.size - k)[-k:].mean())


class AnomalyScorer(NetworkPlacement):
    """A trained masked-reconstruction network plus its scoring state.

    Args:
        network_config, preprocess, config: the saved configuration.
        state: network weights.
        calibration: fitted on held-out healthy case scores.
        healthy_error: median smoothed body error of those cases (SHAP baseline).
        seed: seeds the initial weights when ``state`` is not given.
        organ_stats: per-organ residual ``{label: (offset, sd)}`` (HU) of healthy cases,
            from :func:`medical.organ_scoring.calibrate_with_segmenter`.

    The network runs where it lives (:attr:`device`; move it with :meth:`to`): every
    tensor it is fed is put there first, and ``precision`` says whether its forward
    passes run under bf16 CUDA autocast. Neither is saved with the bundle.
    """

    def __init__(self, network_config: NetworkConfig, preprocess: PreprocessConfig,
                 config: AnomalyConfig, state: dict | None = None,
                 calibration: ScoreCalibration | None = None, healthy_error: float | None = None,
                 seed: int = 0, organ_stats: dict | None = None):
        self.network_config = network_config
        self.preprocess = preprocess
        self.config = config
        # two outputs: mean and log variance of each hidden voxel
        self.network = build_network(network_config, out_channels=2, state=state, seed=seed)
        self.calibration = calibration
        self.healthy_error = healthy_error
        # per-organ residual (offset, sd) in HU on healthy cases; set by calibrating with a
        # segmenter, and only then are maps given a label map scored organ by organ
        self.organ_stats = organ_stats

    @property
    def top_k(self) -> int:
        voxel_ml = float(np.prod(self.preprocess.spacing)) / 1000.0
        return max(1, int(round(self.config.top_k_ml / voxel_ml)))

    @torch.no_grad()
    def reconstruct(self, image) -> tuple[np.ndarray, np.ndarray]:
        """Core-pass prediction of a model-grid image ``(1, x, y, z)``: ``(mean, sd)`` arrays."""
        from monai.inferers import SlidingWindowInferer

        device = self.device
        x = torch.as_tensor(np.asarray(image), dtype=torch.float32)[None].to(device)  # (1, 1, x, y, z)
        inferer = SlidingWindowInferer(self.network_config.roi_size,
                                       sw_batch_size=self.config.sw_batch_size,
                                       overlap=self.config.overlap, mode="gaussian",
                                       sw_device=device, device=device)
        shape = tuple(x.shape[2:])
        mean_map = np.zeros(shape, dtype=np.float32)
        sd_map = np.ones(shape, dtype=np.float32)
        self.network.eval()
        for hidden_np, core in core_schedule(shape, self.config.patch_size):
            hidden = torch.from_numpy(hidden_np.astype(np.float32))[None, None].to(device)
            with autocast(device, self.precision):
                output = inferer(masked_input(x, hidden), self.network)
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

    def error_map(self, image, labels: np.ndarray | None = None) -> np.ndarray:
        """Anomaly map ``(x, y, z)`` of a model-grid image ``(1, x, y, z)`` (0 outside tissue).

        Args:
            image: the preprocessed image.
            labels: the segmenter's organ label map on the same grid; used when the scorer
                was calibrated with a segmenter (:attr:`uses_organs`), ignored otherwise.
        """
        x = np.asarray(torch.as_tensor(np.asarray(image), dtype=torch.float32))[0]
        if labels is not None and self.uses_organs:
            from .organ_scoring import organ_error_map

            return organ_error_map(self, image, np.asarray(labels))
        return self.map_from_reconstruction(x, *self.reconstruct(image))

    def map_from_reconstruction(self, x: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
        """The anomaly map of image ``x`` ``(x, y, z)`` given its core-pass prediction
        (:meth:`reconstruct`): clipped, smoothed, squared z-scores over scored tissue."""
        from scipy.ndimage import gaussian_filter

        tissue = self.tissue_mask(x, mean) & body_mask(x)
        lo, hi = self.preprocess.window
        scale = sd if self.config.noise_hu is None else self.config.noise_hu / (hi - lo)
        z = np.where(tissue, np.clip((x - mean) / scale, -self.config.z_clip, self.config.z_clip), 0.0)
        if self.config.smooth_sigma > 0:
            z = gaussian_filter(z, self.config.smooth_sigma)
        return (z ** 2 * tissue).astype(np.float32)

    def case_score(self, error: np.ndarray, body: np.ndarray) -> float:
        return top_k_mean(error[body], self.top_k)

    def region_shap(self, error: np.ndarray, regions: dict[str, np.ndarray], max_evals: int = 200):
        """SHAP values of the case score over ``regions`` (disjoint masks covering the body).

        Returns:
            ``core.explain.ShapResult`` (one row).
        """
        from core.explain import region_shap

        k, baseline = self.top_k, float(self.healthy_error or 0.0)
        names = list(regions)
        # only each region's own k largest errors can ever enter the top k
        tops = [np.sort(error[m])[-k:] if m.any() else np.zeros(0) for m in regions.values()]

        def score_of_keep(keep: np.ndarray) -> np.ndarray:
            out = np.empty(len(keep))
            for row, switches in enumerate(np.asarray(keep)):
                kept = [t for t, on in zip(tops, switches) if on > 0.5]
                pool = np.concatenate(kept + [np.full(k, baseline)])
                out[row] = top_k_mean(pool, k)
            return out

        return region_shap(score_of_keep, len(names), names, max_evals=max_evals)

    # --- bundles -------------------------------------------------------------------------

    def save(self, path, extra: dict | None = None):
        from core.bundle import save_bundle

        config = {"network": self.network_config.to_dict(), "preprocess": self.preprocess.to_dict(),
                  "anomaly": self.config.to_dict(), "healthy_error": self.healthy_error,
                  "calibration": self.calibration.to_dict() if self.calibration else None,
                  "organ_stats": self.organ_stats, **(extra or {})}
        return save_bundle(path, BUNDLE_KIND, config, self.network.state_dict())

    @classmethod
    def load(cls, path, device="cpu", precision: str = "fp32") -> "AnomalyScorer":
        """Load a bundle onto CPU (weights are saved from CPU), then move it to ``device``."""
        from core.bundle import load_bundle

        config, tensors = load_bundle(path, BUNDLE_KIND)
        calibration = config.get("calibration")
        scorer = cls(NetworkConfig.from_dict(config["network"]),
                     PreprocessConfig.from_dict(config["preprocess"]),
                     AnomalyConfig.from_dict(config["anomaly"]), tensors,
                     ScoreCalibration.from_dict(calibration) if calibration else None,
                     config.get("healthy_error"), organ_stats=config.get("organ_stats"))
        return scorer.to(device, precision)
