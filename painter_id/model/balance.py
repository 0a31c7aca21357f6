"""Class weights: rare artists count as much as common ones while training (``train.class_weight``)."""

from __future__ import annotations

from typing import Optional

import numpy as np


def class_weights(labels: np.ndarray, n_classes: int, mode: str) -> Optional[dict[int, float]]:
    """``balanced`` weights by class index; ``none``: None.

    As scikit-learn defines them: all rows / (classes present x the class's rows). Classes
    without training rows never occur as targets; they get weight 1.
    """
    if mode == "none":
        return None
    present, rows = np.unique(labels, return_counts=True)
    weights = len(labels) / (len(present) * rows)
    table = {i: 1.0 for i in range(n_classes)}
    table.update({int(c): float(w) for c, w in zip(present, weights)})
    return table


def row_weights(labels: np.ndarray, n_classes: int, mode: str) -> Optional[np.ndarray]:
    """:func:`class_weights` as one weight per row of ``labels`` (None: every row counts 1)."""
    table = class_weights(labels, n_classes, mode)
    return None if table is None else np.array([table[int(c)] for c in labels], dtype=np.float64)
