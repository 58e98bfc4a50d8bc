"""The drive-log simulator: a procedural town (``world``), ray-cast visibility
(``raycast``) and the ego drive with injected anomalies (``simulator``)."""
