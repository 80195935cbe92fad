"""Mini-batch optimizers that own their state and update parameters in place."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Params = Sequence[NDArray[np.floating]]


class SGD:
    """Stochastic gradient descent with (Nesterov) momentum.

    params : the arrays to update in place, e.g. ``MLP.params``
    learning_rate : step size; may be changed between steps by a schedule
    """

    def __init__(
        self,
        params: Params,
        learning_rate: float = 0.01,
        momentum: float = 0.9,
        nesterov: bool = True,
    ) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.params = list(params)
        self.learning_rate = float(learning_rate)
        self.momentum = float(momentum)
        self.nesterov = nesterov
        self.velocities = [np.zeros_like(p) for p in self.params]

    def step(self, grads: Params) -> None:
        """Apply one update from ``grads``, aligned with ``params``."""
        lr, mu = self.learning_rate, self.momentum
        for p, v, g in zip(self.params, self.velocities, grads, strict=True):
            v *= mu
            v -= lr * g
            if self.nesterov:
                p += mu * v - lr * g
            else:
                p += v


class Adam:
    """Adam (Kingma & Ba, 2015) with bias correction folded into the step size."""

    def __init__(
        self,
        params: Params,
        learning_rate: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-8,
    ) -> None:
        self.params = list(params)
        self.learning_rate = float(learning_rate)
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)
        self.t = 0
        self.first_moments = [np.zeros_like(p) for p in self.params]
        self.second_moments = [np.zeros_like(p) for p in self.params]

    def step(self, grads: Params) -> None:
        """Apply one update from ``grads``, aligned with ``params``."""
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        lr = self.learning_rate * float(np.sqrt(1.0 - b2**self.t)) / (1.0 - b1**self.t)
        for p, m, v, g in zip(
            self.params, self.first_moments, self.second_moments, grads, strict=True
        ):
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            p -= lr * m / (np.sqrt(v) + self.epsilon)
