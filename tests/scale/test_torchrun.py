"""`core.training.fit` under torchrun: DDP on gloo, distributed sampler, rank-0 outputs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _torchrun(nproc: int, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", UNMASK_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", str(HERE / "ddp_train.py"), str(out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_two_processes_train_in_lockstep_and_only_rank0_writes(tmp_path):
    proc = _torchrun(2, tmp_path)
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
