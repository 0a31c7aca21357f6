"""Which devices and machines training runs on: ``train.strategy`` as a ``tf.distribute`` strategy.

``auto`` trains on every local GPU when there are several (``MirroredStrategy``), else on the
default device; ``mirrored`` always uses ``MirroredStrategy``, over every local GPU or, on a
machine without one, over every logical CPU device (one unless TensorFlow was told to split
the CPU); ``multi_worker`` uses ``MultiWorkerMirroredStrategy``, configured by the
``TF_CONFIG`` environment variable on every machine. Under ``multi_worker`` every machine
trains the same model in lockstep, but only the chief (:func:`is_chief`) records it.

Keras 3.15's ``Model.fit`` cannot train under ``MultiWorkerMirroredStrategy`` with TensorFlow
2.21 (keras-team/keras#20585: it averages a whole ``(x, y)`` batch across workers with
``Strategy.reduce``, which takes no nests, and then reduces scalar metrics along axis 0), so
:func:`fit` runs that strategy's epochs itself: the model's own ``train_step``/``test_step``
replicated with ``Strategy.run``, and the same Keras callbacks. Every other strategy keeps
``Model.fit``.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Callable, Mapping, Optional, Sequence

import keras
import tensorflow as tf

from painter_id.core.errors import PipelineError, first_line
from painter_id.model.cluster import check_tf_config

log = logging.getLogger(__name__)






def make_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy ``train.strategy`` names; build and compile models in its scope."""
    if name == "multi_worker":
        check_tf_config(os.environ.get("TF_CONFIG"))
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
        if name == "mirrored":
            devices = gpus or [device.name for device in tf.config.list_logical_devices("CPU")]
            strategy = tf.distribute.MirroredStrategy(devices)
        elif len(gpus) > 1:
            strategy = tf.distribute.MirroredStrategy(gpus)
        else:
            strategy = tf.distribute.get_strategy()
    log.info("strategy %s: %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy


def check_batch_size(strategy: tf.distribute.Strategy, batch_size: int) -> None:
    """Stop when ``train.batch_size`` cannot be split evenly over the replicas.

    Keras 3.15 / TensorFlow 2.21 fail deep inside ``fit`` (``AddN`` shape mismatch) when the
    first batch does not divide evenly, so say so up front.
    """
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise PipelineError(
            f"params.yaml: train.batch_size is {batch_size} but training runs on {replicas} replicas; "
            f"use a multiple of {replicas} (each replica gets batch_size / {replicas} images)"
        )


def fit(model: keras.Model, dataset: tf.data.Dataset, validation_data: Optional[tf.data.Dataset], epochs: int,
        class_weight: Optional[dict[int, float]], callbacks: Sequence[keras.callbacks.Callback], **fit_args) -> None:
    """``model.fit``; under ``MultiWorkerMirroredStrategy`` the same epochs in lockstep with the other workers.

    ``dataset`` yields global batches of ``(pixels, labels)``: each step the strategy gives every
    replica its share of one global batch, so a step trains on the same rows as one process
    does. ``fit_args`` go to ``model.fit`` only. A worker that stops (killed, machine lost) is a
    one-line error on the others: at once when its connections are reset, else once TensorFlow's
    coordination service has missed its heartbeats for 10 s.
    """
    strategy = model.distribute_strategy
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        model.fit(dataset, validation_data=validation_data, epochs=epochs, class_weight=class_weight,
                  callbacks=list(callbacks), **fit_args)
        return
    try:
        _fit_in_lockstep(model, strategy, (dataset, validation_data), epochs, class_weight, callbacks)
    except tf.errors.OpError as exc:  # UnavailableError, CancelledError, AbortedError from the collectives
        raise PipelineError(
            f"train.strategy multi_worker: training stopped because another worker failed or left "
            f"({type(exc).__name__}: {_reason(exc)[:300]}); start training again on every machine in TF_CONFIG"
        ) from None


def _reason(exc: tf.errors.OpError) -> str:
    """The line of a TensorFlow error that says what went wrong: a graph's error starts with where instead."""
    said = [line for line in str(exc.message).splitlines() if line.strip() and not line[0].isspace()
            and not line.startswith(("Graph execution error", "Detected at node"))]
    if not said:
        return first_line(exc)
    # "The following tasks are unhealthy (stopped sending heartbeats):" names them on the next line.
    return f"{said[0]} {said[1]}" if said[0].endswith(":") and len(said) > 1 else said[0]


def _build_state(model: keras.Model, strategy: tf.distribute.Strategy, dataset: tf.data.Dataset) -> None:
    """Create the model's loss, metric and optimizer variables now, as ``fit`` does before its first step.

    A ``tf.function`` may not create variables after its first trace. The first real batch must
    not be read here: that would start an extra pass over the shuffled data. A zero batch of the
    right shape, predicted without training, draws no random numbers; the metrics it touched are
    zeroed when the first epoch starts.
    """
    x_spec, y_spec = dataset.element_spec[:2]
    x = tf.zeros((1, *x_spec.shape[1:]), x_spec.dtype)
    y = tf.zeros((1, *y_spec.shape[1:]), y_spec.dtype)
    with strategy.scope():
        y_pred = model(x, training=False)
        model.compute_loss(x, y, y_pred)
        model.compute_metrics(x, y, y_pred, sample_weight=None)
        model.optimizer.build(model.trainable_variables)


def _with_class_weights(dataset: tf.data.Dataset, class_weight: Optional[dict[int, float]]) -> tf.data.Dataset:
    """Each row's class weight as its sample weight: what ``fit(class_weight=...)`` does to integer labels."""
    if not class_weight:
        return dataset
    table = tf.constant([class_weight[i] for i in range(len(class_weight))], tf.float32)
    return dataset.map(lambda x, y: (x, y, tf.gather(table, tf.cast(y, tf.int32))))


def _replicated(strategy: tf.distribute.Strategy, step: Callable) -> Callable:
    """``step`` on every replica's share of the iterator's next batch; its logs averaged over all replicas.

    The batch is taken inside the function: taken eagerly, each one would cost an eager
    all-reduce (the workers agreeing that all still have data). The callbacks act on the
    averaged logs, so every worker sees the same numbers: a worker whose early stopping fired
    alone would leave the others waiting for it.
    """
    @tf.function
    def run(iterator):
        batch = next(iterator)
        logs = strategy.run(step, args=(batch,))
        rows = tf.add_n([tf.shape(part)[0] for part in strategy.experimental_local_results(batch[0])])
        return {name: strategy.reduce("MEAN", value, axis=None) for name, value in logs.items()}, rows

    return run


def _floats(logs: Mapping[str, tf.Tensor]) -> dict[str, float]:
    return {name: float(value) for name, value in logs.items()}


def _one_pass(run_step: Callable, dataset, steps: int, on_batch_end: Callable) -> tuple[dict[str, float], int]:
    """``run_step`` over the batches of a distributed dataset, calling ``on_batch_end``.

    Returns the last batch's logs and the rows this worker read.

    With ``steps`` known (``>= 0``) no step asks for a batch past the end: such a step was seen
    to still advance the optimizer (on an empty batch) while the end of the data was signalled.
    """
    logs: dict[str, float] = {}
    rows = 0
    iterator = iter(dataset)
    for step in range(steps) if steps >= 0 else itertools.count():
        try:
            step_logs, step_rows = run_step(iterator)
        except tf.errors.OutOfRangeError:  # a dataset of unknown length ended, on every worker at once
            break
        logs, rows = _floats(step_logs), rows + int(step_rows)
        on_batch_end(step, logs)
    return logs, rows


def _fit_in_lockstep(model: keras.Model, strategy: tf.distribute.Strategy,
                     data: tuple[tf.data.Dataset, Optional[tf.data.Dataset]], epochs: int,
                     class_weight: Optional[dict[int, float]], callbacks: Sequence[keras.callbacks.Callback]) -> None:
    """The epochs of ``fit`` (metrics reset each epoch, validation after it, ``stop_training``) with ``callbacks``."""
    dataset, validation_data = data
    _build_state(model, strategy, dataset)
    train_set = strategy.experimental_distribute_dataset(_with_class_weights(dataset, class_weight))
    val_set = None if validation_data is None else strategy.experimental_distribute_dataset(validation_data)
    train_step, test_step = _replicated(strategy, model.train_step), _replicated(strategy, model.test_step)
    # Inside the replicas: Keras's metric variables sync on read, so zeroing them from outside
    # would first sum each one over the workers, an eager all-reduce per variable.
    reset_metrics = tf.function(lambda: strategy.run(model.reset_metrics))
    steps = int(dataset.cardinality())
    val_steps = -1 if validation_data is None else int(validation_data.cardinality())
    hooks = keras.callbacks.CallbackList(list(callbacks), model=model, epochs=epochs,
                                         steps=steps if steps >= 0 else None, verbose=0)
    model.stop_training = False
    logs: dict[str, float] = {}
    hooks.on_train_begin()
    for epoch in range(epochs):
        reset_metrics()
        hooks.on_epoch_begin(epoch)
        logs, rows = _one_pass(train_step, train_set, steps, hooks.on_train_batch_end)
        if epoch == 0:  # its share of every global batch, not all of it
            log.info("this worker trained on %d rows in epoch 1", rows)
        if val_set is not None:
            reset_metrics()
            hooks.on_test_begin()
            val_logs, _ = _one_pass(test_step, val_set, val_steps, hooks.on_test_batch_end)
            hooks.on_test_end(val_logs)
            logs = {**logs, **{f"val_{name}": value for name, value in val_logs.items()}}
        hooks.on_epoch_end(epoch, logs)
        if steps >= 0:
            # Keras's fit starts one more pass over a dataset of known length at the end of each
            # epoch and drops it; each pass reshuffles, so this keeps the epochs' orders the same.
            iter(train_set)
        if model.stop_training:
            break
    hooks.on_train_end(logs)
