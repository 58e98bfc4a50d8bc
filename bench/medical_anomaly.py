"""The medical benchmark's anomaly section: lesion phantoms scored by the pretrained scorer.

MedIAnomaly's metrics (case AUROC and AP, voxel AP inside the body, best Dice of the
thresholded map), voxel AP per lesion organ, kind and size; organ scoring with the
benchmark's segmenter beside plain scoring, and named organ-scoring variants compared side
by side (``python -m bench.medical --anomaly-only --anomaly-set SET``). The command line is
in :mod:`bench.medical`, the phantom sets and settings in :mod:`bench.medical_efficiency`.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.medical_efficiency import (organ_dice, parse_shape, read_training, reusable_dataset,
                                      segment_config)


def anomaly_segmenter(args, data: Path, workdir: Path) -> tuple[Path, dict]:
    """The segmenter the anomaly section scores organs with: fine-tuned from the pretrained
    bundle on all labelled cases for ``args.anomaly_seg_epochs`` epochs (the label-efficiency
    runs stop at ``--finetune-epochs``, short of convergence; organ scoring inherits every
    segmentation error). ``0``: reuse the label-efficiency run's ``segmenter_best``.
    Kept in ``workdir/segmenter_anomaly`` and reused when its epochs match."""
    from core.bundle import read_bundle_config
    from core.errors import BundleError
    from medical.io import find_cases
    from medical.segment import train_segmenter
    from medical.training_cases import labelled_cases

    if args.anomaly_seg_epochs <= 0:
        return workdir / "segmenter_best", {"epochs": None, "source": "segmenter_best"}
    path = workdir / "segmenter_anomaly"
    try:
        if read_bundle_config(path)["config"]["training"]["max_epochs"] == args.anomaly_seg_epochs:
            return path, json.loads((workdir / "segmenter_anomaly.json").read_text())
    except (BundleError, KeyError, OSError, ValueError):  # missing or other settings: train it
        pass
    seg_config = segment_config(args, args.anomaly_seg_epochs)
    started = time.perf_counter()
    segmenter = train_segmenter(data / "labelled", None, workdir / "pretrained", config=seg_config,
                                cases=labelled_cases(data / "labelled"))
    seconds = time.perf_counter() - started
    dice = organ_dice(segmenter, find_cases(data / "seg_test"))
    segmenter.save(path)  # its training record holds max_epochs, checked above
    record = {"epochs": args.anomaly_seg_epochs, "samples_per_epoch": args.samples,
              "labelled_cases": len(labelled_cases(data / "labelled")), "pretrained": True,
              "mean_dice": float(np.mean(list(dice.values()))), "dice": dice,
              "seconds": round(seconds, 1)}
    (workdir / "segmenter_anomaly.json").write_text(json.dumps(record))
    return path, record


def anomaly_detection(data: Path, workdir: Path, overrides: dict | None = None,
                      organs: bool = True, segmenter_dir: Path | None = None,
                      test_set: str = "anomaly_test", tag: str = "") -> dict:
    """Infer + evaluate on the lesion phantoms ``data / test_set``.

    ``organs``: calibrate the pretrained scorer with the segmenter ``segmenter_dir``
    (default: the label-efficiency run's ``segmenter_best``; ``medical.organ_scoring``:
    organ parenchyma only, organ-aware context prediction); otherwise the scorer as
    pretrained (no segmentation: plain scoring).
    ``overrides`` change the scoring settings (``AnomalyConfig`` fields) before calibrating.
    ``tag`` keeps the model and run folders of side-by-side variants apart.
    """
    import shutil

    from medical.anomaly import AnomalyScorer
    from medical.evaluate import evaluate
    from medical.infer import infer
    from medical.io import find_cases
    from medical.segment import Segmenter

    name = "organs" if organs else "plain"
    model_dir = workdir / f"model_{name}{tag}"
    model_dir.mkdir(exist_ok=True)
    segmenter_dir = Path(segmenter_dir or workdir / "segmenter_best")
    shutil.copytree(segmenter_dir, model_dir / "segmenter", dirs_exist_ok=True)
    shutil.rmtree(model_dir / "anomaly", ignore_errors=True)
    started = time.perf_counter()
    scorer = AnomalyScorer.load(workdir / "pretrained")
    names = set(read_training(workdir / "pretrained")["calibration_cases"])
    cal_cases = [c for c in find_cases(data / "unlabelled") if c.name in names]
    if overrides:
        scorer.config = replace(scorer.config, **overrides)
    if organs:
        scorer.calibrate(cal_cases, segmenter=Segmenter.load(segmenter_dir))
    elif overrides:
        scorer.calibrate(cal_cases)
    scorer.save(model_dir / "anomaly")
    calibrate_seconds = time.perf_counter() - started
    started = time.perf_counter()
    run = infer(model_dir, data / test_set, workdir / f"run_{name}{tag}", shap_evals=100)
    seconds = time.perf_counter() - started
    report = evaluate(run, data / test_set)
    keys = ("case_auroc", "case_ap", "voxel_ap", "best_dice", "mean_dice")
    out = {"scoring": name, **{k: report.get(k) for k in keys}}
    out["n_cases"] = report["n_cases"]
    out["voxel_ap_by_group"] = voxel_ap_by_group(run, data / test_set)
    out["calibrate_seconds"] = round(calibrate_seconds, 1)
    out["infer_seconds_per_case"] = round(seconds / max(1, report["n_cases"]), 2)
    return out


def voxel_ap_by_group(run: Path, data: Path) -> dict:
    """Voxel AP per lesion organ, kind (hypo/hyper-dense) and size (equivalent radius):
    positives are that group's lesion voxels, negatives every healthy body voxel."""
    from scipy.ndimage import label as components

    from core.metrics import auprc
    from medical.evaluate import BODY_HU
    from medical.io import find_cases, load_label_like, load_volume
    from medical.phantom import LABELS

    scores, negatives, groups = [], [], []
    for case in find_cases(data):
        image = load_volume(case.image)
        hu = image.as_tensor().numpy()[0]
        body = hu > BODY_HU
        error = load_label_like(run / f"{case.name}_anomaly.nii.gz", image, case.image).as_tensor().numpy()[0]
        lesion = load_label_like(case.lesion, image, case.image).as_tensor().numpy()[0] > 0
        label = load_label_like(case.label, image, case.image).as_tensor().numpy()[0].astype(int)
        voxel_ml = abs(np.linalg.det(np.asarray(image.affine)[:3, :3])) / 1000.0
        scores.append(error[body])
        negatives.append(~lesion[body])
        case_groups = {}
        parts, n = components(lesion)
        for j in range(1, n + 1):
            part = parts == j
            k = int(np.bincount(label[part]).argmax())
            organ = LABELS.get(k, "other").split("_")[0]
            tissue = np.median(hu[(label == k) & ~lesion])
            kind = "hypodense" if hu[part].mean() < tissue else "hyperdense"
            radius = (3 * part.sum() * voxel_ml * 1000 / (4 * np.pi)) ** (1 / 3)
            size = "radius < 8 mm" if radius < 8 else ("radius 8-12 mm" if radius < 12 else "radius >= 12 mm")
            for key in (organ, kind, size):
                case_groups[key] = case_groups.get(key, np.zeros(lesion.shape, bool)) | part
        groups.append({key: m[body] for key, m in case_groups.items()})
    score, negative = np.concatenate(scores), np.concatenate(negatives)
    out = {}
    for key in sorted({k for g in groups for k in g}):
        positive = np.concatenate([g.get(key, np.zeros(len(s), bool)) for g, s in zip(groups, scores)])
        keep = positive | negative
        out[key] = {"voxel_ap": auprc(positive[keep], score[keep]), "lesion_voxels": int(positive.sum())}
    return out


# Organ-scoring variants compared side by side (``AnomalyConfig`` overrides): the residual
# of the organ-context reconstruction standardised by the case's own organ statistics,
# with each organ's map divided by its healthy tail or not; the same standardised by the
# healthy calibration cases' statistics (the default, tuned on uniform phantoms); and the no-network baseline: intensity z-score against the case's own organ
# median, with and without the tails.
ANOMALY_VARIANTS = {
    "case_z_tails": {"organ_prediction": "context", "organ_reference": "case",
                     "organ_tail_reference": True},
    "case_z": {"organ_prediction": "context", "organ_reference": "case",
               "organ_tail_reference": False},
    "healthy_z": {"organ_prediction": "context", "organ_reference": "healthy",
                  "organ_tail_reference": False},
    "median_baseline_tails": {"organ_prediction": "median", "organ_reference": "case",
                              "organ_tail_reference": True},
    "median_baseline": {"organ_prediction": "median", "organ_reference": "case",
                        "organ_tail_reference": False},
    # one voxel of erosion for every organ (the liver's 2 removes much of its lesions)
    "case_z_erosion1": {"organ_prediction": "context", "organ_reference": "case",
                        "organ_tail_reference": False, "organ_erosion": (1, 1, 1, 1)},
    "median_baseline_erosion1": {"organ_prediction": "median", "organ_reference": "case",
                                 "organ_tail_reference": False, "organ_erosion": (1, 1, 1, 1)},
}
# test sets: the one scoring settings were chosen on, and one frozen before (seed 900)
ANOMALY_SETS = {"anomaly_test": 400, "anomaly_heldout": 900}


def anomaly_compare(args, keep: Path, test_set: str, variants: dict[str, dict]) -> dict:
    """Organ scoring ``variants`` (name -> ``AnomalyConfig`` overrides, e.g. of
    :data:`ANOMALY_VARIANTS`) on ``test_set`` (simulated if missing), same segmenter."""
    from medical.phantom import simulate_dataset

    seed = args.seed + ANOMALY_SETS[test_set]
    cases = keep / "data" / test_set
    if not reusable_dataset(cases, args.anomaly_test, parse_shape(args.shape), seed):
        simulate_dataset(cases, args.anomaly_test, lesions=True, seed=seed, shape=parse_shape(args.shape))
    seg, _ = anomaly_segmenter(args, keep / "data", keep)
    return {name: anomaly_detection(keep / "data", keep, overrides, segmenter_dir=seg,
                                    test_set=test_set, tag=f"_{name}_{test_set}")
            for name, overrides in variants.items()}
