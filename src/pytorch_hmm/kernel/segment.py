"""Semi-Markov (explicit-duration) kernel: log-partition, marginals and Viterbi over segmentations.

Every routine takes

* ``log_emissions`` ``(B, T, K)``: log p(x_t | state k);
* ``log_transitions`` ``(K, K)`` or ``(B, K, K)``: log p(next segment's state j | state i), with
  ``-inf`` on the diagonal (a state's stay is its duration, never a self-transition);
* ``log_durations`` ``(K, D)`` or ``(B, K, D)``: ``[k, d]`` = log p(duration d + 1 | state k);
* ``log_init`` ``(K,)`` or ``(B, K)``; optional ``lengths (B,)`` and ``log_final`` ``(K,)`` / ``(B, K)``.

Segments tile ``[0, length)`` exactly; a segment's emission score is a difference of
cumulative sums. Cost ``O(T K (K + D))``, memory ``O(B T K)`` plus the ``(B, K, D)`` duration
statistics. The loops run in float64 (see :mod:`.segment_loops`); results come back in the
input dtype. Inputs without any finite segmentation give ``-inf``, zero posteriors and empty
paths, as in the chain kernel.
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Tuple

import torch

from ..errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMValueError
from . import segment_loops as loops
from .factors import exp_flushed_, static_dense_edges
from ..threads import sized_by_scores
from ..validation import LengthsLike, check_finite_or_neginf, check_first_order, check_tensor, frame_mask
from .inputs import check_chain_lengths, check_emissions, check_state_vector
from .segment_loops import SegmentProblem

__all__ = [
    "semi_markov_log_partition",
    "semi_markov_posteriors",
    "semi_markov_marginals",
    "semi_markov_viterbi",
    "SemiMarkovMarginals",
]

Segments = List[List[Tuple[int, int, int]]]


class SemiMarkovMarginals(NamedTuple):
    """EM statistics of a semi-Markov model (all without grad, in the emissions' dtype).

    log_z ``(B,)``; posteriors ``(B, T, K)`` p(frame t in a segment of k); durations
    ``(B, K, D)`` expected number of segments of k with duration d + 1; transitions ``(B, K, K)``
    expected segment-to-segment moves; init ``(B, K)`` p(first segment is k).
    """

    log_z: torch.Tensor
    posteriors: torch.Tensor
    durations: torch.Tensor
    transitions: torch.Tensor
    init: torch.Tensor


def _prepare(log_emissions, log_transitions, log_durations, log_init, lengths, log_final) -> Tuple[SegmentProblem, int]:
    """Validate; returns the canonical problem and the caller's ``D`` (the problem keeps ``min(D, T)``)."""
    e = check_emissions(log_emissions)
    b, t, k = e.shape
    trans = _check_table(log_transitions, "log_transitions", e, (k, k), "(K, K) or (B, K, K)")
    diagonal = torch.diagonal(trans.detach(), dim1=-2, dim2=-1)
    if (diagonal > -math.inf).any():
        states = torch.nonzero((diagonal > -math.inf).reshape(-1, k).any(0)).flatten().tolist()
        raise HMMValueError(
            f"log_transitions must have -inf on its diagonal (a semi-Markov state stays by its duration, "
            f"never by a self-transition); got finite entries for states {states}"
        )
    if not isinstance(log_durations, torch.Tensor) or log_durations.ndim not in (2, 3) or log_durations.shape[-2] != k:
        shape = tuple(log_durations.shape) if isinstance(log_durations, torch.Tensor) else type(log_durations).__name__
        raise HMMDimensionError(
            f"log_durations must be (K, D) or (B, K, D) with K == {k} states; got {shape}",
            expected_shape=(k, "D"),
            actual_shape=log_durations.shape if isinstance(log_durations, torch.Tensor) else None,
        )
    d = log_durations.shape[-1]
    durations = _check_table(log_durations, "log_durations", e, (k, d), "(K, D) or (B, K, D)")
    if d < 1:
        raise HMMDimensionError("log_durations must allow at least one duration (D >= 1); got D == 0",
                                expected_shape=(k, "D>0"), actual_shape=log_durations.shape)
    init = check_state_vector(log_init, "log_init", e)
    final = (torch.zeros((b, k), dtype=e.dtype, device=e.device) if log_final is None
             else check_state_vector(log_final, "log_final", e))
    lens = check_chain_lengths(lengths, e)
    e = torch.where(frame_mask(lens, t, e.device)[:, :, None], e, torch.zeros((), dtype=e.dtype, device=e.device))
    for x, name in ((e, "log_emissions"), (trans, "log_transitions"), (durations, "log_durations"),
                    (init, "log_init"), (final, "log_final")):
        check_finite_or_neginf(x, name, None, " (at valid frames)" if name == "log_emissions" else "")
    return SegmentProblem(e, trans, durations[..., :t], init, final, lens), d


def _check_table(x, name: str, e: torch.Tensor, shape: tuple, spelled: str) -> torch.Tensor:
    """A ``shape`` or ``(B,) + shape`` tensor matching ``e``; returned as ``(B', ...)``."""
    b = e.shape[0]
    check_tensor(x, name, spelled)
    if tuple(x.shape) not in (shape, (b,) + shape):
        raise HMMDimensionError(
            f"{name} must be {spelled} with B == {b}, K == {e.shape[2]}; got shape {tuple(x.shape)}",
            expected_shape=(b,) + shape,
            actual_shape=x.shape,
        )
    if x.dtype != e.dtype:
        raise HMMDtypeError(f"{name} must have the dtype of log_emissions ({e.dtype}); got {x.dtype}")
    if x.device != e.device:
        raise HMMDeviceError(f"{name} must be on the device of log_emissions ({e.device}); got {x.device}")
    return x if x.ndim == len(shape) + 1 else x.unsqueeze(0)


class _Passes(NamedTuple):
    cum: torch.Tensor
    bad: torch.Tensor
    u: torch.Tensor
    end: torch.Tensor
    bstart: torch.Tensor
    v: torch.Tensor
    log_z: torch.Tensor  # float64


def _passes(p: SegmentProblem) -> _Passes:
    with torch.no_grad():
        cum, bad = loops.cumulative(p)
        u, end = loops.forward(p, cum, bad)
        bstart, v = loops.backward(p, cum, bad)
        return _Passes(cum, bad, u, end, bstart, v, loops.log_z(p, end))


def _marginals(p: SegmentProblem, f: _Passes, d_user: int, edges: bool = True) -> SemiMarkovMarginals:
    """All expected counts from the two passes, in float64 until the final cast."""
    b, t_max, k = p.emissions.shape
    d_max = p.durations.shape[-1]
    feasible = torch.isfinite(f.log_z)
    lz = torch.where(feasible, f.log_z, torch.zeros((), dtype=torch.float64, device=f.log_z.device))
    lz3 = lz[:, None, None]

    def prob(x: torch.Tensor) -> torch.Tensor:
        return torch.where(feasible[:, None, None], exp_flushed_(x - lz3), torch.zeros((), dtype=x.dtype, device=x.device))

    cum_lo, cum_hi = f.cum[:, :-1], f.cum[:, 1:]
    starts = prob(f.u + cum_lo + f.bstart)  # p(a segment of k starts at s)
    ends = prob(f.end + f.v - cum_hi)  # p(a segment of k ends at t)
    # occupancy = starts so far - ends before t (float64: the cancellation costs ~T * 1e-16)
    gamma = ((starts - ends).cumsum(1) + ends).clamp_(0.0, 1.0)
    totals = gamma.sum(-1, keepdim=True)
    gamma = torch.where(totals > 0, gamma / totals.clamp(min=1e-300), gamma)
    gamma = gamma.masked_fill(~p.mask[:, :, None], 0.0)

    dur = p.durations.double()
    counts = torch.zeros((b, k, d_user), dtype=torch.float64, device=gamma.device)
    for d in range(d_max):  # d + 1 = duration; segments start at s and end at s + d
        term = f.u[:, :t_max - d] + f.v[:, d:] + dur[:, None, :, d] - lz3
        term.masked_fill_(f.bad[:, d + 1:] != f.bad[:, :t_max - d], -math.inf)  # a -inf emission inside
        counts[:, :, d] = torch.where(feasible[:, None], exp_flushed_(term).sum(1), 0.0)

    if edges and t_max > 1:
        step_ok = p.mask[:, 1:] & feasible[:, None]
        xi = static_dense_edges(p.trans.double(), f.end[:, :-1], f.bstart[:, 1:], lz[:, None].expand(-1, t_max - 1), step_ok)
    else:
        xi = torch.zeros((b, k, k), dtype=torch.float64, device=gamma.device)
    dtype = p.emissions.dtype
    return SemiMarkovMarginals(f.log_z.to(dtype), gamma.to(dtype), counts.to(dtype), xi.to(dtype), starts[:, 0].to(dtype))


class _LogPartition(torch.autograd.Function):
    """Semi-Markov log Z; the backward pass returns the expected counts as gradients."""

    @staticmethod
    def forward(ctx, emissions, trans, durations, init, final, problem: SegmentProblem):  # type: ignore[override]
        p = SegmentProblem(emissions, trans, durations, init, final, problem.lengths)
        with torch.no_grad():
            cum, bad = loops.cumulative(p)
            u, end = loops.forward(p, cum, bad)
            log_z = loops.log_z(p, end)
        ctx.save_for_backward(emissions, trans, durations, init, final, cum, bad, u, end, log_z)
        ctx.meta = problem.lengths
        return log_z.to(emissions.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        # (not once_differentiable: that runs the body without grad mode, where this check cannot see create_graph)
        check_first_order("kernel.semi_markov_log_partition", "the semi-Markov kernel has no second-order path")
        emissions, trans, durations, init, final, cum, bad, u, end, log_z = ctx.saved_tensors
        lengths = ctx.meta
        p = SegmentProblem(emissions, trans, durations, init, final, lengths)
        with torch.no_grad():
            bstart, v = loops.backward(p, cum, bad)
            f = _Passes(cum, bad, u, end, bstart, v, log_z)
            m = _marginals(p, f, durations.shape[-1], edges=ctx.needs_input_grad[1])
            g = torch.where(torch.isfinite(log_z), grad.double(), 0.0).to(emissions.dtype)
            grad_e = m.posteriors * g[:, None, None]
            grad_trans = m.transitions * g[:, None, None]
            grad_dur = m.durations * g[:, None, None]
            grad_init = m.init * g[:, None]
            last = (lengths - 1)[:, None, None].expand(-1, 1, m.posteriors.shape[2])
            grad_final = m.posteriors.gather(1, last).squeeze(1) * g[:, None]  # p(the last segment is k)
        if trans.shape[0] == 1:
            grad_trans = grad_trans.sum(0, keepdim=True)
        if durations.shape[0] == 1:
            grad_dur = grad_dur.sum(0, keepdim=True)
        return grad_e, grad_trans, grad_dur, grad_init, grad_final, None


@sized_by_scores
def semi_markov_log_partition(
    log_emissions: torch.Tensor,
    log_transitions: torch.Tensor,
    log_durations: torch.Tensor,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``(B,)`` log p(x) summed over all segmentations and state sequences; ``-inf`` if none exists.

    Differentiable w.r.t. every input; the gradients are the posterior marginals of
    :func:`semi_markov_marginals` (emissions: state posteriors, durations: expected duration
    counts, transitions: expected moves, init / final: first / last segment's state).
    """
    p, _ = _prepare(log_emissions, log_transitions, log_durations, log_init, lengths, log_final)
    return _LogPartition.apply(p.emissions, p.trans, p.durations, p.init, p.final, p)


@sized_by_scores
def semi_markov_marginals(
    log_emissions: torch.Tensor,
    log_transitions: torch.Tensor,
    log_durations: torch.Tensor,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
) -> SemiMarkovMarginals:
    """Log Z and every EM statistic from one forward-backward pass (no grad); see :class:`SemiMarkovMarginals`."""
    p, d = _prepare(log_emissions, log_transitions, log_durations, log_init, lengths, log_final)
    return _marginals(p, _passes(p), d)


@sized_by_scores
def semi_markov_posteriors(
    log_emissions: torch.Tensor,
    log_transitions: torch.Tensor,
    log_durations: torch.Tensor,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """State posteriors ``(B, T, K)`` (0 at padding) and expected duration counts ``(B, K, D)``."""
    m = semi_markov_marginals(log_emissions, log_transitions, log_durations, log_init, lengths, log_final)
    return m.posteriors, m.durations


@sized_by_scores
def semi_markov_viterbi(
    log_emissions: torch.Tensor,
    log_transitions: torch.Tensor,
    log_durations: torch.Tensor,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, Segments]:
    """Best segmentation per sequence.

    Returns:
        paths: ``(B, T)`` int64 state per frame, ``-1`` at padding and for infeasible sequences.
        scores: ``(B,)`` log-score of the best segmentation (``-inf`` when none exists).
        segments: per sequence, a list of ``(state, start, end)`` with ``end`` exclusive.
    """
    p, _ = _prepare(log_emissions, log_transitions, log_durations, log_init, lengths, log_final)
    with torch.no_grad():
        cum, bad = loops.cumulative(p)
        end, dur_bp, prev_bp = loops.viterbi_tables(p, cum, bad)
        scores, segments = loops.backtrack(end, dur_bp, prev_bp, p.final, p.lengths)
    paths = loops.paths_from_segments(segments, p.emissions.shape[1], p.emissions.device)
    return paths, scores.to(p.emissions.dtype), segments
