"""Synthetic workspaces written exactly in the layout of docs/runs.md (and docs/contracts.md's
drive-log contract), without any model: fast fixtures for the dashboard's tests and the
1 M-transaction benchmark. Known structure is planted so tests can assert on it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.calibration import ScoreCalibration
from core.drift import calibration_reference
from core.io import write_parquet_atomic
from core.runs import create_run

FEATURES = ("amount_ratio_30d", "hour_of_day", "terminal_fraud_rate", "distance_km",
            "tx_count_1d", "card_not_present")
EXPECTED_SCORE = 0.2
NORMAL_SPREAD = 0.02 * np.sqrt(len(FEATURES))    # sd of a normal transaction's score


def _reference(normal_scores, contamination: float = 0.05) -> dict:
    """The calibration reference a scoring command writes, from these normal scores."""
    return calibration_reference(ScoreCalibration(contamination).fit(normal_scores))


def write_finance_run(ws, n: int = 400, alert_rate: float = 0.05, seed: int = 0,
                      run_id: str = "finance-run", days: int = 30,
                      calibration_shift: float = 0.0) -> Path:
    """Transactions in ``ws/data/finance`` and a scored run in ``ws/runs/finance/run_id``.

    Scores are ``EXPECTED_SCORE`` + the sum of per-feature SHAP values (exact additivity);
    the top ``alert_rate`` are alerts, explained in ``explanations.parquet``. The calibration
    reference is 2000 normal scores, their mean moved by ``calibration_shift``.
    """
    rng = np.random.default_rng(seed)
    ws = Path(ws)
    n_customers = max(5, n // 40)
    start = pd.Timestamp("2026-01-01")
    seconds = np.sort(rng.uniform(0, days * 86400, n))
    ids = pa.array([f"tx{i:08d}" for i in range(n)], pa.string())
    customers = pa.array(np.char.add("c", rng.integers(0, n_customers, n).astype(str)), pa.string())
    terminals = pa.array(np.char.add("t", rng.integers(0, 3 * n_customers, n).astype(str)), pa.string())
    amount = np.round(rng.lognormal(3.5, 0.8, n), 2)
    timestamp = pa.array((start.value // 1000 + (seconds * 1e6).astype(np.int64)), pa.timestamp("us"))
    transactions = pa.table({"transaction_id": ids, "timestamp": timestamp,
                             "customer_id": customers, "terminal_id": terminals,
                             "amount": pa.array(amount)})
    data_path = ws / "data" / "finance" / "transactions.parquet"
    write_parquet_atomic(transactions, data_path)

    d = len(FEATURES)
    shap = rng.normal(0.0, 0.02, (n, d))
    fraud = rng.random(n) < alert_rate * 0.6
    shap[fraud, 0] += rng.uniform(0.3, 0.8, fraud.sum())
    score = EXPECTED_SCORE + shap.sum(axis=1)
    order = np.argsort(-score, kind="stable")
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(1, n + 1)
    n_alerts = max(1, int(round(alert_rate * n)))
    is_alert = rank <= n_alerts
    p_value = rank / (n + 1.0)
    values = np.abs(rng.normal(1.0, 0.5, (n, d)))
    usual = np.ones((n, d))
    top = np.argsort(-shap, axis=1)[:, :3]
    columns = {"transaction_id": ids, "timestamp": timestamp, "customer_id": customers,
               "terminal_id": terminals, "amount": pa.array(amount), "score": pa.array(score),
               "p_value": pa.array(p_value), "is_alert": pa.array(is_alert),
               "warming_up": pa.array(np.zeros(n, bool)), "rank": pa.array(rank)}
    names = np.array(FEATURES)
    for k in range(3):
        j = top[:, k]
        rows = np.arange(n)
        feature = np.where(is_alert, names[j], None)
        text = np.where(is_alert, np.char.add(names[j], np.char.add(" ", np.char.mod(
            "%.1fx usual", values[rows, j] / usual[rows, j]))), None)
        columns[f"reason_{k + 1}_feature"] = pa.array(feature.tolist(), pa.string())
        columns[f"reason_{k + 1}_shap"] = pa.array(np.where(is_alert, shap[rows, j], np.nan), from_pandas=True)
        columns[f"reason_{k + 1}_value"] = pa.array(np.where(is_alert, values[rows, j], np.nan), from_pandas=True)
        columns[f"reason_{k + 1}_usual"] = pa.array(np.where(is_alert, usual[rows, j], np.nan), from_pandas=True)
        columns[f"reason_{k + 1}_text"] = pa.array(text.tolist(), pa.string())
    columns["is_fraud"] = pa.array(fraud)
    scores = pa.table(columns).take(pa.array(order))  # sorted by rank

    alerts = np.flatnonzero(is_alert)
    explanations = pa.table({
        "transaction_id": pa.array(np.repeat(np.array([f"tx{i:08d}" for i in alerts]), d)),
        "feature": pa.array(np.tile(names, len(alerts))),
        "shap_value": pa.array(shap[alerts].ravel()),
        "value": pa.array(values[alerts].ravel()), "usual_value": pa.array(usual[alerts].ravel())})
    run_dir = ws / "runs" / "finance" / run_id
    with create_run(run_dir, "finance", "score", params={"budget": n_alerts},
                    model=str(ws / "models" / "finance" / "default"),
                    inputs=[str(data_path.resolve())]) as run:
        pq.write_table(scores, run.path("scores", "scores.parquet"), row_group_size=128 * 1024)
        pq.write_table(explanations, run.path("explanations", "explanations.parquet"))
        run.summarize(n_transactions=n, n_alerts=n_alerts, expected_score=EXPECTED_SCORE,
                      budget=n_alerts, calibration_reference=_reference(rng.normal(
                          EXPECTED_SCORE + calibration_shift, NORMAL_SPREAD, 2000)))
    return run_dir


def _phantom(shape, spacing, lesion: bool, rng):
    """HU image, labels (1 liver, 2 spleen) and a lesion mask of an ellipsoid body."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(float)
    centre = (np.array(shape) - 1) / 2.0
    r = (grid - centre) / (np.array(shape) / 2.0)
    body = (r[..., 0] ** 2 + r[..., 1] ** 2) < 0.8
    image = np.where(body, 40.0, -1000.0) + rng.normal(0, 5, shape)
    liver = ((grid - centre + [shape[0] * 0.2, 0, 0]) ** 2 / (np.array(shape) * 0.18) ** 2).sum(-1) < 1
    spleen = ((grid - centre - [shape[0] * 0.22, 0, 0]) ** 2 / (np.array(shape) * 0.1) ** 2).sum(-1) < 1
    labels = np.zeros(shape, np.uint8)
    labels[liver] = 1
    labels[spleen] = 2
    image[liver] = 60.0
    image[spleen] = 45.0
    lesion_mask = np.zeros(shape, bool)
    if lesion:
        c = centre - [shape[0] * 0.2, 0, 0]
        lesion_mask = ((grid - c) ** 2).sum(-1) < (min(shape) * 0.12) ** 2
        image[lesion_mask] = 10.0
    error = np.abs(rng.normal(0, 0.02, shape)) * body + lesion_mask * 0.8
    return image.astype(np.int16), labels, lesion_mask, error.astype(np.float32)


def write_medical_run(ws, n_cases: int = 2, shape=(24, 20, 12), spacing=(1.5, 1.5, 3.0),
                      seed: int = 0, run_id: str = "medical-run",
                      anomaly_model: bool = True) -> Path:
    """Phantom NIfTI images in ``ws/data/medical`` and an inference run; the first case has a
    lesion (the hot anomaly map) and ranks first. ``anomaly_model=False``: the run of a
    segmenter alone, as ``medical infer`` writes it (segmentations; no anomaly maps, scores,
    p-values, alerts or SHAP)."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    ws = Path(ws)
    affine = np.diag(list(spacing) + [1.0])
    images = ws / "data" / "medical" / "test" / "imagesTs"
    images.mkdir(parents=True, exist_ok=True)
    rows, shap_rows, volumes = [], [], {}
    for i in range(n_cases):
        name = f"patient_{i:03d}"
        image, labels, lesion, error = _phantom(shape, spacing, lesion=(i == 0), rng=rng)
        path = images / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(image, affine), str(path))
        volumes[name] = (labels, error)
        voxel_ml = float(np.prod(spacing)) / 1000.0
        score = float(error.sum())
        rows.append({"case": name, "image": str(path.resolve()), "segmentation": f"{name}_seg.nii.gz",
                     "anomaly_map": f"{name}_anomaly.nii.gz", "score": score,
                     "volume_ml_liver": float((labels == 1).sum() * voxel_ml),
                     "volume_ml_spleen": float((labels == 2).sum() * voxel_ml),
                     "dice_liver": 0.9 - 0.01 * i, "dice_spleen": np.nan, "has_lesion": i == 0})
        for region, value in (("liver", 0.6 * score if i == 0 else 0.01), ("spleen", 0.02),
                              ("background", -0.01)):
            shap_rows.append({"case": name, "region": region, "shap_value": value, "base_value": 1.0})
    scores = pd.DataFrame(rows).sort_values("score", ascending=False).reset_index(drop=True)
    scores["p_value"] = np.linspace(0.01, 0.5, len(scores))
    if not anomaly_model:
        scores = scores.drop(columns="anomaly_map").assign(score=np.nan, p_value=np.nan)
        shap_rows = []
    scores["is_alert"] = scores["p_value"] < 0.05
    scores["rank"] = np.arange(1, len(scores) + 1, dtype=np.int64)
    run_dir = ws / "runs" / "medical" / run_id
    with create_run(run_dir, "medical", "infer", inputs=[r["image"] for r in rows]) as run:
        for name, (labels, error) in volumes.items():
            nib.save(nib.Nifti1Image(labels, affine), str(run.path(f"seg:{name}", f"{name}_seg.nii.gz")))
            if anomaly_model:
                nib.save(nib.Nifti1Image(error, affine),
                         str(run.path(f"anomaly:{name}", f"{name}_anomaly.nii.gz")))
        scores.to_parquet(run.path("scores", "scores.parquet"), index=False)
        pd.DataFrame(shap_rows, columns=["case", "region", "shap_value", "base_value"]).to_parquet(
            run.path("region_shap", "region_shap.parquet"), index=False)
        calibration = ({"calibration_reference": _reference(rng.uniform(0.0, 50.0, 20))}
                       if anomaly_model else {})
        run.summarize(labels={"1": "liver", "2": "spleen"}, n_cases=len(scores),
                      n_alerts=int(scores["is_alert"].sum()), has_anomaly_maps=anomaly_model,
                      warning="a warning the run wrote into its summary", **calibration)
    return run_dir


CLASSES = ("off_road", "road", "lane_marking", "sidewalk", "vehicle", "pedestrian",
           "static_obstacle")


def _list_column(values: np.ndarray, arrow_type) -> pa.Array:
    t, n = values.shape
    offsets = pa.array(np.arange(0, (t + 1) * n, n, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), type=arrow_type))


def write_driving_run(ws, n_frames: int = 40, grid=(32, 32), anomaly_frames=range(20, 25),
                      seed: int = 0, log_id: str = "log_000", run_id: str = "driving-run") -> Path:
    """One drive log (docs/contracts.md's log contract) and a scored run; the frames in
    ``anomaly_frames`` have a pedestrian in the hidden area and are the alerts."""
    rng = np.random.default_rng(seed)
    ws = Path(ws)
    h, w = grid
    ego = (int(h * 0.7), w // 2)
    anomaly_frames = set(anomaly_frames)
    truth = np.zeros((n_frames, h, w), np.uint8)
    truth[:, :, w // 2 - 4: w // 2 + 4] = 1                     # road
    truth[:, :, w // 2] = 2                                      # lane marking
    truth[:, :, w // 2 - 6: w // 2 - 4] = 3                      # sidewalks
    truth[:, :, w // 2 + 4: w // 2 + 6] = 3
    rows, cols = np.mgrid[0:h, 0:w]
    visible = np.zeros((n_frames, h, w), bool)
    for t in range(n_frames):
        car = (t % h, w // 2 - 3)
        truth[t, car[0]:car[0] + 3, car[1]:car[1] + 2] = 4
        visible[t] = np.abs(cols - ego[1]) <= (ego[0] - rows) * 0.6 + 2
        visible[t, : h // 4] = False
        if t in anomaly_frames:
            truth[t, 2:5, w // 2 + 1: w // 2 + 3] = 5               # pedestrian, hidden
    semantic = np.where(visible, truth, 255).astype(np.uint8)
    meta = {"version": 1, "grid_shape": [h, w], "resolution_m": 0.5, "classes": list(CLASSES),
            "ego_cell": list(ego), "rate_hz": 10.0}
    frame = np.arange(n_frames, dtype=np.int64)
    log = pa.table({
        "log_id": pa.array([log_id] * n_frames), "frame": pa.array(frame),
        "timestamp": pa.array(frame / 10.0), "ego_x": pa.array(frame * 1.0),
        "ego_y": pa.array(np.zeros(n_frames)), "ego_yaw": pa.array(np.zeros(n_frames)),
        "ego_speed": pa.array(np.full(n_frames, 10.0)),
        "semantic": _list_column(semantic.reshape(n_frames, -1), pa.uint8()),
        "visible": _list_column(visible.reshape(n_frames, -1), pa.bool_()),
        "semantic_true": _list_column(truth.reshape(n_frames, -1), pa.uint8()),
        "anomaly": pa.array([t in anomaly_frames for t in range(n_frames)])})
    log = log.replace_schema_metadata({b"unmask": json.dumps(meta).encode()})
    log_path = ws / "data" / "driving" / f"{log_id}.parquet"
    write_parquet_atomic(log, log_path)

    predicted = np.where(truth == 5, 1, truth).astype(np.uint8)  # the model misses the pedestrian
    error = np.where((truth != predicted) & ~visible, 230, rng.integers(0, 20, truth.shape)).astype(np.uint8)
    confidence = np.where(visible, 255, 160).astype(np.uint8)
    road_layout = np.where(np.isin(truth, (1, 2, 4)), 230, 10).astype(np.uint8)   # cars on road
    anomaly = np.array([t in anomaly_frames for t in range(n_frames)])
    score = 0.1 + 0.02 * rng.random(n_frames) + anomaly * 1.0
    frames_table = pd.DataFrame({
        "log_id": log_id, "frame": frame, "timestamp": frame / 10.0, "score": score,
        "p_value": np.where(anomaly, 0.001, 0.5), "is_alert": anomaly,
        "surprise_revealed": score * 0.5, "visible_error": 0.05 + 0.01 * rng.random(n_frames),
        "anomaly": anomaly})
    cells = pa.table({"log_id": pa.array([log_id] * n_frames), "frame": pa.array(frame),
                      "predicted": _list_column(predicted.reshape(n_frames, -1), pa.uint8()),
                      "confidence": _list_column(confidence.reshape(n_frames, -1), pa.uint8()),
                      "error": _list_column(error.reshape(n_frames, -1), pa.uint8()),
                      "road_layout": _list_column(road_layout.reshape(n_frames, -1), pa.uint8())})
    top = sorted(anomaly_frames)[:2]
    shap = pd.DataFrame([{"log_id": log_id, "frame": f, "region": region, "shap_value": v,
                          "base_value": 0.1}
                         for f in top for region, v in (("front", 0.8), ("left", 0.05), ("right", 0.05))])
    run_dir = ws / "runs" / "driving" / run_id
    with create_run(run_dir, "driving", "score", inputs=[str(log_path.resolve())]) as run:
        frames_table.to_parquet(run.path("frames", "frames.parquet"), index=False)
        pq.write_table(cells, run.path(f"cells:{log_id}", f"cells/{log_id}.parquet"))
        shap.to_parquet(run.path("region_shap", "region_shap.parquet"), index=False)
        run.path(f"recording:{log_id}", f"recordings/{log_id}.rrd").write_bytes(b"RRF2 synthetic")
        run.summarize(grid_shape=[h, w], classes=list(CLASSES), n_frames=n_frames,
                      n_alerts=int(anomaly.sum()), error_scale=0.01,
                      calibration_reference=_reference(0.1 + 0.02 * rng.random(200)))
    return run_dir


def write_workspace(ws, n_transactions: int = 400) -> dict[str, Path]:
    """A workspace with one run per vertical; returns the run directories."""
    return {"finance": write_finance_run(ws, n=n_transactions),
            "medical": write_medical_run(ws), "driving": write_driving_run(ws)}
