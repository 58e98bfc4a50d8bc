"""The driving benchmark's unmask probabilities are the product's: what
``bench.driving.gated_probabilities`` hands the benchmark and its experiments."""
import numpy as np

from bench.driving import gated_probabilities


def test_gated_probabilities_are_the_products(load_demo_predictor, normal_logs):
    predictor = load_demo_predictor()
    log = normal_logs(1, 40, 7)[0]
    network, probs, (layout, trace) = gated_probabilities(predictor, log)
    assert predictor.memory_gate_ is not None            # put back after the network's pass
    np.testing.assert_array_equal(probs, predictor.predict_log_proba(log))
    predictor.memory_gate_ = None
    np.testing.assert_array_equal(network, predictor.predict_log_proba(log))
    assert not np.array_equal(network, probs)            # the gate changed hidden cells
    assert trace.remembered.shape == log.semantic.shape and layout.shape == log.semantic.shape
