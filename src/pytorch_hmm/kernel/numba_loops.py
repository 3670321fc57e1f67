"""Compiled CPU time loops (numba), parallel over the batch.

Same mathematics and the same inputs as :mod:`torch_loops`, without the per-op overhead that
dominates eager PyTorch at small ``K``: dense forward/backward as shifted vector-matrix
products, Viterbi for every storage, posteriors and banded expected transitions in one pass
each. The banded and sparse forward/backward loops live in :mod:`.gather_numba`. Padded frames
of ``alpha`` / ``beta`` are set to ``-inf`` / 0; callers mask them anyway. Which compiled loop
runs is the storage's choice (:mod:`.storages`: ``numba_forward``, ``numba_backward``,
``numba_viterbi``).
"""

from __future__ import annotations

from typing import Tuple

import numba
import numpy as np
import torch

from .inputs import ChainProblem
from .parallel import batch_loop
from .torch_loops import backpointer_dtype

_JIT = dict(nogil=True, cache=True)

# how a loop reads its table: [source, dest] (dense), [dest, w] from j - w (banded: computed, 2x faster than
# reading the window table), [dest, x] from index[dest, x] (lists), [source, w] to i + w (banded, backwards)
MODE_DENSE, MODE_BANDED, MODE_GATHER, MODE_AHEAD = 0, 1, 2, 3


def _chain_work(e, table, *_):
    """``(batch, inner-loop operations)`` of a chain loop over ``e`` ``(B, T, K)`` with ``X`` moves per state."""
    return e.shape[0], e.size * table.shape[-1]


@numba.njit(inline="always", **_JIT)
def _item(x, b):
    """The row of ``x`` that batch item ``b`` reads: ``b``, or 0 where ``x`` has one row shared by the batch."""
    return np.int64(b) if x.shape[0] > 1 else np.int64(0)


@numba.njit(inline="always", **_JIT)
def _step(x, t):
    """The step of ``x`` ``(B', S, ...)`` that time step ``t`` reads: ``t``, or 0 where ``x`` is static (``S = 1``)."""
    return np.int64(t) if x.shape[1] > 1 else np.int64(0)


@numba.njit(**_JIT)
def _row_max(row):
    """Maximum of ``row`` in its own dtype; 0 where every entry is ``-inf``."""
    m = row.dtype.type(-np.inf)
    for j in range(row.shape[0]):
        if row[j] > m:
            m = row[j]
    return m if m > -np.inf else row.dtype.type(0)


@numba.njit(**_JIT)
def _normalise(row):
    """Shift ``row`` in place so its maximum is 0; returns the shift."""
    m = _row_max(row)
    for j in range(row.shape[0]):
        row[j] -= m
    return m


@numba.njit(**_JIT)
def _exp_shifted(v, out):
    """``out = exp(v - max v)``; returns the shift."""
    m = _row_max(v)
    lo = np.log(np.finfo(v.dtype).tiny) + 1  # see factors.exp_flushed_
    for i in range(v.shape[0]):
        d = v[i] - m
        out[i] = np.exp(d) if d > lo else 0
    return m


@numba.njit(**_JIT)
def _pad_forward(alpha, log_norm, length):
    """Frames at or after ``length`` of one sequence: ``alpha = -inf``, ``log_norm = 0``."""
    for t in range(length, alpha.shape[0]):
        log_norm[t] = 0.0
        for j in range(alpha.shape[1]):
            alpha[t, j] = -np.inf


@numba.njit(**_JIT)
def _start_backward(beta, final, last):
    """``beta`` of one sequence: ``final`` at its last frame, 0 after it."""
    for t in range(last + 1, beta.shape[0]):
        for j in range(beta.shape[1]):
            beta[t, j] = 0.0
    for j in range(beta.shape[1]):
        beta[last, j] = final[j]


@numba.njit(**_JIT)
def _log_vecmat(v, matrix, log_matrix, shift, doubtful, out, probs, acc):
    """``out = log(exp(v) @ exp(A))`` given ``matrix = exp(A - shift)`` and ``log_matrix = A``
    (rows: sources). Columns whose sum falls below ``doubtful`` (``semiring.underflow_threshold``:
    mass lost to underflow, or none) are recomputed as an exact ``logsumexp`` over ``A``'s column."""
    m = _exp_shifted(v, probs)
    acc[:] = 0
    for i in range(v.shape[0]):
        p = probs[i]
        if p != 0:
            for j in range(acc.shape[0]):
                acc[j] += p * matrix[i, j]
    for j in range(acc.shape[0]):
        if acc[j] >= doubtful:
            out[j] = np.log(acc[j]) + m + shift[j]
        else:
            out[j] = _logsumexp_column(v, log_matrix, j)


@numba.njit(**_JIT)
def _logsumexp_column(v, log_matrix, j):
    """``logsumexp_i(v[i] + log_matrix[i, j])``, exactly (``-inf`` when every term is)."""
    top = v.dtype.type(-np.inf)
    for i in range(v.shape[0]):
        s = v[i] + log_matrix[i, j]
        if s > top:
            top = s
    if top == -np.inf:
        return top
    total = v.dtype.type(0)
    for i in range(v.shape[0]):
        s = v[i] + log_matrix[i, j]
        if s > -np.inf:
            total += np.exp(s - top)
    return np.log(total) + top


@batch_loop(_chain_work)
def _forward_dense(e, matrix, log_matrix, shift, doubtful, init, lengths, alpha, log_norm):
    bsz, t_max, k = e.shape
    for b in numba.prange(bsz):
        bb = _item(matrix, b)
        probs = np.empty(k, dtype=e.dtype)
        acc = np.empty(k, dtype=e.dtype)
        for j in range(k):
            alpha[b, 0, j] = init[b, j] + e[b, 0, j]
        log_norm[b, 0] = _normalise(alpha[b, 0])
        for t in range(1, lengths[b]):
            s = _step(matrix, t - 1)
            _log_vecmat(alpha[b, t - 1], matrix[bb, s], log_matrix[bb, s], shift[bb, s], doubtful, alpha[b, t], probs, acc)
            for j in range(k):
                alpha[b, t, j] += e[b, t, j]
            log_norm[b, t] = _normalise(alpha[b, t])
        _pad_forward(alpha[b], log_norm[b], lengths[b])


@batch_loop(_chain_work)
def _backward_dense(e, matrix, log_matrix, shift, doubtful, final, lengths, log_norm, beta):
    bsz, t_max, k = e.shape
    for b in numba.prange(bsz):
        bb = _item(matrix, b)
        probs = np.empty(k, dtype=e.dtype)
        acc = np.empty(k, dtype=e.dtype)
        c = np.empty(k, dtype=e.dtype)
        last = lengths[b] - 1
        _start_backward(beta[b], final[b], last)
        for t in range(last - 1, -1, -1):
            s = _step(matrix, t)
            for j in range(k):
                c[j] = e[b, t + 1, j] + beta[b, t + 1, j]
            _log_vecmat(c, matrix[bb, s], log_matrix[bb, s], shift[bb, s], doubtful, beta[b, t], probs, acc)
            for i in range(k):
                beta[b, t, i] -= log_norm[b, t + 1]


@numba.njit(inline="always", **_JIT)
def _best_source(delta, row, j, index, bi):
    """``max_x delta[src] + row[x]`` over the sources ``src = index[bi, j, x]`` (``-1`` = unused slot; the
    index is read in place, not sliced per state) and its first maximising source (``j`` if none)."""
    best = delta.dtype.type(-np.inf)
    arg = j
    for x in range(row.shape[0]):
        src = index[bi, j, x]
        if src >= 0:
            v = delta[src] + row[x]
            if v > best:
                best = v
                arg = src
    return best, arg


@numba.njit(inline="always", **_JIT)
def _max_window(padded, table, best, arg):
    """Banded max-product: ``best[j] = max_x delta[j - x] + table[x, j]`` and its maximising source in
    ``arg`` (the first in ``x`` order; ``j`` when every term is ``-inf``), ``delta = padded[X - 1:]``
    (``-inf`` before it), ``table`` slot-major ``(X, K)``: ``X`` branch-free passes that vectorise."""
    width, k = table.shape
    pad = width - 1
    src, row = padded[pad:], table[0]
    for j in range(k):
        best[j] = src[j] + row[j]
        arg[j] = j
    for x in range(1, width):
        src, row = padded[pad - x:pad - x + k], table[x]  # slices: no negative-index check per read, so it vectorises
        for j in range(k):
            v = src[j] + row[j]
            take = v > best[j]
            best[j] = v if take else best[j]
            arg[j] = j - x if take else arg[j]


@numba.njit(inline="always", **_JIT)
def _max_product(delta, matrix, best, arg):
    """``best[j] = max_i delta[i] + matrix[i, j]`` and its first maximising ``i`` in ``arg`` (0 when
    every term is ``-inf``). Source-major, so the inner loop runs along a row of ``matrix``
    with no branch: it vectorises, where a maximum per destination over a column does not."""
    k = best.shape[0]
    for j in range(k):
        best[j] = delta[0] + matrix[0, j]
        arg[j] = 0
    for i in range(1, delta.shape[0]):
        d = delta[i]
        if d == -np.inf:
            continue
        for j in range(k):
            v = d + matrix[i, j]
            take = v > best[j]
            best[j] = v if take else best[j]
            arg[j] = i if take else arg[j]


@batch_loop(_chain_work)
def _viterbi(e, table, mode, index, init, final, lengths, pointers, paths, scores):
    """``table`` ``(B', S, K, X)``: dense ``[source, dest]``, banded slot-major ``(B', S, W, K)`` ``[w, dest]``,
    or sparse ``[dest, x]`` with sources ``index`` ``(B'', K, X)`` (a dummy for dense and banded),
    see :data:`MODE_DENSE`."""
    bsz, t_max, k = e.shape
    pad = table.shape[2] - 1 if mode == MODE_BANDED else 0
    for b in numba.prange(bsz):
        bb, bi = _item(table, b), _item(index, b)
        padded = np.full(k + pad, -np.inf, dtype=e.dtype)
        delta = padded[pad:]
        nxt = np.empty(k, dtype=e.dtype)
        arg = np.empty(k, dtype=np.int32)
        for j in range(k):
            delta[j] = init[b, j] + e[b, 0, j]
        for t in range(1, lengths[b]):
            s = _step(table, t - 1)
            if mode == MODE_DENSE:
                _max_product(delta, table[bb, s], nxt, arg)
            elif mode == MODE_BANDED:
                _max_window(padded, table[bb, s], nxt, arg)
            else:
                for j in range(k):
                    nxt[j], arg[j] = _best_source(delta, table[bb, s, j], j, index, bi)
            for j in range(k):
                delta[j] = nxt[j] + e[b, t, j]
                pointers[b, t, j] = arg[j]
        best = -np.inf
        state = 0
        for j in range(k):
            v = delta[j] + final[b, j]
            if v > best:
                best = v
                state = j
        scores[b] = best
        for t in range(t_max):
            paths[b, t] = -1
        if best > -np.inf:
            last = lengths[b] - 1
            paths[b, last] = state
            for t in range(last, 0, -1):
                state = pointers[b, t, state]
                paths[b, t - 1] = state


@batch_loop(lambda alpha, *_: (alpha.shape[0], alpha.size))
def _posteriors(alpha, beta, lengths, gamma, totals):
    """:func:`state_marginals` into ``gamma`` ``(B, T, K)`` and ``totals`` ``(B, T)`` (one ``exp`` per cell).

    Branch-free per cell (scores below the flush threshold are clamped to it, so ``exp`` never
    makes a denormal, then zeroed by a select): on peaked posteriors a branch around ``exp``
    made this loop 3x slower than PyTorch's vectorised ``exp`` at K = 8."""
    bsz, t_max, k = alpha.shape
    lo = alpha.dtype.type(np.log(np.finfo(alpha.dtype).tiny) + 1)  # see factors.exp_flushed_
    zero = alpha.dtype.type(0)
    for b in numba.prange(bsz):
        for t in range(t_max):
            a_row, b_row, row = alpha[b, t], beta[b, t], gamma[b, t]
            top = alpha.dtype.type(-np.inf)
            if t < lengths[b]:
                for j in range(k):
                    row[j] = a_row[j] + b_row[j]
                    top = max(top, row[j])
            if top == -np.inf:  # padded frame, or no state reachable
                row[:] = zero
                totals[b, t] = -np.inf
                continue
            mass = 0.0
            for j in range(k):
                d = max(row[j] - top, lo)
                g = np.exp(d) if d > lo else zero
                row[j] = g
                mass += g
            for j in range(k):
                row[j] /= mass
            totals[b, t] = np.log(mass) + top


@batch_loop(lambda alpha, *_: (alpha.shape[0], alpha.size))
def _banded_edges(alpha, beta, e, log_norm, totals, trans, xi):
    """Banded expected transitions into ``xi`` ``(B, S', K, W)`` (zeros; ``S' = 1``: summed over time):
    ``xi[t, i, w] = exp(alpha[t, i] + trans[t, i, w] + e[t+1, i+w] + beta[t+1, i+w] - log_norm[t+1] - totals[t+1])``
    over the steps whose ``totals[t + 1]`` is finite (used steps of feasible sequences)."""
    bsz, t_max, k = alpha.shape
    width = trans.shape[-1]
    lo = alpha.dtype.type(np.log(np.finfo(alpha.dtype).tiny) + 1)  # see factors.exp_flushed_
    zero = alpha.dtype.type(0)
    for b in numba.prange(bsz):
        bb = _item(trans, b)
        for t in range(t_max - 1):
            lz = totals[b, t + 1] + log_norm[b, t + 1]
            if not np.isfinite(lz):
                continue
            s = _step(trans, t)
            out = xi[b, _step(xi, t)]
            a_row, table, e_next, b_next = alpha[b, t], trans[bb, s], e[b, t + 1], beta[b, t + 1]
            for i in range(k):
                a = a_row[i]
                if a == -np.inf:
                    continue
                for w in range(min(width, k - i)):
                    d = max(a + table[i, w] + e_next[i + w] + b_next[i + w] - lz, lo)
                    out[i, w] += np.exp(d) if d > lo else zero  # branch-free, as in _posteriors


def banded_edges(p: ChainProblem, alpha, beta, log_norm, totals) -> torch.Tensor:
    """Expected transitions ``(B, S', K, W)`` of a banded chain (:func:`_banded_edges`)."""
    steps = p.trans.shape[1] if p.time_varying else 1
    xi = alpha.new_zeros((alpha.shape[0], steps) + tuple(p.trans.shape[2:]))
    _banded_edges(_np(alpha), _np(beta), _np(p.emissions), _np(log_norm), _np(totals), _np(p.trans), xi.numpy())
    return xi


def state_marginals(p: ChainProblem, alpha: torch.Tensor, beta: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Posteriors ``(B, T, K)`` and frame totals ``(B, T)``, as :func:`torch_loops.state_marginals`."""
    gamma = torch.empty_like(alpha)
    totals = alpha.new_empty(alpha.shape[:2])
    _posteriors(_np(alpha), _np(beta), _np(p.lengths), gamma.numpy(), totals.numpy())
    return gamma, totals


def _np(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().numpy())


def forward(p: ChainProblem) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scaled forward scores ``(alpha_hat, log_norm)`` as in :func:`torch_loops.forward` (``-inf`` past each length)."""
    alpha = torch.empty_like(p.emissions)
    log_norm = p.emissions.new_empty(p.emissions.shape[:2])
    p.ops.numba_forward(p, alpha.numpy(), log_norm.numpy())
    return alpha, log_norm


def backward(p: ChainProblem, log_norm: torch.Tensor) -> torch.Tensor:
    """Scaled backward scores ``beta_hat`` as in :func:`torch_loops.backward` (0 past each length)."""
    beta = torch.empty_like(p.emissions)
    p.ops.numba_backward(p, log_norm, beta.numpy())
    return beta


def run_viterbi(p: ChainProblem, table: torch.Tensor, mode: int, index, pointers, paths, scores) -> None:
    """Run :func:`_viterbi` on ``table`` read as ``mode`` (``index``: sparse sources, else ``None``)."""
    idx = np.zeros((1, 1, 1), dtype=np.int64) if index is None else _np(index)
    _viterbi(
        _np(p.emissions), _np(table), mode, idx, _np(p.init), _np(p.final), _np(p.lengths),
        pointers.numpy(), paths.numpy(), scores.numpy(),
    )


def viterbi(p: ChainProblem) -> Tuple[torch.Tensor, torch.Tensor]:
    """Best paths ``(B, T)`` int64 (-1 past each length or when infeasible) and scores ``(B,)``."""
    bsz, t_max, k = p.shape
    pointers = torch.empty((bsz, t_max, k), dtype=backpointer_dtype(k))
    paths = torch.empty((bsz, t_max), dtype=torch.long)
    scores = torch.empty((bsz,), dtype=p.emissions.dtype)
    p.ops.numba_viterbi(p, pointers, paths, scores)
    return paths, scores
