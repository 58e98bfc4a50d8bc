"""``OcclusionPredictor.fit_memory_gate``: the public refit of the memory gate that
``calibrate`` runs (and bench experiments call on their own calibration tails)."""
import numpy as np

from driving.demo import sim_config
from driving.model.predictor import OcclusionPredictor
from driving.schema import read_log
from driving.sim.simulator import simulate_logs


def test_refitting_the_gate_reproduces_calibrate_and_off_means_none(tmp_path):
    logs = [read_log(p) for p in simulate_logs(tmp_path, 3, 40, seed=4, config=sim_config("tiny"))]
    predictor = OcclusionPredictor(history=(2,), widths=(8, 16), epochs=1, batch_size=8,
                                   max_steps_per_epoch=2, random_state=0, progress=False)
    predictor.fit(logs[:2])
    fitted = predictor.memory_gate_.to_dict()
    gated = predictor.predict_log_proba(logs[2])
    predictor.fit_memory_gate([logs[2]])                              # other logs, another gate
    assert predictor.memory_gate_.to_dict() != fitted
    assert predictor.fit_memory_gate(predictor.calibration_logs(logs[:2])) is predictor
    assert predictor.memory_gate_.to_dict() == fitted                  # same tails, same gate
    np.testing.assert_array_equal(predictor.predict_log_proba(logs[2]), gated)
    predictor.memory_gate = False
    assert predictor.fit_memory_gate(predictor.calibration_logs(logs[:2])).memory_gate_ is None
