"""A diagnosis of the masked-consistency arms, after their decision: how sure, and how right?

Masked consistency (``medical.consistency``) teaches the student the teacher's labels where the
teacher's softmax maximum is at least the threshold (0.9). The teacher is not saved; its
stand-in here is each 2-label arm's saved segmenter (the student's best-validation weights,
which the teacher follows by EMA). On 8 of the unlabelled phantoms the arms trained on (their
labels, never read in training, are the truth here), per segmenter: the share of voxels above
the threshold, the share of organ voxels (truth > 0) above it, and how often the confident
labels are right, over all confident voxels and over those labelled as an organ. Scratch
(subset 0) is the reference without consistency.

Usage (after ``bench.experiments.medical_masked_consistency`` has written its decision):
    UNMASK_NUM_THREADS=1 python -m bench.experiments.medical_consistency_confidence --work DIR

Adds ``confidence`` to ``bench/results/medical_masked_consistency.json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.experiments.decision_flow import ROOT, decided_result
from bench.experiments.medical_invariant_pretext import REPRODUCTION
from bench.experiments.medical_masked_consistency import MIC_ARMS
from core.io import write_text_atomic
from core.runtime import configure_threads
from medical.consistency import ConsistencyConfig
from medical.pretrain import healthy_cases
from medical.segment import Segmenter
from medical.transforms import Preprocessor
from medical.volumes import prepare_cases

N_CASES = 8
THRESHOLD = ConsistencyConfig().confidence


def confidence_facts(segmenter: Segmenter, prepared) -> dict:
    """Means over ``prepared`` cases (model grid, with truth) of the confident shares and how
    often the confident labels are right."""
    facts = {"confident": [], "organ_confident": [], "confident_right": [], "organ_label_right": []}
    for case in prepared:
        probs = segmenter.predict_proba(case.image.as_tensor()).numpy()   # (C, x, y, z)
        confident, labels = probs.max(0) >= THRESHOLD, probs.argmax(0)
        truth = case.label.numpy()[0]
        said_organ = confident & (labels > 0)
        facts["confident"].append(confident.mean())
        facts["organ_confident"].append(confident[truth > 0].mean())
        facts["confident_right"].append((labels[confident] == truth[confident]).mean())
        facts["organ_label_right"].append((labels[said_organ] == truth[said_organ]).mean())
    return {name: float(np.mean(values)) for name, values in facts.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.experiments.medical_consistency_confidence",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, help="the masked-consistency run's folder")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "medical_masked_consistency.json"))
    args = parser.parse_args(argv)
    work, out = Path(args.work), Path(args.out)
    result = decided_result(parser, out, "bench.experiments.medical_masked_consistency")
    configure_threads()
    names = [REPRODUCTION] + [key for key in result["steps"]
                              if key.split("-")[0] in MIC_ARMS and key.split("-")[1] == "2"]
    cases, prepared, facts = healthy_cases(work / "data" / "unlabelled")[:N_CASES], None, {}
    for name in names:
        segmenter = Segmenter.load(work / "arms" / name)
        if prepared is None:   # every arm has the same model grid
            pre = Preprocessor(segmenter.preprocess)
            prepared = prepare_cases(cases, pre, with_truth=True)
        facts[name] = confidence_facts(segmenter, prepared)
        print(name, {k: round(v, 3) for k, v in facts[name].items()}, flush=True)
    result["confidence"] = {"threshold": THRESHOLD, "cases": [c.name for c in cases], "arms": facts}
    write_text_atomic(out, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
