"""Validation and canonical form of the chain kernel's inputs.

Every public kernel routine calls :func:`prepare`, which checks the user's tensors at the
boundary (one host synchronisation, never inside the time loop) and returns a
:class:`ChainProblem` whose tensors have fixed ranks:

* ``emissions`` ``(B, T, K)``, padded frames set to 0;
* ``trans`` ``(B', S, K, X)`` with ``B'`` in ``{1, B}``, ``S`` = 1 (static) or ``T - 1``
  (time-varying, padded steps set to 0), ``X`` = ``K`` (dense) or ``W`` (banded, moves past
  the last state set to ``-inf``);
* ``init``, ``final`` ``(B, K)``; ``lengths`` ``(B,)`` int64 on the emissions' device.

The canonicalisation uses differentiable ops only, so gradients reach the user's tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch

from ..errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMValueError
from ..transitions import Dense, TransitionStructure

_FLOAT_DTYPES = (torch.float32, torch.float64)

LengthsLike = Union[torch.Tensor, Sequence[int], None]


def frame_mask(lengths, num_frames: int, device) -> torch.Tensor:
    """``(B, T)`` bool, True at frames before each sequence's length."""
    return torch.arange(num_frames, device=device)[None, :] < torch.as_tensor(lengths, device=device)[:, None]


@dataclass
class ChainProblem:
    """Canonical kernel inputs (see module docstring for shapes)."""

    emissions: torch.Tensor
    trans: torch.Tensor
    kind: str  # "dense" or "banded"
    init: torch.Tensor
    final: torch.Tensor
    lengths: torch.Tensor
    time_varying: bool

    @property
    def shape(self) -> torch.Size:
        return self.emissions.shape

    @property
    def mask(self) -> torch.Tensor:
        """``(B, T)`` bool, True at valid frames."""
        return frame_mask(self.lengths, self.emissions.shape[1], self.emissions.device)

    def detached(self) -> "ChainProblem":
        return ChainProblem(
            self.emissions.detach(), self.trans.detach(), self.kind,
            self.init.detach(), self.final.detach(), self.lengths, self.time_varying,
        )


def as_structure(transitions: Union[TransitionStructure, torch.Tensor]) -> TransitionStructure:
    """Accept a structure, or a plain tensor taken as ``Dense`` log-probabilities."""
    if isinstance(transitions, TransitionStructure):
        return transitions
    if isinstance(transitions, torch.Tensor):
        return Dense(transitions)
    raise TypeError(
        "transitions must be a pytorch_hmm.transitions.Dense or Banded structure "
        f"(or a (K, K) log-probability tensor); got {type(transitions).__name__}"
    )


def prepare(
    log_emissions: torch.Tensor,
    transitions: Union[TransitionStructure, torch.Tensor],
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
) -> ChainProblem:
    """Validate the kernel's inputs and return their canonical form."""
    e = _check_emissions(log_emissions)
    b, t, k = e.shape
    structure = as_structure(transitions)
    _check_structure(structure, e)
    init = _check_state_vector(log_init, "log_init", e)
    final = (
        torch.zeros((b, k), dtype=e.dtype, device=e.device)
        if log_final is None
        else _check_state_vector(log_final, "log_final", e)
    )
    lens = _check_lengths(lengths, e)
    mask = frame_mask(lens, t, e.device)

    trans = structure.log_probs
    if structure.kind == "banded":
        trans = trans.masked_fill(~structure.valid_mask(), float("-inf"))
    if structure.time_varying:
        step_valid = mask[:, 1:]  # step t (frame t -> t+1) is used iff t + 1 < length
        _check_finite_or_neginf(trans, "transitions.log_probs", step_valid[:, :, None, None])
        trans = torch.where(step_valid[:, :, None, None], trans, torch.zeros((), dtype=e.dtype, device=e.device))
    else:
        _check_finite_or_neginf(trans, "transitions.log_probs", None)
        trans = trans.unsqueeze(-3)  # add S = 1
        if structure.batch_size is None:
            trans = trans.unsqueeze(0)  # B' = 1
    e = torch.where(mask[:, :, None], e, torch.zeros((), dtype=e.dtype, device=e.device))
    _check_finite_or_neginf(e, "log_emissions", None)
    _check_finite_or_neginf(init, "log_init", None)
    _check_finite_or_neginf(final, "log_final", None)
    return ChainProblem(e, trans, structure.kind, init, final, lens, structure.time_varying)


def _check_emissions(x: torch.Tensor) -> torch.Tensor:
    return check_frame_scores(x, "log_emissions", "K", "state")


def check_frame_scores(x: torch.Tensor, name: str, last: str, unit: str, layout: str = "") -> torch.Tensor:
    """A non-empty float32/float64 ``(B, T, last)`` tensor of per-frame scores (emissions, CTC
    log-probabilities); ``unit`` names the last axis' entries, ``layout`` prefixes the shape."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, T, {last}); got {type(x).__name__}")
    if x.ndim != 3:
        raise HMMDimensionError(
            f"{name} must be {layout}(B, T, {last}); got shape {tuple(x.shape)}",
            expected_shape=("B", "T", last),
            actual_shape=x.shape,
            suggestion=f"for a single sequence use {name}.unsqueeze(0)" if x.ndim == 2 else None,
        )
    if x.dtype not in _FLOAT_DTYPES:
        raise HMMDtypeError(f"{name} must be float32 or float64; got {x.dtype}")
    if 0 in x.shape:
        raise HMMDimensionError(
            f"{name} must have at least one sequence, frame and {unit}; got shape {tuple(x.shape)}",
            expected_shape=("B>0", "T>0", f"{last}>0"),
            actual_shape=x.shape,
        )
    return x


def _check_structure(s: TransitionStructure, e: torch.Tensor) -> None:
    b, t, k = e.shape
    shape = tuple(s.log_probs.shape)
    if s.num_states != k:
        raise HMMDimensionError(
            f"transitions must describe K == {k} states to match log_emissions {tuple(e.shape)}; "
            f"got {type(s).__name__} log_probs of shape {shape} ({s.num_states} states)",
            expected_shape=(k, k if s.kind == "dense" else "W"),
            actual_shape=shape,
        )
    if s.batch_size is not None and s.batch_size != b:
        raise HMMDimensionError(
            f"batched transitions must have B == {b} (the batch size of log_emissions); got shape {shape}",
            expected_shape=(b,) + shape[1:],
            actual_shape=shape,
            suggestion="pass an unbatched (K, ...) structure to share it across the batch",
        )
    if s.time_varying and shape[1] != t - 1:
        raise HMMDimensionError(
            f"time-varying transitions must have T-1 == {t - 1} steps for T == {t} frames; got shape {shape}",
            expected_shape=(b, t - 1) + shape[2:],
            actual_shape=shape,
        )
    if s.dtype != e.dtype:
        raise HMMDtypeError(
            f"transitions.log_probs must have the dtype of log_emissions ({e.dtype}); got {s.dtype}"
        )
    if s.device != e.device:
        raise HMMDeviceError(
            f"transitions.log_probs must be on the device of log_emissions ({e.device}); got {s.device}"
        )


def _check_state_vector(x: torch.Tensor, name: str, e: torch.Tensor) -> torch.Tensor:
    b, _, k = e.shape
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (K,) or (B, K); got {type(x).__name__}")
    if x.shape not in ((k,), (b, k)):
        raise HMMDimensionError(
            f"{name} must be (K,) or (B, K) with B == {b}, K == {k}; got shape {tuple(x.shape)}",
            expected_shape=(b, k),
            actual_shape=x.shape,
        )
    if x.dtype != e.dtype:
        raise HMMDtypeError(f"{name} must have the dtype of log_emissions ({e.dtype}); got {x.dtype}")
    if x.device != e.device:
        raise HMMDeviceError(f"{name} must be on the device of log_emissions ({e.device}); got {x.device}")
    return x.expand(b, k)


def check_lengths(
    lengths: LengthsLike,
    name: str,
    batch: int,
    limit: Optional[int],
    device,
    *,
    low: int = 1,
    limit_name: Optional[str] = None,
) -> torch.Tensor:
    """Validate ``lengths`` (``None``, a ``(B,)`` integer tensor or a sequence of ints).

    Returns ``(B,)`` int64 on ``device`` with values in ``[low, limit]`` (``limit=None``: no upper
    bound), all ``limit`` when ``lengths`` is ``None``. Errors name the argument ``name``;
    ``limit_name`` (e.g. ``"T"``) also names the upper bound in the range message. One host
    sync (the range check).
    """
    if lengths is None:
        if limit is None:
            raise HMMValueError(f"{name} is required")
        return torch.full((batch,), limit, dtype=torch.long, device=device)
    if not isinstance(lengths, torch.Tensor):
        try:
            lengths = torch.as_tensor(lengths)
        except (TypeError, ValueError, RuntimeError) as err:
            raise HMMValueError(f"{name} must be a (B,) sequence of integers; got {lengths!r}") from err
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise HMMDtypeError(f"{name} must have an integer dtype; got {lengths.dtype}")
    if lengths.shape != (batch,):
        raise HMMDimensionError(
            f"{name} must be (B,) with B == {batch}; got shape {tuple(lengths.shape)}",
            expected_shape=(batch,),
            actual_shape=lengths.shape,
        )
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < low or (limit is not None and hi > limit):
        if limit is None:
            bound = f">= {low}"
        else:
            bound = "in " + (f"[{low}, {limit_name}] = " if limit_name else "") + f"[{low}, {limit}]"
        raise HMMValueError(f"{name} must be {bound}; got values in [{lo}, {hi}]")
    return lengths.to(device=device, dtype=torch.long)


def _check_lengths(lengths: LengthsLike, e: torch.Tensor) -> torch.Tensor:
    """:func:`check_lengths` for the chain kernels: ``lengths`` of ``e`` ``(B, T, K)``, in ``[1, T]``."""
    b, t, _ = e.shape
    return check_lengths(lengths, "lengths", b, t, e.device, limit_name="T")


def _check_finite_or_neginf(x: torch.Tensor, name: str, where: Optional[torch.Tensor]) -> None:
    """Raise if ``x`` holds NaN or +inf (at positions where ``where`` is True).

    One reduction in the common case: the maximum is NaN or +inf iff such an entry exists.
    """
    x = x.detach()
    if where is not None:
        x = torch.where(where, x, torch.zeros((), dtype=x.dtype, device=x.device))
    if x.numel() == 0:
        return
    top = float(x.max())
    if math.isnan(top) or top == math.inf:
        kind = "NaN" if bool(torch.isnan(x).any()) else "+inf"
        scope = " (at valid frames)" if name == "log_emissions" else ""
        raise HMMValueError(f"{name} must not contain NaN or +inf{scope}; found {kind}")
