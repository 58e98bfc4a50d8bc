"""How often gloo's worker thread still holds a tensor when ``dist.all_reduce`` returns.

Not part of the benchmark. The diagnosis of the torchrun abort at exit ("terminate called
without an active exception", ~1 in 15 launches of tests/scale/test_torchrun.py's lockstep
test): a synchronous ``all_reduce`` returns when the result is ready, before the worker thread
drops the work holding the tensor, so the caller's Python tensor outlives its last Python
reference and is freed later on that thread, under the GIL; a rank that reaches interpreter
shutdown first aborts. ``core.training._wait_until_released`` closes the window for the loss
all-reduce. Each rank reduces ``--calls`` fresh tensors and counts the calls after which the
tensor was still held, and how long the worker took to let go. Writes
``bench/results/torchrun_tensor_release.json``.

Run (two processes on this machine):
    python -m torch.distributed.run --standalone --nproc_per_node=2 \\
        -m bench.experiments.torchrun_tensor_release --calls 500
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from core.io import write_text_atomic

RESULTS = Path(__file__).resolve().parents[1] / "results" / "torchrun_tensor_release.json"


def held_after_all_reduce(calls: int) -> dict:
    """This rank's count of calls whose tensor the worker still held, and the waits (ms)."""
    waits = []
    for i in range(calls):
        tensor = torch.tensor([float(i)], dtype=torch.float64)
        dist.all_reduce(tensor)
        start = time.perf_counter()
        if tensor._use_count() > 1:                  # the work still references it
            while tensor._use_count() > 1:
                time.sleep(1e-5)
            waits.append(1e3 * (time.perf_counter() - start))
    return {"calls": calls, "held": len(waits),
            "release_ms_median": float(np.median(waits)) if waits else 0.0,
            "release_ms_max": max(waits, default=0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    ranks = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, held_after_all_reduce(args.calls))
    dist.destroy_process_group()                     # no DDP here: this joins gloo's threads
    if int(os.environ["RANK"]) == 0:
        result = {"ranks": ranks, "load_1min": os.getloadavg()[0], "torch": torch.__version__}
        write_text_atomic(RESULTS, json.dumps(result, indent=2) + "\n")
        print(json.dumps(result))


if __name__ == "__main__":
    main()
