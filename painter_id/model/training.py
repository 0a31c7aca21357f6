"""Training the network from the pixels: Keras epochs, early stopping, the history of each epoch.

The path for a backbone that trains (``model.frozen_layers`` a number), or a frozen one under
augmentation: :func:`prepare_fit` builds a seeded network and compiles it, :func:`fit` runs the
epochs and collects one history row per epoch in an :class:`EpochLog`, which hands each row to
whoever records the run. A head on a frozen backbone's features is solved without Keras
(:mod:`painter_id.model.head_fit`).
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

import keras
import numpy as np

from painter_id.core import compat
from painter_id.core.params import Params, TrainParams
from painter_id.data import resized
from painter_id.model import crossval, distribute
from painter_id.model.balance import class_weights
from painter_id.model.datasets import make_dataset
from painter_id.model.history import HISTORY_COLUMNS, Rows
from painter_id.model.network import Network, build_network
from painter_id.model.progress import Progress

log = logging.getLogger(__name__)


def make_optimizer(params: TrainParams, backbone_variables: Sequence = ()) -> keras.optimizers.Optimizer:
    """The optimizer ``train.optimizer`` names, at ``train.learning_rate``.

    ``backbone_variables`` step at ``train.backbone_learning_rate_scale`` times that rate: the
    head starts far from its optimum, the pretrained filters close to theirs, and one rate for
    both either leaves the head slow or wipes out what the filters learnt from ImageNet.
    """
    if params.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(params.learning_rate, momentum=params.momentum)
    elif params.optimizer == "rmsprop":
        optimizer = keras.optimizers.RMSprop(params.learning_rate)
    else:
        optimizer = keras.optimizers.Adam(params.learning_rate)
    if backbone_variables and params.backbone_learning_rate_scale != 1:
        compat.scale_learning_rates(optimizer, list(backbone_variables), params.backbone_learning_rate_scale)
    return optimizer


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


def prepare_fit(params: Params, size: int, n_classes: int) -> Network:
    """A freshly built (seeded) network, compiled for ``train.optimizer`` (the backbone at its scaled rate)."""
    net = build_network(params, size, n_classes)
    with net.strategy.scope():
        # Random filters have nothing to keep: they learn at the head's rate.
        scaled = net.backbone.trainable_variables if params.model.weights != "random" else ()
        optimizer = make_optimizer(params.train, scaled)
        net.model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"], jit_compile=params.train.jit_compile)
        # Its slots now, not inside the first traced step: a step that creates variables is traced twice
        # (measured on NASNetMobile, 769 layers: 30 s of 95 before the first batch).
        net.model.optimizer.build(net.model.trainable_variables)
    return net


def solve_head_first(net: Network, params: Params, images: np.ndarray, y: np.ndarray, rows: np.ndarray) -> bool:
    """Set the ``artist`` layer to the head solved (L-BFGS) on the frozen backbone's features of ``rows``.

    Fine-tuning from a random head sends large, random gradients into the pretrained filters in
    the first steps and undoes them; from the solved head the backbone only refines. Done when
    ``train.head_first`` is on and the weights are pretrained; returns whether it was done.
    The features are those of the backbone as built (inference mode, no augmentation).
    """
    if not params.train.head_first or params.model.weights == "random" or not len(rows):
        return False
    from painter_id.model import features

    extractor = features.extractor_model(net.model)
    rows = np.sort(np.asarray(rows))
    x = features.compute(features.forward(extractor), _Rows(images, rows), params.runtime.predict_batch_size,
                         int(extractor.output_shape[-1]), desc="head-first features")
    set_solved_head(net.model, x, y[rows], params)
    return True


def set_solved_head(model: keras.Model, x: np.ndarray, y: np.ndarray, params: Params) -> None:
    """Set ``model``'s ``artist`` layer to the head solved by L-BFGS on feature rows ``x`` (``model.l2``, class weights)."""
    from painter_id.model import head_fit

    n_classes = int(model.output_shape[-1])
    solution, _ = head_fit.fit_head(x, y, (np.arange(len(y)), np.arange(0)), n_classes, params.model.l2,
                                    params.train.class_weight)
    model.get_layer("artist").set_weights([solution.kernel, solution.bias])


class _Rows:
    """``images[rows]`` read a batch at a time (``images`` may be memory-mapped): what :func:`features.compute` slices."""

    def __init__(self, images: np.ndarray, rows: np.ndarray):
        self.images, self.rows = images, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: slice) -> np.ndarray:
        return np.asarray(self.images[self.rows[item]])


def train_network(params: Params, images: np.ndarray, y: np.ndarray, split: tuple[np.ndarray, np.ndarray],
                  n_classes: int, epoch_log: EpochLog) -> tuple[Network, str]:
    """Build, head-first initialise (:func:`solve_head_first`) and fit a network; return it and the monitored loss."""
    net = prepare_fit(params, images.shape[1], n_classes)
    if solve_head_first(net, params, images, y, split[0]):
        log.info("head solved on the frozen backbone's features first; now the layers that train")
    return net, fit(net.model, images, y, split, params.train, epoch_log)


def fit(fit_model: keras.Model, x: np.ndarray, y: np.ndarray, split: tuple[np.ndarray, np.ndarray],
        params: TrainParams, epoch_log: EpochLog) -> str:
    """Fit the compiled ``fit_model`` on rows ``split[0]``, validating on ``split[1]``; return the monitored loss.

    Without a validation set (``train.validation_split: 0``) the callbacks watch the training loss.
    """
    train_idx, val_idx = split
    train_ds = make_dataset(x, y, train_idx, params.batch_size, seed=params.seed)
    val_ds = make_dataset(x, y, val_idx, params.batch_size) if len(val_idx) else None
    monitor = "val_loss" if val_ds is not None else "loss"
    n_classes = int(fit_model.output_shape[-1])
    distribute.fit(fit_model, train_ds, validation_data=val_ds, epochs=params.epochs, shuffle=False,
                   class_weight=class_weights(y[train_idx], n_classes, params.class_weight),
                   callbacks=fit_callbacks(params, monitor, epoch_log), verbose=0)
    return monitor


def fit_callbacks(params: TrainParams, monitor: str, epoch_log: EpochLog) -> list[keras.callbacks.Callback]:
    """What watches a fit: the history, early stopping (best weights restored) and the plateau rate drop on ``monitor``."""
    return [
        epoch_log,
        keras.callbacks.EarlyStopping(monitor=monitor, patience=params.early_stopping_patience,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=params.reduce_lr_factor,
                                          patience=params.reduce_lr_patience, min_lr=params.min_learning_rate),
        Progress(),  # last: its per-epoch line shows what the others add to the logs (learning_rate)
    ]


def cross_validate(params: Params, data: resized.Split, y: np.ndarray, n_classes: int) -> dict:
    """``train.cv_folds`` folds trained from fresh weights each (:func:`painter_id.model.crossval.cross_validate`)."""
    def fit_and_predict(split: tuple[np.ndarray, np.ndarray], scored: np.ndarray) -> np.ndarray:
        net, _ = train_network(params, data.images, y, split, n_classes, EpochLog())
        probs = predict_rows(net.model, data.images, scored, params.train.batch_size)
        keras.backend.clear_session()  # the fold's graphs and weights: the next fold builds its own
        return probs

    return crossval.cross_validate(params, data, y, fit_and_predict)


def predict_rows(model: keras.Model, x: np.ndarray, rows: np.ndarray, batch_size: int) -> np.ndarray:
    """Probabilities of ``model`` for ``x[rows]``, a batch at a time (``x`` may be memory-mapped pixels)."""
    parts = [np.asarray(model.predict_on_batch(np.asarray(x[rows[start:start + batch_size]])), dtype=np.float32)
             for start in range(0, len(rows), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, int(model.output_shape[-1])), np.float32)


def train_as_worker(params: Params, data: resized.Split, y: np.ndarray, split: tuple[np.ndarray, np.ndarray],
                    n_classes: int) -> None:
    """A non-chief ``multi_worker`` task: train in lockstep with the chief and keep nothing.

    TensorFlow wants every worker to take part in saving, so the model goes to a temporary
    folder that is deleted: ``models/``, ``metrics/`` and the MLflow run are the chief's alone.
    """
    from painter_id.core.atomic import temporary_dir
    from painter_id.core.paths import TEMP_PARENT, WORKER_TEMP
    from painter_id.model.network import save_model

    net, _ = train_network(params, data.images, y, split, n_classes, EpochLog())
    with temporary_dir(TEMP_PARENT, WORKER_TEMP) as folder:
        save_model(net.model, folder / "model.keras")
    log.info("worker done; the chief records the run and writes models/ and metrics/")
