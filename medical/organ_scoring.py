"""Organ-aware masked reconstruction: predict hidden organ voxels from visible parenchyma.

With a segmentation (the segmenter's organ label map on the model grid), a hidden voxel
of organ ``k`` is predicted from the *visible* voxels around it that belong to the same
organ and look like its parenchyma (within ``band`` of the organ's visible median):
a normalised Gaussian convolution, like :func:`medical.anomaly.context_baseline`, but
blind to fat, vessels, bone and the neighbouring organs. The plain context baseline (and a
network trained by squared error on top of it) predicts an organ/fat *mixture* wherever
the context is ambiguous, i.e. hidden organ voxels come out too dark, exactly by the
contrast of a hypo-dense lesion (bench/README.md). Hidden patches are larger
than the lesions, so a lesion is hidden whole and rebuilt as healthy parenchyma.

Only organ parenchyma is scored: the organ mask minus fat (renal sinus), eroded so that
the partial-volume borders (organ surface, sinus) and the segmentation's errors there
drop out; ``organ_confidence`` (off by default) also drops the voxels the segmenter is
unsure of (:func:`confident_labels`). Per-organ residual offset and
SD, measured on healthy calibration cases (``AnomalyScorer.calibrate(cases,
segmenter=...)``), turn the residual into a z-score.

Example:
    >>> pred = organ_context(x, hidden, labels, (1, 2, 3, 4), sigma, band)   # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import binary_erosion, gaussian_filter

from core.errors import DataValidationError
from core.pooling import top_k_mean

from .anomaly_config import check_confidence_level
from .reconstruction import core_schedule, gaussian_smooth


def organ_context(x: np.ndarray, hidden: np.ndarray, labels: np.ndarray, organs, sigma,
                  band: float) -> np.ndarray:
    """Prediction ``(x, y, z)`` of every voxel of ``organs`` from visible same-organ parenchyma.

    Args:
        x: image (model grid, window units).
        hidden: True where hidden in this pass.
        labels: organ label map (same grid).
        organs: label ids to predict.
        sigma: Gaussian sigma (voxels) per axis of the context.
        band: visible voxels further than this from the organ's visible median (window
            units) do not count as its parenchyma (fat, partial volume, other lesions).

    Returns:
        The prediction inside the organs; ``x`` elsewhere.
    """
    pred = x.astype(np.float32).copy()
    present = [k for k in organs if (labels == k).any()]
    if not present:
        return pred
    weights, refs = [], []
    for k in present:
        visible = (labels == k) & ~hidden
        ref = float(np.median(x[visible])) if visible.any() else float(np.median(x[labels == k]))
        weights.append(visible & (np.abs(x - ref) <= band))
        refs.append(ref)
    w = torch.from_numpy(np.stack(weights).astype(np.float32))[None]        # (1, K, ...)
    xt = torch.from_numpy(x.astype(np.float32))[None, None]
    num, den = gaussian_smooth(w * xt, sigma)[0].numpy(), gaussian_smooth(w, sigma)[0].numpy()
    eps = 1e-3  # far from any visible parenchyma: fall back to the organ's median
    for j, k in enumerate(present):
        inside = labels == k
        pred[inside] = ((num[j] + eps * refs[j]) / (den[j] + eps))[inside]
    return pred


def per_organ(values, organs, name: str, dtype=float) -> np.ndarray:
    """A setting given once for all organs or once per organ, as one value per organ.

    Raises:
        DataValidationError: neither 1 nor ``len(organs)`` values.
    """
    values = np.atleast_1d(np.asarray(values, dtype=dtype))
    if values.size not in (1, len(organs)):
        raise DataValidationError(f"{name} needs 1 or {len(organs)} values (one per "
                                  f"organ label), got {values.tolist()}")
    return np.broadcast_to(values, (len(organs),))


def parenchyma_mask(x: np.ndarray, labels: np.ndarray, organs, fat_level: float,
                    erosion) -> np.ndarray:
    """Scored voxels: organ label, not fat (smoothed image above ``fat_level``), eroded
    by ``erosion`` voxels (one number, or one per organ)."""
    not_fat = gaussian_filter(x, 0.7) > fat_level
    erosion = per_organ(erosion, organs, "organ_erosion", int)
    out = np.zeros(x.shape, dtype=bool)
    for k, iterations in zip(organs, erosion):
        organ = (labels == k) & not_fat
        if iterations > 0 and organ.any():
            organ = binary_erosion(organ, iterations=int(iterations))
        out |= organ
    return out


def organ_z(residual: np.ndarray, labels: np.ndarray, scored: np.ndarray, stats: dict | None,
            default_scale: float) -> np.ndarray:
    """Residual -> z-score per organ: ``(r - offset_k) / sd_k`` (``stats``) or ``r / default``."""
    z = np.zeros(residual.shape, dtype=np.float32)
    for k in np.unique(labels[scored]):
        inside = scored & (labels == k)
        offset, sd = (stats or {}).get(str(int(k)), (0.0, default_scale))
        z[inside] = (residual[inside] - offset) / sd
    return z


def organ_residual_stats(residuals, labels, scoreds, organs) -> dict[str, tuple[float, float]]:
    """Median and robust SD (1.4826 MAD) of the residual per organ over healthy cases."""
    stats = {}
    for k in organs:
        values = np.concatenate([r[s & (l == k)] for r, l, s in zip(residuals, labels, scoreds)])
        if values.size < 10:
            continue
        median = float(np.median(values))
        stats[str(int(k))] = (median, float(1.4826 * np.median(np.abs(values - median))) or 1e-3)
    return stats


def organ_medians(x: np.ndarray, labels: np.ndarray, organs) -> np.ndarray:
    """Every organ voxel predicted as its organ's median (``x`` elsewhere): the no-network
    baseline, an intensity z-score against the case's own organ."""
    pred = x.copy()
    for k in organs:
        inside = labels == k
        if inside.any():
            pred[inside] = np.median(x[inside])
    return pred


def organ_reconstruction(scorer, image, labels: np.ndarray) -> np.ndarray:
    """Prediction ``(x, y, z)`` (window units) of every voxel from its fixed-schedule pass."""
    config = scorer.config
    if config.organ_prediction == "network":
        return scorer.reconstruct(image)[0]
    x = np.asarray(torch.as_tensor(np.asarray(image), dtype=torch.float32))[0]
    if config.organ_prediction == "median":
        return organ_medians(x, labels, config.organ_labels)
    if config.organ_prediction != "context":
        raise DataValidationError(f"organ_prediction must be 'context', 'network' or 'median', "
                                  f"got {config.organ_prediction!r}")
    band = float(scorer.preprocess.unit(config.organ_band_hu) - scorer.preprocess.unit(0.0))
    scales = per_organ(config.organ_context_scale, config.organ_labels, "organ_context_scale")
    groups = {}                              # organs sharing a context size, one pass each
    for k, scale in zip(config.organ_labels, scales):
        groups.setdefault(float(scale), []).append(k)
    groups = [(organs, tuple(scale * s for s in config.context_sigma), np.isin(labels, organs))
              for scale, organs in groups.items()]
    pred = x.copy()
    for hidden, core in core_schedule(x.shape, config.patch_size):
        for organs, sigma, inside in groups:
            part = core & inside
            pred[part] = organ_context(x, hidden, labels, organs, sigma, band)[part]
    return pred


def scored_parenchyma(scorer, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The voxels organ scoring scores: :func:`parenchyma_mask` with the scorer's settings."""
    config = scorer.config
    return parenchyma_mask(x, labels, config.organ_labels, float(scorer.preprocess.unit(config.fat_hu)),
                           config.organ_erosion)


def organ_tails(maps, labels, organs, k: int) -> dict[str, float]:
    """How far each organ's map reaches on healthy cases: the median over ``maps`` of the
    organ's top-``k`` mean. A kidney with corticomedullary contrast, or an organ whose
    segmentation spills over its border, reaches further than a uniform liver."""
    tails = {}
    for organ in organs:
        values = [top_k_mean(m[(l == organ) & (m > 0)], k) for m, l in zip(maps, labels)
                  if ((l == organ) & (m > 0)).sum() >= k]
        if values:
            tails[str(int(organ))] = float(np.median(values)) or 1e-3
    return tails


def divide_by_tails(error: np.ndarray, labels: np.ndarray, tails: dict | None) -> np.ndarray:
    """``error`` with each organ's voxels divided by its healthy tail (:func:`organ_tails`):
    1 is as high as that organ reaches on a typical healthy case."""
    out = error.copy()
    for key, tail in (tails or {}).items():
        inside = labels == int(key)
        out[inside] = out[inside] / tail
    return out


def organ_map(scorer, x: np.ndarray, labels: np.ndarray, pred: np.ndarray,
              stats: dict | None, tails: dict | None = None) -> np.ndarray:
    """Clipped, smoothed, squared per-organ z-scores over the eroded parenchyma.

    ``stats``: the healthy cases' residual offset and SD per organ, used when
    ``organ_reference`` is ``"healthy"``; with ``"case"`` each organ's residual is
    standardised by this case's own median and robust SD in that organ instead.
    ``tails``: each organ's healthy tail (:func:`organ_tails`) the map is divided by.
    """
    config = scorer.config
    lo, hi = scorer.preprocess.window
    scored = scored_parenchyma(scorer, x, labels)
    residual = (x - pred) * (hi - lo)
    if config.organ_reference == "case":
        stats = organ_residual_stats([residual], [labels], [scored], config.organ_labels)
    elif config.organ_reference != "healthy":
        raise DataValidationError(f"organ_reference must be 'case' or 'healthy', "
                                  f"got {config.organ_reference!r}")
    z = organ_z(residual, labels, scored, stats, config.noise_hu or 20.0)
    z = np.where(scored, np.clip(z, -config.z_clip, config.z_clip), 0.0)
    if config.organ_smooth_sigma > 0:
        z = gaussian_filter(z, config.organ_smooth_sigma)
    return divide_by_tails((z ** 2 * scored).astype(np.float32), labels, tails)


def confident_labels(labels: np.ndarray, probs, level: float | None) -> np.ndarray:
    """``labels`` with every voxel whose probability of its own label is below ``level``
    set to background (0). ``None``: ``labels`` unchanged.

    Args:
        labels: the segmenter's label map ``(x, y, z)``.
        probs: its softmax ``(C, x, y, z)`` (tensor or array; ``None`` only with no level).
        level: the probability a voxel's label needs to be scored.

    Raises:
        DataValidationError: a level without probabilities, or a level outside (0, 1].
    """
    check_confidence_level(level)
    if level is None:
        return labels
    if probs is None:
        raise DataValidationError("organ_confidence needs the segmenter's probabilities: pass "
                                  "error_map(image, labels, probs) with segment()'s softmax")
    probs = np.asarray(probs)
    if probs.shape[1:] != labels.shape:
        raise DataValidationError(f"probabilities {probs.shape} do not match the label map "
                                  f"{labels.shape}")
    own = np.take_along_axis(probs, labels.astype(np.int64)[None], axis=0)[0]   # (x, y, z)
    return np.where(own >= level, labels, 0).astype(labels.dtype)


def organ_error_map(scorer, image, labels: np.ndarray, probs=None) -> np.ndarray:
    """The organ-scored anomaly map of a model-grid image ``(1, x, y, z)``; ``probs``: the
    segmenter's softmax, needed when ``organ_confidence`` is set."""
    labels = confident_labels(labels, probs, scorer.config.organ_confidence)
    x = np.asarray(torch.as_tensor(np.asarray(image), dtype=torch.float32))[0]
    return organ_map(scorer, x, labels, organ_reconstruction(scorer, image, labels),
                     scorer.organ_stats, scorer.organ_tails)
