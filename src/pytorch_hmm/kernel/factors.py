"""Per-step transition factors shared by the PyTorch and numba loops.

Dense steps use the shifted matrix product ``log(exp(v - max v) @ exp(A - shift)) + shift``
(a GEMM per step instead of a ``(K, K)`` logsumexp); banded steps use shifted adds over the
``W`` moves. These helpers precompute, once per call, the exp-space matrices and shifts, and
the banded table re-indexed by destination state.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def dense_forward_factors(trans: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(B', S, K, K)`` log-probs -> ``(E, shift)`` with ``E[.., i, j] = exp(A_ij - shift_j)``.

    ``shift`` ``(B', S, K)`` is the column maximum (0 for a column without edges), so that
    ``alpha_next_j = log(sum_i exp(alpha_i - m) E_ij) + m + shift_j``.
    """
    shift = torch.nan_to_num(trans.amax(-2), neginf=0.0)
    return torch.exp(trans - shift.unsqueeze(-2)), shift


def dense_backward_factors(trans: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(B', S, K, K)`` -> ``(E, shift)`` with ``E[.., j, i] = exp(A_ij - shift_i)`` (transposed).

    ``beta_i = log(sum_j exp(c_j - n) E_ji) + n + shift_i`` for ``c = emission + beta_next``.
    """
    shift = torch.nan_to_num(trans.amax(-1), neginf=0.0)
    return torch.exp(trans - shift.unsqueeze(-1)).transpose(-1, -2).contiguous(), shift


def banded_by_destination(trans: torch.Tensor) -> torch.Tensor:
    """``(B', S, K, W)`` indexed by source ``[i, w]`` -> indexed by destination ``[j, w] = A[j - w, w]``.

    Entries with ``j - w < 0`` are ``-inf``.
    """
    k, w = trans.shape[-2:]
    columns = [F.pad(trans[..., :, d], (d, 0), value=float("-inf"))[..., :k] for d in range(w)]
    return torch.stack(columns, dim=-1)


def shift_windows(v: torch.Tensor, width: int, ahead: bool) -> torch.Tensor:
    """``(..., K)`` -> ``(..., K, W)`` windows: ``[j, w] = v[j + w]`` if ``ahead`` else ``v[j - w]``.

    Out-of-range positions are ``-inf``.
    """
    if ahead:
        padded = F.pad(v, (0, width - 1), value=float("-inf"))
        return padded.unfold(-1, width, 1)
    padded = F.pad(v, (width - 1, 0), value=float("-inf"))
    return padded.unfold(-1, width, 1).flip(-1)
