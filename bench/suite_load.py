"""Time the test suite (or a selection) while a CPU load generator keeps the cores busy.

The load generator is ``--spinners`` pure-Python busy loops (``python -c "while True: pass"``,
each its own process), standing in for the other users of a shared machine; they are killed
at the end, on Ctrl-C too. Each configuration (``NAME`` or ``NAME:VAR=VALUE,VAR=...``; an
empty value removes the variable) runs pytest in a subprocess with that environment; with
several configurations and ``--rounds``, the runs are interleaved (A B C A B C ...) so a change
in the machine's other load hits every configuration alike. Records, per run: wall time,
pass/fail counts, the ``--durations`` table and the 1/5/15-minute load averages sampled every
10 s. Writes ``bench/results/suite_load.json`` atomically after every run.

Usage:
    python -m bench.suite_load                                   # the whole suite, 2 spinners
    python -m bench.suite_load --config default --config one:UNMASK_NUM_THREADS=1 \\
        --rounds 2 -- tests/scale/test_torchrun.py
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.cpu_load import cpu_load, describe, mean_load_1min
from core.io import write_text_atomic
from core.runtime import THREAD_ENV_VARS, usable_cpus

RESULTS = Path(__file__).parent / "results" / "suite_load.json"
ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "bench" / "out"  # pytest output of each run (git-ignored)
SAMPLE_EVERY_S = 10.0
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
# The thread variables the default configuration removes, so it gets the product's own budget.
BUDGET_VARS = ("UNMASK_NUM_THREADS", *THREAD_ENV_VARS, "OMP_WAIT_POLICY")
DURATION = re.compile(r"^(\d+(?:\.\d+)?)s (setup|call|teardown)\s+(\S.*)$")
COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)\b")


def parse_config(text: str) -> tuple[str, dict[str, str]]:
    """``"one:UNMASK_NUM_THREADS=1,OMP_WAIT_POLICY=PASSIVE"`` -> ``("one", {...})``."""
    name, _, assignments = text.partition(":")
    changes = {}
    for item in filter(None, assignments.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--config {text!r}: expected NAME:VAR=VALUE,...")
        changes[key] = value
    return name, changes


def config_env(changes: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """The tree to test and its environment: this process's environment without the thread
    budget variables, then ``changes`` (an empty value leaves the variable out). The key
    ``CHECKOUT`` names another source tree to run in (a baseline commit's ``git archive``)."""
    changes = dict(changes)
    tree = Path(changes.pop("CHECKOUT", None) or ROOT).resolve()
    env = {k: v for k, v in os.environ.items() if k not in BUDGET_VARS}
    for key, value in changes.items():
        if value:
            env[key] = value
        else:
            env.pop(key, None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    return tree, env


def summarise(output: str) -> tuple[dict[str, int], list[dict]]:
    """Pass/fail counts from pytest's last summary line, and its ``--durations`` rows."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    for line in reversed(lines):
        found = COUNT.findall(line)
        if found and re.search(r" in [\d.]+s", line):
            counts = {kind.rstrip("s") if kind.startswith("error") else kind: int(n)
                      for n, kind in found}
            break
    durations = [{"seconds": float(m[1]), "when": m[2], "test": m[3]}
                 for m in map(DURATION.match, lines) if m]
    return counts, durations


def _children_cpu() -> float:
    """User + system CPU seconds of the reaped children and their reaped descendants: less
    noisy than wall time on a shared machine, and threads spin-waiting at barriers show in it."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_pytest(args: list[str], tree: Path, env: dict[str, str], durations: int, log: Path) -> dict:
    """Run pytest in its own process group (killed whole on Ctrl-C); output goes to ``log``."""
    command = PYTEST + [f"--durations={durations}", *args]
    started, cpu_before = time.perf_counter(), _children_cpu()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait()
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    wall, cpu = time.perf_counter() - started, _children_cpu() - cpu_before
    counts, table = summarise(log.read_text(errors="replace"))
    return {"command": command, "exit_code": code, "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1), "counts": counts,
            "durations": table}


def write_atomic(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")  # a reader never sees half a file


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt  # so SIGTERM too runs the cleanup below


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spinners", type=int, default=2)
    parser.add_argument("--config", action="append", default=[],
                        help="NAME or NAME:VAR=VALUE,... (repeatable; default: 'default')")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--durations", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("pytest_args", nargs="*", help="after --: the selection (default: all)")
    args = parser.parse_args(argv)
    configs = [parse_config(c) for c in args.config or ["default"]]
    signal.signal(signal.SIGTERM, _raise_interrupt)
    result = {"load_generator": describe(args.spinners),
              "usable_cpus": usable_cpus(), "loadavg_before": os.getloadavg(),
              "selection": args.pytest_args or ["(whole suite)"],
              "configs": {name: changes for name, changes in configs}, "runs": []}
    print(f"load generator: {result['load_generator']}", flush=True)
    with cpu_load(args.spinners, SAMPLE_EVERY_S) as sampler:
        for round_ in range(args.rounds):
            for name, changes in configs:
                log = LOGS / f"{args.out.stem}.{name}.{round_}.log"
                start = sampler.elapsed()
                run = run_pytest(args.pytest_args, *config_env(changes), args.durations, log)
                loads = sampler.between(start, sampler.elapsed())
                run.update(config=name, round=round_, load_samples=loads, mean_load_1min=mean_load_1min(loads))
                result["runs"].append(run)
                print(f"{name} round {round_}: {run['wall_s']} s ({run['cpu_s']} s CPU), {run['counts']}, "
                      f"mean load {run['mean_load_1min']}", flush=True)
                write_atomic(args.out, result)
    result["loadavg_end"] = os.getloadavg()
    result["summary"] = {name: {key: [r[key] for r in result["runs"] if r["config"] == name]
                                for key in ("wall_s", "cpu_s")} for name, _ in configs}
    write_atomic(args.out, result)
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
