"""Cache the prior-free raw maps of a world's calibration and test logs (read by
driving_lead_channel.py). Round 9's calibration variants and per-log baseline scripts that
read them ran against commit 206d71e; they were removed once the per-log baseline and the
lead-deceleration channel they compare were gone from the code."""
import sys, time
from dataclasses import replace
from pathlib import Path
import numpy as np
from core.runtime import configure_threads
from bench.driving import HELDOUT, TUNED
from driving.model.predictor import OcclusionPredictor
from driving.scoring.context_prior import ContextPrior
from driving.scoring.surprise import raw_maps
from driving.sim.simulator import simulate_logs
from driving.schema import read_log

world = sys.argv[1]
frames = int(sys.argv[2]) if len(sys.argv) > 2 else 250
n_test = int(sys.argv[3]) if len(sys.argv) > 3 else 4
configure_threads()
root = Path("/tmp/drv16/cache") / world
root.mkdir(parents=True, exist_ok=True)
pred = OcclusionPredictor.load(f"/tmp/drv16/models/{world}")
cfg = TUNED[world]
sets = {"train": (6, 1, replace(cfg, anomaly_interval_s=0.0)),
        "tuned": (n_test, 2, cfg), "heldout": (n_test, HELDOUT[world]["seed"], HELDOUT[world]["config"]),
        "tuned_normal": (2, 502, replace(cfg, anomaly_interval_s=0.0)),
        "heldout_normal": (2, HELDOUT[world]["seed"] + 500, replace(HELDOUT[world]["config"], anomaly_interval_s=0.0))}
rate = pred.meta_.rate_hz
static_offset = min(pred.history, key=lambda k: abs(k / rate - 1.0), default=10)
for name, (n, seed, c) in sets.items():
    paths = simulate_logs(root / "logs" / name, n, frames, seed=seed, config=c)
    for p in paths:
        log = read_log(p)
        t0 = time.time()
        out = root / f"{name}_{p.stem}.npz"
        if out.exists():
            continue
        prior = ContextPrior(pred.history, static_offset=static_offset)
        m = raw_maps(pred, log, context_prior=prior)
        ground = np.concatenate([g for g, _, _ in m["context_inputs"]])
        category = np.concatenate([c_ for _, c_, _ in m["context_inputs"]])
        np.savez(out, revealed=m["revealed"], object_recon=m["object_recon"],
                 object_forecast=m["object_forecast"], ground=ground, category=category)
        print(name, p.stem, f"{time.time()-t0:.0f}s", flush=True)
