"""Forward-backward in chunks of the time axis (checkpointing), for very long sequences.

The plain forward-backward keeps ``alpha``, ``beta`` and the posteriors, each ``(B, T, K)``.
Here the frames are cut into chunks of ``C`` frames and the existing loops (:mod:`.torch_loops`,
:mod:`.numba_loops`) run on one chunk at a time, a time slice of the :class:`~.inputs.ChainProblem`
(the step axis of time-varying transitions sliced with it):

* **forward pass**: chunk by chunk, keeping only the scaled forward scores ``alpha_hat`` at the
  last frame of each chunk (the *checkpoints*, ``(B, ceil(T / C) - 1, K)``), ``log Z`` and the
  last chunk's scores. A chunk starting at frame ``s > 0`` is a problem over frames
  ``s - 1 .. s + C - 1`` whose first frame has emission 0 and whose ``log_init`` is the
  checkpoint ``alpha_hat[s - 1]``: the loop's first step is then exactly the step from frame
  ``s - 1`` to ``s`` of the whole sequence, and its normaliser at that frame is 0
  (``alpha_hat`` has maximum 0).
* **backward pass**: the chunks in reverse; each recomputes its forward scores from its
  checkpoint and runs the backward loop over frames ``s .. s + C`` (one frame of the next
  chunk) with ``log_final`` the next chunk's ``beta_hat[s + C]``, for the sequences that go on
  past the chunk, and the real ``log_final`` for those that end inside it. The posteriors and
  expected transitions of that chunk (its steps into the next chunk included) come out of the
  same frame pass as the plain kernel's (``state_marginals``, ``edge_marginals``), and the
  chunk is dropped before the next one is computed.

Memory: ``O(B K (T / C + C))`` besides the inputs and whatever the caller keeps (the gradient of
:func:`~.chain.log_partition` is itself ``(B, T, K)``); ``C`` near ``sqrt(T)`` minimises it. Cost:
the forward pass runs twice (once in each pass; the last chunk's is kept, so ``C >= T`` costs
nothing extra), plus a fixed cost per chunk. Results equal the plain kernel's up to rounding.

:func:`posterior_chunks` is the streaming form: ``log Z`` at once, then the posteriors (and
expected transitions) chunk by chunk, so EM can add statistics without a ``(B, T, K)`` tensor.
The ``checkpoint=`` option of :func:`~.chain.log_partition`, :func:`~.chain.forward_backward`,
:func:`~.chain.posteriors`, :func:`~.chain.marginals` and :func:`~.chain.expected_transitions`
runs here. The loop over chunks is a Python loop over ``ceil(T / C)`` chunks, not over frames;
the only host synchronisations are the loops' and edge counts' own (a few per chunk, none per
frame) and one in the backward of ``log_partition``. Torch ops between the compiled loops run
under :func:`~pytorch_hmm.threads.torch_threads_for` of one chunk's work.
"""

from __future__ import annotations

import operator
from typing import Iterator, List, NamedTuple, Optional, Tuple

import torch

from ..errors import HMMTypeError, HMMValueError
from ..threads import torch_threads_for
from ..validation import check_first_order
from .chain import Transitions, _edge_marginals, _loops
from .inputs import ChainProblem, LengthsLike, prepare

__all__ = ["posterior_chunks", "ChunkedPosteriors", "PosteriorChunk", "check_checkpoint"]


def check_checkpoint(checkpoint) -> int:
    """``checkpoint`` (the chunk length in frames) as a positive int, else a clear error naming it."""
    if isinstance(checkpoint, bool):
        raise HMMTypeError("checkpoint must be None or a positive int (the chunk length in frames); got bool")
    try:
        size = operator.index(checkpoint)
    except TypeError:
        raise HMMTypeError(f"checkpoint must be None or a positive int (the chunk length in frames); "
                           f"got {type(checkpoint).__name__}") from None
    if size < 1:
        raise HMMValueError(f"checkpoint must be None or a positive int (the chunk length in frames); got {size}")
    return size


# ---------------------------------------------------------------------------------------
# windows of the problem
# ---------------------------------------------------------------------------------------


def _steps(p: ChainProblem, start: int, stop: int) -> torch.Tensor:
    """The transitions of frames ``start .. stop - 1``: time-varying tables sliced to their steps."""
    return p.trans[:, start : stop - 1] if p.time_varying else p.trans


def _chunk_forward(p: ChainProblem, loops, start: int, stop: int, carry: Optional[torch.Tensor]):
    """Scaled forward scores ``(alpha_hat (B, C, K), log_norm (B, C))`` of frames ``start .. stop - 1``,
    from ``carry`` = ``alpha_hat[start - 1]`` (``None`` for the first chunk). Garbage past each length."""
    lengths = p.lengths
    if carry is None:
        q = p.replace(emissions=p.emissions[:, :stop], trans=_steps(p, 0, stop), lengths=lengths.clamp(max=stop))
        return loops.forward(q)
    e = p.emissions
    first = torch.zeros((e.shape[0], 1, e.shape[2]), dtype=e.dtype, device=e.device)
    q = p.replace(emissions=torch.cat([first, e[:, start:stop]], 1), trans=_steps(p, start - 1, stop), init=carry,
                  lengths=(lengths - start + 1).clamp(1, stop - start + 1))
    alpha, log_norm = loops.forward(q)
    return alpha[:, 1:], log_norm[:, 1:]


def _at(x: torch.Tensor, frame: torch.Tensor, start: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(x[b, frame[b] - start] (B, K), inside (B,))``: rows of ``x`` ``(B, C, K)`` (frames
    ``start ..``) at each item's ``frame``, and whether it lies in the chunk (else the row is garbage)."""
    rel = frame - start
    inside = (rel >= 0) & (rel < x.shape[1])
    index = rel.clamp(0, x.shape[1] - 1)[:, None, None].expand(-1, 1, x.shape[2])
    return x.gather(1, index).squeeze(1), inside


class _Forward(NamedTuple):
    log_z: torch.Tensor  # (B,) in the emissions' dtype
    checkpoints: torch.Tensor  # (B, n - 1, K): alpha_hat at the last frame of every chunk but the last
    last: Tuple[torch.Tensor, torch.Tensor]  # the last chunk's (alpha_hat, log_norm)


def _bounds(t_max: int, size: int) -> List[int]:
    return list(range(0, t_max, size)) + [t_max]


def _chunk_work(p: ChainProblem, size: int) -> int:
    """The operations of one chunk (``B C K^2``, a dense chain's), for :func:`~pytorch_hmm.threads.torch_threads_for`:
    its torch ops run between compiled loops, so small chunks run them on one thread."""
    bsz, t_max, k = p.shape
    return bsz * min(size, t_max) * k * k


def _forward_pass(p: ChainProblem, loops, bounds: List[int]) -> _Forward:
    """The forward pass over the chunks: ``log Z``, the checkpoints and the last chunk's scores.

    ``log Z = logsumexp(alpha_hat_{L-1} + final) + sum_{t < L} log_norm_t`` (the sum in float64),
    as :func:`~.chain._log_z`.
    """
    e, lengths = p.emissions, p.lengths
    bsz, _, k = e.shape
    n = len(bounds) - 1
    checkpoints = e.new_empty((bsz, n - 1, k))
    norm_sum = torch.zeros(bsz, dtype=torch.float64, device=e.device)
    zero = torch.zeros((), dtype=torch.float64, device=e.device)
    at_last = carry = None
    for c in range(n):
        start, stop = bounds[c], bounds[c + 1]
        alpha, log_norm = _chunk_forward(p, loops, start, stop, carry)
        valid = torch.arange(start, stop, device=e.device)[None, :] < lengths[:, None]
        norm_sum += torch.where(valid, log_norm.double(), zero).sum(1)
        row, inside = _at(alpha, lengths - 1, start)
        at_last = row if at_last is None else torch.where(inside[:, None], row, at_last)
        if c < n - 1:  # sequences that end here start the next chunks from 0 (never read)
            carry = torch.where((lengths > stop)[:, None], alpha[:, -1], torch.zeros((), dtype=e.dtype, device=e.device))
            checkpoints[:, c] = carry
    rest = torch.logsumexp(at_last + p.final, -1)
    return _Forward((rest.double() + norm_sum).to(e.dtype), checkpoints, (alpha, log_norm))


def _backward_walk(p: ChainProblem, loops, bounds: List[int], fwd: _Forward, edges: bool) -> Iterator[tuple]:
    """The backward pass over the chunks, last first: yields ``(start, posteriors (B, C, K), counts)``
    per chunk, ``counts`` the expected transitions of the steps from the chunk's frames
    (``(B, S', K, X)`` as :func:`~.chain._edge_marginals`; ``None`` without ``edges``)."""
    e, lengths = p.emissions, p.lengths
    n = len(bounds) - 1
    after = None  # (alpha_hat, beta_hat, log_norm) at the first frame of the chunk after this one
    for c in range(n - 1, -1, -1):
        start, stop = bounds[c], bounds[c + 1]
        if c == n - 1:
            alpha, log_norm = fwd.last
        else:
            alpha, log_norm = _chunk_forward(p, loops, start, stop, fwd.checkpoints[:, c - 1] if c else None)
        if after is None:  # the last chunk: the sequence's end
            end, final = stop, p.final
        else:  # one frame of the next chunk: its beta_hat ends the sequences that go on past this one
            end = stop + 1
            next_alpha, next_beta, next_norm = after
            final = torch.where((lengths > stop)[:, None], next_beta, p.final)
            alpha = torch.cat([alpha, next_alpha[:, None]], 1)
            log_norm = torch.cat([log_norm, next_norm[:, None]], 1)
        rel = lengths - start
        q = p.replace(emissions=e[:, start:end], trans=_steps(p, start, end), final=final, lengths=rel.clamp(1, end - start))
        beta = loops.backward(q, log_norm)
        q = q.replace(lengths=rel.clamp(0, end - start))  # frames of sequences that ended before: padding
        gamma, totals = loops.state_marginals(q, alpha, beta)
        counts = _edge_marginals(q, alpha, beta, log_norm, totals, loops) if edges else None
        after = (alpha[:, 0].clone(), beta[:, 0].clone(), log_norm[:, 0].clone())
        del alpha, beta, log_norm, totals
        yield start, gamma[:, : stop - start], counts


# ---------------------------------------------------------------------------------------
# the streaming form
# ---------------------------------------------------------------------------------------


class PosteriorChunk(NamedTuple):
    """One chunk of :func:`posterior_chunks`: frames ``start .. start + C - 1``.

    ``posteriors`` ``(B, C, K)`` (0 at padded frames and for infeasible sequences);
    ``transitions`` the expected transition counts of the steps *from* those frames (the step
    into the next chunk included), in the storage's shape: ``(B, K, X)`` summed over them for
    static structures, ``(B, S, K, X)`` for time-varying ones (steps ``start .. start + S - 1``;
    ``S = C``, one less for the last chunk); ``None`` unless ``edges=True``.
    """

    start: int
    posteriors: torch.Tensor
    transitions: Optional[torch.Tensor]


class ChunkedPosteriors:
    """What :func:`posterior_chunks` returns: ``log_z`` ``(B,)`` (computed at once), ``checkpoint``
    (the chunk length) and, on iteration, one :class:`PosteriorChunk` per chunk, **last chunk
    first** (the backward pass walks back in time). Each iteration reruns the backward pass."""

    def __init__(self, p: ChainProblem, loops, size: int, edges: bool) -> None:
        self._p, self._loops, self._edges = p, loops, edges
        self._work = _chunk_work(p, size)
        self.checkpoint = size
        self._bounds = _bounds(p.shape[1], size)
        with torch.no_grad(), torch_threads_for(self._work):
            self._forward = _forward_pass(p, loops, self._bounds)
        self.log_z = self._forward.log_z

    def __len__(self) -> int:
        return len(self._bounds) - 1

    def __iter__(self) -> Iterator[PosteriorChunk]:
        walk = _backward_walk(self._p, self._loops, self._bounds, self._forward, self._edges)
        while True:
            with torch.no_grad(), torch_threads_for(self._work):  # not held while the caller runs
                item = next(walk, None)
            if item is None:
                return
            start, gamma, counts = item
            if counts is not None and not self._p.time_varying:
                counts = counts.squeeze(1)
            yield PosteriorChunk(start, gamma, counts)


def posterior_chunks(
    log_emissions: torch.Tensor,
    transitions: Transitions,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
    *,
    checkpoint: int,
    backend: str = "auto",
    edges: bool = False,
) -> ChunkedPosteriors:
    """Checkpointed forward-backward that never holds ``(B, T, K)`` posteriors (no grad).

    Runs the forward pass at once (``.log_z`` ``(B,)``) keeping ``alpha_hat`` every ``checkpoint``
    frames; iterating the result then yields, **last chunk first**, one :class:`PosteriorChunk`
    ``(start, posteriors (B, C, K), transitions)`` per chunk of ``checkpoint`` frames (the last
    may be shorter), each computed from its checkpoint and dropped when the caller moves on. With
    ``edges=True`` each chunk also carries its expected transition counts; summed over the
    chunks (static structures) or concatenated in ``start`` order (time-varying) they are
    :func:`~.chain.expected_transitions`. Memory ``O(B K (T / C + C))`` besides the inputs;
    the forward pass runs twice. Same arguments and results as
    :func:`~.chain.forward_backward` / :func:`~.chain.marginals` up to rounding.
    """
    size = check_checkpoint(checkpoint)
    p = prepare(log_emissions, transitions, log_init, lengths, log_final)
    return ChunkedPosteriors(p.detached(), _loops(p, backend), size, bool(edges))


# ---------------------------------------------------------------------------------------
# the checkpoint= option of the chain routines (called by chain.py on a prepared problem)
# ---------------------------------------------------------------------------------------


def _add_counts(total: torch.Tensor, start: int, counts: torch.Tensor, time_varying: bool) -> None:
    """Add one chunk's expected transitions to ``total``: time-varying ones into their own steps
    ``start ..``, static ones summed."""
    if time_varying:
        total[:, start : start + counts.shape[1]] = counts
    else:
        total += counts


class _CheckpointedLogPartition(torch.autograd.Function):
    """log Z whose backward pass walks the chunks (see the module docstring)."""

    @staticmethod
    def forward(ctx, emissions, trans, init, final, problem: ChainProblem, loops, size: int):  # type: ignore[override]
        p = problem.replace(emissions=emissions, trans=trans, init=init, final=final)
        bounds = _bounds(p.shape[1], size)
        fwd = _forward_pass(p, loops, bounds)
        ctx.save_for_backward(emissions, trans, init, final, fwd.log_z, fwd.checkpoints, *fwd.last)
        ctx.meta = (problem, loops, bounds)
        return fwd.log_z

    @staticmethod
    def backward(ctx, grad_log_z):  # type: ignore[override]
        check_first_order("kernel.log_partition", "for second derivatives use kernel.posteriors(..., differentiable=True) "
                          "without checkpoint, which runs on the PyTorch loops")
        problem, loops, bounds = ctx.meta
        with torch_threads_for(_chunk_work(problem, bounds[1])):
            return _CheckpointedLogPartition._backward(ctx, grad_log_z, problem, loops, bounds)

    @staticmethod
    def _backward(ctx, grad_log_z, problem: ChainProblem, loops, bounds: List[int]):
        emissions, trans, init, final, log_z, checkpoints, last_alpha, last_norm = ctx.saved_tensors
        p = problem.replace(emissions=emissions, trans=trans, init=init, final=final)
        fwd = _Forward(log_z, checkpoints, (last_alpha, last_norm))
        g = torch.where(torch.isfinite(log_z), grad_log_z, torch.zeros_like(grad_log_z))
        unit = bool((g == 1).all())  # (one host synchronisation) e.g. a summed loss
        need_e, need_trans, need_init, need_final = ctx.needs_input_grad[:4]
        grad_e = torch.empty_like(emissions) if need_e else None
        grad_init = grad_final = grad_trans = None
        if need_trans:
            grad_trans = torch.zeros((emissions.shape[0],) + tuple(trans.shape[1:]),
                                     dtype=trans.dtype if p.time_varying else torch.float64, device=trans.device)
        last_frame = p.lengths - 1
        at_end = None
        for start, gamma, counts in _backward_walk(p, loops, bounds, fwd, edges=need_trans):
            weighted = gamma if unit else gamma * g[:, None, None]
            if need_e:
                grad_e[:, start : start + gamma.shape[1]] = weighted
            if need_init and start == 0:
                grad_init = weighted[:, 0]
            if need_final:
                row, inside = _at(weighted, last_frame, start)
                at_end = row if at_end is None else torch.where(inside[:, None], row, at_end)
            if need_trans:
                _add_counts(grad_trans, start, counts if unit else counts * g[:, None, None, None], p.time_varying)
        if need_final:
            grad_final = at_end
        if need_trans:
            grad_trans = grad_trans.to(trans.dtype)
            if trans.shape[0] == 1 and grad_trans.shape[0] != 1:
                grad_trans = grad_trans.sum(0, keepdim=True)
        return grad_e, grad_trans, grad_init, grad_final, None, None, None


def log_partition(p: ChainProblem, loops, checkpoint) -> torch.Tensor:
    """:func:`~.chain.log_partition` of a prepared problem with ``checkpoint``-frame chunks."""
    size = check_checkpoint(checkpoint)
    return _CheckpointedLogPartition.apply(p.emissions, p.trans, p.init, p.final, p, loops, size)


def marginals(p: ChainProblem, loops, checkpoint, states: bool = True, edges: bool = True):
    """``(log Z, posteriors (B, T, K) or None, expected transitions or None)`` of a prepared
    problem with ``checkpoint``-frame chunks (no grad); the counts as :func:`~.chain.marginals`."""
    size = check_checkpoint(checkpoint)
    q = p.detached()
    chunks = ChunkedPosteriors(q, loops, size, edges)
    gamma = torch.empty_like(q.emissions) if states else None
    counts = None
    if edges:
        shape = (q.shape[0],) + ((q.shape[1] - 1,) if q.time_varying else ()) + tuple(q.trans.shape[2:])
        counts = q.emissions.new_zeros(shape, dtype=q.emissions.dtype if q.time_varying else torch.float64)
    with torch.no_grad():
        for start, post, xi in chunks:
            if states:
                gamma[:, start : start + post.shape[1]] = post
            if edges:
                _add_counts(counts, start, xi, q.time_varying)
    return chunks.log_z, gamma, None if counts is None else counts.to(q.emissions.dtype)
