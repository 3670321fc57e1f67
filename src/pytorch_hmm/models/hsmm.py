"""The hidden semi-Markov model: states emit segments whose lengths follow a duration distribution."""

from __future__ import annotations

import math
from typing import Iterable, List, Optional, Tuple, Union

import torch
from .. import durations as duration_models
from ..emissions.base import Emission
from ..errors import HMMDimensionError, HMMTypeError, HMMValueError
from ..kernel import sample_segments, semi_markov_log_partition, semi_markov_marginals, semi_markov_viterbi
from ..training.em import fit_em, frozen_names
from ..transitions.components import DenseTransitions, Final, Initial
from ..validation import check_stochastic
from .base import EmissionModel

Segments = List[List[Tuple[int, int, int]]]
_DURATIONS = {
    "poisson": duration_models.Poisson,
    "gaussian": duration_models.Gaussian,
    "gamma": duration_models.Gamma,
    "categorical": duration_models.Categorical,
}


class HSMM(EmissionModel):
    """Explicit-duration HMM on the shared semi-Markov kernel.

    A state emits a whole segment: its duration ``d ~ durations[k]``, then ``d`` frames from
    ``emission[k]``, then the next state ``j != k`` with probability ``transmat[k, j]``.

    Args:
        emission: an :class:`~pytorch_hmm.emissions.base.Emission` over ``K`` states.
        durations: a :class:`~pytorch_hmm.durations.Duration` over ``K`` states, or one of
            ``"poisson"``, ``"gaussian"``, ``"gamma"``, ``"categorical"`` (built with default
            parameters on ``1..max_duration``).
        transitions: ``"ergodic"`` (uniform over the other states), ``"left_to_right"``
            (state ``k`` to ``k + 1``; the sequence must end in the last state; a phone chain for
            duration modelling), or a ``(K, K)`` probability tensor with a zero diagonal (a row
            of zeros marks a state that can only end the sequence).
        init_probs: ``(K,)``; default uniform (ergodic) or state 0 (left-to-right).
        max_duration: longest segment ``D``; required with a named duration family, otherwise
            taken from (and checked against) ``durations``.

    Components: ``initial`` (:class:`~pytorch_hmm.transitions.Initial`), ``transition`` (a
    :class:`~pytorch_hmm.transitions.DenseTransitions` whose diagonal does not exist),
    ``durations``, ``emission`` and ``final`` (:class:`~pytorch_hmm.transitions.Final`; its
    ``log_weights`` are also ``log_final``). ``SemiMarkovHMM`` is the same class.
    """

    def __init__(
        self,
        emission: Emission,
        durations: Union[str, duration_models.Duration],
        transitions: Union[str, torch.Tensor] = "ergodic",
        init_probs: Optional[torch.Tensor] = None,
        max_duration: Optional[int] = None,
    ) -> None:
        super().__init__(emission)
        k, dtype = emission.num_states, self._dtype
        self.durations = _durations(durations, k, max_duration)
        self.durations.to(dtype)  # the emission's dtype throughout (EM statistics stay exact in float64 models)
        probs, final = _transitions(transitions, k)
        off_diagonal = ~torch.eye(k, dtype=torch.bool)
        self.transition = DenseTransitions(torch.log(probs).to(dtype), exists=off_diagonal)
        self.final = Final(final.to(dtype))
        first = isinstance(transitions, str) and transitions == "left_to_right"
        self._set_initial(init_probs, (Initial.first if first else Initial.uniform)(k, dtype))

    @property
    def max_duration(self) -> int:
        return self.durations.max_duration

    @property
    def log_final(self) -> torch.Tensor:
        """``(K,)`` end log weights (the ``final`` component's buffer)."""
        return self.final.log_weights

    @property
    def log_transitions(self) -> torch.Tensor:
        """``(K, K)`` log transition probabilities, ``-inf`` diagonal; rows without moves stay ``-inf``."""
        return self.transition.log_probs

    @property
    def transmat(self) -> torch.Tensor:
        return self.log_transitions.exp()

    def log_durations(self, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(K, D)`` (or ``(B, K, D)`` for context-dependent durations) in the model's dtype."""
        # the model's dtype now (it follows .double() / .float()), not the emission's at construction
        return self.durations.log_probs(context).to(self.initial.logits.dtype)

    def expected_durations(self, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(K,)`` mean segment length per state in frames (``(B, K)`` with a batched context)."""
        return self.durations.mean(context)

    def _potentials(self, x, lengths, context) -> tuple:
        return (self.log_emissions(x, lengths), self.log_transitions, self.log_durations(context), self.log_init,
                lengths, self.log_final)

    def forward(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                duration_context: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B,)`` log p(x); ``-model(x, lengths).mean()`` is a training loss (a fresh
        emission is initialised from the first training batch, as ``fit`` does)."""
        self._initialize_for_gradient_training(x, lengths)
        return semi_markov_log_partition(*self._potentials(x, lengths, duration_context))

    @torch.no_grad()
    def posteriors(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                   duration_context: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, T, K)`` p(frame t belongs to a segment of state k); 0 at padded frames."""
        return semi_markov_marginals(*self._potentials(x, lengths, duration_context)).posteriors

    @torch.no_grad()
    def viterbi(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                duration_context: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor, Segments]:
        """Best segmentation: ``(paths (B, T), scores (B,), segments)``, segments as ``(state, start, end)``."""
        return semi_markov_viterbi(*self._potentials(x, lengths, duration_context))

    decode = viterbi

    @torch.no_grad()
    def sample(self, num_sequences: int, length: int, generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Draw ``(x, states)``: observations ``(N, T, ...)`` and state paths ``(N, T)``; the last segment is cut at ``length``."""
        states = sample_segments(self.log_transitions, self.log_durations(), self.log_init, num_sequences, length, generator=generator)
        return self.emission.sample(states, generator=generator), states

    def fit(self, data, lengths: Optional[torch.Tensor] = None, max_iter: int = 100, tol: float = 1e-4, verbose: bool = True,
            frozen: Iterable[str] = (), initialize: Union[bool, str, None] = None, generator: Optional[torch.Generator] = None) -> List[float]:
        """EM for semi-Markov models; same arguments as :meth:`pytorch_hmm.HMM.fit`, and ``frozen`` may
        also name ``"durations"`` (needed for :class:`~pytorch_hmm.durations.Neural`)."""
        if not self.durations.has_m_step and "durations" not in frozen_names(frozen):
            raise HMMValueError(f"{type(self.durations).__name__} durations have no closed-form M-step; pass frozen=('durations',) "
                                "to fit the other components by EM, and train the durations by gradient descent")
        return fit_em(self, data, lengths, max_iter=max_iter, tol=tol, verbose=verbose, frozen=frozen,
                      initialize=initialize, generator=generator)

    # --- EM statistics (used by fit_em): one kernel pass, counts handed to each component ---

    def em_parts(self) -> dict:
        return {"init_probs": self.initial, "transitions": self.transition, "durations": self.durations, "emission": self.emission}

    @torch.no_grad()
    def accumulate(self, stats: dict, x: torch.Tensor, lengths: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Add one batch's statistics to ``stats`` (from :meth:`init_stats`); returns ``(log-likelihoods (B,), posteriors (B, T, K))``."""
        m = semi_markov_marginals(*self._potentials(x, lengths, None))
        counts = {"init_probs": m.init, "transitions": m.transitions, "durations": m.durations}
        self._accumulate_parts(stats, x, lengths, m.posteriors, counts)
        return m.log_z, m.posteriors


SemiMarkovHMM = HSMM


def _durations(spec, k: int, max_duration: Optional[int]) -> duration_models.Duration:
    if isinstance(spec, str):
        if spec not in _DURATIONS:
            raise HMMValueError(f"durations must be a Duration module or one of {sorted(_DURATIONS)}; got {spec!r}")
        if max_duration is None:
            raise HMMValueError(f"durations={spec!r} needs max_duration (the longest segment in frames)")
        return _DURATIONS[spec](k, max_duration)
    if not isinstance(spec, duration_models.Duration):
        raise HMMTypeError(f"durations must be a pytorch_hmm.durations.Duration or a family name; got {type(spec).__name__}")
    if spec.num_states not in (None, k):
        raise HMMDimensionError(f"durations must describe K == {k} states (the emission's); got {spec.num_states}",
                                expected_shape=(k, spec.max_duration), actual_shape=(spec.num_states, spec.max_duration))
    if max_duration is not None and max_duration != spec.max_duration:
        raise HMMValueError(f"max_duration ({max_duration}) differs from durations.max_duration ({spec.max_duration}); "
                            "leave max_duration out when passing a Duration module")
    return spec


def _transitions(spec, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(K, K)`` float64 probabilities with a zero diagonal and the ``(K,)`` log end weights."""
    final = torch.zeros(k, dtype=torch.float64)
    if isinstance(spec, str):
        if spec == "ergodic":
            probs = (1 - torch.eye(k, dtype=torch.float64)) / max(k - 1, 1)
        elif spec == "left_to_right":
            probs = torch.diag(torch.ones(k - 1, dtype=torch.float64), 1)
            final = torch.full((k,), -math.inf, dtype=torch.float64)
            final[-1] = 0.0
        else:
            raise HMMValueError(f"transitions must be 'ergodic', 'left_to_right' or a (K, K) tensor; got {spec!r}")
        return probs, final
    if not isinstance(spec, torch.Tensor):
        raise HMMTypeError(f"transitions must be a string or a (K, K) probability tensor; got {type(spec).__name__}")
    probs = torch.as_tensor(spec, dtype=torch.float64)
    if probs.shape != (k, k):
        raise HMMDimensionError(f"transitions must have shape ({k}, {k}); got {tuple(probs.shape)}", expected_shape=(k, k), actual_shape=probs.shape)
    if (torch.diagonal(probs) != 0).any():
        raise HMMValueError("transitions must have a zero diagonal (a semi-Markov state stays by its duration); "
                            f"got diagonal {torch.diagonal(probs).tolist()}")
    check_stochastic(probs, "transitions", allow_empty_rows=True)
    return probs, final
