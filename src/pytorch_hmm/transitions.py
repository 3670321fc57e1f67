"""Transition structures for the chain kernel and builders for common topologies.

A structure wraps a tensor of transition log-probabilities in one of two storages:

* :class:`Dense`  ``(K, K)``, ``(B, K, K)`` or time-varying ``(B, T-1, K, K)``;
  entry ``[i, j] = log p(z_{t+1} = j | z_t = i)``.
* :class:`Banded` ``(K, W)``, ``(B, K, W)`` or time-varying ``(B, T-1, K, W)``;
  entry ``[i, w] = log p(z_{t+1} = i + w | z_t = i)`` for ``w = 0..W-1`` (self-loop, next,
  skip, ...). Moves past the last state do not exist: those entries are ignored.

For time-varying storages index ``t`` is the step from frame ``t`` to frame ``t + 1``.
Entries may be any finite log-potential or ``-inf`` (no edge); they need not be normalised.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from .errors import HMMDimensionError, HMMDtypeError, HMMValueError

__all__ = ["TransitionStructure", "Dense", "Banded", "ergodic", "left_to_right"]

_FLOAT_DTYPES = (torch.float32, torch.float64)


class TransitionStructure:
    """Common interface of :class:`Dense` and :class:`Banded`.

    Attributes:
        log_probs: the wrapped tensor (may require grad; gradients flow through the kernel).
        num_states: ``K``.
        width: ``K`` for dense, ``W`` for banded storage.
        batch_size: ``B`` for batched storage, ``None`` when shared by the whole batch.
        time_varying: whether there is a ``T-1`` axis of per-step transitions.
    """

    kind: str = ""
    _last_dim_name: str = ""

    def __init__(self, log_probs: torch.Tensor) -> None:
        name = type(self).__name__
        if not isinstance(log_probs, torch.Tensor):
            raise TypeError(f"{name}(log_probs) needs a torch.Tensor; got {type(log_probs).__name__}")
        if log_probs.dtype not in _FLOAT_DTYPES:
            raise HMMDtypeError(
                f"{name} log_probs must be float32 or float64; got {log_probs.dtype}"
            )
        if log_probs.ndim not in (2, 3, 4):
            expected = ("K", self._last_dim_name)
            raise HMMDimensionError(
                f"{name} log_probs must be (K, {self._last_dim_name}), (B, K, {self._last_dim_name}) "
                f"or time-varying (B, T-1, K, {self._last_dim_name}); got {tuple(log_probs.shape)}",
                expected_shape=expected,
                actual_shape=log_probs.shape,
            )
        self.log_probs = log_probs
        self.num_states = int(log_probs.shape[-2])
        self.width = int(log_probs.shape[-1])
        self.batch_size: Optional[int] = int(log_probs.shape[0]) if log_probs.ndim >= 3 else None
        self.time_varying = log_probs.ndim == 4
        self._check_storage()

    def _check_storage(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        return self.log_probs.dtype

    @property
    def device(self) -> torch.device:
        return self.log_probs.device

    def to(self, *args, **kwargs) -> "TransitionStructure":
        """A structure of the same storage with ``log_probs.to(*args, **kwargs)``."""
        return type(self)(self.log_probs.to(*args, **kwargs))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={tuple(self.log_probs.shape)}, dtype={self.dtype})"


class Dense(TransitionStructure):
    """Full ``K x K`` transitions: ``log_probs[..., i, j] = log p(j | i)``."""

    kind = "dense"
    _last_dim_name = "K"

    def _check_storage(self) -> None:
        if self.width != self.num_states:
            raise HMMDimensionError(
                f"Dense log_probs must be square in its last two dimensions (..., K, K); "
                f"got {tuple(self.log_probs.shape)}",
                expected_shape=("K", "K"),
                actual_shape=self.log_probs.shape,
                suggestion="for left-to-right chains stored as (K, W) use Banded",
            )

    @classmethod
    def from_probs(cls, probs: torch.Tensor) -> "Dense":
        """Build from probabilities whose rows sum to 1 (validated)."""
        _check_row_stochastic(probs, "probs", valid=None)
        return cls(torch.log(probs))


class Banded(TransitionStructure):
    """Left-to-right transitions with skips: ``log_probs[..., i, w] = log p(i + w | i)``.

    Cost per frame is ``O(K * W)``. Entries with ``i + w >= K`` are ignored.
    """

    kind = "banded"
    _last_dim_name = "W"

    def _check_storage(self) -> None:
        if not 1 <= self.width <= self.num_states:
            raise HMMDimensionError(
                f"Banded log_probs must be (..., K, W) with 1 <= W <= K; got {tuple(self.log_probs.shape)}",
                expected_shape=("K", "W"),
                actual_shape=self.log_probs.shape,
            )

    def valid_mask(self) -> torch.Tensor:
        """``(K, W)`` bool: True where the move ``i -> i + w`` exists (``i + w < K``)."""
        i = torch.arange(self.num_states, device=self.device)[:, None]
        w = torch.arange(self.width, device=self.device)[None, :]
        return i + w < self.num_states

    @classmethod
    def from_probs(cls, probs: torch.Tensor) -> "Banded":
        """Build from probabilities whose existing moves sum to 1 per row (validated)."""
        if isinstance(probs, torch.Tensor) and probs.ndim >= 2:
            k, w = probs.shape[-2:]
            valid = torch.arange(k, device=probs.device)[:, None] + torch.arange(w, device=probs.device) < k
        else:
            valid = None
        _check_row_stochastic(probs, "probs", valid=valid)
        return cls(torch.log(probs))

    def to_dense(self) -> Dense:
        """The same transitions in ``Dense`` storage (``-inf`` off the band)."""
        k, w = self.num_states, self.width
        lp = self.log_probs.masked_fill(~self.valid_mask(), float("-inf"))
        dense = lp.new_full(lp.shape[:-1] + (k + w - 1,), float("-inf"))
        # row i of the band lands in columns i .. i + w - 1
        idx = (torch.arange(k, device=lp.device)[:, None] + torch.arange(w, device=lp.device)).expand(lp.shape)
        dense = dense.scatter(-1, idx, lp)
        return Dense(dense[..., :k])


def _check_row_stochastic(probs: torch.Tensor, name: str, valid: Optional[torch.Tensor]) -> None:
    if not isinstance(probs, torch.Tensor) or probs.dtype not in _FLOAT_DTYPES:
        raise HMMDtypeError(f"{name} must be a float32/float64 tensor; got {getattr(probs, 'dtype', type(probs))}")
    if torch.isnan(probs).any() or (probs < 0).any() or (probs > 1).any():
        raise HMMValueError(f"{name} must hold probabilities in [0, 1]; got values outside that range or NaN")
    p = probs if valid is None else probs.masked_fill(~valid, 0.0)
    sums = p.sum(-1)
    tol = 1e-4 if probs.dtype == torch.float32 else 1e-8
    if ((sums - 1).abs() > tol).any():
        bad = sums.flatten()[((sums - 1).abs() > tol).flatten()][0].item()
        raise HMMValueError(f"each row of {name} must sum to 1 (within {tol:g}); found a row summing to {bad:.6g}")


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
    _check_num_states(num_states)
    k = num_states
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
    _check_num_states(num_states)
    if not isinstance(skip, int) or skip < 0:
        raise HMMValueError(f"skip must be a non-negative int; got {skip!r}")
    _check_prob(self_loop, "self_loop")
    k = num_states
    w = min(skip + 2, k)
    i = torch.arange(k, device=device)[:, None]
    moves = torch.arange(w, device=device)[None, :]
    forward = (moves >= 1) & (i + moves < k)
    n_forward = forward.sum(-1, keepdim=True).to(dtype)
    probs = torch.where(forward, (1.0 - self_loop) / n_forward.clamp(min=1), torch.zeros((), dtype=dtype, device=device))
    stay = torch.where(n_forward > 0, torch.tensor(self_loop, dtype=dtype, device=device), torch.ones((), dtype=dtype, device=device))
    probs = torch.cat([stay, probs[:, 1:]], dim=-1).to(dtype)
    return Banded(torch.log(probs))


def _check_num_states(num_states: int) -> None:
    if not isinstance(num_states, int) or num_states < 1:
        raise HMMValueError(f"num_states must be a positive int; got {num_states!r}")


def _check_prob(p: float, name: str) -> None:
    if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
        raise HMMValueError(f"{name} must be a probability in [0, 1]; got {p!r}")
