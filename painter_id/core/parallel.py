"""Worker processes for the image-heavy stages: one pool helper, one policy for how many workers.

Workers are started with ``spawn``: a forked copy of a process that already runs threads
(TensorFlow, tests) can hang, and spawned workers start clean in this process's folder.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.pool import Pool
from typing import Callable, Iterable, Iterator, Optional, Sequence, TypeVar

from tqdm import tqdm

from painter_id.core import stop

Job = TypeVar("Job")
Result = TypeVar("Result")

# Below this many jobs per worker, starting a process costs more than it saves.
JOBS_PER_WORKER = 64
# More processes than this only add memory and start-up time: decoding is bound by disk and memory too.
MAX_WORKERS = 8


def available_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_count(jobs: int, requested: int = 0) -> int:
    """How many worker processes ``jobs`` jobs get.

    ``requested`` (``runtime.workers``) is honoured up to one worker per job;
    0 means automatic: every available core up to :data:`MAX_WORKERS`, and no more than one
    worker per :data:`JOBS_PER_WORKER` jobs. Always at least 1 (1 means: no pool, this process).
    """
    if requested:
        return max(1, min(requested, jobs))
    return max(1, min(available_cores(), MAX_WORKERS, jobs // JOBS_PER_WORKER))


@dataclass
class Workers:
    """A pool of ``size`` processes, or this process alone when ``size`` is 1."""

    size: int
    pool: Optional[Pool] = None

    def map(self, fn: Callable[[Job], Result], jobs: Sequence[Job], desc: str, unit: str = "img") -> Iterator[Result]:
        """``fn`` over ``jobs``, results in the jobs' order as they arrive, with a progress bar."""
        if self.pool is None:
            results: Iterable[Result] = map(fn, jobs)
        else:
            chunk = max(1, min(64, len(jobs) // (4 * self.size)))
            results = self.pool.imap(fn, jobs, chunksize=chunk)
        yield from tqdm(results, total=len(jobs), desc=desc, unit=unit)


def _start_worker() -> None:
    # Ctrl-C is the stage's to handle: it ends the workers (Pool.terminate) once its cleanup is
    # done. A terminal sends SIGINT to every process of the group, workers included, and each
    # would print a KeyboardInterrupt traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stop.SIGNALS)


@contextlib.contextmanager
def open_workers(size: int) -> Iterator[Workers]:
    """``size`` spawned worker processes for the block (none when ``size`` is 1), closed after it.

    Workers ignore Ctrl-C; the stage ends them when it stops. While they start, SIGINT and
    SIGTERM wait: a signal between starting a worker and handing it its start-up data would
    leave it printing an ``EOFError``, and the workers start with both blocked, so none gets
    a Ctrl-C before :func:`_start_worker` ignores it.
    """
    if size < 2:
        yield Workers(1)
        return
    # Started once per process, the tracker unblocks SIGINT and SIGTERM after starting itself,
    # which would undo the block below: start it first.
    resource_tracker.ensure_running()
    with contextlib.ExitStack() as running:
        with stop.held():
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, stop.SIGNALS)
            try:
                pool = multiprocessing.get_context("spawn").Pool(size, initializer=_start_worker)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            running.enter_context(pool)
        yield Workers(size, pool)
