"""The medical benchmark's phantom sets, settings and label-efficiency section.

Data setup: the phantom sets of ``python -m bench.medical`` (simulated under the run's
folder, reused from a kept one when their settings match) and the pretraining and
fine-tuning settings the command line gives. Label efficiency: organ Dice after
fine-tuning with a few labelled cases, from scratch vs from masked-volume pretraining,
averaged over label subsets, and the pretraining targets read from it; the segmenter's
organ volumes on a real CT. The command line and the other sections are in
:mod:`bench.medical` and :mod:`bench.medical_anomaly`.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def parse_shape(text: str) -> tuple[int, int, int]:
    """``"x,y,z"`` (a shape option of the command line) as a tuple of ints."""
    return tuple(int(v) for v in text.split(","))


def reusable_dataset(root: Path, n_cases: int, shape, seed: int) -> bool:
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
                  mask_block=args.mask_block and parse_shape(args.mask_block))


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

    shape = parse_shape(args.shape)
    for name, n, lesions, seed in (("unlabelled", args.unlabelled, False, 100),
                                   ("labelled", args.labelled, False, 200),
                                   ("seg_test", args.seg_test, False, 300),
                                   ("seg_heldout", args.seg_test, False, 900),
                                   ("anomaly_test", args.anomaly_test, True, 400)):
        if name == "anomaly_test" and args.skip_anomaly:
            continue
        if not reusable_dataset(data / name, n, shape, args.seed + seed):
            simulate_dataset(data / name, n, lesions=lesions, seed=args.seed + seed, shape=shape)


def efficiency_config(args):
    """The fine-tuning settings of the label-efficiency arms."""
    return _given(segment_config(args, args.finetune_epochs),
                  pretrained_lr_scale=args.pretrained_lr_scale,
                  encoder_only=None if args.transfer is None else args.transfer == "encoder",
                  organ_jitter=args.organ_jitter)


SEG_SETS = (("", "seg_test"), ("heldout_", "seg_heldout"))  # (result key prefix, folder)


def efficiency_arm(args, data: Path, pretrained, subset: list[int], seed: int,
                   save_to: Path | None = None, sets=SEG_SETS, unlabelled=None) -> dict:
    """One arm of one label subset: fine-tune on the labelled cases ``subset`` (scratch if
    ``pretrained`` is ``None``; with ``unlabelled`` cases, masked consistency on them), then
    organ Dice on ``sets`` (default: the test and held-out sets; an experiment may score the
    frozen held-out set only after deciding)."""
    from core.runtime import configure_threads
    from medical.segment import train_segmenter
    from medical.training_cases import labelled_cases

    configure_threads()  # also in a --jobs worker process
    pool = labelled_cases(data / "labelled")
    started = time.perf_counter()
    segmenter = train_segmenter(data / "labelled", None, pretrained,
                                config=replace(efficiency_config(args), seed=seed),
                                cases=[pool[i] for i in subset],
                                # organ_dice scores the network's own labels: nothing to
                                # decide (the arm saved for the anomaly section trains on
                                # the whole pool, so it had no validation cases either)
                                validation_cases=[], unlabelled_cases=unlabelled)
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

    from medical.training_cases import labelled_cases

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
