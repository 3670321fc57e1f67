"""Semi-Markov (explicit-duration) kernel: log-partition, marginals and Viterbi over segmentations.

Every routine takes

* ``log_emissions`` ``(B, T, K)``: log p(x_t | state k);
* ``log_transitions`` ``(K, K)`` or ``(B, K, K)``: log p(next segment's state j | state i), with
  ``-inf`` on the diagonal (a state's stay is its duration, never a self-transition);
* ``log_durations`` ``(K, D)`` or ``(B, K, D)``: ``[k, d]`` = log p(duration d + 1 | state k);
* ``log_init`` ``(K,)`` or ``(B, K)``; optional ``lengths (B,)`` and ``log_final`` ``(K,)`` / ``(B, K)``.

Segments tile ``[0, length)`` exactly; a segment's emission score is a difference of
cumulative sums. Cost ``O(T K (K + D))``, memory ``O(B T K)`` plus the ``(B, K, D)`` duration
statistics. The loops run in float64 (:mod:`.segment_loops` in PyTorch, :mod:`.segment_numba`
compiled); results come back in the input dtype. Inputs without any finite segmentation give
``-inf``, zero posteriors and empty paths, as in the chain kernel.

Every routine takes a keyword ``backend``, as the chain kernel's: ``"torch"`` (the PyTorch
loops, the reference; any device), ``"numba"`` (compiled loops; CPU tensors only) or ``"auto"``
(default: numba on CPU when it is installed, else torch).
"""

from __future__ import annotations

import math
from typing import List, NamedTuple, Optional, Tuple

import torch

from ..errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMValueError
from . import segment_loops
from .chain import pick_loops
from ..threads import sized_by_scores
from ..validation import LengthsLike, check_finite_or_neginf, check_first_order, check_tensor, frame_mask
from .inputs import check_chain_lengths, check_emissions, check_state_vector
from .segment_loops import SegmentProblem

try:  # numba is a declared dependency, but keep the kernel usable without it
    from . import segment_numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    segment_numba = None  # type: ignore[assignment]

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


def _loops(p: SegmentProblem, backend: str):
    """The loops module ``backend`` selects: :mod:`.segment_numba` or :mod:`.segment_loops`."""
    return pick_loops(backend, p.emissions.device, segment_numba, segment_loops)


def _forward(p: SegmentProblem, loops) -> tuple:
    """``(cum, bad, u, end, log_z)`` of the forward pass of ``loops`` (float64, no grad)."""
    with torch.no_grad():
        cum, bad = loops.cumulative(p)
        u, end = loops.forward(p, cum, bad)
        return cum, bad, u, end, segment_loops.log_z(p, end)


def _marginals(p: SegmentProblem, loops, passes: tuple, d_user: int, edges: bool = True) -> SemiMarkovMarginals:
    """The backward pass of ``loops`` after :func:`_forward` and every expected count, in the input dtype."""
    with torch.no_grad():
        gamma, counts, xi, init = loops.marginals(p, *passes, edges=edges)
    if counts.shape[-1] < d_user:  # durations longer than the sequence never occur
        counts = torch.cat([counts, counts.new_zeros(counts.shape[:2] + (d_user - counts.shape[-1],))], -1)
    dtype = p.emissions.dtype
    return SemiMarkovMarginals(passes[-1].to(dtype), gamma.to(dtype), counts.to(dtype), xi.to(dtype), init.to(dtype))


class _LogPartition(torch.autograd.Function):
    """Semi-Markov log Z; the backward pass returns the expected counts as gradients."""

    @staticmethod
    def forward(ctx, emissions, trans, durations, init, final, problem: SegmentProblem, loops):  # type: ignore[override]
        p = SegmentProblem(emissions, trans, durations, init, final, problem.lengths)
        cum, bad, u, end, log_z = _forward(p, loops)
        ctx.save_for_backward(emissions, trans, durations, init, final, cum, bad, u, end, log_z)
        ctx.meta = (problem.lengths, loops)
        return log_z.to(emissions.dtype)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        # (not once_differentiable: that runs the body without grad mode, where this check cannot see create_graph)
        check_first_order("kernel.semi_markov_log_partition", "the semi-Markov kernel has no second-order path")
        emissions, trans, durations, init, final, cum, bad, u, end, log_z = ctx.saved_tensors
        lengths, loops = ctx.meta
        p = SegmentProblem(emissions, trans, durations, init, final, lengths)
        with torch.no_grad():
            m = _marginals(p, loops, (cum, bad, u, end, log_z), durations.shape[-1], edges=ctx.needs_input_grad[1])
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
        return grad_e, grad_trans, grad_dur, grad_init, grad_final, None, None


@sized_by_scores
def semi_markov_log_partition(
    log_emissions: torch.Tensor,
    log_transitions: torch.Tensor,
    log_durations: torch.Tensor,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """``(B,)`` log p(x) summed over all segmentations and state sequences; ``-inf`` if none exists.

    Differentiable w.r.t. every input; the gradients are the posterior marginals of
    :func:`semi_markov_marginals` (emissions: state posteriors, durations: expected duration
    counts, transitions: expected moves, init / final: first / last segment's state). ``backend``
    (``"auto"``, ``"torch"`` or ``"numba"``, see the module docstring) runs both passes.
    """
    p, _ = _prepare(log_emissions, log_transitions, log_durations, log_init, lengths, log_final)
    return _LogPartition.apply(p.emissions, p.trans, p.durations, p.init, p.final, p, _loops(p, backend))


@sized_by_scores
def semi_markov_marginals(
    log_emissions: torch.Tensor,
    log_transitions: torch.Tensor,
    log_durations: torch.Tensor,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
    *,
    backend: str = "auto",
) -> SemiMarkovMarginals:
    """Log Z and every EM statistic from one forward-backward pass (no grad); see :class:`SemiMarkovMarginals`.

    ``backend``: ``"auto"`` (numba on CPU when installed), ``"torch"`` or ``"numba"`` loops.
    """
    p, d = _prepare(log_emissions, log_transitions, log_durations, log_init, lengths, log_final)
    loops = _loops(p, backend)
    return _marginals(p, loops, _forward(p, loops), d)


@sized_by_scores
def semi_markov_posteriors(
    log_emissions: torch.Tensor,
    log_transitions: torch.Tensor,
    log_durations: torch.Tensor,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
    *,
    backend: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """State posteriors ``(B, T, K)`` (0 at padding) and expected duration counts ``(B, K, D)``
    (``backend`` as in :func:`semi_markov_marginals`)."""
    m = semi_markov_marginals(log_emissions, log_transitions, log_durations, log_init, lengths, log_final,
                              backend=backend)
    return m.posteriors, m.durations


@sized_by_scores
def semi_markov_viterbi(
    log_emissions: torch.Tensor,
    log_transitions: torch.Tensor,
    log_durations: torch.Tensor,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
    *,
    backend: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor, Segments]:
    """Best segmentation per sequence.

    Returns:
        paths: ``(B, T)`` int64 state per frame, ``-1`` at padding and for infeasible sequences.
        scores: ``(B,)`` log-score of the best segmentation (``-inf`` when none exists).
        segments: per sequence, a list of ``(state, start, end)`` with ``end`` exclusive.

    ``backend``: ``"auto"`` (numba on CPU when installed), ``"torch"`` or ``"numba"`` loops (ties
    between equally good segmentations break the same way in both).
    """
    p, _ = _prepare(log_emissions, log_transitions, log_durations, log_init, lengths, log_final)
    loops = _loops(p, backend)
    with torch.no_grad():
        cum, bad = loops.cumulative(p)
        paths, scores, segments = loops.viterbi(p, cum, bad)
    return paths, scores.to(p.emissions.dtype), segments
