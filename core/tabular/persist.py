"""What a :class:`~core.tabular.detector.TabularDetector` bundle holds.

``config.json`` holds the hyper-parameters, the preprocessor's state (columns, kinds,
scaling, category vocabularies), component statistics and the network shape (the
estimator base adds the calibration, the kind and the format version);
``weights.safetensors`` holds the network weights, the reference rows and masks, and the
SHAP background rows. Nothing is pickled.

Format versions: 3 stores the memory's neighbour radii (the ``"local"`` component) and
``local_weight``/``local_floor``; older bundles are refused with "retrain the model"
(:func:`core.bundle.load_bundle`).
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from .network import LearnedMaskAutoencoder, TabularAEConfig
from .preprocess import TabularPreprocessor
from .reference import ReferenceMemory

KIND = "tabular"
FORMAT_VERSION = 3


def detector_state(detector) -> tuple[dict, dict]:
    """``(config, tensors)`` of a fitted detector (the calibration is the base's)."""
    params = detector.get_params()
    params["components"] = list(params["components"])
    config = {"params": params, "preprocessor": detector.preprocessor_.to_dict(),
              "components": list(detector.components_), "modules": list(detector.modules_),
              "component_stats": detector.component_stats_,
              "decision_scores": detector.decision_scores_.tolist(), "history": None}
    tensors = {"background": torch.as_tensor(detector.background_)}
    for name, module in detector.modules_.items():
        tensors.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    if "network" in detector.modules_:
        network = detector.modules_["network"]
        config["network"] = {"ae": asdict(network.autoencoder.config),
                             "n_masks": network.masks.n_masks, "mask_hidden": network.masks.hidden,
                             "hidden_ratio": network.masks.hidden_ratio}
        config["history"] = detector.history_
    return config, tensors


def _prefixed(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def detector_from_state(cls, config: dict, tensors: dict):
    """A ``cls`` (``TabularDetector``) from :func:`detector_state`'s output; a missing key
    raises ``KeyError``, which the base reports as a bundle that is not a detector."""
    params = config["params"]
    detector = cls(**{**params, "components": tuple(params["components"])})
    pre = TabularPreprocessor.from_dict(config["preprocessor"])
    detector.preprocessor_ = pre
    detector.n_features_in_ = pre.n_columns
    if pre.has_names_:
        detector.feature_names_in_ = np.asarray(pre.columns_, dtype=object)
    detector._column_order = np.asarray(pre.numeric_index + pre.categorical_index)
    detector.components_ = tuple(config["components"])
    detector.component_stats_ = config["component_stats"]
    detector.decision_scores_ = np.asarray(config["decision_scores"], dtype=np.float64)
    detector.background_ = tensors["background"].double().numpy()
    detector.modules_ = {}
    if "memory" in config["modules"]:
        state = _prefixed(tensors, "memory")
        module = ReferenceMemory(state["reference"], state["hidden_columns"],
                                 state["dim_to_column"], state["temperature"],
                                 n_candidates=detector.n_candidates, k=detector.knn_k,
                                 n_probe=detector.n_probe)
        module.load_state_dict(state)
        detector.modules_["memory"] = module.eval()
    if "network" in detector.components_:
        net_cfg = config["network"]
        model = LearnedMaskAutoencoder(TabularAEConfig(**net_cfg["ae"]), net_cfg["n_masks"],
                                       net_cfg["mask_hidden"], net_cfg["hidden_ratio"])
        model.load_state_dict(_prefixed(tensors, "network"))
        detector.modules_["network"] = model.eval()
        detector.history_ = config["history"]
    return detector
