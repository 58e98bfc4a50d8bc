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

Without ``--pretrained`` the model grid is the median spacing of the 20 trained images, not
the pretraining bundle's (all 32), so the two arms differ in grid too. ``--control-grid``
adds a third arm after the decision, which decides nothing: scratch on the pretrained
bundle's grid (:func:`train_on_grid`, the same ``train`` through the Python API, which has
the option the CLI lacks).

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
``runs/new_on_heldout_new``). Writes ``bench/results/medical_readme_init.json``, keeping
the seconds of steps an earlier call ran.

Example::

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.medical_readme_init \\
        --work /tmp/readme-init --readme /tmp/r14med/readme \\
        --held-out-900 /tmp/r12med/heldout --held-out-902 /tmp/r13med/wide/heldout_new
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.experiments.medical_anatomy import TRAIN, trained_epochs
from bench.experiments.medical_label_count import (HELD_OUT, TARGET_ORGANS, case_phases, dice_table,
                                                   print_dice, run_missing)
from core.bundle import read_bundle_config
from core.io import write_text_atomic
from core.runtime import configure_threads
from medical.evaluate import evaluate
from medical.presets import preset
from medical.segment import train_segmenter

DECISION_SEED = 904
LEVEL = 0.01          # |d| up to this: level (the noise of one 18-case set, about 0.01)
ARMS = ("pretrained", "scratch")
CONTROL = "scratch_pretrain_grid"   # scratch on the pretrained bundle's model grid
# reused runs of the README's model, by held-out seed
README_RUNS = {900: "runs/new_on_heldout_old", 902: "runs/new_on_heldout_new"}


def run_dir(work: Path, readme: Path, arm: str, seed: int) -> Path:
    """Where ``arm``'s run on held-out set ``seed`` is (the README's own when it exists)."""
    reused = readme / README_RUNS.get(seed, "-")
    if arm == "pretrained" and reused.is_dir():
        return reused
    return work / f"runs/{arm}_on_{seed}"


def models_of(work: Path, readme: Path) -> dict[str, Path]:
    """Each arm's model folder."""
    return {"pretrained": readme / "models/new", "scratch": work / "models/scratch",
            CONTROL: work / f"models/{CONTROL}"}


def train_on_grid(data: Path, out: Path, pretrained: Path, epochs: int) -> float:
    """``train --labels 20`` from scratch on ``pretrained``'s model grid; wall seconds."""
    configure_threads()                           # as the CLI does: UNMASK_NUM_THREADS
    start = time.perf_counter()
    spacing = read_bundle_config(pretrained)["config"]["preprocess"]["spacing"]
    _, config = preset("default", TRAIN["seed"])
    config = replace(config, max_epochs=epochs, spacing=tuple(spacing))
    train_segmenter(data, out, None, TRAIN["labels"], config, progress=False)
    return time.perf_counter() - start


def build(work: Path, readme: Path, held_outs: dict[int, Path], arms=ARMS) -> dict:
    """Simulate the decision set, train the scratch arms and infer what ``work`` lacks;
    seconds per step run."""
    models = models_of(work, readme)
    seconds = {}
    if CONTROL in arms and not models[CONTROL].exists():
        seconds[f"train_{CONTROL}"] = train_on_grid(readme / "ct_new", models[CONTROL],
                                                    readme / "models/ct-pretrained",
                                                    trained_epochs(models["pretrained"]))
    steps = [("simulate_held_out_904", held_outs[DECISION_SEED],
              ["simulate", "--cases", str(HELD_OUT["cases"]), "--seed", str(DECISION_SEED),
               "--shape", HELD_OUT["shape"], "--out", str(held_outs[DECISION_SEED])]),
             ("train_scratch", models["scratch"],
              ["train", "--data", str(readme / "ct_new"), "--labels", str(TRAIN["labels"]),
               "--epochs", str(trained_epochs(models["pretrained"])),   # both arms equal
               "--seed", str(TRAIN["seed"]), "--out", str(models["scratch"]), "--quiet"])]
    for seed, data in held_outs.items():          # the decision set first
        for arm in arms:
            run = run_dir(work, readme, arm, seed)
            steps.append((f"infer_{arm}_on_{seed}", run,
                          ["infer", "--model", str(models[arm]), "--images", str(data / "imagesTr"),
                           "--out", str(run), "--quiet"]))
    return {**seconds, **run_missing(steps)}


def paired(per_case: dict[str, list[dict]], arm: str = "scratch") -> dict:
    """Per case, ``arm`` minus pretrained in the mean Dice of the target organs: mean,
    standard error and how many cases ``arm`` wins."""
    def target(row: dict) -> float:
        return float(np.mean([row[f"dice_{o}"] for o in TARGET_ORGANS]))
    pretrained = {row["case"]: target(row) for row in per_case["pretrained"]}
    diffs = np.array([target(row) - pretrained[row["case"]] for row in per_case[arm]])
    return {"mean": float(diffs.mean()), "standard_error": float(diffs.std(ddof=1) / np.sqrt(len(diffs))),
            "better_cases": f"{int((diffs > 0).sum())}/{len(diffs)}"}


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
    parser.add_argument("--control-grid", action="store_true",
                        help=f"Also the {CONTROL} arm (after the decision; decides nothing).")
    parser.add_argument("--out", type=Path, default=Path("bench/results/medical_readme_init.json"))
    args = parser.parse_args()
    arms = (*ARMS, CONTROL) if args.control_grid else ARMS
    held_outs = {DECISION_SEED: args.work / f"heldout_{DECISION_SEED}", 900: args.held_out_900,
                 902: args.held_out_902}
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    # steps skipped now were timed by the call that ran them
    seconds = {**previous.get("seconds", {}), **build(args.work, args.readme, held_outs, arms)}
    results = {}
    for seed, data in held_outs.items():
        phase_of = case_phases(HELD_OUT["cases"], seed)
        per_case = {arm: evaluate(run_dir(args.work, args.readme, arm, seed), data)["per_case"]
                    for arm in arms}
        results[str(seed)] = {"data": str(data),
                              **{f"paired_{arm}_minus_pretrained": paired(per_case, arm) for arm in arms[1:]},
                              **{arm: {"dice": dice_table(rows, phase_of), "per_case": rows}
                                 for arm, rows in per_case.items()}}
    decision_set = results[str(DECISION_SEED)]
    d = (decision_set["scratch"]["dice"]["all"]["target_mean"]
         - decision_set["pretrained"]["dice"]["all"]["target_mean"])
    anatomy = json.loads(Path("bench/results/medical_anatomy.json").read_text())
    payload = {"train": TRAIN, "preset": "default",
               "pretrained_arm_seconds": anatomy["candidates"]["readme_mixed"]["seconds"],
               "epochs": {arm: trained_epochs(model) for arm, model in
                          models_of(args.work, args.readme).items() if arm in arms},
               "model_grid_mm": {arm: read_bundle_config(model / "segmenter")["config"]["preprocess"]["spacing"]
                                 for arm, model in models_of(args.work, args.readme).items() if arm in arms},
               "rule": {"decision_set": {**HELD_OUT, "seed": DECISION_SEED}, "level": LEVEL,
                        "d": "scratch minus pretrained, target_mean over all cases"},
               "d": d, "decision": decide(d), "seconds": seconds, "results": results}
    write_text_atomic(args.out, json.dumps(payload, indent=2))
    for seed, result in results.items():
        for arm in arms:
            print_dice(f"{arm}_on_{seed}", result[arm]["dice"])
        for arm in arms[1:]:
            print(seed, f"{arm} - pretrained, per case", result[f"paired_{arm}_minus_pretrained"])
    print(f"d = {d:+.4f}: {decide(d)}")


if __name__ == "__main__":
    main()
