"""How long the README's phantom-only recipe should fine-tune: ``train --epochs`` 30, 60, 90.

Not part of the benchmark. The README's commands (default preset) on the label-count
experiment's work folder (:mod:`bench.experiments.medical_label_count`: ``ct/`` of seed 0,
``models/ct-pretrained``, the frozen ``heldout/`` of seed 900), one ``train --labels 20``
per epoch count, everything else equal. The choice is made on the **validation** cases --
the 12 labelled phantoms beyond ``--labels`` that the user's own data would hold, which
``train`` already uses to decide post-processing -- by a rule fixed before any was scored:
the fewest epochs whose mean Dice of liver, spleen and kidneys is within 0.005 of the best.
The frozen held-out set is scored beside it and decides nothing.

Every step is skipped when its output is already in ``--work``. Writes
``bench/results/medical_epochs.json``.

Example::

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.medical_epochs \\
        --work /tmp/label-count --epochs 30,60,90
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.experiments.medical_label_count import (HELD_OUT, TRAIN, case_phases, dice_table,
                                                   held_out_phases, print_dice, run_missing)
from core.io import write_text_atomic
from medical.evaluate import evaluate
from medical.training_cases import labelled_cases

LABELS = 20                  # the README's --labels; cases LABELS.. are the validation cases
CHOICE_MARGIN = 0.005        # within this of the best validation Dice counts as as good


def validation_images(work: Path) -> Path:
    """A folder of links to the images of the labelled cases ``train`` did not train on."""
    folder = work / "validation_images"
    folder.mkdir(exist_ok=True)
    for case in labelled_cases(work / "ct")[LABELS:]:
        link = folder / Path(case.image).name
        if not link.exists():
            link.symlink_to(Path(case.image).resolve())
    return folder


def build(work: Path, epoch_counts: list[int]) -> dict:
    """Train and infer what ``work`` lacks; seconds per step run."""
    steps, validation = [], validation_images(work)
    for epochs in epoch_counts:
        model = work / f"models/labels-{LABELS}-epochs-{epochs}"
        steps.append((f"train_epochs_{epochs}", model,
                      ["train", "--data", str(work / "ct"), "--labels", str(LABELS),
                       "--epochs", str(epochs), "--pretrained", str(work / "models/ct-pretrained"),
                       "--out", str(model), "--quiet"]))
        for name, images in (("validation", validation),
                             ("heldout", work / "heldout/imagesTr")):
            run = work / f"runs/epochs-{epochs}-{name}"
            steps.append((f"infer_epochs_{epochs}_{name}", run,
                          ["infer", "--model", str(model), "--images", str(images),
                           "--out", str(run), "--quiet"]))
    return run_missing(steps)


def choose(results: dict) -> int:
    """The fewest epochs within ``CHOICE_MARGIN`` of the best validation mean Dice."""
    means = {e: r["validation"]["all"]["target_mean"] for e, r in results.items()}
    best = max(means.values())
    return min(e for e, m in means.items() if m >= best - CHOICE_MARGIN)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True,
                        help="The label-count experiment's folder (ct/, heldout/, models/ct-pretrained).")
    parser.add_argument("--epochs", default="30,60,90", help="Epoch counts to compare.")
    parser.add_argument("--out", type=Path, default=Path("bench/results/medical_epochs.json"))
    args = parser.parse_args()
    epoch_counts = [int(e) for e in args.epochs.split(",")]
    seconds = build(args.work, epoch_counts)
    sets = {"validation": (args.work / "ct", case_phases(TRAIN["cases"], TRAIN["seed"])),
            "heldout": (args.work / "heldout", held_out_phases())}
    results = {}
    for epochs in epoch_counts:
        results[epochs] = {}
        for name, (data, phase_of) in sets.items():
            report = evaluate(args.work / f"runs/epochs-{epochs}-{name}", data)
            results[epochs][name] = dice_table(report["per_case"], phase_of)
    chosen = choose(results)
    payload = {"train": {**TRAIN, "labels": LABELS}, "held_out": HELD_OUT, "preset": "default",
               "rule": f"fewest epochs within {CHOICE_MARGIN} of the best validation mean Dice",
               "chosen_epochs": chosen, "seconds": seconds,
               "results": {str(e): r for e, r in results.items()}}
    write_text_atomic(args.out, json.dumps(payload, indent=2))
    for epochs, result in results.items():
        for name, table in result.items():
            print_dice(f"epochs={epochs} {name}", table)
    print("chosen:", chosen, "epochs")


if __name__ == "__main__":
    main()
