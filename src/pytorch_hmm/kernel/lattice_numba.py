"""Compiled CPU loops (numba) for the 2-D monotone lattice (DTW, soft-DTW).

Same mathematics as the PyTorch wavefront in :mod:`lattice_torch` (see :mod:`lattice` for the
recursions, the band and the tie rule), but each pair is a plain row-major DP: on a CPU the
order of the cells does not matter and a row costs no per-operation overhead. Only the cells
inside the band and the lengths are read, so padding never needs masking. Hard DTW can also read
each row of the cost from a compiled row function ``row(x_i, y_t, lo, hi, out)`` over features
(:func:`dtw_pair_rows`; no ``N x M`` cost in memory, one pass); the row functions themselves
(frame distances) live in :mod:`pytorch_hmm.alignment.distances`. The row function is a
first-class function argument of type :func:`row_type` (explicit signatures, so the fused loops
stay in numba's cache; one indirect call per row).

``*_pair`` functions handle one pair, ``*_batch`` run them in parallel over pairs, and the
``run_*`` wrappers (plain Python, CPU tensors in and out, as :mod:`lattice_torch`'s) call the
pair function directly for a batch of one (no thread-pool wake-up, which on a busy machine
costs milliseconds). ``bad`` flags report a NaN or ``-inf`` cost met inside the band.

Step codes (``dirs``): 0 diagonal, 1 vertical (from ``(i-1, j)``), 2 horizontal (from
``(i, j-1)``), 3 the start cell. Ties prefer diagonal, then vertical, then horizontal.
"""

from __future__ import annotations

from typing import Tuple

import numba
import numpy as np
import torch
from numba import types

from .parallel import batch_loop

_JIT = dict(nogil=True, cache=True)
_FLOATS = (types.float64, types.float32)


def row_type(dtype=types.float64) -> types.FunctionType:
    """The numba type of a cost-row function ``row(x_i (D,), y_t (D, M), lo, hi, out (M,))``
    that writes columns ``lo..hi`` of one row of the cost into ``out`` (C-contiguous arrays)."""
    return types.FunctionType(types.void(dtype[::1], dtype[:, ::1], types.int64, types.int64, dtype[::1]))


ROW_SIGNATURES = [row_type(f).signature for f in _FLOATS]  # what a row function must be compiled for


@numba.njit(**_JIT)
def band_range(i, n, m, band):
    """Inclusive column range ``(lo, hi)`` of row ``i`` allowed by the band (``band < 0``: none).

    Cell ``(i, j)`` is allowed iff ``|i (m-1) - j (n-1)| <= band * max(n-1, m-1)`` (exact integers).
    """
    if band < 0 or n == 1 or m == 1:
        return 0, m - 1
    r = band * max(n - 1, m - 1)
    t = i * (m - 1)
    lo = -((r - t) // (n - 1))  # ceil((t - r) / (n - 1))
    hi = (t + r) // (n - 1)
    return max(lo, 0), min(hi, m - 1)


@numba.njit(**_JIT)
def _row_is_bad(c_row, lo, hi):
    bad = False
    row = c_row[lo : hi + 1]
    for t in range(row.shape[0]):
        bad |= not (row[t] > -np.inf)  # NaN or -inf
    return bad


@numba.njit(inline="always", **_JIT)
def _dtw_row(i, lo, hi, c_row, prev, cur, w_diag, want_path, d_row):
    """Row ``i`` of the accumulated cost into ``cur`` (columns ``lo..hi``) from row ``i - 1`` in ``prev``.

    (The loop runs over slices from 0: with a variable start numba's negative-index handling
    would stop LLVM from vectorising it.)
    """
    j0 = lo
    if lo == 0:  # first column: from above, or the start cell
        if i == 0:
            cur[0] = c_row[0]
            k0 = 3
        else:
            cur[0] = prev[0] + c_row[0]
            k0 = 1
        if want_path:
            d_row[0] = k0
        j0 = 1
    if j0 <= hi:  # the rest of the row; D[i, j-1] stays in a register
        up_left, up, c_sl = prev[j0 - 1 : hi], prev[j0 : hi + 1], c_row[j0 : hi + 1]
        out, d_sl = cur[j0 : hi + 1], d_row[j0 : hi + 1] if want_path else d_row[0:1]
        left = cur[j0 - 1]
        for t in range(c_sl.shape[0]):
            c = c_sl[t]
            best = up_left[t] + w_diag * c
            v = up[t] + c
            h = left + c
            k = 1 if v < best else 0
            best = min(best, v)
            k = 2 if h < best else k
            left = min(best, h)
            out[t] = left
            if want_path:
                d_sl[t] = k


@numba.njit(inline="always", **_JIT)
def _clear(cur, old_lo, old_hi):
    for j in range(old_lo, old_hi + 1):
        cur[j] = np.inf


@numba.njit(**_JIT)
def _trace_path(dirs, n, m, path):
    """Follow the step codes back from ``(n-1, m-1)``; the path in forward order into ``path``, returns its length."""
    i, j, steps = n - 1, m - 1, 0
    while True:
        path[steps, 0] = i
        path[steps, 1] = j
        steps += 1
        k = dirs[i, j]
        if k == 3:
            break
        if k != 2:
            i -= 1
        if k != 1:
            j -= 1
    for s in range(steps // 2):  # forward order
        for a in range(2):
            t = path[s, a]
            path[s, a] = path[steps - 1 - s, a]
            path[steps - 1 - s, a] = t
    return steps


@numba.njit(**_JIT)
def dtw_pair(cost, n, m, band, w_diag, want_path, dirs, path):
    """One pair of a ``(N, M)`` cost: ``(total, path_length, bad)``; the path goes to ``path[:path_length]``.

    ``dirs`` ``(N, M)`` int8 scratch when ``want_path``.
    """
    prev = np.full(m, np.inf, dtype=cost.dtype)
    cur = np.full(m, np.inf, dtype=cost.dtype)
    bad = False
    old_lo, old_hi, prev_lo, prev_hi = 0, m - 1, 0, m - 1  # ranges last held by cur / prev
    for i in range(n):
        lo, hi = band_range(i, n, m, band)
        if band >= 0:
            _clear(cur, old_lo, old_hi)
        c_row = cost[i]
        bad |= _row_is_bad(c_row, lo, hi)
        _dtw_row(i, lo, hi, c_row, prev, cur, w_diag, want_path, dirs[i] if want_path else dirs[0])
        old_lo, old_hi, prev_lo, prev_hi = prev_lo, prev_hi, lo, hi
        prev, cur = cur, prev
    total = prev[m - 1]
    if not want_path or not total < np.inf:
        return total, 0, bad
    return total, _trace_path(dirs, n, m, path), bad


_PAIR_ROWS = [
    types.Tuple((f, types.int64))(
        f[:, ::1], f[:, ::1], row_type(f), types.int64, types.int64, types.int64, f, types.boolean,
        types.int8[:, ::1], types.int64[:, ::1],
    )
    for f in _FLOATS
]
_BATCH_ROWS = [
    types.void(
        f[:, :, ::1], f[:, :, ::1], row_type(f), types.int64[::1], types.int64[::1], types.int64, f, types.boolean,
        types.int8[:, :, ::1], types.int64[:, :, ::1], types.int64[::1], f[::1],
    )
    for f in _FLOATS
]


@numba.njit(_PAIR_ROWS, **_JIT)
def dtw_pair_rows(x, y_t, row, n, m, band, w_diag, want_path, dirs, path):
    """:func:`dtw_pair` with row ``i`` of the cost computed as ``row(x[i], y_t, lo, hi, out)``
    (only the band's columns); ``x`` ``(N, D)``, ``y_t`` ``(D, M)``. Finite features give no bad cells."""
    prev = np.full(m, np.inf, dtype=x.dtype)
    cur = np.full(m, np.inf, dtype=x.dtype)
    c_row = np.empty(m, dtype=x.dtype)
    old_lo, old_hi, prev_lo, prev_hi = 0, m - 1, 0, m - 1
    for i in range(n):
        lo, hi = band_range(i, n, m, band)
        if band >= 0:
            _clear(cur, old_lo, old_hi)
        row(x[i], y_t, lo, hi, c_row)
        _dtw_row(i, lo, hi, c_row, prev, cur, w_diag, want_path, dirs[i] if want_path else dirs[0])
        old_lo, old_hi, prev_lo, prev_hi = prev_lo, prev_hi, lo, hi
        prev, cur = cur, prev
    total = prev[m - 1]
    if not want_path or not total < np.inf:
        return total, 0
    return total, _trace_path(dirs, n, m, path)


@batch_loop(lambda cost, *_: (cost.shape[0], cost.size))
def dtw_batch(cost, x_lengths, y_lengths, band, w_diag, want_path, dirs, paths, path_lengths, total, bad):
    """:func:`dtw_pair` for every pair, in parallel (``dirs`` ``(B, N, M)`` when ``want_path``)."""
    for b in numba.prange(x_lengths.shape[0]):
        db = dirs[b] if want_path else dirs[0]
        total[b], path_lengths[b], bad[b] = dtw_pair(
            cost[b], x_lengths[b], y_lengths[b], band, w_diag, want_path, db, paths[b]
        )


@batch_loop(lambda x, y_t, *_: (x.shape[0], x.size * y_t.shape[2]), _BATCH_ROWS)
def dtw_batch_rows(x, y_t, row, x_lengths, y_lengths, band, w_diag, want_path, dirs, paths, path_lengths, total):
    """:func:`dtw_pair_rows` for every pair, in parallel."""
    for b in numba.prange(x_lengths.shape[0]):
        db = dirs[b] if want_path else dirs[0]
        total[b], path_lengths[b] = dtw_pair_rows(
            x[b], y_t[b], row, x_lengths[b], y_lengths[b], band, w_diag, want_path, db, paths[b]
        )


@numba.njit(**_JIT)
def _softmin3(a, b, c, gamma, inv_gamma):
    """``-gamma log(exp(-a/gamma) + exp(-b/gamma) + exp(-c/gamma))``; ``inf`` if all are ``inf``."""
    m = min(a, min(b, c))
    if m == np.inf:
        return m
    s = np.exp((m - a) * inv_gamma) + np.exp((m - b) * inv_gamma) + np.exp((m - c) * inv_gamma)
    return m - gamma * np.log(s)


@numba.njit(**_JIT)
def soft_forward_pair(cost, n, m, band, w_diag, gamma, acc):
    """Soft-min accumulated cost ``acc`` (``R``, ``inf`` outside the band); returns ``(R[n-1, m-1], bad)``."""
    inf = np.inf
    inv_gamma = 1 / gamma
    bad = False
    acc[:, :] = inf
    for i in range(n):
        lo, hi = band_range(i, n, m, band)
        c_row = cost[i]
        bad |= _row_is_bad(c_row, lo, hi)
        out_row = acc[i]
        j0 = lo
        if lo == 0:
            out_row[0] = c_row[0] if i == 0 else _softmin3(inf, acc[i - 1, 0] + c_row[0], inf, gamma, inv_gamma)
            j0 = 1
        if j0 > hi:
            continue
        up_left = acc[i - 1, j0 - 1 : hi] if i > 0 else acc[0, 0:0]  # as in dtw_pair: slices from 0
        up = acc[i - 1, j0 : hi + 1] if i > 0 else acc[0, 0:0]
        c_sl, out = c_row[j0 : hi + 1], out_row[j0 : hi + 1]
        left = out_row[j0 - 1]
        for t in range(c_sl.shape[0]):
            c = c_sl[t]
            dg = up_left[t] + w_diag * c if i > 0 else inf
            v = up[t] + c if i > 0 else inf
            left = _softmin3(dg, v, left + c, gamma, inv_gamma)
            out[t] = left
    return acc[n - 1, m - 1], bad


@numba.njit(**_JIT)
def soft_backward_pair(cost, n, m, w_diag, gamma, acc, occupancy, grad_cost):
    """Expected alignment (cell occupancy) and ``d R[n-1, m-1] / d cost`` of one pair.

    Cells are visited in reverse order; each one's occupancy is complete when it is reached and
    is pushed to its predecessors with the soft-min weights ``softmax(-(R[pred] + w c) / gamma)``
    of its own three entries. Taking those weights from the predecessors, not from
    ``R[cell] - R[pred]``, keeps them a probability distribution when ``R / gamma`` is far
    beyond the dtype's precision. ``grad_cost = occupancy`` times the expected step weight into
    the cell (1 for symmetric1). Zero outside the band and lengths.
    """
    r, e, g = acc, occupancy, grad_cost
    inf = np.inf
    inv_gamma = 1 / gamma
    e[:, :] = 0
    g[:, :] = 0
    e[n - 1, m - 1] = 1
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            occ = e[i, j]
            if occ == 0:
                continue
            c = cost[i, j]
            up = r[i - 1, j] + c if i > 0 else inf
            left = r[i, j - 1] + c if j > 0 else inf
            diag = r[i - 1, j - 1] + w_diag * c if i > 0 and j > 0 else inf
            low = min(up, min(left, diag))
            if low == inf:  # the first cell
                g[i, j] = occ
                continue
            p_up = np.exp((low - up) * inv_gamma)
            p_left = np.exp((low - left) * inv_gamma)
            p_diag = np.exp((low - diag) * inv_gamma)
            scale = occ / (p_up + p_left + p_diag)
            if i > 0:
                e[i - 1, j] += p_up * scale
            if j > 0:
                e[i, j - 1] += p_left * scale
            if i > 0 and j > 0:
                e[i - 1, j - 1] += p_diag * scale
            g[i, j] = occ + (w_diag - 1) * p_diag * scale


@batch_loop(lambda cost, *_: (cost.shape[0], 3 * cost.size))
def soft_forward_batch(cost, x_lengths, y_lengths, band, w_diag, gamma, acc, value, bad):
    for b in numba.prange(cost.shape[0]):
        value[b], bad[b] = soft_forward_pair(cost[b], x_lengths[b], y_lengths[b], band, w_diag, gamma, acc[b])


@batch_loop(lambda cost, *_: (cost.shape[0], 6 * cost.size))
def soft_backward_batch(cost, x_lengths, y_lengths, w_diag, gamma, acc, occupancy, grad_cost):
    for b in numba.prange(cost.shape[0]):
        soft_backward_pair(cost[b], x_lengths[b], y_lengths[b], w_diag, gamma, acc[b], occupancy[b], grad_cost[b])


def _band(band) -> int:
    return -1 if band is None else int(band)


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy())


def _dtw_buffers(bsz, n, m, dtype, want_paths):
    dirs = np.empty((bsz, n, m) if want_paths else (1, 1, 1), dtype=np.int8)
    paths = np.empty((bsz, n + m - 1 if want_paths else 1, 2), dtype=np.int64)
    return dirs, paths, np.zeros(bsz, dtype=np.int64), np.empty(bsz, dtype=dtype)


def _dtw_result(total, paths, lengths, want_paths):
    paths_t = torch.from_numpy(paths)
    path_list = [paths_t[b, : lengths[b]] for b in range(paths.shape[0])] if want_paths else None
    return torch.from_numpy(total), path_list


def run_dtw(cost, x_lengths, y_lengths, band, w_diag, want_paths):
    """Hard DTW of a ``(B, N, M)`` cost: ``(total (B,), paths or None, bad)``.

    ``paths``: one ``(L_b, 2)`` int64 tensor per pair; ``bad``: a NaN or ``-inf`` cost inside
    the band of some pair.
    """
    cost = _np(cost)
    bsz, n, m = cost.shape
    dirs, paths, lengths, total = _dtw_buffers(bsz, n, m, cost.dtype, want_paths)
    bad = np.zeros(bsz, dtype=np.bool_)
    args = (_band(band), cost.dtype.type(w_diag), want_paths)
    if bsz == 1:
        total[0], lengths[0], bad[0] = dtw_pair(cost[0], int(x_lengths[0]), int(y_lengths[0]), *args, dirs[0], paths[0])
    else:
        dtw_batch(cost, _np(x_lengths), _np(y_lengths), *args, dirs, paths, lengths, total, bad)
    return (*_dtw_result(total, paths, lengths, want_paths), bool(bad.any()))


def run_dtw_rows(x, y, row, x_lengths, y_lengths, band, w_diag, want_paths):
    """Hard DTW whose cost rows come from ``row`` over features ``x (B, N, D)``, ``y (B, M, D)``:
    ``(total (B,), paths or None)``."""
    x, y_t = _np(x), _np(y.transpose(1, 2))
    bsz, n, m = x.shape[0], x.shape[1], y_t.shape[2]
    dirs, paths, lengths, total = _dtw_buffers(bsz, n, m, x.dtype, want_paths)
    args = (_band(band), x.dtype.type(w_diag), want_paths)
    if bsz == 1:
        total[0], lengths[0] = dtw_pair_rows(x[0], y_t[0], row, int(x_lengths[0]), int(y_lengths[0]), *args, dirs[0], paths[0])
    else:
        dtw_batch_rows(x, y_t, row, _np(x_lengths), _np(y_lengths), *args, dirs, paths, lengths, total)
    return _dtw_result(total, paths, lengths, want_paths)


def run_soft_forward(cost, x_lengths, y_lengths, band, w_diag, gamma):
    """Soft-DTW values ``(B,)``, the state :func:`run_soft_backward` needs, and ``bad`` (as in
    :func:`run_dtw`)."""
    cost, x_lengths, y_lengths = _np(cost), _np(x_lengths), _np(y_lengths)
    acc = np.empty_like(cost)
    value = np.empty(cost.shape[0], dtype=cost.dtype)
    bad = np.zeros(cost.shape[0], dtype=np.bool_)
    args = (_band(band), cost.dtype.type(w_diag), cost.dtype.type(gamma))
    if cost.shape[0] == 1:
        value[0], bad[0] = soft_forward_pair(cost[0], int(x_lengths[0]), int(y_lengths[0]), *args, acc[0])
    else:
        soft_forward_batch(cost, x_lengths, y_lengths, *args, acc, value, bad)
    return torch.from_numpy(value), (cost, x_lengths, y_lengths, acc, gamma), bool(bad.any())


def run_soft_backward(state, w_diag) -> Tuple[torch.Tensor, torch.Tensor]:
    """Expected alignment and ``d value / d cost``, both ``(B, N, M)``."""
    cost, x_lengths, y_lengths, acc, gamma = state
    occ = np.empty_like(cost)
    grad = np.empty_like(cost)
    w, g = cost.dtype.type(w_diag), cost.dtype.type(gamma)
    if cost.shape[0] == 1:
        soft_backward_pair(cost[0], int(x_lengths[0]), int(y_lengths[0]), w, g, acc[0], occ[0], grad[0])
    else:
        soft_backward_batch(cost, x_lengths, y_lengths, w, g, acc, occ, grad)
    return torch.from_numpy(occ), torch.from_numpy(grad)
