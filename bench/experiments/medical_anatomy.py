"""Do phantoms with adult kidney anatomy teach a segmenter more? Old vs candidate simulator.

Not part of the benchmark. A candidate changes ``medical.phantom_anatomy`` (``narrow`` at
commit 8f51c5d and ``wide`` at e0d6e61 were not adopted; check out
``medical/phantom_anatomy.py`` and ``medical/phantom_canvas.py`` from one of them to rerun
it; ``mixed_half`` trains on half ``wide``'s phantoms, and the simulator in the tree now
draws that mix, ``ADULT_KIDNEY_SHARE``; ``readme_mixed`` is the README recipe on it,
pretraining included): kidneys tilted as adult
kidneys lie (upper pole medial and posterior), wider than deep, no fat plane to the liver
or spleen in a share of bodies, the liver's posterior segment lateral to the right kidney.
Two arms, the README recipe's ``train --labels 20`` from the **same** pretrained encoder
(or, without ``--pretrained``, the new arm pretrained on its own phantoms, as the README
does), everything else equal:

* old: a model trained on the old simulator's phantoms (``--old-model``, e.g. the README
  recipe's model);
* new: ``simulate --cases 32 --seed 0`` with the simulator in the tree, then
  ``train --labels 20 --pretrained PRETRAINED``.

With ``--mix-old DIR`` (the old simulator's ``simulate --cases 32 --seed 0``) the new arm
trains on half old, half candidate phantoms instead (:func:`mix_training_set`): does a
simulator that draws adult anatomy in half its bodies keep the old world and gain the new?

Both are scored on two held-out sets: the **frozen** one made by the old simulator
(``--old-held-out``: ``simulate --cases 18 --seed 900 --shape 128,128,96``, a world the
candidate never saw) and one of the candidate simulator (``--held-out-seed``, fixed before
its model was trained). Adopt only if the old held-out mean Dice of liver, spleen and
kidneys does not fall (noise about 0.01) and the new held-out is not worse. Also reports,
per held-out set, the kidney anatomy of the truth labels (tilt, width over depth, share
of the right kidney's surface next to liver).

Every step is skipped when its output is already in ``--work``. Writes the candidate's
entry (``--candidate``) of ``bench/results/medical_anatomy.json``, keeping the others.

Example::

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.medical_anatomy \\
        --work /tmp/anatomy --pretrained DIR/models/ct-pretrained \\
        --old-model DIR/models/labels-20 --old-held-out DIR/heldout \\
        --candidate wide --held-out-seed 902
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion

from bench.experiments import merge_results
from bench.experiments.medical_label_count import (HELD_OUT, TRAIN as LABEL_COUNT_TRAIN, case_phases,
                                                   dice_table, print_dice, run_missing)
from core.bundle import read_bundle_config
from core.io import atomic_path
from medical.evaluate import evaluate
from medical.io import find_cases, load_label_like, load_volume
from medical.phantom_anatomy import KIDNEY_LEFT, KIDNEY_RIGHT, LIVER

NEW_HELD_OUT = {"cases": HELD_OUT["cases"], "shape": HELD_OUT["shape"]}   # its seed: one per candidate
TRAIN = {**LABEL_COUNT_TRAIN, "labels": 20}


def kidney_anatomy(label: np.ndarray, spacing) -> dict:
    """Tilt of each kidney's long axis (degrees; upper pole medial / posterior), its width
    over depth, and the share of the right kidney's surface voxels next to liver.

    ``label`` is on an LPS grid (axis 0 to the patient's left, axis 1 to the back)."""
    row = {}
    for lab, side, name in ((KIDNEY_RIGHT, -1, "right"), (KIDNEY_LEFT, 1, "left")):
        mask = label == lab
        if mask.sum() < 50 or mask[..., 0].any() or mask[..., -1].any():
            continue  # cut by the slab: its axis is not the kidney's
        points = np.argwhere(mask) * np.asarray(spacing)
        points -= points.mean(0)
        variances, vectors = np.linalg.eigh(points.T @ points / len(points))
        axis = vectors[:, -1] if vectors[2, -1] > 0 else -vectors[:, -1]
        row[f"{name}_medial_deg"] = float(np.degrees(np.arctan2(-side * axis[0], axis[2])))
        row[f"{name}_posterior_deg"] = float(np.degrees(np.arctan2(axis[1], axis[2])))
        row[f"{name}_width_over_depth"] = float(np.sqrt(variances[1] / variances[0]))
    kidney = label == KIDNEY_RIGHT
    if kidney.any():
        surface = kidney & ~binary_erosion(kidney)
        row["right_surface_touching_liver"] = float(
            (surface & binary_dilation(label == LIVER)).sum() / surface.sum())
    return row


def anatomy_table(data_dir: Path) -> dict:
    """Mean of :func:`kidney_anatomy` over a held-out set's truth labels."""
    rows = []
    for case in find_cases(data_dir):
        image = load_volume(case.image)
        label = load_label_like(case.label, image, case.image).as_tensor().numpy()[0]
        spacing = np.abs(np.diag(np.asarray(image.affine))[:3])
        rows.append(kidney_anatomy(np.round(label).astype(int), spacing))
    keys = sorted({k for row in rows for k in row})
    table = {k: float(np.mean([row[k] for row in rows if k in row])) for k in keys}
    shares = [row["right_surface_touching_liver"] for row in rows if "right_surface_touching_liver" in row]
    table["right_touching_cases"] = f"{sum(s >= 0.1 for s in shares)}/{len(shares)}"
    return table


def trained_epochs(model: Path) -> int:
    """How many epochs the segmenter of ``model`` was trained for."""
    return read_bundle_config(model / "segmenter")["config"]["training"]["epochs"]


def mix_training_set(out: Path, old: Path, candidate: Path) -> None:
    """``out``: an MSD folder of links, half of the trained and half of the validation
    cases from ``old``, the other halves from ``candidate``. Both simulators start case i
    from the same seed, so each half takes other case numbers (other bodies)."""
    labels, cases = TRAIN["labels"], TRAIN["cases"]
    validation_half = labels + (cases - labels) // 2
    sources = ([(old, i) for i in range(labels // 2)] + [(candidate, i) for i in range(labels // 2, labels)]
               + [(old, i) for i in range(labels, validation_half)]
               + [(candidate, i) for i in range(validation_half, cases)])
    dataset = json.loads((old / "dataset.json").read_text())
    dataset["training"], dataset["numTraining"] = [], len(sources)
    dataset["simulator"] = {"mixed": [f"{root.name}/case_{i:03d}" for root, i in sources]}
    with atomic_path(out) as tmp:                    # a crash leaves no half-made out
        for n, (root, i) in enumerate(sources):
            for folder in ("imagesTr", "labelsTr"):
                (tmp / folder).mkdir(parents=True, exist_ok=True)
                (tmp / folder / f"case_{n:03d}.nii.gz").symlink_to(
                    (root / folder / f"case_{i:03d}.nii.gz").resolve())
            dataset["training"].append({"image": f"./imagesTr/case_{n:03d}.nii.gz",
                                        "label": f"./labelsTr/case_{n:03d}.nii.gz",
                                        "has_lesion": False, "lesion_organs": []})
        (tmp / "dataset.json").write_text(json.dumps(dataset, indent=2))


def is_mixed(data: Path) -> bool:
    """Whether ``data`` is a :func:`mix_training_set` folder."""
    return "mixed" in json.loads((data / "dataset.json").read_text()).get("simulator", {})


def build(work: Path, pretrained: Path | None, old_model: Path, old_held_out: Path,
          held_out_seed: int, mix_old: Path | None = None, new_held_out: Path | None = None) -> dict:
    """Simulate, pretrain (``pretrained`` None: on the new arm's own training set, as the
    README does), train and infer what ``work`` lacks; seconds per step run."""
    new_held_out, new_model = new_held_out or work / "heldout_new", work / "models/new"
    simulated = work / ("ct_candidate" if mix_old else "ct_new")
    seconds = run_missing([("simulate_train", simulated,
                            ["simulate", "--cases", str(TRAIN["cases"]), "--seed", str(TRAIN["seed"]),
                             "--out", str(simulated)])])
    if pretrained is None:
        pretrained = work / "models/ct-pretrained"
        seconds.update(run_missing([("pretrain_new", pretrained,
                                     ["pretrain", "--data", str(simulated), "--out", str(pretrained),
                                      "--quiet"])]))
    if mix_old and not (work / "ct_new").exists():
        mix_training_set(work / "ct_new", mix_old, simulated)
    if bool(mix_old) != is_mixed(work / "ct_new"):
        raise SystemExit(f"{work / 'ct_new'}: {'not ' if mix_old else ''}a half-and-half "
                         f"training set, {'with' if mix_old else 'without'} --mix-old: use another --work")
    steps = [("simulate_held_out", new_held_out,
              ["simulate", "--cases", str(NEW_HELD_OUT["cases"]), "--seed", str(held_out_seed),
               "--shape", NEW_HELD_OUT["shape"], "--out", str(new_held_out)]),
             ("train_new", new_model,
              ["train", "--data", str(work / "ct_new"), "--labels", str(TRAIN["labels"]),
               "--epochs", str(trained_epochs(old_model)),   # both arms equal
               "--pretrained", str(pretrained), "--out", str(new_model), "--quiet"])]
    for arm, model in (("old", old_model), ("new", new_model)):
        for held_out, data in (("heldout_old", old_held_out), ("heldout_new", new_held_out)):
            run = work / f"runs/{arm}_on_{held_out}"
            steps.append((f"infer_{arm}_on_{held_out}", run,
                          ["infer", "--model", str(model), "--images", str(data / "imagesTr"),
                           "--out", str(run), "--quiet"]))
    return {**seconds, **run_missing(steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="Data, models and runs.")
    parser.add_argument("--pretrained", type=Path, default=None,
                        help="Shared encoder (default: pretrain the new arm on its own phantoms).")
    parser.add_argument("--old-model", type=Path, required=True,
                        help="train --labels 20 on the old simulator's phantoms.")
    parser.add_argument("--old-held-out", type=Path, required=True,
                        help="The frozen held-out set the old simulator made (seed 900).")
    parser.add_argument("--candidate", required=True,
                        help="Name of the simulator change measured (the JSON key).")
    parser.add_argument("--held-out-seed", type=int, required=True,
                        help="Seed of the new simulator's held-out set, fixed before training.")
    parser.add_argument("--mix-old", type=Path, default=None,
                        help="The old simulator's training phantoms: train the new arm on half of each.")
    parser.add_argument("--new-held-out", type=Path, default=None,
                        help="An existing held-out set of the candidate world (made with "
                             "--held-out-seed) instead of simulating one.")
    parser.add_argument("--out", type=Path, default=Path("bench/results/medical_anatomy.json"))
    args = parser.parse_args()
    seconds = build(args.work, args.pretrained, args.old_model, args.old_held_out,
                    args.held_out_seed, args.mix_old, args.new_held_out)
    held_outs = {"heldout_old": (args.old_held_out, HELD_OUT["seed"]),
                 "heldout_new": (args.new_held_out or args.work / "heldout_new", args.held_out_seed)}
    results, anatomy = {}, {}
    for held_out, (data, seed) in held_outs.items():
        phase_of = case_phases(HELD_OUT["cases"], seed)
        anatomy[held_out] = anatomy_table(data)
        for arm in ("old", "new"):
            report = evaluate(args.work / f"runs/{arm}_on_{held_out}", data)
            results[f"{arm}_on_{held_out}"] = {"dice": dice_table(report["per_case"], phase_of),
                                              "per_case": report["per_case"]}
    candidate = {
        "held_out_new": {**NEW_HELD_OUT, "seed": args.held_out_seed}, "seconds": seconds,
        "pretrained": ("on the new arm's own training set" if args.pretrained is None
                       else "shared encoder, old phantoms"),
        "training_set": ("half old, half candidate phantoms" if is_mixed(args.work / "ct_new")
                         else "candidate phantoms"),
        "epochs": {arm: trained_epochs(model) for arm, model in
                   (("old", args.old_model), ("new", args.work / "models/new"))},
        "anatomy_of_truth": anatomy, "results": results}
    # one write: the header is the same for every candidate, so a new file starts from it
    header = {"train": TRAIN, "preset": "default",
              "held_out_old": {**HELD_OUT, "simulator": "before the kidney anatomy change"}}
    merge_results(args.out, {args.candidate: candidate}, under=("candidates",),
                  base={"candidates": {}, **header}, indent=2)
    for name, result in results.items():
        print_dice(name, result["dice"])
    for held_out, table in anatomy.items():
        print(held_out, {k: round(v, 3) if isinstance(v, float) else v for k, v in table.items()})


if __name__ == "__main__":
    main()
