"""``HMMLayer``: a differentiable HMM smoothing layer for ``nn.Sequential``."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HMMDimensionError, HMMValueError
from ..kernel import posteriors, viterbi
from ..transitions import Banded, Dense, TransitionStructure, ergodic, left_to_right

MODES = ("posteriors", "viterbi")


class HMMLayer(nn.Module):
    """Maps ``(B, T, K)`` log-emission scores to ``(B, T, K)`` state posteriors.

    The layer holds learnable initial and transition logits (an ``ergodic`` dense or a
    ``left_to_right`` banded structure) and returns ``p(z_t = k | scores)``, differentiable
    w.r.t. the scores and its own parameters, so it trains by backprop inside
    ``nn.Sequential``. With ``mode="viterbi"`` it returns the one-hot Viterbi path in eval
    mode (posteriors while training). Scores must be finite.

    Args:
        num_states: ``K``.
        transitions: ``"ergodic"`` or ``"left_to_right"``.
        mode: ``"posteriors"`` or ``"viterbi"``.
    """

    def __init__(self, num_states: int, transitions: str = "ergodic", mode: str = "posteriors", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if mode not in MODES:
            raise HMMValueError(f"mode must be one of {MODES}; got {mode!r}")
        if transitions == "ergodic":
            structure: TransitionStructure = ergodic(num_states, self_loop=0.5 if num_states > 1 else None, dtype=dtype)
        elif transitions == "left_to_right":
            structure = left_to_right(num_states, dtype=dtype)
        else:
            raise HMMValueError(f"transitions must be 'ergodic' or 'left_to_right'; got {transitions!r}")
        self.num_states, self.mode = num_states, mode
        self.banded = structure.kind == "banded"
        # finite logits everywhere (past-the-end band entries are masked by the kernel), so
        # every state stays reachable and gradients stay finite
        self.transition_logits = nn.Parameter(structure.log_probs.clamp(min=-10.0))
        self.init_logits = nn.Parameter(torch.zeros(num_states, dtype=dtype))

    @property
    def transitions(self) -> TransitionStructure:
        logits = self.transition_logits
        if self.banded:
            logits = logits.masked_fill(~Banded(logits).valid_mask(), float("-inf"))
        log_probs = torch.log_softmax(logits, -1)
        return Banded(log_probs) if self.banded else Dense(log_probs)

    def forward(self, scores: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, T, K)`` scores -> ``(B, T, K)`` posteriors (or one-hot Viterbi in eval, ``mode="viterbi"``).

        Padded frames (at or after ``lengths``) give 0.
        """
        if not isinstance(scores, torch.Tensor) or scores.ndim != 3 or scores.shape[-1] != self.num_states:
            shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
            raise HMMDimensionError(
                f"scores must be (B, T, K) with K == {self.num_states}; got {shape}",
                expected_shape=("B", "T", self.num_states),
                actual_shape=scores.shape if isinstance(scores, torch.Tensor) else None,
            )
        log_init = torch.log_softmax(self.init_logits, -1)
        if self.mode == "viterbi" and not self.training:
            paths, _ = viterbi(scores, self.transitions, log_init, lengths)
            return F.one_hot(paths.clamp(min=0), self.num_states).to(scores.dtype) * (paths >= 0).unsqueeze(-1)
        return posteriors(scores, self.transitions, log_init, lengths, differentiable=True)

    def extra_repr(self) -> str:
        return f"num_states={self.num_states}, transitions={'left_to_right' if self.banded else 'ergodic'}, mode={self.mode!r}"
