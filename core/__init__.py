"""unmask core: masking, networks, the training loop, scoring, calibration, explanations,
bundles, metrics, runs and the review store. Imports no vertical, MONAI or Streamlit."""
from importlib.metadata import PackageNotFoundError, version

from .errors import BundleError, DataValidationError, NotFittedError, UnmaskError

try:
    __version__ = version("unmask")  # the one version source: pyproject.toml
except PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "UnmaskError", "DataValidationError", "BundleError",
           "NotFittedError", "TabularDetector", "ConformalAlerts"]


def __getattr__(name):
    # both pull in scikit-learn (TabularDetector also torch): load them on first use so
    # `import core` stays light.
    if name == "TabularDetector":
        from .tabular.detector import TabularDetector  # lazy: torch, scikit-learn

        return TabularDetector
    if name == "ConformalAlerts":
        from .conformal import ConformalAlerts  # lazy: scikit-learn

        return ConformalAlerts
    raise AttributeError(f"module 'core' has no attribute {name!r}")
