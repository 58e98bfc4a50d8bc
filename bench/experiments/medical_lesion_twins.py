"""Do adult kidneys in the phantoms cost liver-lesion detection, or are the tiny tests fragile?

Not part of the benchmark. The tests' own builder (``tests/medical/conftest.py``: 6
healthy phantoms, the ``tiny`` preset's pretraining and a 4-label segmenter), run for
several seeds (the phantoms' and the training's), in two worlds drawn with the same seeds:

* ``old``: ``ADULT_KIDNEY_SHARE = 0`` (every body with upright kidneys in a fat shell, as
  the simulator drew them before adult kidneys came);
* ``mixed``: the simulator's share (half the bodies with adult kidneys).

Each model scores ``--twins`` fresh healthy phantoms and their twins with one liver lesion
(``medical.phantom_twins``: a 3 x 3 x 2-voxel block, ``--drop-hu`` below the parenchyma),
both placements (the middle of the eroded liver, as the tests placed it, and its deepest
voxel), with plain scoring and with organ scoring (calibrated with the segmenter on the
six healthy phantoms, as ``test_organ_scoring_finds_a_liver_lesion`` does). Per model:
the share of twins whose case score rises, the ratio of the mean sick to mean healthy case
score, and the map inside the lesion over the rest of the liver. The twins' keys differ
from the tests' (which stay unseen by this experiment), and old bodies are the same
phantoms in both worlds, so the comparison is paired.

Example::

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.medical_lesion_twins \\
        --work /tmp/twins --seeds 0,1,2,3,4 --twins 12
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.io import write_text_atomic
from core.metrics import auroc
from core.runtime import configure_threads
from medical import phantom_anatomy
from medical.anomaly import AnomalyScorer
from medical.demo import SIZES
from medical.io import find_cases, load_volume, save_nifti
from medical.phantom import simulate_case, simulate_dataset
from medical.phantom_anatomy import LIVER
from medical.phantom_twins import place_lesion
from medical.presets import preset
from medical.pretrain import pretrain
from medical.reconstruction import body_mask
from medical.segment import train_segmenter
from medical.transforms import Preprocessor

TINY = (32, 32, 16)         # the tests' phantoms (~12 mm voxels)
# small: the demo's training recipe (medical.demo SIZES["small"]: 16 healthy phantoms at
# 64 x 64 x 32, ~6 mm voxels, pretrained 12 epochs, 6 labelled for 25 epochs, the other
# 10 calibrate organ scoring); twins on the same grid, where the block is ~2 x 2 x 1.5 cm
_DEMO = SIZES["small"]
SMALL = {"shape": _DEMO.train_shape, "cases": _DEMO.train_cases, "labels": _DEMO.labelled_cases,
         "pretrain_epochs": _DEMO.pretrain_epochs, "segment_epochs": _DEMO.segment_epochs}
WORLDS = {"old": 0.0, "mixed": phantom_anatomy.ADULT_KIDNEY_SHARE}


def tiny_models(root: Path, seed: int, share: float):
    """The tests' fixtures for ``seed`` in the world of adult-kidney ``share``: (plain
    scorer, organ scorer, segmenter)."""
    train = simulate_dataset(root / "train", 6, lesions=False, seed=seed, shape=TINY,
                             adult_kidney_share=share)
    pretrain_config, segment_config = preset("tiny", seed)
    scorer = pretrain(train, root / "pretrained", pretrain_config)
    segmenter = train_segmenter(train, root / "ct", root / "pretrained", 4, segment_config)
    organ_scorer = AnomalyScorer.load(root / "pretrained").calibrate(find_cases(train), segmenter=segmenter)
    return scorer, organ_scorer, segmenter


def small_models(root: Path, seed: int, share: float):
    """The small demo's models for ``seed`` in the world of adult-kidney ``share``: (plain
    scorer, organ scorer as ``train`` calibrates it on the unlabelled healthy phantoms,
    segmenter)."""
    train = simulate_dataset(root / "train", SMALL["cases"], lesions=False, seed=seed,
                             shape=SMALL["shape"], adult_kidney_share=share)
    pretrain_config, segment_config = preset("small", seed)
    scorer = pretrain(train, root / "pretrained", replace(
        pretrain_config, max_epochs=SMALL["pretrain_epochs"], patience=SMALL["pretrain_epochs"]))
    segmenter = train_segmenter(train, root / "ct", root / "pretrained", SMALL["labels"], replace(
        segment_config, max_epochs=SMALL["segment_epochs"], patience=SMALL["segment_epochs"]))
    return scorer, AnomalyScorer.load(root / "ct" / "anomaly"), segmenter


BUILDERS = {"tiny": (tiny_models, TINY), "small": (small_models, SMALL["shape"])}


def score_image(scorer, segmenter, case, image, path: Path) -> tuple[float, np.ndarray]:
    """(case score, anomaly map on the case's grid) of ``image`` (the case's geometry);
    organ scoring when ``segmenter`` is given."""
    pre = Preprocessor(scorer.preprocess)
    grid = pre(load_volume(save_nifti(image, case.affine, path)))["image"]
    labels = None if segmenter is None else segmenter.segment(grid.as_tensor())[1]  # as infer does
    error = scorer.error_map(grid.as_tensor(), labels)
    back = pre.invert(error[None], grid)[0]
    return scorer.case_score(error, body_mask(grid.as_tensor().numpy()[0])), back


def twin_rows(root: Path, config: str, seed: int, n_twins: int, drop_hu: float,
              share: float) -> list[dict]:
    """Every twin of one world (adult-kidney ``share``), configuration and seed, scored
    both ways, both placements; each phantom is drawn once and its healthy image scored
    once per scoring."""
    build, shape = BUILDERS[config]
    scorer, organ_scorer, segmenter = build(root, seed, share)
    scorings = (("plain", scorer, None), ("organs", organ_scorer, segmenter))
    rows, i, kept = [], -1, 0
    while kept < n_twins:
        i += 1
        case = simulate_case(np.random.default_rng([600, seed, i]), shape, adult_kidney_share=share)
        try:
            twins = {p: place_lesion(case, drop_hu, deepest=p == "deepest") for p in ("middle", "deepest")}
        except ValueError:   # the liver is out of this slab's view: no lesion to place
            continue
        kept += 1
        adult = phantom_anatomy.adult_kidneys(np.random.default_rng([600, seed, i]), share)
        healthy = {name: score_image(model, seg, case, case.image, root / "healthy.nii.gz")
                   for name, model, seg in scorings}
        for placement, (sick, lesion) in twins.items():
            rest = (case.label == LIVER) & ~lesion
            for name, model, seg in scorings:
                ill_score, ill_map = score_image(model, seg, case, sick, root / "sick.nii.gz")
                healthy_score, healthy_map = healthy[name]
                rows.append({"seed": seed, "twin": i, "adult_body": adult,
                             "placement": placement, "scoring": name,
                             "lesion_in_liver": float((case.label[lesion] == LIVER).mean()),
                             "healthy": healthy_score, "sick": ill_score,
                             "inside": float(ill_map[lesion].mean()),
                             "healthy_inside": float(healthy_map[lesion].mean()),
                             "outside": float(ill_map[rest].mean())})
    return rows


def summary(rows: list[dict]) -> dict:
    """Per model (seed), then pooled: share of twins whose score rose, mean sick / mean
    healthy case score, mean lesion map / mean rest-of-liver map."""
    per_seed = {}
    for seed in sorted({r["seed"] for r in rows}):
        mine = [r for r in rows if r["seed"] == seed]
        per_seed[str(seed)] = {
            "rose": float(np.mean([r["sick"] > r["healthy"] for r in mine])),
            "score_ratio": float(np.mean([r["sick"] for r in mine]) / np.mean([r["healthy"] for r in mine])),
            "inside_over_outside": float(np.mean([r["inside"] for r in mine]) / np.mean([r["outside"] for r in mine]))}
    pooled = {k: float(np.mean([v[k] for v in per_seed.values()])) for k in ("rose", "score_ratio", "inside_over_outside")}
    pooled["case_auroc"] = auroc([0] * len(rows) + [1] * len(rows),
                                 [r["healthy"] for r in rows] + [r["sick"] for r in rows])
    pooled["worst_seed"] = {k: float(min(v[k] for v in per_seed.values()))
                            for k in ("rose", "score_ratio", "inside_over_outside")}
    return {"pooled": pooled, "per_seed": per_seed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--config", choices=sorted(BUILDERS), default="tiny")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--twins", type=int, default=12)
    parser.add_argument("--drop-hu", type=float, default=50.0)
    parser.add_argument("--out", type=Path, default=None,
                        help="default: bench/results/medical_lesion_twins_CONFIG.json")
    args = parser.parse_args()
    args.out = args.out or Path(f"bench/results/medical_lesion_twins_{args.config}.json")
    configure_threads()
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    rows = []
    for world, share in WORLDS.items():
        for seed in seeds:
            for row in twin_rows(args.work / world / str(seed), args.config, seed, args.twins,
                                 args.drop_hu, share):
                rows.append({"world": world, **row})
            print(world, seed, f"{time.perf_counter() - started:.0f} s", flush=True)
    table = {}
    for world in WORLDS:
        for scoring in ("plain", "organs"):
            for placement in ("middle", "deepest"):
                table[f"{world}/{scoring}/{placement}"] = summary(
                    [r for r in rows if (r["world"], r["scoring"], r["placement"]) == (world, scoring, placement)])
    payload = {"config": args.config, "seeds": seeds, "twins": args.twins, "drop_hu": args.drop_hu,
               "shape": list(BUILDERS[args.config][1]),
               "seconds": round(time.perf_counter() - started), "summary": table, "rows": rows}
    write_text_atomic(args.out, json.dumps(payload, indent=2))
    for key, value in table.items():
        print(key, {k: (round(v, 3) if isinstance(v, float) else v) for k, v in value["pooled"].items()})


if __name__ == "__main__":
    main()
