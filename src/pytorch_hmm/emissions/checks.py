"""Emission-specific input checks and small tensor helpers shared by the Gaussian emissions.

Generic checks (tensors, shapes, counts, dtypes) live in :mod:`pytorch_hmm.validation`.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from ..errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMValueError
from ..validation import FLOAT_DTYPES, as_tensor, check_not_meta, check_tensor
from .base import Stats

def broadcast_prior(
    value, shape: Sequence[int], name: str, dtype: torch.dtype, device, minimum: Optional[float] = None
) -> torch.Tensor:
    """A prior hyper-parameter broadcast (numpy rules) to ``shape``; per-state values as ``(K, 1, ...)``.

    Its values must be finite (and ``>= minimum`` when given): checked here, where the user
    passed them, rather than blamed later on the emission scores they would turn to NaN.
    """
    target = torch.empty(0, device=device).device  # the default device (or torch.device context) when None
    t = as_tensor(value, name, dtype, "cpu")  # checked on the host, also for a meta target
    if not bool(torch.isfinite(t).all()) or (minimum is not None and bool((t < minimum).any())):
        bound = "finite" if minimum is None else f"finite and >= {minimum:g}"
        raise HMMValueError(f"{name} must be {bound}; got {value!r}")
    try:
        return torch.broadcast_to(t, tuple(shape)).to(target, copy=True)
    except RuntimeError as err:
        raise HMMDimensionError(
            f"{name} must broadcast to {tuple(shape)}; got {tuple(t.shape)}", expected_shape=shape, actual_shape=t.shape
        ) from err


def check_observations(
    x: torch.Tensor, dim: int, ref: torch.Tensor, mask: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Validate ``x`` ``(B, T, D)`` (and ``mask`` ``(B, T)`` bool) against parameters like ``ref``.

    Returns ``x`` with padded frames (mask False) set to 0, and the mask. NaN or inf is an
    error at valid frames only, so padding may hold anything.
    """
    check_not_meta(check_tensor(x, "x", "(B, T, D)"), "x")
    if x.ndim != 3 or x.shape[-1] != dim:
        raise HMMDimensionError(
            f"x must be (B, T, D) with D == {dim}; got {tuple(x.shape)}",
            expected_shape=("B", "T", dim),
            actual_shape=x.shape,
            suggestion="for a single sequence use x.unsqueeze(0)" if x.ndim == 2 and x.shape[-1] == dim else None,
        )
    if 0 in x.shape[:2]:
        raise HMMDimensionError(
            f"x must have at least one sequence and one frame; got shape {tuple(x.shape)}",
            expected_shape=("B>0", "T>0", dim),
            actual_shape=x.shape,
        )
    if x.dtype != ref.dtype:
        other = f" or the emission with .to({x.dtype})" if x.dtype in FLOAT_DTYPES else ""
        raise HMMDtypeError(
            f"x must have the dtype of the emission parameters ({ref.dtype}); got {x.dtype}. "
            f"Convert x with x.to({ref.dtype}){other}"
        )
    if x.device != ref.device:
        raise HMMDeviceError(f"x must be on the device of the emission parameters ({ref.device}); got {x.device}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise HMMDtypeError(f"mask must be a bool tensor (True at valid frames); got {got}")
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise HMMDimensionError(
                f"mask must be (B, T) == {tuple(x.shape[:2])} to match x; got {tuple(mask.shape)}",
                expected_shape=tuple(x.shape[:2]),
                actual_shape=mask.shape,
            )
        if mask.device != x.device:
            raise HMMDeviceError(f"mask must be on the device of x ({x.device}); got {mask.device}")
        finite = torch.isfinite(x).all(-1) | ~mask
        x = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    else:
        finite = torch.isfinite(x).all(-1)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise HMMValueError(f"x must be finite at valid frames; got NaN or inf in {bad} frame(s)")
    return x, mask


def zero_padding(out: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``out`` ``(B, T, K)`` with the frames where ``mask`` is False set to 0."""
    if mask is None:
        return out
    return torch.where(mask[..., None], out, torch.zeros((), dtype=out.dtype, device=out.device))


def check_posteriors(
    posteriors: torch.Tensor, x: torch.Tensor, num_states: int, mask: Optional[torch.Tensor]
) -> torch.Tensor:
    """Validate state posteriors ``(B, T, K)``; returns them with padded frames set to 0."""
    check_tensor(posteriors, "posteriors", "(B, T, K)")
    shape = tuple(x.shape[:2]) + (num_states,)
    if tuple(posteriors.shape) != shape:
        raise HMMDimensionError(
            f"posteriors must be (B, T, K) == {shape} to match x; got {tuple(posteriors.shape)}",
            expected_shape=shape,
            actual_shape=posteriors.shape,
        )
    if posteriors.dtype != x.dtype or posteriors.device != x.device:
        raise HMMDtypeError(
            f"posteriors must have the dtype and device of x ({x.dtype}, {x.device}); "
            f"got {posteriors.dtype}, {posteriors.device}"
        )
    ok = (torch.isfinite(posteriors) & (posteriors >= 0)).all(-1)
    if mask is not None:
        ok = ok | ~mask
    if not bool(ok.all()):
        raise HMMValueError("posteriors must be finite and non-negative at valid frames; got NaN, inf or negative values")
    return zero_padding(posteriors, mask)


def check_stats(stats: Stats, keys: Sequence[str], owner: str) -> None:
    missing = [k for k in keys if k not in stats]
    if missing:
        raise HMMValueError(f"stats must come from {owner}.init_stats(); missing {missing}")


def valid_points(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``(N, D)`` frames of ``x`` where ``mask`` is True (all frames if ``mask`` is None)."""
    return x.reshape(-1, x.shape[-1]) if mask is None else x[mask]


def draw_normal(shape: Sequence[int], ref: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Standard normal draws like ``ref`` (dtype, device), taken on the generator's device."""
    device = ref.device if generator is None else generator.device
    return torch.randn(tuple(shape), generator=generator, dtype=ref.dtype, device=device).to(ref.device)


def sampling_states(states, num_states: int, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(states with padding as state 0, padding mask)`` for ``sample``: ``-1`` marks padding
    (as in Viterbi paths); any other index outside ``[0, K)`` is an error."""
    states = torch.as_tensor(states, device=device)
    if states.dtype.is_floating_point or states.dtype == torch.bool:
        raise HMMDtypeError(f"states must be an integer tensor; got {states.dtype}")
    padding = states == -1
    bad = ((states < 0) & ~padding) | (states >= num_states)
    if bool(bad.any()):
        raise HMMValueError(f"states must be in [0, {num_states}) or -1 (padding); got {int(states[bad][0])}")
    return states.masked_fill(padding, 0).long(), padding
