"""The occlusion model: the network (``network``), its training masks (``masking``), the
estimator that fits and scores it (``predictor``), its bundle (``bundle``) and the
hidden-cell baselines and layout memories (``baselines``)."""
