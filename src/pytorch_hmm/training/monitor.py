"""Convergence monitor for EM: history, stopping rule and a warning when the likelihood drops."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import List

from ..errors import ConvergenceWarning, HMMValueError


class ConvergenceMonitor:
    """Tracks the total log-likelihood per EM iteration.

    EM stops once the gain of an iteration is below ``tol`` (absolute, in nats, as hmmlearn)
    or after ``max_iter`` iterations. A drop larger than a rounding tolerance means something is
    wrong (EM never decreases the likelihood) and raises a :class:`ConvergenceWarning`.
    """

    def __init__(self, tol: float, max_iter: int) -> None:
        if not isinstance(tol, numbers.Real) or isinstance(tol, bool) or math.isnan(tol):
            raise HMMValueError(f"tol must be a number of nats (a negative one runs all max_iter iterations); got {tol!r}")
        self.tol = float(tol)
        self.max_iter = max_iter
        self.history: List[float] = []

    def report(self, log_likelihood: float, log_prior: float = 0.0) -> None:
        """Record an iteration's ``log_likelihood``; warn if the EM objective (``log_likelihood +
        log_prior``, the log posterior up to a constant when the model has priors) fell."""
        objective = log_likelihood + log_prior
        if self.history:
            previous = self._objective
            drop = previous - objective
            if drop > 1e-5 * max(1.0, abs(previous)):  # more than float32 rounding of a total
                what = "log-likelihood" if log_prior == 0.0 else "objective (log-likelihood + Dirichlet log-prior)"
                warnings.warn(
                    f"EM {what} decreased from {previous:.6f} to {objective:.6f} "
                    f"at iteration {len(self.history) + 1}",
                    ConvergenceWarning,
                    stacklevel=3,
                )
        self.history.append(log_likelihood)
        self._objective = objective

    @property
    def converged(self) -> bool:
        if len(self.history) >= self.max_iter:
            return True
        return len(self.history) >= 2 and self.history[-1] - self.history[-2] < self.tol

    @property
    def gain(self) -> float:
        return self.history[-1] - self.history[-2] if len(self.history) >= 2 else math.inf
