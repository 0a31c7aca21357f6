"""The one worker-process policy of the image stages (download, oversample, resize)."""

from __future__ import annotations

import os
import signal

import pytest

from painter_id.core import parallel


def square(x: int) -> int:
    return x * x


def signal_state(_: int) -> tuple[bool, set]:
    """In a worker: whether it ignores Ctrl-C, and the signals it blocks."""
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN, signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_automatic_workers_need_enough_jobs_and_stop_at_the_cap(monkeypatch):
    monkeypatch.setattr(parallel, "available_cores", lambda: 32)
    assert parallel.worker_count(0) == 1
    assert parallel.worker_count(parallel.JOBS_PER_WORKER * 2 - 1) == 1
    assert parallel.worker_count(parallel.JOBS_PER_WORKER * 3) == 3
    assert parallel.worker_count(100_000) == parallel.MAX_WORKERS
    monkeypatch.setattr(parallel, "available_cores", lambda: 2)
    assert parallel.worker_count(100_000) == 2


def test_requested_workers_are_honoured_up_to_one_per_job():
    assert parallel.worker_count(10, requested=4) == 4
    assert parallel.worker_count(3, requested=4) == 3
    assert parallel.worker_count(0, requested=4) == 1


@pytest.mark.parametrize("size", [1, 2])
def test_results_come_back_in_job_order(size):
    jobs = list(range(200))
    with parallel.open_workers(size) as workers:
        assert (workers.pool is None) == (size == 1)
        assert list(workers.map(square, jobs, desc="test")) == [x * x for x in jobs]


def test_available_cores_is_this_process_affinity():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert parallel.available_cores() == expected


def test_workers_leave_ctrl_c_to_the_stage_and_the_stage_keeps_its_signals():
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with parallel.open_workers(2) as workers:
        states = list(workers.map(signal_state, list(range(8)), desc="test"))
    # Every worker ignores SIGINT and blocks nothing (SIGTERM still ends it); the caller's mask is as it was.
    assert states == [(True, set())] * 8
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
