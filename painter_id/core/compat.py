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


def scale_learning_rates(optimizer: keras.optimizers.Optimizer, variables: list, scale: float) -> None:
    """Make ``optimizer`` step ``variables`` at ``scale`` times its learning rate, every other variable at it.

    Keras 3 has no per-variable learning rate. Scaling the gradients instead would do nothing
    under Adam or RMSprop (both divide by the gradients' own size), so this scales the rate
    where each variable's step is taken: ``update_step(gradient, variable, learning_rate)``,
    called once per variable by every Keras optimizer. Which variable it is comes from the
    private ``_get_variable_index``: the TensorFlow backend hands ``update_step`` the
    ``tf.Variable`` inside each Keras one, which only the optimizer's own index maps back.
    Call before the optimizer's first step; the instance's class is swapped, nothing else.
    """
    scaled = {id(v) for v in variables}
    base = type(optimizer)

    def update_step(self, gradient, variable, learning_rate):
        if id(self._trainable_variables[self._get_variable_index(variable)]) in scaled:
            learning_rate = learning_rate * scale
        return base.update_step(self, gradient, variable, learning_rate)

    optimizer.__class__ = type(base.__name__, (base,), {"update_step": update_step})


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


# TensorFlow's native start-up lines on a machine without a GPU: written by absl before its log
# level is read (tensorflow/tensorflow#100442), so TF_CPP_MIN_LOG_LEVEL cannot silence them.
TF_STARTUP_NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "Unable to register cu",  # cuFFT/cuDNN/cuBLAS factories registered twice
    "TF-TRT Warning",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
)


@contextlib.contextmanager
def _filtered_native_stderr() -> Iterator[None]:
    """While open, what native code writes to file descriptor 2 is held back; then all but the noise is written."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not any(noise in line for noise in TF_STARTUP_NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()


class _QuietTensorFlowFinder:
    """Imports ``tensorflow`` (and finds its devices) with its start-up noise filtered out."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader

        class QuietLoader:
            def __getattr__(self, name):  # anything else a loader answers (resources, source): the real one's
                return getattr(loader, name)

            def create_module(self, spec):
                return loader.create_module(spec)

            def exec_module(self, module):
                with _filtered_native_stderr():
                    loader.exec_module(module)
                    # The CUDA probe ("failed call to cuInit") runs at the first device query: now.
                    module.config.list_physical_devices("GPU")

        spec.loader = QuietLoader()
        return spec


def quiet_tensorflow_startup() -> None:
    """Make the first ``import tensorflow`` of this process print none of TensorFlow's start-up noise.

    Lines that are not known noise are still written, after the import. Installing twice does
    nothing more.
    """
    if not any(isinstance(finder, _QuietTensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())


def log_pyfunc_model(**kwargs):
    """``mlflow.pyfunc.log_model(**kwargs)`` without loading the model back to check its input example.

    MLflow 3 logs the input example and the signature, then loads the model and predicts the
    example to "validate the serving input" (seconds, TensorFlow started, only a warning on
    failure). ``mlflow.pyfunc.log_model`` cannot skip that; ``Model.log`` reads the private
    ``validate_serving_input`` switch, but hands every keyword to the flavor's ``save_model``,
    which refuses it, so the flavor here is ``mlflow.pyfunc`` without that keyword.

    MLflow also checks the pinned requirements against this environment, which maps every
    installed distribution to its modules first (0.8 s on 2 cores); the pins are read from this
    environment (:func:`painter_id.tracking.mlflow_model.requirements`), so that check cannot
    fail and is left out while logging.
    """
    import types

    import mlflow
    import mlflow.utils.environment as environment
    from mlflow.models import Model

    def save_model(validate_serving_input=None, **rest):
        return mlflow.pyfunc.save_model(**rest)

    flavor = types.SimpleNamespace(__name__="mlflow.pyfunc", save_model=save_model)
    check = environment.warn_dependency_requirement_mismatches
    environment.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        return Model.log(artifact_path=None, flavor=flavor, validate_serving_input=False, flavor_name="pyfunc",
                         **kwargs)
    finally:
        environment.warn_dependency_requirement_mismatches = check
