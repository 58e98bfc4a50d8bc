"""Do healthy cases the anomaly network pretrained on score lower than unseen ones?

``medical train --pretrained P`` calibrated organ scoring, by default, on the lesion-free
cases of ``--data`` beyond the segmenter's training cases, most of which ``medical
pretrain`` had trained the network on (9 of the 10 in the small demo). A case the network
trained on could reconstruct better, so calibrating on such cases would make the null too
low (p-values too small, more alerts than the FDR asked for). This measures it on a small
demo workspace's models (``unmask demo --size small --vertical medical``), changing nothing:

* seen: the training phantoms the anomaly model pretrained on and the segmenter did not
  train on; unseen: the scorer's own calibration cases the segmenter did not train on,
  plus freshly simulated healthy phantoms (the demo's training shape, another seed).
* half of the fresh phantoms fit the organ statistics (residual offset and SD per organ)
  of a copy of the pretrained scorer with the demo's segmenter, so that neither scored
  group is in-sample for them; the other half are unseen cases scored.
* organ: the case score ``infer`` gives with a segmentation (the product's default
  ``organ_prediction="context"`` predicts organ voxels from the case's own visible
  parenchyma; the network is not used); plain: the pretrained bundle's network-based
  case score without organs.
* per kind: medians, each unseen case's conformal p-value against the seen scores and
  against the other unseen ones (leave one out), how many fall at or below 0.1, and how
  many Benjamini-Hochberg flags at FDR 0.1 when calibrated on the seen cases.

Result (bench/results/medical_pretraining_calibration.json, bench/README.md): the organ
score of the seen cases is not lower (median unseen/seen 0.87); the plain score is a
little (1.12, Mann-Whitney p = 0.25 with 9 and 11 cases), so leaving pretraining cases out
of organ calibration matters for ``organ_prediction="network"`` and the plain score, not
for the default.

Usage::

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.medical_pretraining_calibration \\
        --workspace WS --fresh /tmp/fresh --out bench/results/medical_pretraining_calibration.json
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

from core.calibration import benjamini_hochberg, conformal_p_values
from core.io import write_text_atomic
from medical.anomaly import AnomalyScorer
from medical.demo import SIZES
from medical.io import find_cases
from medical.phantom import simulate_dataset
from medical.segment import Segmenter
from medical.transforms import Preprocessor
from medical.volumes import prepare_case

FDR = 0.1   # infer's default


def models(workspace: Path) -> tuple[AnomalyScorer, Segmenter]:
    """The demo workspace's pretrained anomaly model and segmenter, each loaded once."""
    root = workspace / "models" / "medical"
    return AnomalyScorer.load(root / "pretrained"), Segmenter.load(root / "ct" / "segmenter")


def groups(workspace: Path, pretrained, segmenter, fresh_root: Path, n_fresh: int, seed: int):
    """``(seen, unseen, organ_fit)`` case lists (see the module docstring)."""
    record = pretrained.provenance_["training"]
    labelled = set(segmenter.provenance_["training"]["cases"])
    train = {c.name: c for c in find_cases(workspace / "data" / "medical" / "train")}
    if not fresh_root.exists():
        simulate_dataset(fresh_root, n_fresh, lesions=False, seed=seed,
                         shape=SIZES["small"].train_shape, prefix="fresh")
    fresh = find_cases(fresh_root)
    seen = [train[n] for n in sorted(set(record["cases"]) - labelled)]
    own = [train[n] for n in record["calibration_cases"] if n not in labelled]
    half = len(fresh) // 2
    return seen, own + fresh[half:], fresh[:half]


def case_scores(pretrained, segmenter, groups_: tuple) -> dict[str, dict[str, np.ndarray]]:
    """``{kind: {group: scores}}`` for the organ and the plain case score."""
    seen, unseen, organ_fit = groups_
    organ = copy.deepcopy(pretrained).calibrate(organ_fit, segmenter=segmenter)
    pre = Preprocessor(pretrained.preprocess)
    out = {"organ": {}, "plain": {}}
    for name, cases in (("seen", seen), ("unseen", unseen)):
        organ_scores, plain_scores = [], []
        for case in cases:
            image = prepare_case(case, pre).image.as_tensor()
            probs, labels, _ = segmenter.segment(image)
            organ_scores.append(float(organ.decision_function([(image, labels, probs)])[0]))
            plain_scores.append(float(pretrained.decision_function([image])[0]))
        out["organ"][name], out["plain"][name] = np.array(organ_scores), np.array(plain_scores)
    return out


def compare(seen: np.ndarray, unseen: np.ndarray) -> dict:
    """Medians, p-values of the unseen cases against the seen ones and leave-one-out."""
    p_seen = conformal_p_values(seen, unseen)
    p_loo = np.array([conformal_p_values(np.delete(unseen, i), unseen[i:i + 1])[0]
                      for i in range(len(unseen))])
    return {"seen_median": float(np.median(seen)), "unseen_median": float(np.median(unseen)),
            "median_ratio_unseen_to_seen": float(np.median(unseen) / np.median(seen)),
            "mann_whitney_p_unseen_higher": float(mannwhitneyu(unseen, seen,
                                                               alternative="greater").pvalue),
            "seen": seen.round(4).tolist(), "unseen": unseen.round(4).tolist(),
            "unseen_above_every_seen": int((unseen > seen.max()).sum()),
            "p_at_most_fdr_vs_seen": int((p_seen <= FDR).sum()),
            "p_at_most_fdr_vs_unseen_loo": int((p_loo <= FDR).sum()),
            "flagged_at_fdr_vs_seen": int(benjamini_hochberg(p_seen, FDR).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True, help="a small demo workspace")
    parser.add_argument("--fresh", type=Path, required=True,
                        help="folder of the fresh healthy phantoms (simulated if missing)")
    parser.add_argument("--n-fresh", type=int, default=20)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    pretrained, segmenter = models(args.workspace)
    groups_ = groups(args.workspace, pretrained, segmenter, args.fresh, args.n_fresh, args.seed)
    scores = case_scores(pretrained, segmenter, groups_)
    result = {"workspace": str(args.workspace), "fdr": FDR,
              "cases": {name: [c.name for c in cases]
                        for name, cases in zip(("seen", "unseen", "organ_fit"), groups_)},
              **{kind: compare(s["seen"], s["unseen"]) for kind, s in scores.items()}}
    write_text_atomic(args.out, json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: {m: v for m, v in result[k].items() if m not in ("seen", "unseen")}
                      for k in ("organ", "plain")}, indent=1))


if __name__ == "__main__":
    main()
