"""The one home of input checks shared by every package: tensors, lengths, masks, frame scores, probabilities.

Every public entry point validates at its boundary with these helpers, so that a bad input
gives the same kind of message everywhere: the argument's name, what was expected and what
was given, raised as a :class:`~pytorch_hmm.errors.HMMValueError` subclass (non-tensor input
included: :class:`~pytorch_hmm.errors.HMMTypeError` is both an ``HMMValueError`` and a
``TypeError``). Checks cost at most one host synchronisation each and never run inside a loop
over time.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence, Union

import numpy as np
import torch

from .errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError

__all__ = [
    "LengthsLike", "FLOAT_DTYPES", "frame_mask", "check_tensor", "check_not_meta", "check_float_dtype", "check_lengths",
    "check_frame_scores", "check_finite_or_neginf", "check_finite", "check_stochastic", "stochastic_tolerance",
    "as_tensor", "check_shape", "check_count", "check_float_batch",
]

LengthsLike = Union[torch.Tensor, Sequence[int], None]
FLOAT_DTYPES = (torch.float32, torch.float64)


def frame_mask(lengths, num_frames: int, device) -> torch.Tensor:
    """``(B, T)`` bool, True at frames before each sequence's length."""
    return torch.arange(num_frames, device=device)[None, :] < torch.as_tensor(lengths, device=device)[:, None]


def check_tensor(x: object, name: str, what: str) -> torch.Tensor:
    """``x`` itself if it is a tensor; otherwise :class:`HMMTypeError` naming ``name`` and ``what`` (e.g. ``"(B, T, K)"``)."""
    if not isinstance(x, torch.Tensor):
        raise HMMTypeError(f"{name} must be a torch.Tensor of shape {what}; got {type(x).__name__}")
    return x


def check_not_meta(x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` unless it is a meta tensor, which has a shape but no values to compute with."""
    if x.is_meta:
        raise HMMDeviceError(
            f"{name} is on the meta device (no data); pytorch_hmm computes on real values. After building a "
            "model under torch.device('meta'), call model.to_empty(device=...) and load its state dict"
        )
    return x


def check_float_dtype(dtype: torch.dtype, name: str = "dtype") -> torch.dtype:
    """``dtype`` if it is float32 or float64, else :class:`HMMDtypeError`."""
    if dtype not in FLOAT_DTYPES:
        raise HMMDtypeError(f"{name} must be torch.float32 or torch.float64; got {dtype}")
    return dtype


def as_tensor(value, name: str, dtype: torch.dtype, device) -> torch.Tensor:
    """``value`` (tensor, array or number) as a tensor of ``dtype`` on ``device``."""
    try:
        return torch.as_tensor(value, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise HMMValueError(f"{name} must be a tensor or array of numbers; got {type(value).__name__}") from err


def check_shape(t: torch.Tensor, shape: Sequence[int], name: str, what: str) -> None:
    """Raise :class:`HMMDimensionError` unless ``t.shape == shape``; ``what`` names the dims, e.g. ``"(K, D)"``."""
    if tuple(t.shape) != tuple(shape):
        raise HMMDimensionError(
            f"{name} must be {what} == {tuple(shape)}; got {tuple(t.shape)}", expected_shape=shape, actual_shape=t.shape
        )


def check_count(value, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer ``>= minimum`` (Python or numpy, not a bool),
    else :class:`HMMValueError`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise HMMValueError(f"{name} must be {what}; got {value!r}")
    return int(value)


def check_number(value, name: str, *, positive: bool = False, minimum: Optional[float] = None,
                 below: Optional[float] = None, unit: str = "") -> float:
    """``value`` as a ``float`` if it is a finite real number (Python or numpy, not a bool),
    ``> 0`` with ``positive``, ``>= minimum`` and ``< below`` when given; else :class:`HMMValueError`."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
    ok = ok and (not positive or value > 0) and (minimum is None or value >= minimum) and (below is None or value < below)
    if not ok:
        what = ("a positive finite number" if positive else "a finite number") + (f" of {unit}" if unit else "")
        what += f" >= {minimum:g}" if minimum is not None else ""
        what += f" below {below:g}" if below is not None else ""
        raise HMMValueError(f"{name} must be {what}; got {value!r}")
    return float(value)


def check_first_order(what: str, instead: str) -> None:
    """Call at the top of a custom ``backward``: :class:`HMMValueError` when it runs under
    ``create_graph=True`` (a second derivative was asked of a backward that is not differentiable)."""
    if torch.is_grad_enabled():
        raise HMMValueError(
            f"{what} has first derivatives only (its backward is a recursion, not differentiable itself), "
            f"so it cannot be differentiated twice (create_graph=True); {instead}"
        )


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
    if batch == 0:
        return lengths.to(device=device, dtype=torch.long)
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < low or (limit is not None and hi > limit):
        if limit is None:
            bound = f">= {low}"
        else:
            bound = "in " + (f"[{low}, {limit_name}] = " if limit_name else "") + f"[{low}, {limit}]"
        raise HMMValueError(f"{name} must be {bound}; got values in [{lo}, {hi}]")
    return lengths.to(device=device, dtype=torch.long)


def check_frame_scores(x: torch.Tensor, name: str, last: str, unit: str, layout: str = "") -> torch.Tensor:
    """A non-empty float32/float64 ``(B, T, last)`` tensor of per-frame scores (emissions, CTC
    log-probabilities); ``unit`` names the last axis' entries, ``layout`` prefixes the shape."""
    check_not_meta(check_tensor(x, name, f"(B, T, {last})"), name)
    if x.ndim != 3:
        raise HMMDimensionError(
            f"{name} must be {layout}(B, T, {last}); got shape {tuple(x.shape)}",
            expected_shape=("B", "T", last),
            actual_shape=x.shape,
            suggestion=f"for a single sequence use {name}.unsqueeze(0)" if x.ndim == 2 else None,
        )
    if x.dtype not in FLOAT_DTYPES:
        raise HMMDtypeError(f"{name} must be float32 or float64; got {x.dtype}")
    if 0 in x.shape:
        raise HMMDimensionError(
            f"{name} must have at least one sequence, frame and {unit}; got shape {tuple(x.shape)}",
            expected_shape=("B>0", "T>0", f"{last}>0"),
            actual_shape=x.shape,
        )
    return x


def check_float_batch(x: object, name: str, dims: Sequence[str], parts: str, single: str) -> torch.Tensor:
    """A non-empty float32/float64 tensor with the axes ``dims`` (batch first, e.g. ``("B", "N", "M")``).

    ``parts`` names the axes' entries in the emptiness message (e.g. ``"pair, row and column"``),
    ``single`` one batch item in the hint for input without the batch axis (e.g. ``"pair"``).
    """
    what = "(" + ", ".join(dims) + ")"
    check_not_meta(check_tensor(x, name, what), name)
    if x.ndim != len(dims):
        raise HMMDimensionError(
            f"{name} must be {what}; got shape {tuple(x.shape)}",
            expected_shape=tuple(dims),
            actual_shape=x.shape,
            suggestion=f"for a single {single} use {name}.unsqueeze(0)" if x.ndim == len(dims) - 1 else None,
        )
    if x.dtype not in FLOAT_DTYPES:
        raise HMMDtypeError(f"{name} must be float32 or float64; got {x.dtype}")
    if 0 in x.shape:
        raise HMMDimensionError(
            f"{name} must have at least one {parts}; got shape {tuple(x.shape)}",
            expected_shape=tuple(f"{d}>0" for d in dims),
            actual_shape=x.shape,
        )
    return x


def check_finite_or_neginf(x: torch.Tensor, name: str, where: Optional[torch.Tensor] = None, scope: str = "") -> None:
    """Raise :class:`HMMValueError` if ``x`` holds NaN or +inf (at positions where ``where`` is True).

    ``-inf`` (an impossible event) is allowed. One reduction in the common case: the maximum is
    NaN or +inf iff such an entry exists. ``scope`` is appended to the name in the message
    (e.g. ``" (at valid frames)"``). Meta tensors (deferred initialisation) carry no values to check.
    """
    if x.is_meta:
        return
    x = x.detach()
    if where is not None and not bool(where.all()):  # (a mask of all True needs no copy of x)
        x = torch.where(where, x, torch.zeros((), dtype=x.dtype, device=x.device))
    if x.numel() == 0:
        return
    top = float(x.max())
    if math.isnan(top) or top == math.inf:
        kind = "NaN" if bool(torch.isnan(x).any()) else "+inf"
        raise HMMValueError(f"{name} must not contain NaN or +inf{scope}; found {kind}")


def check_finite(x: torch.Tensor, keep: torch.Tensor, name: str, before: str = "its length") -> None:
    """Raise if ``x`` holds NaN or +-inf where ``keep`` (broadcastable bool) is True; ``before``
    names the lengths in the message (e.g. ``"x_lengths"``)."""
    bad = ~torch.isfinite(x) & keep
    if bool(bad.any()):
        kind = "NaN" if bool((torch.isnan(x) & keep).any()) else "inf"
        raise HMMValueError(f"{name} must be finite (at frames before {before}); found {kind}")


def stochastic_tolerance(dtype: torch.dtype) -> float:
    """How far a row of probabilities may sum from 1: ``1e-4`` below float64, ``1e-8`` in float64."""
    return 1e-8 if dtype == torch.float64 else 1e-4


def check_stochastic(
    probs: torch.Tensor,
    name: str,
    valid: Optional[torch.Tensor] = None,
    *,
    allow_empty_rows: bool = False,
) -> torch.Tensor:
    """``probs`` if it holds probabilities in ``[0, 1]`` whose rows (last axis) sum to 1.

    Args:
        valid: bool mask broadcastable to ``probs``; entries where it is False are ignored (moves
            that do not exist, e.g. past the last state of a banded chain).
        allow_empty_rows: rows summing to 0 are accepted too (a state without outgoing moves).

    The tolerance is :func:`stochastic_tolerance` of the dtype (the one rule for every
    probability input of the library).
    """
    check_tensor(probs, name, "(..., K)")
    if probs.dtype not in FLOAT_DTYPES:
        raise HMMDtypeError(f"{name} must be a float32/float64 tensor; got {probs.dtype}")
    if probs.is_meta:  # deferred initialisation: no values to check
        return probs
    if torch.isnan(probs).any() or (probs < 0).any() or (probs > 1).any():
        raise HMMValueError(f"{name} must hold probabilities in [0, 1]; got values outside that range or NaN")
    p = probs if valid is None else probs.masked_fill(~valid, 0.0)
    sums = p.sum(-1)
    tol = stochastic_tolerance(probs.dtype)
    off = (sums - 1).abs() > tol
    if allow_empty_rows:
        off &= sums != 0
    if bool(off.any()):
        bad = sums[off].flatten()[0].item()
        rows = "1 (or 0 for a state without moves)" if allow_empty_rows else "1"
        raise HMMValueError(f"each row of {name} must sum to {rows} (within {tol:g}); found a row summing to {bad:.6g}")
    return probs
