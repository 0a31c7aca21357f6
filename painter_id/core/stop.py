"""How a stage or command stops on Ctrl-C or SIGTERM: at once, through its cleanup, with a known exit code.

Exit codes: 130 after SIGINT (Ctrl-C, what DVC and shells expect), 143 after SIGTERM (128 + 15,
what a shell reports for a process that SIGTERM ended, so ``kill`` and schedulers see their own
signal). Both take the same path: a :class:`KeyboardInterrupt` whose ``finally`` blocks remove
the temporary outputs, so the previous outputs stay as they were.

Python installs its Ctrl-C handler only when SIGINT is not ignored at start, and a process
started from a non-interactive shell's background job (``cmd &`` in a script, CI, ``nohup``)
inherits SIGINT ignored: without :func:`install` such a stage ran to its end through Ctrl-C
and exited 0. Tests can also ask for a sign that the work is under way (:func:`sign`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The file :func:`sign` writes, set by tests that signal a stage in the middle of its work.
SIGN_ENV = "PAINTER_ID_TEST_SIGNAL_FILE"
# How long :func:`sign` waits for the test's signal before the work goes on without it.
SIGN_WAIT_S = 60.0

_received: list[int] = []
# One entry per open :func:`held` block: how many signals had arrived when it began.
_holding: list[int] = []


def install() -> None:
    """Make SIGINT and SIGTERM raise :class:`KeyboardInterrupt` in this process, whatever it inherited."""
    for sig in SIGNALS:
        signal.signal(sig, _interrupt)


def _interrupt(signum, frame) -> None:
    _received.append(signum)
    if not _holding:
        raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def held() -> Iterator[None]:
    """SIGINT and SIGTERM wait for the end of the block, then interrupt as usual.

    For the few statements that create something and register its cleanup (a temporary
    folder, a worker pool): a signal between the two would leave it behind.
    """
    _holding.append(len(_received))
    try:
        yield
    finally:
        arrived_before = _holding.pop()
    if len(_received) > arrived_before and not _holding and signal.getsignal(signal.SIGINT) is _interrupt:
        raise KeyboardInterrupt(signal.Signals(_received[-1]).name)


def _note(signum, frame) -> None:
    # While exiting, a signal only sets the exit code, so the exit handlers still run whole;
    # a second one ends the process at once, as it would have without a handler.
    _received.append(signum)
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


def exiting() -> None:
    """From now on SIGINT and SIGTERM no longer interrupt: the first is noted for :func:`exit_code`, a second kills."""
    if signal.getsignal(signal.SIGINT) is _interrupt:
        for sig in SIGNALS:
            signal.signal(sig, _note)


def received() -> bool:
    """True once SIGINT or SIGTERM arrived and was not taken as a normal end (:func:`ends_normally`)."""
    return bool(_received)


def exit_code(code: int) -> int:
    """``code``, unless a signal arrived: then 128 + the first one's number (130 for Ctrl-C, 143 for SIGTERM).

    So an interrupt never ends in 0, even one that a library caught and dropped (a
    :class:`KeyboardInterrupt` raised inside a finalizer is printed and lost, say).
    """
    return 128 + _received[0] if _received else code


def check() -> None:
    """Raise :class:`KeyboardInterrupt` if a signal arrived whose interrupt was dropped on the way.

    Called before an output replaces the previous one, so a lost interrupt cannot let the
    stage go on to commit its work.
    """
    if _received:
        raise KeyboardInterrupt(signal.Signals(_received[0]).name)


@contextlib.contextmanager
def ends_normally() -> Iterator[None]:
    """Ctrl-C or SIGTERM ends the block as its normal end (a server's way to stop), not as an interruption."""
    try:
        yield
    except KeyboardInterrupt:
        _received.clear()


def sign() -> None:
    """For tests: write ``$PAINTER_ID_TEST_SIGNAL_FILE`` (this pid) and wait here for a signal (does nothing if unset).

    Called at a known point inside a stage's work, so a test can signal the stage there and
    only there: the wait (at most :data:`SIGN_WAIT_S` s) keeps the work from ending first.
    """
    path = os.environ.get(SIGN_ENV)
    if not path or _received:
        return
    os.environ.pop(SIGN_ENV)  # once per process: the first point reached
    Path(path).write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + SIGN_WAIT_S
    while not _received and time.monotonic() < deadline:
        time.sleep(0.01)
