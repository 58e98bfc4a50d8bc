"""Errors that users see. Each names the file, column or value at fault."""
import contextlib
import warnings


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


@contextlib.contextmanager
def caught_warnings(handle):
    """Catch every warning raised inside (each :class:`UnmaskWarning` however often it is
    raised) into the list it yields, and pass that list to ``handle`` once the block ends,
    with Python's own warning filters back in place: the one catch that
    :func:`recorded_warnings` and ``core.cli_options.plain_warnings`` differ only in what
    they do with. An error raised in the block goes on after ``handle`` has run, so the
    user still sees what was warned before it."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnmaskWarning)
            yield caught
    finally:
        handle(caught)


@contextlib.contextmanager
def recorded_warnings():
    """Collect the message of each :class:`UnmaskWarning` raised inside into the list it
    yields, and raise every warning caught again as it was when the block ends: a run writes
    what it warned about while reading its input (e.g. an image file listed twice) into its
    summary, and the CLI still prints each as its one ``warning:`` line. An error raised in
    the block goes on after the warnings before it are raised again (find_cases warns of an
    image listed twice, then refuses two cases of one name: the user sees both).

    Example:
        >>> with recorded_warnings() as lines:
        ...     warnings.warn("data/ct: left out 1 case", UnmaskWarning)
        >>> lines
        ['data/ct: left out 1 case']
    """
    lines: list[str] = []

    def record_and_raise_again(caught):
        for caught_warning in caught:
            if issubclass(caught_warning.category, UnmaskWarning):
                lines.append(str(caught_warning.message))
            warnings.warn_explicit(caught_warning.message, caught_warning.category,
                                   caught_warning.filename, caught_warning.lineno,
                                   source=caught_warning.source)

    with caught_warnings(record_and_raise_again):
        yield lines
