"""One thread budget (core.runtime): the CPUs this process may use, not the machine's."""
from __future__ import annotations

import itertools
import os
import subprocess
import sys

import pytest
import torch

import core.runtime as runtime
from core.runtime import (THREAD_ENV_VARS, configure_threads, default_threads, limit_thread_env,
                          usable_cpus)
from core.scale import init_ray
from finance.schema import connect

@pytest.fixture
def budget(monkeypatch, tmp_path):
    """No UNMASK_NUM_THREADS, no cgroup quota, thread env vars restored afterwards, and
    torch's thread count put back."""
    monkeypatch.delenv("UNMASK_NUM_THREADS", raising=False)
    for name in (*THREAD_ENV_VARS, "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime, "CGROUP_CPU_MAX", str(tmp_path / "absent"))
    _loadavg(monkeypatch, tmp_path, running=1)  # idle CPUs, whatever else this machine runs
    before = torch.get_num_threads()
    yield monkeypatch, tmp_path
    torch.set_num_threads(before)

def _loadavg(monkeypatch, tmp_path, running: int) -> None:
    """``/proc/loadavg`` saying ``running`` threads are runnable (the reader among them)."""
    (tmp_path / "loadavg").write_text(f"3.10 2.50 1.90 {running}/412 12345\n")
    monkeypatch.setattr(runtime, "PROC_LOADAVG", str(tmp_path / "loadavg"))


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


@pytest.mark.parametrize("running, threads", [
    (1, 2),    # only the caller: both CPUs
    (2, 1),    # one other busy thread: one CPU left
    (3, 1),    # two spinners on two CPUs: still one thread, never none
    (40, 1)])
def test_busy_cpus_leave_fewer_threads(budget, running, threads):
    monkeypatch, tmp_path = budget
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    _loadavg(monkeypatch, tmp_path, running)
    assert default_threads() == threads
    assert configure_threads() == threads and torch.get_num_threads() == threads
    assert _pool_env() == {str(threads)}


def test_a_passing_process_does_not_take_a_thread_away(budget):
    """The fewest runnable threads of a few looks: one look catching a short-lived process
    must not halve the budget."""
    monkeypatch, tmp_path = budget
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    looks = itertools.cycle(["0 0 0 2/9 1", "0 0 0 1/9 1", "0 0 0 3/9 1"])
    monkeypatch.setattr(runtime.Path, "read_text",
                        lambda self: next(looks) if str(self) == runtime.PROC_LOADAVG else "")
    assert runtime.busy_elsewhere() == 0 and default_threads() == 2


def test_without_proc_loadavg_the_usable_cpus_decide(budget):
    monkeypatch, tmp_path = budget
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(runtime, "PROC_LOADAVG", str(tmp_path / "absent"))
    assert runtime.busy_elsewhere() == 0 and default_threads() == 2


def test_openmp_threads_sleep_rather_than_spin_unless_told(budget):
    """A spinning OpenMP thread takes the CPU from the one it waits for on busy cores."""
    monkeypatch, _ = budget
    limit_thread_env(2)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the caller's choice is kept
    limit_thread_env(2)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_a_child_started_after_the_budget_gets_passive_openmp(budget):
    """What torch's OpenMP runtime reads when a command's child process loads it."""
    limit_thread_env(1)
    code = "import os; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('OMP_NUM_THREADS'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["PASSIVE", "1"]


def test_a_local_ray_starts_on_the_cpus_this_process_may_use(budget):
    ray = pytest.importorskip("ray")
    monkeypatch, _ = budget
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    started = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: started.update(kwargs))
    init_ray()
    assert started["num_cpus"] == 3
