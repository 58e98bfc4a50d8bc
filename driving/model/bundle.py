"""What an :class:`~driving.model.predictor.OcclusionPredictor` bundle holds.

One ``core.bundle`` of kind ``driving-occlusion``, saved and loaded through
``core.estimator.Estimator``: the constructor parameters, the network config and
weights, the log geometry, the training history (and where a warm start came from), the
class weights, the :class:`~driving.scoring.state.ScoringState` and (added by the base)
the score calibration. A bundle of an older format holds a frame score this code no
longer computes: it is refused in one line that says how to retrain.

Example:
    >>> config, tensors = bundle_state(predictor)        # doctest: +SKIP
"""
from __future__ import annotations

import os

import torch

from core.bundle import read_bundle_config
from core.errors import BundleError
from core.training import History

from ..guard import InputProfile
from ..schema import LogMeta
from ..scoring.state import ScoringState
from .memory_gate import MemoryGate
from .network import OcclusionNet, OcclusionNetConfig

BUNDLE_KIND = "driving-occlusion"
# 2: the scoring state (object passes, context prior, channel tail scores) in one entry
# 3: the training logs' input profile (driving.guard) and the memory gate's weights
# 4: frames scored on their own (no per-log baseline); the threshold from cross-fitted scores
# 5: the lead channel reads the closing speed over the gap (lead_closing), not the deceleration
# 6: the memory gate also weights a constant-velocity extrapolation of lost vehicles
# 7: the frame score reads how soon the ego reaches a pedestrian or obstacle in its lane (path_reach)
# 8: the input profile holds each class's share spread over the training logs (per-class check)
# 9: the input profile holds the training logs' carriageway width and its spread (read from
#    format 8 too, whose profile lacks them: its logs are scored without the carriageway check)
BUNDLE_VERSION = 9
OLDEST_READ_VERSION = 8


def _meta_dict(meta: LogMeta) -> dict:
    return {"grid_shape": list(meta.grid_shape), "resolution_m": meta.resolution_m,
            "classes": list(meta.classes), "ego_cell": list(meta.ego_cell), "rate_hz": meta.rate_hz}


def bundle_state(predictor) -> tuple[dict, dict]:
    """``(config, tensors)`` of a fitted predictor (the base adds the calibration)."""
    config = {"params": predictor.get_params(), "net": predictor.net_config_.to_dict(),
              "meta": _meta_dict(predictor.meta_), "training": predictor.history_.to_dict(),
              "class_weights": predictor.class_weights_, "warm_start": predictor.warm_start_,
              "scoring": predictor.scoring_.to_dict(),
              "input_profile": predictor.input_profile_.to_dict(),
              "memory_gate": (predictor.memory_gate_.to_dict()
                              if predictor.memory_gate_ is not None else None)}
    return config, dict(predictor.net_.state_dict())


def check_bundle_format(path: str | os.PathLike) -> None:
    """Refuse a driving bundle of a format older than this unmask reads with one line:
    retrain it."""
    meta = read_bundle_config(path, BUNDLE_KIND)
    found = meta["format_version"]
    if found < OLDEST_READ_VERSION:
        raise BundleError(f"{path}: driving model bundle format {found} is older than this unmask "
                          f"reads ({OLDEST_READ_VERSION}); retrain it: unmask driving train --logs "
                          f"LOGS --out {path}")


def predictor_from_bundle(cls, config: dict, tensors: dict):
    """A ``cls`` (``OcclusionPredictor``) from a bundle's config and weights."""
    params = dict(config["params"])
    for name in ("history", "future", "widths"):
        params[name] = tuple(params[name])
    predictor = cls(**params)
    predictor.net_config_ = OcclusionNetConfig.from_dict(config["net"])
    net = OcclusionNet(predictor.net_config_)
    net.load_state_dict(tensors)
    predictor.net_ = net.to(memory_format=torch.channels_last).eval()
    m = config["meta"]
    predictor.meta_ = LogMeta(grid_shape=tuple(m["grid_shape"]), resolution_m=m["resolution_m"],
                              classes=tuple(m["classes"]), ego_cell=tuple(m["ego_cell"]),
                              rate_hz=m["rate_hz"])
    predictor.scoring_ = ScoringState.from_dict(config["scoring"])
    predictor.input_profile_ = InputProfile.from_dict(config["input_profile"])
    gate = config["memory_gate"]
    predictor.memory_gate_ = MemoryGate.from_dict(gate) if gate is not None else None
    predictor.history_ = History(**config["training"])
    predictor.class_weights_ = list(config["class_weights"])
    predictor.warm_start_ = config["warm_start"]
    return predictor
