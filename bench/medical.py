"""Medical benchmark: label efficiency, anomaly detection on lesion phantoms, speed.

Everything runs in one process (speed in fresh subprocesses for peak RSS), on CPU, on
phantoms simulated here, and writes ``bench/results/medical.json``.

1. Label efficiency: organ Dice on test phantoms after fine-tuning with 2, 4 and 8
   labelled cases, from scratch vs from masked-volume pretraining on the unlabelled cases.
   Same epochs, crops and seeds for both arms. Target: pretraining closes at least half of
   the Dice gap between the smallest and the largest budget (from scratch), and is never
   worse at the largest. Measured on ``seg_test`` (the set settings were chosen on) and on
   ``seg_heldout`` (seed 900, frozen before any tuning, never looked at while tuning).
   With ``--real-ct FILE``: the 8-label pretrained segmenter's organ volumes on a real CT
   (no labels: a qualitative check; its segmentation is kept for rendering).
2. Anomaly detection (MedIAnomaly's metrics): case AUROC and AP, voxel AP (voxels inside
   the body), best Dice of the thresholded map, on phantoms with and without lesions;
   voxel AP also per lesion organ, kind and size. The scorer calibrated with the
   benchmark's segmenter (organ scoring, ``medical.organ_scoring``) beside the plain
   scoring without segmentation, same run.
3. Speed: MONAI sliding-window inference of the segmenter over a 256x256x128 model-grid
   volume vs a plain forward pass of the same UNet over the same windows (same batch
   size, no blending); wall time and peak RSS, each in a fresh process.

Usage:
    UNMASK_NUM_THREADS=1 python -m bench.medical --keep DIR          # full run
    python -m bench.medical --speed-only                             # redo the speed section
    python -m bench.medical --anomaly-only --keep DIR                # redo the anomaly section
    python -m bench.medical --anomaly-only --keep DIR --predicted-sd # add a scoring variant
    python -m bench.medical --anomaly-only --keep DIR --anomaly-set anomaly_heldout  # variants
    python -m bench.medical --unlabelled 8 --pretrain-epochs 2 ...    # shrink while iterating
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _shape(text: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in text.split(","))


def _reusable(root: Path, n_cases: int, shape, seed: int) -> bool:
    """A dataset simulated earlier (``--keep``) with the same settings can be reused."""
    try:
        meta = json.loads((root / "dataset.json").read_text())
    except (OSError, ValueError):
        return False
    from medical.phantom import PHANTOM_VERSION

    sim = meta.get("simulator", {})
    return (meta.get("numTraining") == n_cases and sim.get("seed") == seed
            and tuple(sim.get("shape", ())) == tuple(shape)
            and sim.get("version", 1) == PHANTOM_VERSION)


def read_training(bundle: Path) -> dict:
    from core.bundle import read_bundle_config

    return read_bundle_config(bundle)["config"]["training"]


def scorer_training_cases(bundle: Path) -> list[str]:
    return read_training(bundle)["cases"]


def organ_dice(segmenter, cases) -> dict[str, float]:
    """Mean Dice per organ of ``segmenter`` over ``cases`` (input geometry)."""
    from core.metrics import dice
    from medical.io import load_label_like, load_volume
    from medical.transforms import Preprocessor

    pre = Preprocessor(segmenter.preprocess)
    scores = {name: [] for name in segmenter.labels.values()}
    for case in cases:
        image = load_volume(case.image)
        grid = pre(image)["image"]
        labels = pre.invert(segmenter.predict_proba(grid.as_tensor()), grid).argmax(0)
        truth = load_label_like(case.label, image, case.image).as_tensor().numpy()[0]
        for k, name in segmenter.labels.items():
            scores[name].append(dice(truth == k, labels == k))
    return {name: float(np.mean(v)) for name, v in scores.items()}


def scored_set(segmenter, folder: Path, prefix: str = "") -> dict:
    """``{prefix + "mean_dice": ..., prefix + "dice": {organ: ...}}`` on the cases of ``folder``."""
    from medical.io import find_cases

    per_organ = organ_dice(segmenter, find_cases(folder))
    return {prefix + "mean_dice": float(np.mean(list(per_organ.values()))), prefix + "dice": per_organ}


def segment_config(args, epochs: int):
    """The preset's ``SegmentConfig`` fine-tuning ``epochs`` epochs of ``args.samples`` crops."""
    from medical.presets import preset

    _, config = preset(args.preset, args.seed)
    return replace(config, max_epochs=epochs, patience=epochs, samples_per_epoch=args.samples)


def label_subsets(n_cases: int, k: int, repeats: int) -> list[list[int]]:
    """Up to ``repeats`` distinct subsets of ``k`` of the ``n_cases`` labelled cases (rotations)."""
    out = []
    for r in range(repeats):
        subset = sorted((r * k + i) % n_cases for i in range(k))
        if subset not in out:
            out.append(subset)
    return out


def _given(config, **options):
    """``config`` with the options given on the command line (those not ``None``)."""
    return replace(config, **{k: v for k, v in options.items() if v is not None})


def pretext_config(args, anomaly):
    """The preset's ``AnomalyConfig`` with the pretraining options given on the command line."""
    return _given(anomaly, pretext=args.pretext, mask_ratio=args.mask_ratio,
                  mask_block=args.mask_block and _shape(args.mask_block))


def pretraining_config(args):
    """The preset's ``PretrainConfig`` with the command line's budget and pretext options."""
    from medical.presets import preset

    config, _ = preset(args.preset, args.seed)
    config = replace(config, max_epochs=args.pretrain_epochs, patience=args.pretrain_epochs,
                     samples_per_epoch=args.pretrain_samples)
    return replace(config, anomaly=pretext_config(args, config.anomaly))


def simulate_sets(args, data: Path) -> None:
    """The benchmark's phantom sets under ``data`` (kept ones with the same settings reused)."""
    from medical.phantom import simulate_dataset

    shape = _shape(args.shape)
    for name, n, lesions, seed in (("unlabelled", args.unlabelled, False, 100),
                                   ("labelled", args.labelled, False, 200),
                                   ("seg_test", args.seg_test, False, 300),
                                   ("seg_heldout", args.seg_test, False, 900),
                                   ("anomaly_test", args.anomaly_test, True, 400)):
        if name == "anomaly_test" and args.skip_anomaly:
            continue
        if not _reusable(data / name, n, shape, args.seed + seed):
            simulate_dataset(data / name, n, lesions=lesions, seed=args.seed + seed, shape=shape)


def efficiency_config(args):
    """The fine-tuning settings of the label-efficiency arms."""
    return _given(segment_config(args, args.finetune_epochs),
                  pretrained_lr_scale=args.pretrained_lr_scale,
                  encoder_only=None if args.transfer is None else args.transfer == "encoder",
                  organ_jitter=args.organ_jitter)


SEG_SETS = (("", "seg_test"), ("heldout_", "seg_heldout"))  # (result key prefix, folder)


def efficiency_arm(args, data: Path, pretrained, subset: list[int], seed: int,
                   save_to: Path | None = None, sets=SEG_SETS) -> dict:
    """One arm of one label subset: fine-tune on the labelled cases ``subset`` (scratch if
    ``pretrained`` is ``None``), then organ Dice on ``sets`` (default: the test and held-out
    sets; an experiment may score the frozen held-out set only after deciding)."""
    from core.runtime import configure_threads
    from medical.segment import labelled_cases, train_segmenter

    configure_threads()  # also in a --jobs worker process
    pool = labelled_cases(data / "labelled")
    started = time.perf_counter()
    segmenter = train_segmenter(data / "labelled", None, pretrained,
                                config=replace(efficiency_config(args), seed=seed),
                                cases=[pool[i] for i in subset],
                                # organ_dice scores the network's own labels: nothing to
                                # decide (the arm saved for the anomaly section trains on
                                # the whole pool, so it had no validation cases either)
                                validation_cases=[])
    out = {"epochs": len(segmenter.history_.train_loss)}
    for prefix, folder in sets:
        out.update(scored_set(segmenter, data / folder, prefix))
    out["seconds"] = round(time.perf_counter() - started, 1)
    if save_to is not None:
        segmenter.save(save_to)
    return out


def label_efficiency(args, data: Path, scorer_path: Path, budgets) -> dict:
    """Organ Dice from scratch vs pretrained per label budget, averaged over label subsets.

    With 2 labelled cases the Dice of one run depends on *which* two as much as on the
    initialisation (3-8 points between subsets here), so each budget is trained on up to
    ``args.repeats`` distinct subsets of the labelled pool (each with its own seed), both
    arms on the same subsets; the reported Dice and gain are means over the subsets.
    ``args.jobs`` > 1 trains the arms in that many processes (same settings and seeds).
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from medical.segment import labelled_cases

    names = [c.name for c in labelled_cases(data / "labelled")]
    jobs = {}  # (k, r, arm) -> arguments of efficiency_arm
    for k in budgets:
        for r, subset in enumerate(label_subsets(len(names), k, args.repeats)):
            for arm, pretrained in (("scratch", None), ("pretrained", scorer_path)):
                best = k == max(budgets) and arm == "pretrained" and r == 0
                jobs[(k, r, arm)] = (args, data, pretrained, subset, args.seed + r,
                                     data.parent / "segmenter_best" if best else None)
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = {key: pool.submit(efficiency_arm, *job) for key, job in jobs.items()}
            done = {key: future.result() for key, future in futures.items()}
    else:
        done = {key: efficiency_arm(*job) for key, job in jobs.items()}
    results = {}
    for k in budgets:
        runs = []
        for r, subset in enumerate(label_subsets(len(names), k, args.repeats)):
            run = {"cases": [names[i] for i in subset]}
            for arm in ("scratch", "pretrained"):
                run[arm] = done[(k, r, arm)]
                print(f"labels={k} subset {r} {arm}: mean Dice {run[arm]['mean_dice']:.3f} "
                      f"(held-out {run[arm]['heldout_mean_dice']:.3f})", flush=True)
            for prefix in ("", "heldout_"):
                run[prefix + "gain_points"] = 100 * (run["pretrained"][prefix + "mean_dice"]
                                                     - run["scratch"][prefix + "mean_dice"])
            runs.append(run)
        results[str(k)] = summarise_runs(runs)
    return results


def summarise_runs(runs: list[dict]) -> dict:
    """Both arms' Dice (mean and per organ) and the gain, averaged over label subsets."""
    entry = {}
    for arm in ("scratch", "pretrained"):
        entry[arm] = {}
        for prefix in ("", "heldout_"):
            organs = runs[0][arm][prefix + "dice"]
            entry[arm][prefix + "mean_dice"] = float(np.mean([x[arm][prefix + "mean_dice"] for x in runs]))
            entry[arm][prefix + "dice"] = {o: float(np.mean([x[arm][prefix + "dice"][o] for x in runs]))
                                           for o in organs}
    for prefix in ("", "heldout_"):
        entry[prefix + "gain_points"] = float(np.mean([x[prefix + "gain_points"] for x in runs]))
    entry["runs"] = runs
    return entry


def anomaly_segmenter(args, data: Path, workdir: Path) -> tuple[Path, dict]:
    """The segmenter the anomaly section scores organs with: fine-tuned from the pretrained
    bundle on all labelled cases for ``args.anomaly_seg_epochs`` epochs (the label-efficiency
    runs stop at ``--finetune-epochs``, short of convergence; organ scoring inherits every
    segmentation error). ``0``: reuse the label-efficiency run's ``segmenter_best``.
    Kept in ``workdir/segmenter_anomaly`` and reused when its epochs match."""
    from core.bundle import read_bundle_config
    from core.errors import BundleError
    from medical.io import find_cases
    from medical.segment import labelled_cases, train_segmenter

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
    if not _reusable(cases, args.anomaly_test, _shape(args.shape), seed):
        simulate_dataset(cases, args.anomaly_test, lesions=True, seed=seed, shape=_shape(args.shape))
    seg, _ = anomaly_segmenter(args, keep / "data", keep)
    return {name: anomaly_detection(keep / "data", keep, overrides, segmenter_dir=seg,
                                    test_set=test_set, tag=f"_{name}_{test_set}")
            for name, overrides in variants.items()}


def gap_closed(efficiency: dict, prefix: str = "") -> dict:
    """Share of the Dice gap between the smallest and largest budget (from scratch) that
    pretraining closes at the smallest budget, and the pretrained-minus-scratch Dice at the
    largest. ``prefix``: ``""`` (the test set) or ``"heldout_"``."""
    budgets = sorted(int(k) for k in efficiency)
    small, large = efficiency[str(budgets[0])], efficiency[str(budgets[-1])]
    gap = large["scratch"][prefix + "mean_dice"] - small["scratch"][prefix + "mean_dice"]
    gain = small["pretrained"][prefix + "mean_dice"] - small["scratch"][prefix + "mean_dice"]
    return {"gap_points": 100 * gap, "gain_points": 100 * gain,
            "share_closed": gain / gap if gap > 0 else None,
            "largest_budget_difference_points": 100 * (large["pretrained"][prefix + "mean_dice"]
                                                       - large["scratch"][prefix + "mean_dice"])}


def real_ct_volumes(segmenter_dir: Path, image_path: Path, out: Path) -> dict:
    """Organ volumes (ml) the segmenter finds on a real CT; its labels written to ``out``."""
    import nibabel as nib

    from medical.io import load_volume
    from medical.segment import Segmenter
    from medical.transforms import Preprocessor

    segmenter = Segmenter.load(segmenter_dir)
    image = load_volume(image_path)
    pre = Preprocessor(segmenter.preprocess)
    grid = pre(image)["image"]
    labels = np.asarray(pre.invert(segmenter.predict_proba(grid.as_tensor()), grid).argmax(0))
    affine = np.asarray(image.affine)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), affine), str(out))
    return {"file": str(image_path), "labels_written_to": str(out),
            "volumes_ml": {name: round(float((labels == k).sum() * voxel_ml), 1)
                           for k, name in segmenter.labels.items()}}


# --- speed (each measurement in its own process, for its own peak RSS) --------------------

def speed_worker(mode: str, shape, preset_name: str) -> dict:
    import resource

    import torch

    from core.runtime import configure_threads
    from medical.reconstruction import masked_input
    from medical.presets import preset
    from medical.segment import Segmenter
    from medical.transforms import PreprocessConfig

    configure_threads()
    _, seg_config = preset(preset_name)
    segmenter = Segmenter(seg_config.network, PreprocessConfig(), {i: f"organ{i}" for i in range(1, 6)})
    net = segmenter.network.eval()
    x = torch.rand((1, 1, *shape), generator=torch.Generator().manual_seed(0))
    inferer = segmenter.inferer()
    started = time.perf_counter()
    with torch.no_grad():
        if mode == "sliding_window":
            out = inferer(masked_input(x, torch.zeros_like(x)), net)
            n_windows = None
        else:  # plain forward over the same windows, same batch size, no blending
            from monai.data.utils import dense_patch_slices

            roi = seg_config.network.roi_size
            scan = [max(1, int(r * (1 - inferer.overlap))) for r in roi]
            slices = dense_patch_slices(shape, roi, scan)
            inp = masked_input(x, torch.zeros_like(x))
            n_windows = len(slices)
            for start in range(0, len(slices), inferer.sw_batch_size):
                batch = torch.cat([inp[(slice(None), slice(None)) + s]
                                   for s in slices[start:start + inferer.sw_batch_size]])
                out = net(batch)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "peak_rss_gib": peak_kb / 2**20, "n_windows": n_windows,
            "output_shape": list(out.shape)}


def speed(shape, preset_name: str) -> dict:
    results = {}
    for mode in ("plain_forward", "sliding_window", "plain_forward_repeat", "sliding_window_repeat"):
        cmd = [sys.executable, "-m", "bench.medical", "--speed-worker", mode.replace("_repeat", ""),
               "--speed-shape", ",".join(map(str, shape)), "--preset", preset_name]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"speed {mode}: {results[mode]['seconds']:.1f} s, "
              f"{results[mode]['peak_rss_gib']:.2f} GiB", flush=True)
    sw = min(results["sliding_window"]["seconds"], results["sliding_window_repeat"]["seconds"])
    plain = min(results["plain_forward"]["seconds"], results["plain_forward_repeat"]["seconds"])
    return {"shape": list(shape), "runs": results, "sliding_window_seconds": sw,
            "plain_forward_seconds": plain, "ratio": sw / plain,
            "sliding_window_peak_rss_gib": results["sliding_window"]["peak_rss_gib"]}


def pretraining_targets(efficiency: dict) -> dict:
    """The pretraining targets on the test set and on the frozen held-out set."""
    out = {}
    for name, prefix in (("", ""), ("heldout_", "heldout_")):
        gap = gap_closed(efficiency, prefix)
        out[name + "pretraining_share_of_gap_closed"] = {"value": gap["share_closed"], "target": 0.5,
                                                         "gap_points": gap["gap_points"],
                                                         "gain_points": gap["gain_points"]}
        out[name + "pretrained_minus_scratch_at_largest_budget_points"] = {
            "value": gap["largest_budget_difference_points"], "target": 0.0}
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line (experiments parse the committed command's settings with it)."""
    from medical.reconstruction import PRETEXTS   # lazy: loads torch, as the runs do
    parser = argparse.ArgumentParser(prog="python -m bench.medical",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="96,96,48", help="phantom size")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--unlabelled", type=int, default=40,
                        help="healthy unlabelled cases; 20%% are held out for calibration")
    parser.add_argument("--labelled", type=int, default=8)
    parser.add_argument("--budgets", default="2,4,8")
    parser.add_argument("--anomaly-seg-epochs", type=int, default=36,
                        help="fine-tuning epochs of the segmenter the anomaly section scores organs "
                             "with (all labelled cases; 0 = the label-efficiency run's)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="distinct label subsets per budget (Dice and gain are their means)")
    parser.add_argument("--seg-test", type=int, default=4)
    parser.add_argument("--anomaly-test", type=int, default=16)
    parser.add_argument("--pretrain-epochs", type=int, default=16)
    parser.add_argument("--finetune-epochs", type=int, default=12)
    parser.add_argument("--pretrained-lr-scale", type=float, default=None,
                        help="learning-rate factor of the pretrained weights (default: preset's)")
    parser.add_argument("--transfer", choices=["encoder", "full"], default=None,
                        help="pretrained weights the segmenter starts from (default: preset's)")
    parser.add_argument("--organ-jitter", type=float, default=None,
                        help="per-organ intensity offset range in fine-tuning (default: preset's)")
    parser.add_argument("--pretext", choices=PRETEXTS, default=None,
                        help="pretraining task (default: preset's)")
    parser.add_argument("--mask-ratio", type=float, default=None,
                        help="share of the pretraining mask's blocks hidden (default: preset's)")
    parser.add_argument("--mask-block", default=None,
                        help="pretraining mask block edge in voxels, x,y,z (default: preset's)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="fine-tune the label-efficiency arms in this many processes")
    parser.add_argument("--samples", type=int, default=32, help="random crops per fine-tuning epoch")
    parser.add_argument("--pretrain-samples", type=int, default=64,
                        help="random crops per pretraining epoch")
    parser.add_argument("--speed-shape", default="256,256,128")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-anomaly", action="store_true")
    parser.add_argument("--real-ct", default=None,
                        help="a real CT (NIfTI) to report the segmenter's organ volumes on")
    parser.add_argument("--real-ct-labels", default="/tmp/unmask-bench-real-ct-labels.nii.gz",
                        help="where the segmentation of --real-ct is written")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", default=None, help="keep data, models and run in this folder")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "medical.json"))
    parser.add_argument("--speed-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--label-only", action="store_true",
                        help="with --keep: redo only label efficiency on the kept data and "
                             "pretrained bundle (e.g. another fine-tuning budget), updating --out")
    parser.add_argument("--speed-only", action="store_true",
                        help="redo only the speed section, updating --out")
    parser.add_argument("--anomaly-only", action="store_true",
                        help="with --keep: score the kept models' anomaly section again with "
                             "the scoring overrides; adds an entry to 'anomaly_variants' of --out")
    parser.add_argument("--anomaly-set", choices=sorted(ANOMALY_SETS), default=None,
                        help="with --anomaly-only: compare the organ-scoring variants on this "
                             "set (anomaly_heldout: seed 900, never tuned on); writes "
                             "'anomaly_compare' of --out")
    parser.add_argument("--anomaly-variants", default=",".join(ANOMALY_VARIANTS),
                        help="with --anomaly-set: which organ-scoring variants (comma-separated)")
    parser.add_argument("--smooth-sigma", type=float, default=None)
    parser.add_argument("--top-k-ml", type=float, default=None)
    parser.add_argument("--predicted-sd", action="store_true",
                        help="scale residuals by the predicted sd instead of the CT noise")
    parser.add_argument("--plain-only", action="store_true",
                        help="with --anomaly-only: score without the segmentation (a variant)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.speed_worker:
        print(json.dumps(speed_worker(args.speed_worker, _shape(args.speed_shape), args.preset)))
        return

    from core.io import write_text_atomic
    from core.runtime import configure_threads

    if args.label_only:
        if not args.keep:
            parser.error("--label-only needs --keep (the folder of an earlier run)")
        configure_threads()
        result = json.loads(Path(args.out).read_text())
        budgets = [int(b) for b in args.budgets.split(",")]
        t = time.perf_counter()
        keep = Path(args.keep)
        result["label_efficiency"] = label_efficiency(args, keep / "data", keep / "pretrained", budgets)
        result["timings_seconds"]["label_efficiency"] = round(time.perf_counter() - t, 1)
        for key in ("finetune_epochs", "samples", "budgets", "pretrained_lr_scale", "repeats",
                    "transfer", "organ_jitter", "jobs"):
            result["config"][key] = getattr(args, key)
        result["targets"].update(pretraining_targets(result["label_efficiency"]))
        write_text_atomic(args.out, json.dumps(result, indent=2))
        print(json.dumps(result["label_efficiency"], indent=2))
        return
    if args.speed_only:
        result = json.loads(Path(args.out).read_text())
        t = time.perf_counter()
        result["speed"] = speed(_shape(args.speed_shape), args.preset)
        result["timings_seconds"]["speed"] = round(time.perf_counter() - t, 1)
        result["config"]["skip_speed"] = False
        result["targets"]["speed_ratio"] = {"value": result["speed"]["ratio"], "target": 1.5}
        result["targets"]["peak_rss_gib"] = {"value": result["speed"]["sliding_window_peak_rss_gib"],
                                             "target": 3.0}
        write_text_atomic(args.out, json.dumps(result, indent=2))
        print(json.dumps(result["speed"], indent=2))
        return
    overrides = {k: getattr(args, k) for k in ("smooth_sigma", "top_k_ml")
                 if getattr(args, k) is not None}
    if args.predicted_sd:
        overrides["noise_hu"] = None
    if args.anomaly_only:
        if not args.keep:
            parser.error("--anomaly-only needs --keep (the folder of an earlier run)")
        configure_threads()
        result = json.loads(Path(args.out).read_text())
        t = time.perf_counter()
        keep = Path(args.keep)
        anomaly_cases = keep / "data" / "anomaly_test"
        if not _reusable(anomaly_cases, args.anomaly_test, _shape(args.shape), args.seed + 400):
            from medical.phantom import simulate_dataset  # a run with --skip-anomaly has none

            simulate_dataset(anomaly_cases, args.anomaly_test, lesions=True, seed=args.seed + 400,
                             shape=_shape(args.shape))
        if args.anomaly_set:
            names = args.anomaly_variants.split(",")
            unknown = sorted(set(names) - set(ANOMALY_VARIANTS))
            if unknown:
                parser.error(f"unknown --anomaly-variants {unknown}; known: {sorted(ANOMALY_VARIANTS)}")
            variants = {name: ANOMALY_VARIANTS[name] for name in names}
            compare = anomaly_compare(args, keep, args.anomaly_set, variants)
            result.setdefault("anomaly_compare", {}).setdefault(args.anomaly_set, {}).update(compare)
            print(json.dumps({k: {m: v[m] for m in ("case_auroc", "case_ap", "voxel_ap")}
                              for k, v in compare.items()}, indent=2))
        elif overrides or args.plain_only:  # a scoring variant, kept beside the main result
            variant = anomaly_detection(keep / "data", keep, overrides, organs=not args.plain_only)
            variant["scoring_overrides"] = overrides
            variant["seconds"] = round(time.perf_counter() - t, 1)
            result.setdefault("anomaly_variants", []).append(variant)
            print(json.dumps(variant, indent=2))
        else:  # redo the anomaly section: organ scoring and the plain baseline
            seg, result["anomaly_segmenter"] = anomaly_segmenter(args, keep / "data", keep)
            result["anomaly"] = anomaly_detection(keep / "data", keep, segmenter_dir=seg)
            result["anomaly_plain"] = anomaly_detection(keep / "data", keep, organs=False,
                                                        segmenter_dir=seg)
            result["config"]["anomaly_seg_epochs"] = args.anomaly_seg_epochs
            result["timings_seconds"]["anomaly"] = round(time.perf_counter() - t, 1)
            result["config"]["skip_anomaly"] = False
            result["targets"]["case_auroc"] = {"value": result["anomaly"]["case_auroc"], "target": 0.95}
            result["targets"]["voxel_ap"] = {"value": result["anomaly"]["voxel_ap"], "target": 0.5}
            print(json.dumps({k: result[k] for k in ("anomaly", "anomaly_plain")}, indent=2))
        write_text_atomic(args.out, json.dumps(result, indent=2))
        return
    from medical.pretrain import pretrain

    threads = configure_threads()
    started = time.perf_counter()
    budgets = [int(b) for b in args.budgets.split(",")]
    result = {"config": {k: v for k, v in vars(args).items() if k != "speed_worker"},
              "machine": {"cpus": os.cpu_count(), "torch_threads": threads,
                          "python": platform.python_version()},
              "timings_seconds": {}}
    with tempfile.TemporaryDirectory(prefix="unmask-bench-medical-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "data"
        t = time.perf_counter()
        simulate_sets(args, data)
        result["timings_seconds"]["simulate"] = round(time.perf_counter() - t, 1)

        t = time.perf_counter()
        scorer = pretrain(data / "unlabelled", work / "pretrained", pretraining_config(args))
        result["pretraining"] = {"cases": len(scorer_training_cases(work / "pretrained")),
                                 "calibration_cases": args.unlabelled - len(scorer_training_cases(work / "pretrained")),
                                 "epochs": len(scorer.history_.train_loss),
                                 "best_val_loss": scorer.history_.best_val_loss}
        result["timings_seconds"]["pretrain"] = round(time.perf_counter() - t, 1)
        print(f"pretrained in {result['timings_seconds']['pretrain']} s", flush=True)

        t = time.perf_counter()
        result["label_efficiency"] = label_efficiency(args, data, work / "pretrained", budgets)
        result["timings_seconds"]["label_efficiency"] = round(time.perf_counter() - t, 1)
        if args.real_ct:
            result["real_ct"] = real_ct_volumes(work / "segmenter_best", Path(args.real_ct),
                                                Path(args.real_ct_labels))
            print(f"real CT: {result['real_ct']}", flush=True)
        if args.skip_anomaly:
            result["anomaly"] = result["anomaly_plain"] = None

        if not args.skip_anomaly:
            t = time.perf_counter()
            seg, result["anomaly_segmenter"] = anomaly_segmenter(args, data, work)
            result["anomaly"] = anomaly_detection(data, work, segmenter_dir=seg)
            result["anomaly_plain"] = anomaly_detection(data, work, organs=False, segmenter_dir=seg)
            result["timings_seconds"]["anomaly"] = round(time.perf_counter() - t, 1)
            print(f"anomaly: {result['anomaly']}", flush=True)

    if not args.skip_speed:
        t = time.perf_counter()
        result["speed"] = speed(_shape(args.speed_shape), args.preset)
        result["timings_seconds"]["speed"] = round(time.perf_counter() - t, 1)
    result["timings_seconds"]["total"] = round(time.perf_counter() - started, 1)
    result["targets"] = pretraining_targets(result["label_efficiency"])
    if result["anomaly"]:
        result["targets"]["case_auroc"] = {"value": result["anomaly"]["case_auroc"], "target": 0.95}
        result["targets"]["voxel_ap"] = {"value": result["anomaly"]["voxel_ap"], "target": 0.5}
    if "speed" in result:
        result["targets"]["speed_ratio"] = {"value": result["speed"]["ratio"], "target": 1.5}
        result["targets"]["peak_rss_gib"] = {"value": result["speed"]["sliding_window_peak_rss_gib"],
                                             "target": 3.0}
    write_text_atomic(args.out, json.dumps(result, indent=2))
    print(json.dumps(result["targets"], indent=2))


if __name__ == "__main__":
    main()
