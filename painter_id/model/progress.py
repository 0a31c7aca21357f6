"""Training progress a user can watch: a per-batch bar on a terminal, timed log lines otherwise.

On the full data set a CPU epoch of a large backbone takes tens of minutes. With stderr on a
terminal, :class:`Progress` draws a tqdm bar per epoch (batches done, elapsed time, the
estimated time left in the epoch, the running loss); otherwise (``dvc exp run --queue``, whose
output ``dvc queue logs`` shows, CI, a redirected file) it logs one line after the first batch
of each epoch and then one every :data:`LOG_EVERY_SECONDS`. Either way it logs one line per
epoch with every metric, as ``model.fit(verbose=2)`` printed.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable, Optional, TextIO

import keras
from tqdm import tqdm

log = logging.getLogger(__name__)

# Often enough that a 38-minute epoch shows it is moving and how long is left; rarely enough
# that a 20-epoch run's log stays readable (about 80 lines an epoch).
LOG_EVERY_SECONDS = 30.0


def duration(seconds: float) -> str:
    """``3 s``, ``4 min 05 s``, ``2 h 03 min``: a time a person reads at a glance."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _metrics(logs: Optional[dict]) -> str:
    return " - ".join(f"{key} {float(value):.4g}" for key, value in sorted((logs or {}).items())
                      if isinstance(value, (int, float)) or hasattr(value, "__float__"))


class Progress(keras.callbacks.Callback):
    """Per-batch progress of ``model.fit`` (use with ``verbose=0``) and one line per epoch.

    ``terminal`` defaults to whether ``stream`` (stderr) is a terminal; ``interval`` is the
    time between log lines when it is not.
    """

    def __init__(self, interval: float = LOG_EVERY_SECONDS, stream: Optional[TextIO] = None,
                 terminal: Optional[bool] = None, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval = interval
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.clock = clock
        self.bar: Optional[tqdm] = None
        self.epoch = 0
        self.start = self.first_done = self.last_line = 0.0

    def _where(self) -> str:
        return f"epoch {self.epoch + 1}/{self.params.get('epochs', '?')}"

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        self.epoch = epoch
        self.start = self.last_line = self.clock()
        if self.terminal:
            self.bar = tqdm(total=self.params.get("steps"), desc=self._where(), unit="batch", file=self.stream,
                            leave=False, dynamic_ncols=True)

    def on_train_batch_end(self, batch: int, logs: Optional[dict] = None) -> None:
        done = batch + 1
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)
            return
        now = self.clock()
        if done == 1:
            self.first_done = now
        if done == 1 or now - self.last_line >= self.interval:
            self.last_line = now
            log.info("%s: batch %s, %s elapsed%s; %s", self._where(), self._count(done), duration(now - self.start),
                     self._left(done, now), _metrics(logs))

    def _count(self, done: int) -> str:
        steps = self.params.get("steps")
        return f"{done}/{steps}" if steps else str(done)

    def _left(self, done: int, now: float) -> str:
        steps = self.params.get("steps")
        if not steps or done >= steps:
            return ""
        if done == 1:
            # Not a rate yet: the first batch also fills the input pipeline, and in epoch 1 builds
            # the graph (a later epoch's first batch was seen taking a third of the epoch).
            return " (the first batch includes building the graph)" if self.epoch == 0 else ""
        per_batch = (now - self.first_done) / (done - 1)
        return f", about {duration((steps - done) * per_batch)} left in the epoch"

    def on_test_begin(self, logs: Optional[dict] = None) -> None:
        if self.bar is not None:
            self.bar.set_description(f"{self._where()} (validating)")

    def on_test_batch_end(self, batch: int, logs: Optional[dict] = None) -> None:
        now = self.clock()
        if self.bar is None and now - self.last_line >= self.interval:
            self.last_line = now
            log.info("%s: validating, batch %d, %s elapsed", self._where(), batch + 1, duration(now - self.start))

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        log.info("%s: %s - %s", self._where(), duration(self.clock() - self.start), _metrics(logs))

    def on_train_end(self, logs: Optional[dict] = None) -> None:
        if self.bar is not None:  # stopped in the middle of an epoch
            self.bar.close()
            self.bar = None
