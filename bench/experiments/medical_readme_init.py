"""At the README's recipe, does starting the segmenter from the pretrained encoder help?

Not part of the benchmark. The README trains the segmenter with 20 labels **from** the
pretrained encoder (``medical train --labels 20 --pretrained models/ct-pretrained``); the
label-efficiency benchmark (phantom version 4) now finds in-painting pretraining below
scratch at 2 labels and level to 4 points below at 8. Two arms, everything else equal
(``simulate --cases 32 --seed 0`` with today's simulator, the default preset, the same
epochs and seed, ``UNMASK_NUM_THREADS=1``):

* pretrained: the README's model, ``train --labels 20 --pretrained PRETRAINED`` (reused
  from ``--readme``: ``ct_new``, ``models/ct-pretrained``, ``models/new``);
* scratch: ``train --labels 20`` on the same ``ct_new`` without ``--pretrained``.

Without ``--pretrained`` no anomaly model is calibrated, so the scratch runs hold
segmentations only; Dice does not depend on the anomaly model.

**Decision rule (written and committed before the scratch arm was trained).** Decision
set: a **fresh** held-out set never used before, ``simulate --cases 18 --seed 904 --shape
128,128,96`` with today's simulator. ``d`` = scratch minus pretrained in the mean Dice of
liver, spleen and both kidneys (``dice_table``'s ``target_mean`` over all 18 cases). If
``d > 0.01``: the README's pretrained initialisation costs Dice; if ``d < -0.01``: it
helps; otherwise the two are level. The frozen held-out set (seed 900, the simulator
before the kidney anatomy change) and the adult-kidney set (seed 902, the ``wide``
candidate simulator) are scored after and decide nothing. Nothing in the product changes
either way; the lead decides.

Every step is skipped when its output is already in ``--work``; the pretrained arm's runs
on sets 900 and 902 are reused when ``--readme`` holds them (``runs/new_on_heldout_old``,
``runs/new_on_heldout_new``). Writes ``bench/results/medical_readme_init.json``.

Example::

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.medical_readme_init \\
        --work /tmp/readme-init --readme /tmp/r14med/readme \\
        --held-out-900 /tmp/r12med/heldout --held-out-902 /tmp/r13med/wide/heldout_new
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.experiments.medical_anatomy import TRAIN, trained_epochs
from bench.experiments.medical_label_count import (HELD_OUT, TARGET_ORGANS, case_phases, dice_table,
                                                   print_dice, run_missing)
from core.io import write_text_atomic
from medical.evaluate import evaluate

DECISION_SEED = 904
LEVEL = 0.01          # |d| up to this: level (the noise of one 18-case set, about 0.01)
ARMS = ("pretrained", "scratch")
# reused runs of the README's model, by held-out seed
README_RUNS = {900: "runs/new_on_heldout_old", 902: "runs/new_on_heldout_new"}


def run_dir(work: Path, readme: Path, arm: str, seed: int) -> Path:
    """Where ``arm``'s run on held-out set ``seed`` is (the README's own when it exists)."""
    reused = readme / README_RUNS.get(seed, "-")
    if arm == "pretrained" and reused.is_dir():
        return reused
    return work / f"runs/{arm}_on_{seed}"


def build(work: Path, readme: Path, held_outs: dict[int, Path]) -> dict:
    """Simulate the decision set, train the scratch arm and infer what ``work`` lacks;
    seconds per step run."""
    models = {"pretrained": readme / "models/new", "scratch": work / "models/scratch"}
    steps = [("simulate_held_out_904", held_outs[DECISION_SEED],
              ["simulate", "--cases", str(HELD_OUT["cases"]), "--seed", str(DECISION_SEED),
               "--shape", HELD_OUT["shape"], "--out", str(held_outs[DECISION_SEED])]),
             ("train_scratch", models["scratch"],
              ["train", "--data", str(readme / "ct_new"), "--labels", str(TRAIN["labels"]),
               "--epochs", str(trained_epochs(models["pretrained"])),   # both arms equal
               "--seed", str(TRAIN["seed"]), "--out", str(models["scratch"]), "--quiet"])]
    for seed, data in held_outs.items():          # the decision set first
        for arm in ARMS:
            run = run_dir(work, readme, arm, seed)
            steps.append((f"infer_{arm}_on_{seed}", run,
                          ["infer", "--model", str(models[arm]), "--images", str(data / "imagesTr"),
                           "--out", str(run), "--quiet"]))
    return run_missing(steps)


def paired(per_case: dict[str, list[dict]]) -> dict:
    """Per case, scratch minus pretrained in the mean Dice of the target organs: mean,
    standard error and how many cases scratch wins."""
    def target(row: dict) -> float:
        return float(np.mean([row[f"dice_{o}"] for o in TARGET_ORGANS]))
    pretrained = {row["case"]: target(row) for row in per_case["pretrained"]}
    diffs = np.array([target(row) - pretrained[row["case"]] for row in per_case["scratch"]])
    return {"mean": float(diffs.mean()), "standard_error": float(diffs.std(ddof=1) / np.sqrt(len(diffs))),
            "scratch_better_cases": f"{int((diffs > 0).sum())}/{len(diffs)}"}


def decide(d: float) -> str:
    """The rule of the module docstring applied to ``d`` (scratch minus pretrained)."""
    if d > LEVEL:
        return "the README's pretrained initialisation costs Dice"
    if d < -LEVEL:
        return "the README's pretrained initialisation helps"
    return "level: the README's pretrained initialisation neither helps nor costs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="Decision set, scratch model, runs.")
    parser.add_argument("--readme", type=Path, required=True,
                        help="The README recipe's folder: ct_new, models/ct-pretrained, models/new.")
    parser.add_argument("--held-out-900", type=Path, required=True,
                        help="The frozen held-out set (seed 900, the simulator before adult kidneys).")
    parser.add_argument("--held-out-902", type=Path, required=True,
                        help="The adult-kidney held-out set (seed 902, the wide candidate simulator).")
    parser.add_argument("--out", type=Path, default=Path("bench/results/medical_readme_init.json"))
    args = parser.parse_args()
    held_outs = {DECISION_SEED: args.work / f"heldout_{DECISION_SEED}", 900: args.held_out_900,
                 902: args.held_out_902}
    seconds = build(args.work, args.readme, held_outs)
    results = {}
    for seed, data in held_outs.items():
        phase_of = case_phases(HELD_OUT["cases"], seed)
        per_case = {arm: evaluate(run_dir(args.work, args.readme, arm, seed), data)["per_case"]
                    for arm in ARMS}
        results[str(seed)] = {"data": str(data), "paired_scratch_minus_pretrained": paired(per_case),
                              **{arm: {"dice": dice_table(rows, phase_of), "per_case": rows}
                                 for arm, rows in per_case.items()}}
    decision_set = results[str(DECISION_SEED)]
    d = (decision_set["scratch"]["dice"]["all"]["target_mean"]
         - decision_set["pretrained"]["dice"]["all"]["target_mean"])
    anatomy = json.loads(Path("bench/results/medical_anatomy.json").read_text())
    payload = {"train": TRAIN, "preset": "default",
               "pretrained_arm_seconds": anatomy["candidates"]["readme_mixed"]["seconds"],
               "epochs": {"pretrained": trained_epochs(args.readme / "models/new"),
                          "scratch": trained_epochs(args.work / "models/scratch")},
               "rule": {"decision_set": {**HELD_OUT, "seed": DECISION_SEED}, "level": LEVEL,
                        "d": "scratch minus pretrained, target_mean over all cases"},
               "d": d, "decision": decide(d), "seconds": seconds, "results": results}
    write_text_atomic(args.out, json.dumps(payload, indent=2))
    for seed, result in results.items():
        for arm in ARMS:
            print_dice(f"{arm}_on_{seed}", result[arm]["dice"])
        print(seed, "paired", result["paired_scratch_minus_pretrained"])
    print(f"d = {d:+.4f}: {decide(d)}")


if __name__ == "__main__":
    main()
