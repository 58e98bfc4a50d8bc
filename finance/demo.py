"""``build_demo``: simulate, train and score a finance workspace for the dashboard."""
from __future__ import annotations

from pathlib import Path

SIZES = {  # (customers, terminals, days, training days)
    "tiny": (60, 120, 21, 14),
    "small": (200, 400, 60, 45),
}


def build_demo(workspace, size: str = "small", seed: int = 0) -> Path:
    """Build ``WS/data/finance/transactions.parquet``, ``WS/models/finance/default/`` and a
    scored run ``WS/runs/finance/<run_id>/`` (docs/runs.md); returns the run directory.

    Args:
        workspace: workspace directory (created when missing).
        size: ``"small"`` (about a minute on 2 cores) or ``"tiny"`` (seconds; tests).
        seed: simulator and model seed.
    """
    import pandas as pd

    from core.errors import DataValidationError

    from .detector import FinanceModelConfig
    from .scoring import score_to_run
    from .simulator import SimulatorConfig, simulate_to_parquet
    from .train import train

    if size not in SIZES:
        raise DataValidationError(f"demo size must be one of {sorted(SIZES)}, got {size!r}")
    customers, terminals, days, train_days = SIZES[size]
    ws = Path(workspace)
    cfg = SimulatorConfig(n_customers=customers, n_terminals=terminals, n_days=days, seed=seed)
    data = simulate_to_parquet(ws / "data" / "finance" / "transactions.parquet", cfg)
    until = pd.Timestamp(cfg.start_date) + pd.Timedelta(days=train_days)
    model_dir = ws / "models" / "finance" / "default"
    config = FinanceModelConfig(random_state=seed)
    config.detector_params["max_steps"] = 200 if size == "tiny" else 600
    train(data, model_dir, until=str(until.date()), config=config)
    budget = max(10, days * customers // 100)  # about 1 % of transactions per day reviewed
    return score_to_run(ws, model_dir, data, budget=min(budget, 200))
