"""The driving benchmark's unmask probabilities are the product's: what
``bench.driving.gated_probabilities`` hands the benchmark and its experiments."""
import numpy as np

from bench.driving import gated_probabilities
from driving.model.baselines import WorldCells


def test_gated_probabilities_are_the_products(load_demo_predictor, normal_logs):
    predictor = load_demo_predictor()
    log = normal_logs(1, 40, 7)[0]
    gate = predictor.memory_gate_
    network, probs, (layout, trace) = gated_probabilities(predictor, log)
    assert gate is not None and predictor.memory_gate_ is gate   # the predictor is not changed
    np.testing.assert_array_equal(probs, predictor.predict_log_proba(log))
    shared_network, shared_probs, _ = gated_probabilities(predictor, log, WorldCells(log))
    np.testing.assert_array_equal(shared_network, network)     # the caller's world cells
    np.testing.assert_array_equal(shared_probs, probs)
    predictor.memory_gate_ = None
    np.testing.assert_array_equal(network, predictor.predict_log_proba(log))
    assert not np.array_equal(network, probs)            # the gate changed hidden cells
    assert trace.remembered.shape == log.semantic.shape and layout.shape == log.semantic.shape


def test_a_fitted_gate_without_a_trace_is_not_applied(load_demo_predictor, normal_logs):
    """With ``memory_gate`` off there is no memory trace: a fitted gate kept beside it is
    skipped, as the product skips it."""
    predictor = load_demo_predictor()
    predictor.memory_gate = False
    log = normal_logs(1, 40, 7)[0]
    gate = predictor.memory_gate_
    network, probs, (_, trace) = gated_probabilities(predictor, log)
    assert gate is not None and predictor.memory_gate_ is gate and trace is None
    assert probs is network
    np.testing.assert_array_equal(probs, predictor.predict_log_proba(log))
