"""``build_demo``: simulate, train and score a finance workspace for the dashboard.

Where the time goes (``size="small"``, ~24,000 transactions): simulating and featurising
take seconds; training the network and the scoring pass take most of the rest; SHAP
reason codes cost ~0.2 s per alert plus, once per process, importing ``shap`` and numba's
compilation of its permutation code (~20-30 s; numba's on-disk cache cannot hold it,
because the compiled function takes shap's link function as an argument). So the demo
warms ``shap`` up in a background thread while the model trains, computes SHAP values only
for the top of the queue (``max_shap``: the first page an analyst opens), and gives every
other alert the detector's exact additive error attribution
(:meth:`finance.detector.FinanceModel.error_attribution`).
"""
from __future__ import annotations

import threading
from pathlib import Path

SIZES = {  # customers, terminals, days, training days, network steps, SHAP'd alerts
    "tiny": (60, 120, 21, 14, 200, 10),
    "small": (200, 400, 60, 45, 300, 40),
}


def _warm_up_shap() -> None:
    """Import shap and compile its permutation code on a throw-away problem."""
    try:
        import numpy as np

        from core.explain import feature_shap  # lazy: the command loads torch/DuckDB only when it runs

        R = np.random.default_rng(0)
        feature_shap(lambda m: m.sum(axis=1), R.normal(size=(1, 4)), R.normal(size=(4, 4)))
    except Exception:  # noqa: BLE001 -- a failed warm-up only means a slower first explanation
        pass


def build_demo(workspace, size: str = "small", seed: int = 0) -> Path:
    """Build ``WS/data/finance/transactions.parquet``, ``WS/models/finance/default/`` and a
    scored run ``WS/runs/finance/<run_id>/`` (docs/runs.md); returns the run directory.

    Args:
        workspace: workspace directory (created when missing).
        size: ``"small"`` (about a minute on 2 idle cores; a few hundred alerts) or
            ``"tiny"`` (seconds; tests).
        seed: simulator and model seed.
    """
    import pandas as pd

    from core.errors import DataValidationError  # lazy: the command loads torch/DuckDB only when it runs

    from .detector import FinanceModelConfig  # lazy: the command loads torch/DuckDB only when it runs
    from .scoring import score_to_run  # lazy: the command loads torch/DuckDB only when it runs
    from .simulator import SimulatorConfig, simulate_to_parquet  # lazy: the command loads torch/DuckDB only when it runs
    from .train import train  # lazy: the command loads torch/DuckDB only when it runs

    if size not in SIZES:
        raise DataValidationError(f"demo size must be one of {sorted(SIZES)}, got {size!r}")
    customers, terminals, days, train_days, steps, max_shap = SIZES[size]
    warm = threading.Thread(target=_warm_up_shap, name="unmask-shap-warm-up", daemon=True)
    warm.start()
    ws = Path(workspace)
    cfg = SimulatorConfig(n_customers=customers, n_terminals=terminals, n_days=days, seed=seed)
    data = simulate_to_parquet(ws / "data" / "finance" / "transactions.parquet", cfg)
    until = pd.Timestamp(cfg.start_date) + pd.Timedelta(days=train_days)
    model_dir = ws / "models" / "finance" / "default"
    config = FinanceModelConfig(random_state=seed)
    config.detector_params["max_steps"] = steps
    train(data, model_dir, until=str(until.date()), config=config)
    warm.join()
    budget = max(10, 2 * days * customers // 100)  # about 1 % of the transactions
    return score_to_run(ws, model_dir, data, budget=min(budget, 500), max_shap=max_shap)
