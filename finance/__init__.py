"""unmask finance vertical: card-fraud detection an analyst can trust.

Modules, in pipeline order: ``sql`` (identifier/literal quoting, DuckDB errors as one
line), ``schema`` (read/validate Parquet/CSV in DuckDB),
``simulator`` (handbook-style transactions with five fraud scenarios), ``features``
(point-in-time DuckDB window features), ``feedback`` (confirmed dispositions -> delayed
risk features), ``head`` (the supervised feedback head: boosted trees trained on analysts'
dispositions), ``detector`` (``core.TabularDetector`` + the optional head + finance config,
saved as a directory), ``train``, ``scoring`` (batch scorer + calibration + reason codes),
``reasons`` (SHAP -> plain words), ``explain``, ``evaluate``, ``demo``, ``cli``.
"""
