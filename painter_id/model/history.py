"""A training's history, one row per epoch (or solver iteration), and its summary in ``metrics/train.json``."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

# metrics/history.csv, and what `dvc plots` draws. For a head solved on features, "epoch" counts
# the solver's iterations and there is no learning rate.
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]
Rows = list[dict[str, float]]


def _finite(value: float) -> Optional[float]:
    return None if math.isnan(value) else value


def summarize(rows: Rows, monitor: Optional[str] = "val_loss") -> dict:
    """``metrics/train.json``: results only (the model's sizes are MLflow params, its time an MLflow metric).

    Epochs: the best epoch has the lowest ``monitor`` (``val_loss``, or ``loss`` with nothing
    held out for validation) and its weights are kept. ``monitor`` None: a solver, whose last
    iterate is the optimum; its count is ``iterations``.
    """
    losses = np.array([row[monitor] for row in rows], dtype=float) if monitor else np.array([np.nan])
    best = int(np.nanargmin(losses)) if np.isfinite(losses).any() else len(rows) - 1
    steps = {"best_epoch": best + 1, "epochs_run": len(rows)} if monitor else {"iterations": len(rows)}
    return {**steps, "best_val_accuracy": _finite(rows[best]["val_accuracy"]),
            "best_val_loss": _finite(rows[best]["val_loss"])}


def best_row(rows: Rows, summary: dict) -> dict[str, float]:
    """The history row whose weights were kept: the best epoch's, or a solver's last."""
    return rows[summary["best_epoch"] - 1] if "best_epoch" in summary else rows[-1]


def describe(summary: dict, row: dict[str, float]) -> str:
    """One log line for a finished training: the best epoch of so many, or a solver's iterations, and its figures."""
    figures = ", ".join(f"{key} {row[key]:.3f}" for key in ("loss", "accuracy", "val_loss", "val_accuracy")
                        if not math.isnan(row[key]))
    if "best_epoch" in summary:
        return f"best epoch {summary['best_epoch']} of {summary['epochs_run']}: {figures}"
    return f"head solved in {summary['iterations']} iterations: {figures}"
