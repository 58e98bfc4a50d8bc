"""How the finance unsupervised score combines its per-feature terms: variants measured on
the models a ``python -m bench.finance --worlds --workdir W`` run leaves in ``W``.

Not part of the benchmark. ``cache`` re-derives each model's held-out training rows
(``finance.train.training_rows`` and ``finance.detector.draw_heldout``: the read and the
seeded draws of ``train`` and ``FinanceModel.fit``), and stores the per-feature terms of
every part (network errors, neighbour distance split, right and left tails) for those rows
and the test week, with the same-run IsolationForest's test scores (``bench.finance``'s
split and forest). ``compare`` then scores the
test week by each variant in :data:`VARIANTS` (every one fitted on the held-out rows only)
and prints the AP ratio to the forest and both AUROCs per world and seed, with the
minimum and mean ratio and the smallest AUROC margin (unmask - forest) over seeds (the
selection rule: both minima on our simulator's seeds 0-2; fresh seeds and world 2 are read
once, after the choice). ``ties`` counts how many test rows share a score with
another row under the default score, and how many have every floored term at zero (the
rows whose order only the unfloored neighbour distance sets).

Example::

    python -m bench.experiments.finance_score_variants cache W own 0 1 2
    python -m bench.experiments.finance_score_variants compare W own 0 1 2
    python -m bench.experiments.finance_score_variants ties W own 0 1 2
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench.finance import _forest_scores, _own_canonical, _split, _world2_canonical
from core.metrics import auprc, auroc
from core.runtime import configure_threads
from finance.detector import FinanceModel, draw_heldout
from finance.features import featurise
from finance.train import read_features, training_rows


def _heldout_rows(model: FinanceModel, features_path, test_start) -> pd.DataFrame:
    """The held-out training rows of ``model``: ``train``'s read and ``FinanceModel.fit``'s
    draws, replayed with the model's own config."""
    frame = training_rows(features_path, str(test_start), model.config)
    return draw_heldout(frame, model.config, np.random.default_rng(model.config.random_state))[0]


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
    test_start, train, test = _split(canonical, degrees=world != "own")
    test_rows = read_features(features, since=str(test_start)).set_index("transaction_id").reindex(test["id"])
    held, tested = _terms(model, _heldout_rows(model, features, test_start)), _terms(model, test_rows.reset_index())
    out = work / f"variants_{world}_{seed}.npz"
    np.savez(out, y=test["fraud"].to_numpy(), iso=_forest_scores(train, test, seed),
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


def lexicographic(primary, secondary):
    """``primary``, its ties (and only them) ordered by ``secondary``: the secondary score is
    rescaled to [0, 1] and multiplied by half the smallest gap between distinct primary
    scores, so it can never reorder two rows whose primary scores differ."""
    def score(t: dict, h: dict) -> np.ndarray:
        first, second = primary(t, h), secondary(t, h)
        distinct = np.unique(first)
        gap = np.diff(distinct).min() if distinct.size > 1 else 1.0
        span = max(second.max() - second.min(), 1e-12)
        return first + 0.5 * gap * (second - second.min()) / span
    return score


def _unfloored_tails(t: dict, h: dict) -> np.ndarray:
    return t["right"].sum(1)


def _bins(held, test, n_bins):
    """Each feature's right-tail term binned at its held-out quantiles: (held, test) codes."""
    def codes(x, edges):
        return np.column_stack([np.searchsorted(e, x[:, j], side="right") for j, e in enumerate(edges)])

    edges = [np.unique(np.quantile(held[:, j], np.linspace(0, 1, n_bins + 1)[1:-1])) for j in range(held.shape[1])]
    return codes(held, edges), codes(test, edges)


def joint_tails(h: dict, t: dict, n_bins: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise joint right tails ``-log P(X_i >= x_i and X_j >= x_j)`` for every feature
    pair, estimated on the held-out rows (2-D histogram of binned right-tail terms, +1
    smoothing): (held ``(n, d(d-1)/2)``, test)."""
    held_codes, test_codes = _bins(h["right"], t["right"], n_bins)
    n = len(held_codes)
    out_h, out_t = [], []
    for i, j in itertools.combinations(range(held_codes.shape[1]), 2):
        counts = np.zeros((n_bins + 1, n_bins + 1))
        np.add.at(counts, (held_codes[:, i], held_codes[:, j]), 1)
        above = counts[::-1, ::-1].cumsum(0).cumsum(1)[::-1, ::-1]   # rows with both codes >= (a, b)
        out_h.append(-np.log((above[held_codes[:, i], held_codes[:, j]] + 1) / (n + 1)))
        out_t.append(-np.log((above[test_codes[:, i], test_codes[:, j]] + 1) / (n + 1)))
    return np.column_stack(out_h), np.column_stack(out_t)


DEFAULT = variant("right", network_q=0.99, tail_q=0.75)   # FinanceModel's scoring


def with_pairs(replace_tails: bool, floor_q=0.75):
    """The default score with the pairwise joint tails (floored at their held-out
    ``floor_q``) as a third standardised part, or in place of the per-feature tails."""

    def score(t: dict, h: dict) -> np.ndarray:
        jh, jt = joint_tails(h, t)
        jt, jh = _floored(jt, jh, floor_q)
        pairs = _standard(jt.sum(1), jh.sum(1))
        if not replace_tails:
            return DEFAULT(t, h) + pairs
        nt, nh = _floored(t["network"], h["network"], 0.99)
        return _standard((nt + t["knn"]).sum(1), (nh + h["knn"]).sum(1)) + pairs
    return score


VARIANTS = {
    "ECOD rule, no floors": variant("ecod"),
    "right tails, no floors": variant("right"),
    "right tails, tail floor 0.75": variant("right", tail_q=0.75),
    "right tails, network floor 0.99": variant("right", network_q=0.99),
    "right tails, floors 0.95 / 0.75": variant("right", network_q=0.95, tail_q=0.75),
    "right tails, floors 0.99 / 0.75 (default)": DEFAULT,
    "right tails, tail floor 0.75, no network": variant("right", tail_q=0.75, network_weight=0.0),
    "default, ties by unfloored tails": lexicographic(DEFAULT, _unfloored_tails),
    "default + pairwise joint tails (3rd part)": with_pairs(replace_tails=False),
    "pairwise joint tails instead of tails": with_pairs(replace_tails=True),
    "default + unfloored tails (3rd part)": lambda t, h: (DEFAULT(t, h)
                                                          + _standard(t["right"].sum(1), h["right"].sum(1))),
}


def _load(work: Path, world: str, seed) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """A cached seed: (test terms, held-out terms, labels, the forest's test scores)."""
    z = dict(np.load(work / f"variants_{world}_{seed}.npz"))
    part = lambda prefix: {k[len(prefix):]: v for k, v in z.items() if k.startswith(prefix)}
    return part("test_"), part("held_"), z["y"], z["iso"]


def compare(work: Path, world: str, seeds) -> None:
    runs = {s: _load(work, world, s) for s in seeds}
    for name, score in VARIANTS.items():
        cells = []
        for s, (test, held, y, iso) in runs.items():
            sc = score(test, held)
            cells.append((s, auprc(y, sc) / auprc(y, iso), auroc(y, sc), auroc(y, iso)))
        ratios, margins = [c[1] for c in cells], [c[2] - c[3] for c in cells]
        print(f"{name:44s} AP ratio min {min(ratios):.3f} mean {np.mean(ratios):.3f}, AUROC margin min "
              f"{min(margins):+.4f} | " + "  ".join(f"{s}: {r:.3f}x AUROC {a:.4f}/{b:.4f}" for s, r, a, b in cells),
              flush=True)


def ties(work: Path, world: str, seeds) -> None:
    """How tied the default score leaves the test week."""
    for s in seeds:
        test, held, y, _ = _load(work, world, s)
        score = DEFAULT(test, held)
        _, counts = np.unique(score, return_counts=True)
        network = _floored(test["network"], held["network"], 0.99)[0].sum(1) == 0
        tails = _floored(test["right"], held["right"], 0.75)[0].sum(1) == 0
        print(f"{world} {s}: {score.size} test rows, {counts.size} distinct scores, {counts[counts > 1].sum()} "
              f"rows in ties; floored network terms all 0 on {network.mean():.1%}, floored tails all 0 on "
              f"{tails.mean():.1%}, both on {(network & tails).mean():.1%} (frauds {(network & tails)[y == 1].mean():.1%}); "
              f"smallest gap between scores {np.diff(np.unique(score)).min():.1e}", flush=True)


if __name__ == "__main__":
    configure_threads()
    command, work, world, *seeds = sys.argv[1:]
    if command == "cache":
        for s in seeds:
            print(cache(Path(work), world, int(s)), flush=True)
    elif command == "ties":
        ties(Path(work), world, [int(s) for s in seeds])
    else:
        compare(Path(work), world, [int(s) for s in seeds])
