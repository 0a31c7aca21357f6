"""Full-batch fit of the softmax head on cached backbone features (L-BFGS, NumPy + SciPy).

With the whole backbone frozen, training reduces to a multinomial logistic regression on
the cached pooled features: a convex problem that fits in memory. Keras' mini-batch epochs
walk towards its optimum in hundreds of noisy steps; :func:`solve` finds it directly with
L-BFGS and analytic gradients, in float64. The objective is exactly the one Keras minimises
for the ``artist`` Dense layer (``model.l2`` as ``keras.regularizers.L2``, ``train.class_weight``
as per-sample weights)::

    (1/n) * sum_i w[y_i] * -log softmax(x_i W + b)[y_i]  +  l2 * sum(W**2)

Keras' ``sum_over_batch_size`` reduction divides the weighted sum by the number of rows, not
by the sum of the weights, and its L2 penalty covers the kernel only, never the bias. The
solved kernel and bias are then set into the model's ``artist`` layer by the train stage,
so ``models/model.keras`` is the usual full network.

scikit-learn's ``LogisticRegression(C=1 / (2 * n * l2))`` with ``sample_weight = w[y]``
minimises the same problem (scaled by ``1 / (2 * n * l2)``; its lbfgs solver leaves the
intercept unpenalised too); plain SciPy keeps the objective explicit, reports the loss after
every iteration for ``metrics/history.csv``, and also runs with ``l2 = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

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
