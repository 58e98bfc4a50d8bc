"""The README's medical model on the real abdominal CT and the MR: run, measure, render.

Not part of the benchmark and not needed by any test. **It reads ``../shared/data/ct-real/``**
(``abdomen_ct.nii.gz``, ``mr_not_ct.nii.gz``: two public TotalSegmentator reference scans),
which is not in the repository: a user who clones it has no such folder. The scans are for
reading, looking, the input guard and speed; nothing is tuned on them.

Every command runs as a fresh process under ``/usr/bin/time -v`` (wall, CPU seconds and peak
RSS from its report), with the caller's ``UNMASK_NUM_THREADS`` and niceness (the example's
``nice -n 10`` applies to every step):

1. the README's medical commands, verbatim, in ``--work``: ``simulate --cases 32 --out ct/``,
   ``pretrain --data ct/ --out models/ct-pretrained``, ``train --data ct/ --labels 20
   --pretrained models/ct-pretrained --out models/ct``. A step whose output and time report
   (``time_<step>.txt``) are already in ``--work`` is read, not rerun.
2. ``medical infer`` with the README's ``--workspace`` on the CT with ``--dicom-seg`` (refused
   for NIfTI input: recorded), on the CT without it, and on the MR; every printed line,
   the exit status, organ volumes, case score and p-value.
3. PNG renders of the CT (W400 / L40) with the segmentation and with the anomaly map, three
   panels each (CT, CT + labels, CT + map): axial slices at the upper abdomen (liver,
   spleen), the kidneys, the sacrum and iliac wings, and the pelvis (bladder, hips), one
   coronal cut through both kidneys and one sagittal cut through the right kidney and liver.
   The slices were chosen on the CT alone, before any output of the model was looked at
   (the sacrum slice's caption was corrected afterwards: it had said L5). Displayed
   radiologically: the patient's right on the viewer's left, anterior up (axial), superior
   up (coronal, sagittal), anterior left (sagittal).
4. ``bench/results/medical_real_ct_render.json``: times, peak RSS, printed lines, volumes,
   score, p-value, and per organ where its label lies (slices, side, Hounsfield units under
   it) and where the anomaly map is high (by organ and by tissue class of the CT). With
   ``--docs-dir``, 256-colour copies of five of the PNGs for ``docs/renders``.

Example::

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.medical_real_ct_render \\
        --work /tmp/real-ct --png-dir /tmp/real-ct/png --docs-dir docs/renders
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from bench.shared_data import SHARED_DATA
from core.io import write_text_atomic
from dashboard import render
from medical.transforms import BODY_HU
from dashboard.medical_data import (HEAT_UNITS, CaseVolumes, load_case, organ_legend,
                                    orientation_labels, slice_image)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the Agg backend is chosen)
from matplotlib.colors import ListedColormap, Normalize  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REAL = SHARED_DATA / "ct-real"
UNMASK = Path(sys.executable).parent / "unmask"

README_STEPS = {  # the README's medical commands, verbatim; (output that shows it ran, argv)
    "simulate": ("ct", ["simulate", "--cases", "32", "--out", "ct/"]),
    "pretrain": ("models/ct-pretrained", ["pretrain", "--data", "ct/", "--out", "models/ct-pretrained"]),
    "train": ("models/ct", ["train", "--data", "ct/", "--labels", "20", "--pretrained",
                            "models/ct-pretrained", "--out", "models/ct"]),
}
# (plane, voxel index along the cut axis of the RAS volume, what it shows); chosen on the CT
VIEWS = [("axial", 104, "upper abdomen: liver, spleen, stomach"),
         ("axial", 88, "kidneys"),
         ("axial", 46, "sacrum and iliac wings"),
         ("axial", 22, "pelvis: bladder, iliac bones, hips"),
         ("coronal", 40, "both kidneys, lumbar spine"),
         ("sagittal", 83, "right kidney and liver")]
DOCS_VIEWS = ["axial_104", "axial_88", "axial_22", "coronal_40", "sagittal_83"]  # --docs-dir
TISSUE_HU = {"gas": (-np.inf, -400), "fat": (-400, -30), "soft tissue": (-30, 200),
             "bone or metal": (200, np.inf)}
Z_BAND = 10                        # axial slices per band of an organ's HU profile
TIME_FIELDS = {"wall_s": "Elapsed (wall clock) time", "user_s": "User time (seconds)",
               "system_s": "System time (seconds)", "peak_rss_kb": "Maximum resident set size (kbytes)",
               "exit_status": "Exit status"}


# ---- running commands -------------------------------------------------------------------

def _seconds(clock: str) -> float:
    """``h:mm:ss`` or ``m:ss.ss`` (GNU time's wall clock) in seconds."""
    seconds = 0.0
    for part in clock.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def read_time_report(path: Path) -> dict:
    """Wall, CPU seconds, peak RSS (GB) and exit status from a ``/usr/bin/time -v`` report."""
    found = {}
    for line in path.read_text().splitlines():
        for key, label in TIME_FIELDS.items():
            if line.strip().startswith(label):
                found[key] = line.rsplit(": ", 1)[1].strip()
    missing = sorted(set(TIME_FIELDS) - set(found))
    if missing:
        raise ValueError(f"{path}: no {missing} in this /usr/bin/time -v report")
    return {"wall_s": round(_seconds(found["wall_s"]), 1),
            "cpu_s": round(float(found["user_s"]) + float(found["system_s"]), 1),
            "peak_rss_gb": round(int(found["peak_rss_kb"]) / 1024 ** 2, 3),
            "exit_status": int(found["exit_status"])}


def run_timed(work: Path, name: str, args: list[str]) -> dict:
    """Run ``unmask medical ARGS`` in ``work`` under ``/usr/bin/time -v``; return its time
    report, the command and every non-empty line it printed (stdout, then stderr)."""
    command = [str(UNMASK), "medical", *args]
    report = work / f"time_{name}.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load = os.getloadavg()[0]
    done = subprocess.run(["/usr/bin/time", "-v", "-o", str(report), *command], cwd=work,
                          env=env, capture_output=True, text=True)
    printed = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    write_text_atomic(work / f"log_{name}.txt", "\n".join(printed) + "\n")
    return {"command": "unmask medical " + " ".join(args), **read_time_report(report),
            "load_1min_at_start": round(load, 2), "printed": printed}


def readme_recipe(work: Path) -> dict:
    """The README's three steps in ``work``; a step already there (output and time report) is read."""
    steps = {}
    for name, (output, args) in README_STEPS.items():
        if (work / output).exists() and (work / f"time_{name}.txt").exists():
            log = work / f"log_{name}.txt"
            printed = [ln for ln in log.read_text().splitlines() if ln.strip()] if log.exists() else []
            steps[name] = {"command": "unmask medical " + " ".join(args),
                           **read_time_report(work / f"time_{name}.txt"), "printed": printed}
        else:
            steps[name] = run_timed(work, name, args)
        if steps[name]["exit_status"] != 0:
            raise RuntimeError(f"{name} failed: see {work / f'log_{name}.txt'}")
    return steps


def infer_case(work: Path, name: str, image: Path, extra: tuple[str, ...] = ()) -> dict:
    """``medical infer`` of one file into the workspace; the run's row when it wrote one."""
    args = ["infer", "--model", "models/ct", "--images", str(image), "--workspace",
            "unmask-workspace", *extra]
    result = run_timed(work, name, args)
    wrote = [ln.split(" ", 1)[1] for ln in result["printed"] if ln.startswith("wrote ")]
    result["run"] = str(work / wrote[-1]) if wrote else None
    if result["run"]:
        row = pd.read_parquet(Path(result["run"]) / "scores.parquet").iloc[0]
        result["volume_ml"] = {k[len("volume_ml_"):]: round(float(v), 1)
                               for k, v in row.items() if k.startswith("volume_ml_")}
        result.update(score=float(row["score"]), p_value=float(row["p_value"]),
                      is_alert=bool(row["is_alert"]), warnings=row["warnings"].splitlines())
    return result


# ---- what the outputs say ---------------------------------------------------------------

def body_mask(ct: np.ndarray) -> np.ndarray:
    """The patient: voxels above ``BODY_HU`` with every hole of each axial slice filled, so
    gas inside the body (below ``BODY_HU`` like the air around it) is part of it."""
    body = ct > BODY_HU  # (x, y, z) RAS+: axial slices along the last axis
    for z in range(body.shape[2]):
        body[:, :, z] = ndimage.binary_fill_holes(body[:, :, z])
    return body


def tissue_masks(ct: np.ndarray, body: np.ndarray) -> dict[str, np.ndarray]:
    """Voxels of the body by Hounsfield range (``TISSUE_HU``)."""
    return {name: body & (ct >= low) & (ct < high) for name, (low, high) in TISSUE_HU.items()}


def _hu_band_facts(ct: np.ndarray, organ: np.ndarray, voxel_ml: float) -> dict:
    """The organ's volume and median HU in each band of ``Z_BAND`` axial slices it reaches."""
    bands = {}
    for low in range(0, ct.shape[2], Z_BAND):
        part = organ[:, :, low:low + Z_BAND]
        if part.any():
            bands[f"z {low}-{min(low + Z_BAND, ct.shape[2]) - 1}"] = {
                "ml": round(float(part.sum() * voxel_ml), 1),
                "hu_median": float(np.median(ct[:, :, low:low + Z_BAND][part]))}
    return bands


def label_facts(ct: np.ndarray, labels: np.ndarray, names: dict[int, str], voxel_ml: float,
                body: np.ndarray | None = None) -> dict:
    """Per organ label: axial slices it spans, share on the patient's right (voxel x above
    the centre of ``body``, default :func:`body_mask`: RAS+), the Hounsfield units under it,
    overall and by band of slices."""
    body = body_mask(ct) if body is None else body
    centre_x = np.argwhere(body)[:, 0].mean()
    facts = {}
    for k, name in names.items():
        organ = labels == k
        voxels = np.argwhere(organ)
        if not len(voxels):
            facts[name] = {"voxels": 0}
            continue
        hu = ct[organ]
        facts[name] = {"voxels": int(len(voxels)),
                       "z_range": [int(voxels[:, 2].min()), int(voxels[:, 2].max())],
                       "share_on_patient_right": round(float((voxels[:, 0] > centre_x).mean()), 3),
                       "hu_median": round(float(np.median(hu)), 1),
                       **{f"share_{t}": round(float(((hu >= lo) & (hu < hi)).mean()), 3)
                          for t, (lo, hi) in TISSUE_HU.items()},
                       "by_slices": _hu_band_facts(ct, organ, voxel_ml)}
    return facts


def map_facts(ct: np.ndarray, labels: np.ndarray, anomaly: np.ndarray, names: dict[int, str],
              body: np.ndarray | None = None) -> dict:
    """Where the anomaly map is non-zero and high: its mean by organ (border shell and
    interior) and by tissue class (inside ``body``, default :func:`body_mask`), and who holds the
    top 1 % of its non-zero voxels. An empty part (an organ the model did not find, one with
    no interior) has mean ``None``."""
    body = body_mask(ct) if body is None else body
    scored = anomaly > 0
    p99 = float(np.quantile(anomaly[scored], 0.99)) if scored.any() else None
    top = anomaly >= p99 if p99 is not None else scored

    def summary(mask):
        empty = not mask.any()
        return {"voxels": int(mask.sum()),
                "share_scored": None if empty else round(float(scored[mask].mean()), 3),
                "mean": None if empty else round(float(anomaly[mask].mean()), 4),
                "share_of_top_1pct": round(float((top & mask).sum() / max(top.sum(), 1)), 3)}

    by_organ = {}
    for k, name in names.items():
        organ = labels == k
        interior = ndimage.binary_erosion(organ)
        by_organ[name] = {**summary(organ), "border_mean": summary(organ & ~interior)["mean"],
                          "interior_mean": summary(interior)["mean"]}
    top_hu = ct[top]
    return {"scored_voxels": int(scored.sum()), "max": round(float(anomaly.max()), 4),
            "top_1pct_hu_p10_p50_p90": [round(float(v), 1) for v in np.percentile(top_hu, [10, 50, 90])]
            if top_hu.size else None,
            "p99_of_scored": round(p99, 4) if p99 is not None else None,
            "by_organ": by_organ,
            "background (no organ label)": summary(body & (labels == 0)),
            "by_tissue": {t: summary(m) for t, m in tissue_masks(ct, body).items()}}


# ---- rendering ---------------------------------------------------------------------------

def _heat_colour_map() -> ListedColormap:
    """The CT page's heat ramp (``dashboard.render.heat_colours``) as a matplotlib map."""
    return ListedColormap(render.heat_colours(np.linspace(0.0, 1.0, 256)) / 255.0)


def _mark_edges(ax, plane: str) -> None:
    """The patient direction at each edge of a displayed slice (the CT page's letters)."""
    where = {"left": (0.03, 0.5), "right": (0.97, 0.5), "top": (0.5, 0.97), "bottom": (0.5, 0.03)}
    for edge, letter in orientation_labels(plane).items():
        ax.text(*where[edge], letter, color="yellow", transform=ax.transAxes, ha="center",
                va="center", fontsize=9, fontweight="bold")


def render_view(volumes: CaseVolumes, labels: dict, view: tuple, path: Path) -> None:
    """One slice in three panels drawn by the CT page's own code (``slice_image``: soft-tissue
    window W400 / L40, the same label colours and heat scale): CT, CT + segmentation,
    CT + anomaly map (heat from the median to the 99.9th percentile of the map's non-zero
    voxels; below the median it is transparent)."""
    plane, index, shows = view
    panels = {"CT W400/L40": (False, False), "segmentation": (True, False),
              "anomaly map": (False, True)}
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.8))
    for ax, (title, (segmentation, heat)) in zip(axes, panels.items()):
        ax.imshow(slice_image(volumes, plane, index, "soft tissue", segmentation, heat, size=480))
        ax.set_title(title, fontsize=10)
        ax.axis("off")
        _mark_edges(ax, plane)
    handles = [plt.Rectangle((0, 0), 1, 1, color=np.array(rgb) / 255.0) for _, rgb in organ_legend(labels)]
    axes[1].legend(handles, [name for name, _ in organ_legend(labels)], loc="upper center", fontsize=7,
                   ncol=3, framealpha=0.8, bbox_to_anchor=(0.5, -0.01))
    scale = plt.cm.ScalarMappable(Normalize(*volumes.heat_range), _heat_colour_map())
    fig.colorbar(scale, ax=axes[2], fraction=0.046, pad=0.02, label=HEAT_UNITS)
    fig.suptitle(f"abdomen_ct.nii.gz, {plane} slice {index}: {shows}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def render_all(volumes: CaseVolumes, labels: dict, png_dir: Path) -> list[str]:
    """Every view of ``VIEWS`` as ``<plane>_<index>.png`` in ``png_dir``."""
    png_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for view in VIEWS:
        path = png_dir / f"{view[0]}_{view[1]}.png"
        render_view(volumes, labels, view, path)
        paths.append(str(path))
    return paths


def small_copies(png_dir: Path, docs_dir: Path) -> list[str]:
    """``DOCS_VIEWS`` from ``png_dir`` as 256-colour PNGs in ``docs_dir``, named
    ``real_ct_<plane>_<index>.png``: a third the size (octree colours keep the label and
    heat colours; the default median cut spends its colours on the grays)."""
    docs_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in DOCS_VIEWS:
        target = docs_dir / f"real_ct_{name}.png"
        image = Image.open(png_dir / f"{name}.png").convert("RGB")
        image.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(target, optimize=True)
        paths.append(str(target))
    return paths


def describe(volumes: CaseVolumes, labels: dict) -> dict:
    """The views, where each organ label lies and where the anomaly map is high."""
    names = {int(k): v for k, v in labels.items()}
    voxel_ml = float(np.prod(volumes.spacing)) / 1000.0
    body = body_mask(volumes.image)                  # one hole-filling pass over the scan
    return {"views": [{"plane": p, "index": i, "shows": s} for p, i, s in VIEWS],
            "labels": label_facts(volumes.image, volumes.segmentation, names, voxel_ml, body),
            "anomaly_map": {"heat_range": [round(v, 4) for v in volumes.heat_range],
                            **map_facts(volumes.image, volumes.segmentation, volumes.anomaly,
                                        names, body)}}


# ---- the whole experiment ----------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="Folder for data, models, runs.")
    parser.add_argument("--png-dir", type=Path, required=True, help="Where the renders go.")
    parser.add_argument("--docs-dir", type=Path, default=None,
                        help="Also write small copies of DOCS_VIEWS here (docs/renders).")
    parser.add_argument("--ct", type=Path, default=REAL / "abdomen_ct.nii.gz")
    parser.add_argument("--mr", type=Path, default=REAL / "mr_not_ct.nii.gz")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/medical_real_ct_render.json")
    args = parser.parse_args()
    for scan in (args.ct, args.mr):
        if not scan.is_file():
            raise SystemExit(f"{scan}: not found (the real scans live in {REAL})")
    args.work.mkdir(parents=True, exist_ok=True)
    result = {"threads": os.environ.get("UNMASK_NUM_THREADS"), "readme_recipe": readme_recipe(args.work)}
    result["infer"] = {"ct_dicom_seg": infer_case(args.work, "infer_ct_dicom_seg", args.ct, ("--dicom-seg",)),
                       "ct": infer_case(args.work, "infer_ct", args.ct),
                       "mr": infer_case(args.work, "infer_mr", args.mr)}
    run = Path(result["infer"]["ct"]["run"])
    labels = json.loads((run / "manifest.json").read_text())["summary"]["labels"]
    volumes = load_case(run, pd.read_parquet(run / "scores.parquet").iloc[0])  # RAS+, as the CT page
    result.update(describe(volumes, labels))
    config = json.loads((args.work / "models/ct/anomaly/config.json").read_text())["config"]
    result["calibration_scores"] = sorted(round(v, 3) for v in config["calibration"]["calibration_scores"])
    result["pngs"] = render_all(volumes, labels, args.png_dir)
    if args.docs_dir is not None:
        result["docs_pngs"] = small_copies(args.png_dir, args.docs_dir)
    write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result["infer"]["ct"].items() if k != "printed"}, indent=2))


if __name__ == "__main__":
    main()
