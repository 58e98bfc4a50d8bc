"""``bench.driving.evaluate_logs``'s ``frames_first_4_logs`` are the metrics of the set's first
4 logs, as a 4-log run measures them: what the benchmark compares with its earlier 4-log files
(log ``i`` of a set is the same log whatever the set's size)."""
from dataclasses import replace

from bench.driving import FIRST_LOGS, evaluate_logs
from driving.demo import sim_config
from driving.model.baselines import PositionalPrior

SHORT, LONG = 60, 80           # frames: the first 4 logs are shorter than the rest


def test_the_first_logs_subset_is_a_run_on_the_first_logs_alone(load_demo_predictor, normal_logs):
    predictor = load_demo_predictor()
    config = replace(sim_config("tiny"), anomaly_interval_s=4.0)   # events early in a log
    logs = [config.build(900 + i).simulate(SHORT if i < FIRST_LOGS else LONG, log_id=f"log_{i:03d}")
            for i in range(FIRST_LOGS + 2)]
    assert FIRST_LOGS == 4
    events = [log.anomaly.any() for log in logs]
    assert any(events[:FIRST_LOGS]) and any(events[FIRST_LOGS:])
    prior = PositionalPrior().fit(normal_logs(2, 20, 3))
    subset = evaluate_logs(predictor, prior, logs, seed=0)[f"frames_first_{FIRST_LOGS}_logs"]
    alone = evaluate_logs(predictor, prior, logs[:FIRST_LOGS], seed=0)
    assert subset["frames"]["n_frames"] == FIRST_LOGS * SHORT      # the last 4 hold 2 long logs
    assert subset["frames"] == alone["frames"] and subset["frames"]["auroc"] is not None
    assert subset["frames_by_kind"] == alone["frames_by_kind"]
