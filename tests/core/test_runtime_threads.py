"""One thread budget (core.runtime): the CPUs this process may use, not the machine's."""
from __future__ import annotations

import os
import sys

import pytest
import torch

import core.runtime as runtime
from core.runtime import THREAD_ENV_VARS, configure_threads, default_threads, usable_cpus
from finance.schema import connect

@pytest.fixture
def budget(monkeypatch, tmp_path):
    """No UNMASK_NUM_THREADS, no cgroup quota, thread env vars restored afterwards, and
    torch's thread count put back."""
    monkeypatch.delenv("UNMASK_NUM_THREADS", raising=False)
    for name in THREAD_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime, "CGROUP_CPU_MAX", str(tmp_path / "absent"))
    before = torch.get_num_threads()
    yield monkeypatch, tmp_path
    torch.set_num_threads(before)

def _pool_env() -> set[str]:
    """The thread variables written, but numba's once numba is loaded (it keeps its pool's
    size: see test_a_running_numba_pool_is_capped_not_resized)."""
    skip = {"NUMBA_NUM_THREADS"} if "numba" in sys.modules else set()
    return {os.environ[name] for name in THREAD_ENV_VARS if name not in skip}


def test_one_cpu_of_affinity_gives_one_thread_everywhere(budget):
    monkeypatch, _ = budget
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the machine's count must not matter
    assert usable_cpus() == 1 and default_threads() == 1
    assert configure_threads() == 1
    assert torch.get_num_threads() == 1
    assert _pool_env() == {"1"}
    assert connect().execute("SELECT current_setting('threads')").fetchone()[0] == 1

@pytest.mark.parametrize("cpu_max, cpus, threads", [
    ("150000 100000\n", 1, 1),   # one and a half CPUs: one thread
    ("max 100000\n", 8, 2)])     # no quota: the affinity, capped at two threads
def test_the_cgroup_quota_caps_the_affinity(budget, cpu_max, cpus, threads):
    monkeypatch, tmp_path = budget
    (tmp_path / "cpu.max").write_text(cpu_max)
    monkeypatch.setattr(runtime, "CGROUP_CPU_MAX", str(tmp_path / "cpu.max"))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    assert usable_cpus() == cpus and default_threads() == threads


def test_unmask_num_threads_wins_and_duckdb_gets_the_same_count(budget):
    monkeypatch, _ = budget
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setenv("UNMASK_NUM_THREADS", "3")
    assert default_threads() == 3
    assert configure_threads() == 3 and torch.get_num_threads() == 3
    assert _pool_env() == {"3"}
    assert connect().execute("SELECT current_setting('threads')").fetchone()[0] == 3

def test_the_budget_caps_loaded_openmp_and_blas_pools(budget):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch, _ = budget
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    with threadpoolctl.threadpool_limits():  # restores the pools' sizes afterwards
        configure_threads()
        pools = threadpoolctl.threadpool_info()
        assert pools and {pool["num_threads"] for pool in pools} == {1}


def test_launcher_workers_share_the_cpus(budget):
    monkeypatch, _ = budget
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four torchrun workers on four CPUs
    assert default_threads() == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert default_threads() == 2


def test_under_a_launcher_only_torch_intra_op_threads_change(budget):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch, _ = budget
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setenv("LOCAL_RANK", "0")
    def blas_threads():
        return {pool["num_threads"] for pool in threadpoolctl.threadpool_info()
                if pool["user_api"] == "blas"}

    with threadpoolctl.threadpool_limits(limits=2):
        assert blas_threads() == {2}
        assert configure_threads() == 1 and torch.get_num_threads() == 1
        assert blas_threads() == {2}  # left alone; without a launcher the budget caps them


def test_a_running_numba_pool_is_capped_not_resized(budget):
    """numba re-reads NUMBA_NUM_THREADS at every compile and raises if it differs from the
    size its running pool started with: the budget must leave that variable alone."""
    numba = pytest.importorskip("numba")
    numba.get_num_threads()  # launches the pool
    started = numba.config.NUMBA_NUM_THREADS
    configure_threads(started + 1)
    assert os.environ["NUMBA_NUM_THREADS"] == str(started)

    @numba.njit
    def twice(x):
        return 2 * x

    assert twice(21) == 42  # compiling reloads numba's config: raised before
    assert numba.get_num_threads() <= started
