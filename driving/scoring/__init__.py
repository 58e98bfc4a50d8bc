"""From the model's beliefs to a frame score: the surprise passes (``surprise``), the
per-cell normaliser (``normaliser``), the context prior (``context_prior``), the calibrated
frame score (``frame_score``), the reported class of hidden cells (``decision``), the fitted
scoring state (``state``) and the run writer (``run``)."""
