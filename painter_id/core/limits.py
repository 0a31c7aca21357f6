"""Bounds on waiting: a block of work that must end within so many seconds, whatever it waits on.

A socket timeout bounds each wait for data, not the whole: a server that sends one byte every
few seconds never trips it. :func:`within` bounds the whole block with a timer signal, so a
read blocked in C is interrupted too. Main thread only (where the stages run); elsewhere the
block runs unbounded, with the per-read timeouts still in force.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
from typing import Iterator

from painter_id.core.errors import PipelineError


def env_seconds(name: str, default: float) -> float:
    """A wait bound from environment variable ``name`` (seconds, 0 or more), else ``default``.

    For waits that change no result, so they are no params: set per machine or per shell.
    A value that is not such a number gets a warning and the default.
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < math.inf:
        logging.getLogger(__name__).warning("%s=%r is not a number of seconds >= 0; waiting %g s", name, text, default)
        return default
    return seconds


class _Expired(Exception):
    """Raised inside the bounded block when its time is up."""


@contextlib.contextmanager
def within(seconds: float, message: str) -> Iterator[None]:
    """Run the block for at most ``seconds``; past that, a :class:`PipelineError` with ``message``."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def expire(signum, frame):
        raise _Expired()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Expired:
        raise PipelineError(message) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
