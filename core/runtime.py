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
import time
from pathlib import Path

from tqdm import tqdm

from .errors import DeviceError

PRECISIONS = ("fp32", "bf16")
DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N"
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


# Every library that keeps its own thread pool reads one of these when it starts the pool.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                   "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"
WAIT_POLICY = "PASSIVE"  # OMP_WAIT_POLICY unless the caller chose one
PROC_LOADAVG = "/proc/loadavg"  # "0.52 0.58 0.59 3/467 12345": 3 threads runnable now
RUNNABLE_LOOKS = 3


def _cgroup_cpus() -> int | None:
    """CPUs the cgroup v2 quota allows (``"150000 100000"`` -> 1), or None without a quota."""
    try:
        quota, period = Path(CGROUP_CPU_MAX).read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, int(quota) // int(period))  # a fraction of a CPU still gets one thread


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by the cgroup quota.

    ``os.cpu_count()`` counts the machine's CPUs, which oversubscribes a container or a
    process pinned to a few cores.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpus()
    return max(1, min(cpus, quota) if quota else cpus)


def busy_elsewhere() -> int:
    """Threads other than the caller running or waiting for a CPU right now, machine-wide
    (``/proc/loadavg``'s running count, the fewest of a few looks so a passing process does
    not count); 0 where the kernel does not say."""
    counts = []
    for _ in range(RUNNABLE_LOOKS):
        try:
            running = Path(PROC_LOADAVG).read_text().split()[3].split("/")[0]
        except (OSError, IndexError):
            return 0
        counts.append(int(running) - 1)  # the caller is running while it reads
        time.sleep(0.001)
    return max(0, min(counts))


def free_cpus() -> int:
    """The usable CPUs no other thread is busy on (at least 1).

    Two threads on two busy CPUs meet at every parallel region's barrier, each waiting for the
    other's next time slice: beside busy processes (load ~13 on 2 CPUs) the tiny medical demo
    trained in 92 s with two threads (waiting passively), 62 s with one (bench/README.md,
    "CI under load").
    Busy threads outside this process's affinity count too: fewer threads, never more.
    """
    return max(1, usable_cpus() - busy_elsewhere())


def default_threads() -> int:
    """``UNMASK_NUM_THREADS``, else ``min(2, free_cpus())`` shared among the workers a
    launcher started on this machine (``LOCAL_WORLD_SIZE``): the thread count for torch,
    numba, OpenMP/BLAS and DuckDB alike (one or two threads win on shared CPUs; one where
    the CPUs are busy, looked at when a command or a fit starts)."""
    env = os.environ.get("UNMASK_NUM_THREADS")
    if env:
        return max(1, int(env))
    workers = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    return max(1, min(2, free_cpus() // max(1, workers)))


def limit_thread_env(num_threads: int | None = None) -> int:
    """Set the thread variables OpenMP, MKL, OpenBLAS and numba read when they start their
    pools, and OpenMP's passive wait policy; call it before importing them (at a command's
    start, in a child's first line).

    Returns:
        The thread count written.
    """
    num_threads = max(1, num_threads or default_threads())
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(num_threads)
    # OpenMP threads that finish a parallel region first sleep instead of spinning for the
    # others: beside busy processes the spinning took the CPU from the thread being waited for
    # (the tiny medical demo: 600+ s with two spinning threads, 92 s with two passive ones;
    # bench/README.md, "CI under load").
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    numba = sys.modules.get("numba")
    if numba is not None:
        # numba re-reads its variable at every compile and refuses a new pool size once its
        # pool runs: keep the size it started with (numba.set_num_threads caps the threads used).
        os.environ["NUMBA_NUM_THREADS"] = str(numba.config.NUMBA_NUM_THREADS)
    return num_threads


def configure_threads(num_threads: int | None = None) -> int:
    """One thread budget for every pool: torch (intra- and inter-op), numba, and the
    OpenMP/BLAS pools already loaded (through threadpoolctl when installed).

    Order: the argument, then ``UNMASK_NUM_THREADS``, then ``min(2, free_cpus())``.
    DuckDB connections take :func:`default_threads` in ``SET threads``. Under a distributed
    launcher (torchrun) only torch's intra-op count changes: its workers share the CPUs
    (:func:`default_threads` divides them), and a worker whose inter-op and OpenMP pools
    were resized beside the process group's threads was seen to abort ("terminate called
    without an active exception").

    Returns:
        The thread count now in force.
    """
    import torch

    num_threads = limit_thread_env(num_threads)
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    if not under_launcher():
        _limit_interop(torch, num_threads)
        _limit_numba(num_threads)
        _limit_threadpools(num_threads)
    return torch.get_num_threads()


def under_launcher() -> bool:
    """Whether a distributed launcher (torchrun, torch.distributed.run) started this process."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


class _Interop:
    """torch sizes its inter-op pool once per process; later calls raise or, on some
    builds, abort. Remember the first so it is the only one."""

    chosen: int | None = None


def _limit_interop(torch, num_threads: int) -> None:
    if _Interop.chosen is not None or torch.get_num_interop_threads() == num_threads:
        return
    _Interop.chosen = num_threads
    try:
        torch.set_num_interop_threads(num_threads)
    except RuntimeError:  # the pool already started (parallel work ran); it keeps its size
        pass


def _limit_numba(num_threads: int) -> None:
    """numba's pool: only when numba is already loaded (importing it costs seconds)."""
    numba = sys.modules.get("numba")
    if numba is None:
        return
    try:
        numba.set_num_threads(min(num_threads, numba.config.NUMBA_NUM_THREADS))
    except (AttributeError, ValueError):  # an old numba, or a pool already launched smaller
        pass


def _limit_threadpools(num_threads: int) -> None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=num_threads)  # not a context: the limit stays for the process


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


class _Status:
    """Where progress is reported when no bar can be drawn (a child process building a demo):
    one line naming the open loops (``"train 3/8 epoch 4 12/25"``), rewritten at most twice
    a second into a file the parent reads."""

    path: Path | None = None
    open_bars: dict = {}
    written_at = 0.0

    @classmethod
    def update(cls, bar_id: int, desc: str | None, n: int, total, force: bool = False) -> None:
        if cls.path is None:
            return
        if desc is None:
            cls.open_bars.pop(bar_id, None)
        else:
            cls.open_bars[bar_id] = f"{desc} {n}/{total}" if total else f"{desc} {n}"
        now = time.monotonic()
        if force or now - cls.written_at >= 0.5:
            cls.written_at = now
            scratch = cls.path.with_suffix(".tmp")
            scratch.write_text(" ".join(cls.open_bars.values()))
            os.replace(scratch, cls.path)  # the reader never sees half a line


def report_progress_to(path) -> None:
    """Write every progress loop's position to ``path`` (see :func:`read_progress`), drawn
    bar or not: a parent process shows it while this one works off a terminal."""
    _Status.path = None if path is None else Path(path)
    _Status.open_bars = {}


def read_progress(path) -> str:
    """The latest progress line :func:`report_progress_to` wrote ("" before the first)."""
    try:
        return Path(path).read_text()
    except OSError:
        return ""


class _Bar(tqdm):
    """tqdm that also reports its position to :class:`_Status` while it is iterated."""

    def __init__(self, iterable=None, *args, **kwargs):
        self._label = kwargs.get("desc") or "progress"
        if kwargs.get("total") is None and iterable is not None and hasattr(iterable, "__len__"):
            kwargs["total"] = len(iterable)
        super().__init__(iterable, *args, **kwargs)

    def __iter__(self):
        position = 0
        try:
            for item in super().__iter__():
                _Status.update(id(self), self._label, position + 1, self.total)
                yield item
                position += 1
        finally:
            _Status.update(id(self), None, position, self.total)


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
    return _Bar(iterable, desc=desc, total=total, disable=disable,
                file=sys.stderr if file is None else file, dynamic_ncols=True, **kwargs)
