"""``HMMLayer``: a differentiable HMM smoothing layer for ``nn.Sequential``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..errors import HMMDimensionError, HMMTypeError, HMMValueError
from ..kernel import posteriors, viterbi
from ..transitions import TransitionStructure, ergodic, left_to_right
from ..transitions.components import BandedTransitions, DenseTransitions, Initial, TransitionComponent
from ..validation import check_frame_scores
from .base import rename_old_keys
from .hmm import transition_component

MODES = ("posteriors", "viterbi")
_NAMES = {"dense": "ergodic", "banded": "left_to_right"}


class HMMLayer(nn.Module):
    """Maps ``(B, T, K)`` log-emission scores to ``(B, T, K)`` state posteriors.

    The layer holds an :class:`~pytorch_hmm.transitions.Initial` (``initial``) and a learnable
    transition component (``transition``: ``DenseTransitions`` for ``"ergodic"``,
    ``BandedTransitions`` for ``"left_to_right"``) and returns ``p(z_t = k | scores)``, differentiable
    w.r.t. the scores and its own parameters, so it trains by backprop inside
    ``nn.Sequential``. With ``mode="viterbi"`` it returns the one-hot Viterbi path in eval
    mode (posteriors while training). Scores must be finite.

    Args:
        num_states: ``K``.
        transitions: ``"ergodic"``, ``"left_to_right"``, a static ``Dense`` / ``Banded`` /
            ``Sparse`` structure (a learned component initialised from it, as for
            :class:`~pytorch_hmm.HMM`; ``-inf`` entries stay missing edges) or a
            :class:`~pytorch_hmm.transitions.TransitionComponent` over ``K`` states (e.g.
            ``SparseTransitions`` for any graph), cast to ``dtype``.
        mode: ``"posteriors"`` or ``"viterbi"``.
    """

    def __init__(self, num_states: int, transitions: Union[str, TransitionComponent] = "ergodic", mode: str = "posteriors", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if mode not in MODES:
            raise HMMValueError(f"mode must be one of {MODES}; got {mode!r}")
        self.num_states, self.mode = num_states, mode
        # finite logits on every existing move, so every state stays reachable and gradients stay finite
        if isinstance(transitions, (TransitionComponent, TransitionStructure, torch.Tensor)):
            self.transition = transition_component(transitions, num_states, dtype)
        elif not isinstance(transitions, str):
            raise HMMTypeError("transitions must be 'ergodic', 'left_to_right', a (K, K) probability tensor, a "
                               f"Dense/Banded/Sparse structure or a TransitionComponent; got {type(transitions).__name__}")
        elif transitions == "ergodic":
            structure = ergodic(num_states, self_loop=0.5 if num_states > 1 else None, dtype=dtype)
            self.transition: TransitionComponent = DenseTransitions(structure.log_probs.clamp(min=-10.0))
        elif transitions == "left_to_right":
            self.transition = BandedTransitions(left_to_right(num_states, dtype=dtype).log_probs.clamp(min=-10.0))
        else:
            raise HMMValueError(f"transitions must be 'ergodic' or 'left_to_right'; got {transitions!r}")
        self.initial = Initial(torch.zeros(num_states, dtype=dtype))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        rename_old_keys(state_dict, prefix)  # pre-component state dicts
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def save(self, path) -> Path:
        """Write the layer (settings and parameters) to ``path``; :func:`pytorch_hmm.load` reads it back."""
        from .saving import save

        return save(self, path)

    @property
    def transitions(self) -> TransitionStructure:
        """The kernel's transition structure (normalised), from ``transition``."""
        return self.transition.structure()

    @property
    def transmat(self) -> torch.Tensor:
        """``(K, K)`` transition probabilities (dense view, also for banded and sparse layers)."""
        return self.transition.dense_log_probs().exp()

    def forward(self, scores: Union[torch.Tensor, PackedSequence], lengths: Optional[torch.Tensor] = None
                ) -> Union[torch.Tensor, PackedSequence]:
        """``(B, T, K)`` scores -> ``(B, T, K)`` posteriors (or one-hot Viterbi in eval, ``mode="viterbi"``).

        Padded frames (at or after ``lengths``) give 0. Inside ``nn.Sequential``, where only one
        argument passes, give the lengths as a :class:`~torch.nn.utils.rnn.PackedSequence`
        (``pack_padded_sequence(scores, lengths, batch_first=True, enforce_sorted=False)``): the
        result is packed the same way. Without gradients (``torch.no_grad()``, inference) the
        posteriors come from the kernel's fast non-differentiable pass.
        """
        if isinstance(scores, PackedSequence):
            if lengths is not None:
                raise HMMValueError("lengths must be None when scores is a PackedSequence (it carries its own lengths)")
            padded, packed_lengths = pad_packed_sequence(scores, batch_first=True)
            out = self(padded, packed_lengths.to(padded.device))
            return pack_padded_sequence(out, packed_lengths, batch_first=True, enforce_sorted=False)
        check_frame_scores(scores, "scores", "K", "state")
        if scores.shape[-1] != self.num_states:
            raise HMMDimensionError(
                f"scores must be (B, T, K) with K == {self.num_states}; got {tuple(scores.shape)}",
                expected_shape=("B", "T", self.num_states),
                actual_shape=scores.shape,
            )
        log_init = self.initial.log_probs
        if self.mode == "viterbi" and not self.training:
            paths, _ = viterbi(scores, self.transitions, log_init, lengths)
            return F.one_hot(paths.clamp(min=0), self.num_states).to(scores.dtype) * (paths >= 0).unsqueeze(-1)
        return posteriors(scores, self.transitions, log_init, lengths, differentiable=torch.is_grad_enabled())

    def extra_repr(self) -> str:
        return f"num_states={self.num_states}, transitions={_NAMES.get(self.transition.kind, self.transition.kind)}, mode={self.mode!r}"
