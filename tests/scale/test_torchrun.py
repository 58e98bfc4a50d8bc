"""`core.training.fit` under torchrun: DDP on gloo, distributed sampler, rank-0 outputs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _torchrun(nproc: int, out: Path, mode: str = "call") -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", UNMASK_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", str(HERE / "ddp_train.py"), str(out), mode]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["call", "method"])
def test_two_processes_train_in_lockstep_and_only_rank0_writes(tmp_path, mode):
    # "method": the loss calls a model method, not forward; gradients must still sync.
    proc = _torchrun(2, tmp_path, mode)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank0["world"] == rank1["world"] == 2
    # DDP all-reduces gradients, so both replicas hold identical weights after training.
    assert rank0["weights"] == rank1["weights"]
    # The all-reduced epoch losses agree across ranks, and training made progress.
    assert rank0["train_loss"] == rank1["train_loss"]
    assert rank0["train_loss"][-1] < rank0["train_loss"][0]
    # Rank-0-only outputs: one checkpoint, one bundle, no temporary leftovers.
    assert (tmp_path / "ckpt" / "best.safetensors").is_file()
    assert (tmp_path / "bundle" / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


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
    sim = _unmask("finance", "simulate", "--customers", "60", "--terminals", "120", "--days", "21",
                  "--out", str(data))
    assert sim.returncode == 0, sim.stderr[-2000:]
    proc = _unmask("finance", "train", "--data", str(data), "--out", str(model), "--max-steps", "40",
                   nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # One model, written once by rank 0, no temporary leftovers; it loads and scores.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "tx.parquet"]
    scored = _unmask("finance", "score", "--model", str(model), "--data", str(data),
                     "--out", str(tmp_path / "scores.parquet"), "--budget", "5")
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json.loads(scored.stdout)["n_alerts"] == 5


@pytest.mark.slow
def test_driving_train_runs_unchanged_under_torchrun(tmp_path):
    logs, model = tmp_path / "logs", tmp_path / "model"
    sim = _unmask("driving", "simulate", "--logs", "2", "--frames", "40", "--grid", "64",
                  "--out", str(logs))
    assert sim.returncode == 0, sim.stderr[-2000:]
    # --log-dir: torchrun's own parser would read --logs as an abbreviation of --logs-specs.
    proc = _unmask("driving", "train", "--log-dir", str(logs), "--out", str(model), "--epochs", "2",
                   "--steps-per-epoch", "3", nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("saved model") == 1  # rank 0 alone reports and writes
    assert (model / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_medical_pretrain_runs_unchanged_under_torchrun(tmp_path):
    pytest.importorskip("monai")
    data, model = tmp_path / "ct", tmp_path / "pretrained"
    sim = _unmask("medical", "simulate", "--cases", "4", "--shape", "32,32,16", "--out", str(data))
    assert sim.returncode == 0, sim.stderr[-2000:]
    proc = _unmask("medical", "pretrain", "--data", str(data), "--out", str(model), "--preset", "tiny",
                   "--epochs", "2", nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (model / "config.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
