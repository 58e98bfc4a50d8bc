"""How the finance unsupervised score combines its per-feature terms: variants measured on
the models a ``python -m bench.finance --worlds --workdir W`` run leaves in ``W``.

Not part of the benchmark. ``cache`` re-derives each model's held-out training rows (the
same seeded draws as ``FinanceModel.fit``), and stores the per-feature terms of every part
(network errors, neighbour distance split, right and left tails) for those rows and the
test week, with the same-run IsolationForest's test scores. ``compare`` then scores the
test week by each variant in :data:`VARIANTS` (every one fitted on the held-out rows only)
and prints the AP ratio to the forest and both AUROCs per world and seed, with the
minimum and mean over seeds (the selection rule: the minimum on our simulator; world 2 is
read once, after the choice).

Example::

    python -m bench.experiments.finance_score_variants cache W own 0 1 2
    python -m bench.experiments.finance_score_variants compare W own 0 1 2
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from bench.finance import PLAIN_FEATURES, _own_canonical, _world2_canonical, plain_features
from core.metrics import auprc, auroc
from core.runtime import configure_threads
from finance.detector import FinanceModel
from finance.features import category_context, featurise, feature_names
from finance.train import read_features


def _split(model: FinanceModel, features_path, test_start) -> pd.DataFrame:
    """The held-out training rows of ``model`` (``FinanceModel.fit``'s draws, replayed)."""
    cfg = model.config
    frame = read_features(features_path, until=str(test_start),
                          columns=feature_names(cfg.features) + list(category_context(cfg.features))
                          + ["_row", "timestamp"], max_rows=cfg.max_train_rows, seed=cfg.random_state)
    R = np.random.default_rng(cfg.random_state)
    if len(frame) > cfg.max_train_rows:
        frame = frame.iloc[np.sort(R.choice(len(frame), cfg.max_train_rows, replace=False))]
    mask = np.zeros(len(frame), bool)
    mask[R.choice(len(frame), min(cfg.calibration_rows, len(frame) // 5), replace=False)] = True
    return frame[mask]


def _terms(model: FinanceModel, rows: pd.DataFrame) -> dict:
    cells = model._cell_terms(rows)
    X = model._matrix(rows, model.detector_features_).to_numpy()
    S = model.tails_.sorted_
    below = np.column_stack([np.searchsorted(S[:, j], X[:, j], side="right") for j in range(X.shape[1])])
    return {"network": cells["network"], "knn": cells["knn"], "right": cells["tails"],
            "left": -np.log((below + 1.0) / (len(S) + 1.0))}


def cache(work: Path, world: str, seed: int) -> Path:
    data = work / (f"own_{seed}.parquet" if world == "own" else "world2.parquet")
    canonical = _own_canonical(data) if world == "own" else _world2_canonical(data)
    model = FinanceModel.load(work / f"{world}_model_{seed}")
    features = work / f"variants_features_{world}_{seed}.parquet"
    if not features.exists():
        featurise(data, features, cfg=model.config.features)
    test_start = canonical["time"].max().normalize() - pd.Timedelta(days=6)
    plain = plain_features(canonical, world != "own").merge(canonical[["id", "fraud", "pattern"]], on="id")
    purchases = plain[plain["amount"] >= 0]
    train, test = purchases[purchases["time"] < test_start], purchases[purchases["time"] >= test_start]
    forest = IsolationForest(n_estimators=200, random_state=seed, n_jobs=1).fit(train[list(PLAIN_FEATURES)])
    test_rows = read_features(features, since=str(test_start)).set_index("transaction_id").reindex(test["id"])
    held, tested = _terms(model, _split(model, features, test_start)), _terms(model, test_rows.reset_index())
    out = work / f"variants_{world}_{seed}.npz"
    np.savez(out, y=test["fraud"].to_numpy(), iso=-forest.score_samples(test[list(PLAIN_FEATURES)]),
             **{f"held_{k}": v for k, v in held.items()}, **{f"test_{k}": v for k, v in tested.items()})
    return out


def _standard(x, ref):
    q25, median, q75 = np.quantile(ref, [0.25, 0.5, 0.75])
    return (x - median) / max(q75 - q25, 1e-12)


def _floored(test, held, q):
    if q is None:
        return test, held
    floor = np.quantile(held, q, axis=0)
    return np.maximum(test - floor, 0), np.maximum(held - floor, 0)


def _ecod_rule(t: dict) -> np.ndarray:
    """ECOD's rule without the skewness sum: the larger of the left and right sums."""
    return np.where(t["left"].sum(1, keepdims=True) > t["right"].sum(1, keepdims=True), t["left"], t["right"])


def variant(tails: str, network_q=None, tail_q=None, network_weight=1.0):
    """Detector (network floored at ``network_q``, x ``network_weight``, + neighbours) plus
    tails (``"right"`` or ``"ecod"``, floored at ``tail_q``), each standardised on held-out rows."""
    def score(t: dict, h: dict) -> np.ndarray:
        nt, nh = _floored(t["network"], h["network"], network_q)
        tt, th = (t["right"], h["right"]) if tails == "right" else (_ecod_rule(t), _ecod_rule(h))
        tt, th = _floored(tt, th, tail_q)
        return (_standard((network_weight * nt + t["knn"]).sum(1), (network_weight * nh + h["knn"]).sum(1))
                + _standard(tt.sum(1), th.sum(1)))
    return score


VARIANTS = {
    "ECOD rule, no floors": variant("ecod"),
    "right tails, no floors": variant("right"),
    "right tails, tail floor 0.75": variant("right", tail_q=0.75),
    "right tails, network floor 0.99": variant("right", network_q=0.99),
    "right tails, floors 0.95 / 0.75": variant("right", network_q=0.95, tail_q=0.75),
    "right tails, floors 0.99 / 0.75 (default)": variant("right", network_q=0.99, tail_q=0.75),
    "right tails, tail floor 0.75, no network": variant("right", tail_q=0.75, network_weight=0.0),
}


def compare(work: Path, world: str, seeds) -> None:
    runs = {s: {k: v for k, v in np.load(work / f"variants_{world}_{s}.npz").items()} for s in seeds}
    for name, score in VARIANTS.items():
        cells = []
        for s, z in runs.items():
            test = {k[5:]: v for k, v in z.items() if k.startswith("test_")}
            held = {k[5:]: v for k, v in z.items() if k.startswith("held_")}
            sc, y, iso = score(test, held), z["y"], z["iso"]
            cells.append((s, auprc(y, sc) / auprc(y, iso), auroc(y, sc), auroc(y, iso)))
        ratios = [c[1] for c in cells]
        print(f"{name:44s} min {min(ratios):.3f} mean {np.mean(ratios):.3f} | "
              + "  ".join(f"{s}: {r:.3f}x AUROC {a:.3f}/{b:.3f}" for s, r, a, b in cells), flush=True)


if __name__ == "__main__":
    configure_threads()
    command, work, world, *seeds = sys.argv[1:]
    if command == "cache":
        for s in seeds:
            print(cache(Path(work), world, int(s)), flush=True)
    else:
        compare(Path(work), world, [int(s) for s in seeds])
