"""Process-level settings for torch: thread count and device choice."""
from __future__ import annotations

import os


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


def choose_device(device: str = "auto"):
    """``"auto"`` picks CUDA when present, else CPU; anything else is passed to torch."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
