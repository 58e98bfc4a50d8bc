"""Settings for the whole suite, made before any test module imports torch or numba."""
import os

from core.runtime import limit_thread_env

# One thread per pool for the suite, in this process and every child it starts (they inherit
# the environment): its models are tiny, so a second torch/OpenMP thread buys little on idle
# cores, and beside other work two threads wait for each other at every parallel region's
# barrier (bench/README.md, "CI under load"). A budget the caller set is kept.
os.environ.setdefault("UNMASK_NUM_THREADS", "1")
limit_thread_env()
