"""The step-out experiments' bootstrap over logs: strata of event logs resampled on their
own, logs outside every stratum (the normal logs) in every draw, and the enriched set's
metrics pooled over both."""
import numpy as np

from bench.experiments.driving_step_out import bootstrap_difference
from bench.experiments.driving_step_out_enriched import EVENT_SETS, NORMAL_SET, metrics, strata


def _frames(seed: int = 0, frames_per_log: int = 20) -> dict:
    """Two event sets of 4 logs (events in frames 5-9, one kind a set) and 3 normal logs;
    ``other`` is ``base`` with the step-out frames raised."""
    rng = np.random.default_rng(seed)
    ids, kinds, labels = [], [], []
    for name, kind in ((EVENT_SETS[0], "debris"), (EVENT_SETS[1], "pedestrian_step_out"), (NORMAL_SET, "")):
        for i in range(4 if kind else 3):
            event = np.zeros(frames_per_log, bool)
            event[5:10] = bool(kind)
            ids += [f"{name}/log_{i:03d}"] * frames_per_log
            kinds += [kind if e else "" for e in event]
            labels += event.tolist()
    labels = np.array(labels)
    scores = rng.normal(size=len(labels)) + labels
    base = {"log_ids": np.array(ids), "kinds": np.array(kinds), "labels": labels, "scores": scores,
            "alerts": scores > 1.5, "threshold": np.float64(1.5), "contamination": np.float64(0.05)}
    other = {**base, "scores": scores + 0.8 * (base["kinds"] == "pedestrian_step_out")}
    return base, other


def test_one_stratum_of_all_logs_draws_what_no_strata_draws():
    base, other = _frames()
    every_log = [np.unique(base["log_ids"])]
    assert bootstrap_difference(base, other) == bootstrap_difference(base, other, strata=every_log)


def test_logs_outside_the_strata_are_in_every_draw():
    """The step-out frames of 4 logs against the normal frames: resampling every log can draw
    only step-out logs' normal frames or none of a kind; with the normal logs kept in every
    draw and the step-out logs one stratum, no draw is skipped and the rise is clear."""
    base, other = _frames()
    groups = strata(base)
    assert [len(g) for g in groups] == [4, 4]
    kept = bootstrap_difference(base, other, "pedestrian_step_out", strata=groups[1:])
    assert kept["skipped"] == 0 and kept["ci95"][0] > 0
    assert bootstrap_difference(base, other, "pedestrian_step_out")["skipped"] > 0


def test_metrics_pool_the_normal_logs_and_count_their_alerts_apart():
    base, _ = _frames()
    out = metrics(base)
    normal = np.char.startswith(base["log_ids"], f"{NORMAL_SET}/")
    assert out["pooled"]["frames"]["n_frames"] == len(base["labels"])
    assert out["event_logs"]["frames"]["n_frames"] == (~normal).sum()
    assert out["normal_logs"]["alert_rate"] == base["alerts"][normal].mean()
    assert out["normal_logs"]["over_nominal"] == base["alerts"][normal].mean() / 0.05
    assert set(out["pooled"]["by_kind"]) == {"debris", "pedestrian_step_out"}
