"""Semirings of the chain kernel: they carry its recursion.

One chain step is ``next_j = (+)_x (v[source(j, x)] (x) A[j, x])``, the same for every
transition storage; the semiring decides what ``(+)`` is:

* :class:`LogSemiring` ``(logsumexp, +)`` sums over paths: the forward / backward algorithm;
* :class:`MaxSemiring` ``(max, +)`` keeps the best path: Viterbi (``sum_with_argmax`` also
  returns the maximising index, which the kernel turns into a backpointer).

Path scores are always combined along a path by ``+`` (log space). Besides ``sum`` over an
axis, each semiring provides the vector-matrix product of a dense step (``vecmat``) from
factors precomputed once per call (``matrix_factors``): for ``LogSemiring`` the max-shifted
GEMM ``log(exp(v - max v) @ exp(A - shift)) + max v + shift``, for ``MaxSemiring`` a
broadcast max. The GEMM underflows where a state's best source lies far below the best state
(about 87 nats in float32, 700 in float64): ``vecmat_checked`` returns the column sums that show it and
``vecmat_exact`` computes the step as an exact ``logsumexp``. The step functions that use them are in :mod:`pytorch_hmm.kernel.steps`.
"""

from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["LogSemiring", "MaxSemiring", "log_normalise", "logsumexp_", "underflow_threshold"]


def underflow_threshold(dtype: torch.dtype, k: int) -> float:
    """Smallest exp-space column sum of a shifted GEMM step that is still exact to ``eps``.

    The terms a shifted product drops (factors below the smallest normal number, denormal
    products) add up to less than ``3 K tiny``; a column sum above ``4 K tiny / eps`` therefore
    has its full relative precision, one below it is recomputed exactly.
    """
    info = torch.finfo(dtype)
    return 4.0 * k * info.tiny / info.eps


def log_normalise(logits: torch.Tensor) -> torch.Tensor:
    """``log_softmax`` over the last axis; a row without any finite entry (a state that emits,
    moves or lasts nothing) stays all ``-inf`` with zero gradient instead of becoming NaN."""
    empty = ~torch.isfinite(logits).any(-1, keepdim=True)
    return torch.log_softmax(logits.masked_fill(empty, 0.0), -1).masked_fill(empty, float("-inf"))


def _log_vecmat(
    v: torch.Tensor, exp_matrix: torch.Tensor, shift: torch.Tensor, normalised: bool = False
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(log(exp(v) @ exp(A)), sums)`` for ``v`` ``(B, K)`` given ``exp_matrix = exp(A - shift)``.

    ``sums`` ``(B, K)`` are the exp-space column sums: below :func:`underflow_threshold` the
    product may have lost mass to underflow (or had none). ``normalised``: every row of ``v``
    has maximum 0 or is all ``-inf`` (a scaled forward pass), so the max-shift (three ops of
    the ~ten a step costs in eager PyTorch) is skipped; the result is the same.
    """
    if normalised:
        out = torch.matmul(torch.exp(v).unsqueeze(-2), exp_matrix).squeeze(-2)
        m = None
    else:
        m = torch.nan_to_num(v.amax(-1, keepdim=True), neginf=0.0)
        out = torch.matmul(torch.exp(v - m).unsqueeze(-2), exp_matrix).squeeze(-2)
    if out.requires_grad:  # unreachable states (out == 0): -inf with zero gradient, not NaN
        reached = out > 0
        log_out = torch.where(reached, torch.log(torch.where(reached, out, 1.0)), float("-inf"))
    else:
        log_out = torch.log(out)
    return (log_out + shift if m is None else log_out + m + shift), out


def _logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.logsumexp``; under autograd, rows that are all ``-inf`` get zero gradient instead of NaN."""
    if not x.requires_grad:
        return torch.logsumexp(x, dim)
    alive = ~torch.isneginf(x).all(dim, keepdim=True)
    out = torch.logsumexp(torch.where(alive, x, 0.0), dim)
    return torch.where(alive.squeeze(dim), out, float("-inf"))


def logsumexp_(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.logsumexp(x, dim)``, computed in ``x``'s own memory when ``x`` needs no gradient
    (``x`` is then overwritten): one large temporary fewer and 2-10x faster than
    ``torch.logsumexp`` on the short reductions of mixture densities. Rows that are all
    ``-inf`` give ``-inf``; NaN propagates.

    Terms more than 80 below the row's largest (``exp(-80) ~ 1.8e-35``, nothing beside its
    ``exp(0) = 1``) are raised to ``-80`` first: ``exp`` is about 10x slower where it underflows.
    """
    if x.requires_grad:
        return _logsumexp(x, dim)
    top = x.amax(dim, keepdim=True)
    empty = torch.isneginf(top).squeeze(dim)
    top.masked_fill_(~torch.isfinite(top), 0.0)
    out = x.sub_(top).clamp_min_(-80.0).exp_().sum(dim).log_().add_(top.squeeze(dim))
    return out.masked_fill_(empty, float("-inf"))


class LogSemiring:
    """``(logsumexp, +)``: sums over paths in log space."""

    zero = float("-inf")
    one = 0.0

    @staticmethod
    def sum(x: torch.Tensor, dim: int) -> torch.Tensor:
        return _logsumexp(x, dim)  # -inf (not NaN) where every entry is -inf

    @staticmethod
    def matrix_factors(trans: torch.Tensor, reverse: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(..., K, K)`` log-probs ``[i, j]`` -> ``(E, shift)`` for :meth:`vecmat`.

        Forward (``reverse=False``): ``E[.., i, j] = exp(A_ij - shift_j)`` with ``shift`` the
        column maximum (0 for a column without edges), so that
        ``next_j = log(sum_i exp(v_i - m) E_ij) + m + shift_j``. Reverse: the same for ``A``
        transposed (``next_i = log sum_j exp(c_j + A_ij)``), ``E`` stored contiguous.
        """
        if reverse:
            shift = torch.nan_to_num(trans.amax(-1), neginf=0.0)
            return torch.exp(trans - shift.unsqueeze(-1)).transpose(-1, -2).contiguous(), shift
        shift = torch.nan_to_num(trans.amax(-2), neginf=0.0)
        return torch.exp(trans - shift.unsqueeze(-2)), shift

    @staticmethod
    def vecmat(v: torch.Tensor, factors: Tuple[torch.Tensor, torch.Tensor], s: int) -> torch.Tensor:
        """``(B, K)`` ``v`` times step ``s`` of the ``(B', S, K, K)`` factors: ``(B, K)``."""
        return LogSemiring.vecmat_checked(v, factors, s)[0]

    @staticmethod
    def vecmat_checked(
        v: torch.Tensor, factors: Tuple[torch.Tensor, torch.Tensor], s: int, normalised: bool = False
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`vecmat` and the exp-space column sums ``(B, K)``: where they fall below
        :func:`underflow_threshold` the step may have lost mass, and :meth:`vecmat_exact` is exact.
        ``normalised``: ``v``'s rows have maximum 0 (or are all ``-inf``), see :func:`_log_vecmat`."""
        matrix, shift = factors
        return _log_vecmat(v, matrix[:, s], shift[:, s], normalised)

    @staticmethod
    def vecmat_exact(v: torch.Tensor, trans: torch.Tensor, s: int) -> torch.Tensor:
        """The same product as an exact ``logsumexp`` over ``(B, K, K)``: ``trans`` ``(B', S, K, K)``
        log-probs ``[source, destination]``. ``O(K^2)`` exps per step instead of a GEMM."""
        return _logsumexp(v.unsqueeze(-1) + trans[:, s], -2)


class MaxSemiring:
    """``(max, +)``: keeps the best path; ``sum_with_argmax`` also returns its index."""

    zero = float("-inf")
    one = 0.0

    @staticmethod
    def sum(x: torch.Tensor, dim: int) -> torch.Tensor:
        return x.amax(dim)

    @staticmethod
    def sum_with_argmax(x: torch.Tensor, dim: int) -> Tuple[torch.Tensor, torch.Tensor]:
        values, index = x.max(dim)  # the first maximum on ties
        return values, index

    @staticmethod
    def matrix_factors(trans: torch.Tensor, reverse: bool = False) -> torch.Tensor:
        """The log-probs themselves, indexed ``[source, destination]`` (transposed if ``reverse``)."""
        return trans.transpose(-1, -2) if reverse else trans

    @staticmethod
    def vecmat(v: torch.Tensor, factors: torch.Tensor, s: int) -> torch.Tensor:
        return (v.unsqueeze(-1) + factors[:, s]).amax(-2)

    @staticmethod
    def vecmat_with_argmax(v: torch.Tensor, factors: torch.Tensor, s: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(best (B, K), source state (B, K))`` of the step."""
        return MaxSemiring.sum_with_argmax(v.unsqueeze(-1) + factors[:, s], -2)
