"""Saving and loading an :class:`~driving.model.predictor.OcclusionPredictor` as a bundle.

One ``core.bundle`` of kind ``driving-occlusion``: the constructor parameters, the network
config and weights, the log geometry, and everything calibration fitted (score
calibration, cell normaliser, frame scorer, context prior, road threshold). Bundles
written by earlier rounds load with the defaults they were scored with.

Example:
    >>> save_predictor(predictor, "models/driving/default")                # doctest: +SKIP
"""
from __future__ import annotations

import os

from ..schema import LogMeta

BUNDLE_KIND = "driving-occlusion"


def _meta_dict(meta: LogMeta) -> dict:
    return {"grid_shape": list(meta.grid_shape), "resolution_m": meta.resolution_m,
            "classes": list(meta.classes), "ego_cell": list(meta.ego_cell), "rate_hz": meta.rate_hz}


def save_predictor(predictor, path: str | os.PathLike):
    """Write a fitted predictor's bundle to ``path``."""
    from core.bundle import save_bundle

    config = {"params": predictor.get_params(), "net": predictor.net_config_.to_dict(),
              "meta": _meta_dict(predictor.meta_), "calibration": predictor.calibration_.to_dict(),
              "error_scale": predictor.error_scale_, "training": predictor.history_.to_dict(),
              "normaliser": predictor.normaliser_.to_dict(), "smooth": predictor.smooth_,
              "class_weights": getattr(predictor, "class_weights_", None),
              "road_threshold": getattr(predictor, "road_threshold_", None),
              "warm_start": getattr(predictor, "warm_start_", None)}
    if getattr(predictor, "frame_scorer_", None) is not None:
        config["frame_scorer"] = predictor.frame_scorer_.to_dict()
    if getattr(predictor, "context_prior_", None) is not None:
        config["context_prior"] = predictor.context_prior_.to_dict()
    return save_bundle(path, BUNDLE_KIND, config, dict(predictor.net_.state_dict()))


def load_predictor(cls, path: str | os.PathLike):
    """A ``cls`` (``OcclusionPredictor``) from the bundle at ``path``."""
    import torch

    from core.bundle import load_bundle
    from core.calibration import ScoreCalibration
    from core.errors import BundleError
    from core.training import History

    from .network import OcclusionNet, OcclusionNetConfig

    config, tensors = load_bundle(path, BUNDLE_KIND)
    params = dict(config["params"])
    params["history"] = tuple(params["history"])
    params.setdefault("memory", False)            # bundles from before the memory slot
    params.setdefault("class_weight_power", 0.0)
    params.setdefault("smooth", 1)
    params.setdefault("forecast_masks", 0.0)
    params.setdefault("object_masks", 0.0)
    params.setdefault("decoy_masks", 0.0)         # bundles from before the decoy holes
    params.setdefault("layout_fallback", False)
    params["future"] = tuple(params["future"])
    params["widths"] = tuple(params["widths"])
    predictor = cls(**params)
    predictor.net_config_ = OcclusionNetConfig.from_dict(config["net"])
    net = OcclusionNet(predictor.net_config_)
    try:
        net.load_state_dict(tensors)
    except RuntimeError as err:
        raise BundleError(f"{path}: weights do not match the saved network config ({err})") from None
    predictor.net_ = net.to(memory_format=torch.channels_last).eval()
    m = config["meta"]
    predictor.meta_ = LogMeta(grid_shape=tuple(m["grid_shape"]), resolution_m=m["resolution_m"],
                              classes=tuple(m["classes"]), ego_cell=tuple(m["ego_cell"]),
                              rate_hz=m["rate_hz"])
    predictor.calibration_ = ScoreCalibration.from_dict(config["calibration"])
    predictor.threshold_ = predictor.calibration_.threshold_
    predictor.error_scale_ = float(config["error_scale"])
    if "normaliser" in config:                    # bundles from before: raw surprise
        from ..scoring.surprise import CellNormaliser

        predictor.normaliser_ = CellNormaliser.from_dict(config["normaliser"])
        predictor.smooth_ = int(config["smooth"])
    if "frame_scorer" in config:                  # bundles from before: round 3's score
        from ..scoring.frame_score import FrameScorer

        predictor.frame_scorer_ = FrameScorer.from_dict(config["frame_scorer"])
    if "context_prior" in config:                 # bundles from before: no context prior
        from ..scoring.context_prior import ContextPrior

        predictor.context_prior_ = ContextPrior.from_dict(config["context_prior"])
    predictor.road_threshold_ = config.get("road_threshold")
    predictor.warm_start_ = config.get("warm_start")
    predictor.history_ = History(**config["training"])
    if config.get("class_weights") is not None:
        predictor.class_weights_ = list(config["class_weights"])
    return predictor
