"""Training progress: timed log lines off a terminal, a tqdm bar on one, one line per epoch."""

from __future__ import annotations

import io
import logging
import re

import keras
import numpy as np
import pytest

from painter_id.model.progress import Progress, duration

BATCHES = 6


class Clock:
    """A clock that a callback advances by ``step`` seconds per training batch: a slow batch, instantly."""

    def __init__(self, step: float):
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        return self.now


def fit_tiny(progress: Progress, clock: Clock, epochs: int = 2) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(BATCHES * 4, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    # Listed first, so the clock has moved when Progress sees the batch end.
    slow = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: setattr(clock, "now", clock.now + clock.step))
    model.fit(x, y, batch_size=4, epochs=epochs, validation_data=(x[:4], y[:4]), callbacks=[slow, progress], verbose=0)


def progress_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "painter_id.model.progress"]


def test_off_a_terminal_it_logs_the_first_batch_then_every_interval_with_time_left(caplog):
    caplog.set_level(logging.INFO, logger="painter_id.model.progress")
    clock = Clock(step=10.0)
    stream = io.StringIO()

    fit_tiny(Progress(interval=25.0, stream=stream, clock=clock), clock)

    lines = progress_lines(caplog)
    batch_lines = [line for line in lines if "batch" in line]
    # Batches end at 10, 20, ... 60 s into the epoch: the first is logged, then 40 (30 s after it).
    assert [re.search(r"batch (\d+)/", line).group(1) for line in batch_lines] == ["1", "4"] * 2
    assert "includes building the graph" in batch_lines[0]
    # 3 batches in the 30 s after the first: 10 s each, 2 to go.
    assert "batch 4/6, 40 s elapsed, about 20 s left in the epoch; accuracy" in batch_lines[1]
    assert "epoch 2/2: batch 1/6, 10 s elapsed; accuracy" in batch_lines[2]  # no rate from one batch
    epoch_lines = [line for line in lines if "batch" not in line]
    assert len(epoch_lines) == 2
    assert re.fullmatch(r"epoch 1/2: 1 min 00 s - accuracy \S+ - loss \S+ - val_accuracy \S+ "
                        r"- val_loss \S+", epoch_lines[0]), epoch_lines[0]
    assert epoch_lines[1].startswith("epoch 2/2: ")
    assert stream.getvalue() == ""  # no bar off a terminal


def test_on_a_terminal_it_draws_a_bar_with_elapsed_and_remaining_time(caplog):
    caplog.set_level(logging.INFO, logger="painter_id.model.progress")
    stream = io.StringIO()

    fit_tiny(Progress(interval=0.0, stream=stream, terminal=True), Clock(step=0.0), epochs=1)

    bar = stream.getvalue()
    # tqdm's [elapsed<remaining] after the first batch, then the last batch and the validation pass.
    assert re.search(r"epoch 1/1: +17%.*\| 1/6 \[\d\d:\d\d<\d\d:\d\d", bar), bar
    assert re.search(r"epoch 1/1 \(validating\): 100%.*\| 6/6 .*loss=\d", bar), bar
    lines = progress_lines(caplog)
    assert len(lines) == 1 and lines[0].startswith("epoch 1/1: ")  # no per-batch log lines beside the bar


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (59, "59 s"), (245, "4 min 05 s"), (7380, "2 h 03 min")])
def test_duration_reads_at_a_glance(seconds, text):
    assert duration(seconds) == text
