"""Does the memory gate trust a remembered static obstacle as it should?

Found in the fine-tune experiment (``driving_fine_tune.py``, after its decision): on
the independent 2-lane highway (``HELDOUT_2``) the recipe trained from scratch puts static
obstacles at 0.43x persistence on occluded cells (0.045 against 0.105 AP), missing the issue's
"never know less than the memory". Its gate's weight on a remembered static obstacle is
0.00-0.03 for anything hidden under a second: normal logs show few hidden static obstacles
(15-30 targets a bin), so those bins borrow the pool of all classes, which is mostly moving
cars (whose memory is wrong a frame later) and road the network already knows. A diagnosis
(not committed; the scratch model of that run retrained and its gate edited by hand) put the
static-obstacle weight at 0.99 in every bin: static AP 0.045 -> 0.335 (scratch) and 0.174 ->
0.278 (the tuned network) on HELDOUT_2's event logs. That lead was read on HELDOUT_2, so it is
not an independent test there; the rule below is decided on the tuned worlds.

**Candidate** (committed with this rule, before any benchmark ran with it): in
``MemoryGate.finish``, the static-obstacle class's bins shrink towards full trust (the
largest weight, 0.99: a static obstacle stays where it was seen) instead of towards the pool
of all classes; the class's own targets pull it down with the same ``MIN_CELLS`` shrinkage
as before. Nothing else changes.

**Runs**: ``python -m bench.driving`` on both worlds with the benchmark's kept networks and
logs (``--test-logs 12 --normal-logs 8``; the networks are recalibrated, which refits the
gate), against the committed ``driving_town.json`` / ``driving_highway.json`` (the same
networks and logs; reruns reproduce them to the digit, round 22).

**Decision rule** (``decide``): adopt when, on the **tuned** column of each world: the
static-obstacle AP over persistence does not fall; vehicle AP stays >= 2x persistence +
prior and every class >= persistence; the frame AUROC falls by no more than 0.005; the
normal-log alert rate stays <= 2x nominal. Otherwise the product stays as it is.

**After the decision**: the held-out and own-training columns of the same runs, and the
``HELDOUT_2`` static-obstacle AP of the tuned and the scratch network (recalibrated with the
candidate gate) beside the committed ``driving_fine_tune.json``.

**Result**: ``bench/results/driving_static_gate.json``: **adopted** (every check passed in
both worlds). Static obstacle over persistence, tuned / held-out / own training: town 10.9x
/ 9.0x / 7.1x -> 14.0x / 11.2x / 11.2x, highway 2.0x / 2.1x / 3.2x -> 2.3x / 3.9x / 4.1x;
every other class ratio, alert and event count as before, frame AUROC within 0.00005 (the
reruns are today's ``driving_town.json`` and ``driving_highway.json``; every column
control beside candidate under ``columns``). After: HELDOUT_2
static-obstacle AP, tuned network 0.174 -> 0.284, scratch 0.045 -> 0.297 (persistence 0.105).

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.driving --worlds town --test-logs 12 --normal-logs 8 \\
        --model-dir M --log-dir L --out /tmp/r23/gate/town.json          # and highway
    git show d3311a6:bench/results/driving_town.json > C/driving_town.json       # and highway: the control
    python -m bench.experiments.driving_static_gate decide /tmp/r23/gate C
    python -m bench.experiments.driving_static_gate columns /tmp/r23/gate C   # after: every column
    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_static_gate heldout_2 M S   # S: the scratch network
"""
import json
import sys
from pathlib import Path

from bench.driving import gated_probabilities
from bench.experiments import driving_fine_tune as fine_tune
from bench.experiments import merge_results
from core.runtime import configure_threads
from driving.evaluate import HiddenCellAccumulator
from driving.model.baselines import PersistenceBaseline
from driving.model.predictor import OcclusionPredictor
from driving.warp import sensor_range_mask

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "results" / "driving_static_gate.json"
WORLDS = ("town", "highway")
MAX_AUROC_DROP = 0.005
MAX_ALERTS_OVER_NOMINAL = 2.0


def targets(path: Path, world: str) -> dict:
    return json.loads(Path(path).read_text())["worlds"][world]["targets"]


def verdict(control: dict, candidate: dict) -> dict:
    """The module docstring's rule on one world's tuned column, with the targets it read."""
    checks = {
        "static_not_lower": candidate["static_obstacle_ap_over_persistence"]
        >= control["static_obstacle_ap_over_persistence"],
        "vehicle_2x": candidate["vehicle_ap_over_persistence_prior"] >= 2.0,
        "every_class": candidate["min_class_ap_over_persistence"] >= 1.0,
        "auroc": candidate["frame_auroc"] >= control["frame_auroc"] - MAX_AUROC_DROP,
        "alerts": candidate["alert_rate_normal_logs_over_nominal"] <= MAX_ALERTS_OVER_NOMINAL}
    read = ("static_obstacle_ap_over_persistence", "vehicle_ap_over_persistence_prior",
            "min_class_ap_over_persistence", "frame_auroc", "alert_rate_normal_logs_over_nominal")
    return {"checks": checks, "passes": all(checks.values()),
            "control": {k: control[k] for k in read}, "candidate": {k: candidate[k] for k in read}}


def decide(run_dir: Path, control_dir: Path) -> dict:
    """The rule over both worlds: ``run_dir/<world>.json`` (the candidate's runs) against
    ``control_dir/driving_<world>.json`` (the committed files before the change; they were
    ``bench/results`` at d3311a6, which today holds the candidate's runs)."""
    verdicts = {w: verdict(targets(control_dir / f"driving_{w}.json", w)["tuned"],
                           targets(run_dir / f"{w}.json", w)["tuned"]) for w in WORLDS}
    return {"verdicts": verdicts, "adopted": all(v["passes"] for v in verdicts.values())}


def columns(run_dir: Path, control_dir: Path) -> dict:
    """After the decision, every column of both worlds (tuned, held-out, held-out trained on
    its own logs): the targets ``verdict`` reads, control beside candidate."""
    out = {}
    for w in WORLDS:
        control, candidate = targets(control_dir / f"driving_{w}.json", w), targets(run_dir / f"{w}.json", w)
        out[w] = {}
        for col in ("tuned", "heldout", "heldout_native"):
            read = verdict(control[col], candidate[col])
            out[w][col] = {"control": read["control"], "candidate": read["candidate"]}
    return out


def heldout_2(model_dir: Path, scratch_dir: Path) -> dict:
    """After the decision: occluded-cell AP on ``HELDOUT_2``'s 12 event logs of the tuned
    network (``bench.driving``'s, recalibrated on its training logs) and of the scratch
    network of ``driving_fine_tune``'s after step (saved by the diagnosis, the same weights:
    its static AP as saved is the committed 0.0447), recalibrated on ``HELDOUT_2``'s 6
    training logs, so both gates are refitted by today's code; persistence beside."""
    scratch = OcclusionPredictor.load(scratch_dir)
    scratch.progress = False
    scratch.calibrate(fine_tune.logs("heldout2_train"))
    models = {"tuned": fine_tune.tuned_network(model_dir), "scratch": scratch}
    logs = fine_tune.logs("heldout2_events")
    accumulators = {name: HiddenCellAccumulator(7, seed=0) for name in (*models, "persistence")}
    for log in logs:
        in_range = sensor_range_mask(log)
        for name, predictor in models.items():
            _, probs, _ = gated_probabilities(predictor, log)
            accumulators[name].add(probs, log.semantic_true, log.visible, in_range,
                                   layout=log.layout_true)
        accumulators["persistence"].add(PersistenceBaseline().predict_proba(log), log.semantic_true,
                                        log.visible, in_range, layout=log.layout_true)
    classes = list(logs[0].meta.classes)
    out = {}
    for name, acc in accumulators.items():
        metrics = acc.metrics(classes, "occluded")["classes"]
        out[name] = {c: metrics[c]["pr_auc"] for c in ("static_obstacle", "vehicle")}
    return out


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "decide":
        decision = decide(Path(sys.argv[2]), Path(sys.argv[3]))
        print(json.dumps(decision, indent=1))
        merge_results(OUT, {"decision": decision})
    elif len(sys.argv) > 3 and sys.argv[1] == "columns":
        merge_results(OUT, {"columns": columns(Path(sys.argv[2]), Path(sys.argv[3]))})
    elif len(sys.argv) > 3 and sys.argv[1] == "heldout_2":
        configure_threads()
        merge_results(OUT, {"heldout_2": heldout_2(Path(sys.argv[2]), Path(sys.argv[3]))})
    else:
        print(__doc__)
