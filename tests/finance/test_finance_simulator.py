import hashlib

import pandas as pd

from finance.simulator import SimulatorConfig, simulate, simulate_to_parquet


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_reproduces_the_file_exactly(tmp_path):
    cfg = SimulatorConfig(n_customers=80, n_terminals=160, n_days=15, seed=7)
    a = simulate_to_parquet(tmp_path / "a.parquet", cfg)
    b = simulate_to_parquet(tmp_path / "b.parquet", cfg)
    assert _digest(a) == _digest(b)
    cfg.seed = 8
    c = simulate_to_parquet(tmp_path / "c.parquet", cfg)
    assert _digest(a) != _digest(c)


def test_all_scenarios_labelled_and_schema(small_frame):
    df = small_frame
    assert {"transaction_id", "timestamp", "customer_id", "terminal_id", "amount", "channel",
            "terminal_x", "terminal_y", "customer_x", "customer_y", "is_fraud", "fraud_scenario"} <= set(df)
    assert set(df["fraud_scenario"].unique()) == {0, 1, 2, 3, 4, 5}
    assert ((df["fraud_scenario"] > 0) == (df["is_fraud"] == 1)).all()
    assert df["timestamp"].is_monotonic_increasing and df["transaction_id"].is_unique
    assert (df["amount"] >= 0).all()
    # Scenario semantics: over-limit amounts; card testing = small card-not-present amounts;
    # impossible travel = far from home.
    s = df["fraud_scenario"]
    assert (df.loc[s == 1, "amount"] > 220).all()
    assert (df.loc[s == 4, "amount"] < 3).all() and (df.loc[s == 4, "channel"] == "card_not_present").all()
    assert (df.loc[s == 3, "channel"] == "card_not_present").all()
    home = ((df.terminal_x - df.customer_x) ** 2 + (df.terminal_y - df.customer_y) ** 2) ** 0.5
    assert home[s == 5].median() > 5 * home[s == 0].median()


def test_handbook_scale_rate_shape():
    # A month of the handbook's population has the handbook's daily volume (~2 tx/customer/day).
    table = simulate(SimulatorConfig(n_customers=5000, n_terminals=10000, n_days=5, seed=0))
    per_day = table.num_rows / 5
    assert 8000 < per_day < 12000
    frame = table.to_pandas()
    assert 0.001 < frame["is_fraud"].mean() < 0.05
    assert pd.api.types.is_datetime64_any_dtype(frame["timestamp"])
