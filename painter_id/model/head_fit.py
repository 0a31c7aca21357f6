"""The head solved on a frozen backbone's features: full-batch L-BFGS, NumPy and SciPy, no TensorFlow.

With the whole backbone frozen, training reduces to a multinomial logistic regression on
the backbone's pooled features (``data/features``): a convex problem that fits in memory. Keras' mini-batch epochs
walk towards its optimum in hundreds of noisy steps; :func:`solve` finds it directly with
L-BFGS and analytic gradients, in float64. The objective is exactly the one Keras minimises
for the ``artist`` Dense layer (``model.l2`` as ``keras.regularizers.L2``, ``train.class_weight``
as per-sample weights; ``model.dropout`` does not apply: nothing is random in a full-batch solve)::

    (1/n) * sum_i w[y_i] * -log softmax(x_i W + b)[y_i]  +  l2 * sum(W**2)

Keras' ``sum_over_batch_size`` reduction divides the weighted sum by the number of rows, not
by the sum of the weights, and its L2 penalty covers the kernel only, never the bias. The
solved kernel and bias are the ``artist`` layer of the model a user loads
(:mod:`painter_id.model.model_files` assembles it with the extractor).

scikit-learn's ``LogisticRegression(C=1 / (2 * n * l2))`` with ``sample_weight = w[y]``
minimises the same problem (scaled by ``1 / (2 * n * l2)``; its lbfgs solver leaves the
intercept unpenalised too); plain SciPy keeps the objective explicit, reports the loss after
every iteration for ``metrics/history.csv``, and also runs with ``l2 = 0``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from painter_id.model.balance import row_weights
from painter_id.model.history import Rows

log = logging.getLogger(__name__)

# L-BFGS stops when the largest gradient component falls below GTOL, the objective's relative
# decrease below FTOL, or after MAX_ITER iterations. Tight, because pooled features can be small
# (a random backbone's are around 1e-3, and so are the gradients at the start). Constants, not
# params: at the optimum they change no result, and a param would retrain.
MAX_ITER = 1000
GTOL = 1e-7
FTOL = 1e-10


@dataclass
class HeadSolution:
    """The solved head and how the solver got there."""

    kernel: np.ndarray  # (features, classes), float32
    bias: np.ndarray  # (classes,), float32
    iterations: int
    converged: bool
    losses: list[float] = field(default_factory=list)  # the objective after each iteration


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def objective(kernel: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray,
              l2: float) -> tuple[float, np.ndarray, np.ndarray]:
    """The loss Keras reports for these rows (weighted mean cross-entropy + L2 on the kernel) and its gradients."""
    n = len(x)
    probs = softmax(x @ kernel + bias)
    picked = np.clip(probs[np.arange(n), y], 1e-300, None)
    loss = float(np.sum(sample_weight * -np.log(picked)) / n + l2 * np.sum(kernel * kernel))
    residual = probs
    residual[np.arange(n), y] -= 1.0
    residual *= (sample_weight / n)[:, None]
    return loss, x.T @ residual + 2.0 * l2 * kernel, residual.sum(axis=0)


def solve(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, sample_weight: Optional[np.ndarray] = None,
          on_iteration: Optional[Callable[[np.ndarray, np.ndarray], None]] = None) -> HeadSolution:
    """Minimise :func:`objective` over the kernel and bias from zeros; ``on_iteration(kernel, bias)`` after each step.

    With ``l2 > 0`` the optimum is unique (up to a constant added to every bias, which no
    prediction sees); with ``l2 == 0`` and separable rows there is none, and the weights grow
    until ``MAX_ITER``.
    """
    x = np.asarray(x, dtype=np.float64)
    # Centred features, the same model (x W + b = (x - mean) W + (b + mean W), and the penalty
    # is on W alone): with all-positive pooled features the bias and the kernel are strongly
    # coupled otherwise, and L-BFGS crawls (1000 iterations instead of a few hundred measured).
    mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    x = x - mean
    y = np.asarray(y, dtype=np.int64)
    weight = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    width = x.shape[1]
    split = width * n_classes

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return theta[:split].reshape(width, n_classes), theta[split:]

    last: dict[bytes, float] = {}  # the loss at the latest point L-BFGS evaluated: the callback's is one of them

    def value_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        loss, d_kernel, d_bias = objective(*unpack(theta), x, y, weight, l2)
        last.clear()
        last[theta.tobytes()] = loss
        return loss, np.concatenate([d_kernel.ravel(), d_bias])

    losses: list[float] = []

    def record(theta: np.ndarray) -> None:
        losses.append(last.get(theta.tobytes()) or value_and_grad(theta)[0])
        if on_iteration is not None:
            kernel, bias = unpack(theta)
            on_iteration(kernel, bias - mean @ kernel)

    # One thread: the matrices are small, and BLAS threads only fight over shared cores (measured
    # 5x slower with them on 2 busy cores).
    with threadpool_limits(1):
        result = minimize(value_and_grad, np.zeros(split + n_classes), jac=True, method="L-BFGS-B", callback=record,
                          options={"maxiter": MAX_ITER, "gtol": GTOL, "ftol": FTOL, "maxcor": 20})
    kernel, bias = unpack(result.x)
    bias = bias - mean @ kernel
    # Only the bias differences matter to the softmax: centre them, for readable weights.
    bias = bias - bias.mean()
    return HeadSolution(kernel.astype(np.float32), bias.astype(np.float32), int(result.nit),
                        bool(result.success), losses)


def predict(kernel: np.ndarray, bias: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Class probabilities of the head for feature rows ``x``."""
    return softmax(np.asarray(x, dtype=np.float64) @ kernel + bias)


def _history_row(step: int, kernel: np.ndarray, bias: np.ndarray, parts: dict, l2: float) -> dict[str, float]:
    """One row of ``metrics/history.csv`` for a solver iterate: loss and accuracy, on training and validation rows."""
    row = {"epoch": step, "learning_rate": float("nan")}
    for prefix, (x, y, w) in parts.items():
        if not len(x):  # no validation rows: val_* stay empty, as in Keras' history
            row[f"{prefix}loss"] = row[f"{prefix}accuracy"] = float("nan")
            continue
        row[f"{prefix}loss"] = objective(kernel, bias, x, y, np.ones(len(x)) if w is None else w, l2)[0]
        row[f"{prefix}accuracy"] = float(np.mean((x @ kernel + bias).argmax(1) == y))
    return row


def fit_head(x: np.ndarray, y: np.ndarray, split: tuple[np.ndarray, np.ndarray], n_classes: int, l2: float,
             class_weight: str, on_rows: Optional[Callable[[Rows], None]] = None) -> tuple[HeadSolution, Rows]:
    """Solve the head on feature rows ``split[0]``; history rows measure ``split[1]`` too (validation, unweighted).

    Returns the solution and one history row per iteration (the objective on the training rows,
    penalty included, as Keras reports its loss; accuracies). No early stopping: the L2 penalty
    regularises, and the last iterate, the optimum, is kept. ``on_rows`` gets the rows at the end.
    """
    train_idx, val_idx = split
    weight = row_weights(y[train_idx], n_classes, class_weight)
    parts = {"": (np.asarray(x[train_idx], np.float64), y[train_idx], weight),
             "val_": (np.asarray(x[val_idx], np.float64), y[val_idx], None)}
    rows: Rows = []

    def on_iteration(kernel: np.ndarray, bias: np.ndarray) -> None:
        rows.append(_history_row(len(rows) + 1, kernel, bias, parts, l2))

    if l2 == 0:
        log.warning("model.l2 is 0: separable features have no best head, so the solver stops at its cap of %d "
                    "iterations; a small model.l2 (0.001) gives a unique answer", MAX_ITER)
    solution = solve(parts[""][0], parts[""][1], n_classes, l2, weight, on_iteration)
    if not solution.iterations:  # already optimal at zero (features without signal): one row for the record
        on_iteration(solution.kernel.astype(np.float64), solution.bias.astype(np.float64))
    log.info("head solved by L-BFGS in %d iterations%s", solution.iterations,
             "" if solution.converged else f" (stopped at the cap of {MAX_ITER}, not converged)")
    if on_rows is not None:
        on_rows(rows)
    return solution, rows
