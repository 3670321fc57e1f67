"""Per-step transition factors shared by the PyTorch and numba loops.

Dense steps use the shifted matrix product ``log(exp(v - max v) @ exp(A - shift)) + shift``
(a GEMM per step instead of a ``(K, K)`` logsumexp); banded steps use shifted adds over the
``W`` moves. These helpers precompute, once per call, the exp-space matrices and shifts, and
the banded table re-indexed by destination state, and the successor lists of a predecessor-list
(sparse) graph.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F

from ..semiring import LogSemiring


def dense_forward_factors(trans: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(B', S, K, K)`` log-probs -> ``(E, shift)`` with ``E[.., i, j] = exp(A_ij - shift_j)``.

    ``shift`` ``(B', S, K)`` is the column maximum (0 for a column without edges), so that
    ``alpha_next_j = log(sum_i exp(alpha_i - m) E_ij) + m + shift_j``.
    """
    return LogSemiring.matrix_factors(trans)


def dense_backward_factors(trans: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(B', S, K, K)`` -> ``(E, shift)`` with ``E[.., j, i] = exp(A_ij - shift_i)`` (transposed).

    ``beta_i = log(sum_j exp(c_j - n) E_ji) + n + shift_i`` for ``c = emission + beta_next``.
    """
    return LogSemiring.matrix_factors(trans, reverse=True)


def banded_by_destination(trans: torch.Tensor) -> torch.Tensor:
    """``(B', S, K, W)`` indexed by source ``[i, w]`` -> indexed by destination ``[j, w] = A[j - w, w]``.

    Entries with ``j - w < 0`` are ``-inf``.
    """
    k, w = trans.shape[-2:]
    columns = [F.pad(trans[..., :, d], (d, 0), value=float("-inf"))[..., :k] for d in range(w)]
    return torch.stack(columns, dim=-1)


def window_sources(num_states: int, width: int, ahead: bool, device=None) -> torch.Tensor:
    """``(1, K, W)`` int64 source index of each banded window slot: ``[j, w] = j + w`` if ``ahead``
    else ``j - w``, ``-1`` where that leaves ``0 .. K-1`` (the gather form of :func:`shift_windows`)."""
    j = torch.arange(num_states, device=device)[:, None]
    w = torch.arange(width, device=device)[None, :]
    src = j + w if ahead else j - w
    return torch.where((src >= 0) & (src < num_states), src, -1).unsqueeze(0)


def shift_windows(v: torch.Tensor, width: int, ahead: bool) -> torch.Tensor:
    """``(..., K)`` -> ``(..., K, W)`` windows: ``[j, w] = v[j + w]`` if ``ahead`` else ``v[j - w]``.

    Out-of-range positions are ``-inf``.
    """
    if ahead:
        padded = F.pad(v, (0, width - 1), value=float("-inf"))
        return padded.unfold(-1, width, 1)
    padded = F.pad(v, (width - 1, 0), value=float("-inf"))
    return padded.unfold(-1, width, 1).flip(-1)


def successor_lists(predecessors: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(B'', K, P)`` predecessor lists -> the same edges listed by source: ``(slots, dest)`` ``(B'', K, Q)``.

    ``slots[b, i, q]`` is the flat index ``j * P + p`` of the ``q``-th edge leaving state ``i``
    (ordered by destination ``j``, then slot ``p``; ``-1`` = unused) and ``dest[b, i, q] = j``
    (``-1`` = unused). ``Q`` is the largest out-degree (at least 1); finding it costs one host
    synchronisation, once per call. Parallel edges (a source listed twice for one destination)
    stay two entries.
    """
    bb, k, p = predecessors.shape
    device = predecessors.device
    src = predecessors.reshape(bb, k * p)
    key = torch.where(src >= 0, src, k)  # unused slots sort last, into a discarded group k
    order = torch.sort(key, dim=-1, stable=True).indices
    sorted_key = key.gather(-1, order)
    counts = torch.zeros((bb, k + 1), dtype=torch.long, device=device).scatter_add_(-1, key, torch.ones_like(key))
    q = max(int(counts[:, :k].max()), 1) if k * p else 1
    start = counts.cumsum(-1) - counts
    rank = torch.arange(k * p, device=device) - start.gather(-1, sorted_key)
    target = torch.where(sorted_key < k, sorted_key * q + rank, k * q)  # unused slots land in one extra cell
    flat = torch.full((bb, k * q + 1), -1, dtype=torch.long, device=device).scatter_(-1, target, order)
    slots = flat[:, : k * q].reshape(bb, k, q)
    return slots, torch.where(slots >= 0, slots // max(p, 1), -1)


def gather_by_source(trans: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """``(B', S, K, P)`` sparse log-probs (by destination) -> ``(B', S, K, Q)`` by source, ``-inf`` at unused entries.

    ``slots`` ``(B'', K, Q)`` from :func:`successor_lists` with ``B''`` in ``{1, B'}``.
    """
    bp, s, k, p = trans.shape
    q = slots.shape[-1]
    index = slots.clamp(min=0).reshape(slots.shape[0], 1, k * q).expand(bp, s, k * q)
    out = trans.reshape(bp, s, k * p).gather(-1, index).reshape(bp, s, k, q)
    return out.masked_fill((slots < 0).unsqueeze(1), float("-inf"))


def exp_rows(table: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(..., X)`` log-probs -> ``(exp(table - shift[..., None]), shift)``, ``shift`` ``(...)`` the row
    maximum (0 for a row without moves): the exp-space factors of the gather loops."""
    shift = torch.nan_to_num(table.amax(-1), neginf=0.0)
    return exp_flushed_(table - shift.unsqueeze(-1)), shift


def exp_flushed_(d: torch.Tensor) -> torch.Tensor:
    """In place: ``exp(d)`` with results below the dtype's smallest normal number set to 0.

    Identical to ``exp`` up to denormals, and several times faster on CPU, where ``exp`` takes a
    slow path for results that are denormal or underflow (common: log-posteriors of unlikely
    states). The cutoff keeps a margin of one nat above the smallest normal number.
    """
    lo = math.log(torch.finfo(d.dtype).tiny) + 1.0
    underflow = d <= lo
    return d.clamp_(min=lo).exp_().masked_fill_(underflow, 0.0)


def static_dense_edges(
    trans: torch.Tensor, a: torch.Tensor, c: torch.Tensor, step_totals: torch.Tensor, step_ok: torch.Tensor
) -> torch.Tensor:
    """``sum_t xi_t`` ``(B, K, K)`` for one ``(B', K, K)`` matrix as a single GEMM over time.

    ``xi_t(i, j) = exp(a_t(i) + A_ij + c_t(j) - step_totals_t)``, 0 where ``step_ok`` ``(B, T-1)``
    is False. The GEMM splits per-step scale factors evenly between ``u`` and ``v`` and runs in
    float64; where alpha and beta disagree by thousands of nats it can still overflow or lose
    counts, which the totals show (every used step sums to 1): those sequences are recomputed
    exactly, in blocks of frames (one host synchronisation per call).
    """
    counts = _gemm_edges(trans, a, c, step_totals, step_ok)
    used = step_ok.sum(1).double()
    tol = math.sqrt(torch.finfo(a.dtype).eps) * used.clamp(min=1.0)
    wrong = ~((counts.sum((-2, -1)) - used).abs() <= tol)  # NaN counts as wrong
    if bool(wrong.any()):
        counts = torch.where(wrong[:, None, None], _exact_edges(trans, a, c, step_totals, step_ok), counts)
    return counts.to(a.dtype)


def _gemm_edges(trans, a, c, step_totals, step_ok) -> torch.Tensor:
    a64, c64, lz = a.double(), c.double(), step_totals.double().unsqueeze(-1)
    top = torch.nan_to_num(trans.double().amax((-2, -1), keepdim=True), neginf=0.0)  # (B', 1, 1)
    m = torch.nan_to_num(a64.amax(-1, keepdim=True), neginf=0.0)
    n = torch.nan_to_num(c64.amax(-1, keepdim=True), neginf=0.0)
    zero = torch.zeros((), dtype=torch.float64, device=a.device)
    half = torch.where(step_ok[:, :, None], (m + n + top - lz) / 2, zero)
    u = torch.where(step_ok[:, :, None], torch.exp(a64 - m + half), zero)
    v = torch.where(step_ok[:, :, None], torch.exp(c64 - n + half), zero)
    return torch.matmul(u.transpose(1, 2), v) * torch.exp(trans.double() - top)


def _exact_edges(trans, a, c, step_totals, step_ok, block_elements: int = 1 << 22) -> torch.Tensor:
    """:func:`static_dense_edges` term by term in log space, ``block_elements`` at a time."""
    bsz, steps, k = a.shape
    trans64 = trans.double().unsqueeze(1)  # (B', 1, K, K)
    out = torch.zeros((bsz, k, k), dtype=torch.float64, device=a.device)
    block = max(1, block_elements // max(bsz * k * k, 1))
    for start in range(0, steps, block):  # blocks of frames, to bound memory (not a recursion)
        t = slice(start, start + block)
        d = a[:, t, :, None].double() + trans64 + c[:, t, None, :].double() - step_totals[:, t, None, None].double()
        xi = exp_flushed_(torch.where(step_ok[:, t, None, None], d, float("-inf")))
        out += xi.sum(1)
    return out


def merge_parallel_edges(trans: torch.Tensor, index: torch.Tensor, sync: bool = True) -> torch.Tensor:
    """Sparse log-probs ``(B', S, K, P)`` with parallel edges merged: the first slot of each
    (destination, source) pair holds the ``logsumexp`` of all its slots, the others ``-inf``.

    Needed where edges are maximised over rather than summed (Viterbi: the best *state* path
    scores ``log`` of the summed probability of parallel edges). ``index`` ``(B'', K, P)``.
    With ``sync`` the graph is first checked for parallel edges (one host synchronisation) and
    returned unchanged when it has none.
    """
    p = index.shape[-1]
    same = (index.unsqueeze(-1) == index.unsqueeze(-2)) & (index >= 0).unsqueeze(-1)  # (B'', K, P, P)
    others = ~torch.eye(p, dtype=torch.bool, device=index.device)
    parallel = same & others
    if sync and not bool(parallel.any()):
        return trans
    earlier = torch.ones((p, p), dtype=torch.bool, device=index.device).tril(-1)  # [x, y]: y < x
    first = ~(parallel & earlier).any(-1)  # (B'', K, P): no earlier slot with the same source
    neg = torch.full((), float("-inf"), dtype=trans.dtype, device=trans.device)
    out = trans
    for y in range(p):
        out = torch.logaddexp(out, torch.where(parallel[..., y].unsqueeze(1), trans[..., y : y + 1], neg))
    return out.masked_fill(~first.unsqueeze(1), float("-inf"))
