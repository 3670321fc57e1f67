"""PyTorch anti-diagonal wavefront for the 2-D monotone lattice (DTW, soft-DTW).

Same mathematics as :mod:`lattice` (see its docstring for the recursions, the band and the tie
rule). Cells on one anti-diagonal ``i + j = d`` depend only on the two previous diagonals, so
each diagonal is a few tensor ops over the whole batch: no host sync inside the loop, any
device. The cost comes in already masked (``+inf`` outside each pair's band and lengths), so
cells off a pair's lattice stay unreachable without per-pair bookkeeping.

Storage is "skewed", ``(L + 4, B, N + 2)`` with ``L = N + M - 1``: cell ``(b, i, j)`` lives at
``[i + j + 2, b, i + 1]``; two padding diagonals on each end and padding columns 0 and
``N + 1`` hold the fill value, so every neighbour of a cell is a plain shifted slice. The
shorter sequence runs along the diagonals (storage ``O(N M)``, fewest columns per op).

Also here: the band as a mask (:func:`band_mask`, :func:`mask_cost`). The ``run_*`` functions and
:func:`trace_paths` take and return tensors, as :mod:`lattice_numba`'s do; :mod:`lattice`
validates the inputs and picks the backend.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch

Table = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool]
SoftState = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, bool, int]


def band_mask(x_lengths: torch.Tensor, y_lengths: torch.Tensor, n: int, m: int, band: Optional[int]) -> torch.Tensor:
    """``(B, N, M)`` bool: cells inside each pair's lengths and band (see :mod:`lattice`)."""
    dev = x_lengths.device
    i = torch.arange(n, device=dev)[None, :, None]
    j = torch.arange(m, device=dev)[None, None, :]
    nb, mb = x_lengths[:, None, None], y_lengths[:, None, None]
    mask = (i < nb) & (j < mb)
    if band is not None:
        mask &= (i * (mb - 1) - j * (nb - 1)).abs() <= band * torch.maximum(nb - 1, mb - 1)
    return mask


def mask_cost(cost: torch.Tensor, x_lengths: torch.Tensor, y_lengths: torch.Tensor, band: Optional[int]) -> torch.Tensor:
    """``cost`` ``(B, N, M)`` with ``+inf`` outside each pair's band and lengths (differentiable)."""
    mask = band_mask(x_lengths, y_lengths, cost.shape[1], cost.shape[2], band)
    return torch.where(mask, cost, torch.full((), math.inf, dtype=cost.dtype, device=cost.device))


def _cells(skewed: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The ``(B, N, M)`` view of the lattice cells inside a skewed storage."""
    _, bsz, width = skewed.shape
    row = bsz * width
    return skewed.as_strided((bsz, n, m), (width, row + 1, row), skewed.storage_offset() + 2 * row + 1)


def _skew(t: torch.Tensor, fill: float) -> torch.Tensor:
    bsz, n, m = t.shape
    out = t.new_full((n + m + 3, bsz, n + 2), fill)
    _cells(out, n, m).copy_(t)
    return out


def _oriented(
    cost: torch.Tensor, x_lengths: torch.Tensor, y_lengths: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Cost with the shorter sequence along the diagonals (storage ``O(N M)``); transposed flag."""
    if cost.shape[1] > cost.shape[2]:
        return cost.transpose(1, 2), y_lengths, x_lengths, True
    return cost, x_lengths, y_lengths, False


def _rows(t: torch.Tensor, first_col: int) -> Tuple[torch.Tensor, ...]:
    """Per-diagonal views ``t[r, :, first_col : first_col + N]`` (one op for all ``r``)."""
    return t[:, :, first_col : first_col + t.shape[2] - 2].unbind(0)


def run_dtw(
    cost: torch.Tensor, x_lengths: torch.Tensor, y_lengths: torch.Tensor, w_diag: float
) -> Tuple[torch.Tensor, Table]:
    """Minimum path cost ``(B,)`` of a masked cost ``(B, N, M)`` (``inf`` where no path), and the
    table :func:`trace_paths` reads the paths from."""
    cost, xl, yl, transposed = _oriented(cost, x_lengths, y_lengths)
    bsz = cost.shape[0]
    w = w_diag
    c = _skew(cost, math.inf)
    cw = c * w if w != 1 else c
    acc = torch.full_like(c, math.inf)
    acc[2, :, 1] = c[2, :, 1]
    last = int((xl + yl).max())  # storage row of the last pair's end cell
    # row r, column i of these views: cell i on diagonal r - 2 (``up``: cell i - 1)
    up, here, c_here, cw_here = _rows(acc, 0), _rows(acc, 1), _rows(c, 1), _rows(cw, 1)
    for r in range(3, last + 1):  # whole diagonals; cells off the lattice stay +inf
        best = torch.minimum(up[r - 1], here[r - 1])
        if w == 1:
            torch.minimum(best, up[r - 2], out=best)
            torch.add(best, c_here[r], out=here[r])
        else:
            best += c_here[r]
            torch.minimum(best, up[r - 2] + cw_here[r], out=here[r])
    total = acc[xl + yl, torch.arange(bsz, device=cost.device), xl]
    return total, (acc[: last + 1], c[: last + 1], cw[: last + 1], xl, yl, transposed)


def trace_paths(table: Table) -> List[torch.Tensor]:
    """One ``(L_b, 2)`` int64 path per pair (all finite): step choices for all cells at once,
    then one gather per path step."""
    acc, c, cw, xl, yl, transposed = table
    rows, bsz, width = acc.shape
    n = width - 2
    here = c[2:, :, 1:-1]
    plane = bsz * n
    # flat offsets to the predecessor in a (rows - 2, B, N) array: diag, vert, horiz; start: 0
    k_vert, k_horiz, k_diag = plane + 1, plane, 2 * plane + 1
    # candidates in the tie order of the original orientation: diag, then (i-1, j), then (i, j-1)
    first, second = (acc[1:-1, :, :-2], acc[1:-1, :, 1:-1]) if not transposed else (acc[1:-1, :, 1:-1], acc[1:-1, :, :-2])
    k_first, k_second = (k_vert, k_horiz) if not transposed else (k_horiz, k_vert)
    best = acc[:-2, :, :-2] + cw[2:, :, 1:-1]
    cand = first + here
    first_wins = cand < best
    torch.minimum(best, cand, out=best)
    torch.add(second, here, out=cand)
    second_wins = cand < best
    del best, cand
    as_int = dict(dtype=torch.int32, device=acc.device)
    step = torch.where(first_wins, torch.tensor(k_first, **as_int), torch.tensor(k_diag, **as_int))
    step = torch.where(second_wins, torch.tensor(k_second, **as_int), step)
    step[0, :, 0] = 0
    del first_wins, second_wins
    flat = step.reshape(-1)
    idx = (xl + yl - 2) * plane + torch.arange(bsz, device=acc.device) * n + (xl - 1)
    trail = [idx]
    for _ in range(rows - 3):
        idx = idx - flat.index_select(0, idx)
        trail.append(idx)
    at = torch.stack(trail)  # (steps, B), from the end backwards; stays at the start once there
    d = at // plane
    i = at % n
    pairs = torch.stack((i, d - i), -1)
    if transposed:
        pairs = pairs.flip(-1)
    lengths = ((d > 0).sum(0) + 1).tolist()
    return [pairs[: lengths[b], b].flip(0) for b in range(bsz)]


def run_soft_forward(
    cost: torch.Tensor, x_lengths: torch.Tensor, y_lengths: torch.Tensor, w_diag: float, gamma: float
) -> Tuple[torch.Tensor, SoftState]:
    """Soft-DTW value ``(B,)`` of a masked cost ``(B, N, M)`` and the state
    :func:`run_soft_backward` needs: ``s = -R / gamma`` and ``c / gamma``, skewed."""
    cost, xl, yl, transposed = _oriented(cost, x_lengths, y_lengths)
    bsz = cost.shape[0]
    w = w_diag
    c = _skew(cost / gamma, math.inf)
    cw = c * w if w != 1 else c
    s = torch.full_like(c, -math.inf)
    s[2, :, 1] = -c[2, :, 1]
    last = int((xl + yl).max())
    up, here, c_here, cw_here = _rows(s, 0), _rows(s, 1), _rows(c, 1), _rows(cw, 1)
    for r in range(3, last + 1):
        t = torch.logaddexp(up[r - 1], here[r - 1])
        if w == 1:
            torch.logaddexp(t, up[r - 2], out=t)
            torch.sub(t, c_here[r], out=here[r])
        else:
            t -= c_here[r]
            torch.logaddexp(t, up[r - 2] - cw_here[r], out=here[r])
    value = -gamma * s[xl + yl, torch.arange(bsz, device=cost.device), xl]
    return value, (s, c, cw, xl, yl, transposed, last)


def _entry_weights(s: torch.Tensor, c: torch.Tensor, cw: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every skewed cell, the probabilities that it was entered vertically, horizontally and
    diagonally: the soft-min weights of its three entries ``s[pred] - c``. Normalising over the
    entries, instead of dividing by ``exp(s[cell])``, keeps them a distribution however far
    ``R / gamma`` lies beyond the dtype's precision. 0 for a cell nothing enters."""
    vert, horiz, diag = (torch.full_like(s, -math.inf) for _ in range(3))
    vert[1:, :, 1:] = s[:-1, :, :-1] - c[1:, :, 1:]
    horiz[1:] = s[:-1] - c[1:]
    diag[2:, :, 1:] = s[:-2, :, :-1] - cw[2:, :, 1:]
    top = torch.maximum(torch.maximum(vert, horiz), diag)
    top.masked_fill_(top == -math.inf, 0.0)
    for t in (vert, horiz, diag):
        t.sub_(top).exp_()
    total = vert + horiz + diag
    total.masked_fill_(total == 0, 1.0)
    return vert.div_(total), horiz.div_(total), diag.div_(total)


def run_soft_backward(state: SoftState, w_diag: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Occupancy and ``dR/dcost``, both ``(B, N, M)`` in the caller's orientation."""
    s, c, cw, xl, yl, transposed, last = state
    w = w_diag
    rows, bsz, width = s.shape
    n, m = width - 2, rows - width - 1
    q_vert, q_horiz, q_diag = _entry_weights(s, c, cw)
    # p(successor came from here), for each cell "here" = s[2:-2, :, 1:-1]
    p_vert, p_horiz, p_diag = q_vert[3:-1, :, 2:], q_horiz[3:-1, :, 1:-1], q_diag[4:, :, 2:]
    occ = torch.zeros_like(s)
    occ[xl + yl, torch.arange(bsz, device=s.device), xl] = 1
    o_here, o_next = _rows(occ, 1), _rows(occ, 2)  # column i: cell i / cell i + 1
    pv, ph, pd = p_vert.unbind(0), p_horiz.unbind(0), p_diag.unbind(0)  # index d: diagonal d
    for r in range(last - 1, 1, -1):
        cells = o_here[r]
        cells.addcmul_(pv[r - 2], o_next[r + 1])
        cells.addcmul_(ph[r - 2], o_here[r + 1])
        cells.addcmul_(pd[r - 2], o_next[r + 2])
    grad = occ
    if w != 1:  # expected step weight into each cell: 1 + (w - 1) p(entered diagonally)
        grad = occ.clone()
        grad[4:-2, :, 2:-1] *= 1 + (w - 1) * p_diag[:-2, :, :-1]
    occ_cells, grad_cells = _cells(occ, n, m), _cells(grad, n, m)
    if transposed:
        occ_cells, grad_cells = occ_cells.transpose(1, 2), grad_cells.transpose(1, 2)
    return occ_cells.contiguous(), grad_cells.contiguous()


# ---------------------------------------------------------------------------------------------
# General steps (librosa's ``step_sizes_sigma`` / ``weights_add`` / ``weights_mul``), free starts


StepTable = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Tuple[Tuple[int, int], ...], int, int, bool]


def _skew_padded(t: torch.Tensor, fill: float, pad_diag: int, pad_col: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Skewed storage ``(N + M - 1 + pad_diag, B, N + pad_col)``, cell ``(b, i, j)`` at
    ``[i + j + pad_diag, b, i + pad_col]`` (the rest ``fill``), and its ``(B, N, M)`` cell view."""
    bsz, n, m = t.shape
    out = t.new_full((n + m - 1 + pad_diag, bsz, n + pad_col), fill)
    width = n + pad_col
    row = bsz * width
    cells = out.as_strided((bsz, n, m), (width, row + 1, row), out.storage_offset() + pad_diag * row + pad_col)
    cells.copy_(t)
    return out, cells


def run_dtw_steps(
    cost: torch.Tensor,
    start: torch.Tensor,
    x_lengths: torch.Tensor,
    y_lengths: torch.Tensor,
    steps: Tuple[Tuple[int, int], ...],
    weights_add: Tuple[float, ...],
    weights_mul: Tuple[float, ...],
) -> Tuple[torch.Tensor, StepTable]:
    """Accumulated cost ``D`` ``(B, N, M)`` for general steps, and the table :func:`trace_steps` reads.

    ``D[i, j] = min(start[i, j], min_s D[i - di_s, j - dj_s] + (mul_s c[i, j] + add_s))``, with
    ``cost`` masked (``+inf`` outside the lattice) and ``start`` ``+inf`` except where a path may
    begin. Every step moves ``i + j`` forward by ``di + dj >= 1``, so the anti-diagonal wavefront
    still holds: diagonal ``d`` reads diagonals ``d - (di + dj)`` only. An entered ``+inf`` cell
    stays ``+inf`` whatever the weights (``mul = 0`` included).
    """
    if cost.shape[1] > cost.shape[2]:  # shorter sequence along the diagonals
        cost, start = cost.transpose(1, 2), start.transpose(1, 2)
        x_lengths, y_lengths = y_lengths, x_lengths
        steps = tuple((dj, di) for di, dj in steps)
        transposed = True
    else:
        transposed = False
    bsz, n, m = cost.shape
    pad_diag = max(di + dj for di, dj in steps)
    pad_col = max(di for di, _ in steps)
    inf = math.inf
    c, _ = _skew_padded(cost, inf, pad_diag, pad_col)
    s0, _ = _skew_padded(start, inf, pad_diag, pad_col)
    entered = [torch.where(torch.isinf(c), c, c * wm + wa) for wa, wm in zip(weights_add, weights_mul)]
    acc = torch.full_like(c, inf)
    here = acc[:, :, pad_col:].unbind(0)
    preds = [acc[:, :, pad_col - di : pad_col - di + n].unbind(0) for di, _ in steps]
    g_here = [g[:, :, pad_col:].unbind(0) for g in entered]
    s_here = s0[:, :, pad_col:].unbind(0)
    lags = [di + dj for di, dj in steps]
    last = int((x_lengths + y_lengths).max()) - 2  # last diagonal any pair needs
    for d in range(last + 1):
        r = d + pad_diag
        out = here[r]
        out.copy_(s_here[r])
        for pred, g, lag in zip(preds, g_here, lags):
            torch.minimum(out, pred[r - lag] + g[r], out=out)
    cells = acc.as_strided(
        (bsz, n, m), (n + pad_col, bsz * (n + pad_col) + 1, bsz * (n + pad_col)),
        acc.storage_offset() + pad_diag * bsz * (n + pad_col) + pad_col,
    )
    table = (acc, s0, torch.stack(entered), steps, pad_diag, pad_col, transposed)
    return (cells.transpose(1, 2) if transposed else cells), table


def trace_steps(table: StepTable, ends: torch.Tensor) -> List[torch.Tensor]:
    """One ``(L_b, 2)`` int64 path per pair, from a start cell to ``ends[b] = (i, j)`` (finite,
    in the caller's orientation). Each cell's choice is recomputed for all cells at once: its
    start value wins ties, then the earlier step in ``steps`` (librosa's rule)."""
    acc, s0, entered, steps, pad_diag, pad_col, transposed = table
    rows, bsz, width = acc.shape
    n = width - pad_col
    plane = bsz * width
    start_code = len(steps)  # choice of a cell whose value is its start value (no step into it won)
    choice = torch.full(acc.shape, start_code, dtype=torch.int64, device=acc.device)
    best = s0.clone()
    for k, (di, dj) in enumerate(steps):
        cand = torch.full_like(acc, math.inf)
        lag = di + dj
        cand[lag:, :, pad_col:] = acc[: rows - lag, :, pad_col - di : pad_col - di + n] + entered[k][lag:, :, pad_col:]
        better = cand < best
        choice.masked_fill_(better, k)
        torch.where(better, cand, best, out=best)
    offsets = torch.tensor([(di + dj) * plane + di for di, dj in steps] + [0], device=acc.device)
    ei, ej = ends[:, 0], ends[:, 1]
    if transposed:
        ei, ej = ej, ei
    idx = (ei + ej + pad_diag) * plane + torch.arange(bsz, device=acc.device) * width + ei + pad_col
    flat = choice.reshape(-1)
    trail = [idx]
    for _ in range(rows - pad_diag - 1):
        idx = idx - offsets.index_select(0, flat.index_select(0, idx))  # a start cell: offset 0
        trail.append(idx)
    at = torch.stack(trail)  # (steps, B), from the end backwards; stays at the start once there
    i = at % width - pad_col
    j = at // plane - pad_diag - i
    pairs = torch.stack((i, j), -1)
    if transposed:
        pairs = pairs.flip(-1)
    lengths = ((at[1:] != at[:-1]).sum(0) + 1).tolist()
    return [pairs[: lengths[b], b].flip(0) for b in range(bsz)]
