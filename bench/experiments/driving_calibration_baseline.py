"""Step 3 of the experiment in driving_calibration_variants.py: the per-log baseline variants."""
import sys
sys.argv = sys.argv[:2] + ["200"]
exec(open("bench/experiments/driving_calibration_variants.py").read().split("# diagnostics")[0].split("full = fit_state(tails)")[0])
from driving.scoring import frame_score as fs
orig = fs.FrameScorer.tail_scores
ADJ = {"symmetric": lambda st, b, ty: st - b + ty,
       "none": lambda st, b, ty: st,
       "up_only": lambda st, b, ty: st - np.maximum(b - ty, 0.0),
       "down_only": lambda st, b, ty: st - np.minimum(b - ty, 0.0)}
def make(adj):
    def tail_scores(self, maps, baseline=None):
        stats = self.statistics(maps)
        if baseline is not None:
            stats = adj(stats, baseline, self.typical_)
        return np.stack([tail(stats[:, i]) for i, tail in enumerate(self.tails_)], 1)
    return tail_scores
full = fit_state(tails)
states = [fit_state([t for j, t in enumerate(tails) if j != i]) for i in range(len(tails))]
for name, adj in ADJ.items():
    fs.FrameScorer.tail_scores = make(adj)
    insample = np.concatenate([score(full, it) for it in tails])
    oof = np.concatenate([score(states[i], tails[i]) for i in range(len(tails))])
    report(f"{name}_insample", full, threshold_from_contamination(insample, 0.05))
    report(f"{name}_lolo", full, threshold_from_contamination(oof, 0.05))
