"""unmask core: masking, networks, the training loop, scoring, calibration, explanations,
bundles, metrics, runs and the review store. Imports no vertical, MONAI or Streamlit."""
__version__ = "0.1.0"

from .errors import BundleError, DataValidationError, NotFittedError, UnmaskError  # noqa: E402

__all__ = ["__version__", "UnmaskError", "DataValidationError", "BundleError",
           "NotFittedError", "TabularDetector"]


def __getattr__(name):
    # TabularDetector pulls in torch; load it on first use so `import core` stays light.
    if name == "TabularDetector":
        from .tabular.detector import TabularDetector

        return TabularDetector
    raise AttributeError(f"module 'core' has no attribute {name!r}")
