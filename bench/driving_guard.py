"""How often the driving input guard warns: on held-out drives of the training world (it
should not) and on drives of another world (it should).

For each world (town, highway) and size, the profile is fitted on normal training drives;
the guard then reads held-out normal drives and drives with injected events (other seeds),
and the other world's held-out normal drives (cross-world: a town profile reading highway
drives, a highway profile reading town drives). The town's held-out normal drives are also
shifted: copies at 5 Hz, at highway speeds (2.5x + 20 m/s), mostly blind (3/4 of every
frame hidden) and without sidewalks (drawn as off-road). Every count says how many logs
got a warning line and how many of those lines name the ego speed. The margins in
``driving.guard`` were set before this ran and are not tuned on it; ``tiny`` (64x64, the
coarser town, two lanes each way on the highway) is the held-out configuration beside
``small`` (the README's).

    UNMASK_NUM_THREADS=1 python -m bench.driving_guard      # -> bench/results/driving_guard.json
    ... --log-dir /tmp/guard-logs    # keep the drives; a second run reads them back
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.driving_logs import kept_logs
from core.io import write_text_atomic
from driving.demo import sim_config
from driving.guard import fit_input_profile, log_differences
from driving.schema import OFF_ROAD, SIDEWALK, UNOBSERVED

OUT = Path(__file__).with_name("results") / "driving_guard.json"
WORLDS = ("town", "highway")


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


def _drives(config, n: int, frames: int, seed: int, events: bool, keep: Path | None) -> list:
    """``n`` drives (seed ``seed * 1000 + i``); kept in ``keep/<seed>`` and read back from
    there by a later run when given (``bench.driving_logs.kept_logs``)."""
    config = replace(config, anomaly_interval_s=20.0 if events else 0.0)
    if keep is not None:
        return kept_logs(keep / str(seed), n, frames, seed, config)
    return [config.build(seed * 1000 + i).simulate(frames, log_id=f"log_{i:03d}")
            for i in range(n)]


def _reasons(profile, logs) -> list:
    """Per log of ``logs``, the guard's reasons (``log_differences``; empty: no warning)."""
    return [log_differences(profile, log) for log in logs]


def _tally(reasons: list) -> dict:
    """How many logs (``reasons``: per log, from :func:`_reasons`) get a warning line, and how
    many for their ego speed."""
    return {"logs": len(reasons), "warned": sum(bool(r) for r in reasons),
            "speed_warned": sum(any(r.startswith("ego speed") for r in rs) for rs in reasons)}


def _world(config, n_train: int, n_held: int, frames: int, keep: Path | None) -> tuple:
    """One world's profile, its held-out normal drives and what the guard says on them and
    on drives with events."""
    profile = fit_input_profile(_drives(config, n_train, frames, 1, False, keep))
    normal = _drives(config, n_held, frames, 2, False, keep)
    events = _drives(config, n_held, frames, 3, True, keep)
    normal_reasons, event_reasons = _reasons(profile, normal), _reasons(profile, events)
    out = {"training_speed_m_s": list(profile.speed_m_s), "normal": _tally(normal_reasons),
           "with_events": _tally(event_reasons),
           "normal_warnings": [r for rs in normal_reasons for r in rs],
           "event_speed_warnings": [r for rs in event_reasons for r in rs
                                    if r.startswith("ego speed")]}
    return profile, normal, out


def measure(size: str, n_train: int, n_held: int, frames: int, keep: Path | None = None) -> dict:
    """Both worlds at one size, the town's drives shifted, and each world's profile reading
    the other world's normal drives."""
    out = {"train_logs": n_train, "held_out_logs": n_held, "frames_per_log": frames}
    profiles, normal = {}, {}
    for world in WORLDS:
        profiles[world], normal[world], out[world] = _world(
            sim_config(size, world), n_train, n_held, frames,
            None if keep is None else keep / size / world)
    for name, shift in SHIFTS.items():
        out["town"][name.replace(" ", "_")] = _tally(
            _reasons(profiles["town"], [shift(log) for log in normal["town"]]))
    out["town"]["example_reasons"] = log_differences(
        profiles["town"], SHIFTS["highway speed"](SHIFTS["5 Hz"](normal["town"][0])))
    out["cross_world"] = {
        "town_profile_highway_logs": _tally(_reasons(profiles["town"], normal["highway"])),
        "highway_profile_town_logs": _tally(_reasons(profiles["highway"], normal["town"]))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=8)
    parser.add_argument("--held", type=int, default=12)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="keep the simulated drives here; a later run reads them back")
    args = parser.parse_args()
    start = time.perf_counter()
    results = {"small": measure("small", args.train, args.held, args.frames, args.log_dir),
               "tiny_held_out": measure("tiny", args.train, args.held, args.frames, args.log_dir)}
    results["seconds"] = round(time.perf_counter() - start, 1)
    args.out.parent.mkdir(exist_ok=True)
    write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
