"""The bootstrap over logs of the driving benchmark's frame metrics: whole logs are drawn (not
frames), each log's own AUROC is reported, and a draw without both labels is skipped."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from bench.log_bootstrap import frame_intervals, log_resamples


def _logs(separated: dict, frames_per_log: int = 20) -> tuple:
    """Logs with events in frames 5-9: a ``True`` log's scores rank every event frame above its
    normal frames (its AUROC 1), a ``False`` log's rank them below (0)."""
    labels, scores, ids = [], [], []
    for name, right in separated.items():
        event = np.zeros(frames_per_log, bool)
        event[5:10] = True
        labels.append(event)
        scores.append(event.astype(float) if right else 1.0 - event)
        ids += [name] * frames_per_log
    return np.concatenate(labels), np.concatenate(scores), np.array(ids)


def test_each_draw_holds_whole_logs_as_many_as_there_are():
    ids = np.repeat(["a", "b", "c"], [3, 5, 7])
    for sel in log_resamples(ids, draws=50, seed=1):
        drawn = ids[sel]
        counts = {log: int((drawn == log).sum()) for log in "abc"}
        assert counts["a"] % 3 == 0 and counts["b"] % 5 == 0 and counts["c"] % 7 == 0
        assert counts["a"] // 3 + counts["b"] // 5 + counts["c"] // 7 == 3


def test_one_log_against_the_others_spans_the_interval():
    """Two logs ranked right and one ranked wrong: a draw of three right logs (8/27 of draws)
    has AUROC 1, one of three wrong logs (1/27, above 2.5 %) has 0, so the interval is [0, 1];
    resampling frames instead would give a narrow interval round the pooled value."""
    labels, scores, ids = _logs({"a": True, "b": True, "c": False})
    out = frame_intervals(labels, scores, ids)
    assert out["per_log_auroc"] == {"a": 1.0, "b": 1.0, "c": 0.0}
    assert out["auroc"]["point"] == pytest.approx(roc_auc_score(labels, scores))
    assert out["average_precision"]["point"] == pytest.approx(average_precision_score(labels, scores))
    assert out["auroc"]["ci95"] == [0.0, 1.0]
    assert out["n_logs"] == 3 and out["skipped"] == 0 and out["draws"] == 2000


def test_logs_ranked_alike_give_no_spread():
    labels, scores, ids = _logs({"a": True, "b": True, "c": True})
    out = frame_intervals(labels, scores, ids)
    assert out["auroc"] == {"point": 1.0, "ci95": [1.0, 1.0]}
    assert out["average_precision"]["ci95"] == [1.0, 1.0]


def test_draws_of_normal_logs_alone_are_skipped_and_counted():
    """One event log among four: a draw misses it with probability (3/4)^4; those draws are
    the ones skipped, replayed here with the same generator."""
    labels, scores, ids = _logs({"events": True, "n1": True, "n2": True, "n3": True})
    labels[ids != "events"] = False
    out = frame_intervals(labels, scores, ids, draws=400, seed=3)
    missed = sum(not labels[sel].any() for sel in log_resamples(ids, draws=400, seed=3))
    assert out["skipped"] == missed and 0.2 < missed / 400 < 0.45
    assert out["per_log_auroc"]["n1"] is None


def test_seeded():
    labels, scores, ids = _logs({"a": True, "b": False, "c": True, "d": True})
    scores = scores + np.random.default_rng(0).normal(scale=0.5, size=len(scores))
    assert frame_intervals(labels, scores, ids, draws=200, seed=5) == \
        frame_intervals(labels, scores, ids, draws=200, seed=5)
    draws = [[ids[sel].tolist() for sel in log_resamples(ids, draws=20, seed=seed)] for seed in (5, 6)]
    assert draws[0] != draws[1]
