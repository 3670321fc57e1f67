"""Frame distances for DTW: the local cost between the frames of two feature sequences.

:func:`pairwise_cost` validates ``x`` ``(B, N, D)`` and ``y`` ``(B, M, D)`` (or one unbatched
pair) and returns the ``(B, N, M)`` cost for a named ``distance`` (``"euclidean"``,
``"sqeuclidean"``, ``"cosine"``), a callable, or a ``"precomputed"`` cost. Euclidean distances
are summed feature by feature (exact for close frames, unlike the ``|x|^2 + |y|^2 - 2 x.y``
expansion) by :func:`pairwise_euclidean`, which has its own autograd Function (backward by two
small matrix products) and a numba backend on CPU.

:data:`ROW_DISTANCES` holds compiled row functions ``row(x_i, y_t, lo, hi, out)`` that the
lattice kernel's fused DTW (:func:`pytorch_hmm.kernel.lattice.lattice_dtw_rows`) calls inside its
row loop, so hard Euclidean DTW on CPU never holds an ``N x M`` cost. The kernel knows only the
row protocol; the distance math lives here.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMValueError
from ..kernel.lattice import use_numba
from ..validation import LengthsLike, check_finite, check_float_batch, check_lengths, check_tensor, frame_mask

try:  # numba is a declared dependency, but keep the distances usable without it
    import numba

    from ..kernel.lattice_numba import ROW_SIGNATURES  # the row protocol of the fused DP
    from ..kernel.parallel import batch_loop as _batch_loop
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None  # type: ignore[assignment]
    ROW_SIGNATURES = []
    _batch_loop = lambda work: (lambda f: f)  # noqa: E731

Distance = Union[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
DISTANCES = ("euclidean", "sqeuclidean", "cosine", "precomputed")

__all__ = [
    "Distance", "DISTANCES", "pairwise_cost", "pairwise_euclidean", "euclidean_distances", "check_distance",
    "check_features", "ROW_DISTANCES",
]


# ---------------------------------------------------------------------------------------------
# Compiled (numba) rows and matrices


def _jit(*signatures, **options):
    if numba is None:  # pragma: no cover
        return lambda f: f
    return numba.njit(*signatures, nogil=True, cache=True, **options)


_prange = numba.prange if numba is not None else range


@_jit(inline="always")
def _squared_row(x_i, y_t, lo, hi, out):
    """``out[j] = ||x_i - y_j||^2`` for ``lo <= j <= hi`` (``y_t`` is ``(D, M)``), summed feature by feature.

    (Loops run over slices from 0: with a variable start numba's negative-index handling
    would stop LLVM from vectorising them.)
    """
    o = out[lo : hi + 1]
    o[:] = 0
    for d in range(y_t.shape[0]):
        xv = x_i[d]
        yd = y_t[d, lo : hi + 1]
        for t in range(o.shape[0]):
            diff = xv - yd[t]
            o[t] += diff * diff


@_jit(ROW_SIGNATURES)
def sqeuclidean_row(x_i, y_t, lo, hi, out):
    """Squared Euclidean distances of frame ``x_i`` to frames ``lo..hi`` of ``y_t`` ``(D, M)``, into ``out``."""
    _squared_row(x_i, y_t, lo, hi, out)


@_jit(ROW_SIGNATURES)
def euclidean_row(x_i, y_t, lo, hi, out):
    """Euclidean distances of frame ``x_i`` to frames ``lo..hi`` of ``y_t`` ``(D, M)``, into ``out``."""
    _squared_row(x_i, y_t, lo, hi, out)
    o = out[lo : hi + 1]
    for t in range(o.shape[0]):
        o[t] = np.sqrt(o[t])


ROW_DISTANCES = {False: euclidean_row, True: sqeuclidean_row}  # keyed by ``squared``


@_jit()
def _distance_pair(x, y_t, n, m, squared, out):
    """``out[:n, :m]`` = (squared) Euclidean distances of one pair; 0 elsewhere."""
    out[:, :] = 0
    for i in range(n):
        if squared:
            sqeuclidean_row(x[i], y_t, 0, m - 1, out[i])
        else:
            euclidean_row(x[i], y_t, 0, m - 1, out[i])


@_batch_loop(lambda x, y_t, *_: (x.shape[0], x.size * y_t.shape[2]))
def _distance_batch(x, y_t, x_lengths, y_lengths, squared, out):
    for b in _prange(x.shape[0]):
        _distance_pair(x[b], y_t[b], x_lengths[b], y_lengths[b], squared, out[b])


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy())


def _numba_distances(x, y, x_lengths, y_lengths, squared: bool) -> torch.Tensor:
    """``(B, N, M)`` (squared) distances between ``x (B, N, D)`` and ``y (B, M, D)``; 0 past the lengths."""
    x, y_t = _np(x), _np(y.transpose(1, 2))
    out = np.empty((x.shape[0], x.shape[1], y_t.shape[2]), dtype=x.dtype)
    if x.shape[0] == 1:  # no thread-pool wake-up for one pair
        _distance_pair(x[0], y_t[0], int(x_lengths[0]), int(y_lengths[0]), squared, out[0])
    else:
        _distance_batch(x, y_t, _np(x_lengths), _np(y_lengths), squared, out)
    return torch.from_numpy(out)


# ---------------------------------------------------------------------------------------------
# PyTorch distances and the autograd Function


def euclidean_distances(x: torch.Tensor, y: torch.Tensor, squared: bool) -> torch.Tensor:
    """``(B, N, M)`` (squared) Euclidean distances between the frames of ``x`` ``(B, N, D)`` and
    ``y`` ``(B, M, D)``, summed feature by feature. Squares in place: call without autograd."""
    cost = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")
    return cost.square_() if squared else cost


def _torch_distances(x, y, x_lengths, y_lengths, squared: bool) -> torch.Tensor:
    """:func:`euclidean_distances`, 0 past the lengths (as :func:`_numba_distances`)."""
    keep = frame_mask(x_lengths, x.shape[1], x.device)[:, :, None] & frame_mask(y_lengths, y.shape[1], y.device)[:, None, :]
    return euclidean_distances(x, y, squared).masked_fill_(~keep, 0)


class _PairwiseEuclidean(torch.autograd.Function):
    """(Squared) Euclidean frame distances; backward by two small matrix products."""

    @staticmethod
    def forward(ctx, x, y, x_lengths, y_lengths, squared: bool, numba_backend: bool):  # type: ignore[override]
        cost = (_numba_distances if numba_backend else _torch_distances)(x, y, x_lengths, y_lengths, squared)
        ctx.save_for_backward(x, y, cost, x_lengths, y_lengths)
        ctx.squared = squared
        return cost

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        """Plain differentiable torch ops, so second derivatives (``create_graph=True``) work."""
        x, y, cost, x_lengths, y_lengths = ctx.saved_tensors
        n, m = cost.shape[1], cost.shape[2]
        inside = (torch.arange(n, device=grad.device)[None, :, None] < x_lengths[:, None, None]) & (
            torch.arange(m, device=grad.device)[None, None, :] < y_lengths[:, None, None])
        grad = grad * inside  # the distances are 0 past the lengths: so is their gradient
        if ctx.squared:
            g = 2 * grad
        else:  # d||x - y|| = (x - y) / ||x - y||; 0 where the frames coincide
            zero = torch.zeros((), dtype=cost.dtype, device=cost.device)
            g = torch.where(cost > 0, grad / cost.clamp_min(torch.finfo(cost.dtype).tiny), zero)
        gx = x * g.sum(2, keepdim=True) - g @ y if ctx.needs_input_grad[0] else None
        gy = y * g.sum(1).unsqueeze(-1) - g.transpose(1, 2) @ x if ctx.needs_input_grad[1] else None
        return gx, gy, None, None, None, None


def pairwise_euclidean(
    x: torch.Tensor,
    y: torch.Tensor,
    x_lengths: torch.Tensor,
    y_lengths: torch.Tensor,
    squared: bool = False,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """``(B, N, M)`` (squared) Euclidean distances between the frames of ``x`` ``(B, N, D)`` and
    ``y`` ``(B, M, D)``, summed feature by feature; 0 past the lengths. Differentiable w.r.t.
    ``x`` and ``y`` (a Euclidean distance of 0 gets gradient 0). Inputs validated by the caller.
    """
    return _PairwiseEuclidean.apply(x, y, x_lengths, y_lengths, bool(squared), use_numba(x.device, backend))


# ---------------------------------------------------------------------------------------------
# Validation and the public cost


def check_distance(distance: Distance) -> Distance:
    """``distance`` if it is a known name or a callable, else :class:`HMMValueError`."""
    if callable(distance) or distance in DISTANCES:
        return distance
    raise HMMValueError(
        f"distance must be one of {DISTANCES} or a callable f(x (B, N, D), y (B, M, D)) -> (B, N, M); got {distance!r}"
    )


def _as_batch(t, name: str, shape: str) -> torch.Tensor:
    check_tensor(t, name, shape)
    if t.ndim not in (2, 3):
        raise HMMDimensionError(
            f"{name} must be {shape} or one unbatched pair without B; got shape {tuple(t.shape)}",
            expected_shape=tuple(shape.strip("()").split(", ")), actual_shape=t.shape,
        )
    return t if t.ndim == 3 else t.unsqueeze(0)


def _check_pair(x, y) -> Tuple[torch.Tensor, torch.Tensor]:
    if y is None:
        raise HMMValueError("y is required unless distance='precomputed' (then x is the (B, N, M) cost)")
    x3, y3 = _as_batch(x, "x", "(B, N, D)"), _as_batch(y, "y", "(B, M, D)")
    if x.ndim != y.ndim:
        raise HMMDimensionError(
            f"x and y must both be batched (3-D) or both unbatched (2-D); got x {tuple(x.shape)} and y {tuple(y.shape)}",
            expected_shape=(x.shape[0], "M", x.shape[-1]) if x.ndim == 3 else ("M", x.shape[-1]), actual_shape=y.shape,
        )
    if y3.shape[0] != x3.shape[0] or y3.shape[2] != x3.shape[2]:
        raise HMMDimensionError(
            f"y must be (B, M, D) with B == {x3.shape[0]} and D == {x3.shape[2]} like x {tuple(x.shape)}; "
            f"got shape {tuple(y.shape)}",
            expected_shape=(x3.shape[0], "M", x3.shape[2]), actual_shape=y3.shape,
        )
    for name, t in (("x", x3), ("y", y3)):
        check_float_batch(t, name, ("B", "T", "D"), "pair, frame and feature", "pair")
    if y3.dtype != x3.dtype:
        raise HMMDtypeError(f"y must have the dtype of x ({x3.dtype}); got {y3.dtype}")
    if y3.device != x3.device:
        raise HMMDeviceError(f"y must be on the device of x ({x3.device}); got {y3.device}")
    return x3, y3


def _masked_frames(t: torch.Tensor, lengths: torch.Tensor, name: str) -> torch.Tensor:
    """Zero the frames past ``lengths`` (so padding never reaches a value or a gradient); reject NaN/inf."""
    keep = frame_mask(lengths, t.shape[1], t.device)[:, :, None]
    t = torch.where(keep, t, torch.zeros((), dtype=t.dtype, device=t.device))
    check_finite(t.detach(), keep, name, f"{name}_lengths")
    return t


def check_features(x, y, x_lengths: LengthsLike, y_lengths: LengthsLike):
    """Validated ``x (B, N, D)``, ``y (B, M, D)`` (padding zeroed) and ``(B,)`` int64 lengths."""
    x3, y3 = _check_pair(x, y)
    xl = check_lengths(x_lengths, "x_lengths", x3.shape[0], x3.shape[1], x3.device)
    yl = check_lengths(y_lengths, "y_lengths", y3.shape[0], y3.shape[1], y3.device)
    return _masked_frames(x3, xl, "x"), _masked_frames(y3, yl, "y"), xl, yl


def pairwise_cost(
    x: torch.Tensor,
    y: Optional[torch.Tensor] = None,
    x_lengths: LengthsLike = None,
    y_lengths: LengthsLike = None,
    distance: Distance = "euclidean",
    *,
    backend: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validated ``(cost (B, N, M), x_lengths (B,), y_lengths (B,))``, differentiable w.r.t. ``x`` and ``y``.

    Euclidean distances are summed feature by feature (no matrix-product shortcut, whose
    cancellation costs digits for close frames); ``backend`` as in :func:`pytorch_hmm.alignment.dtw`.
    """
    distance = check_distance(distance)
    if distance == "precomputed":
        if y is not None:
            raise HMMValueError("y must be None when distance='precomputed' (x is the (B, N, M) cost)")
        cost = _as_batch(x, "x", "(B, N, M)")
        b, n, m = cost.shape
        device = cost.device
        return cost, check_lengths(x_lengths, "x_lengths", b, n, device), check_lengths(y_lengths, "y_lengths", b, m, device)
    x3, y3, xl, yl = check_features(x, y, x_lengths, y_lengths)
    if distance in ("euclidean", "sqeuclidean"):
        return pairwise_euclidean(x3, y3, xl, yl, distance == "sqeuclidean", backend=backend), xl, yl
    if distance == "cosine":
        return 1 - F.normalize(x3, dim=-1) @ F.normalize(y3, dim=-1).transpose(1, 2), xl, yl
    b, n, m = x3.shape[0], x3.shape[1], y3.shape[1]
    cost = distance(x3, y3)
    if not isinstance(cost, torch.Tensor) or cost.shape != (b, n, m):
        got = tuple(cost.shape) if isinstance(cost, torch.Tensor) else type(cost).__name__
        raise HMMDimensionError(
            f"distance(x, y) must return a (B, N, M) = {(b, n, m)} tensor; got {got}",
            expected_shape=(b, n, m), actual_shape=got if isinstance(got, tuple) else None,
        )
    return cost, xl, yl
