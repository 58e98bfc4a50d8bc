"""Settings for the whole suite, made before any test module imports torch or numba."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.runtime import limit_thread_env

ROOT = Path(__file__).resolve().parents[1]

# One thread per pool for the suite, in this process and every child it starts (they inherit
# the environment): its models are tiny, so a second torch/OpenMP thread buys little on idle
# cores, and beside other work two threads wait for each other at every parallel region's
# barrier (bench/README.md, "CI under load"). A budget the caller set is kept.
os.environ.setdefault("UNMASK_NUM_THREADS", "1")
limit_thread_env()


@pytest.fixture
def run_without_numba_cache():
    """``run(script) -> stdout``: a Python ``script`` run in a child process of this checkout
    where numba finds no cache location (a read-only install, no writable home), so it
    refuses ``cache=True``; the child must exit cleanly."""
    prelude = "import numba.core.caching as caching\ncaching.CacheImpl._locator_classes = []\n"

    def run(script: str) -> str:
        result = subprocess.run([sys.executable, "-c", prelude + script], capture_output=True,
                                text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    return run
