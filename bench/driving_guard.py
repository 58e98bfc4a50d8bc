"""How often the driving input guard warns: on held-out drives of the training world (it
should not) and on the same drives shifted to another world (it should).

For each simulator configuration, the profile is fitted on normal training drives; the
guard then reads held-out normal drives and drives with injected events (other seeds), and
copies of the held-out normal drives at 5 Hz, at highway speeds (2.5x + 20 m/s), mostly
blind (3/4 of every frame hidden) and without sidewalks (drawn as off-road). The margins
in ``driving.guard`` were set before this ran and are not tuned on it; ``tiny`` (the
coarser 64x64 town) is the held-out configuration beside ``small`` (the README's).

    UNMASK_NUM_THREADS=1 python -m bench.driving_guard      # -> bench/results/driving_guard.json
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from driving.demo import sim_config
from driving.guard import fit_input_profile, log_differences
from driving.schema import OFF_ROAD, SIDEWALK, UNOBSERVED
from driving.sim.simulator import Simulator

OUT = Path(__file__).with_name("results") / "driving_guard.json"


def _blind(log):
    visible = log.visible.copy()
    visible[:, : visible.shape[1] * 3 // 4] = False
    return replace(log, visible=visible, semantic=np.where(visible, log.semantic, UNOBSERVED))


def _no_sidewalk(log):
    return replace(log, semantic=np.where(log.semantic == SIDEWALK, OFF_ROAD, log.semantic
                                          ).astype(np.uint8))


SHIFTS = {
    "5 Hz": lambda log: replace(log, timestamp=log.timestamp * 2),
    "highway speed": lambda log: replace(log, ego_speed=log.ego_speed * 2.5 + 20.0),
    "mostly blind": _blind,
    "no sidewalks": _no_sidewalk,
}


def _drives(config, n: int, frames: int, seed: int, events: bool) -> list:
    config = replace(config, anomaly_interval_s=20.0 if events else 0.0)
    return [Simulator(config, seed=seed * 1000 + i).simulate(frames, log_id=f"log_{i:03d}")
            for i in range(n)]


def measure(size: str, n_train: int, n_held: int, frames: int) -> dict:
    config = sim_config(size)
    profile = fit_input_profile(_drives(config, n_train, frames, seed=1, events=False))
    normal = _drives(config, n_held, frames, seed=2, events=False)
    events = _drives(config, n_held, frames, seed=3, events=True)

    def warned(logs) -> float:
        return float(np.mean([bool(log_differences(profile, log)) for log in logs]))

    out = {"train_logs": n_train, "held_out_logs": n_held, "frames_per_log": frames,
           "warned_normal": warned(normal), "warned_with_events": warned(events)}
    for name, shift in SHIFTS.items():
        out[f"warned_{name.replace(' ', '_')}"] = warned([shift(log) for log in normal])
    out["normal_warnings"] = [r for log in normal for r in log_differences(profile, log)]
    out["example_reasons"] = log_differences(
        profile, SHIFTS["highway speed"](SHIFTS["5 Hz"](normal[0])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=8)
    parser.add_argument("--held", type=int, default=12)
    parser.add_argument("--frames", type=int, default=150)
    args = parser.parse_args()
    start = time.perf_counter()
    results = {"small": measure("small", args.train, args.held, args.frames),
               "tiny_held_out": measure("tiny", args.train, args.held, args.frames)}
    results["seconds"] = round(time.perf_counter() - start, 1)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
