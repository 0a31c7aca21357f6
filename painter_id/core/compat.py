"""The one home of every private API this project uses: of TensorFlow, Keras, MLflow or Python itself.

Each function here wraps one private name that has no public equivalent, says why it is
needed, and is imported lazily, so this module costs nothing to import. tests/core/test_compat.py
calls each of them against the installed versions (pinned in :data:`TESTED_WITH`): an
upgrade that moves or removes one fails that test, naming the break, instead of failing
somewhere in a training.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Iterator, NoReturn, Optional

if TYPE_CHECKING:
    import keras

# The versions the private APIs below were checked against (tests/core/test_compat.py).
TESTED_WITH = {"keras": "3.15", "mlflow": "3.17", "python": "3.10-3.12"}


def all_layers(model: keras.Model) -> list:
    """Every layer inside ``model``, nested ones too, in a stable order, ``model`` itself first.

    Keras 3 has no public walk over nested layers (``Model.layers`` stops one level down);
    ``_flatten_layers`` is what Keras itself uses for that walk.
    """
    return list(model._flatten_layers(include_self=True))


@contextlib.contextmanager
def mlflow_tracking_uri(uri: Optional[str]) -> Iterator[None]:
    """MLflow's fluent API (``log_model``, ``load_model`` of ``models:/...``) pointed at ``uri`` while open.

    The project passes its store explicitly everywhere; the fluent calls read a process-wide
    tracking URI instead, and ``mlflow.set_tracking_uri`` has no way back to "unset", so the
    URI is set only for the call, with the context manager MLflow's own tests use.
    """
    if not uri:
        yield
        return
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(uri):
        yield


def finish_threads(timeout: float) -> list[str]:
    """Let the other threads end as at a normal exit, waiting ``timeout`` seconds at most; return those left.

    In a normal exit Python first tells thread pools to stop (``concurrent.futures`` registers
    that with the private ``threading._register_atexit``), then joins every non-daemon thread.
    Joining before telling them, as a plain ``Thread.join`` loop would, waits for ever on an
    idle pool worker; this runs the same hooks first, then joins with a deadline.
    """
    import threading
    import time

    for hook in reversed(threading._threading_atexits):
        hook()
    threading._threading_atexits.clear()
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` after the exit handlers ran, without the interpreter's teardown.

    Exit handlers run (temporary folders, logging, MLflow's); what is skipped is freeing every
    module and TensorFlow's native state, about 3 s a process on 2 cores, which changes no
    output. Python runs its exit handlers only through the private ``atexit._run_exitfuncs``
    when the exit is not a normal one.
    """
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
