"""The one place that maps a transition storage to its kernel operations.

:func:`ops_for` picks, once per call (in :func:`~.inputs.prepare`, the step functions and
sampling), the :class:`StorageOps` of a structure; everything storage-specific in the chain
kernel goes through it:

* ``canonical``: the storage's log-probs with moves that do not exist set to ``-inf``, and its
  source index (sparse predecessor lists, ``(B'', K, P)`` with ``B''`` in ``{1, B}``);
* ``forward_steps`` / ``backward_steps``: step tables (:mod:`.steps`) for one semiring;
* ``edge_marginals``: expected transition counts in the storage's own shape;
* ``numba_forward`` / ``numba_backward`` / ``numba_viterbi``: the compiled loops;
* ``outgoing``: each state's outgoing moves ``(log-probs, destination)``, for sampling;
* ``incoming``: each state's incoming moves ``(log-probs, source)``, for posterior sampling and
  k-best Viterbi (:mod:`.paths`).

Canonical step tables are ``(B', S, K, X)``: ``B'`` in ``{1, B}``, ``S`` = 1 (static) or
``T - 1`` (time-varying), ``X`` = ``K`` (dense), ``W`` (banded) or ``P`` (sparse).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..errors import HMMTypeError
from ..semiring import LogSemiring, MaxSemiring, underflow_threshold
from ..transitions import Banded, Dense, Sparse, TransitionStructure
from .factors import (
    banded_by_destination,
    exp_flushed_,
    gather_by_source,
    merge_parallel_edges,
    shift_windows,
    static_dense_edges,
    successor_lists,
    window_sources,
)
from .steps import GatherSteps, MatrixSteps, ScatterSteps, WindowSteps

__all__ = ["StorageOps", "DenseOps", "BandedOps", "SparseOps", "ops_for", "as_steps"]


def as_steps(log_probs: torch.Tensor, structure: TransitionStructure) -> torch.Tensor:
    """A storage-shaped tensor as ``(B', S, K, X)`` (adds ``S = 1`` / ``B' = 1`` for static storages)."""
    if structure.time_varying:
        return log_probs
    log_probs = log_probs.unsqueeze(-3)
    return log_probs.unsqueeze(0) if log_probs.ndim == 3 else log_probs


def _log_probs(s: TransitionStructure, step: Optional[int]) -> torch.Tensor:
    return s.log_probs if step is None else s.log_probs[:, step : step + 1]


def _doubtful(p) -> float:
    """The dense loops' :func:`~pytorch_hmm.semiring.underflow_threshold` for ``p``."""
    return underflow_threshold(p.emissions.dtype, p.shape[2])


def _np(x: torch.Tensor):
    import numpy as np

    return np.ascontiguousarray(x.detach().numpy())


class StorageOps:
    """Kernel operations of one storage (see the module docstring)."""

    name = ""

    def canonical(self, s: TransitionStructure, step: Optional[int] = None) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``(log-probs with missing moves at -inf, source index or None)``; with ``step``, only that
        step ``(B, 1, K, X)`` of a time-varying storage."""
        return _log_probs(s, step), None

    def expected_last_dim(self, k: int):
        """The last dimension of the storage for ``K == k`` states, for error messages."""
        raise NotImplementedError

    def forward_steps(self, trans: torch.Tensor, index: Optional[torch.Tensor], semiring, sync: bool = True):
        """Step tables of the forward direction; ``sync=False`` promises no host synchronisation."""
        raise NotImplementedError

    def backward_steps(self, trans: torch.Tensor, index: Optional[torch.Tensor]):
        raise NotImplementedError

    def edge_marginals(self, p, a, c, lz, step_totals, step_ok) -> torch.Tensor:
        raise NotImplementedError

    def outgoing(self, trans: torch.Tensor, index: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(table (B', S, K, Y), dest (B'', K, Y))``: state ``i``'s ``y``-th move goes to ``dest[i, y]``."""
        raise NotImplementedError

    def incoming(self, trans: torch.Tensor, index: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(table (B', S, K, X), source (B'', K, X))``: state ``j``'s ``x``-th incoming move comes from
        ``source[j, x]`` (``-1``: no move; its table entry is ``-inf``) with log-prob ``table[.., j, x]``."""
        raise NotImplementedError

    def numba_forward(self, p, alpha, log_norm) -> None:
        raise NotImplementedError

    def numba_backward(self, p, log_norm, beta) -> None:
        raise NotImplementedError

    def numba_viterbi(self, p, pointers, paths, scores) -> None:
        raise NotImplementedError


class DenseOps(StorageOps):
    name = "dense"

    def expected_last_dim(self, k):
        return k

    def forward_steps(self, trans, index, semiring, sync=True):
        return MatrixSteps(trans, semiring, exact=not sync)  # exact steps need no check, so no sync

    def backward_steps(self, trans, index):
        return MatrixSteps(trans, LogSemiring, reverse=True)

    def edge_marginals(self, p, a, c, lz, step_totals, step_ok):
        if p.time_varying:
            xi = exp_flushed_(a.unsqueeze(-1) + p.trans + c.unsqueeze(-2) - lz)
            return torch.where(step_ok[:, :, None, None], xi, torch.zeros((), dtype=xi.dtype, device=xi.device))
        return static_dense_edges(p.trans[:, 0], a, c, step_totals, step_ok).unsqueeze(1)

    def outgoing(self, trans, index):
        k = trans.shape[-1]
        return trans, torch.arange(k, device=trans.device).expand(1, k, k)

    def incoming(self, trans, index):
        k = trans.shape[-1]
        return trans.transpose(-1, -2), torch.arange(k, device=trans.device).expand(1, k, k)

    def numba_forward(self, p, alpha, log_norm):
        from . import numba_loops as nl
        from .factors import dense_forward_factors

        matrix, shift = dense_forward_factors(p.trans)
        nl._forward_dense(_np(p.emissions), _np(matrix), _np(p.trans), _np(shift), _doubtful(p), _np(p.init), _np(p.lengths),
                          alpha, log_norm)

    def numba_backward(self, p, log_norm, beta):
        from . import numba_loops as nl
        from .factors import dense_backward_factors

        matrix, shift = dense_backward_factors(p.trans)
        nl._backward_dense(_np(p.emissions), _np(matrix), _np(p.trans.transpose(-1, -2)), _np(shift), _doubtful(p),
                           _np(p.final), _np(p.lengths), _np(log_norm), beta)

    def numba_viterbi(self, p, pointers, paths, scores):
        from . import numba_loops as nl

        nl.run_viterbi(p, p.trans, nl.MODE_DENSE, None, pointers, paths, scores)


class BandedOps(StorageOps):
    name = "banded"

    def expected_last_dim(self, k):
        return "W"

    def canonical(self, s, step=None):
        return _log_probs(s, step).masked_fill(~s.valid_mask(), float("-inf")), None

    def forward_steps(self, trans, index, semiring, sync=True):
        return WindowSteps(banded_by_destination(trans), semiring, ahead=False)

    def backward_steps(self, trans, index):
        return WindowSteps(trans, LogSemiring, ahead=True)

    def edge_marginals(self, p, a, c, lz, step_totals, step_ok):
        xi = exp_flushed_(a.unsqueeze(-1) + p.trans + shift_windows(c, p.trans.shape[-1], ahead=True) - lz)
        xi = torch.where(step_ok[:, :, None, None], xi, torch.zeros((), dtype=xi.dtype, device=xi.device))
        return xi if p.time_varying else xi.sum(1, keepdim=True)

    def outgoing(self, trans, index):
        k, w = trans.shape[-2:]
        dest = torch.arange(k, device=trans.device)[:, None] + torch.arange(w, device=trans.device)
        return trans, dest.clamp(max=k - 1).unsqueeze(0)  # moves past the last state have probability 0

    def incoming(self, trans, index):
        k, w = trans.shape[-2:]
        return banded_by_destination(trans), window_sources(k, w, ahead=False, device=trans.device)

    def numba_forward(self, p, alpha, log_norm):
        from . import gather_numba as gn

        gn.run_gather(gn._forward_gather, p, banded_by_destination(p.trans), gn.MODE_BANDED, None,
                      _np(p.init), _np(p.lengths), alpha, log_norm)

    def numba_backward(self, p, log_norm, beta):
        from . import gather_numba as gn

        gn.run_gather(gn._backward_gather, p, p.trans, gn.MODE_AHEAD, None, _np(p.final), _np(p.lengths), _np(log_norm), beta)

    def numba_viterbi(self, p, pointers, paths, scores):
        from . import numba_loops as nl

        nl.run_viterbi(p, banded_by_destination(p.trans).transpose(-1, -2), nl.MODE_BANDED, None, pointers, paths, scores)


class SparseOps(StorageOps):
    """Predecessor lists: forward steps gather over ``P`` predecessors; backward steps and
    sampling use the successor lists (:func:`~.factors.successor_lists`), built once per call."""

    name = "sparse"

    def expected_last_dim(self, k):
        return "P"

    def canonical(self, s, step=None):
        used = s.valid_mask()  # (K, P) or (B, K, P)
        lp = _log_probs(s, step)
        mask = used.unsqueeze(1) if lp.ndim == 4 and used.ndim == 3 else used
        index = s.predecessors if s.predecessors.ndim == 3 else s.predecessors.unsqueeze(0)
        return lp.masked_fill(~mask, float("-inf")), index

    def forward_steps(self, trans, index, semiring, sync: bool = True):
        if semiring is MaxSemiring:  # the best state path: parallel edges count as one, their probabilities added
            trans = merge_parallel_edges(trans, index, sync)
        return GatherSteps(trans, index, semiring)

    def _by_source(self, trans, index):
        slots, dest = successor_lists(index)
        return gather_by_source(trans, slots), dest

    def backward_steps(self, trans, index):
        return ScatterSteps(trans, index)

    def edge_marginals(self, p, a, c, lz, step_totals, step_ok):
        bsz, steps, k = a.shape
        zero = torch.zeros((), dtype=a.dtype, device=a.device)
        sources = p.index.clamp(min=0)
        slots = []
        for x in range(p.trans.shape[-1]):  # a loop over the P slots, not over time: memory O(B T K)
            src = sources[:, None, :, x].expand(bsz, steps, k)
            xi = exp_flushed_(a.gather(-1, src) + p.trans[..., x] + c - lz[..., 0])
            xi = torch.where(step_ok[:, :, None], xi, zero)
            slots.append(xi if p.time_varying else xi.sum(1, keepdim=True))
        return torch.stack(slots, -1)

    def outgoing(self, trans, index):
        return self._by_source(trans, index)

    def incoming(self, trans, index):
        return trans, index

    def numba_forward(self, p, alpha, log_norm):
        from . import gather_numba as gn

        gn.run_gather(gn._forward_gather, p, p.trans, gn.MODE_GATHER, p.index, _np(p.init), _np(p.lengths), alpha, log_norm)

    def numba_backward(self, p, log_norm, beta):
        from . import gather_numba as gn

        table, dest = self.outgoing(p.trans, p.index)
        gn.run_gather(gn._backward_gather, p, table, gn.MODE_GATHER, dest, _np(p.final), _np(p.lengths), _np(log_norm), beta)

    def numba_viterbi(self, p, pointers, paths, scores):
        from . import numba_loops as nl

        nl.run_viterbi(p, merge_parallel_edges(p.trans, p.index), nl.MODE_GATHER, p.index, pointers, paths, scores)


_OPS = {Dense: DenseOps(), Banded: BandedOps(), Sparse: SparseOps()}


def ops_for(structure: TransitionStructure) -> StorageOps:
    """The :class:`StorageOps` of ``structure``'s storage class (or of its nearest registered base)."""
    for cls in type(structure).__mro__:
        ops = _OPS.get(cls)
        if ops is not None:
            return ops
    raise HMMTypeError(
        f"transitions must be a Dense, Banded or Sparse structure; got {type(structure).__name__}, "
        "a TransitionStructure with no kernel operations"
    )
