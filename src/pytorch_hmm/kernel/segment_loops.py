"""Time loops of the semi-Markov (segment) kernel in PyTorch, on any device.

Notation (0-based frames): ``cum[t] = sum_{tau < t} e[tau]`` so a segment of state ``k``
covering frames ``s .. s+d-1`` emits ``cum[s+d, k] - cum[s, k]``. With
``start[s, k]`` = log p(x_{<s}, a segment of ``k`` starts at ``s``) and
``end[t, k]`` = log p(x_{<=t}, a segment of ``k`` ends at ``t``):

* ``start[0] = init``, ``start[s, j] = logsumexp_i end[s-1, i] + A[i, j]``;
* ``end[t, k] = cum[t+1, k] + logsumexp_d (start[t-d+1, k] - cum[t-d+1, k] + dur[k, d-1])``.

The backward quantities mirror them (``bend[t]`` = log p(x_{>t} | a segment ended at ``t``),
``bstart[s]`` = log p(x_{>=s} | a segment starts at ``s``)). Writing ``u = start - cum[:-1]``
and ``v = cum[1:] + bend`` makes every step a window of the last ``D`` rows plus the duration
table: ``O(B K (K + D))`` per frame. Everything runs in float64 whatever the input dtype: the
cumulative sums of a long sequence reach ``1e5``-``1e6`` nats, where float32 would leave errors
of ``0.01``-``0.1`` nats in short segments' scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import math

import numpy as np
import torch

from .factors import exp_flushed_, static_dense_edges

NEG_INF = float("-inf")


@dataclass
class SegmentProblem:
    """Canonical inputs: ``emissions (B, T, K)`` (0 at padded frames), ``trans (B', K, K)``,
    ``durations (B', K, D)`` with ``D <= T``, ``init``/``final (B, K)``, ``lengths (B,)``."""

    emissions: torch.Tensor
    trans: torch.Tensor
    durations: torch.Tensor
    init: torch.Tensor
    final: torch.Tensor
    lengths: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        t = self.emissions.shape[1]
        return torch.arange(t, device=self.lengths.device)[None, :] < self.lengths[:, None]


def logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.logsumexp`` without its slow path on CPU.

    ``exp`` of a result that underflows takes a slow path on CPU (up to 20x here, for windows
    that span hundreds of nats, as in left-to-right chains). Terms more than ``-log(tiny) - 1``
    nats below the maximum are below the dtype's resolution of the sum, so they are clamped
    there instead; a slice whose entries are all ``-inf`` still gives ``-inf``.
    """
    top = x.amax(dim, keepdim=True)
    finite = torch.isfinite(top)
    top = torch.where(finite, top, torch.zeros((), dtype=x.dtype, device=x.device))
    lo = math.log(torch.finfo(x.dtype).tiny) + 1.0
    total = (x - top).clamp_(min=lo).exp_().sum(dim, keepdim=True).log_().add_(top)
    return torch.where(finite, total, top.new_full((), NEG_INF)).squeeze(dim)


def cumulative(p: SegmentProblem) -> Tuple[torch.Tensor, torch.Tensor]:
    """Prefix sums ``(cum, bad)``, both ``(B, T+1, K)`` with row 0 = 0.

    ``cum`` (float64) sums the finite emissions; ``bad`` (int64) counts the ``-inf`` ones, so a
    segment ``[s, e)`` is possible iff ``bad[e] == bad[s]``. Keeping ``-inf`` out of ``cum``
    avoids ``-inf - (-inf)`` in later segments of the same state.
    """
    e = p.emissions.double()
    impossible = torch.isneginf(e)
    e = e.masked_fill(impossible, 0.0)
    cum = torch.cat([torch.zeros_like(e[:, :1]), e.cumsum(1)], 1)
    bad = impossible.long().cumsum(1)
    return cum, torch.cat([torch.zeros_like(bad[:, :1]), bad], 1)


def _padded(x: torch.Tensor, before: int, after: int, fill) -> torch.Tensor:
    """``x`` ``(B, R, K)`` with ``before`` / ``after`` rows of ``fill`` added along axis 1."""
    b, _, k = x.shape
    parts = [x.new_full((b, before, k), fill), x, x.new_full((b, after, k), fill)]
    return torch.cat(parts, 1)


def forward(p: SegmentProblem, cum: torch.Tensor, bad: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(u, end)``, both ``(B, T, K)`` float64: ``u = start - cum[:, :T]`` and ``end``."""
    b, t_max, k = p.emissions.shape
    d_max = p.durations.shape[-1]
    trans = p.trans.double()
    dur = p.durations.double().flip(-1).transpose(-1, -2)  # (B', D, K); row r is duration D - r
    u = torch.full((b, t_max + d_max - 1, k), NEG_INF, dtype=torch.float64, device=cum.device)
    starts_bad = _padded(bad[:, :t_max], d_max - 1, 0, -1)  # bad count at each window start
    end = torch.empty((b, t_max, k), dtype=torch.float64, device=cum.device)
    start = p.init.double()
    for t in range(t_max):
        if t > 0:
            start = logsumexp(end[:, t - 1, :, None] + trans, 1)
        u[:, t + d_max - 1] = start - cum[:, t]
        window = (u[:, t:t + d_max] + dur).masked_fill_(starts_bad[:, t:t + d_max] != bad[:, t + 1:t + 2], NEG_INF)
        end[:, t] = cum[:, t + 1] + logsumexp(window, 1)
    return u[:, d_max - 1:], end


def backward(p: SegmentProblem, cum: torch.Tensor, bad: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(bstart, v)``, both ``(B, T, K)`` float64: ``v = cum[:, 1:] + bend``.

    ``bend[L-1] = final`` and ``bend[t] = -inf`` for ``t >= L``, so no segment runs past a
    sequence's end.
    """
    b, t_max, k = p.emissions.shape
    d_max = p.durations.shape[-1]
    trans = p.trans.double()
    dur = p.durations.double().transpose(-1, -2)  # (B', D, K); row d is duration d + 1
    final = p.final.double()
    last = (p.lengths - 1)[:, None]
    v = torch.full((b, t_max + d_max - 1, k), NEG_INF, dtype=torch.float64, device=cum.device)
    ends_bad = _padded(bad[:, 1:], 0, d_max - 1, -1)  # bad count after each window end
    bstart = torch.empty((b, t_max, k), dtype=torch.float64, device=cum.device)
    nxt = torch.full((b, k), NEG_INF, dtype=torch.float64, device=cum.device)
    for t in range(t_max - 1, -1, -1):
        if t < t_max - 1:
            nxt = logsumexp(trans + bstart[:, t + 1, None, :], 2)
        bend = torch.where(last == t, final, torch.where(last > t, nxt, NEG_INF))
        v[:, t] = cum[:, t + 1] + bend
        window = (v[:, t:t + d_max] + dur).masked_fill_(ends_bad[:, t:t + d_max] != bad[:, t:t + 1], NEG_INF)
        bstart[:, t] = logsumexp(window, 1) - cum[:, t]
    return bstart, v[:, :t_max]


def marginals(
    p: SegmentProblem, cum: torch.Tensor, bad: torch.Tensor, u: torch.Tensor, end: torch.Tensor, log_z: torch.Tensor,
    edges: bool = True,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The backward pass after :func:`forward` and every expected count, float64 (0 where ``log_z = -inf``):
    posteriors ``(B, T, K)``, duration counts ``(B, K, D)``, transition counts ``(B, K, K)`` (zeros
    unless ``edges``) and the first segment's state ``(B, K)``."""
    bstart, v = backward(p, cum, bad)
    b, t_max, k = u.shape
    feasible = torch.isfinite(log_z)
    lz = torch.where(feasible, log_z, torch.zeros((), dtype=torch.float64, device=log_z.device))
    lz3 = lz[:, None, None]

    def prob(x: torch.Tensor) -> torch.Tensor:
        return torch.where(feasible[:, None, None], exp_flushed_(x - lz3), torch.zeros((), dtype=x.dtype, device=x.device))

    starts = prob(u + cum[:, :-1] + bstart)  # p(a segment of k starts at s)
    ends = prob(end + v - cum[:, 1:])  # p(a segment of k ends at t)
    # occupancy = starts so far - ends before t (float64: the cancellation costs ~T * 1e-16)
    gamma = ((starts - ends).cumsum(1) + ends).clamp_(0.0, 1.0)
    totals = gamma.sum(-1, keepdim=True)
    gamma = torch.where(totals > 0, gamma / totals.clamp(min=1e-300), gamma)
    gamma = gamma.masked_fill(~p.mask[:, :, None], 0.0)

    dur = p.durations.double()
    counts = torch.zeros((b, k, dur.shape[-1]), dtype=torch.float64, device=u.device)
    for d in range(dur.shape[-1]):  # d + 1 = duration; segments start at s and end at s + d
        term = u[:, :t_max - d] + v[:, d:] + dur[:, None, :, d] - lz3
        term.masked_fill_(bad[:, d + 1:] != bad[:, :t_max - d], NEG_INF)  # a -inf emission inside
        counts[:, :, d] = torch.where(feasible[:, None], exp_flushed_(term).sum(1), 0.0)

    if edges and t_max > 1:
        step_ok = p.mask[:, 1:] & feasible[:, None]
        xi = static_dense_edges(p.trans.double(), end[:, :-1], bstart[:, 1:], lz[:, None].expand(-1, t_max - 1), step_ok)
    else:
        xi = torch.zeros((b, k, k), dtype=torch.float64, device=u.device)
    return gamma, counts, xi, starts[:, 0]


def log_z(p: SegmentProblem, end: torch.Tensor) -> torch.Tensor:
    """``(B,)`` float64 ``logsumexp_k end[L-1, k] + final[k]``."""
    last = (p.lengths - 1)[:, None, None].expand(-1, 1, end.shape[2])
    return torch.logsumexp(end.gather(1, last).squeeze(1) + p.final.double(), -1)


def viterbi_tables(p: SegmentProblem, cum: torch.Tensor, bad: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Max-sum forward pass: ``(end (B, T, K) float64, best duration (B, T, K), previous state (B, T, K))``.

    ``dur_bp[b, t, k]`` is the duration of the best segment of ``k`` ending at ``t``;
    ``prev_bp[b, s, k]`` the best state before a segment of ``k`` starting at ``s``.
    """
    b, t_max, k = p.emissions.shape
    d_max = p.durations.shape[-1]
    trans = p.trans.double()
    dur = p.durations.double().flip(-1).transpose(-1, -2)
    small = torch.int16 if max(k, d_max) < 2 ** 15 else torch.int32
    u = torch.full((b, t_max + d_max - 1, k), NEG_INF, dtype=torch.float64, device=cum.device)
    starts_bad = _padded(bad[:, :t_max], d_max - 1, 0, -1)
    end = torch.empty((b, t_max, k), dtype=torch.float64, device=cum.device)
    dur_bp = torch.empty((b, t_max, k), dtype=small, device=cum.device)
    prev_bp = torch.zeros((b, t_max, k), dtype=small, device=cum.device)
    start = p.init.double()
    for t in range(t_max):
        if t > 0:
            start, prev = (end[:, t - 1, :, None] + trans).max(1)
            prev_bp[:, t] = prev
        u[:, t + d_max - 1] = start - cum[:, t]
        window = (u[:, t:t + d_max] + dur).masked_fill_(starts_bad[:, t:t + d_max] != bad[:, t + 1:t + 2], NEG_INF)
        best, row = window.max(1)
        end[:, t] = cum[:, t + 1] + best
        dur_bp[:, t] = d_max - row
    return end, dur_bp, prev_bp


def backtrack(
    end: torch.Tensor, dur_bp: torch.Tensor, prev_bp: torch.Tensor, final: torch.Tensor, lengths: torch.Tensor
) -> Tuple[torch.Tensor, List[List[Tuple[int, int, int]]]]:
    """Best scores ``(B,)`` float64 and, per sequence, its segments ``[(state, start, end), ...]``.

    Runs on the host (one transfer of the small-int tables); infeasible sequences get ``[]``.
    """
    last = (lengths - 1)[:, None, None].expand(-1, 1, end.shape[2])
    scores, state = (end.gather(1, last).squeeze(1) + final.double()).max(-1)
    dur_np, prev_np = dur_bp.cpu().numpy(), prev_bp.cpu().numpy()
    ok = torch.isfinite(scores).cpu().numpy()
    segments = []
    for b, (k, length) in enumerate(zip(state.cpu().tolist(), lengths.cpu().tolist())):
        segs: List[Tuple[int, int, int]] = []
        t = length - 1
        while ok[b] and t >= 0:
            d = int(dur_np[b, t, k])
            segs.append((k, t - d + 1, t + 1))
            k, t = int(prev_np[b, t - d + 1, k]), t - d
        segments.append(segs[::-1])
    return scores, segments


def viterbi(p: SegmentProblem, cum: torch.Tensor, bad: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, List[List[Tuple[int, int, int]]]]:
    """Best ``(paths (B, T) int64, scores (B,) float64, segments)``: :func:`viterbi_tables`, then :func:`backtrack`."""
    end, dur_bp, prev_bp = viterbi_tables(p, cum, bad)
    scores, segments = backtrack(end, dur_bp, prev_bp, p.final, p.lengths)
    return paths_from_segments(segments, end.shape[1], end.device), scores, segments


def paths_from_segments(segments: List[List[Tuple[int, int, int]]], num_frames: int, device) -> torch.Tensor:
    """``(B, T)`` int64 state per frame, ``-1`` outside every segment."""
    paths = np.full((len(segments), num_frames), -1, dtype=np.int64)
    for b, segs in enumerate(segments):
        for state, s, e in segs:
            paths[b, s:e] = state
    return torch.from_numpy(paths).to(device)
