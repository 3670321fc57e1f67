"""Pure-PyTorch time loops: the reference implementation, used on CUDA and wherever numba is not.

Each routine runs one Python loop over ``T`` with a handful of batched tensor ops per step
and no host synchronisation. The steps are the storage's step tables (:mod:`.steps`, chosen by
``p.ops``) in the semiring of the recursion: ``LogSemiring`` forward and backward,
``MaxSemiring`` Viterbi. Frames at or after a sequence's length are computed but never
read: callers mask them. Viterbi's frames are functions (:func:`_viterbi_frame`,
:func:`_backtrack_frame`) that a Python loop (:func:`viterbi`) or ``torch``'s ``scan``
(:func:`viterbi_scan`, for ``torch.export``) drives.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch

from ..semiring import LogSemiring, MaxSemiring
from .factors import exp_flushed_
from .inputs import ChainProblem


def _step_index(p: ChainProblem, t: int) -> int:
    """Index into the ``S`` axis of ``p.trans`` for the step from frame ``t`` to ``t + 1``."""
    return t if p.time_varying else 0


def _normalise(a: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Shift ``(B, K)`` scores so their maximum is 0; returns ``(shifted, shift (B, 1))``."""
    n = torch.nan_to_num(a.amax(-1, keepdim=True), neginf=0.0)
    return a - n, n


def forward(p: ChainProblem) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scaled forward scores ``(alpha_hat (B, T, K), log_norm (B, T))`` (garbage past each length).

    ``log alpha_t = alpha_hat_t + sum_{s <= t} log_norm_s`` with ``max_k alpha_hat_t = 0``:
    values stay O(1) however long the sequence, so float32 keeps its precision. Dense steps
    that lost mass to underflow are redone exactly (one host synchronisation per call).
    """
    steps = p.ops.forward_steps(p.trans, p.index, LogSemiring)
    alpha, log_norm = _forward(p, steps)
    frames = torch.arange(1, p.emissions.shape[1], device=p.lengths.device)
    if steps.lost_mass(frames < p.lengths[:, None]):  # steps into frames 1 .. T-1
        alpha, log_norm = _forward(p, steps.exact())
    return alpha, log_norm


def _forward(p: ChainProblem, steps) -> Tuple[torch.Tensor, torch.Tensor]:
    e = p.emissions
    a, n = _normalise(p.init + e[:, 0])
    alphas, norms = [a], [n]
    for t in range(1, e.shape[1]):
        a, n = _normalise(steps.step(a, _step_index(p, t - 1), normalised=True) + e[:, t])
        alphas.append(a)
        norms.append(n)
    # lists + stack rather than writes into a preallocated tensor: differentiable by autograd
    # (used for differentiable posteriors), and no slower
    return torch.stack(alphas, 1), torch.cat(norms, 1)


def backward(p: ChainProblem, log_norm: torch.Tensor) -> torch.Tensor:
    """Scaled backward scores ``beta_hat`` ``(B, T, K)``, using the forward pass's ``log_norm``.

    ``log beta_t = beta_hat_t + sum_{t < s < L} log_norm_s``; ``beta_hat[b, L_b - 1] = final[b]``.
    """
    steps = p.ops.backward_steps(p.trans, p.index)
    beta = _backward(p, log_norm, steps)
    frames = torch.arange(p.emissions.shape[1] - 2, -1, -1, device=p.lengths.device)
    if steps.lost_mass(frames < (p.lengths - 1)[:, None]):  # steps into frames T-2 .. 0
        beta = _backward(p, log_norm, steps.exact())
    return beta


def _backward(p: ChainProblem, log_norm: torch.Tensor, steps) -> torch.Tensor:
    e = p.emissions
    t_max = e.shape[1]
    last = (p.lengths - 1)[:, None]
    beta = torch.empty_like(e)
    b = torch.where(last == t_max - 1, p.final, torch.zeros_like(p.final))
    beta[:, t_max - 1] = b
    ragged = bool((last != t_max - 1).any())  # one host synchronisation: equal lengths need no mask per frame
    for t in range(t_max - 2, -1, -1):
        b = steps.step(e[:, t + 1] + b, _step_index(p, t)) - log_norm[:, t + 1, None]
        if ragged:
            b = torch.where(last == t, p.final, b)
        beta[:, t] = b
    return beta


def backpointer_dtype(num_states: int) -> torch.dtype:
    """Smallest signed integer dtype that holds a state index."""
    return torch.int16 if num_states <= torch.iinfo(torch.int16).max else torch.int32


def viterbi(p: ChainProblem) -> Tuple[torch.Tensor, torch.Tensor]:
    """Best paths ``(B, T)`` int64 (-1 past each length or when infeasible) and scores ``(B,)``."""
    e = p.emissions
    bsz, t_max, k = e.shape
    last = (p.lengths - 1)[:, None]
    steps = p.ops.forward_steps(p.trans, p.index, MaxSemiring)
    pointers = torch.zeros((bsz, t_max, k), dtype=backpointer_dtype(k), device=e.device)
    delta = p.init + e[:, 0]
    carry = (delta, delta)
    for t in range(1, t_max):
        carry, pointers[:, t] = _viterbi_frame(steps, last, _step_index(p, t - 1), carry, (e[:, t], t))
    scores, state = (carry[1] + p.final).max(-1)
    paths = torch.full((bsz, t_max), -1, dtype=torch.long, device=e.device)
    last = last.squeeze(1)
    paths[:, t_max - 1] = torch.where(t_max - 1 <= last, state, -1)
    for t in range(t_max - 2, -1, -1):
        state, paths[:, t] = _backtrack_frame(last, state, (pointers[:, t + 1], t))
    return torch.where(torch.isneginf(scores)[:, None], -1, paths), scores


def viterbi_scan(p: ChainProblem) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`viterbi` driven by ``torch``'s ``scan`` instead of a Python loop: the same frames
    (:func:`_viterbi_frame`, :func:`_backtrack_frame`), so ``torch.export`` keeps ``T`` symbolic.

    Static transitions only; ``T >= 3`` (export specialises sizes 0 and 1: callers pad shorter
    inputs, see :class:`~pytorch_hmm.kernel.decoder.ViterbiDecoder`).
    """
    from torch._higher_order_ops import scan  # (a prototype in torch 2.x: imported only where used)

    e = p.emissions
    bsz, t_max, k = e.shape
    last = (p.lengths - 1)[:, None]
    steps = p.ops.forward_steps(p.trans, p.index, MaxSemiring, sync=False)
    delta = p.init + e[:, 0]
    small = backpointer_dtype(k)

    def forward_frame(carry, frame):
        carry, source = _viterbi_frame(steps, last, 0, carry, frame)
        return carry, source.to(small)

    frames = torch.arange(1, t_max, device=e.device)  # pointers (T - 1, B, K): into frames 1 .. T-1
    (_, at_last), pointers = scan(forward_frame, (delta, delta.clone()), (e[:, 1:].transpose(0, 1), frames))
    scores, state = (at_last + p.final).max(-1)
    last = last.squeeze(1)
    end = torch.where(t_max - 1 <= last, state, -1)
    _, body = scan(lambda s, frame: _backtrack_frame(last, s, frame), state,  # frames T-2 .. 0
                   (pointers, torch.arange(0, t_max - 1, device=e.device)), reverse=True)
    paths = torch.cat([body.transpose(0, 1), end[:, None]], 1)
    return torch.where(torch.isneginf(scores)[:, None], -1, paths), scores


def _viterbi_frame(steps, last: torch.Tensor, s: int, carry, frame):
    """One Viterbi frame: ``carry = (delta, at_last)`` ``(B, K)`` (scores at frame ``t - 1``; at each
    item's last frame so far), ``frame = (e_t (B, K), t)`` -> ``(carry at t, backpointers (B, K))``."""
    delta, at_last = carry
    e_t, t = frame
    best, source = steps.step_with_argmax(delta, s)
    delta = best + e_t
    return (delta, torch.where(last == t, delta, at_last)), source


def _backtrack_frame(last: torch.Tensor, state: torch.Tensor, frame):
    """One backtracking frame: ``state`` ``(B,)`` at frame ``t + 1``, ``frame = (pointers into
    t + 1 (B, K), t)`` -> ``(state at t, path entry at t: -1 past each length)``."""
    pointers, t = frame
    back = pointers.gather(1, state.clamp(min=0)[:, None]).squeeze(1).long()
    state = torch.where(t < last, back, state)
    return state, torch.where(t <= last, state, -1)


def state_marginals(p: ChainProblem, alpha: torch.Tensor, beta: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Posteriors ``(B, T, K)`` and frame totals ``(B, T)`` from the scaled passes.

    ``totals_t = logsumexp_k(alpha_hat_t + beta_hat_t)``: in exact arithmetic every valid frame
    gives the same value (``log Z`` minus the normalisers), and normalising each frame by its
    own total keeps posteriors and edge counts exactly normalised instead of inheriting the
    rounding drift of a long backward pass. Posteriors are 0 and totals ``-inf`` at padded
    frames and where no state has a finite score (infeasible sequences).
    """
    gamma = alpha + beta
    top = gamma.amax(-1, keepdim=True)
    gamma -= top  # NaN only for rows that are all -inf
    exp_flushed_(gamma)
    mass = gamma.sum(-1, keepdim=True)
    gamma /= mass  # (in place; torch.softmax is ~5x slower for small K on CPU)
    gamma.masked_fill_(~p.mask.unsqueeze(-1), 0.0)
    totals = (mass.log_() + top).squeeze(-1)
    totals = torch.where(p.mask, totals, torch.full((), float("-inf"), dtype=totals.dtype, device=totals.device))
    return gamma.nan_to_num_(nan=0.0), totals.nan_to_num_(nan=-math.inf, neginf=-math.inf)
