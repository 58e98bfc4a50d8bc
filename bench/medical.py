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
from pathlib import Path

# the sections
from bench.medical_anomaly import (ANOMALY_SETS, ANOMALY_VARIANTS, anomaly_compare,
                                   anomaly_detection, anomaly_segmenter)
from bench.medical_efficiency import (label_efficiency, parse_shape, pretraining_config,
                                      pretraining_targets, real_ct_volumes, reusable_dataset,
                                      scorer_training_cases, simulate_sets)
from medical.pretexts import PRETEXTS

ROOT = Path(__file__).resolve().parent.parent


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


def build_parser() -> argparse.ArgumentParser:
    """The command line (experiments parse the committed command's settings with it)."""
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
        print(json.dumps(speed_worker(args.speed_worker, parse_shape(args.speed_shape), args.preset)))
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
        result["speed"] = speed(parse_shape(args.speed_shape), args.preset)
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
        if not reusable_dataset(anomaly_cases, args.anomaly_test, parse_shape(args.shape), args.seed + 400):
            from medical.phantom import simulate_dataset  # a run with --skip-anomaly has none

            simulate_dataset(anomaly_cases, args.anomaly_test, lesions=True, seed=args.seed + 400,
                             shape=parse_shape(args.shape))
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
        result["speed"] = speed(parse_shape(args.speed_shape), args.preset)
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
