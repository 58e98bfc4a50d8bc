"""A CPU load beside a measurement: busy-loop processes and a load-average sampler.

The spinners (``python -c "while True: pass"``, each its own process) stand in for the other
users of a shared machine. :func:`cpu_load` starts them and the sampler, and on leaving --
normally, on an error or on Ctrl-C -- stops the sampler and kills and reaps every spinner.

Example::

    with cpu_load(spinners=2, sample_every_s=10.0) as sampler:
        start = sampler.elapsed()
        run_the_measurement()
        mean = sampler.mean_load_1min(start, sampler.elapsed())
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

SPINNER = [sys.executable, "-c", "while True: pass"]


def describe(spinners: int) -> str:
    """The load generator in words, as the results files record it."""
    return f"{spinners} x {' '.join(SPINNER)}"


class LoadSampler(threading.Thread):
    """``(seconds since start, load1, load5, load15)`` every ``every_s`` seconds.

    Times are on the monotonic clock (``elapsed``); ``started_unix`` places a wall-clock
    time another process recorded (``since_start``).
    """

    def __init__(self, every_s: float):
        super().__init__(daemon=True)
        self.every_s = every_s
        self.started = time.monotonic()
        self.started_unix = time.time()
        self.samples: list[tuple[float, float, float, float]] = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(self.every_s):
            self.samples.append((round(self.elapsed(), 1), *(round(x, 2) for x in os.getloadavg())))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def since_start(self, unix_time: float) -> float:
        """A wall-clock time (``time.time()``) as seconds since the sampler started."""
        return unix_time - self.started_unix

    def between(self, start: float, end: float) -> list:
        return [s for s in self.samples if start <= s[0] <= end]

    def mean_load_1min(self, start: float = 0.0, end: float = float("inf")) -> float | None:
        """Mean 1-minute load average of the samples in ``[start, end]`` (None if none)."""
        return mean_load_1min(self.between(start, end))


def mean_load_1min(samples: list) -> float | None:
    """Mean 1-minute load average of :class:`LoadSampler` samples (None if there are none)."""
    return round(statistics.mean(s[1] for s in samples), 2) if samples else None


@contextmanager
def cpu_load(spinners: int, sample_every_s: float) -> Iterator[LoadSampler]:
    """``spinners`` busy loops and a started :class:`LoadSampler` for the ``with`` block."""
    processes: list[subprocess.Popen] = []
    sampler = None
    try:
        for _ in range(spinners):
            processes.append(subprocess.Popen(SPINNER))
        sampler = LoadSampler(sample_every_s)   # its clock starts with the load
        sampler.start()
        yield sampler
    finally:
        if sampler is not None:
            sampler.stop.set()
            sampler.join()          # no sample lands after the caller's last read
        for process in processes:
            process.kill()
            process.wait()
