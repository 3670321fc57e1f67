"""The hidden Markov model: initial probabilities, a transition structure and an emission."""

from __future__ import annotations

import math
from typing import Iterable, List, Optional, Tuple, Union

import numpy as np
import torch

from ..emissions.base import Emission
from ..errors import HMMTypeError, HMMValueError
from ..kernel import (entropy, log_partition, marginals, posterior_chunks, posteriors, sample_paths, sample_posterior, viterbi,
                      viterbi_k)
from ..kernel.checkpoint import check_checkpoint
from ..training.em import fit_em
from ..transitions import Banded, TransitionStructure, ergodic, left_to_right
from ..transitions.components import (BandedTransitions, DenseTransitions, Final, Initial, LearnedFinal, TransitionComponent,
                                      as_transition_component)
from .hmmlearn_api import HmmlearnMethods
from .base import EmissionModel, as_final, check_probs

TransitionSpec = Union[str, torch.Tensor, TransitionStructure, TransitionComponent]
FinalSpec = Union[None, str, torch.Tensor, Final]

# fit(checkpoint=None): a batch of at least this many (B, T, K) cells gets a checkpointed E-step
AUTO_CHECKPOINT_CELLS = 1 << 26


class HMM(HmmlearnMethods, EmissionModel):
    """``p(x, z) = pi(z_1) prod_t A(z_{t-1}, z_t) prod_t p(x_t | z_t)`` on the shared kernel.

    The model composes components and only builds the kernel's potentials from them:
    ``initial`` (:class:`~pytorch_hmm.transitions.Initial`), ``transition`` (a
    :class:`~pytorch_hmm.transitions.TransitionComponent`), ``emission`` and an optional end
    constraint ``final`` (:class:`~pytorch_hmm.transitions.Final`).

    Args:
        emission: an :class:`~pytorch_hmm.emissions.base.Emission` over ``K`` states.
        transitions: ``"ergodic"`` (uniform ``K x K``), ``"left_to_right"`` (banded, self-loop
            0.5, no skips), a ``(K, K)`` probability tensor, a static ``Dense`` / ``Banded`` /
            ``Sparse`` structure of log-probabilities (a learned component initialised from it,
            rows renormalised), a batched or time-varying structure (fixed potentials, used as
            given: EM leaves them unchanged, as if frozen), or a ``TransitionComponent``.
        initial: an :class:`~pytorch_hmm.transitions.Initial` or ``(K,)`` initial state
            probabilities; default uniform (dense, sparse) or state 0 (banded).
        final: end constraint: ``None`` (any state), ``"last"`` (the last state only), ``(K,)``
            log weights or a :class:`~pytorch_hmm.transitions.Final`; or end probabilities
            learned by EM (pomegranate's ``ends``): ``"learn"`` (every state, initially ``1 / K``)
            or a :class:`~pytorch_hmm.transitions.LearnedFinal`, with which each state's edges
            carry its probability of going on (``(1 - e_i) A_ij``). ``sample`` ignores it.
        init_probs: the older name of ``initial`` (probabilities).
        startprob_prior, transmat_prior: Dirichlet priors of the initial and transition
            components (hmmlearn's names; a number or a tensor in the component's ``logits``
            shape, concentrations ``> 0``): EM's M-step is then the MAP estimate
            ``max(counts + prior - 1, 0)`` normalised, as hmmlearn's. Default: none (maximum likelihood).

    Parameters are the components' logits (log-probabilities up to a per-row constant), so both
    EM (:meth:`fit`) and gradient descent on ``-model(x).mean()`` work.
    """

    def __init__(self, emission: Emission, transitions: TransitionSpec = "ergodic",
                 initial: Union[Initial, torch.Tensor, None] = None, final: FinalSpec = None, *,
                 init_probs: Optional[torch.Tensor] = None, startprob_prior=None, transmat_prior=None) -> None:
        super().__init__(emission)
        k, dtype = emission.num_states, self._dtype
        if initial is not None and init_probs is not None:
            raise HMMValueError("pass initial or init_probs (its older name), not both")
        self.transition = transition_component(transitions, k, dtype)
        first = isinstance(self.transitions, Banded)  # a left-to-right chain starts in state 0
        self._set_initial(initial if initial is not None else init_probs,
                          (Initial.first if first else Initial.uniform)(k, dtype))
        self.final = as_final(final, k, dtype)
        startprob_prior, transmat_prior = (torch.as_tensor(p) if isinstance(p, np.ndarray) else p
                                           for p in (startprob_prior, transmat_prior))  # hmmlearn's arrays
        if startprob_prior is not None:
            self.initial.set_prior(startprob_prior)
        if transmat_prior is not None:
            if not hasattr(self.transition, "set_prior"):
                raise HMMTypeError(f"transmat_prior needs learned transitions (dense, banded or sparse tables); "
                                    f"this model's are {type(self.transition).__name__}")
            self.transition.set_prior(transmat_prior)
        if self._device is not None:
            self.to(self._device)

    @property
    def transitions(self) -> TransitionStructure:
        """The kernel's transition structure (``Dense``, ``Banded`` or ``Sparse``), from the transition component."""
        return self.transition.structure()

    def _chain(self) -> TransitionStructure:
        """The transitions the kernel runs on: ``transitions``, with learned end probabilities each
        source row weighted by its state's probability of going on (:class:`LearnedFinal`)."""
        s = self.transitions
        return self.final.weigh_sources(s) if getattr(self.final, "learned", False) else s

    @property
    def log_final(self) -> Optional[torch.Tensor]:
        """``(K,)`` end log weights, or ``None`` without an end constraint."""
        return None if self.final is None else self.final.log_weights

    @property
    def transmat(self) -> torch.Tensor:
        """``(K, K)`` transition probabilities (dense view, also for banded models)."""
        return self.transition.dense_log_probs().exp()

    @torch.no_grad()
    def stationary_distribution(self) -> torch.Tensor:
        """``(K,)`` stationary distribution ``pi`` of the transition matrix (``pi A = pi``, hmmlearn's
        ``get_stationary_distribution``), for dense, banded and sparse transitions, in float64.

        It is unique when the chain has one closed class of states (every state from which no
        state outside it can be reached): transient states get probability 0, so a left-to-right
        chain puts all its mass on its absorbing last state, as hmmlearn finds. Chains with
        several closed classes (several absorbing states, disconnected parts) have no unique
        stationary distribution and raise :class:`~pytorch_hmm.errors.HMMValueError`.
        """
        probs = self.transmat.detach()
        if probs.ndim != 2:
            raise HMMValueError(f"stationary_distribution needs a static (K, K) transition matrix; this model's is "
                                f"{tuple(probs.shape)} (batched or time-varying potentials)")
        return stationary_distribution(probs)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B,)`` log p(x); ``-model(x, lengths).mean()`` is a training loss (a fresh
        emission is initialised from the first training batch, as ``fit`` does)."""
        self._initialize_for_gradient_training(x, lengths)
        return log_partition(self.log_emissions(x, lengths), self._chain(), self.log_init, lengths, self.log_final)

    @torch.no_grad()
    def posteriors(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, T, K)`` state posteriors (0 at padded frames)."""
        return posteriors(self.log_emissions(x, lengths), self._chain(), self.log_init, lengths, self.log_final)

    @torch.no_grad()
    def viterbi(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Best state paths ``(B, T)`` (``-1`` at padding) and their log-scores ``(B,)``."""
        return viterbi(self.log_emissions(x, lengths), self._chain(), self.log_init, lengths, self.log_final)

    decode = viterbi

    @torch.no_grad()
    def viterbi_k(self, x: torch.Tensor, k: int, lengths: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` best state paths ``(B, k, T)`` (``-1`` at padding) and their log-scores ``(B, k)``, best first."""
        return viterbi_k(self.log_emissions(x, lengths), self._chain(), self.log_init, k, lengths, self.log_final)

    def entropy(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B,)`` entropy (nats) of p(state path | x); differentiable w.r.t. the parameters."""
        return entropy(self.log_emissions(x, lengths), self._chain(), self.log_init, lengths, self.log_final)

    @torch.no_grad()
    def sample_posterior(self, x: torch.Tensor, num_samples: int, lengths: Optional[torch.Tensor] = None,
                         generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``(num_samples, B, T)`` state paths drawn from p(path | x) (``-1`` at padding)."""
        return sample_posterior(self.log_emissions(x, lengths), self._chain(), self.log_init, num_samples, lengths,
                                self.log_final, generator)

    @torch.no_grad()
    def sample(self, num_sequences: int, length: int, generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(x, states)``: observations ``(N, T, ...)`` and their state paths ``(N, T)`` (``final`` is not applied)."""
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
        initialize: Union[bool, str, None] = None,
        generator: Optional[torch.Generator] = None,
        weights=None,
        checkpoint: Union[None, bool, int] = None,
    ) -> List[float]:
        """Baum-Welch EM; returns the total log-likelihood per iteration.

        Args:
            data: a padded tensor ``(B, T, ...)`` (with ``lengths``), a list of ``(T_i, ...)``
                tensors, or a re-iterable of batches (tensors or ``(x, lengths)`` pairs);
                statistics are summed over all batches before each M-step. hmmlearn's layout
                also works: ``X`` ``(N, D)`` (``(N,)`` / ``(N, 1)`` symbols), a numpy array or
                a tensor, the sequences concatenated, with ``lengths`` per sequence (default one).
            max_iter, tol: stop after ``max_iter`` iterations or when an iteration gains less
                than ``tol`` nats.
            verbose: show a progress bar with the log-likelihood.
            frozen: components to keep fixed: any of ``"init_probs"``, ``"transitions"``, ``"emission"``
                (and ``"final"`` with learned end probabilities)
                (one name may be passed as a string).
            initialize: run the emission's data-driven initialisation first (default: when the
                emission says it needs one): ``True`` / ``"auto"`` initialises left-to-right models
                (state 0 first, no move back) by the equal segmentation of every sequence
                (``"segments"``: one emission M-step on it, after k-means) and others by k-means
                over all frames (``"kmeans"``); ``False`` keeps the parameters as they are.
            weights: optional weight per sequence (``(B,)``, for a padded tensor, a list or
                hmmlearn's ``(X, lengths)``; finite, ``>= 0``, not all 0): each sequence's
                statistics and log-likelihood are scaled by its weight (2 == the sequence given
                twice, 0 == left out). The initialisation uses each sequence of weight > 0 once.
            checkpoint: the E-step's chunk length in frames for very long sequences
                (:func:`pytorch_hmm.kernel.posterior_chunks`: statistics are added chunk by chunk
                and no ``(B, T, K)`` posteriors are kept); ``True``: :func:`default_checkpoint`;
                ``False``: never; ``None`` (default): ``True`` for batches of at least
                :data:`AUTO_CHECKPOINT_CELLS` ``B T K`` cells, else ``False``. The statistics
                are the same up to rounding; the forward pass runs twice.
        """
        if not (checkpoint is None or isinstance(checkpoint, bool)):
            check_checkpoint(checkpoint)
        if self._is_concatenated(data):  # hmmlearn's (X, lengths): sequences concatenated along the first axis
            data, lengths = self._concatenated(data, lengths)
        elif isinstance(data, np.ndarray):  # a padded batch as a numpy array
            data = torch.as_tensor(data)
            data = data.to(self._dtype) if data.is_floating_point() else data
        self._em_checkpoint = checkpoint  # read by accumulate
        try:
            return fit_em(self, data, lengths, max_iter=max_iter, tol=tol, verbose=verbose, frozen=frozen,
                          initialize=initialize, generator=generator, weights=weights)
        finally:
            self._em_checkpoint = None

    # --- EM statistics (used by fit_em): one kernel pass, counts handed to each component ---

    _em_checkpoint: Union[None, bool, int] = None  # fit's checkpoint, while it runs

    @torch.no_grad()
    def accumulate(self, stats: dict, x: torch.Tensor, lengths: Optional[torch.Tensor],
                   weights: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Add one batch's statistics to ``stats`` (from :meth:`init_stats`), each sequence's scaled
        by its ``weights`` ``(B,)`` if given; returns ``(log-likelihoods (B,), posteriors (B, T, K))``
        (unweighted; posteriors ``None`` when the E-step ran checkpointed, see :meth:`fit`)."""
        e = self.log_emissions(x, lengths)
        size = em_chunk_length(self._em_checkpoint, e.shape)
        if size is not None:
            return self._accumulate_chunks(stats, x, lengths, weights, e, size), None
        log_z, gamma, xi = marginals(e, self._chain(), self.log_init, lengths, self.log_final)
        counts = {"init_probs": gamma[:, 0], "transitions": xi}
        if "final" in stats:
            counts["final"] = LearnedFinal.counts(gamma, lengths)
        self._accumulate_parts(stats, x, lengths, gamma, counts, weights)
        return log_z, gamma

    def _accumulate_chunks(self, stats: dict, x: torch.Tensor, lengths: Optional[torch.Tensor],
                           weights: Optional[torch.Tensor], e: torch.Tensor, size: int) -> torch.Tensor:
        """:meth:`accumulate` over ``size``-frame chunks of the posteriors (statistics are additive
        over frames); returns the log-likelihoods."""
        lens = None if lengths is None else torch.as_tensor(lengths, device=x.device)
        full = torch.full((x.shape[0],), x.shape[1], device=x.device) if lens is None else lens
        chunks = posterior_chunks(e, self._chain(), self.log_init, lens, self.log_final, checkpoint=size,
                                  edges="transitions" in stats)
        for start, gamma, xi in chunks:
            stop = start + gamma.shape[1]
            counts = {} if xi is None else {"transitions": xi}
            if start == 0:
                counts["init_probs"] = gamma[:, 0]
            if "final" in stats:
                counts["final"] = LearnedFinal.counts(gamma, full, start)
            part = None if lens is None else (lens - start).clamp(0, stop - start)
            self._accumulate_parts(stats, x[:, start:stop], part, gamma, counts, weights)
        return chunks.log_z


def default_checkpoint(num_frames: int) -> int:
    """The E-step's chunk length for ``fit(checkpoint=True)``: ``sqrt(T)`` (the least memory), at least
    1024 frames (each chunk has a fixed cost; see ``benchmarks/bench_memory.py``)."""
    return max(1024, math.isqrt(max(num_frames - 1, 0)) + 1)


def em_chunk_length(checkpoint: Union[None, bool, int], shape) -> Optional[int]:
    """The chunk length an E-step over ``(B, T, K)`` emissions uses for ``fit``'s ``checkpoint``, or ``None`` (one pass)."""
    if checkpoint is None:
        checkpoint = math.prod(shape) >= AUTO_CHECKPOINT_CELLS
    if isinstance(checkpoint, bool):
        return default_checkpoint(shape[1]) if checkpoint else None
    return checkpoint


def transition_component(spec: TransitionSpec, k: int, dtype: torch.dtype) -> TransitionComponent:
    """The transition component for a ``transitions`` argument of :class:`HMM` (and :class:`HMMLayer`'s non-string ones)."""
    if isinstance(spec, str):
        if spec == "ergodic":
            return DenseTransitions(ergodic(k, dtype=dtype).log_probs)
        if spec == "left_to_right":
            return BandedTransitions(left_to_right(k, dtype=dtype).log_probs)
        raise HMMValueError(f"transitions must be 'ergodic', 'left_to_right', a (K, K) tensor, a structure or a component; got {spec!r}")
    if isinstance(spec, torch.Tensor):
        return DenseTransitions.from_probs(check_probs(spec, "transitions", (k, k)).to(dtype))
    return as_transition_component(spec, k, dtype)


def stationary_distribution(probs: torch.Tensor) -> torch.Tensor:
    """``(K,)`` float64 ``pi`` with ``pi probs = pi`` for a row-stochastic ``(K, K)`` ``probs`` whose
    chain has exactly one closed class (else :class:`HMMValueError`, naming the classes)."""
    a = probs.double()
    k = a.shape[0]
    dead = torch.nonzero((a.sum(-1) - 1.0).abs() > 1e3 * torch.finfo(probs.dtype).eps).flatten().tolist()
    if dead:
        raise HMMValueError(f"stationary_distribution needs every state to have outgoing transitions summing to 1; "
                            f"states {dead} do not")
    a = a / a.sum(-1, keepdim=True)  # float32 rows to float64 precision
    # reach[i, j]: j can be reached from i (transitive closure by repeated squaring; no loop over time)
    reach = (a > 0) | torch.eye(k, dtype=torch.bool, device=a.device)
    for _ in range(max(1, math.ceil(math.log2(k)))):
        reach = (reach.double() @ reach.double()) > 0
    closed = (reach <= reach.T).all(-1)  # i is recurrent: every state it reaches leads back to it
    classes = sorted({tuple(torch.nonzero(reach[i] & closed).flatten().tolist()) for i in torch.nonzero(closed).flatten().tolist()})
    if len(classes) != 1:
        shown = ", ".join(str(list(c)) for c in classes)
        raise HMMValueError(f"stationary_distribution is not unique: the transition matrix has {len(classes)} closed classes "
                            f"of states ({shown}), e.g. several absorbing states; each class has its own stationary distribution")
    members = torch.tensor(classes[0], device=a.device)
    sub = a[members][:, members]
    # pi (A - I) = 0 with one equation replaced by sum(pi) = 1: non-singular for one closed class
    system = sub.T - torch.eye(len(members), dtype=a.dtype, device=a.device)
    system[-1] = 1.0
    rhs = torch.zeros(len(members), dtype=a.dtype, device=a.device)
    rhs[-1] = 1.0
    pi = torch.zeros(k, dtype=a.dtype, device=a.device)
    pi[members] = torch.linalg.solve(system, rhs).clamp(min=0.0)
    return pi / pi.sum()
