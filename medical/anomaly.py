"""Anomaly maps from masked reconstruction, case scores and region SHAP values.

A voxel's error is measured when it is hidden: a fixed schedule of 3-D patch masks
(``PatchMasker.schedule``) hides every voxel exactly once, the network inpaints each
masked volume through MONAI's ``SlidingWindowInferer`` as a Gaussian per voxel (mean and
variance), and the squared z-score ``(x - mean)^2 / variance`` of the hidden voxels is
gathered, then Gaussian-smoothed (sigma in voxels). Dividing by the predicted variance
discounts what is unpredictable in healthy anatomy too (organ borders, bowel gas), so
what stays high is what the model was sure about and got wrong. The same input always
gives the same map.

Case score: the mean of the ``top_k_ml`` millilitres of highest smoothed error inside the
body (higher = more anomalous). Conformal p-values come from held-out healthy cases.

Region SHAP: regions (organs from the segmentation, plus the rest of the body) are
switched on/off; a region switched *off* has its voxel errors replaced by the healthy
baseline error (the median smoothed body error of the healthy calibration cases), and the
score is recomputed. So the values say which regions hold the error that lifts this case
above a healthy one; they sum to ``score - baseline``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from core.calibration import ScoreCalibration

from .networks import NetworkConfig, build_network
from .transforms import PreprocessConfig

BUNDLE_KIND = "ct-anomaly"


@dataclass
class AnomalyConfig:
    """Masking and scoring settings saved with the reconstruction network.

    Args:
        patch_size: hidden patch size in voxels (model grid).
        mask_ratio: fraction of patches hidden per training crop.
        schedule_ratio: fraction hidden per inference pass (``1/ratio`` passes).
        smooth_sigma: Gaussian smoothing of the voxel error, in voxels.
        top_k_ml: volume of highest error averaged into the case score.
        overlap: sliding-window overlap.
        sw_batch_size: windows per forward pass.
    """

    patch_size: tuple[int, int, int] = (8, 8, 4)
    mask_ratio: float = 0.5
    schedule_ratio: float = 0.25
    smooth_sigma: float = 1.0
    top_k_ml: float = 0.5
    overlap: float = 0.25
    sw_batch_size: int = 4

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "AnomalyConfig":
        d = dict(d)
        d["patch_size"] = tuple(d["patch_size"])
        return cls(**d)

    def masker(self):
        from core.masking import PatchMasker

        return PatchMasker(patch_size=self.patch_size, ratio=self.mask_ratio, ndim=3)


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


class AnomalyScorer:
    """A trained masked-reconstruction network plus its scoring state.

    Args:
        network_config, preprocess, config: the saved configuration.
        state: network weights.
        calibration: fitted on held-out healthy case scores.
        healthy_error: median smoothed body error of those cases (SHAP baseline).
    """

    def __init__(self, network_config: NetworkConfig, preprocess: PreprocessConfig,
                 config: AnomalyConfig, state: dict | None = None,
                 calibration: ScoreCalibration | None = None, healthy_error: float | None = None):
        self.network_config = network_config
        self.preprocess = preprocess
        self.config = config
        # two outputs: mean and log variance of each hidden voxel
        self.network = build_network(network_config, out_channels=2, state=state)
        self.calibration = calibration
        self.healthy_error = healthy_error

    @property
    def top_k(self) -> int:
        voxel_ml = float(np.prod(self.preprocess.spacing)) / 1000.0
        return max(1, int(round(self.config.top_k_ml / voxel_ml)))

    @torch.no_grad()
    def error_map(self, image) -> np.ndarray:
        """Smoothed squared z-score of the reconstruction ``(x, y, z)`` of a model-grid image."""
        from monai.inferers import SlidingWindowInferer
        from scipy.ndimage import gaussian_filter

        from core.masking import PatchMasker

        x = torch.as_tensor(np.asarray(image), dtype=torch.float32)[None]  # (1, 1, x, y, z)
        inferer = SlidingWindowInferer(self.network_config.roi_size,
                                       sw_batch_size=self.config.sw_batch_size,
                                       overlap=self.config.overlap, mode="gaussian")
        schedule = PatchMasker(self.config.patch_size, self.config.schedule_ratio,
                               ndim=3).schedule(tuple(x.shape[2:]))
        error = torch.zeros_like(x)
        self.network.eval()
        for hidden_np in schedule:  # each voxel is hidden in exactly one pass
            hidden = torch.from_numpy(hidden_np.astype(np.float32))[None, None]
            mean, log_var = split_output(inferer(masked_input(x, hidden), self.network))
            error += (x - mean) ** 2 * torch.exp(-log_var) * hidden  # squared z-score
        error = error[0, 0].numpy()
        if self.config.smooth_sigma > 0:
            error = gaussian_filter(error, self.config.smooth_sigma)
        return error.astype(np.float32)

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
                  **(extra or {})}
        return save_bundle(path, BUNDLE_KIND, config, self.network.state_dict())

    @classmethod
    def load(cls, path) -> "AnomalyScorer":
        from core.bundle import load_bundle

        config, tensors = load_bundle(path, BUNDLE_KIND)
        calibration = config.get("calibration")
        return cls(NetworkConfig.from_dict(config["network"]),
                   PreprocessConfig.from_dict(config["preprocess"]),
                   AnomalyConfig.from_dict(config["anomaly"]), tensors,
                   ScoreCalibration.from_dict(calibration) if calibration else None,
                   config.get("healthy_error"))
