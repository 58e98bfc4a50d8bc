"""Process-level settings: thread count, device and precision choice, progress bars.

The device and precision are *runtime* options: a command or a loader chooses them; no
bundle stores them in a way that decides where it loads (weights are saved from CPU and
moved after loading, so a model trained on a GPU scores on a CPU-only machine).

Example:
    >>> device = choose_device("cpu")
    >>> with autocast(device, "fp32"):
    ...     pass
    >>> for _ in progress_bar(range(3), desc="cases", show=False):
    ...     pass
"""
from __future__ import annotations

import contextlib
import os
import re
import sys

from tqdm import tqdm

from .errors import DeviceError

PRECISIONS = ("fp32", "bf16")
DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N"
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


def default_threads() -> int:
    """``UNMASK_NUM_THREADS``, else ``min(2, cpu_count)``: the thread count for torch,
    OpenMP and DuckDB alike (one or two threads win on shared CPUs)."""
    env = os.environ.get("UNMASK_NUM_THREADS")
    return max(1, int(env) if env else min(2, os.cpu_count() or 1))


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads; small numbers win on shared CPUs.

    Order: the argument, then ``UNMASK_NUM_THREADS``, then ``min(2, cpu_count)``.

    Returns:
        The thread count now in force.
    """
    import torch

    if num_threads is None:
        num_threads = default_threads()
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(max(1, num_threads))
    return torch.get_num_threads()


def choose_device(device="auto"):
    """The ``torch.device`` for ``device``: ``"auto"`` picks CUDA when present, else CPU.

    Raises:
        DeviceError: not one of auto, cpu, cuda, cuda:N; or CUDA asked for and absent.
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise DeviceError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device}: cuda requested but not available "
                              f"(torch {torch.__version__} sees no GPU); use --device cpu")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: this machine has {torch.cuda.device_count()} "
                              "CUDA device(s), numbered from 0")
    return chosen


def check_precision(precision: str, device) -> str:
    """``precision`` if it can run on ``device`` (a ``torch.device``).

    bf16 runs as CUDA autocast only: CPU autocast to bf16 is slow on most CPUs and not
    what we validated, so it is refused rather than silently run in fp32.

    Raises:
        DeviceError: unknown precision, or bf16 off CUDA.
    """
    if precision not in PRECISIONS:
        raise DeviceError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and getattr(device, "type", str(device)) != "cuda":
        raise DeviceError(f"--precision bf16 needs a CUDA device, not {device}; use --precision fp32")
    return precision


def autocast(device, precision: str = "fp32"):
    """Context for a forward pass: bf16 CUDA autocast, or nothing for fp32.

    Autocast is per thread: enter it in the thread that runs the network.
    """
    import torch

    if precision == "bf16":
        check_precision(precision, device)
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def module_device(module):
    """The device of ``module``'s first parameter (or buffer); CPU for a module with none."""
    import torch

    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


class NetworkPlacement:
    """Mixin for a model wrapper holding ``self.network``: the network's device is the
    model's, and :meth:`to` moves it (the wrapper puts every input there and runs the
    forward passes under :func:`autocast` with ``precision``)."""

    precision = "fp32"

    @property
    def device(self):
        """Where the network and everything fed to it live."""
        return module_device(self.network)

    def to(self, device="cpu", precision: str = "fp32"):
        """Move the network to ``device`` (auto, cpu, cuda, cuda:N); set ``precision``."""
        chosen = choose_device(device)
        self.precision = check_precision(precision, chosen)
        self.network.to(chosen)
        return self


def progress_bar(iterable=None, desc: str | None = None, total: int | None = None,
                 show: bool | None = None, file=None, **kwargs):
    """A tqdm bar on stderr: the one rule for progress output of every long command.

    Args:
        iterable: what to iterate over (or ``None`` and call ``update``).
        desc, total: the bar's label and length.
        show: ``None`` shows it only when ``file`` is a terminal (tqdm's ``disable=None``;
            so pipes, logs and CI stay clean); ``False`` never (``--quiet``); ``True`` always.
        file: where to draw (default ``sys.stderr``, looked up at call time).
        kwargs: more tqdm options (``unit``, ``leave``, ...).
    """
    disable = None if show is None else not show
    return tqdm(iterable, desc=desc, total=total, disable=disable,
                file=sys.stderr if file is None else file, dynamic_ncols=True, **kwargs)
