"""Semirings for the chain kernel: how scores of alternative paths are combined.

``LogSemiring`` sums probabilities (``logsumexp``) and gives the forward algorithm;
``MaxSemiring`` keeps the best path (``max``) and gives Viterbi. Path scores are always
combined along a path by ``+`` (log space).
"""

from __future__ import annotations

from typing import Tuple

import torch


class LogSemiring:
    """``(logsumexp, +)``: sums over paths in log space."""

    @staticmethod
    def sum(x: torch.Tensor, dim: int) -> torch.Tensor:
        return torch.logsumexp(x, dim)  # -inf (not NaN) where every entry is -inf


class MaxSemiring:
    """``(max, +)``: keeps the best path; ``sum_with_argmax`` also returns its index."""

    @staticmethod
    def sum(x: torch.Tensor, dim: int) -> torch.Tensor:
        return x.amax(dim)

    @staticmethod
    def sum_with_argmax(x: torch.Tensor, dim: int) -> Tuple[torch.Tensor, torch.Tensor]:
        values, index = x.max(dim)
        return values, index
