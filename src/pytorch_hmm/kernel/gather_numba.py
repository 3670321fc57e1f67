"""Compiled CPU forward/backward loops of banded and sparse chains (numba), parallel over the batch.

Each step gathers, for every state, its ``X`` moves: from ``j - x`` (banded, forward), to
``i + x`` (banded, backward) or from/to listed states (sparse predecessor or successor lists).
A static table becomes exp-space factors once per call (:func:`run_gather`), and the previous
frame's scores become *scaled numbers* (:func:`_scale_exp`: a float64 mantissa in
``[1, e^LEVEL)`` and a level, a multiple of :data:`LEVEL` nats), so a state costs ``X``
multiply-adds and one ``log`` however far below the best it lies; a sum that may have lost
mass (to underflow, or to a source two levels down) is recomputed as an exact ``logsumexp``.
Banded windows run as ``X`` branch-free passes along the states, which vectorise. A
time-varying table, whose entries are each read once, runs the exact ``logsumexp`` directly.
"""

from __future__ import annotations

import math
from typing import Optional

import numba
import numpy as np
import torch

from ..semiring import underflow_threshold
from .factors import exp_rows
from .inputs import ChainProblem
from .numba_loops import _JIT, MODE_AHEAD, MODE_BANDED, MODE_GATHER, _item, _np, _pad_forward, _row_max, _start_backward, _step
from .parallel import batch_loop

LEVEL = 300.0  # nats between the levels of the scaled numbers (:func:`_scale_exp`)


def _gather_work(e, table, *_):
    """``(batch, inner-loop operations)`` of a loop over ``e`` ``(B, T, K)`` and a slot-major ``(B', S, X, K)`` table."""
    return e.shape[0], e.size * table.shape[-2]


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
def _scratch(k, pad):
    """A loop's scratch: the scaled numbers of :func:`_scale_exp` ``(2, K + 2 pad)`` (mantissas 0 and
    levels ``-inf``, ``pad`` either side) and the sums of :func:`_gather_sums` ``(2, K)``."""
    scaled = np.zeros((2, k + 2 * pad), dtype=np.float64)
    scaled[1, :] = -np.inf
    return scaled, np.empty((2, k), dtype=np.float64)


@batch_loop(_gather_work)
def _forward_gather(e, table, etable, shift, mode, index, doubtful, init, lengths, alpha, log_norm):
    """``table`` / ``etable`` ``(B', S, X, K)`` slot-major and ``shift`` ``(B', S, K)`` by destination
    (:func:`_log_gather`); sources by ``mode``: banded ``j - x`` or predecessor lists ``index`` ``(B'', K, X)``."""
    bsz, t_max, k = e.shape
    pad = table.shape[2] - 1
    for b in numba.prange(bsz):
        bb, bi = _item(table, b), _item(index, b)
        scaled, sums = _scratch(k, pad)
        for j in range(k):
            alpha[b, 0, j] = init[b, j] + e[b, 0, j]
        m = _row_max(alpha[b, 0])
        for t in range(1, lengths[b]):
            log_norm[b, t - 1] = m
            _scale_exp(alpha[b, t - 1], m, scaled, doubtful == np.inf)
            s = _step(table, t - 1)
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
        bb, bi = _item(table, b), _item(index, b)
        scaled, sums = _scratch(k, pad)
        c = np.empty(k, dtype=e.dtype)
        last = lengths[b] - 1
        _start_backward(beta[b], final[b], last)
        for t in range(last - 1, -1, -1):
            s = _step(table, t)
            e_next, b_next, out = e[b, t + 1], beta[b, t + 1], beta[b, t]  # rows: no index checks inside
            m = -np.inf
            for j in range(k):
                c[j] = e_next[j] + b_next[j]
                m = max(m, c[j])
            m = m if m > -np.inf else 0.0
            _scale_exp(c, m, scaled, doubtful == np.inf)
            out[:] = m - log_norm[b, t + 1]
            _log_gather(c, scaled, table[bb, s], etable[bb, s], shift[bb, s], mode, index, bi, doubtful, sums, out)


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
