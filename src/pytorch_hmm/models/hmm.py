"""The hidden Markov model: initial probabilities, a transition structure and an emission."""

from __future__ import annotations

from typing import Iterable, List, Optional, Tuple, Union

import torch
from torch import nn

from ..emissions.base import Emission
from ..errors import HMMDimensionError, HMMValueError
from ..kernel import log_partition, marginals, posteriors, sample_paths, viterbi
from ..training.em import fit_em
from .base import EmissionModel, check_probs, row_log_probs
from ..transitions import Banded, Dense, TransitionStructure, ergodic, left_to_right

TransitionSpec = Union[str, torch.Tensor, TransitionStructure]


class HMM(EmissionModel):
    """``p(x, z) = pi(z_1) prod_t A(z_{t-1}, z_t) prod_t p(x_t | z_t)`` on the shared kernel.

    Args:
        emission: an :class:`~pytorch_hmm.emissions.base.Emission` over ``K`` states.
        transitions: ``"ergodic"`` (uniform ``K x K``), ``"left_to_right"`` (banded, self-loop
            0.5, no skips), a ``(K, K)`` probability tensor, or a ``Dense`` / ``Banded`` structure
            of log-probabilities (its rows are renormalised).
        init_probs: ``(K,)`` initial state probabilities; default uniform (ergodic) or state 0
            (left-to-right).

    Parameters are ``transition_logits`` and ``init_logits`` (log-probabilities up to a
    per-row constant), so both EM (:meth:`fit`) and gradient descent on ``-model(x).mean()`` work.
    """

    def __init__(self, emission: Emission, transitions: TransitionSpec = "ergodic", init_probs: Optional[torch.Tensor] = None) -> None:
        super().__init__(emission)
        k, dtype = emission.num_states, self._dtype
        structure = _structure(transitions, k, dtype)
        self.banded = structure.kind == "banded"
        logits = structure.log_probs.detach().clone()
        if self.banded:
            logits = logits.masked_fill(~structure.valid_mask(), float("-inf"))
        self.transition_logits = nn.Parameter(logits)
        if init_probs is None:
            init_probs = torch.zeros(k, dtype=dtype)
            init_probs[0] = 1.0
            if not self.banded:
                init_probs.fill_(1.0 / k)
        self._set_init(init_probs)

    @property
    def transitions(self) -> TransitionStructure:
        """The normalised transition structure (``Dense`` or ``Banded``) for the kernel."""
        log_probs = torch.log_softmax(self.transition_logits, -1)
        return Banded(log_probs) if self.banded else Dense(log_probs)

    @property
    def transmat(self) -> torch.Tensor:
        """``(K, K)`` transition probabilities (dense view, also for banded models)."""
        structure = self.transitions
        dense = structure.to_dense() if self.banded else structure
        return dense.log_probs.exp()

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B,)`` log p(x); ``-model(x, lengths).mean()`` is a training loss."""
        return log_partition(self.log_emissions(x, lengths), self.transitions, self.log_init, lengths)

    @torch.no_grad()
    def posteriors(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, T, K)`` state posteriors (0 at padded frames)."""
        return posteriors(self.log_emissions(x, lengths), self.transitions, self.log_init, lengths)

    @torch.no_grad()
    def viterbi(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Best state paths ``(B, T)`` (``-1`` at padding) and their log-scores ``(B,)``."""
        return viterbi(self.log_emissions(x, lengths), self.transitions, self.log_init, lengths)

    decode = viterbi

    @torch.no_grad()
    def sample(self, num_sequences: int, length: int, generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(x, states)``: observations ``(N, T, ...)`` and their state paths ``(N, T)``."""
        states = sample_paths(self.transitions, self.log_init, num_sequences, length, generator=generator)
        return self.emission.sample(states, generator=generator), states

    def fit(
        self,
        data,
        lengths: Optional[torch.Tensor] = None,
        max_iter: int = 100,
        tol: float = 1e-4,
        verbose: bool = True,
        frozen: Iterable[str] = (),
        initialize: Optional[bool] = None,
        generator: Optional[torch.Generator] = None,
    ) -> List[float]:
        """Baum-Welch EM; returns the total log-likelihood per iteration.

        Args:
            data: a padded tensor ``(B, T, ...)`` (with ``lengths``), a list of ``(T_i, ...)``
                tensors, or a re-iterable of batches (tensors or ``(x, lengths)`` pairs);
                statistics are summed over all batches before each M-step.
            max_iter, tol: stop after ``max_iter`` iterations or when an iteration gains less
                than ``tol`` nats.
            verbose: show a progress bar with the log-likelihood.
            frozen: components to keep fixed: any of ``"init_probs"``, ``"transitions"``, ``"emission"``.
            initialize: run the emission's data-driven initialisation first (default: when the
                emission says it needs one).
        """
        return fit_em(self, data, lengths, max_iter=max_iter, tol=tol, verbose=verbose, frozen=frozen,
                      initialize=initialize, generator=generator)

    # --- EM statistics for the initial and transition components (used by fit_em) ---

    def init_stats(self) -> dict:
        return {
            "init": torch.zeros_like(self.init_logits.detach()),
            "trans": torch.zeros_like(self.transition_logits.detach()),
        }

    @torch.no_grad()
    def accumulate(self, stats: dict, x: torch.Tensor, lengths: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Add one batch's statistics; returns ``(log-likelihoods (B,), posteriors (B, T, K))``."""
        log_z, gamma, xi = marginals(self.log_emissions(x, lengths), self.transitions, self.log_init, lengths)
        stats["init"] += gamma[:, 0].sum(0)
        stats["trans"] += xi.sum(0)
        return log_z, gamma

    @torch.no_grad()
    def m_step(self, stats: dict, frozen: Iterable[str] = ()) -> None:
        """Set initial and transition probabilities from expected counts (rows without counts keep their values)."""
        if "init_probs" not in frozen:
            self._m_step_init(stats["init"])
        if "transitions" not in frozen:
            new = row_log_probs(stats["trans"], torch.log_softmax(self.transition_logits, -1))
            if self.banded:
                new = new.masked_fill(~self.transitions.valid_mask(), float("-inf"))
            self.transition_logits.copy_(new)


def _structure(spec: TransitionSpec, k: int, dtype: torch.dtype) -> TransitionStructure:
    if isinstance(spec, str):
        if spec == "ergodic":
            return ergodic(k, dtype=dtype)
        if spec == "left_to_right":
            return left_to_right(k, dtype=dtype)
        raise HMMValueError(f"transitions must be 'ergodic', 'left_to_right', a (K, K) tensor or a structure; got {spec!r}")
    if isinstance(spec, torch.Tensor):
        return Dense.from_probs(check_probs(spec, "transitions", (k, k)).to(dtype))
    if isinstance(spec, TransitionStructure):
        if spec.num_states != k or spec.batch_size is not None or spec.time_varying:
            raise HMMDimensionError(
                f"transitions must be an unbatched, static structure over K == {k} states; got log_probs of shape {tuple(spec.log_probs.shape)}",
                expected_shape=(k, "X"),
                actual_shape=spec.log_probs.shape,
            )
        return type(spec)(spec.log_probs.to(dtype))
    raise TypeError(f"transitions must be a string, a tensor or a Dense/Banded structure; got {type(spec).__name__}")
