"""The evaluation figures: the confusion matrix and the gallery of misclassified paintings.

Artist names are drawn as plain text, never as Matplotlib mathtext, whatever they hold.
"""

from __future__ import annotations

import functools
import math
import textwrap
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from painter_id.core.atomic import atomic_file, write_csv  # noqa: E402
from painter_id.core.paths import CONFUSION_CSV, CONFUSION_PNG, MISCLASSIFIED_PNG, PER_ARTIST  # noqa: E402
from painter_id.evaluation.scores import confusion  # noqa: E402

ANNOTATE_MAX = 20  # beyond this many artists, numbers in the cells become unreadable
# Names come from folder names: "$\\alpha$" or "a_b^c" must be drawn as written, never parsed
# as mathtext or TeX (which draws them wrong or raises).
LITERAL_TEXT = {"text.parse_math": False, "text.usetex": False}


def literal_text(draw):
    """``draw`` with every string drawn as written (see :data:`LITERAL_TEXT`)."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with plt.rc_context(LITERAL_TEXT):
            return draw(*args, **kwargs)
    return wrapper


@literal_text
def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str], path: Path) -> None:
    """A row-normalised confusion matrix (row = actual artist), artist names on both axes."""
    n = len(labels)
    counts = confusion(y_true, y_pred, n)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
    side = max(5.0, 0.45 * n + 3.0)
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the actual artist's paintings")
    ax.set_xticks(range(n), labels=labels, rotation=60, ha="right", rotation_mode="anchor",
                  fontsize=max(6, 10 - n // 10))
    ax.set_yticks(range(n), labels=labels, fontsize=max(6, 10 - n // 10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("Confusion matrix (rows sum to 1)")
    if n <= ANNOTATE_MAX:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, f"{share[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    _save(fig, path)


@literal_text
def plot_misclassified(images: np.ndarray, y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str],
                       limit: int, path: Path) -> None:
    """A gallery of up to ``limit`` wrong predictions, the most confident first, with the top 3 guesses."""
    y_pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    wrong = wrong[np.argsort(-probs[wrong, y_pred[wrong]], kind="stable")][:limit]
    if len(wrong) == 0:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        reason = "evaluate.misclassified is 0" if limit == 0 else "every test painting was attributed correctly"
        ax.text(0.5, 0.5, f"No misclassified paintings to show:\n{reason}", ha="center", va="center", fontsize=12)
        _save(fig, path)
        return
    cols = min(4, len(wrong))
    rows = math.ceil(len(wrong) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 4.0 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(np.asarray(images[i]))
        top3 = np.argsort(-probs[i])[:3]
        guesses = "\n".join(f"{k + 1}. {_short(labels[c])} {probs[i, c]:.2f}" for k, c in enumerate(top3))
        ax.set_title(f"actual: {_short(labels[y_true[i]])}\n{guesses}", fontsize=8, loc="left")
    fig.suptitle("Misclassified test paintings (most confident first)")
    fig.tight_layout()
    _save(fig, path)


def _short(name: str) -> str:
    return textwrap.shorten(name, width=28, placeholder="...")


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_file(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100)
    plt.close(fig)


@literal_text
def write_no_test_outputs(metrics: dict) -> None:
    """The per-artist table, confusion matrix and gallery of a model without a test split: empty, saying why."""
    write_csv(PER_ARTIST, ["artist", "precision", "recall", "f1", "support"], [])
    write_csv(CONFUSION_CSV, ["actual", "predicted"], [])
    for path in (CONFUSION_PNG, MISCLASSIFIED_PNG):
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"No test split (split.test_size is 0):\nscored by {metrics['scored_on']}",
                ha="center", va="center", fontsize=11)
        _save(fig, path)
