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

import math
from typing import Optional, Tuple

import numba
import numpy as np
import torch

from ..semiring import underflow_threshold
from .factors import exp_rows
from .inputs import ChainProblem
from .parallel import batch_loop
from .torch_loops import backpointer_dtype

_JIT = dict(nogil=True, cache=True)

# how a loop reads its table: [source, dest] (dense), [dest, w] from j - w (banded: computed, 2x faster than
# reading the window table), [dest, x] from index[dest, x] (lists), [source, w] to i + w (banded, backwards)
MODE_DENSE, MODE_BANDED, MODE_GATHER, MODE_AHEAD = 0, 1, 2, 3
LEVEL = 300.0  # nats between the levels of the gather loops' scaled numbers (:func:`_scale_exp`)


def _chain_work(e, table, *_):
    """``(batch, inner-loop operations)`` of a chain loop over ``e`` ``(B, T, K)`` with ``X`` moves per state."""
    return e.shape[0], e.size * table.shape[-1]


def _gather_work(e, table, *_):
    """:func:`_chain_work` of a loop over a slot-major ``(B', S, X, K)`` table."""
    return e.shape[0], e.size * table.shape[-2]


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


@numba.njit(inline="always", **_JIT)
def _source(j, x, mode, index, bi):
    """The source of slot ``x`` of state ``j``: ``j - x`` (banded), ``j + x`` (banded, read ahead) or
    ``index[bi, j, x]`` (lists; ``-1`` = unused slot). Banded sources past either end of the chain
    read the empty padding of :func:`_gather_sums`' scaled numbers and are skipped by :func:`_exact_gather`."""
    if mode == MODE_BANDED:
        return j - x
    if mode == MODE_AHEAD:
        return j + x
    return index[bi, j, x]


@numba.njit(**_JIT)
def _gather_sums(scaled, etable, mode, index, bi, sums):
    """Window sums of scaled numbers (see :func:`_scale_exp`): ``sums[1, j] = max_x level[pad + src]`` and
    ``sums[0, j] = sum_x mantissa[pad + src] * exp(level[pad + src] - sums[1, j]) * etable[x, j]``.

    ``etable`` is slot-major ``(X, K)``; ``scaled`` ``(2, K + 2 pad)`` holds mantissas and levels
    with ``pad = X - 1`` empty entries (0, ``-inf``) either side. Sources one level below the
    window's top count at ``exp(-LEVEL)``, lower ones not at all (below ``exp(-LEVEL)`` of it:
    :func:`run_gather`'s ``doubtful`` covers them). Banded windows run as ``X`` passes along the
    states with no branch, which vectorise; lists gather.
    """
    width, k = etable.shape
    pad = width - 1
    mant, level = scaled[0], scaled[1]
    acc, ref = sums[0], sums[1]
    ref[:] = -np.inf
    acc[:] = 0.0
    down = np.exp(-LEVEL)
    for x in range(width):
        if mode == MODE_GATHER:
            for j in range(k):
                src = index[bi, j, x]
                if src >= 0:
                    ref[j] = max(ref[j], level[pad + src])
        else:
            o = pad - x if mode == MODE_BANDED else pad + x
            lv = level[o:o + k]  # slices: no negative-index check per read, so the pass vectorises
            for j in range(k):
                ref[j] = max(ref[j], lv[j])
    for x in range(width):
        row = etable[x]
        if mode == MODE_GATHER:
            for j in range(k):
                src = index[bi, j, x]
                if src >= 0:
                    gap = ref[j] - level[pad + src]
                    acc[j] += mant[pad + src] * row[j] * (1.0 if gap == 0 else (down if gap == LEVEL else 0.0))
        else:
            o = pad - x if mode == MODE_BANDED else pad + x
            lv, mv = level[o:o + k], mant[o:o + k]
            for j in range(k):
                gap = ref[j] - lv[j]
                acc[j] += mv[j] * row[j] * (1.0 if gap == 0 else (down if gap == LEVEL else 0.0))


@numba.njit(inline="always", **_JIT)
def _exact_gather(v, table, mode, index, bi, j):
    """``logsumexp_x(table[x, j] + v[src(j, x)])`` in log space, in one pass with a running maximum
    (``X - 1`` exps; ``-inf`` when no move is possible)."""
    width, k = table.shape
    lo = np.log(np.finfo(v.dtype).tiny) + 1  # see factors.exp_flushed_
    top = -np.inf
    total = 0.0
    for x in range(width):
        src = _source(j, x, mode, index, bi)
        if src < 0 or src >= k:
            continue
        s = v[src] + table[x, j]
        if s <= top:
            d = s - top
            if d > lo:
                total += np.exp(d)
        elif s > -np.inf:  # a new maximum: rescale what was summed
            d = top - s
            total = (total * np.exp(d) if d > lo else 0.0) + 1.0
            top = s
    return np.log(total) + top if top > -np.inf else top


@numba.njit(**_JIT)
def _log_gather(v, scaled, table, etable, shift, mode, index, bi, doubtful, sums, out):
    """``out[j] += logsumexp_x(table[x, j] + v[src(j, x)])`` over the existing moves (:func:`_source`).

    ``scaled`` is ``v`` as scaled numbers (:func:`_scale_exp`) and ``etable = exp(table - shift)``
    (``shift`` ``(K,)``: each state's largest move), both float64 whatever ``v``'s dtype: each
    state costs ``X`` multiply-adds and one ``log``, no ``exp``, however far below the best it
    lies. A state whose sum falls below ``doubtful`` (terms dropped or lost to underflow may
    matter, or there are none) is recomputed exactly, as in :func:`_log_vecmat`. Returns
    ``max_j out[j]``.
    """
    exact = doubtful == np.inf
    if not exact:
        _gather_sums(scaled, etable, mode, index, bi, sums)
    top = -np.inf
    for j in range(out.shape[0]):
        if not exact and sums[0, j] >= doubtful:
            o = out[j] + (np.log(sums[0, j]) + sums[1, j] + shift[j])
        else:
            o = out[j] + _exact_gather(v, table, mode, index, bi, j)
        out[j] = o
        top = max(top, o)
    return top


@numba.njit(**_JIT)
def _scale_exp(row, m, scaled, exact):
    """``row -= m`` in place, and ``row`` as scaled numbers: ``row[i] = log(mantissa) + level`` with
    ``level`` a multiple of :data:`LEVEL` and ``mantissa = exp(row[i] - level)`` in ``[1, exp(LEVEL))``
    (``0, -inf`` for ``-inf`` and below ``-1e15``), into ``scaled[:, pad + i]`` (see :func:`_gather_sums`). Unlike
    ``exp(row)``, no entry underflows, however far below 0 it lies. With ``exact``, only the shift."""
    n = row.shape[0]
    pad = (scaled.shape[1] - n) // 2
    mant, lv = scaled[0, pad:pad + n], scaled[1, pad:pad + n]
    for i in range(n):
        d = row[i] - m
        row[i] = d
        if exact:
            continue
        if d < -1e15:  # -inf, or so far below that LEVEL * floor(d / LEVEL) is no longer within LEVEL of d:
            mant[i] = 0.0  # left out, as a -inf; a sum it would decide is recomputed exactly
            lv[i] = -np.inf
        else:
            level = LEVEL * np.floor(np.float64(d) * (1.0 / LEVEL))
            mant[i] = np.exp(np.float64(d) - level)  # exact difference (Sterbenz)
            lv[i] = level


@numba.njit(**_JIT)
def _empty_scaled(k, pad):
    """Scratch for :func:`_scale_exp`: mantissas 0 and levels ``-inf``, ``pad`` either side."""
    out = np.zeros((2, k + 2 * pad), dtype=np.float64)
    out[1, :] = -np.inf
    return out


@batch_loop(_gather_work)
def _forward_gather(e, table, etable, shift, mode, index, doubtful, init, lengths, alpha, log_norm):
    """``table`` / ``etable`` ``(B', S, X, K)`` slot-major and ``shift`` ``(B', S, K)`` by destination
    (:func:`_log_gather`); sources by ``mode``: banded ``j - x`` or predecessor lists ``index`` ``(B'', K, X)``."""
    bsz, t_max, k = e.shape
    pad = table.shape[2] - 1
    for b in numba.prange(bsz):
        bb = np.int64(b) if table.shape[0] > 1 else np.int64(0)
        bi = np.int64(b) if index.shape[0] > 1 else np.int64(0)
        scaled = _empty_scaled(k, pad)
        sums = np.empty((2, k), dtype=np.float64)
        for j in range(k):
            alpha[b, 0, j] = init[b, j] + e[b, 0, j]
        m = _row_max(alpha[b, 0])
        for t in range(1, lengths[b]):
            log_norm[b, t - 1] = m
            _scale_exp(alpha[b, t - 1], m, scaled, doubtful == np.inf)
            s = np.int64(t - 1) if table.shape[1] > 1 else np.int64(0)
            alpha[b, t] = e[b, t]
            m = _log_gather(alpha[b, t - 1], scaled, table[bb, s], etable[bb, s], shift[bb, s], mode, index, bi,
                            doubtful, sums, alpha[b, t])
            m = m if m > -np.inf else 0.0
        log_norm[b, lengths[b] - 1] = m
        for j in range(k):
            alpha[b, lengths[b] - 1, j] -= m
        _pad_forward(alpha[b], log_norm[b], lengths[b])


@batch_loop(_gather_work)
def _backward_gather(e, table, etable, shift, mode, index, doubtful, final, lengths, log_norm, beta):
    """``table`` / ``etable`` ``(B', S, Q, K)`` slot-major and ``shift`` ``(B', S, K)`` by source: banded
    ``i + x`` (``mode`` :data:`MODE_AHEAD`) or successor lists ``index`` ``(B'', K, Q)``."""
    bsz, t_max, k = e.shape
    pad = table.shape[2] - 1
    for b in numba.prange(bsz):
        bb = np.int64(b) if table.shape[0] > 1 else np.int64(0)
        bi = np.int64(b) if index.shape[0] > 1 else np.int64(0)
        scaled = _empty_scaled(k, pad)
        sums = np.empty((2, k), dtype=np.float64)
        c = np.empty(k, dtype=e.dtype)
        last = lengths[b] - 1
        _start_backward(beta[b], final[b], last)
        for t in range(last - 1, -1, -1):
            s = np.int64(t) if table.shape[1] > 1 else np.int64(0)
            e_next, b_next, out = e[b, t + 1], beta[b, t + 1], beta[b, t]  # rows: no index checks inside
            m = -np.inf
            for j in range(k):
                c[j] = e_next[j] + b_next[j]
                m = max(m, c[j])
            m = m if m > -np.inf else 0.0
            _scale_exp(c, m, scaled, doubtful == np.inf)
            out[:] = m - log_norm[b, t + 1]
            _log_gather(c, scaled, table[bb, s], etable[bb, s], shift[bb, s], mode, index, bi, doubtful, sums, out)


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
        bb = np.int64(b) if table.shape[0] > 1 else np.int64(0)
        bi = np.int64(b) if index.shape[0] > 1 else np.int64(0)
        padded = np.full(k + pad, -np.inf, dtype=e.dtype)
        delta = padded[pad:]
        nxt = np.empty(k, dtype=e.dtype)
        arg = np.empty(k, dtype=np.int32)
        for j in range(k):
            delta[j] = init[b, j] + e[b, 0, j]
        for t in range(1, lengths[b]):
            s = np.int64(t - 1) if table.shape[1] > 1 else np.int64(0)
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
        bb = np.int64(b) if trans.shape[0] > 1 else np.int64(0)
        for t in range(t_max - 1):
            lz = totals[b, t + 1] + log_norm[b, t + 1]
            if not np.isfinite(lz):
                continue
            s = np.int64(t) if trans.shape[1] > 1 else np.int64(0)
            out = xi[b, t if xi.shape[1] > 1 else 0]
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


def run_gather(loop, p: ChainProblem, table: torch.Tensor, mode: int, index: Optional[torch.Tensor], *args) -> None:
    """Run :func:`_forward_gather` or :func:`_backward_gather` (``loop``) on ``table`` read as ``mode``;
    ``args``: the loop's arguments after ``doubtful`` (``init`` or ``final`` and on).

    A static table's exp-space factors serve every frame; a time-varying table's entries are each
    read once, where factors would cost more ``exp`` than they save: those run every state as an
    exact ``logsumexp`` (``doubtful = inf``, the factors' place taken by the table itself).
    """
    width = table.shape[-1]
    idx = np.zeros((1, 1, 1), dtype=np.int64) if index is None else _np(index)
    slot_major = _np(table.transpose(-1, -2))
    if table.shape[1] > 1:
        loop(_np(p.emissions), slot_major, slot_major, slot_major[:, :, 0], mode, idx, math.inf, *args)
        return
    etable, shift = exp_rows(table.double())
    # a sum is exact to eps above both the underflow bound and X * (the most a dropped term can be)
    eps = torch.finfo(torch.float64).eps
    doubtful = max(underflow_threshold(torch.float64, width), 4.0 * width * math.exp(-LEVEL) / eps)
    loop(_np(p.emissions), slot_major, _np(etable.transpose(-1, -2)), _np(shift), mode, idx, doubtful, *args)


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
