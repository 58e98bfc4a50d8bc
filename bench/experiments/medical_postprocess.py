"""Keep-the-largest-part post-processing (``medical.postprocess``) on held-out phantoms.

Not part of the benchmark. Scores one ``unmask medical train`` model on the frozen held-out
phantoms of ``medical_label_count`` (18 cases of seed 900 at 128 x 128 x 96, never tuned
on) twice, side by side in one process: the labels as the network gives them, and
post-processed as ``medical infer`` does (the per-organ decisions fitted at ``train`` time
on the labelled cases beyond ``--labels``). Dice per organ on each input's grid, overall and
per contrast phase, and how many held-out cases get the fragmentation warning (every one is
a false alarm: the phantoms are the training distribution). Writes
``bench/results/medical_postprocess.json``.

Example::

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.medical_postprocess \\
        --model /tmp/label-count/models/labels-20 --held-out /tmp/label-count/heldout
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from core.io import write_text_atomic
from medical.guard import FRAGMENT_WARNING
from medical.infer import score_case
from medical.io import find_cases
from medical.segment import Segmenter

from .medical_label_count import HELD_OUT, dice_table, held_out_phases, print_dice



def score(segmenter: Segmenter, cases) -> list[dict]:
    """Per case Dice by organ and the fragmentation warning line ("" when none)."""
    rows = []
    for case in cases:
        row, _ = score_case(case, segmenter, None, None, shap_evals=0)
        lines = [w for w in row["warnings"].splitlines() if w.startswith(FRAGMENT_WARNING)]
        rows.append({"case": case.name, **{k: v for k, v in row.items() if k.startswith("dice_")},
                     "fragment_warning": lines[0] if lines else ""})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="`medical train` output.")
    parser.add_argument("--held-out", type=Path, required=True, help="The frozen held-out set.")
    parser.add_argument("--out", type=Path, default=Path("bench/results/medical_postprocess.json"))
    args = parser.parse_args()
    segmenter = Segmenter.load(args.model / "segmenter")
    fitted = segmenter.postprocessing_
    cases = find_cases(args.held_out)
    phase_of = held_out_phases()
    results = {}
    # raw: the same segmenter with nothing removed (the warning's reference kept)
    for name, post in (("raw", replace(fitted, keep_largest=[])), ("postprocessed", fitted)):
        segmenter.postprocessing_ = post
        rows = score(segmenter, cases)
        results[name] = {"dice": dice_table(rows, phase_of),
                         "fragment_warnings": sum(bool(r["fragment_warning"]) for r in rows),
                         "per_case": rows}
    payload = {"model": str(args.model), "held_out": HELD_OUT, "postprocessing": fitted.to_dict(),
               "results": results}
    write_text_atomic(args.out, json.dumps(payload, indent=2))
    print(json.dumps(fitted.to_dict()))
    for name, result in results.items():
        print(name, "fragment warnings:", result["fragment_warnings"], "of", len(cases))
        print_dice(name, result["dice"])


if __name__ == "__main__":
    main()
