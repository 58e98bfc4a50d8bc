"""How many labelled phantoms the README's phantom-only recipe should train on.

Not part of the benchmark. Runs the README's commands (default preset) with two label
counts, everything else equal: ``simulate --cases 32`` (seed 0), ``pretrain`` on all of
them, ``train --labels K`` for each K (the cases beyond K calibrate the anomaly model), and
scores both on a **held-out** phantom set frozen before any training: 18 cases of seed 900
(3 native, 6 arterial, 9 portal-venous; 12 would have held one native case) at
128 x 128 x 96 voxels (2.7-3.8 mm in-plane, 2.3-3.3 mm slices: a real CT's grid, unlike
the 96 x 96 x 48 training phantoms). Dice per organ is reported per contrast phase, which
the case's seed fixes (``phantom_render.draw_style`` is the first draw of a case).

Every step is skipped when its output is already in ``--work`` (a model or run reused from
an earlier call). Writes ``bench/results/medical_label_count.json``.

Example::

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.medical_label_count \\
        --work /tmp/label-count --labels 4,20
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from core.io import write_text_atomic
from medical.evaluate import evaluate
from medical.phantom_render import draw_style

HELD_OUT = {"cases": 18, "seed": 900, "shape": "128,128,96"}
TRAIN = {"cases": 32, "seed": 0}
EPOCHS = 30   # the default when this was measured (round 12; 60 since round 13)
KIDNEYS = ("kidney_right", "kidney_left")
TARGET_ORGANS = ("liver", "spleen", *KIDNEYS)  # the real-scan target: their mean Dice


def cli(*args: str) -> float:
    """Run ``unmask medical ARGS`` in a fresh process; its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "core.cli", "medical", *args], check=True)
    return time.perf_counter() - start


def run_missing(steps) -> dict[str, float]:
    """Run each ``(name, output, cli args)`` step whose output does not exist yet; the
    wall seconds of each step run."""
    return {name: cli(*args) for name, output, args in steps if not output.exists()}


def phases(n_cases: int, seed: int) -> list[str]:
    """The contrast phase of each case ``simulate --seed seed`` writes (its first draw)."""
    return [draw_style(np.random.default_rng([seed, i])).phase for i in range(n_cases)]


def case_phases(n_cases: int, seed: int) -> dict[str, str]:
    """``{case name: contrast phase}`` of ``simulate --cases n_cases --seed seed``."""
    return {f"case_{i:03d}": p for i, p in enumerate(phases(n_cases, seed))}


def held_out_phases() -> dict[str, str]:
    """``{case name: contrast phase}`` of the frozen held-out set."""
    return case_phases(HELD_OUT["cases"], HELD_OUT["seed"])


def print_dice(prefix: str, table: dict) -> None:
    """One line per group of a :func:`dice_table`."""
    for group, row in table.items():
        print(prefix, group, " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in row.items()))


def dice_table(per_case: list[dict], phase_of: dict[str, str]) -> dict:
    """Mean Dice per organ, overall and per phase, plus the liver/spleen/kidney mean."""
    organs = [k[5:] for k in per_case[0] if k.startswith("dice_")]
    groups = {"all": per_case}
    for phase in sorted(set(phase_of.values())):
        groups[phase] = [row for row in per_case if phase_of[row["case"]] == phase]
    table = {}
    for group, rows in groups.items():
        means = {organ: float(np.mean([row[f"dice_{organ}"] for row in rows])) for organ in organs}
        means["target_mean"] = float(np.mean([means[o] for o in TARGET_ORGANS]))
        table[group] = {"n_cases": len(rows), **means}
    return table


def build(work: Path, label_counts: list[int]) -> dict:
    """Simulate, pretrain, train and infer what ``work`` lacks; seconds per step run."""
    steps = [("simulate_train", work / "ct", ["simulate", "--cases", str(TRAIN["cases"]),
                                               "--seed", str(TRAIN["seed"]), "--out", str(work / "ct")]),
             ("simulate_held_out", work / "heldout",
              ["simulate", "--cases", str(HELD_OUT["cases"]), "--seed", str(HELD_OUT["seed"]),
               "--shape", HELD_OUT["shape"], "--out", str(work / "heldout")]),
             ("pretrain", work / "models/ct-pretrained",
              ["pretrain", "--data", str(work / "ct"), "--out", str(work / "models/ct-pretrained"),
               "--quiet"])]
    for k in label_counts:
        model, run = work / f"models/labels-{k}", work / f"runs/labels-{k}"
        steps.append((f"train_labels_{k}", model,
                      ["train", "--data", str(work / "ct"), "--labels", str(k), "--epochs", str(EPOCHS),
                       "--pretrained", str(work / "models/ct-pretrained"), "--out", str(model), "--quiet"]))
        steps.append((f"infer_labels_{k}", run,
                      ["infer", "--model", str(model), "--images", str(work / "heldout/imagesTr"),
                       "--out", str(run), "--quiet"]))
    return run_missing(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="Data, models and runs.")
    parser.add_argument("--labels", default="4,20", help="Label counts to compare.")
    parser.add_argument("--out", type=Path, default=Path("bench/results/medical_label_count.json"))
    args = parser.parse_args()
    label_counts = [int(k) for k in args.labels.split(",")]
    seconds = build(args.work, label_counts)
    phase_of = held_out_phases()
    results = {}
    for k in label_counts:
        report = evaluate(args.work / f"runs/labels-{k}", args.work / "heldout")
        results[f"labels_{k}"] = {"trained_on_phases": dict(Counter(phases(k, TRAIN["seed"]))),
                                  "dice": dice_table(report["per_case"], phase_of),
                                  "per_case": report["per_case"]}
    payload = {"train": TRAIN, "held_out": HELD_OUT, "held_out_phases": phase_of,
               "preset": "default", "seconds": seconds, "results": results}
    write_text_atomic(args.out, json.dumps(payload, indent=2))
    for name, result in results.items():
        print_dice(name, result["dice"])


if __name__ == "__main__":
    main()
