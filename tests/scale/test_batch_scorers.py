"""Per-vertical batch scorers (pure functions over items) on both core.scale engines."""
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest



@pytest.fixture(scope="module")
def driving_run(tmp_path_factory):
    """Two tiny logs, a briefly trained predictor and the run ``unmask driving score`` writes."""
    from driving.demo import sim_config
    from driving.model.predictor import OcclusionPredictor
    from driving.schema import read_log
    from driving.scoring.run import score_logs
    from driving.sim.simulator import simulate_logs

    root = tmp_path_factory.mktemp("driving_batch")
    paths = simulate_logs(root / "logs", 2, 30, seed=0, config=sim_config("tiny"))
    model = root / "model"
    OcclusionPredictor(history=(2,), future=(5,), widths=(8, 16), epochs=1, batch_size=8,
                       max_steps_per_epoch=2, random_state=0).fit([read_log(p) for p in paths]).save(model)
    run_dir = score_logs(model, root / "logs", root / "run", top_frames=0)
    return run_dir, str(model), [str(p) for p in paths]


def test_driving_batch_score_matches_the_run(driving_run, tmp_path):
    from driving.batch import batch_score

    run_dir, model, logs = driving_run
    summary = batch_score(model, sorted(logs)[0].rsplit("/", 1)[0], tmp_path / "frames.parquet")
    table = pd.read_parquet(tmp_path / "frames.parquet")
    assert summary["frames"] == len(table) and summary["logs"] == len(logs)
    expected = pd.read_parquet(run_dir / "frames.parquet").sort_values(["log_id", "frame"])
    table = table.sort_values(["log_id", "frame"])
    np.testing.assert_allclose(table["score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(table["p_value"].to_numpy(), expected["p_value"].to_numpy(), rtol=1e-6)


@pytest.mark.slow
def test_driving_batch_score_ray_matches_local(driving_run, tmp_path):
    pytest.importorskip("ray")
    from driving.batch import batch_score
    from driving.schema import read_log, write_log

    _, model, logs = driving_run
    for path in logs:
        write_log(read_log(path), tmp_path / "logs" / path.rsplit("/", 1)[1])
    log = read_log(logs[0])                                   # and one log at half the rate
    write_log(replace(log, log_id="slow", timestamp=log.timestamp * 2), tmp_path / "logs" / "slow.parquet")
    with pytest.warns(UserWarning, match="frame rate 5 Hz"):
        local_summary = batch_score(model, tmp_path / "logs", tmp_path / "local.parquet")
    with pytest.warns(UserWarning, match="frame rate 5 Hz"):
        ray_summary = batch_score(model, tmp_path / "logs", tmp_path / "ray.parquet", engine="ray")
    assert len(local_summary["warnings"]) == 1 and ray_summary["warnings"] == local_summary["warnings"]
    local, remote = pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(tmp_path / "ray.parquet")
    pd.testing.assert_frame_equal(local, remote)


@pytest.fixture(scope="module")
def medical_run(tmp_path_factory):
    """Tiny phantoms, tiny models and the run ``unmask medical infer`` writes."""
    pytest.importorskip("monai")
    from medical.infer import infer
    from medical.phantom import simulate_dataset
    from medical.presets import preset
    from medical.pretrain import pretrain
    from medical.segment import train_segmenter

    root = tmp_path_factory.mktemp("medical_batch")
    train = simulate_dataset(root / "train", 4, lesions=False, seed=0, shape=(32, 32, 16))
    test = simulate_dataset(root / "test", 3, lesions=True, seed=1, shape=(32, 32, 16))
    pretrain_config, segment_config = preset("tiny")
    # The tests compare two ways of scoring one model, not its quality: a few epochs do.
    pretrain(train, root / "pretrained", replace(pretrain_config, max_epochs=3))
    train_segmenter(train, root / "ct", root / "pretrained", 2, replace(segment_config, max_epochs=2))
    return infer(root / "ct", test, root / "run", shap_evals=0), root / "ct", test


def test_medical_batch_score_matches_the_run(medical_run, tmp_path):
    from medical.batch import batch_score

    run_dir, model, test = medical_run
    summary = batch_score(model, test, tmp_path / "cases.parquet")
    table = pd.read_parquet(tmp_path / "cases.parquet").set_index("case")
    expected = pd.read_parquet(run_dir / "scores.parquet").set_index("case").loc[table.index]
    assert summary["cases"] == len(expected) == 3
    np.testing.assert_allclose(table["score"], expected["score"], rtol=1e-5)
    np.testing.assert_allclose(table["p_value"], expected["p_value"], rtol=1e-5)
    volumes = [c for c in expected.columns if c.startswith("volume_ml_")]
    assert volumes and np.allclose(table[volumes], expected[volumes])
    assert table["rank"].tolist() == sorted(table["rank"])


@pytest.mark.slow
def test_finance_scores_identical_on_local_and_ray(tmp_path):
    pytest.importorskip("ray")
    pytest.importorskip("duckdb")
    from core.scale import read_output
    from finance.detector import FinanceModelConfig
    from finance.features import featurise
    from finance.scoring import map_features
    from finance.simulator import SimulatorConfig, simulate_to_parquet
    from finance.train import train

    tx, model, feats = tmp_path / "tx.parquet", tmp_path / "model", tmp_path / "features.parquet"
    simulate_to_parquet(tx, SimulatorConfig(n_customers=60, n_terminals=120, n_days=21, seed=0))
    config = FinanceModelConfig(random_state=0)
    config.detector_params["max_steps"] = 20
    train(tx, model, config=config)
    featurise(tx, feats)
    local = read_output(map_features(feats, tmp_path / "local", model, batch_size=500)).to_pandas()
    remote = read_output(map_features(feats, tmp_path / "ray", model, engine="ray",
                                      batch_size=500)).to_pandas()
    assert len(local) > 1000
    # Ray writes one file per block; rows are matched by the scorer's ``_row`` key.
    remote = remote.sort_values("_row").reset_index(drop=True)
    pd.testing.assert_frame_equal(local.sort_values("_row").reset_index(drop=True), remote)
