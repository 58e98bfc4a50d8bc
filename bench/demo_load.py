"""Time ``unmask demo --serve`` from nothing to a served dashboard while a CPU load runs beside it.

The load generator is ``--spinners`` pure-Python busy loops (each its own process),
standing in for the other users of a shared machine. The clock stops when the dashboard's
health endpoint answers; the server is then stopped. Writes ``bench/results/demo_load.json``:
wall time, per-vertical seconds (from the demo's ``WS/.demo/<vertical>.json``) each with
the mean 1-minute load average while it built, and the demo's progress lines.

Usage: python -m bench.demo_load [--spinners 2] [--size small]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench.cpu_load import cpu_load, describe
from core.net import free_port
from core.runtime import usable_cpus

RESULTS = Path(__file__).parent / "results" / "demo_load.json"
SAMPLE_EVERY_S = 5.0


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as answer:
            return answer.read().strip() == b"ok"
    except OSError:
        return False


def _serve_demo(command: list[str], port: int) -> tuple[float, str, int | None]:
    """Run the demo until its dashboard answers; return (seconds, output, exit code if it
    stopped on its own)."""
    output: list[str] = []
    started = time.perf_counter()
    demo = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reader = threading.Thread(target=lambda: output.extend(demo.stdout), daemon=True)
    reader.start()
    try:
        while demo.poll() is None and not _healthy(port):
            time.sleep(0.5)
        wall = time.perf_counter() - started
        code = demo.poll()
    finally:
        demo.terminate()  # `unmask demo --serve` stops its server on SIGTERM
        demo.wait(timeout=60)
    reader.join(timeout=10)
    return wall, "".join(output), code


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spinners", type=int, default=2)
    parser.add_argument("--size", default="small")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    print(f"load generator: {describe(args.spinners)}", flush=True)
    with cpu_load(args.spinners, SAMPLE_EVERY_S) as sampler:
        with tempfile.TemporaryDirectory() as tmp:
            ws, port = Path(tmp) / "ws", free_port()
            command = [sys.executable, "-m", "core.cli", "demo", "--size", args.size,
                       "--workspace", str(ws), "--serve", "--port", str(port)]
            print("timing:", " ".join(command), flush=True)
            wall, output, code = _serve_demo(command, port)
            print(output, flush=True)
            verticals = {}
            for path in sorted((ws / ".demo").glob("*.json")):
                record = json.loads(path.read_text())
                start = sampler.since_start(record["started_at"])   # the demo records unix times
                verticals[path.stem] = {
                    "seconds": round(record["seconds"], 1), "error": record.get("error"),
                    "mean_load_1min": sampler.mean_load_1min(start, start + record["seconds"])}
    result = {"size": args.size, "served": code is None, "exit_code": code,
              "wall_to_served_s": round(wall, 1), "verticals": verticals,
              "load_generator": describe(args.spinners),
              "loadavg_before": load_before, "loadavg_end": os.getloadavg(),
              "mean_load_1min": sampler.mean_load_1min(),   # the sampler has stopped
              "usable_cpus": usable_cpus(),
              "unmask_num_threads": os.environ.get("UNMASK_NUM_THREADS"),
              "progress": [line for line in output.splitlines()
                           if line.startswith(("demo:", "[", "  "))]}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "progress"}, indent=1))


if __name__ == "__main__":
    main()
