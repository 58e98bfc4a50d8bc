"""Tabular masked reconstruction: preprocessing, networks, learned masks, the detector."""
