"""Transition storages for the chain kernel: one interface, three layouts.

A structure wraps a tensor of transition log-probabilities in one of three storages:

* :class:`Dense`  ``(K, K)``, ``(B, K, K)`` or time-varying ``(B, T-1, K, K)``;
  entry ``[i, j] = log p(z_{t+1} = j | z_t = i)``.
* :class:`Banded` ``(K, W)``, ``(B, K, W)`` or time-varying ``(B, T-1, K, W)``;
  entry ``[i, w] = log p(z_{t+1} = i + w | z_t = i)`` for ``w = 0..W-1`` (self-loop, next,
  skip, ...). Moves past the last state do not exist: those entries are ignored.
* :class:`Sparse` any graph as predecessor lists: ``predecessors`` ``(K, P)`` or ``(B, K, P)``
  int64 (``-1`` = unused slot) and ``log_probs`` ``(K, P)``, ``(B, K, P)`` or time-varying
  ``(B, T-1, K, P)``; entry ``[j, p] = log p(z_{t+1} = j | z_t = predecessors[j, p])``.
  Cost per frame ``O(K * P)``.

For time-varying storages index ``t`` is the step from frame ``t`` to frame ``t + 1``.
Entries may be any finite log-potential or ``-inf`` (no edge); they need not be normalised.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from ..errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from ..validation import FLOAT_DTYPES, check_stochastic, check_tensor

__all__ = ["TransitionStructure", "Dense", "Banded", "Sparse"]


class TransitionStructure:
    """Common interface of :class:`Dense`, :class:`Banded` and :class:`Sparse`.

    Attributes:
        log_probs: the wrapped tensor (may require grad; gradients flow through the kernel).
        num_states: ``K``.
        width: ``K`` for dense, ``W`` for banded, ``P`` for sparse storage.
        batch_size: ``B`` for batched storage, ``None`` when shared by the whole batch.
        time_varying: whether there is a ``T-1`` axis of per-step transitions.
    """

    kind: str = ""
    _last_dim_name: str = ""

    def __init__(self, log_probs: torch.Tensor) -> None:
        name = type(self).__name__
        check_tensor(log_probs, f"{name} log_probs", f"(K, {self._last_dim_name})")
        if log_probs.dtype not in FLOAT_DTYPES:
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
        check_stochastic(probs, "probs")
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
        check_stochastic(probs, "probs", valid=valid)
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


class Sparse(TransitionStructure):
    """Any transition graph as predecessor lists: ``log_probs[..., j, p] = log p(j | predecessors[..., j, p])``.

    Args:
        predecessors: ``(K, P)`` or ``(B, K, P)`` integer source states in ``[0, K)``; ``-1``
            marks an unused slot (its ``log_probs`` entry is ignored). A source listed twice
            for the same destination is two parallel edges (their probabilities add).
        log_probs: ``(K, P)``, ``(B, K, P)`` or time-varying ``(B, T-1, K, P)`` float.

    Cost per frame is ``O(K * P)`` (``P``: the largest in-degree). Forced-alignment graphs
    (optional silences, pronunciation variants) are sparse.
    """

    kind = "sparse"
    _last_dim_name = "P"

    def __init__(self, predecessors: torch.Tensor, log_probs: torch.Tensor) -> None:
        check_tensor(predecessors, "Sparse predecessors", "(K, P) or (B, K, P)")
        if predecessors.dtype.is_floating_point or predecessors.dtype.is_complex or predecessors.dtype == torch.bool:
            raise HMMDtypeError(f"Sparse predecessors must have an integer dtype; got {predecessors.dtype}")
        if predecessors.ndim not in (2, 3):
            raise HMMDimensionError(
                f"Sparse predecessors must be (K, P) or (B, K, P); got {tuple(predecessors.shape)}",
                expected_shape=("K", "P"),
                actual_shape=predecessors.shape,
            )
        self.predecessors = predecessors.long()
        super().__init__(log_probs)

    def _check_storage(self) -> None:
        pred, lp = self.predecessors, self.log_probs
        k, p = pred.shape[-2:]
        if lp.shape[-2:] != pred.shape[-2:] or (pred.ndim == 3 and lp.ndim >= 3 and lp.shape[0] != pred.shape[0]):
            raise HMMDimensionError(
                f"Sparse log_probs must match predecessors {tuple(pred.shape)} in B, K and P "
                f"(shape (K, P), (B, K, P) or (B, T-1, K, P)); got {tuple(lp.shape)}",
                expected_shape=tuple(pred.shape),
                actual_shape=lp.shape,
            )
        if pred.ndim == 3 and lp.ndim == 2:
            raise HMMDimensionError(
                f"Sparse log_probs must be batched like predecessors {tuple(pred.shape)}; got {tuple(lp.shape)}",
                expected_shape=tuple(pred.shape),
                actual_shape=lp.shape,
                suggestion="expand log_probs to (B, K, P)",
            )
        if k < 1 or p < 1:
            raise HMMDimensionError(
                f"Sparse predecessors must have at least one state and one slot (K >= 1, P >= 1); got {tuple(pred.shape)}",
                expected_shape=("K>0", "P>0"),
                actual_shape=pred.shape,
            )
        if pred.device != lp.device:
            raise HMMDeviceError(f"Sparse predecessors must be on the device of log_probs ({lp.device}); got {pred.device}")
        if pred.numel() and (int(pred.min()) < -1 or int(pred.max()) >= k):
            raise HMMValueError(
                f"Sparse predecessors must be source states in [0, K) = [0, {k}) or -1 (unused slot); "
                f"got values in [{int(pred.min())}, {int(pred.max())}]"
            )
        if pred.ndim == 3:
            self.batch_size = int(pred.shape[0])

    def valid_mask(self) -> torch.Tensor:
        """``(K, P)`` or ``(B, K, P)`` bool: True where the slot holds an edge."""
        return self.predecessors >= 0

    def to(self, *args, **kwargs) -> "Sparse":
        lp = self.log_probs.to(*args, **kwargs)
        return Sparse(self.predecessors.to(lp.device), lp)

    def to_dense(self) -> Dense:
        """The same transitions in ``Dense`` storage (``-inf`` where there is no edge; parallel edges summed)."""
        k, p = self.num_states, self.width
        used = self.valid_mask()
        if self.log_probs.ndim == 4 and used.ndim == 3:
            used = used.unsqueeze(1)  # batched predecessors, time-varying log-probs
        lp = self.log_probs.masked_fill(~used, float("-inf"))
        pred = self.predecessors.clamp(min=0)
        if lp.ndim == 4 and pred.ndim == 3:
            pred = pred.unsqueeze(1)
        pred = pred.expand(lp.shape)
        dense = lp.new_full(lp.shape[:-2] + (k, k), float("-inf"))
        dest = torch.arange(k, device=lp.device)
        for slot in range(p):  # within one slot every destination has one source: no collisions
            flat = lp.new_full((dense[..., 0, 0].numel(), k * k), float("-inf"))
            index = (pred[..., slot] * k + dest).reshape(-1, k)
            flat = flat.scatter(1, index, lp[..., slot].reshape(-1, k))
            dense = torch.logaddexp(dense, flat.reshape(dense.shape))
        return Dense(dense)

    @classmethod
    def from_dense(cls, dense: Union[Dense, torch.Tensor]) -> "Sparse":
        """The edges of a ``Dense`` structure (entries that are ``-inf`` everywhere are dropped)."""
        if not isinstance(dense, (Dense, torch.Tensor)):
            raise HMMTypeError(f"Sparse.from_dense needs a Dense structure or a (..., K, K) tensor; got {type(dense).__name__}")
        lp = dense.log_probs if isinstance(dense, Dense) else Dense(dense).log_probs
        exists = torch.isfinite(lp) | torch.isnan(lp)
        edges = exists.reshape((-1,) + lp.shape[-2:]).any(0)  # (K source, K dest), over batch and time
        k = lp.shape[-1]
        width = max(int(edges.sum(0).max()), 1)
        order = torch.sort(edges.t().to(torch.int8), dim=-1, descending=True, stable=True).indices[:, :width]  # (K dest, P)
        used = edges.t().gather(1, order)
        predecessors = torch.where(used, order, torch.full_like(order, -1))
        moved = lp.transpose(-1, -2)  # [..., dest, source]
        index = order.expand(moved.shape[:-1] + (width,))
        log_probs = moved.gather(-1, index).masked_fill(~used, float("-inf"))
        return cls(predecessors, log_probs)  # one shared graph: (K, P) predecessors, log-probs as given

    @classmethod
    def from_banded(cls, banded: Banded) -> "Sparse":
        """The moves of a ``Banded`` structure as predecessor lists with ``P = W``.

        Slot ``w`` of state ``j`` is the move from ``j - w`` (``-1`` where ``j - w < 0``), so
        ``log_probs[..., j, w] = banded.log_probs[..., j - w, w]``; same batch and time layout.
        """
        if not isinstance(banded, Banded):
            raise HMMTypeError(f"banded must be a pytorch_hmm.transitions.Banded structure; got {type(banded).__name__}")
        k, w = banded.num_states, banded.width
        lp = banded.log_probs.masked_fill(~banded.valid_mask(), float("-inf"))
        columns = [torch.cat([lp.new_full(lp.shape[:-2] + (d,), float("-inf")), lp[..., : k - d, d]], -1) for d in range(w)]
        src = torch.arange(k, device=lp.device)[:, None] - torch.arange(w, device=lp.device)
        return cls(torch.where(src >= 0, src, -1), torch.stack(columns, -1))

    @classmethod
    def from_probs(cls, predecessors: torch.Tensor, probs: torch.Tensor) -> "Sparse":
        """Build from probabilities; each source's outgoing edges must sum to 1 (validated on the dense view)."""
        s = cls(predecessors, torch.log(probs))
        check_stochastic(s.to_dense().log_probs.exp(), "probs (outgoing edges of each source state)")
        return s

    def __repr__(self) -> str:
        return (f"Sparse(predecessors={tuple(self.predecessors.shape)}, log_probs={tuple(self.log_probs.shape)}, "
                f"dtype={self.dtype})")
