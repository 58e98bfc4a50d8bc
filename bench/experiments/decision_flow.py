"""The command line the label-efficiency experiments share: run and decide, then held out.

Not an experiment itself: the flow of ``medical_remap_pretext``, ``medical_invariant_pretext``
and ``medical_masked_consistency``. A first command runs every arm and writes the results
file with the decision its committed rule takes on the TEST set; ``--heldout``, refused
until that decision is written, then scores the frozen held-out set and completes the file.
Each prints the summary of the set it scored (:func:`summary_lines`).

Example:
    >>> experiment_main(argv, "medical_masked_consistency", __doc__, INVARIANT_RUN,
    ...                 run_and_decide, score_heldout)          # doctest: +SKIP
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from core.io import write_text_atomic

ROOT = Path(__file__).resolve().parents[2]


def cached(path: Path) -> dict | None:
    """The JSON in ``path``; None where it is not written yet."""
    return json.loads(path.read_text()) if path.exists() else None


def experiment_parser(module: str, doc: str, jobs: int) -> argparse.ArgumentParser:
    """The options a pretext experiment ``bench.experiments.<module>`` shares: ``--work``,
    ``--jobs`` (default ``jobs``), ``--heldout`` and ``--out`` (``bench/results/<module>.json``)."""
    parser = argparse.ArgumentParser(prog=f"python -m bench.experiments.{module}",
                                     description=doc.splitlines()[0])
    parser.add_argument("--work", required=True, help="data, pretrained bundles and arms")
    parser.add_argument("--jobs", type=int, default=jobs, help="processes (one thread each)")
    parser.add_argument("--heldout", action="store_true",
                        help="after the decision: score the saved segmenters on the frozen set")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / f"{module}.json"))
    return parser


def decided_result(parser, out: Path, first: str) -> dict:
    """The results file ``out``, refusing a step after the decision before the decision is
    written: the error says to run ``first`` (e.g. ``"without --heldout"``) first."""
    result = cached(out)
    if result is None or "decision" not in result:
        parser.error(f"{out} holds no decision yet: run {first} first")
    return result


def _share(share: float | None) -> str:
    """A share of the gap as printed; None (no gap between the budgets): ``n/a``."""
    return "n/a" if share is None else f"{share:.3f}"


def summary_lines(summary: dict) -> list[str]:
    """One line per arm of a ``compare`` summary: share, gap, gain, at 8, per subset."""
    return [f"{arm}: share {_share(entry['share_closed'])} (gap {entry['gap_points']:.1f}, gain "
            f"{entry['gain_points']:+.1f}), at 8 {entry['largest_budget_difference_points']:+.1f}, "
            f"per subset {entry['per_subset_points_at_2']}" for arm, entry in summary.items()]


def run_or_heldout(parser, args, run, heldout, later: dict | None = None) -> dict:
    """One command of the flow on parsed ``args`` (of :func:`experiment_parser`'s
    ``parser``, with a ``--option`` for each of ``later``): ``run(work, jobs)`` returns the
    result (``test`` and ``decision``), its summary and decision printed; or one step after
    the decision completes it: ``--heldout``, ``heldout(work, result)`` (``heldout``, its
    summary printed), or a ``--option`` of ``later``, ``{option: step(work, result, jobs)}``
    (which prints what it adds). A step is refused before a decision is written, and so are
    two steps in one command (each is timed, under ``seconds[option]``). The result goes to
    ``--out``.

    Returns:
        The result as written.
    """
    steps = {"heldout": lambda work, result, jobs: _printed_heldout(heldout(work, result)),
             **(later or {})}
    chosen = [option for option in steps if getattr(args, option.replace("-", "_"))]
    if len(chosen) > 1:
        parser.error(f"{' and '.join(f'--{option}' for option in chosen)}: one step at a time")
    work, out = Path(args.work), Path(args.out)
    started = time.perf_counter()
    if chosen:
        (option,) = chosen
        result = steps[option](work, decided_result(parser, out, f"without --{option}"), args.jobs)
        result["seconds"][option] = round(time.perf_counter() - started, 1)
    else:
        result = run(work, args.jobs)
        result["seconds"] = {"run": round(time.perf_counter() - started, 1)}
        print("\n".join(summary_lines(result["test"])))
        print(json.dumps(result["decision"], indent=2))
    write_text_atomic(out, json.dumps(result, indent=2))
    return result


def _printed_heldout(result: dict) -> dict:
    """``result`` after its held-out step, that step's summary printed."""
    print("\n".join(summary_lines(result["heldout"])))
    return result


def experiment_main(argv, module: str, doc: str, reference_path: Path, run, heldout,
                    later: dict | None = None) -> dict:
    """:func:`run_or_heldout` for an experiment with a reproduction check against the run
    in ``reference_path`` (its results file, read once): ``run(work, jobs, reference)``,
    ``heldout(work, result, reference)``; one job by default. ``later``, ``{option: (help,
    step)}``: further steps after the decision, each its own ``--option`` that runs
    ``step(work, result, reference, jobs)``, which returns the completed result and prints
    what it adds.

    Returns:
        The result as written.
    """
    later = later or {}
    parser = experiment_parser(module, doc, jobs=1)
    for option, (text, _) in later.items():
        parser.add_argument(f"--{option}", action="store_true", help=text)
    args = parser.parse_args(argv)
    reference = json.loads(reference_path.read_text())
    return run_or_heldout(parser, args, lambda work, jobs: run(work, jobs, reference),
                          lambda work, result: heldout(work, result, reference),
                          {option: _with_reference(step, reference)
                           for option, (_, step) in later.items()})


def _with_reference(step, reference: dict):
    """``step(work, result, reference, jobs)`` as ``(work, result, jobs)``."""
    return lambda work, result, jobs: step(work, result, reference, jobs)
