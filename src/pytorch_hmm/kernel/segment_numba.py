"""Compiled CPU loops (numba) of the semi-Markov kernel, parallel over the batch.

Same recursions, inputs and outputs as :mod:`.segment_loops` (float64; see its notation), equal
up to rounding, but the terms cost multiply-adds instead of one ``exp`` each:

* transitions: the chain's shifted vector-matrix product (:func:`.numba_loops._log_vecmat`, with
  its exact fallback for doubtful columns; Viterbi: :func:`.numba_loops._max_product`);
* duration windows: per state an exp-domain cache ``C[s] = exp(x[s] - ref)`` of ``x = u``
  (forward) or ``v`` (backward), one ``exp`` per frame and state, against
  ``E[d] = exp(dur[d] - max dur)``: ``logsumexp_d = ref + max dur + log sum_d C E``. ``ref``
  moves up when a new ``x`` exceeds it by :data:`MARGIN` nats (the live entries are rescaled);
  a sum below :func:`doubtful` (terms lost to underflow could matter, or there are none) is
  recomputed exactly in log space and ``ref`` rebased to the window's maximum. A ``-inf``
  emission of a state zeroes its live entries (no segment runs through that frame);
* the backward pass also accumulates every expected count: duration counts from the window's
  products, transition counts from the vector-matrix product's factors, posteriors from the
  expected segment ends and starts after each frame;
* Viterbi is max-sum with small-int backpointers and backtracks in compiled code.

Frames are ``(T, K)`` rows, so the window sums run along the states (they vectorise).
"""

from __future__ import annotations

import math
from typing import List, Tuple

import numba
import numpy as np
import torch

from ..semiring import underflow_threshold
from .factors import dense_backward_factors, dense_forward_factors
from .numba_loops import _item, _log_vecmat, _max_product
from .parallel import batch_loop
from .segment_loops import SegmentProblem

_JIT = dict(nogil=True, cache=True)
MARGIN = 200.0  # nats a new cache entry may exceed the reference before the live entries are rescaled
_LO = math.log(np.finfo(np.float64).tiny) + 1.0  # exps below this are flushed to 0 (see factors.exp_flushed_)


def doubtful(num_durations: int) -> float:
    """Smallest cached window sum that is exact to ``eps``: each of the ``D`` terms loses at most
    ``e^(MARGIN + 1) tiny`` to flushing (cache entries are at most ``e^MARGIN``, factors at most 1)."""
    return underflow_threshold(torch.float64, num_durations) * math.exp(MARGIN + 1.0)


def _work(cum, *args):
    """``(batch, inner-loop operations)``: ``T K (K + D)`` per sequence (``D`` is the last argument)."""
    k = cum.shape[2]
    return cum.shape[0], cum.shape[0] * (cum.shape[1] - 1) * k * (k + args[-1])


@numba.njit(**_JIT)
def _flushed_exp(x):
    return np.exp(x) if x > _LO else 0.0


@numba.njit(**_JIT)
def _duration_factors(dur, scaled, top):
    """``top[k] = max_d dur[k, d]`` (``-inf``: no duration) and ``scaled[d, k] = exp(dur[k, d] - top[k])``."""
    for k in range(dur.shape[0]):
        m = -np.inf
        for d in range(dur.shape[1]):
            m = max(m, dur[k, d])
        top[k] = m
        for d in range(dur.shape[1]):
            scaled[d, k] = _flushed_exp(dur[k, d] - m) if m > -np.inf else 0.0


@numba.njit(**_JIT)
def _push(cache, ref, j, x, s, lo, hi):
    """Cache ``x`` at frame ``s`` of state ``j``; a new reference rescales the live entries ``lo..hi-1``."""
    if x == -np.inf:
        cache[s, j] = 0.0
    elif ref[j] == -np.inf or x > ref[j] + MARGIN:
        if ref[j] > -np.inf:
            f = np.exp(ref[j] - x)
            for r in range(lo, hi):
                y = cache[r, j] * f
                cache[r, j] = y if y >= 1e-300 else 0.0  # no denormals in later products
        ref[j] = x
        cache[s, j] = 1.0
    else:
        cache[s, j] = _flushed_exp(x - ref[j])


@numba.njit(**_JIT)
def _rebase(cache, ref, j, x, lo, hi):
    """Recompute the entries ``lo..hi-1`` of state ``j`` from ``x[:, j]``, against their maximum."""
    m = -np.inf
    for r in range(lo, hi):
        m = max(m, x[r, j])
    ref[j] = m
    for r in range(lo, hi):
        cache[r, j] = _flushed_exp(x[r, j] - m) if m > -np.inf else 0.0


@numba.njit(**_JIT)
def _window_sums(cache, scaled, first, step, n, total):
    """``total[k] = sum_{d < n} cache[first + step d, k] scaled[d, k]``."""
    total[:] = 0.0
    for d in range(n):
        row = cache[first + step * d]
        for j in range(total.shape[0]):
            total[j] += row[j] * scaled[d, j]


@numba.njit(**_JIT)
def _exact_window(x, dur, j, first, step, n):
    """``logsumexp_{d < n} x[first + step d, j] + dur[j, d]``."""
    m = -np.inf
    for d in range(n):
        m = max(m, x[first + step * d, j] + dur[j, d])
    if m == -np.inf:
        return m
    total = 0.0
    for d in range(n):
        total += _flushed_exp(x[first + step * d, j] + dur[j, d] - m)
    return m + np.log(total)


@batch_loop(lambda e, *_: (e.shape[0], e.size))
def _cumulative(e, cum, bad):
    bsz, t_max, k = e.shape
    for b in numba.prange(bsz):
        cum[b, 0] = 0.0
        bad[b, 0] = 0
        for t in range(t_max):
            for j in range(k):
                impossible = e[b, t, j] == -np.inf
                cum[b, t + 1, j] = cum[b, t, j] + (0.0 if impossible else e[b, t, j])
                bad[b, t + 1, j] = bad[b, t, j] + impossible


@batch_loop(_work)
def _forward(cum, bad, matrix, trans, shift, dur, init, lengths, threshold_k, threshold_d, u, end, num_durations):
    bsz, _, k = cum.shape
    d_max = num_durations
    for b in numba.prange(bsz):
        bt, bd = _item(trans, b), _item(dur, b)
        length = lengths[b]
        scaled = np.empty((d_max, k))
        top = np.empty(k)
        _duration_factors(dur[bd], scaled, top)
        cache = np.zeros((length, k))
        ref = np.full(k, -np.inf)
        last_bad = np.full(k, -1, dtype=np.int64)
        last_finite = np.full(k, -1, dtype=np.int64)  # latest frame with u > -inf
        start, probs, acc, total = np.empty(k), np.empty(k), np.empty(k), np.empty(k)
        for t in range(length):
            if t == 0:
                start[:] = init[b]
            else:
                _log_vecmat(end[b, t - 1], matrix[bt], trans[bt], shift[bt], threshold_k, start, probs, acc)
            live = max(0, t - d_max + 1)  # window starts of the segments ending at t
            for j in range(k):
                x = start[j] - cum[b, t, j]
                u[b, t, j] = x
                if bad[b, t + 1, j] != bad[b, t, j]:  # no segment of j runs through t
                    last_bad[j] = t
                    cache[live:t + 1, j] = 0.0
                else:
                    _push(cache, ref, j, x, t, max(live, last_bad[j] + 1), t)
                if x > -np.inf:
                    last_finite[j] = t
            _window_sums(cache, scaled, t, -1, min(d_max, t + 1), total)
            for j in range(k):
                n = min(d_max, t - last_bad[j])  # durations 1..n end at t
                if n <= 0 or top[j] == -np.inf or last_finite[j] <= t - n:
                    lse = -np.inf
                elif total[j] >= threshold_d:
                    lse = ref[j] + top[j] + np.log(total[j])
                else:
                    lse = _exact_window(u[b], dur[bd], j, t, -1, n)
                    _rebase(cache, ref, j, u[b], t - n + 1, t + 1)
                end[b, t, j] = cum[b, t + 1, j] + lse
        end[b, length:] = -np.inf
        u[b, length:] = -np.inf


@batch_loop(_work)
def _marginals(cum, bad, matrix, row_matrix, trans, trans_t, shift, dur, final, lengths, threshold_k, threshold_d,
               u, end, log_z, edges, gamma, counts, xi, init, num_durations):
    """Backward pass; ``row_matrix[i, j] = matrix[j, i] = exp(A_ij - shift_i)``."""
    bsz, _, k = cum.shape
    d_max = num_durations
    for b in numba.prange(bsz):
        bt, bd = _item(trans, b), _item(dur, b)
        length = lengths[b]
        lz = log_z[b]
        feasible = lz > -np.inf
        scaled = np.empty((d_max, k))
        top = np.empty(k)
        _duration_factors(dur[bd], scaled, top)
        cache = np.zeros((length, k))
        v = np.empty((length, k))
        ref = np.full(k, -np.inf)
        next_bad = np.full(k, length, dtype=np.int64)
        next_finite = np.full(k, length, dtype=np.int64)  # earliest frame >= t with v > -inf
        bnext, bend, probs, acc, total = np.empty(k), np.empty(k), np.empty(k), np.empty(k), np.empty(k)
        ends, factor = np.empty(k), np.empty(k)
        ends_after, starts_after = np.zeros(k), np.zeros(k)  # expected ends at frames >= t, starts at frames > t
        by_duration = np.zeros((d_max, k))
        moves = np.zeros((k, k))  # sum_t ends_t[i] / acc_t[i] probs_t[j]: times row_matrix at the end
        xi[b] = 0.0
        gamma[b, length:] = 0.0
        for t in range(length - 1, -1, -1):
            if t == length - 1:
                bend[:] = final[b]
            else:
                _log_vecmat(bnext, matrix[bt], trans_t[bt], shift[bt], threshold_k, bend, probs, acc)
            for i in range(k):  # p(a segment of i ends at t)
                ends[i] = _flushed_exp(end[b, t, i] + bend[i] - lz) if feasible else 0.0
                ends_after[i] += ends[i]
            if edges and feasible and t < length - 1:  # xi_t(i, j) = exp(end[t, i] + A_ij + bstart[t+1, j] - log Z)
                for i in range(k):
                    if ends[i] == 0.0:
                        continue
                    if acc[i] >= threshold_k:  # = ends[i] / acc[i] * probs[j] * row_matrix[i, j]
                        f = ends[i] / acc[i]
                        for j in range(k):
                            moves[i, j] += f * probs[j]
                    else:
                        for j in range(k):
                            xi[b, i, j] += _flushed_exp(end[b, t, i] + trans[bt, i, j] + bnext[j] - lz)
            hi = min(length, t + d_max)  # window ends of the segments starting at t
            for j in range(k):
                x = cum[b, t + 1, j] + bend[j]
                v[t, j] = x
                if bad[b, t + 1, j] != bad[b, t, j]:
                    next_bad[j] = t
                    cache[t:hi, j] = 0.0
                else:
                    _push(cache, ref, j, x, t, t + 1, min(hi, next_bad[j]))
                if x > -np.inf:
                    next_finite[j] = t
            _window_sums(cache, scaled, t, 1, hi - t, total)
            for j in range(k):
                n = min(d_max, next_bad[j] - t)  # durations 1..n start at t
                pre = u[b, t, j] - lz  # log p(a segment of j starts at t) = pre + lse
                count = feasible and pre > -np.inf
                factor[j] = 0.0
                if n <= 0 or top[j] == -np.inf or next_finite[j] >= t + n:
                    lse = -np.inf
                elif total[j] >= threshold_d:
                    lse = ref[j] + top[j] + np.log(total[j])
                    if count:
                        factor[j] = np.exp(pre + ref[j] + top[j])
                else:
                    lse = _exact_window(v, dur[bd], j, t, 1, n)
                    if count and lse > -np.inf:
                        for d in range(n):
                            by_duration[d, j] += _flushed_exp(pre + v[t + d, j] + dur[bd, j, d])
                    _rebase(cache, ref, j, v, t, t + n)
                bnext[j] = lse - cum[b, t, j]
                starts = factor[j] * total[j] if factor[j] > 0.0 else (_flushed_exp(pre + lse) if count else 0.0)
                gamma[b, t, j] = min(max(ends_after[j] - starts_after[j], 0.0), 1.0)
                starts_after[j] += starts
                if t == 0:
                    init[b, j] = starts
            for d in range(hi - t):
                row = cache[t + d]
                for j in range(k):
                    by_duration[d, j] += factor[j] * (row[j] * scaled[d, j])
            norm = 0.0
            for j in range(k):
                norm += gamma[b, t, j]
            if norm > 0.0:
                for j in range(k):
                    gamma[b, t, j] /= norm
        counts[b] = by_duration.T
        xi[b] += moves * row_matrix[bt]


@batch_loop(_work)
def _viterbi(cum, bad, trans, dur, init, final, lengths, scores, seg_state, seg_start, seg_count, paths, num_durations):
    """Max-sum forward pass and backtrack; segments ``(seg_state, seg_start)`` ``(B, T)`` in time order."""
    bsz, _, k = cum.shape
    d_max = num_durations
    for b in numba.prange(bsz):
        bt, bd = _item(trans, b), _item(dur, b)
        length = lengths[b]
        by_duration = np.ascontiguousarray(dur[bd].T)  # (D, K)
        um = np.empty((length, k))  # u, -inf where no segment through a -inf emission may start
        dur_bp = np.zeros((length, k), dtype=np.int32)
        prev_bp = np.zeros((length, k), dtype=np.int32)
        start, end, arg = np.empty(k), np.full(k, -np.inf), np.empty(k, dtype=np.int32)
        best, best_d = np.empty(k), np.empty(k, dtype=np.int32)
        for t in range(length):
            if t == 0:
                start[:] = init[b]
            else:
                _max_product(end, trans[bt], start, arg)
                prev_bp[t] = arg
            live = max(0, t - d_max + 1)
            for j in range(k):
                um[t, j] = start[j] - cum[b, t, j]
                if bad[b, t + 1, j] != bad[b, t, j]:
                    um[live:t + 1, j] = -np.inf
            best[:] = -np.inf
            best_d[:] = 0
            for d in range(min(d_max, t + 1)):  # ties: the longest duration, as torch's first maximum
                row = um[t - d]
                for j in range(k):
                    x = row[j] + by_duration[d, j]
                    take = x >= best[j]
                    best[j] = x if take else best[j]
                    best_d[j] = d if take else best_d[j]
            for j in range(k):
                end[j] = cum[b, t + 1, j] + best[j]
                dur_bp[t, j] = best_d[j] + 1
        top, state = -np.inf, 0
        for j in range(k):
            if end[j] + final[b, j] > top:
                top, state = end[j] + final[b, j], j
        scores[b] = top
        paths[b] = -1
        count = 0
        t = length - 1
        while top > -np.inf and t >= 0:
            s = t - dur_bp[t, state] + 1
            seg_state[b, count], seg_start[b, count] = state, s
            paths[b, s:t + 1] = state
            count += 1
            state, t = prev_bp[s, state], s - 1
        seg_state[b, :count] = seg_state[b, :count][::-1].copy()
        seg_start[b, :count] = seg_start[b, :count][::-1].copy()
        seg_count[b] = count


def _np(x: torch.Tensor) -> np.ndarray:
    """Contiguous numpy view (float64 for floating tensors)."""
    return np.ascontiguousarray(x.detach().double().numpy() if x.is_floating_point() else x.detach().numpy())


def cumulative(p: SegmentProblem) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(cum, bad)`` as :func:`.segment_loops.cumulative`."""
    b, t, k = p.emissions.shape
    cum = torch.empty((b, t + 1, k), dtype=torch.float64)
    bad = torch.empty((b, t + 1, k), dtype=torch.int64)
    _cumulative(np.ascontiguousarray(p.emissions.detach().numpy()), cum.numpy(), bad.numpy())  # float32 or float64
    return cum, bad


def forward(p: SegmentProblem, cum: torch.Tensor, bad: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(u, end)``, both ``(B, T, K)`` float64, as :func:`.segment_loops.forward` (``-inf`` past each length)."""
    b, t, k = p.emissions.shape
    d = p.durations.shape[-1]
    u = torch.empty((b, t, k), dtype=torch.float64)
    end = torch.empty((b, t, k), dtype=torch.float64)
    trans = p.trans.double()
    matrix, shift = dense_forward_factors(trans)
    _forward(_np(cum), _np(bad), _np(matrix), _np(trans), _np(shift), _np(p.durations), _np(p.init), _np(p.lengths),
             underflow_threshold(torch.float64, k), doubtful(d), u.numpy(), end.numpy(), d)
    return u, end


def marginals(p: SegmentProblem, cum: torch.Tensor, bad: torch.Tensor, u: torch.Tensor, end: torch.Tensor,
              log_z: torch.Tensor, edges: bool = True) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(posteriors (B, T, K), duration counts (B, K, D), transition counts (B, K, K), init (B, K))``
    float64, as :func:`.segment_loops.marginals`, from one compiled backward pass."""
    b, t, k = p.emissions.shape
    d = p.durations.shape[-1]
    gamma = torch.empty((b, t, k), dtype=torch.float64)
    counts = torch.empty((b, k, d), dtype=torch.float64)
    xi = torch.empty((b, k, k), dtype=torch.float64)
    init = torch.empty((b, k), dtype=torch.float64)
    trans = p.trans.double()
    matrix, shift = dense_backward_factors(trans)
    _marginals(_np(cum), _np(bad), _np(matrix), _np(matrix.transpose(-1, -2)), _np(trans), _np(trans.transpose(-1, -2)),
               _np(shift), _np(p.durations), _np(p.final), _np(p.lengths), underflow_threshold(torch.float64, k),
               doubtful(d), _np(u), _np(end), _np(log_z), edges, gamma.numpy(), counts.numpy(), xi.numpy(),
               init.numpy(), d)
    return gamma, counts, xi, init


def viterbi(p: SegmentProblem, cum: torch.Tensor, bad: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, List]:
    """``(paths (B, T) int64, scores (B,) float64, segments)`` as :func:`.segment_loops.viterbi`."""
    b, t, _ = p.emissions.shape
    scores = np.empty(b)
    seg_state = np.empty((b, t), dtype=np.int64)
    seg_start = np.empty((b, t), dtype=np.int64)
    seg_count = np.empty(b, dtype=np.int64)
    paths = np.empty((b, t), dtype=np.int64)
    lengths = _np(p.lengths)
    _viterbi(_np(cum), _np(bad), _np(p.trans), _np(p.durations), _np(p.init), _np(p.final), lengths, scores, seg_state,
             seg_start, seg_count, paths, p.durations.shape[-1])
    segments = []
    for i, (n, length) in enumerate(zip(seg_count.tolist(), lengths.tolist())):
        states, starts = seg_state[i, :n].tolist(), seg_start[i, :n].tolist()
        segments.append(list(zip(states, starts, starts[1:] + [length])))
    return torch.from_numpy(paths), torch.from_numpy(scores), segments
