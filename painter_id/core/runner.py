"""The runner every stage's and command's ``__main__`` goes through: logging, signals, exit codes."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from typing import Callable, NoReturn

from painter_id.core import stop
from painter_id.core.atomic import remove_dead_temporaries
from painter_id.core.compat import exit_now, finish_threads
from painter_id.core.errors import PipelineError
from painter_id.core.limits import env_seconds

# A full disk, a full quota, or a file-size limit (ulimit -f): the user must free space.
DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# How long a finished stage waits for threads a library left running before it ends anyway
# (an upload to a slow artifact store, say); the environment variable sets another bound.
EXIT_WAIT_S = 60.0
EXIT_WAIT_ENV = "PAINTER_ID_EXIT_WAIT_SECONDS"


def configure_logging() -> None:
    """Log ``INFO`` and up to stderr in a compact format (``STAGES_LOG_LEVEL`` overrides)."""
    level = os.environ.get("STAGES_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )


def positive_int(text: str) -> int:
    """An ``argparse`` type: an integer of 1 or more (``--limit``, ``--top-k``, ``--batch-size``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def leave(code: int) -> NoReturn:
    """End the process with ``code`` once its work is done, as a normal exit would but bounded and faster.

    Other threads get :data:`EXIT_WAIT_S` seconds (or ``$PAINTER_ID_EXIT_WAIT_SECONDS``) to finish (a thread pool is told to stop
    first, as at a normal exit); one that is still running then is named in a warning and
    the process ends anyway, so a finished stage never hangs. Ctrl-C or SIGTERM ends that wait
    too. The exit handlers run; what is skipped is TensorFlow's teardown (seconds, no output;
    :func:`painter_id.core.compat.exit_now`). A signal received on the way makes the code 130 or
    143 (:func:`painter_id.core.stop.exit_code`): an interrupted process never exits 0.
    """
    wait = exit_wait()
    try:
        left = finish_threads(wait)
        stop.exiting()
    except KeyboardInterrupt:
        stop.exiting()
        left = []  # asked to stop now: the threads end with the process
    if left:
        logging.getLogger(__name__).warning("threads still running after %g s at exit, ended with the process: %s "
                                            "(%s sets how long to wait)", wait, ", ".join(left), EXIT_WAIT_ENV)
    exit_now(stop.exit_code(code))


def exit_wait() -> float:
    """Seconds a finished stage waits for other threads: ``$PAINTER_ID_EXIT_WAIT_SECONDS``, else :data:`EXIT_WAIT_S`."""
    return env_seconds(EXIT_WAIT_ENV, EXIT_WAIT_S)


def run_stage(name: str, main: Callable[[], None]) -> NoReturn:
    """Run a stage's ``main`` and turn expected failures into one line on stderr.

    Exit codes: 0 success, 2 a :class:`PipelineError`, 130 interrupted by SIGINT (Ctrl-C),
    143 by SIGTERM (:mod:`painter_id.core.stop`). Outputs are written to temporary paths and
    renamed into place, so an interrupted stage leaves its previous outputs as they were.
    """
    # First, before any work: a signal from here on stops the stage, whatever this process inherited.
    stop.install()
    configure_logging()
    try:
        remove_dead_temporaries()
        main()
        stop.check()  # an interrupt that a library caught and dropped still ends the stage as one
    except (PipelineError, KeyboardInterrupt, OSError) as exc:
        stop.exiting()  # the message and the exit handlers run whole; a second signal ends the process at once
        leave(_failed(name, exc))
    leave(0)


def _failed(name: str, exc: BaseException) -> int:
    """Print the one line that ends a stage stopped by ``exc`` and return its exit code; re-raise what is a bug."""
    if isinstance(exc, KeyboardInterrupt):
        print(f"error: {name}: interrupted; its previous outputs were left as they were, run it again", file=sys.stderr)
        return 130
    if isinstance(exc, OSError):
        if exc.errno not in DISK_FULL:
            raise exc
        # Every output is written to a temporary path and renamed, so the previous ones are intact.
        where = f" writing {exc.filename}" if exc.filename else ""
        print(f"error: {name}: no space left{where} ({exc.strerror}); free disk space (or raise the limit) and run "
              "it again; its previous outputs were left as they were", file=sys.stderr)
        return 2
    print(f"error: {name}: {exc}", file=sys.stderr)
    return 2
