"""Quantities of the posterior distribution over whole state paths: its entropy and the k best paths.

* :func:`entropy`: ``H = log Z - E_post[score(path)]`` (nats), the expected score read off the
  marginals of one forward-backward pass (no time loop of its own);
* :func:`viterbi_k`: list Viterbi, the ``k`` highest-scoring distinct state paths, keeping the
  top ``k`` ``(score, source state, source rank)`` per state and frame in one loop over ``T``.

Posterior sampling (forward filtering, backward sampling) is :func:`~.sampling.sample_posterior`.
The distribution is over *state* paths: parallel edges of a ``Sparse`` graph (a source listed
twice for one destination) are one move whose probability is their sum, as in :func:`~.chain.viterbi`.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..semiring import LogSemiring
from ..threads import sized_by_scores
from ..validation import check_count
from . import torch_loops
from .chain import Transitions, _edge_marginals, _forward_backward, _log_z, _loops, _state_marginals
from .factors import merge_parallel_edges
from .inputs import ChainProblem, LengthsLike, prepare

__all__ = ["entropy", "viterbi_k"]


def _weighted(weights: torch.Tensor, scores: torch.Tensor, float64: bool = False) -> torch.Tensor:
    """``weights * scores`` with ``0 * -inf = 0`` (a move of probability 0 that is never taken),
    and no NaN in either gradient; in float64 with ``float64``."""
    scores = torch.where(torch.isfinite(scores), scores, torch.zeros((), dtype=scores.dtype, device=scores.device))
    return weights.double() * scores.double() if float64 else weights * scores


def _state_path_log_probs(p: ChainProblem, trans: torch.Tensor) -> torch.Tensor:
    """The log-prob a state path scores for each move of the storage ``(B', S, K, X)``.

    The storage's own values, except for sparse parallel edges: each of their slots gets the
    ``logsumexp`` of its group (every slot with the same destination and source), so that
    ``sum_slots counts * value`` is the expected score of the merged move.
    """
    if p.kind != "sparse":
        return trans
    index = p.index  # (B'', K, P)
    same = (index.unsqueeze(-1) == index.unsqueeze(-2)) & (index >= 0).unsqueeze(-1)  # (B'', K, P, P)
    grouped = trans.unsqueeze(-2).masked_fill(~same.unsqueeze(1), float("-inf"))  # (B, S, K, P, P)
    return LogSemiring.sum(grouped, -1)


def _expected_score(p: ChainProblem, gamma: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
    """``(B,)`` float64 ``E_post[score]`` from state posteriors ``(B, T, K)`` and edge counts ``(B, S', K, X)``."""
    bsz, _, k = p.shape
    last = (p.lengths - 1)[:, None, None].expand(-1, 1, k)
    score = _weighted(gamma, p.emissions, True).sum((1, 2))  # padded frames: gamma 0, emissions 0
    score = score + _weighted(gamma[:, 0], p.init, True).sum(-1)
    score = score + _weighted(gamma.gather(1, last).squeeze(1), p.final, True).sum(-1)
    if xi.shape[1]:  # T == 1: no moves
        edges = _weighted(xi, _state_path_log_probs(p, p.trans).expand(bsz, -1, -1, -1), True).sum((1, 2, 3))
        score = score + edges
    return score


@sized_by_scores
def entropy(
    log_emissions: torch.Tensor,
    transitions: Transitions,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """``(B,)`` Shannon entropy (nats) of p(path | x), the posterior over state paths of each sequence.

    ``H = log Z - E_post[score(path)]``, with the expected score from the marginals of one
    forward-backward pass. ``NaN`` for infeasible sequences (no path: the posterior does not exist).
    Differentiable when an input requires grad and grad mode is on: the marginals are then the
    gradient of ``log Z`` through the PyTorch loops with ``create_graph=True`` (as
    ``posteriors(..., differentiable=True)``; ``backend`` is then not used).
    """
    p = prepare(log_emissions, transitions, log_init, lengths, log_final)
    tensors = (p.emissions, p.trans, p.init, p.final)
    if torch.is_grad_enabled() and any(x.requires_grad for x in tensors):
        return _entropy_differentiable(p)
    alpha, beta, log_norm, _ = _forward_backward(p, backend)
    with torch.no_grad():
        q = p.detached()
        log_z = _log_z(q, alpha, log_norm, float64=True)  # two large numbers, a small difference: in float64
        gamma, totals = _state_marginals(q, alpha, beta, _loops(p, backend))
        xi = _edge_marginals(q, alpha, beta, log_norm, totals)
        h = (log_z - _expected_score(q, gamma, xi)).to(alpha.dtype)
    return torch.where(torch.isfinite(log_z), h, torch.full((), float("nan"), dtype=h.dtype, device=h.device))


def _entropy_differentiable(p: ChainProblem) -> torch.Tensor:
    bsz = p.shape[0]

    def per_item(x: torch.Tensor, shape) -> torch.Tensor:
        # a per-item copy inside the graph (or a fresh leaf), so d log Z / d x is per sequence
        x = x.expand(shape).clone()
        return x if x.requires_grad else x.requires_grad_(True)

    e = per_item(p.emissions, p.emissions.shape)
    trans = per_item(p.trans, (bsz,) + p.trans.shape[1:])
    init, final = per_item(p.init, p.init.shape), per_item(p.final, p.final.shape)
    q = p.replace(emissions=e, trans=trans, init=init, final=final)
    alpha, log_norm = torch_loops.forward(q)
    log_z = _log_z(q, alpha, log_norm)
    inputs = (e, trans, init, final)
    grads = torch.autograd.grad(log_z.sum(), inputs, create_graph=True, allow_unused=True)  # (T == 1: no moves)
    gamma, xi, g_init, g_final = (torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs))
    feasible = torch.isfinite(log_z).detach()
    for x in inputs:  # an infeasible sequence's NaN second-order terms stay out of everyone's gradients
        x.register_hook(lambda g, f=feasible.view((-1,) + (1,) * (x.ndim - 1)): torch.where(f, g, torch.zeros_like(g)))
    score = _weighted(gamma, e, True).sum((1, 2)) + _weighted(g_init, init, True).sum(-1) \
        + _weighted(g_final, final, True).sum(-1)
    if trans.shape[1]:
        score = score + _weighted(xi, _state_path_log_probs(q, trans), True).sum((1, 2, 3))
    h = (_log_z(q, alpha, log_norm, float64=True) - score).to(alpha.dtype)
    return torch.where(torch.isfinite(log_z), h, torch.full((), float("nan"), dtype=h.dtype, device=h.device))


@sized_by_scores
def viterbi_k(
    log_emissions: torch.Tensor,
    transitions: Transitions,
    log_init: torch.Tensor,
    k: int,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` highest-scoring distinct state paths of each sequence, best first (PyTorch loops).

    Returns:
        paths: ``(B, k, T)`` int64, ``-1`` at padded frames; scores: ``(B, k)`` non-increasing.
        Where a sequence has fewer than ``k`` paths with a finite score, the remaining scores are
        ``-inf`` and their paths all ``-1``. ``k == 1`` gives :func:`~.chain.viterbi`'s score.
    """
    k = check_count(k, "k")
    p = prepare(log_emissions, transitions, log_init, lengths, log_final)
    with torch.no_grad():
        return _viterbi_k(p.detached(), k)


def _viterbi_k(p: ChainProblem, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    e = p.emissions
    bsz, t_max, n_states = e.shape
    trans = merge_parallel_edges(p.trans, p.index) if p.kind == "sparse" else p.trans  # distinct state paths
    table, source = p.ops.incoming(trans, p.index)  # (B', S, K, X), (B'', K, X)
    width = table.shape[-1]
    source = source.expand(bsz, -1, -1).clamp(min=0)  # unused slots: -inf table entries, never followed
    flat_source = source.reshape(bsz, n_states * width, 1).expand(-1, -1, k)
    last = (p.lengths - 1)[:, None, None]

    # delta[b, j, r]: score of the r-th best partial path ending in state j (-inf: none)
    delta = torch.full((bsz, n_states, k), float("-inf"), dtype=e.dtype, device=e.device)
    delta[:, :, 0] = p.init + e[:, 0]
    at_last = delta
    # pointers[b, t, j, r] = x * k + r': the r-th path into j at t came from rank r' of source[j, x] at t - 1
    pointers = torch.zeros((bsz, t_max, n_states, k), dtype=torch.int32 if width * k < 2**31 else torch.int64,
                           device=e.device)
    for t in range(1, t_max):
        prev = delta.gather(1, flat_source).view(bsz, n_states, width, k)
        cand = (prev + table[:, t - 1 if p.time_varying else 0, :, :, None]).view(bsz, n_states, width * k)
        best, arg = cand.topk(k, dim=-1)  # width * k >= k candidates, sorted
        delta = best + e[:, t, :, None]
        pointers[:, t] = arg
        at_last = torch.where(last == t, delta, at_last)

    scores, arg = (at_last + p.final[:, :, None]).view(bsz, n_states * k).topk(k, dim=-1)  # (B, k)
    state, rank = arg // k, arg % k
    paths = torch.full((bsz, k, t_max), -1, dtype=torch.long, device=e.device)
    last = last.view(bsz, 1)
    for t in range(t_max - 1, -1, -1):
        inside = t <= last  # (B, 1)
        paths[:, :, t] = torch.where(inside, state, -1)
        if t == 0:
            break
        ptr = pointers[:, t].view(bsz, n_states * k).gather(1, state * k + rank).long()
        x, back_rank = ptr // k, ptr % k
        back_state = source.reshape(bsz, n_states * width).gather(1, state * width + x)
        state = torch.where(inside, back_state, state)
        rank = torch.where(inside, back_rank, rank)
    paths = torch.where(torch.isneginf(scores)[:, :, None], -1, paths)
    return paths, scores
