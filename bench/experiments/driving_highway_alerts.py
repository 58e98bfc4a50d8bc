"""Where the highway's normal-log alerts fall after round 14's simulator fixes (oncoming
traffic along the drive, a 20 s warm-up): the benchmark's 2 normal logs per configuration
(re-simulated with ``bench.driving``'s seeds), scored by the benchmark's networks, each
log's alerts per 50-frame block and in its first 65 frames (the old start episode), and the
channel holding each alerted frame's maximum. A measurement; nothing tuned.

    UNMASK_NUM_THREADS=1 nice -n 10 python -m bench.experiments.driving_highway_alerts   # ~2 min
    (after bench.driving --worlds highway --model-dir /tmp/r14hw/models)
"""
import json
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from bench.driving import HELDOUT, TUNED
from bench.driving_logs import simulated_logs
from core.io import write_text_atomic
from core.runtime import configure_threads
from driving.model.predictor import OcclusionPredictor
from driving.scoring.surprise import score_log

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "results" / "driving_highway_alerts.json"
DEFAULT_MODELS = Path("/tmp/r14hw/models")   # or the first argument
# bench.driving's normal logs: the test seed + 500 (tuned test seed 2, held-out 70), 250 frames
NORMAL = {"tuned": (502, TUNED["highway"]), "heldout": (HELDOUT["highway"]["seed"] + 500, HELDOUT["highway"]["config"])}
PAIRS = (("highway", "tuned"), ("highway", "heldout"), ("highway_heldout_native", "heldout"))
START_FRAMES = 65


def log_alerts(predictor, log) -> dict:
    """Alerts of one log: count, per 50-frame block, in its first frames, holding channels."""
    result = score_log(predictor, log)
    alerts = predictor.calibration_.alerts(result.score)
    scorer = predictor.scoring_.frame_scorer
    names = [name for name, _, _ in scorer.channels]
    tails = scorer.tail_scores(result.score_maps)
    return {"alerts": int(alerts.sum()),
            "per_50_frames": [int(alerts[a:a + 50].sum()) for a in range(0, len(alerts), 50)],
            "in_first_frames": int(alerts[:START_FRAMES].sum()),
            "max_score_first_frames": float(result.score[:START_FRAMES].max()),
            "max_score_after": float(result.score[START_FRAMES:].max()),
            "holding_channel": dict(Counter(names[i] for i in tails[alerts].argmax(1))),
            "ego_speed_first_second": float(log.ego_speed[:5].mean()),
            "ego_speed_median": float(np.median(log.ego_speed))}


def main() -> None:
    models = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_MODELS
    configure_threads()
    results = {}
    with TemporaryDirectory() as tmp:
        logs = {name: simulated_logs(Path(tmp) / name, 2, 250, seed,
                                     replace(cfg, anomaly_interval_s=0.0))
                for name, (seed, cfg) in NORMAL.items()}
        for model, name in PAIRS:
            predictor = OcclusionPredictor.load(models / model)
            per_log = [log_alerts(predictor, log) for log in logs[name]]
            results[f"{model} on {name} normal logs"] = {
                "threshold": float(predictor.calibration_.threshold_), "logs": per_log}
            print(model, name, json.dumps(results[f"{model} on {name} normal logs"]), flush=True)
    write_text_atomic(OUT, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
