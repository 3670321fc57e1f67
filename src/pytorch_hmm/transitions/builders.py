"""Builders for common transition topologies: fully connected and left-to-right chains."""

from __future__ import annotations

from typing import Optional, Union

import torch

from ..errors import HMMValueError
from ..validation import check_count, check_float_dtype
from .storage import Banded, Dense

__all__ = ["ergodic", "left_to_right"]


def ergodic(
    num_states: int,
    self_loop: Optional[float] = None,
    dtype: torch.dtype = torch.float32,
    device: Union[str, torch.device, None] = None,
) -> Dense:
    """Fully connected ``Dense`` transitions.

    Args:
        num_states: ``K``.
        self_loop: probability of staying; the rest is spread evenly over the other states.
            ``None`` gives the uniform matrix ``1/K``.
    """
    k = _check_num_states(num_states, dtype)
    if self_loop is None:
        probs = torch.full((k, k), 1.0 / k, dtype=dtype, device=device)
    else:
        _check_prob(self_loop, "self_loop")
        if k == 1 and self_loop != 1.0:
            raise HMMValueError(f"self_loop must be 1 for a single state; got {self_loop}")
        off = (1.0 - self_loop) / (k - 1) if k > 1 else 0.0
        probs = torch.full((k, k), off, dtype=dtype, device=device)
        probs.fill_diagonal_(self_loop)
    return Dense(torch.log(probs))


def left_to_right(
    num_states: int,
    skip: int = 0,
    self_loop: float = 0.5,
    dtype: torch.dtype = torch.float32,
    device: Union[str, torch.device, None] = None,
) -> Banded:
    """Left-to-right ``Banded`` transitions with ``W = skip + 2`` (self-loop, next, skips).

    Each state stays with probability ``self_loop`` and spreads the rest evenly over the
    forward moves that exist; the last state loops with probability 1.
    """
    k = _check_num_states(num_states, dtype)
    skip = check_count(skip, "skip", minimum=0)
    _check_prob(self_loop, "self_loop")
    w = min(skip + 2, k)
    i = torch.arange(k, device=device)[:, None]
    moves = torch.arange(w, device=device)[None, :]
    forward = (moves >= 1) & (i + moves < k)
    n_forward = forward.sum(-1, keepdim=True).to(dtype)
    probs = torch.where(forward, (1.0 - self_loop) / n_forward.clamp(min=1), torch.zeros((), dtype=dtype, device=device))
    stay = torch.where(n_forward > 0, torch.tensor(self_loop, dtype=dtype, device=device), torch.ones((), dtype=dtype, device=device))
    probs = torch.cat([stay, probs[:, 1:]], dim=-1).to(dtype)
    return Banded(torch.log(probs))


def _check_num_states(num_states: int, dtype: torch.dtype) -> int:
    check_float_dtype(dtype)
    return check_count(num_states, "num_states")


def _check_prob(p: float, name: str) -> None:
    if not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0.0 <= p <= 1.0):
        raise HMMValueError(f"{name} must be a probability in [0, 1]; got {p!r}")
