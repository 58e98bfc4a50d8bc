"""The step-out experiments' bootstrap over logs: strata of event logs resampled on their
own, logs outside every stratum (the normal logs) in every draw, and the enriched set's
metrics pooled over both."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bench.experiments.driving_step_out_confirm import BOOTSTRAP_DRAWS, BOOTSTRAP_SEED, bootstrap_difference
from bench.experiments.driving_step_out_enriched import EVENT_SETS, NORMAL_SET, metrics, score_changes, strata


def _frames(seed: int = 0, frames_per_log: int = 20, sizes: tuple = (4, 4)) -> dict:
    """Two event sets of ``sizes`` logs (events in frames 5-9, one kind a set) and 3 normal
    logs; ``other`` is ``base`` with the step-out frames raised."""
    rng = np.random.default_rng(seed)
    ids, kinds, labels = [], [], []
    for name, kind, n in ((EVENT_SETS[0], "debris", sizes[0]), (EVENT_SETS[1], "pedestrian_step_out", sizes[1]),
                          (NORMAL_SET, "", 3)):
        for i in range(n):
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


def _independent_intervals(base: dict, other: dict, groups: list) -> list:
    """The stratified bootstrap written out on its own (scikit-learn's AUROC): per draw, each
    stratum's logs drawn with replacement to its own size, the normal logs once; the same
    generator and draws as ``bootstrap_difference``."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    normal = np.flatnonzero(~np.isin(base["log_ids"], np.concatenate(groups)))
    differences = []
    for _ in range(BOOTSTRAP_DRAWS):
        sel = [normal]
        for logs in groups:
            sel += [np.flatnonzero(base["log_ids"] == logs[j]) for j in rng.integers(0, len(logs), len(logs))]
        sel = np.concatenate(sel)
        labels = base["labels"][sel]
        differences.append(roc_auc_score(labels, other["scores"][sel]) - roc_auc_score(labels, base["scores"][sel]))
    return np.percentile(differences, [2.5, 97.5]).tolist()


def test_strata_of_different_sizes_are_drawn_apart():
    """3 debris logs and 6 step-out logs, only the step-outs raised: each draw holds 3 and 6
    of them, as the loop written out draws; pooling the strata (9 logs drawn from all 9, the
    mix of kinds varying) gives another interval."""
    base, other = _frames(sizes=(3, 6))
    groups = strata(base)
    assert [len(g) for g in groups] == [3, 6]
    expected = _independent_intervals(base, other, groups)
    assert bootstrap_difference(base, other, strata=groups)["ci95"] == pytest.approx(expected, rel=1e-9)
    pooled = bootstrap_difference(base, other, strata=[np.concatenate(groups)])["ci95"]
    assert pooled != pytest.approx(expected, rel=1e-3)


def test_score_changes_count_raised_and_lowered_frames_past_rounding():
    base, _ = _frames()
    normal = np.flatnonzero(~base["labels"])
    scores = base["scores"] + 1e-15                       # float rounding: no change
    scores[normal[:10]] += 0.5
    scores[normal[10:15]] -= 0.5
    out = score_changes(base, {**base, "scores": scores})
    assert out["normal"] == {"frames": len(normal), "share_raised": 10 / len(normal), "share_lowered": 5 / len(normal)}
    assert out["pedestrian_step_out"]["share_raised"] == out["debris"]["share_lowered"] == 0.0
