"""Compiled CPU time loops (numba), parallel over the batch.

Same mathematics and the same inputs as :mod:`torch_loops` (dense steps as shifted
vector-matrix products; banded and sparse steps as exact logsumexp over a list of sources per
state: the ``P`` listed predecessors, or successors going backwards, and for banded storage the
``W`` window positions ``j - w`` / ``i + w`` as an index table), but
without per-op overhead, which dominates eager PyTorch at small ``K``. Padded frames of
``alpha`` / ``beta`` are set to ``-inf`` / 0; callers mask them anyway. Which compiled loop
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

# how _viterbi reads its table: [dest, source] (dense), [dest, w] from j - w (banded: computed, 2x faster than
# reading the window table), [dest, x] from index[dest, x] (sparse)
MODE_DENSE, MODE_BANDED, MODE_GATHER = 0, 1, 2


def _chain_work(e, table, *_):
    """``(batch, inner-loop operations)`` of a chain loop over ``e`` ``(B, T, K)`` with ``X`` moves per state."""
    return e.shape[0], e.size * table.shape[-1]


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
        bb = np.int64(b) if matrix.shape[0] > 1 else np.int64(0)
        probs = np.empty(k, dtype=e.dtype)
        acc = np.empty(k, dtype=e.dtype)
        for j in range(k):
            alpha[b, 0, j] = init[b, j] + e[b, 0, j]
        log_norm[b, 0] = _normalise(alpha[b, 0])
        for t in range(1, lengths[b]):
            s = np.int64(t - 1) if matrix.shape[1] > 1 else np.int64(0)
            _log_vecmat(alpha[b, t - 1], matrix[bb, s], log_matrix[bb, s], shift[bb, s], doubtful, alpha[b, t], probs, acc)
            for j in range(k):
                alpha[b, t, j] += e[b, t, j]
            log_norm[b, t] = _normalise(alpha[b, t])
        _pad_forward(alpha[b], log_norm[b], lengths[b])


@batch_loop(_chain_work)
def _backward_dense(e, matrix, log_matrix, shift, doubtful, final, lengths, log_norm, beta):
    bsz, t_max, k = e.shape
    for b in numba.prange(bsz):
        bb = np.int64(b) if matrix.shape[0] > 1 else np.int64(0)
        probs = np.empty(k, dtype=e.dtype)
        acc = np.empty(k, dtype=e.dtype)
        c = np.empty(k, dtype=e.dtype)
        last = lengths[b] - 1
        _start_backward(beta[b], final[b], last)
        for t in range(last - 1, -1, -1):
            s = np.int64(t) if matrix.shape[1] > 1 else np.int64(0)
            for j in range(k):
                c[j] = e[b, t + 1, j] + beta[b, t + 1, j]
            _log_vecmat(c, matrix[bb, s], log_matrix[bb, s], shift[bb, s], doubtful, beta[b, t], probs, acc)
            for i in range(k):
                beta[b, t, i] -= log_norm[b, t + 1]


@numba.njit(**_JIT)
def _logsumexp_gather(scores_row, table_row, index_row, v):
    """``logsumexp_x(table_row[x] + v[index_row[x]])`` over used slots (``index_row[x] >= 0``)."""
    width = table_row.shape[0]
    m = v.dtype.type(-np.inf)
    for x in range(width):
        src = index_row[x]
        if src >= 0:
            s = table_row[x] + v[src]
            scores_row[x] = s
            if s > m:
                m = s
        else:
            scores_row[x] = -np.inf
    if m == -np.inf:
        return m
    total = v.dtype.type(0)
    lo = np.log(np.finfo(v.dtype).tiny) + 1  # see factors.exp_flushed_
    for x in range(width):
        d = scores_row[x] - m
        if d > lo:
            total += np.exp(d)
    return np.log(total) + m


@batch_loop(_chain_work)
def _forward_gather(e, table, index, init, lengths, alpha, log_norm):
    """``table`` ``(B', S, K, P)`` and ``index`` ``(B'', K, P)``: predecessor lists by destination."""
    bsz, t_max, k = e.shape
    for b in numba.prange(bsz):
        bb = np.int64(b) if table.shape[0] > 1 else np.int64(0)
        bi = np.int64(b) if index.shape[0] > 1 else np.int64(0)
        scores = np.empty(table.shape[3], dtype=e.dtype)
        for j in range(k):
            alpha[b, 0, j] = init[b, j] + e[b, 0, j]
        log_norm[b, 0] = _normalise(alpha[b, 0])
        for t in range(1, lengths[b]):
            s = np.int64(t - 1) if table.shape[1] > 1 else np.int64(0)
            for j in range(k):
                alpha[b, t, j] = _logsumexp_gather(scores, table[bb, s, j], index[bi, j], alpha[b, t - 1]) + e[b, t, j]
            log_norm[b, t] = _normalise(alpha[b, t])
        _pad_forward(alpha[b], log_norm[b], lengths[b])


@batch_loop(_chain_work)
def _backward_gather(e, table, index, final, lengths, log_norm, beta):
    """``table`` ``(B', S, K, Q)`` and ``index`` ``(B'', K, Q)``: successor lists by source."""
    bsz, t_max, k = e.shape
    for b in numba.prange(bsz):
        bb = np.int64(b) if table.shape[0] > 1 else np.int64(0)
        bi = np.int64(b) if index.shape[0] > 1 else np.int64(0)
        scores = np.empty(table.shape[3], dtype=e.dtype)
        c = np.empty(k, dtype=e.dtype)
        last = lengths[b] - 1
        _start_backward(beta[b], final[b], last)
        for t in range(last - 1, -1, -1):
            s = np.int64(t) if table.shape[1] > 1 else np.int64(0)
            for j in range(k):
                c[j] = e[b, t + 1, j] + beta[b, t + 1, j]
            for i in range(k):
                beta[b, t, i] = _logsumexp_gather(scores, table[bb, s, i], index[bi, i], c) - log_norm[b, t + 1]


@batch_loop(_chain_work)
def _backward_scatter(e, table, index, final, lengths, log_norm, beta):
    """Sparse backward over the predecessor lists (``table`` ``(B', S, K, P)``, ``index`` ``(B'', K, P)``):
    each edge ``index[j, p] -> j`` sends ``c[j] + table[j, p]`` to its source; a max pass, then a sum pass."""
    bsz, t_max, k = e.shape
    lo = np.log(np.finfo(e.dtype).tiny) + 1  # see factors.exp_flushed_
    for b in numba.prange(bsz):
        bb = np.int64(b) if table.shape[0] > 1 else np.int64(0)
        bi = np.int64(b) if index.shape[0] > 1 else np.int64(0)
        c = np.empty(k, dtype=e.dtype)
        top = np.empty(k, dtype=e.dtype)
        acc = np.empty(k, dtype=e.dtype)
        last = lengths[b] - 1
        _start_backward(beta[b], final[b], last)
        for t in range(last - 1, -1, -1):
            s = np.int64(t) if table.shape[1] > 1 else np.int64(0)
            for j in range(k):
                c[j] = e[b, t + 1, j] + beta[b, t + 1, j]
                top[j] = -np.inf
                acc[j] = 0.0
            for j in range(k):
                for x in range(table.shape[3]):
                    src = index[bi, j, x]
                    if src >= 0:
                        v = c[j] + table[bb, s, j, x]
                        if v > top[src]:
                            top[src] = v
            for j in range(k):
                for x in range(table.shape[3]):
                    src = index[bi, j, x]
                    if src >= 0 and top[src] > -np.inf:
                        d = c[j] + table[bb, s, j, x] - top[src]
                        if d > lo:
                            acc[src] += np.exp(d)
            for i in range(k):
                beta[b, t, i] = (np.log(acc[i]) + top[i] if top[i] > -np.inf else -np.inf) - log_norm[b, t + 1]


@numba.njit(inline="always", **_JIT)
def _best_source(delta, row, j, mode, index, bi):
    """``max_x delta[src] + row[x]`` and its first maximising source.

    ``src = x`` (dense), ``j - x`` (banded) or ``index[bi, j, x]`` (sparse, ``-1`` = unused slot; the
    index is read in place, not sliced per state, which costs the dense and banded loops nothing).
    """
    best = delta.dtype.type(-np.inf)
    if mode == MODE_BANDED:
        arg = j
        for x in range(min(row.shape[0], j + 1)):
            v = delta[j - x] + row[x]
            if v > best:
                best = v
                arg = j - x
        return best, arg
    if mode == MODE_GATHER:
        arg = j
        for x in range(row.shape[0]):
            src = index[bi, j, x]
            if src >= 0:
                v = delta[src] + row[x]
                if v > best:
                    best = v
                    arg = src
        return best, arg
    for x in range(row.shape[0]):  # branch-free max first: vectorises
        best = max(best, delta[x] + row[x])
    for x in range(row.shape[0]):
        if delta[x] + row[x] == best:
            return best, x
    return best, j


@batch_loop(_chain_work)
def _viterbi(e, table, mode, index, init, final, lengths, pointers, paths, scores):
    """``table`` ``(B', S, K, X)``: dense ``[dest, source]``, banded ``[dest, w]``, or sparse ``[dest, x]``
    with sources ``index`` ``(B'', K, X)`` (a dummy for dense and banded), see :data:`MODE_DENSE`."""
    bsz, t_max, k = e.shape
    for b in numba.prange(bsz):
        bb = np.int64(b) if table.shape[0] > 1 else np.int64(0)
        bi = np.int64(b) if index.shape[0] > 1 else np.int64(0)
        delta = np.empty(k, dtype=e.dtype)
        nxt = np.empty(k, dtype=e.dtype)
        for j in range(k):
            delta[j] = init[b, j] + e[b, 0, j]
        for t in range(1, lengths[b]):
            s = np.int64(t - 1) if table.shape[1] > 1 else np.int64(0)
            for j in range(k):
                row = table[bb, s, j]
                best, arg = _best_source(delta, row, j, mode, index, bi)
                nxt[j] = best + e[b, t, j]
                pointers[b, t, j] = arg
            for j in range(k):
                delta[j] = nxt[j]
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
