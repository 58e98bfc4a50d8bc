"""Real-grid CT inference: `medical infer` on a 512x512x300 CT vs a plain MONAI sliding window.

A CT from a scanner is 512 x 512 in-plane at 0.6-0.9 mm and hundreds of slices; the model
works on its own coarse grid (``medical.transforms``: 4 x 4 x 5 mm by default) and maps
every output back onto the input's voxels slab by slab. Three ways to segment the same
input, each in a fresh process (wall and CPU time inside the process, the process's
peak RSS from ``VmHWM``), same model, same run:

* ``infer``: the whole ``medical.infer.infer`` (read and check the input, segment, anomaly
  map, region SHAP, write the run) -- what the user runs;
* ``segment``: only our segmentation path (read, resample to the model grid, sliding
  window, probabilities back to the input grid, argmax, write the NIfTI);
* ``plain_monai``: MONAI's ``LoadImage`` + HU window + ``SlidingWindowInferer`` (same
  network, roi, sw_batch_size, overlap, Gaussian blending) at the input's native
  resolution, argmax, write the NIfTI.

Inputs: a synthetic 512 x 512 x 300 CT at 0.8 x 0.8 x 2.5 mm (a phantom resampled onto
that grid) and, when present, the real ``abdomen_ct.nii.gz`` of ``../shared/data/ct-real``
(for speed only; nothing is tuned on it). The model is a default-preset model trained
here for one epoch on phantoms (its weights do not change the cost).

Usage:
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.medical_grid          # full run
    python -m bench.medical_grid --skip-plain                             # ours only
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.shared_data import SHARED_DATA

ROOT = Path(__file__).resolve().parent.parent
REAL_CT = SHARED_DATA / "ct-real" / "abdomen_ct.nii.gz"
GRID_SHAPE = (512, 512, 300)
GRID_SPACING = (0.8, 0.8, 2.5)
TARGETS = {"time_s": 60.0, "peak_rss_gb": 3.0}


def build_model(root: Path) -> Path:
    """A default-preset pretrained + fine-tuned model on 6 phantoms, one epoch each."""
    from dataclasses import replace

    from medical.phantom import simulate_dataset
    from medical.presets import preset
    from medical.pretrain import pretrain
    from medical.segment import train_segmenter

    data = simulate_dataset(root / "phantoms", 6, lesions=False, seed=0, shape=(96, 96, 48))
    pre_config, seg_config = preset("default")
    pretrain(data, root / "pretrained", replace(pre_config, max_epochs=1, samples_per_epoch=8),
             progress=False, device="cpu")
    train_segmenter(data, root / "model", root / "pretrained", 4,
                    replace(seg_config, max_epochs=1, samples_per_epoch=8), progress=False,
                    device="cpu")
    return root / "model"


def synthetic_ct(path: Path) -> Path:
    """A phantom resampled (linear) onto a 512 x 512 x 300 grid of 0.8 x 0.8 x 2.5 mm."""
    from scipy.ndimage import zoom

    from medical.io import save_nifti
    from medical.phantom import simulate_case

    case = simulate_case(np.random.default_rng(7), (128, 128, 60))
    factors = [n / m for n, m in zip(GRID_SHAPE, case.image.shape)]
    volume = zoom(case.image.astype(np.float32), factors, order=1).astype(np.int16)
    affine = np.diag([-GRID_SPACING[0], -GRID_SPACING[1], GRID_SPACING[2], 1.0])
    affine[:3, 3] = [GRID_SPACING[0] * GRID_SHAPE[0] / 2, GRID_SPACING[1] * GRID_SHAPE[1] / 2,
                     -GRID_SPACING[2] * GRID_SHAPE[2] / 2]
    return save_nifti(volume, affine, path)


# --- the three ways, each run in its own process ------------------------------------------

def run_infer(model: Path, image: Path, out: Path) -> None:
    from medical.infer import infer

    infer(model, image, out, progress=False, device="cpu")


def run_segment(model: Path, image: Path, out: Path) -> None:
    from medical.io import load_volume, save_nifti
    from medical.segment import Segmenter
    from medical.transforms import Preprocessor

    segmenter = Segmenter.load(model / "segmenter")
    volume = load_volume(image)
    pre = Preprocessor(segmenter.preprocess)
    grid = pre(volume)["image"]
    labels = pre.invert_argmax(segmenter.predict_proba(grid.as_tensor()), grid)
    save_nifti(labels, np.asarray(volume.affine), out)


def run_plain_monai(model: Path, image: Path, out: Path) -> None:
    import torch
    from monai.inferers import SlidingWindowInferer
    from monai.transforms import LoadImage, ScaleIntensityRange

    from medical.io import save_nifti
    from medical.reconstruction import masked_input
    from medical.segment import Segmenter

    segmenter = Segmenter.load(model / "segmenter")
    volume = LoadImage(image_only=True, ensure_channel_first=True)(str(image))   # (1, X, Y, Z)
    lo, hi = segmenter.preprocess.window
    x = ScaleIntensityRange(lo, hi, 0.0, 1.0, clip=True)(volume).as_tensor()[None]
    inferer = SlidingWindowInferer(segmenter.network_config.roi_size,
                                   sw_batch_size=segmenter.sw_batch_size,
                                   overlap=segmenter.overlap, mode="gaussian")
    with torch.no_grad():
        logits = inferer(masked_input(x, torch.zeros_like(x)), segmenter.network)
    labels = logits.argmax(1)[0].numpy().astype(np.uint8)
    save_nifti(labels, np.asarray(volume.affine), out)


WAYS = {"infer": run_infer, "segment": run_segment, "plain_monai": run_plain_monai}


def child(way: str, model: str, image: str, out: str) -> None:
    """Run one way and print ``{"time_s", "cpu_s", "peak_rss_gb"}`` as the last line.

    ``cpu_s`` (user + system time of the process) next to the wall time: on a machine
    shared with other jobs the wall time grows with their load, the CPU time much less.
    """
    from core.runtime import configure_threads

    configure_threads()                  # UNMASK_NUM_THREADS, as the CLI runs
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    WAYS[way](Path(model), Path(image), Path(out))
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    print(json.dumps({"time_s": round(seconds, 2), "cpu_s": round(cpu, 2),
                      "peak_rss_gb": round(_peak_rss_kb() / 1024 ** 2, 3)}))


def _peak_rss_kb() -> int:
    """This process's own peak RSS (``VmHWM``, kB). Not ``ru_maxrss``: Linux keeps that
    across ``execve``, so a child would report its parent's peak when that is higher."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(way: str, model: Path, image: Path, out: Path) -> dict:
    command = [sys.executable, "-m", "bench.medical_grid", "--child", way, str(model), str(image),
               str(out)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{way} on {image} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = round(time.perf_counter() - started, 2)   # with imports
    print(f"  {way:12s} {result}", flush=True)
    return result


def bench_input(name: str, image: Path, model: Path, work: Path, ways) -> dict:
    from medical.io import load_volume

    volume = load_volume(image)
    entry = {"shape": list(volume.shape[1:]),
             "spacing_mm": [round(float(s), 3) for s in volume.pixdim[:3]]}
    del volume
    print(f"{name}: {entry}", flush=True)
    for way in ways:
        suffix = "run" if way == "infer" else "seg.nii.gz"
        entry[way] = measure(way, model, image, work / f"{name}_{way}_{suffix}")
    if "plain_monai" in entry:
        for way in ("infer", "segment"):
            entry[f"{way}_vs_plain"] = {
                key: round(entry[way][key] / entry["plain_monai"][key], 3)
                for key in ("time_s", "cpu_s", "peak_rss_gb")}
    return entry


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=4, metavar=("WAY", "MODEL", "IMAGE", "OUT"))
    parser.add_argument("--model", type=Path, default=None, help="Reuse a `train` output.")
    parser.add_argument("--skip-plain", action="store_true", help="Leave out plain MONAI.")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "medical_grid.json")
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return
    ways = ["infer", "segment"] + ([] if args.skip_plain else ["plain_monai"])
    with tempfile.TemporaryDirectory(prefix="medical_grid_") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        model = args.model or build_model(work)
        inputs = {"synthetic_512x512x300": synthetic_ct(work / "synthetic.nii.gz")}
        if REAL_CT.is_file():
            inputs["abdomen_ct"] = REAL_CT
        results = {name: bench_input(name, path, model, work, ways) for name, path in inputs.items()}
    report = {"targets": TARGETS, "threads": os.environ.get("UNMASK_NUM_THREADS"),
              "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg()),
              "platform": platform.platform(),
              "wall_s": round(time.perf_counter() - started, 1), "inputs": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
