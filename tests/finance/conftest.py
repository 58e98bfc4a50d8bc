"""Shared fixtures: small simulated transaction files (seconds to build)."""
import pandas as pd
import pytest

from finance.simulator import SimulatorConfig, simulate_to_parquet

SMALL = SimulatorConfig(n_customers=150, n_terminals=300, n_days=40, seed=3,
                        terminals_per_day=6.0, customers_per_day=20.0,
                        card_tests_per_day=15.0, travels_per_day=25.0)


@pytest.fixture(scope="session")
def small_tx(tmp_path_factory):
    """Path of a ~12k-row simulated file with every fraud scenario."""
    path = tmp_path_factory.mktemp("finance") / "tx.parquet"
    return simulate_to_parquet(path, SMALL)


@pytest.fixture(scope="session")
def small_frame(small_tx):
    return pd.read_parquet(small_tx)
