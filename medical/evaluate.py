"""``unmask medical evaluate``: compare a run's outputs with the truth in a dataset.

Segmentation: Dice per organ per case (on the input grid). Anomaly maps, as in
MedIAnomaly (2025): case AUROC and average precision of ``score`` against ``has_lesion``,
voxel average precision of the map against the lesion masks over voxels inside the body,
and the best Dice any single threshold of the map achieves (max F1 over the PR curve).

Example:
    >>> report = evaluate("runs/medical/r1", "data/medical/test")     # doctest: +SKIP
    >>> report["mean_dice"], report["voxel_ap"]                        # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import DataValidationError
from core.metrics import auprc, auroc, dice

from .io import find_cases, load_label_like, load_volume, read_dataset_json

BODY_HU = -500.0


def best_dice(truth: np.ndarray, scores: np.ndarray) -> float:
    """Highest Dice of ``scores > t`` over all thresholds ``t`` (= max F1 on the PR curve)."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(truth, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(f1.max())


def segmentation_dice(pred_dir: Path, case, image, names: dict[int, str]) -> dict[str, float] | None:
    """Dice per organ of ``<case>_seg.nii.gz`` (``None`` when the file is missing)."""
    path = pred_dir / f"{case.name}_seg.nii.gz"
    if not path.is_file() or case.label is None:
        return None
    pred = load_label_like(path, image, case.image).as_tensor().numpy()[0]
    truth = load_label_like(case.label, image, case.image).as_tensor().numpy()[0]
    return {name: dice(truth == k, pred == k) for k, name in names.items()}


def evaluate(pred_dir, data_dir) -> dict:
    """Metrics of the run in ``pred_dir`` against the truth of ``data_dir``.

    Returns:
        ``{"n_cases", "dice": {organ: mean}, "mean_dice", "case_auroc", "case_ap",
        "voxel_ap", "best_dice", "per_case": [...]}`` (keys absent when not computable).
    """
    import pandas as pd

    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataValidationError(f"{pred_dir}: no such prediction directory")
    cases = find_cases(data_dir)
    names = read_dataset_json(data_dir)["labels"] if (Path(data_dir) / "dataset.json").is_file() else {}
    per_case, voxel_scores, voxel_truth, case_truth = [], [], [], {}
    for case in cases:
        image = load_volume(case.image)
        row = {"case": case.name}
        dice_row = segmentation_dice(pred_dir, case, image, names)
        if dice_row is not None:
            row.update({f"dice_{k}": v for k, v in dice_row.items()})
        anomaly_path = pred_dir / f"{case.name}_anomaly.nii.gz"
        if case.lesion is not None:
            lesion = load_label_like(case.lesion, image, case.image).as_tensor().numpy()[0] > 0
            case_truth[case.name] = bool(lesion.any())
            if anomaly_path.is_file():
                error = load_label_like(anomaly_path, image, case.image).as_tensor().numpy()[0]
                body = image.as_tensor().numpy()[0] > BODY_HU
                voxel_scores.append(error[body])
                voxel_truth.append(lesion[body])
        elif case.has_lesion is not None:
            case_truth[case.name] = bool(case.has_lesion)
        if len(row) > 1 or anomaly_path.is_file():
            per_case.append(row)
    if not per_case:
        raise DataValidationError(f"{pred_dir}: no <case>_seg.nii.gz or <case>_anomaly.nii.gz "
                                  f"for any case of {data_dir}")
    report: dict = {"n_cases": len(per_case), "per_case": per_case}
    table = pd.DataFrame(per_case)
    dice_cols = [c for c in table if c.startswith("dice_")]
    if dice_cols:
        report["dice"] = {c[5:]: float(table[c].mean()) for c in dice_cols}
        report["mean_dice"] = float(np.mean(list(report["dice"].values())))
    scores_path = pred_dir / "scores.parquet"
    if scores_path.is_file() and case_truth:
        scores = pd.read_parquet(scores_path)
        scores = scores[scores["case"].isin(case_truth) & scores["score"].notna()]
        truth = scores["case"].map(case_truth).astype(int)
        if truth.nunique() == 2:
            report["case_auroc"] = auroc(truth, scores["score"])
            report["case_ap"] = auprc(truth, scores["score"])
    if voxel_scores:
        scores_v, truth_v = np.concatenate(voxel_scores), np.concatenate(voxel_truth)
        if truth_v.any():
            report["voxel_ap"] = auprc(truth_v, scores_v)
            report["best_dice"] = best_dice(truth_v, scores_v)
    return report
