"""Which devices and machines training runs on: ``train.strategy`` as a ``tf.distribute`` strategy.

``auto`` trains on every local GPU when there are several (``MirroredStrategy``), else on the
default device; ``mirrored`` always uses ``MirroredStrategy``, over every local GPU or, on a
machine without one, over every logical CPU device (one unless TensorFlow was told to split
the CPU); ``multi_worker`` uses ``MultiWorkerMirroredStrategy``, configured by the
``TF_CONFIG`` environment variable on every machine. Under ``multi_worker`` every machine
trains the same model in lockstep, but only the chief (:func:`is_chief`) records it.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Mapping, Optional

import tensorflow as tf

from painter_id.errors import PipelineError

log = logging.getLogger(__name__)


def _check_tf_config(raw: Optional[str]) -> Optional[dict]:
    """``TF_CONFIG`` parsed and checked (``None`` when unset): a bad one is a one-line error."""
    if not raw:
        log.warning("train.strategy is multi_worker but TF_CONFIG is not set: training on this machine alone")
        return None
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        task = config["task"]
        assert task["type"] in ("chief", "worker") and isinstance(task["index"], int) and workers
    except (ValueError, KeyError, TypeError, AssertionError):
        raise PipelineError(
            "TF_CONFIG: not a valid cluster description; set it to "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}} '
            "with this machine's index"
        ) from None
    return config


def is_chief(strategy_name: str, env: Optional[Mapping[str, str]] = None) -> bool:
    """Whether this process records the training: its MLflow run, ``models/`` and ``metrics/``.

    True unless ``train.strategy`` is ``multi_worker`` and ``TF_CONFIG`` names another task as
    the chief. TensorFlow's rule (``keras`` ``multi_worker_util.is_chief``): the task of type
    ``chief`` when the cluster has one, else worker 0. Without ``TF_CONFIG`` the machine
    trains alone and is its own chief.
    """
    env = os.environ if env is None else env
    if strategy_name != "multi_worker" or not env.get("TF_CONFIG"):
        return True
    config = _check_tf_config(env["TF_CONFIG"])
    task = config["task"]
    if task["type"] == "chief":
        return True
    return "chief" not in config["cluster"] and task["index"] == 0


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy ``train.strategy`` names; build and compile models in its scope."""
    if name == "multi_worker":
        _check_tf_config(os.environ.get("TF_CONFIG"))
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
