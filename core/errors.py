"""Errors that users see. Each names the file, column or value at fault."""


class UnmaskError(Exception):
    """Base class: the CLI prints these as one clear line, never a traceback."""


class DataValidationError(UnmaskError, ValueError):
    """Input data breaks a documented contract (schema, values, shapes)."""


class BundleError(UnmaskError):
    """A saved model directory is missing, tampered with, truncated or too new."""


class DeviceError(UnmaskError, ValueError):
    """A ``--device`` / ``--precision`` this machine cannot honour (no CUDA, bad name)."""


class NotFittedError(UnmaskError, AttributeError):
    """An estimator was used before ``fit``."""


class UnmaskWarning(UserWarning):
    """Something the user should know about a result (e.g. a calibration too small for
    any alert); the CLI prints each as one ``warning:`` line."""
