"""Initial, transition and end components: ``nn.Module``s that own their parameters and EM statistics.

A model composes components and only builds the kernel's potentials from them:

* :class:`Initial` gives ``log_init`` ``(K,)``;
* a :class:`TransitionComponent` gives a transition structure through :meth:`~TransitionComponent.structure`:
  :class:`DenseTransitions` (``Dense`` ``(K, K)``), :class:`BandedTransitions` (``Banded``
  ``(K, W)``), :class:`SparseTransitions` (``Sparse`` predecessor lists ``(K, P)``) and
  :class:`FixedTransitions` (any structure, batched or time-varying included, as fixed
  potentials);
* :class:`Final` gives the end constraint ``log_final`` ``(K,)`` (e.g. forced alignment must
  end in the last state); :class:`LearnedFinal` gives end probabilities learned by EM
  (pomegranate's ``ends``).

The learned components follow the statistics protocol of the emissions
(:mod:`pytorch_hmm.emissions.base`): ``init_stats()`` returns a dict of zero tensors,
``accumulate(stats, counts)`` adds expected counts in place (additive: the statistics of two
halves of the data summed equal those of the whole), ``m_step(stats)`` sets the parameters.
For :class:`Initial` the counts are the state posteriors at frame 0 ``(B, K)``; for transitions
they are the kernel's expected transition counts in the storage's own shape (``(B, K, X)``,
as returned by :func:`pytorch_hmm.kernel.marginals`).

Parameters are ``logits`` (``nn.Parameter``): log-probabilities up to a per-group constant, so
gradient training works as well as EM. Entries where the ``exists`` mask is False (moves past
the last state of a band, unused predecessor slots, the diagonal of a semi-Markov chain) are
ignored; ``-inf`` logits are edges with probability 0 and stay ``-inf`` under the M-step.
Groups without counts keep their values.

Dirichlet priors (hmmlearn's ``startprob_prior`` / ``transmat_prior``): with ``prior=alpha``
(a number or a tensor broadcastable to ``logits``' shape, concentrations ``> 0``) the M-step is
the MAP estimate ``max(counts + alpha - 1, 0)`` normalised per group, as hmmlearn's
``_do_mstep``; entries with probability 0 stay 0 and ``alpha = 1`` is plain maximum
likelihood. The prior is a buffer (``prior``), saved in ``state_dict``.

Where a ``NeuralTransitions`` goes: a subclass of :class:`TransitionComponent` whose
``structure(context)`` runs a network on an input sequence and returns a batched
``(B, K, X)`` or time-varying ``(B, T-1, K, X)`` structure. It has no closed-form M-step
(``has_m_step = False``, the protocol methods raise), so EM leaves it alone (as if frozen) and
it trains by gradient descent on ``-model(x).mean()``.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Union

import torch
from torch import nn

from ..errors import HMMDimensionError, HMMTypeError, HMMValueError
from ..semiring import log_normalise
from ..validation import FLOAT_DTYPES, check_finite_or_neginf, check_stochastic, check_tensor
from .storage import Banded, Dense, Sparse, TransitionStructure

__all__ = [
    "Stats", "Component", "Initial", "TransitionComponent", "DenseTransitions", "BandedTransitions",
    "SparseTransitions", "FixedTransitions", "Final", "LearnedFinal",
]

Stats = Dict[str, torch.Tensor]
Prior = Union[None, float, torch.Tensor]


def _float_table(x: object, name: str, what: str) -> torch.Tensor:
    check_tensor(x, name, what)
    if x.dtype not in FLOAT_DTYPES:
        raise HMMTypeError(f"{name} must be a float32/float64 tensor of shape {what}; got dtype {x.dtype}")
    return x


def _check_some_state(log_probs: torch.Tensor, name: str, verb: str) -> None:
    """Raise unless ``log_probs`` ``(K,)`` is free of NaN / +inf and allows at least one state
    (else no sequence is feasible)."""
    check_finite_or_neginf(log_probs, name)
    if not log_probs.is_meta and not bool((log_probs > -math.inf).any()):
        raise HMMValueError(f"{name} must let some state {verb} (every sequence would be infeasible); got all -inf")


class Component(nn.Module):
    """Base of the learned components: a ``logits`` table normalised in groups, plus EM statistics.

    Subclasses choose the groups: by default each row (the last axis) is one distribution;
    :class:`SparseTransitions` groups the slots by source state. ``exists`` ``(same shape)``
    bool marks entries that may carry probability (default: all).
    """

    has_m_step = True

    def __init__(self, logits: torch.Tensor, exists: Optional[torch.Tensor] = None, prior: Prior = None) -> None:
        super().__init__()
        exists = torch.ones(logits.shape, dtype=torch.bool, device=logits.device) if exists is None else exists.to(logits.device, torch.bool)
        check_finite_or_neginf(logits, f"{type(self).__name__} log-probabilities", exists)
        self.register_buffer("exists", exists)  # saved: a model built on the meta device gets it back on load
        # entries that do not exist hold 0 (ignored), so optimisers never see -inf there
        self.logits = nn.Parameter(logits.detach().clone().masked_fill(~exists, 0.0))
        self.prior: Optional[torch.Tensor] = None
        self.set_prior(prior)

    def set_prior(self, prior: Prior) -> None:
        """Set (or with ``None`` remove) the Dirichlet prior: concentrations ``> 0``, a number or a
        tensor broadcastable to ``logits``' shape (module docstring)."""
        if prior is None:
            if "prior" in self._buffers:
                del self._buffers["prior"]
            self.prior = None
            return
        shape = tuple(self.logits.shape)
        what = f"Dirichlet concentrations > 0 (a number or a tensor broadcastable to {shape})"
        name = f"{type(self).__name__} prior"
        if isinstance(prior, bool) or not isinstance(prior, (int, float, torch.Tensor)):
            raise HMMTypeError(f"{name} must be {what}; got {type(prior).__name__}")
        value = torch.as_tensor(prior, dtype=self.logits.dtype, device=self.logits.device)
        try:
            value = torch.broadcast_to(value, shape).clone()
        except RuntimeError:
            raise HMMDimensionError(f"{name} must be {what}; got shape {tuple(value.shape)}",
                                    expected_shape=shape, actual_shape=value.shape) from None
        if not value.is_meta and not bool((torch.isfinite(value) & (value > 0)).all()):
            raise HMMValueError(f"{name} must be {what}; got values that are not finite and > 0 (min {value.min().item():g})")
        if "prior" not in self._buffers:
            del self.prior
        self.register_buffer("prior", value)

    @property
    def num_states(self) -> int:
        return int(self.logits.shape[0])

    def extra_repr(self) -> str:
        return f"num_states={self.num_states}"

    @property
    def log_probs(self) -> torch.Tensor:
        """Normalised log-probabilities (same shape as ``logits``; ``-inf`` where ``exists`` is False)."""
        return self._normalise(self.logits.masked_fill(~self.exists, -math.inf))

    def _normalise(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-row log-softmax; rows without any finite entry stay ``-inf``."""
        return log_normalise(logits)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Entries that do not exist hold 0 after loading too. Checkpoints without ``exists``
        (older ones) marked them ``-inf`` in ``logits``; else the component keeps its own.
        A saved Dirichlet ``prior`` is adopted; without one the component keeps its own."""
        self._refresh_exists(state_dict, prefix)
        prior = state_dict.get(prefix + "prior")
        if isinstance(prior, torch.Tensor) and prior.shape == self.logits.shape and "prior" not in self._buffers:
            self.set_prior(torch.ones_like(self.logits.detach()))  # a slot for the loaded values
        elif prior is None and "prior" in self._buffers:
            state_dict[prefix + "prior"] = self.prior
        key, exists_key = prefix + "logits", prefix + "exists"
        value = state_dict.get(key)
        if exists_key not in state_dict:
            old_style = isinstance(value, torch.Tensor) and value.shape == self.exists.shape and bool(torch.isneginf(value).any())
            state_dict[exists_key] = ~torch.isneginf(value) if old_style else self.exists
        exists = state_dict[exists_key]
        if isinstance(value, torch.Tensor) and isinstance(exists, torch.Tensor) and value.shape == exists.shape:
            state_dict[key] = value.masked_fill(~exists.to(value.device, torch.bool), 0.0)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _refresh_exists(self, state_dict, prefix: str) -> None:
        """Hook for components whose ``exists`` follows a loaded buffer (the predecessors of a sparse graph)."""

    @torch.no_grad()
    def log_prior(self) -> float:
        """Unnormalised Dirichlet log-density ``sum (alpha - 1) log p`` of the current parameters
        (0 without a prior), over entries with ``p > 0``: the MAP M-step raises ``log p(x) +
        log_prior()``, which the EM monitor checks. Entries at ``p = 0`` (where ``alpha < 1``
        drove them) are left out, where the density is unbounded."""
        if self.prior is None:
            return 0.0
        logp = self.log_probs
        use = self.exists & torch.isfinite(logp) & (self.prior != 1)
        return float(((self.prior - 1.0) * logp).masked_fill(~use, 0.0).double().sum())

    def _group_totals(self, counts: torch.Tensor) -> torch.Tensor:
        """The total count of each entry's group, broadcast to ``counts``' shape."""
        return counts.sum(-1, keepdim=True).expand_as(counts)

    # --- statistics protocol ---

    def init_stats(self) -> Stats:
        """``{"counts": zeros like logits}``."""
        return {"counts": torch.zeros_like(self.logits.detach())}

    @torch.no_grad()
    def accumulate(self, stats: Stats, counts: torch.Tensor) -> None:
        """Add expected counts ``(..., *logits.shape)`` (leading batch/time axes are summed) in place."""
        shape = tuple(self.logits.shape)
        _float_table(counts, "counts", f"(..., {', '.join(map(str, shape))})")
        if tuple(counts.shape[counts.ndim - len(shape):]) != shape or counts.ndim < len(shape):
            raise HMMDimensionError(
                f"{type(self).__name__} counts must end in {shape} (the parameter shape); got {tuple(counts.shape)}",
                expected_shape=("...",) + shape,
                actual_shape=counts.shape,
            )
        stats["counts"] += counts.reshape((-1,) + shape).sum(0).to(stats["counts"].dtype)

    @torch.no_grad()
    def m_step(self, stats: Stats) -> None:
        """Normalised counts per group (with a prior: ``max(counts + prior - 1, 0)``, entries with
        probability 0 kept at 0); groups without counts keep their values."""
        counts = stats["counts"].masked_fill(~self.exists, 0.0)
        if self.prior is not None:
            counts = (counts + self.prior.to(counts.dtype) - 1.0).clamp(min=0.0)
            counts = counts.masked_fill(~self.exists | torch.isneginf(self.log_probs), 0.0)
        totals = self._group_totals(counts)
        new = torch.log(counts / totals.clamp(min=torch.finfo(counts.dtype).tiny))
        new = torch.where(totals > 0, new, self.log_probs)
        self.logits.copy_(new.masked_fill(~self.exists, 0.0))


class Initial(Component):
    """Initial state distribution ``p(z_1 = k)`` from ``(K,)`` logits.

    Args:
        log_probs: ``(K,)`` log-probabilities (up to a constant; ``-inf`` = never starts there).
        prior: optional Dirichlet prior (hmmlearn's ``startprob_prior``; module docstring).

    Statistics: ``accumulate(stats, posteriors)`` with the state posteriors at frame 0 ``(B, K)``.
    """

    def __init__(self, log_probs: torch.Tensor, prior: Prior = None) -> None:
        _float_table(log_probs, "Initial log_probs", "(K,)")
        if log_probs.ndim != 1 or log_probs.shape[0] < 1:
            raise HMMDimensionError(f"Initial log_probs must be (K,); got {tuple(log_probs.shape)}",
                                    expected_shape=("K",), actual_shape=log_probs.shape)
        _check_some_state(log_probs, "Initial log_probs", "start")
        super().__init__(log_probs, prior=prior)

    @classmethod
    def from_probs(cls, probs: torch.Tensor, prior: Prior = None) -> "Initial":
        """From ``(K,)`` probabilities summing to 1 (validated)."""
        return cls(torch.log(check_stochastic(probs, "init_probs")), prior)

    @classmethod
    def uniform(cls, num_states: int, dtype: torch.dtype = torch.float32, device=None) -> "Initial":
        return cls(torch.log(torch.full((num_states,), 1.0 / num_states, dtype=dtype, device=device)))

    @classmethod
    def first(cls, num_states: int, dtype: torch.dtype = torch.float32, device=None) -> "Initial":
        """Always start in state 0 (left-to-right chains)."""
        probs = torch.zeros(num_states, dtype=dtype, device=device)
        probs[0] = 1.0
        return cls(torch.log(probs))

    @property
    def probs(self) -> torch.Tensor:
        return self.log_probs.exp()


class TransitionComponent(nn.Module):
    """Protocol of every transition component (learned tables, fixed structures, networks).

    ``structure()`` returns the kernel's transition structure (normalised log-probabilities).
    EM statistics: ``init_stats()``, ``accumulate(stats, expected_counts)`` with the kernel's
    expected counts in the storage's own shape, ``m_step(stats)``; components with
    ``has_m_step = False`` (fixed or neural) are left out of EM.
    """

    has_m_step = False
    kind: str = ""

    def structure(self) -> TransitionStructure:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def num_states(self) -> int:
        return self.structure().num_states

    def dense_log_probs(self) -> torch.Tensor:
        """``(..., K, K)`` dense view of ``structure()`` (``-inf`` where there is no edge)."""
        s = self.structure()
        return s.log_probs if isinstance(s, Dense) else s.to_dense().log_probs

    def init_stats(self) -> Stats:
        raise NotImplementedError(f"{type(self).__name__} has no closed-form EM statistics; train it by gradient or freeze it")

    def accumulate(self, stats: Stats, counts: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no closed-form EM statistics; train it by gradient or freeze it")

    def m_step(self, stats: Stats) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no closed-form EM statistics; train it by gradient or freeze it")


class _TableTransitions(Component, TransitionComponent):
    """Transitions held as one static ``(K, X)`` logits table (the learned storages)."""

    has_m_step = True
    _storage: type = Dense

    def __init__(self, logits: torch.Tensor, exists: Optional[torch.Tensor] = None, prior: Prior = None) -> None:
        Component.__init__(self, logits, exists, prior)

    @property
    def num_states(self) -> int:
        return int(self.logits.shape[0])

    def structure(self) -> TransitionStructure:
        return self._storage(self.log_probs)

    @classmethod
    def _check_table(cls, log_probs: object, what: str) -> torch.Tensor:
        name = f"{cls.__name__} log_probs"
        _float_table(log_probs, name, what)
        if log_probs.ndim != 2:
            raise HMMDimensionError(f"{name} must be {what}; got {tuple(log_probs.shape)}",
                                    expected_shape=tuple(what.strip("()").split(", ")), actual_shape=log_probs.shape,
                                    suggestion="batched or time-varying structures are fixed potentials: use FixedTransitions")
        return log_probs


class DenseTransitions(_TableTransitions):
    """Full ``(K, K)`` transitions: ``log_probs[i, j] = log p(z_{t+1} = j | z_t = i)``, rows normalised.

    Args:
        log_probs: ``(K, K)`` (up to a per-row constant; ``-inf`` = no edge).
        exists: optional ``(K, K)`` bool; False entries are not edges (e.g. ``~eye`` for a
            semi-Markov chain, whose states stay by their durations).
        prior: optional Dirichlet prior per row (hmmlearn's ``transmat_prior``; module docstring).
    """

    kind = "dense"
    _storage = Dense

    def __init__(self, log_probs: torch.Tensor, exists: Optional[torch.Tensor] = None, prior: Prior = None) -> None:
        self._check_table(log_probs, "(K, K)")
        Dense(log_probs)  # square check
        super().__init__(log_probs, exists, prior)

    @classmethod
    def from_probs(cls, probs: torch.Tensor, exists: Optional[torch.Tensor] = None, *, allow_empty_rows: bool = False,
                   prior: Prior = None) -> "DenseTransitions":
        """From ``(K, K)`` row-stochastic probabilities (validated)."""
        return cls(torch.log(check_stochastic(probs, "transitions", exists, allow_empty_rows=allow_empty_rows)), exists, prior)


class BandedTransitions(_TableTransitions):
    """Left-to-right ``(K, W)`` transitions: ``log_probs[i, w] = log p(z_{t+1} = i + w | z_t = i)``.

    Moves past the last state (``i + w >= K``) do not exist; each row's existing moves are normalised.
    ``prior``: optional Dirichlet prior per row, in the band's ``(K, W)`` shape (module docstring).
    """

    kind = "banded"
    _storage = Banded

    def __init__(self, log_probs: torch.Tensor, prior: Prior = None) -> None:
        self._check_table(log_probs, "(K, W)")
        super().__init__(log_probs, Banded(log_probs).valid_mask(), prior)

    @classmethod
    def from_probs(cls, probs: torch.Tensor, prior: Prior = None) -> "BandedTransitions":
        """From ``(K, W)`` probabilities whose existing moves sum to 1 per row (validated)."""
        return cls(Banded.from_probs(probs).log_probs, prior)

    def extra_repr(self) -> str:
        return f"num_states={self.num_states}, width={int(self.logits.shape[1])}"


class SparseTransitions(_TableTransitions):
    """Any graph as predecessor lists: ``log_probs[j, p] = log p(z_{t+1} = j | z_t = predecessors[j, p])``.

    Args:
        predecessors: ``(K, P)`` int64 source states, ``-1`` = unused slot (a buffer, saved in
            ``state_dict``).
        log_probs: ``(K, P)``; normalised over each SOURCE's outgoing edges (the slots that
            name it, across destinations), so ``structure()`` is a proper Markov chain.
        prior: optional Dirichlet prior over each source's edges, in the slots' ``(K, P)`` shape.
    """

    kind = "sparse"

    def __init__(self, predecessors: torch.Tensor, log_probs: torch.Tensor, prior: Prior = None) -> None:
        self._check_table(log_probs, "(K, P)")
        check = Sparse(predecessors, log_probs)  # validates predecessors (K, P) against log_probs
        super().__init__(log_probs, check.valid_mask(), prior)
        self.register_buffer("predecessors", check.predecessors.clone())

    def structure(self) -> Sparse:
        return Sparse(self.predecessors, self.log_probs)

    def extra_repr(self) -> str:
        return f"num_states={self.num_states}, slots={int(self.logits.shape[1])}"

    @classmethod
    def from_structure(cls, structure: Sparse) -> "SparseTransitions":
        return cls(structure.predecessors, structure.log_probs)

    @classmethod
    def from_probs(cls, predecessors: torch.Tensor, probs: torch.Tensor) -> "SparseTransitions":
        """From ``(K, P)`` probabilities whose outgoing edges sum to 1 per source (validated, as :meth:`Sparse.from_probs`)."""
        return cls.from_structure(Sparse.from_probs(predecessors, probs))

    def _refresh_exists(self, state_dict, prefix: str) -> None:
        """A loaded graph brings its own unused slots: ``exists`` follows the loaded ``predecessors``."""
        pred = state_dict.get(prefix + "predecessors")
        if isinstance(pred, torch.Tensor) and pred.shape == self.predecessors.shape:
            self.exists = (pred >= 0).to(self.exists.device)

    def _sources(self) -> torch.Tensor:
        return self.predecessors.clamp(min=0).reshape(-1)

    def _normalise(self, logits: torch.Tensor) -> torch.Tensor:
        """Log-softmax over each source's slots (scatter by predecessor); sources without a finite edge stay ``-inf``."""
        k, src, flat = self.num_states, self._sources(), logits.reshape(-1)
        top = flat.new_full((k,), -math.inf).scatter_reduce(0, src, flat.detach(), "amax")
        top = torch.where(torch.isfinite(top), top, torch.zeros((), dtype=top.dtype, device=top.device))
        mass = flat.new_zeros(k).scatter_add(0, src, torch.exp(flat - top[src]))
        # a source without a finite edge has mass 0: log(1) keeps its slots -inf (flat - 0) and
        # its gradient finite (log(0) would send 0 * inf = NaN back into those slots)
        lse = torch.log(torch.where(mass > 0, mass, torch.ones((), dtype=mass.dtype, device=mass.device))) + top
        return (flat - lse[src]).reshape(logits.shape)

    def _group_totals(self, counts: torch.Tensor) -> torch.Tensor:
        src = self._sources()
        totals = counts.new_zeros(self.num_states).scatter_add(0, src, counts.reshape(-1))
        return totals[src].reshape(counts.shape)


class FixedTransitions(TransitionComponent):
    """Any structure as fixed (non-learned) potentials, batched and time-varying included.

    The log-probabilities are used as given (not renormalised) and held as buffers; EM leaves
    them unchanged (as if frozen) and they have no gradient parameters.
    """

    def __init__(self, structure: TransitionStructure) -> None:
        super().__init__()
        if not isinstance(structure, TransitionStructure):
            raise HMMTypeError(f"FixedTransitions structure must be a Dense, Banded or Sparse structure; got {type(structure).__name__}")
        self.kind = structure.kind
        self._storage = type(structure)
        self.register_buffer("table", structure.log_probs.detach().clone())
        if isinstance(structure, Sparse):
            self.register_buffer("predecessors", structure.predecessors.clone())

    def extra_repr(self) -> str:
        return f"storage={self._storage.__name__}, shape={tuple(self.table.shape)}"

    def structure(self) -> TransitionStructure:
        if self._storage is Sparse:
            return Sparse(self.predecessors, self.table)
        return self._storage(self.table)


class Final(nn.Module):
    """End constraint: ``(K,)`` log weights on the last frame's state (a buffer, not learned).

    ``Final.last(K)`` allows only the last state (forced alignment); zeros allow every state.
    """

    learned = False  # a fixed constraint; LearnedFinal is the learned one

    def __init__(self, log_weights: torch.Tensor) -> None:
        super().__init__()
        _float_table(log_weights, "log_final", "(K,)")
        if log_weights.ndim != 1:
            raise HMMDimensionError(f"log_final must be (K,); got {tuple(log_weights.shape)}",
                                    expected_shape=("K",), actual_shape=log_weights.shape)
        _check_some_state(log_weights, "log_final", "end")
        self.register_buffer("log_weights", log_weights.detach().clone())

    @classmethod
    def last(cls, num_states: int, dtype: torch.dtype = torch.float32, device=None) -> "Final":
        w = torch.full((num_states,), -math.inf, dtype=dtype, device=device)
        w[-1] = 0.0
        return cls(w)

    @property
    def num_states(self) -> int:
        return int(self.log_weights.shape[0])

    def extra_repr(self) -> str:
        return f"num_states={self.num_states}"


class LearnedFinal(Final, Component):
    """End probabilities learned by EM, in pomegranate's semantics (its ``ends``).

    After each frame a chain in state ``i`` ends the sequence with probability ``e_i`` or goes on
    with probability ``1 - e_i`` by the transition component's row ``A_i`` (normalised on its
    own): the kernel's transitions are ``(1 - e_i) A_ij`` and its end weights ``e_i``, so
    ``p(x_{1:T}, length T)`` is a distribution over sequences of every length. pomegranate
    keeps the product as one table whose rows and end probability sum to 1 together
    (``edges_ij + ends_i = 1``); here ``edges_ij = (1 - e_i) A_ij``, the same model.

    Args:
        log_end_probs: ``(K,)`` log end probabilities ``log e_i <= 0`` (``-inf``: never ends
            there; ``0``: always ends there, never goes on).

    Parameters: ``logits`` ``(K, 2)``, per state ``[go on, end]``, normalised per row.
    Statistics: ``accumulate(stats, counts)`` with ``(..., K, 2)`` counts: per state, the
    expected frames it is left by a transition (its posterior summed over all frames but the
    last) and the posterior at the last frame; ``m_step`` sets ``e_i = ends_i / (ends_i +
    departures_i)``, pomegranate's update. ``log_weights`` (``log e``) is ``log_final``.
    """

    learned = True

    def __init__(self, log_end_probs: torch.Tensor) -> None:
        _float_table(log_end_probs, "LearnedFinal log_end_probs", "(K,)")
        if log_end_probs.ndim != 1 or log_end_probs.shape[0] < 1:
            raise HMMDimensionError(f"LearnedFinal log_end_probs must be (K,); got {tuple(log_end_probs.shape)}",
                                    expected_shape=("K",), actual_shape=log_end_probs.shape)
        _check_some_state(log_end_probs, "LearnedFinal log_end_probs", "end")
        if not log_end_probs.is_meta and bool((log_end_probs > 0).any()):
            raise HMMValueError("LearnedFinal log_end_probs must be log-probabilities <= 0 (each state's probability of "
                                f"ending the sequence); got max {log_end_probs.max().item():g}")
        end = log_end_probs.detach()
        go_on = torch.log1p(-end.exp().clamp(max=1.0))  # log(1 - e); -inf where e == 1
        Component.__init__(self, torch.stack([go_on, end], -1))

    @classmethod
    def uniform(cls, num_states: int, dtype: torch.dtype = torch.float32, device=None) -> "LearnedFinal":
        """Every state ends with probability ``1 / K`` (pomegranate's default ``ends``)."""
        return cls(torch.full((num_states,), -math.log(num_states), dtype=dtype, device=device))

    @classmethod
    def last(cls, num_states: int, dtype: torch.dtype = torch.float32, device=None, end_prob: float = 0.5) -> "LearnedFinal":
        """Only the last state may end a sequence, with a learned probability (initially ``end_prob``)."""
        w = torch.full((num_states,), -math.inf, dtype=dtype, device=device)
        w[-1] = math.log(end_prob)
        return cls(w)

    @property
    def log_weights(self) -> torch.Tensor:
        """``(K,)`` log end probabilities ``log e`` (the kernel's ``log_final``)."""
        return self.log_probs[:, 1]

    @property
    def log_continue(self) -> torch.Tensor:
        """``(K,)`` ``log(1 - e)``: each state's log-probability of going on after a frame."""
        return self.log_probs[:, 0]

    @property
    def end_probs(self) -> torch.Tensor:
        return self.log_weights.exp()

    def weigh_sources(self, structure: TransitionStructure) -> TransitionStructure:
        """``structure`` with every edge out of state ``i`` weighted by ``1 - e_i`` (any storage and layout)."""
        c = self.log_continue.to(structure.log_probs.dtype)
        if isinstance(structure, Sparse):
            pred = structure.predecessors
            add = c[pred.clamp(min=0)].masked_fill(pred < 0, 0.0)
            if structure.time_varying and add.ndim == 3:  # batched (B, K, P) graph, (B, T-1, K, P) weights
                add = add.unsqueeze(1)
            return Sparse(pred, structure.log_probs + add)
        return type(structure)(structure.log_probs + c[:, None])

    @staticmethod
    def counts(posteriors: torch.Tensor, lengths: Optional[torch.Tensor], start: int = 0) -> torch.Tensor:
        """``(B, K, 2)`` counts from state posteriors ``(B, T, K)`` (0 at padded frames): per
        state, the frames it is left by a transition and the posterior at each sequence's last frame.

        ``start``: the posteriors are frames ``start ..`` of longer sequences (a chunk of a
        checkpointed E-step); a sequence whose last frame lies outside them ends nowhere here.
        """
        b, t = posteriors.shape[:2]
        last = torch.full((b,), t - 1 + start, device=posteriors.device) if lengths is None else \
            torch.as_tensor(lengths, device=posteriors.device).long() - 1
        rel = last - start
        at_end = posteriors[torch.arange(b, device=posteriors.device), rel.clamp(0, t - 1)]
        at_end = torch.where(((rel >= 0) & (rel < t))[:, None], at_end, torch.zeros((), dtype=at_end.dtype, device=at_end.device))
        return torch.stack([posteriors.sum(1) - at_end, at_end], -1)


def as_transition_component(spec: object, num_states: int, dtype: torch.dtype) -> TransitionComponent:
    """The transition component for a model's ``transitions`` argument.

    Accepts a :class:`TransitionComponent` (used as is, cast to ``dtype``), a static
    ``Dense``/``Banded``/``Sparse`` structure (a learned component initialised from it, rows
    renormalised) or a batched or time-varying structure (:class:`FixedTransitions`). Strings
    and probability tensors are the models' business (their defaults and checks differ).
    """
    if isinstance(spec, TransitionComponent):
        comp = spec.to(dtype)
    elif isinstance(spec, TransitionStructure):
        s = spec.to(dtype)
        if s.batch_size is not None or s.time_varying:
            comp = FixedTransitions(s)
        elif isinstance(s, Sparse):
            comp = SparseTransitions.from_structure(s)
        else:
            comp = (BandedTransitions if isinstance(s, Banded) else DenseTransitions)(s.log_probs)
    else:
        raise HMMTypeError(
            "transitions must be 'ergodic', 'left_to_right', a (K, K) probability tensor, a Dense/Banded/Sparse "
            f"structure or a TransitionComponent; got {type(spec).__name__}"
        )
    if comp.num_states != num_states:
        raise HMMDimensionError(
            f"transitions must describe K == {num_states} states (the emission's); got {comp.num_states}",
            expected_shape=(num_states, "X"),
            actual_shape=comp.structure().log_probs.shape,
        )
    return comp
