"""ONNX export of the occlusion network as the predictor runs it (``unmask driving export``).

The graph is :meth:`driving.model.network.OcclusionNet.predict`: the network's forward and the
softmax over classes. Stacking the input frames (warping earlier grids into the current
ego frame, the layout memory), the layout fallback, decisions and surprise scores stay in
Python (:mod:`driving.inputs`, :mod:`driving.model.predictor`, :mod:`driving.scoring.surprise`).

Example:
    >>> spec = occlusion_spec("models/driving/default")              # doctest: +SKIP
    >>> core.export.export_onnx(spec, "occlusion.onnx")              # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.export import GraphSpec, batch_checks

from .model.network import OcclusionNet
from .model.predictor import OcclusionPredictor
from .schema import UNOBSERVED

GRAPH_DOC = """\
Inputs (B = any batch size; the grid is fixed at {h} x {w} cells):
  grids  uint8   (B, {frames}, {h}, {w})  slot 0 the current observed BEV grid, slots 1..{k} the
                                      grids {history} frames earlier warped into the current ego
                                      frame{memory}; class ids {classes}, {unobserved} = not observed
  speed  float32 (B,)                 ego speed, m/s
Output:
  probabilities  float32 (B, {n_classes}, {h}, {w})  class probabilities per cell (softmax)
Outside the graph: stacking the frames (driving.inputs.stack_frames), the layout fallback,
decisions and surprise scores."""


class OcclusionProbabilities(nn.Module):
    """``OcclusionNet.predict`` as a plain forward: softmax of the logits over classes."""

    def __init__(self, network: OcclusionNet):
        super().__init__()
        self.network = network

    def forward(self, grids: torch.Tensor, speed: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(grids, speed), dim=1)  # (B, C, H, W)


def occlusion_spec(model_dir) -> GraphSpec:
    """The :class:`~core.export.GraphSpec` of a driving bundle's occlusion network."""
    predictor = OcclusionPredictor.load(model_dir)
    config = predictor.net_config_
    h, w = config.grid_shape
    classes = list(predictor.meta_.classes)
    history = list(predictor.history)
    doc = GRAPH_DOC.format(
        h=h, w=w, frames=config.n_frames, k=len(history), history=history,
        memory=f", slot {config.n_frames - 1} the last-seen class of every cell (layout memory)"
        if predictor.memory else "",
        classes=", ".join(f"{i} = {c}" for i, c in enumerate(classes)), unobserved=UNOBSERVED,
        n_classes=config.n_classes)

    def sample(rng: np.random.Generator, sizes: dict) -> tuple:
        batch = sizes["batch"]
        grids = rng.integers(0, config.n_classes + 1, (batch, config.n_frames, h, w))
        grids = np.where(grids == config.n_classes, UNOBSERVED, grids).astype(np.uint8)
        speed = rng.uniform(0.0, 30.0, batch).astype(np.float32)
        return grids, speed

    example, checks = batch_checks()
    return GraphSpec(OcclusionProbabilities(predictor.net_), ("grids", "speed"), ("probabilities",),
                     {"grids": {0: ("batch", 1)}, "speed": {0: ("batch", 1)}}, sample,
                     example, checks, doc,
                     {"kind": "driving-occlusion", "network": config.to_dict(), "classes": classes,
                      "history": history, "memory": bool(predictor.memory)})
