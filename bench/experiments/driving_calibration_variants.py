"""Experiment behind the driving calibration change (bench/README.md, driving: cross-fitted
threshold, no per-log baseline). Kept as it ran: against the code before the change (commit
9d1eba1, where FrameScorer.baseline exists), with the committed run's networks copied to
/tmp/drv16/models/<world> and maps cached under /tmp/drv16/cache/<world>. Order:
driving_calibration_cache.py WORLD (11 min a world at load 13), then
driving_calibration_variants.py WORLD (tails in-sample vs leave-one-log-out, channels),
driving_calibration_baseline.py WORLD (the per-log baseline: symmetric, none, up, down).
"""
"""Calibration variants on cached maps: alert rate on new normal logs, frame AUROC."""
import sys, json
from pathlib import Path
import numpy as np
from sklearn.metrics import roc_auc_score
from core.calibration import threshold_from_contamination
from driving.model.predictor import OcclusionPredictor, _slice_log
from driving.scoring.context_prior import ContextPrior
from driving.scoring.frame_score import CHANNELS, FrameScorer, lead_braking
from driving.scoring.normaliser import CellNormaliser
from driving.scoring.surprise import MAPS, result_from_maps, causal_mean
from driving.schema import read_log

world = sys.argv[1]
root = Path("/tmp/drv16/cache") / world
pred = OcclusionPredictor.load(f"/tmp/drv16/models/{world}")
rate = pred.meta_.rate_hz
static_offset = min(pred.history, key=lambda k: abs(k / rate - 1.0), default=10)
smooth = max(1, int(round(pred.smooth_s * rate)))

def load(name):
    out = []
    for p in sorted((root / "logs" / name).glob("*.parquet")):
        f = root / f"{name}_{p.stem}.npz"
        if not f.exists():
            continue
        log = read_log(p)
        z = np.load(f)
        m = {k: z[k] for k in ("revealed", "object_recon", "object_forecast")}
        m["ground"], m["category"] = z["ground"], z["category"]
        out.append((log, m))
    return out

def sl(item, a, b=None):
    log, m = item
    return _slice_log(log, a, b), {k: v[a:b] for k, v in m.items()}

def with_inputs(log, m):
    d = {k: m[k] for k in ("revealed", "object_recon", "object_forecast")}
    d["context_inputs"] = [(m["ground"], m["category"], log.semantic)]
    return d

def fit_state(items):
    logs = [l for l, _ in items]
    maps = [with_inputs(l, m) for l, m in items]
    prior = ContextPrior(pred.history, static_offset=static_offset)
    for mm in maps:
        for g, c, o in mm["context_inputs"]:
            prior.add(g, c, o)
    prior.finish()
    for (l, m), mm in zip(items, maps):
        mm["object_context"] = prior.surprise(m["ground"], m["category"])
        mm["lead_braking"] = lead_braking(l.semantic, l.ego_speed, l.meta)
    norm = CellNormaliser(maps=MAPS).fit(maps, [l.semantic for l in logs], pred.meta_)
    scorer = FrameScorer(CHANNELS).fit_logs(maps, logs, norm)
    class S: pass
    s = S(); s.normaliser, s.context_prior, s.frame_scorer, s.smooth = norm, prior, scorer, smooth
    return s

def result(state, item):
    log, m = item
    d = {k: m[k] for k in ("revealed", "object_recon", "object_forecast")}
    d["object_context"] = state.context_prior.surprise(m["ground"], m["category"])
    d["lead_braking"] = lead_braking(log.semantic, log.ego_speed, log.meta)
    d.update(predicted=None, confidence=None, road_layout=None, probabilities=None)
    return result_from_maps(state, log, d)

def score(state, item):
    return result(state, item).score

train = load("train")
evals = {n: load(n) for n in ("tuned_normal", "heldout_normal", "tuned", "heldout")}
print({k: len(v) for k, v in evals.items()}, len(train), flush=True)
tail0 = int(sys.argv[2]) if len(sys.argv) > 2 else 200
tails = [sl(it, tail0) for it in train]
res = {}
def report(name, state, thr, extra=""):
    out = {}
    for n, items in evals.items():
        if not items: continue
        s = [score(state, it) for it in items]
        lab = [it[0].anomaly for it in items]
        sc, lb = np.concatenate(s), np.concatenate(lab)
        out[n] = {"alert_normal": float(np.mean(sc[~lb] > thr)),
                  "per_log": [round(float(np.mean(x[~y] > thr)), 3) for x, y in zip(s, lab)]}
        if lb.any():
            out[n]["auroc"] = float(roc_auc_score(lb, sc))
    print(name, f"thr={thr:.3f}", extra, json.dumps(out), flush=True)
    res[name] = out

full = fit_state(tails)
insample = np.concatenate([score(full, it) for it in tails])
thr_in = threshold_from_contamination(insample, 0.05)
report("insample_tails", full, thr_in)
# leave-one-log-out state
oof = []
for i in range(len(tails)):
    st = fit_state([t for j, t in enumerate(tails) if j != i])
    oof.append(score(st, tails[i]))
thr_oof = threshold_from_contamination(np.concatenate(oof), 0.05)
per_log_q = [np.quantile(x, 0.95) for x in oof]
report("lolo_state", full, thr_oof, f"perlogq={np.round(per_log_q,2).tolist()}")
report("lolo_median_perlog_q", full, float(np.median(per_log_q)))
report("lolo_max_perlog_q", full, float(np.max(per_log_q)))

# diagnostics: per-channel exceedance on new normal frames; quantiles needed
def parts(state, item):
    log, _ = item
    r = result(state, item)
    stats = state.frame_scorer.statistics(r.score_maps)
    tails = state.frame_scorer.tail_scores(r.score_maps, r.baseline)
    return r.score, stats, tails, log.anomaly
names = [c[0] for c in CHANNELS]
for label, items in (("calib_tails", tails), ("new_normal", evals["tuned_normal"] + evals["heldout_normal"]),
                     ("event_logs", evals["tuned"] + evals["heldout"])):
    P = [parts(full, it) for it in items]
    sc = np.concatenate([p[0] for p in P]); st = np.concatenate([p[1] for p in P]); ta = np.concatenate([p[2] for p in P])
    lab = np.concatenate([p[3] for p in P])
    nm = ~lab
    print(label, "score q50/q90/q95", np.round(np.quantile(sc[nm], [.5, .9, .95]), 2),
          "| tail>thr per channel", {n: round(float(np.mean(ta[nm, i] > thr_in)), 3) for i, n in enumerate(names)},
          "| stat median", np.round(np.median(st[nm], 0), 3), "q95", np.round(np.quantile(st[nm], .95, 0), 3), flush=True)
    if lab.any():
        print("   anomalous: tail>thr per channel", {n: round(float(np.mean(ta[lab, i] > thr_in)), 3) for i, n in enumerate(names)},
              "AUROC per channel tail", {n: round(float(roc_auc_score(lab, ta[:, i])), 3) for i, n in enumerate(names)})
