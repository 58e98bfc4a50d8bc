"""Say when a file is unlike the training data: one ``warning:`` line, kept in the run summary."""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dashboard
from dashboard.workspace import ENV_VAR
from finance.simulator import SimulatorConfig, simulate
from finance_cli_runner import run_cli as _cli

CONFIG = dict(n_customers=80, n_terminals=160, n_days=20)


def _bank_file(path, seed):
    """The simulator's transactions plus a currency column (mostly EUR)."""
    frame = simulate(SimulatorConfig(**CONFIG, seed=seed)).to_pandas()
    R = np.random.default_rng(seed)
    frame["currency"] = R.choice(["EUR", "USD", "GBP"], len(frame), p=[0.85, 0.1, 0.05])
    frame.to_parquet(path)
    return path


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """(the bank's file, a model trained on its first 14 days)."""
    folder = tmp_path_factory.mktemp("drift")
    data = _bank_file(folder / "bank.parquet", seed=1)
    out = folder / "model"
    code, _, stderr = _cli("finance", "train", "--data", str(data), "--out", str(out), "--max-steps", "60",
                           "--map", "categorical=currency", "--until", "2018-04-15")
    assert code == 0, stderr
    return data, out


@pytest.fixture(scope="module")
def model(bank):
    return bank[1]


def _invented(path, n=300):
    """300 transactions that look nothing like the training data: unknown currencies,
    amounts in the tens of thousands, every one at a new terminal, at night."""
    R = np.random.default_rng(7)
    stamps = pd.Timestamp("2018-05-01") + pd.to_timedelta(R.integers(0, 5 * 86_400, n), unit="s")
    pd.DataFrame({
        "transaction_id": [f"inv{i}" for i in range(n)], "timestamp": stamps.floor("h") + pd.Timedelta(hours=3),
        "customer_id": [f"X{i % 40}" for i in range(n)], "terminal_id": [f"Z{i}" for i in range(n)],
        "amount": R.lognormal(10, 1, n).round(2),
        "channel": np.where(R.random(n) < 0.9, "card_not_present", "card_present"),
        "customer_x": R.uniform(0, 100, n), "customer_y": R.uniform(0, 100, n),
        "terminal_x": R.uniform(0, 100, n), "terminal_y": R.uniform(0, 100, n),
        "currency": R.choice(["XBT", "JPY"], n)}).to_csv(path, index=False)
    return path


def test_unfamiliar_file_gets_one_warning_line_in_cli_and_run_summary(model, tmp_path, monkeypatch):
    data = _invented(tmp_path / "invented.csv")
    code, stdout, stderr = _cli("finance", "score", "--model", str(model), "--data", str(data),
                                "--out", str(tmp_path / "scores.parquet"), "--budget", "5", "--max-shap", "0")
    assert code == 0, stderr
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, stderr
    line = warnings[0]
    assert str(data) in line and "unlike the training data" in line
    assert "currency" in line and "'XBT'" in line or "'JPY'" in line     # unseen categories, named
    assert "PSI" in line and "threshold" in line                          # feature shift, alert share
    assert json.loads(stdout)["warning"] == line.removeprefix("warning: ")
    # a run directory keeps it in the manifest's summary (the dashboard's banner reads it)
    code, stdout, stderr = _cli("finance", "score", "--model", str(model), "--data", str(data),
                                "--workspace", str(tmp_path / "ws"), "--budget", "5", "--max-shap", "0")
    assert code == 0, stderr
    manifest = next((tmp_path / "ws" / "runs" / "finance").glob("*/manifest.json"))
    assert "unlike the training data" in json.loads(manifest.read_text())["summary"]["warning"]
    # ... and the finance queue page shows it as a banner
    banners = _queue_page_warnings(monkeypatch, tmp_path / "ws")
    assert len(banners) == 1 and "unlike the training data" in banners[0]


def _queue_page_warnings(monkeypatch, workspace) -> list[str]:
    """The warning banners of the dashboard's finance queue page on ``workspace``."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv(ENV_VAR, str(workspace))
    at = AppTest.from_file(str(Path(dashboard.__file__).with_name("app.py")), default_timeout=60).run()
    at.switch_page("views/finance.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return [re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", str(w.value)) for w in at.warning]


def test_file_from_the_training_distribution_gets_no_warning(bank, tmp_path):
    data, model = bank   # the same bank's cards and terminals, six days past the training period
    code, stdout, stderr = _cli("finance", "score", "--model", str(model), "--data", str(data),
                                "--out", str(tmp_path / "scores.parquet"), "--budget", "5", "--max-shap", "0")
    assert code == 0, stderr
    assert "warning:" not in stderr and "warning" not in json.loads(stdout), stderr
