"""`core.training.fit` under torchrun: DDP on gloo, distributed sampler, rank-0 outputs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from driving.demo import sim_config
from driving.sim.simulator import simulate_logs
from finance.simulator import SimulatorConfig, simulate_to_parquet

HERE = Path(__file__).parent


def _torchrun(nproc: int, out: Path, modes: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", UNMASK_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", str(HERE / "ddp_train.py"), str(out), modes]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


MODES = ("call", "method")  # "method": the loss calls a model method, not forward


def _failure(proc: subprocess.CompletedProcess) -> str:
    """The launch's stderr tail, led by what an abort at exit means when there was one."""
    cause = ""
    if "terminate called without an active exception" in proc.stderr:
        cause = ("a rank aborted at exit: a gloo worker thread freed a Python tensor during "
                 "interpreter shutdown (core.training._wait_until_released keeps the loss "
                 "all-reduce's tensor from it; another tensor handed to the process group "
                 "is the suspect)\n")
    return cause + proc.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_train_in_lockstep_and_only_rank0_writes(tmp_path):
    # Both modes in one launch (one fit after the other); gradients must sync in each.
    proc = _torchrun(2, tmp_path, ",".join(MODES))
    assert proc.returncode == 0, _failure(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(MODES)
    for out in (tmp_path / mode for mode in MODES):
        rank0 = json.loads((out / "rank0.json").read_text())
        rank1 = json.loads((out / "rank1.json").read_text())
        assert rank0["world"] == rank1["world"] == 2
        # DDP all-reduces gradients, so both replicas hold identical weights after training.
        assert rank0["weights"] == rank1["weights"], out.name
        # The all-reduced epoch losses agree across ranks, and training made progress.
        assert rank0["train_loss"] == rank1["train_loss"], out.name
        assert rank0["train_loss"][-1] < rank0["train_loss"][0], out.name
        # Rank-0-only outputs: one checkpoint, one bundle, no temporary leftovers.
        assert (out / "ckpt" / "best.safetensors").is_file()
        assert (out / "bundle" / "config.json").is_file()
        assert not [p for p in out.iterdir() if p.name.startswith(".")]


def _unmask(*args, nproc: int | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``unmask ARGS``, or the same command line under ``torchrun --nproc_per_node=nproc``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", UNMASK_NUM_THREADS="1")
    launcher = [sys.executable]
    if nproc:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return subprocess.run(launcher + ["-m", "core.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_finance_train_runs_unchanged_under_torchrun(tmp_path):
    pytest.importorskip("duckdb")
    data, model = tmp_path / "tx.parquet", tmp_path / "model"
    # Simulated in this process: the launch under torchrun is what is tested.
    simulate_to_parquet(data, SimulatorConfig(n_customers=60, n_terminals=120, n_days=21, seed=0))
    proc = _unmask("finance", "train", "--data", str(data), "--out", str(model), "--max-steps", "40",
                   nproc=2)
    assert proc.returncode == 0, _failure(proc)
    # One model, written once by rank 0, no temporary leftovers; it loads and scores.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "tx.parquet"]
    scored = _unmask("finance", "score", "--model", str(model), "--data", str(data),
                     "--out", str(tmp_path / "scores.parquet"), "--budget", "5")
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json.loads(scored.stdout)["n_alerts"] == 5


@pytest.mark.slow
def test_driving_train_runs_unchanged_under_torchrun(tmp_path):
    logs, model = tmp_path / "logs", tmp_path / "model"
    simulate_logs(logs, 2, 40, seed=0, config=sim_config("tiny"))
    # --log-dir: torchrun's own parser would read --logs as an abbreviation of --logs-specs.
    proc = _unmask("driving", "train", "--log-dir", str(logs), "--out", str(model), "--epochs", "2",
                   "--steps-per-epoch", "3", nproc=2)
    assert proc.returncode == 0, _failure(proc)
    assert proc.stdout.count("saved model") == 1  # rank 0 alone reports and writes
    assert (model / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_medical_pretrain_runs_unchanged_under_torchrun(tmp_path):
    pytest.importorskip("monai")
    from medical.phantom import simulate_dataset  # lazy: MONAI, an optional dependency

    data, model = tmp_path / "ct", tmp_path / "pretrained"
    simulate_dataset(data, 4, lesions=False, seed=0, shape=(32, 32, 16))
    proc = _unmask("medical", "pretrain", "--data", str(data), "--out", str(model), "--preset", "tiny",
                   "--epochs", "2", nproc=2)
    assert proc.returncode == 0, _failure(proc)
    assert (model / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
