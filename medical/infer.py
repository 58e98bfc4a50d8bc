"""``unmask medical infer``: segment, map anomalies, score and explain every case of a run.

Writes one run directory (``core.runs.create_run``, atomic) in the layout of
``docs/runs.md``: per case ``<case>_seg.nii.gz`` (uint8) and ``<case>_anomaly.nii.gz``
(float32) in the input image's geometry, ``scores.parquet`` (one row per case, sorted by
rank) and ``region_shap.parquet`` (SHAP value of each organ region for each case); with
``dicom_seg`` and a DICOM series input, ``<case>_seg.dcm`` (DICOM SEG) and
``<case>_anomaly.dcm`` (DICOM Parametric Map) too (``medical.dicom_out``).

Inputs on any grid: the networks run on the model's grid (``medical.transforms``) and
every output is resampled slab by slab back onto the input's voxels, so a 512 x 512 x 300
CT never holds its class probabilities on the input grid. A CT unlike the training data
gets ``warning:`` lines (``medical.guard``): per case in the ``warnings`` column, all
cases' in the summary's ``warnings`` list, printed by the CLI and shown on the CT page;
that list starts with the warnings about the input as a whole (an image file listed twice).
Segmentations are post-processed on the model grid as decided at ``train`` time
(``medical.postprocess``: organs cut to their largest connected part) before organ
volumes, organ scoring and the written label maps.

Example:
    >>> run_dir = infer("models/medical/ct", "data/medical/test", "runs/medical/r1")  # doctest: +SKIP
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from core.bundle import read_bundle_config
from core.drift import calibration_reference
from core.errors import BundleError, DataValidationError, UnmaskWarning, recorded_warnings
from core.io import check_output
from core.metrics import auprc, auroc, dice
from core.runs import create_run
from core.runtime import progress_bar
from core.text import counted

from .anomaly import AnomalyScorer
from .dicom_out import write_parametric_map, write_segmentation
from .guard import error_warning, organ_warnings
from .io import find_cases, load_label_like, load_volume, save_nifti
from .reconstruction import body_mask
from .segment import Segmenter
from .transforms import Preprocessor

OTHER_REGION = "other tissue"


def load_models(model_dir, anomaly_model=None, device="cpu", precision: str = "fp32"
                ) -> tuple[Segmenter | None, AnomalyScorer | None]:
    """Load ``model_dir`` (``train``'s output, a ``ct-segmenter`` or a ``ct-anomaly`` bundle)
    with both networks on ``device`` (auto, cpu, cuda, cuda:N) at ``precision``."""
    root = Path(model_dir)
    segmenter = scorer = None
    if (root / "segmenter").is_dir() or (root / "anomaly").is_dir():
        if (root / "segmenter").is_dir():
            segmenter = Segmenter.load(root / "segmenter", device, precision)
        if (root / "anomaly").is_dir():
            scorer = AnomalyScorer.load(root / "anomaly", device, precision)
    else:
        kind = read_bundle_config(root).get("kind")
        if kind == "ct-segmenter":
            segmenter = Segmenter.load(root, device, precision)
        elif kind == "ct-anomaly":
            scorer = AnomalyScorer.load(root, device, precision)
        else:
            raise BundleError(f"{root}: holds a {kind!r} model, expected a CT model "
                              "(ct-segmenter or ct-anomaly)")
    if anomaly_model is not None:
        scorer = AnomalyScorer.load(anomaly_model, device, precision)
    return segmenter, scorer


def octant_regions(body: np.ndarray) -> dict[str, np.ndarray]:
    """Fallback regions without a segmentation: the body split at its centre (RAS axes)."""
    idx = np.argwhere(body)
    centre = idx.mean(axis=0) if len(idx) else np.array(body.shape) / 2
    grids = np.indices(body.shape)
    regions = {}
    for lr, lr_name in ((grids[0] >= centre[0], "left"), (grids[0] < centre[0], "right")):
        for ap, ap_name in ((grids[1] >= centre[1], "anterior"), (grids[1] < centre[1], "posterior")):
            for si, si_name in ((grids[2] >= centre[2], "superior"), (grids[2] < centre[2], "inferior")):
                regions[f"{lr_name} {ap_name} {si_name}"] = body & lr & ap & si
    return regions


def organ_regions(labels_grid: np.ndarray, body: np.ndarray, names: dict[int, str]) -> dict:
    """SHAP regions from a segmentation: each organ's voxels and the rest of the body, all
    inside ``body`` (the case score reads the body only; an organ label outside it would
    add values the score never saw, and the SHAP values would no longer sum to it)."""
    regions = {name: body & (labels_grid == k) for k, name in names.items()}
    regions[OTHER_REGION] = body & (labels_grid == 0)
    return {k: v for k, v in regions.items() if v.any()}


def _truth_columns(case, image, labels_input, names, row):
    if case.label is not None:
        truth = load_label_like(case.label, image, case.image).as_tensor().numpy()[0]
        for k, name in names.items():
            row[f"dice_{name}"] = dice(truth == k, labels_input == k)
    if case.lesion is not None or case.has_lesion is not None:
        if case.lesion is not None:
            row["has_lesion"] = bool(load_label_like(case.lesion, image, case.image).as_tensor().any())
        else:
            row["has_lesion"] = bool(case.has_lesion)


def score_case(case, segmenter, scorer, run=None, shap_evals: int = 200,
               dicom_seg: bool = False):
    """Process one case; write its outputs through ``run``; return (row, shap rows).

    With ``run=None`` nothing is written (the row only: batch scoring); ``shap_evals=0``
    skips the region SHAP values; ``dicom_seg`` also writes the DICOM SEG and Parametric
    Map (the case must be a DICOM series). The row's ``warnings`` says, one line each, how
    the input is unlike the training data (``medical.guard``).
    """
    image = load_volume(case.image)
    affine = np.asarray(image.affine, dtype=np.float64)
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    row = {"case": case.name, "image": str(case.key), "segmentation": None,
           "anomaly_map": None}
    names = segmenter.labels if segmenter else {}
    labels_grid = probs_grid = None
    shap_rows, case_warnings = [], []
    if segmenter is not None:
        if segmenter.input_reference_ is not None:
            case_warnings += segmenter.input_reference_.image_warnings(image.array[0], affine)
        pre = Preprocessor(segmenter.preprocess)
        grid_image = pre(image)["image"]
        probs, labels_grid, fragment_lines = segmenter.segment(grid_image.as_tensor())
        labels_input = pre.invert_argmax(probs, grid_image)
        # organ scoring keeps only the voxels the segmenter is sure of; the softmax is
        # (C, x, y, z) float32 (~200 MB at 256x256x128x6), so it is kept only when a level is set
        probs_grid = probs if scorer is not None and scorer.config.organ_confidence is not None else None
        del probs
        if run is not None:
            save_nifti(labels_input, affine, run.path(f"seg:{case.name}", f"{case.name}_seg.nii.gz"))
            row["segmentation"] = f"{case.name}_seg.nii.gz"
            if dicom_seg:
                write_segmentation(labels_input, names, affine, case.image,
                                   run.path(f"dicom_seg:{case.name}", f"{case.name}_seg.dcm"))
        for k, name in names.items():
            row[f"volume_ml_{name}"] = float((labels_input == k).sum() * voxel_ml)
            row[f"dice_{name}"] = np.nan
        case_warnings += organ_warnings(labels_input, names, voxel_ml, segmenter.input_reference_)
        case_warnings += fragment_lines
        _truth_columns(case, image, labels_input, names, row)
        del labels_input
    elif case.lesion is not None or case.has_lesion is not None:
        _truth_columns(case, image, None, {}, row)
    row.update(score=np.nan, p_value=np.nan)
    if scorer is not None:
        pre = Preprocessor(scorer.preprocess)
        grid_image = pre(image)["image"]
        del image                        # the input-grid volume is not needed any more
        if segmenter is not None and scorer.preprocess != segmenter.preprocess:
            labels_grid = probs_grid = None  # different grids: fall back to octants
        # with the segmenter's organs (same grid), a scorer calibrated with a segmenter
        # scores organ parenchyma only (medical.organ_scoring)
        error = scorer.error_map(grid_image.as_tensor(), labels_grid, probs_grid)
        body = body_mask(grid_image.as_tensor().numpy()[0])
        scored = error[error > 0]
        case_warnings += error_warning(float(np.median(scored)) if scored.size else 0.0,
                                       scorer.healthy_error)
        if run is not None:
            error_input = pre.invert(error[None], grid_image)[0]
            save_nifti(error_input, affine,
                       run.path(f"anomaly:{case.name}", f"{case.name}_anomaly.nii.gz"))
            row["anomaly_map"] = f"{case.name}_anomaly.nii.gz"
            if dicom_seg:
                write_parametric_map(error_input, affine, case.image,
                                     run.path(f"dicom_pm:{case.name}", f"{case.name}_anomaly.dcm"))
        row["score"] = scorer.case_score(error, body)
        if shap_evals:
            regions = (organ_regions(labels_grid, body, names) if labels_grid is not None
                       else octant_regions(body))
            result = scorer.region_shap(error, regions, max_evals=shap_evals)
            shap_rows = [{"case": case.name, "region": r, "shap_value": float(v),
                          "base_value": float(result.base_values[0])}
                         for r, v in zip(result.feature_names, result.values[0])]
    row["warnings"] = "\n".join(case_warnings)     # one line each ("" when none)
    return row, shap_rows


def check_dicom_inputs(cases) -> None:
    """``--dicom-seg`` needs DICOM series to reference: refuse any other input up front."""
    other = [c for c in cases if not Path(c.image).is_dir()]
    if other:
        raise DataValidationError(
            f"{other[0].image}: --dicom-seg writes a DICOM SEG referencing the input series, "
            f"but this case is a NIfTI file ({len(other)} of {len(cases)} cases are not DICOM "
            "series); leave out --dicom-seg for NIfTI input")


def infer(model_dir, images, out, anomaly_model=None, fdr: float = 0.1, shap_evals: int = 200,
          progress: bool | None = None, device="auto", precision: str = "fp32",
          dicom_seg: bool = False) -> Path:
    """Score every case of ``images`` with the models in ``model_dir``; write run ``out``.

    Args:
        model_dir: ``train`` output (``segmenter/`` + ``anomaly/``) or a single CT bundle.
        images: anything ``medical.io.find_cases`` reads.
        out: the run directory to create (replaced atomically if it exists).
        anomaly_model: a ``ct-anomaly`` bundle overriding ``model_dir``'s.
        fdr: Benjamini-Hochberg level for ``is_alert``.
        shap_evals: SHAP evaluation budget per case.
        progress: a bar over the cases on stderr (None: only on a terminal; False: never).
        device: where the networks run (auto, cpu, cuda, cuda:N).
        precision: ``"fp32"``, or ``"bf16"`` (CUDA autocast).
        dicom_seg: also write a DICOM SEG and Parametric Map per case (DICOM series only).

    Returns:
        ``out``.

    Warns:
        UnmaskWarning: one per line of ``summary["input_warnings"]`` (about ``images`` as
            a whole: an image file listed twice, :func:`medical.io.find_cases`), of
            ``summary["warnings"]`` (``"case: line"``, a case unlike the training data) and
            ``summary["warning"]`` (no anomaly model, or no alert reachable at ``fdr``).
    """
    check_output(out, [model_dir, images, anomaly_model])  # before loading and scoring
    with recorded_warnings() as listing_warnings:          # e.g. an image file listed twice
        cases = find_cases(images)
    if dicom_seg:
        check_dicom_inputs(cases)
    segmenter, scorer = load_models(model_dir, anomaly_model, device, precision)
    rows, shap_rows, case_lines = [], [], []
    params = {"fdr": fdr, "shap_evals": shap_evals, "anomaly_model": str(anomaly_model or ""),
              "dicom_seg": dicom_seg}
    with create_run(out, "medical", kind="infer", params=params, model=str(Path(model_dir).resolve()),
                    inputs=[str(c.key) for c in cases]) as run:
        for case in progress_bar(cases, desc="infer", unit="case", show=progress):
            row, case_shap = score_case(case, segmenter, scorer, run, shap_evals, dicom_seg)
            case_lines += [f"{case.name}: {w}" for w in row["warnings"].splitlines()]
            rows.append(row)
            shap_rows.extend(case_shap)
        scores = pd.DataFrame(rows)
        has_scores = scorer is not None  # a loaded scorer is always calibrated
        if has_scores:
            scores["p_value"] = scorer.calibration_.p_values(scores["score"].to_numpy())
            scores["is_alert"] = scorer.calibration_.alerts(scores["score"].to_numpy(), fdr=fdr)
        else:
            scores["is_alert"] = False
        order = np.argsort(-scores["score"].fillna(-np.inf).to_numpy(), kind="stable")
        scores = scores.iloc[order].reset_index(drop=True)
        scores["rank"] = np.arange(1, len(scores) + 1, dtype=np.int64)
        scores.to_parquet(run.path("scores", "scores.parquet"), index=False)
        shap = pd.DataFrame(shap_rows, columns=["case", "region", "shap_value", "base_value"])
        shap.to_parquet(run.path("region_shap", "region_shap.parquet"), index=False)
        labels = segmenter.labels if segmenter else {}
        summary = {"labels": {str(k): v for k, v in labels.items()}, "n_cases": len(scores),
                   "n_alerts": int(scores["is_alert"].sum()), "fdr": fdr,
                   "has_segmentation": segmenter is not None, "has_anomaly_maps": scorer is not None}
        if segmenter is not None and segmenter.postprocessing_ is not None:
            # organs cut to their largest part (medical.postprocess), decided at train time
            summary["kept_largest_part"] = segmenter.postprocessing_.keep_largest
        if has_scores:                   # what the dashboard's drift panel compares against
            summary["calibration_reference"] = calibration_reference(scorer.calibration_)
        unreachable = (scorer.calibration_.fdr_unreachable(fdr) if has_scores and fdr is not None
                       else None)
        summary["input_warnings"] = listing_warnings          # the input as a whole
        summary["warnings"] = case_lines               # "case: how it is unlike the training data"
        for line in case_lines:
            warnings.warn(line, UnmaskWarning, stacklevel=2)
        if not has_scores:               # a segmenter trained without --pretrained
            summary["warning"] = ("no anomaly model: segmentations only, no anomaly scores, "
                                  "heat maps or alerts; train with --pretrained, or give infer "
                                  "--anomaly-model")
            warnings.warn(f"{model_dir}: {summary['warning']}", UnmaskWarning, stacklevel=2)
        if unreachable:                  # say why the queue has no alerts
            n, need = scorer.calibration_.calibration_scores_.size, scorer.calibration_.scores_needed(fdr)
            summary["warning"] = (f"nothing can be flagged at FDR {fdr:g} yet: the anomaly model was "
                                  f"calibrated on {counted(n, 'healthy case')} and needs "
                                  f"{need - n} more (at least {need}); cases are still ranked by score")
            warnings.warn(f"{model_dir}: {summary['warning']}", UnmaskWarning, stacklevel=2)
        if has_scores and "has_lesion" in scores and scores["has_lesion"].nunique() == 2:
            summary["auroc"] = auroc(scores["has_lesion"], scores["score"])
            summary["average_precision"] = auprc(scores["has_lesion"], scores["score"])
        run.summarize(**summary)
    return Path(out)
