"""Fitting the network: on pixels with Keras epochs, or its head alone on the frozen backbone's features.

:func:`prepare_fit` builds a seeded network and decides what trains: the whole model on the
pixels, or, with the whole backbone frozen and no augmentation, the head on cached features
(:mod:`painter_id.model.feature_cache`), fitted by Keras epochs or by full-batch L-BFGS
(:mod:`painter_id.model.head_fit`, ``train.head_solver``). :func:`train` fits it and collects
one history row per epoch (or solver iteration) in an :class:`EpochLog`, which hands each row
to whoever records the run.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Optional

import keras
import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from painter_id.core.errors import PipelineError
from painter_id.core.params import Params, TrainParams
from painter_id.core.workspace import main_workspace
from painter_id.data import resized
from painter_id.model import distribute, feature_cache, head_fit, style
from painter_id.model.backbones import resolve_weights
from painter_id.model.datasets import make_dataset
from painter_id.model.network import Network, augmentation_layers, build_network
from painter_id.model.progress import Progress

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]
Rows = list[dict[str, float]]


def make_optimizer(params: TrainParams) -> keras.optimizers.Optimizer:
    """The optimizer ``train.optimizer`` names, at ``train.learning_rate``."""
    if params.optimizer == "sgd":
        return keras.optimizers.SGD(params.learning_rate, momentum=params.momentum)
    if params.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(params.learning_rate)
    return keras.optimizers.Adam(params.learning_rate)


def class_weights(labels: np.ndarray, n_classes: int, mode: str) -> Optional[dict[int, float]]:
    """``balanced`` weights (sklearn) so rare artists count as much as common ones; ``none``: None."""
    if mode == "none":
        return None
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    # Classes without training rows never occur as targets; weight 1 keeps Keras happy.
    table = {i: 1.0 for i in range(n_classes)}
    table.update({int(c): float(w) for c, w in zip(present, weights)})
    return table


class EpochLog(keras.callbacks.Callback):
    """Collects one history row per epoch and hands it to ``on_rows`` as the epoch ends.

    ``on_rows`` (for example, logging to the MLflow run) sees each row while training runs, so
    a long training shows its curves as it goes; ``None`` keeps the rows only (a fold, a
    worker that records nothing).
    """

    def __init__(self, on_rows: Optional[Callable[[Rows], None]] = None):
        super().__init__()
        self.on_rows = on_rows
        self.rows: Rows = []

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        logs = logs or {}
        # Read before ReduceLROnPlateau (later in the callback list) lowers it: the rate of this epoch.
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {key: float(logs.get(key, float("nan"))) for key in HISTORY_COLUMNS[1:-1]}
        row["learning_rate"] = round(lr, 10)  # float32 noise: 0.0010000000474974513
        self.rows.append({"epoch": epoch + 1, **row})
        self.publish(self.rows[-1:])

    def publish(self, rows: Rows) -> None:
        """Hand ``rows`` to ``on_rows``, if anyone listens."""
        if self.on_rows is not None and rows:
            self.on_rows(rows)


@dataclass(frozen=True)
class FitInputs:
    """What trains: the model it fits (whole, or the head on cached features), its rows and labels."""

    model: keras.Model
    x: np.ndarray
    y: np.ndarray
    split: tuple[np.ndarray, np.ndarray]
    cache: str  # feature cache: hit, miss or off
    solver: str  # head_solver: lbfgs or minibatch


def training_inputs(net: Network, data: resized.Split, params: Params) -> tuple[keras.Model, np.ndarray, str]:
    """The model ``fit`` trains and the rows it reads, and whether the feature cache was used.

    With the whole backbone frozen and no augmentation (see :mod:`painter_id.model.feature_cache`)
    that is the head alone on the backbone's cached features (``"hit"`` or ``"miss"``);
    otherwise the full model on the pixels (``"off"``).
    """
    model_params, train_params = params.model, params.train
    reason = feature_cache.skip_reason(train_params.feature_cache, net.backbone, net.frozen,
                                       augmentation_layers(train_params))
    if reason:
        log.info("feature cache not used: %s", reason)
        return net.model, data.images, "off"
    weights = resolve_weights(model_params.weights, main_workspace().absolute())
    parts = {
        "backbone": net.entry.name,
        "alpha": model_params.alpha if net.entry.takes_alpha else None,
        "weights": feature_cache.weights_identity(weights, train_params.seed),
        "size": data.size,
        "frozen_layers": net.frozen,
        "pooled_layers": list(model_params.pooled_layers),
        **style.cache_parts(model_params),
        "precision": train_params.precision,
        "data": feature_cache.data_identity([resized.array_path("train"), resized.table_path("train")]),
    }
    cached, hit = feature_cache.features_for(net.model, data.images, parts)
    with net.strategy.scope():
        head = feature_cache.head_model(net.model)
    return head, cached, "hit" if hit else "miss"


def head_solver(params: Params, cache: str) -> str:
    """How the head is fitted: ``lbfgs`` (full batch, cached features) or ``minibatch`` (Keras epochs).

    ``train.head_solver: auto`` picks L-BFGS where it finds what the epochs converge to: the
    features cached, no dropout (a random mask every step is no full-batch objective) and
    ``model.l2`` above 0 (with 0 the optimum of separable rows lies at infinity, and where the
    epochs stop depends on the optimizer, which ``auto`` must not change).
    """
    mode = params.train.head_solver
    if mode == "minibatch":
        return mode
    if mode == "lbfgs" and (cache == "off" or params.model.dropout > 0):
        why = ("the feature cache is not used (the log line above says why)" if cache == "off"
               else f"model.dropout is {params.model.dropout}")
        raise PipelineError(f"params.yaml: train.head_solver is lbfgs but {why}; it fits only a frozen backbone's "
                            "head without dropout: fix that or set train.head_solver: minibatch")
    if mode == "lbfgs" or (cache != "off" and params.model.dropout == 0 and params.model.l2 > 0):
        return "lbfgs"
    return "minibatch"


def prepare_fit(params: Params, data: resized.Split, y: np.ndarray, split: tuple[np.ndarray, np.ndarray],
                n_classes: int) -> tuple[Network, FitInputs]:
    """A freshly built (seeded) network and what fits it: the head on cached features or the whole model."""
    net = build_network(params, data.size, n_classes)
    fit_model, x, cache = training_inputs(net, data, params)
    solver = head_solver(params, cache)
    if solver == "minibatch":
        with net.strategy.scope():
            fit_model.compile(optimizer=make_optimizer(params.train), loss="sparse_categorical_crossentropy",
                              metrics=["accuracy"], jit_compile=params.train.jit_compile)
    return net, FitInputs(fit_model, x, y, split, cache, solver)


def solve_head(net: Network, inputs: FitInputs, params: Params, epoch_log: EpochLog) -> None:
    """Fit the head on the cached features with L-BFGS and set it into ``net.model``'s ``artist`` layer.

    One history row per iteration: the objective on the training rows (``loss``, penalty
    included, as Keras reports it), their accuracy, and the same on the validation rows, if
    any (unweighted, as Keras validates). No early stopping: the L2 penalty regularises, and
    the last iterate, the optimum, is kept.
    """
    train_idx, val_idx = inputs.split
    n_classes = int(inputs.model.output_shape[-1])
    table = class_weights(inputs.y[train_idx], n_classes, params.train.class_weight)
    weight = None if table is None else np.array([table[c] for c in inputs.y[train_idx]])
    parts = {"": (np.asarray(inputs.x[train_idx], np.float64), inputs.y[train_idx], weight),
             "val_": (np.asarray(inputs.x[val_idx], np.float64), inputs.y[val_idx], None)}

    def on_iteration(kernel: np.ndarray, bias: np.ndarray) -> None:
        row = {"epoch": len(epoch_log.rows) + 1, "learning_rate": float("nan")}
        for prefix, (x, y, w) in parts.items():
            if not len(x):  # no validation rows: val_* stay empty, as in Keras' history
                row[f"{prefix}loss"] = row[f"{prefix}accuracy"] = float("nan")
                continue
            loss = head_fit.objective(kernel, bias, x, y, np.ones(len(x)) if w is None else w, params.model.l2)[0]
            row[f"{prefix}loss"] = loss
            row[f"{prefix}accuracy"] = float(np.mean((x @ kernel + bias).argmax(1) == y))
        epoch_log.rows.append(row)

    x, y, _ = parts[""]
    solution = head_fit.solve(x, y, n_classes, params.model.l2, weight, on_iteration)
    if not solution.iterations:  # already optimal at zero (features without signal): one row for the record
        on_iteration(solution.kernel.astype(np.float64), solution.bias.astype(np.float64))
    net.model.get_layer("artist").set_weights([solution.kernel, solution.bias])
    log.info("head solved by L-BFGS in %d iterations%s", solution.iterations,
             "" if solution.converged else f" (stopped at the cap of {head_fit.MAX_ITER}, not converged)")
    epoch_log.publish(epoch_log.rows)


def fit(fit_model: keras.Model, x: np.ndarray, y: np.ndarray, split: tuple[np.ndarray, np.ndarray],
        params: TrainParams, epoch_log: EpochLog) -> str:
    """Compile and fit ``fit_model`` on rows ``split[0]``, validating on ``split[1]``; return the monitored loss.

    Without a validation set (``train.validation_split: 0``) the callbacks watch the training loss.
    """
    train_idx, val_idx = split
    train_ds = make_dataset(x, y, train_idx, params.batch_size, seed=params.seed)
    val_ds = make_dataset(x, y, val_idx, params.batch_size) if len(val_idx) else None
    monitor = "val_loss" if val_ds is not None else "loss"
    callbacks = [
        epoch_log,
        keras.callbacks.EarlyStopping(monitor=monitor, patience=params.early_stopping_patience,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=params.reduce_lr_factor,
                                          patience=params.reduce_lr_patience, min_lr=params.min_learning_rate),
        Progress(),  # last: its per-epoch line shows what the others add to the logs (learning_rate)
    ]
    n_classes = int(fit_model.output_shape[-1])
    distribute.fit(fit_model, train_ds, validation_data=val_ds, epochs=params.epochs, shuffle=False,
                   class_weight=class_weights(y[train_idx], n_classes, params.class_weight),
                   callbacks=callbacks, verbose=0)
    return monitor


def train(net: Network, inputs: FitInputs, params: Params, epoch_log: EpochLog) -> Optional[str]:
    """Fit the model the way ``inputs.solver`` says; return the loss that picks the best epoch (None: the last)."""
    if inputs.solver == "lbfgs":
        solve_head(net, inputs, params, epoch_log)
        return None
    return fit(inputs.model, inputs.x, inputs.y, inputs.split, params.train, epoch_log)


def summarize(rows: Rows, seconds: float, net: Network, monitor: Optional[str] = "val_loss") -> dict:
    """``metrics/train.json``: the best epoch (whose weights are kept) and the model size.

    The best epoch has the lowest ``monitor``: ``val_loss``, or ``loss`` when nothing is held
    out for validation (``train.validation_split: 0``; the val_* metrics are then null).
    ``monitor`` None: the last epoch (the L-BFGS solver keeps its last iterate, the optimum).
    """
    losses = np.array([row[monitor] for row in rows], dtype=float) if monitor else np.array([np.nan])
    best = int(np.nanargmin(losses)) if np.isfinite(losses).any() else len(rows) - 1

    def finite(value: float) -> Optional[float]:
        return None if math.isnan(value) else value

    return {
        "best_epoch": best + 1,
        "epochs_run": len(rows),
        "best_val_accuracy": finite(rows[best]["val_accuracy"]),
        "best_val_loss": finite(rows[best]["val_loss"]),
        "train_seconds": round(seconds, 1),
        **net.sizes(),
    }


def network_params(net: Network, inputs: FitInputs) -> dict:
    """What MLflow records about the built network and how it was fitted, beside params.yaml."""
    sizes = net.sizes()
    return {
        "model.backbone_layers": sizes["backbone_layers"],
        "model.frozen_layers_resolved": net.frozen,
        "model.trainable_params": sizes["trainable_params"],
        "model.frozen_params": sizes["frozen_params"],
        "train.feature_cache_used": inputs.cache,
        "train.head_solver_used": inputs.solver,
    }


def predict_rows(model: keras.Model, x: np.ndarray, rows: np.ndarray, batch_size: int) -> np.ndarray:
    """Probabilities of ``model`` for ``x[rows]``, a batch at a time (``x`` may be memory-mapped pixels)."""
    parts = [np.asarray(model.predict_on_batch(np.asarray(x[rows[start:start + batch_size]])), dtype=np.float32)
             for start in range(0, len(rows), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, int(model.output_shape[-1])), np.float32)
