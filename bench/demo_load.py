"""Time ``unmask demo --size small`` (no serve) end to end while a CPU load runs beside it.

The load is ``--spinners`` pure-Python busy loops (each its own process), standing in for
other users of a shared machine. Writes ``bench/results/demo_load.json``: wall time, load
averages before/after, per-vertical seconds (from the demo's ``WS/.demo/<vertical>.json``).

Usage: python bench/demo_load.py [--spinners 4] [--size small]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPINNER = [sys.executable, "-c", "while True: pass"]
RESULTS = Path(__file__).parent / "results" / "demo_load.json"


def _progress_lines(output: str) -> list[str]:
    """The demo's progress lines (off a terminal: one every 10 s): which stage ran when."""
    return [line for line in output.splitlines() if line.startswith(("demo:", "["))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spinners", type=int, default=4)
    parser.add_argument("--size", default="small")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    print(f"load: {args.spinners} x {' '.join(SPINNER)}", flush=True)
    spinners = [subprocess.Popen(SPINNER) for _ in range(args.spinners)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ws = Path(tmp) / "ws"
            command = [sys.executable, "-m", "core.cli", "demo", "--size", args.size, "-w", str(ws)]
            print("timing:", " ".join(command), flush=True)
            started = time.perf_counter()
            done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
            wall = time.perf_counter() - started
            print(done.stdout, flush=True)
            verticals = {p.stem: round(json.loads(p.read_text())["seconds"], 1)
                         for p in sorted((ws / ".demo").glob("*.json"))}
    finally:
        for spinner in spinners:
            spinner.kill()
    result = {"size": args.size, "exit_code": done.returncode, "wall_s": round(wall, 1),
              "vertical_s": verticals, "progress": _progress_lines(done.stdout), "spinners": args.spinners,
              "load_command": " ".join(SPINNER), "loadavg_before": load_before,
              "loadavg_end": os.getloadavg(), "usable_cpus": len(os.sched_getaffinity(0)),
              "unmask_num_threads": os.environ.get("UNMASK_NUM_THREADS")}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
