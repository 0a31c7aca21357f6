"""The machines of a ``multi_worker`` training: ``TF_CONFIG`` read and checked, and which task is the chief.

TensorFlow-free, so a stage can ask before it decides whether TensorFlow is needed at all.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Mapping, Optional

from painter_id.core.errors import PipelineError

log = logging.getLogger(__name__)


def check_tf_config(raw: Optional[str]) -> Optional[dict]:
    """``TF_CONFIG`` parsed and checked (``None`` when unset): a bad one is a one-line error."""
    if not raw:
        log.warning("train.strategy is multi_worker but TF_CONFIG is not set: training on this machine alone")
        return None
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        task = config["task"]
        valid = task["type"] in ("chief", "worker") and isinstance(task["index"], int) and bool(workers)
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise PipelineError(
            "TF_CONFIG: not a valid cluster description; set it to "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}} '
            "with this machine's index"
        )
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
    config = check_tf_config(env["TF_CONFIG"])
    task = config["task"]
    if task["type"] == "chief":
        return True
    return "chief" not in config["cluster"] and task["index"] == 0
