"""Dynamic time warping: hard DTW with paths, differentiable soft-DTW, and :class:`DTWAligner`.

Inputs are feature sequences ``x`` ``(B, N, D)`` and ``y`` ``(B, M, D)`` (or one pair
``(N, D)`` / ``(M, D)``, treated as ``B = 1``: results keep the batch axis) with optional
``x_lengths`` / ``y_lengths`` ``(B,)``; frames past the lengths are ignored whatever they hold.
The local cost between frames is ``distance``:

* ``"euclidean"``: ``||x_i - y_j||``; the DTW cost is the *sum of Euclidean distances* along the
  path (librosa's ``sequence.dtw`` convention; dtaidistance and tslearn instead return
  ``sqrt`` of the summed *squared* distances, i.e. ``dtw(..., distance="sqeuclidean").cost.sqrt()``);
* ``"sqeuclidean"``: ``||x_i - y_j||^2`` (the soft-DTW default, smooth everywhere);
* ``"cosine"``: ``1 - cos(x_i, y_j)`` (a zero vector has similarity 0);
* a callable ``f(x (B, N, D), y (B, M, D)) -> (B, N, M)`` (torch ops, so gradients flow);
* ``"precomputed"``: ``x`` is the cost itself, ``(B, N, M)`` or ``(N, M)``, and ``y`` is ``None``.

The recursion, step patterns, Sakoe-Chiba band and backends are those of
:mod:`pytorch_hmm.kernel.lattice` (one shared anti-diagonal DP for DTW and soft-DTW).
"""

from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMValueError
from ..kernel.inputs import LengthsLike, check_lengths, frame_mask
from ..kernel.lattice import (
    check_band,
    check_gamma,
    check_step_pattern,
    lattice_dtw,
    lattice_dtw_euclidean,
    lattice_soft_alignment,
    lattice_soft_dtw,
    pairwise_euclidean,
)

Distance = Union[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
DISTANCES = ("euclidean", "sqeuclidean", "cosine", "precomputed")

__all__ = ["DTWResult", "dtw", "soft_dtw", "soft_dtw_alignment", "DTWAligner", "pairwise_cost"]


class DTWResult(NamedTuple):
    """Hard DTW result.

    Attributes:
        cost: ``(B,)`` minimum accumulated cost per pair.
        normalized_cost: ``(B,)`` cost divided by ``N_b + M_b`` (symmetric2) or by the number of
            cells on the returned path (symmetric1).
        paths: one ``(L_b, 2)`` int64 tensor of ``(i, j)`` per pair, from ``(0, 0)`` to
            ``(N_b - 1, M_b - 1)``.
    """

    cost: torch.Tensor
    normalized_cost: torch.Tensor
    paths: List[torch.Tensor]


def _check_distance(distance: Distance) -> Distance:
    if callable(distance) or distance in DISTANCES:
        return distance
    raise HMMValueError(
        f"distance must be one of {DISTANCES} or a callable f(x (B, N, D), y (B, M, D)) -> (B, N, M); got {distance!r}"
    )


def _as_batch(t, name: str, shape: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape}; got {type(t).__name__}")
    if t.ndim not in (2, 3):
        raise HMMDimensionError(
            f"{name} must be {shape} or one unbatched pair without B; got shape {tuple(t.shape)}",
            expected_shape=tuple(shape.strip("()").split(", ")), actual_shape=t.shape,
        )
    return t if t.ndim == 3 else t.unsqueeze(0)


def _check_features(x, y) -> Tuple[torch.Tensor, torch.Tensor]:
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
        if t.dtype not in (torch.float32, torch.float64):
            raise HMMDtypeError(f"{name} must be float32 or float64; got {t.dtype}")
        if 0 in t.shape:
            raise HMMDimensionError(
                f"{name} must have at least one pair, frame and feature; got shape {tuple(t.shape)}",
                expected_shape=("B>0", "T>0", "D>0"), actual_shape=t.shape,
            )
    if y3.dtype != x3.dtype:
        raise HMMDtypeError(f"y must have the dtype of x ({x3.dtype}); got {y3.dtype}")
    if y3.device != x3.device:
        raise HMMDeviceError(f"y must be on the device of x ({x3.device}); got {y3.device}")
    return x3, y3


def _masked_frames(t: torch.Tensor, lengths: torch.Tensor, name: str) -> torch.Tensor:
    """Zero the frames past ``lengths`` (so padding never reaches a value or a gradient); reject NaN/inf."""
    keep = frame_mask(lengths, t.shape[1], t.device)[:, :, None]
    t = torch.where(keep, t, torch.zeros((), dtype=t.dtype, device=t.device))
    if not bool(torch.isfinite(t.detach()).all()):
        kind = "NaN" if bool(torch.isnan(t.detach()).any()) else "inf"
        raise HMMValueError(f"{name} must be finite (at frames before {name}_lengths); found {kind}")
    return t


def _features(x, y, x_lengths: LengthsLike, y_lengths: LengthsLike):
    """Validated ``x (B, N, D)``, ``y (B, M, D)`` (padding zeroed) and int64 lengths."""
    x3, y3 = _check_features(x, y)
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
    cancellation costs digits for close frames); ``backend`` as in :func:`dtw`.
    """
    distance = _check_distance(distance)
    if distance == "precomputed":
        if y is not None:
            raise HMMValueError("y must be None when distance='precomputed' (x is the (B, N, M) cost)")
        cost = _as_batch(x, "x", "(B, N, M)")
        b, n, m = cost.shape
        device = cost.device
        return cost, check_lengths(x_lengths, "x_lengths", b, n, device), check_lengths(y_lengths, "y_lengths", b, m, device)
    x3, y3, xl, yl = _features(x, y, x_lengths, y_lengths)
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


def dtw(
    x: torch.Tensor,
    y: Optional[torch.Tensor] = None,
    x_lengths: LengthsLike = None,
    y_lengths: LengthsLike = None,
    band: Optional[int] = None,
    step_pattern: str = "symmetric1",
    distance: Distance = "euclidean",
    *,
    backend: str = "auto",
) -> DTWResult:
    """Hard DTW between ``x`` ``(B, N, D)`` and ``y`` ``(B, M, D)`` (see the module docstring).

    Args:
        band: Sakoe-Chiba radius in frames around each pair's slanted diagonal: cell ``(i, j)``
            is allowed iff ``|i (M_b-1) - j (N_b-1)| <= band * max(N_b-1, M_b-1)``; ``None``: no band.
        step_pattern: ``"symmetric1"`` (unit steps, every cell on the path counts once) or
            ``"symmetric2"`` (the diagonal step counts the cell twice).
        distance: ``"euclidean"`` (default), ``"sqeuclidean"``, ``"cosine"``, a callable, or
            ``"precomputed"`` (``x`` is the cost, ``y`` is ``None``).
        backend: ``"auto"``, ``"torch"`` or ``"numba"`` (see :mod:`pytorch_hmm.kernel.lattice`).

    Returns:
        :class:`DTWResult` with ``B = 1`` for unbatched input. No gradient (use :func:`soft_dtw`).

    Raises:
        InfeasibleAlignmentError: a pair has no path inside the band (or only ``+inf`` costs).
    """
    check_step_pattern(step_pattern)
    check_band(band)
    with torch.no_grad():
        if _check_distance(distance) in ("euclidean", "sqeuclidean"):
            x3, y3, xl, yl = _features(x, y, x_lengths, y_lengths)
            squared = distance == "sqeuclidean"
            total, paths = lattice_dtw_euclidean(x3, y3, xl, yl, band, step_pattern, squared, backend=backend)
        else:
            cost, xl, yl = pairwise_cost(x, y, x_lengths, y_lengths, distance, backend=backend)
            total, paths = lattice_dtw(cost, xl, yl, band, step_pattern, backend=backend)
        if step_pattern == "symmetric2":
            norm = (xl + yl).to(total.dtype)
        else:
            norm = torch.tensor([len(q) for q in paths], dtype=total.dtype, device=total.device)
    return DTWResult(total, total / norm, paths)


def soft_dtw(
    x: torch.Tensor,
    y: Optional[torch.Tensor] = None,
    gamma: float = 1.0,
    x_lengths: LengthsLike = None,
    y_lengths: LengthsLike = None,
    band: Optional[int] = None,
    distance: Distance = "sqeuclidean",
    step_pattern: str = "symmetric1",
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Soft-DTW ``(B,)``: ``-gamma log sum_paths exp(-cost(path) / gamma)`` (Cuturi & Blondel, 2017).

    Differentiable w.r.t. ``x`` and ``y`` (or the precomputed cost): the backward pass runs the
    expected-alignment recursion (``O(N M)`` memory per pair) and chains through the distance
    with autograd. As ``gamma -> 0`` it tends to the symmetric1 DTW cost. ``distance`` defaults
    to ``"sqeuclidean"`` (``"euclidean"`` has no gradient where two frames coincide). Other
    arguments as in :func:`dtw`.
    """
    cost, xl, yl = pairwise_cost(x, y, x_lengths, y_lengths, distance, backend=backend)
    return lattice_soft_dtw(cost, gamma, xl, yl, band, step_pattern, backend=backend)


def soft_dtw_alignment(
    x: torch.Tensor,
    y: Optional[torch.Tensor] = None,
    gamma: float = 1.0,
    x_lengths: LengthsLike = None,
    y_lengths: LengthsLike = None,
    band: Optional[int] = None,
    distance: Distance = "sqeuclidean",
    step_pattern: str = "symmetric1",
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Expected alignment ``(B, N, M)`` of soft-DTW: the probability that a path drawn with
    ``p(path) ~ exp(-cost(path) / gamma)`` visits cell ``(i, j)`` (0 outside band and lengths).

    For symmetric1 this is the gradient of :func:`soft_dtw` w.r.t. the cost. No gradient.
    """
    with torch.no_grad():
        cost, xl, yl = pairwise_cost(x, y, x_lengths, y_lengths, distance, backend=backend)
    return lattice_soft_alignment(cost, gamma, xl, yl, band, step_pattern, backend=backend)


class DTWAligner(nn.Module):
    """DTW as a module: hard alignment (:class:`DTWResult`) or a differentiable soft-DTW loss.

    Args:
        band, step_pattern, backend: as in :func:`dtw`.
        distance: as in :func:`dtw`; ``None`` picks ``"euclidean"`` (hard) or ``"sqeuclidean"`` (soft).
        soft: ``True``: ``forward`` returns soft-DTW values ``(B,)`` (e.g. ``aligner(x, y).mean()``
            as a loss); ``False``: it returns a :class:`DTWResult`.
        gamma: soft-min temperature (soft mode).
    """

    def __init__(
        self,
        band: Optional[int] = None,
        step_pattern: str = "symmetric1",
        distance: Optional[Distance] = None,
        soft: bool = False,
        gamma: float = 1.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.band = check_band(band)
        self.step_pattern = check_step_pattern(step_pattern)
        self.distance = _check_distance(distance if distance is not None else ("sqeuclidean" if soft else "euclidean"))
        self.soft = bool(soft)
        self.gamma = check_gamma(gamma)
        self.backend = backend

    def forward(
        self,
        x: torch.Tensor,
        y: Optional[torch.Tensor] = None,
        x_lengths: LengthsLike = None,
        y_lengths: LengthsLike = None,
    ) -> Union[torch.Tensor, DTWResult]:
        if self.soft:
            return soft_dtw(
                x, y, self.gamma, x_lengths, y_lengths, self.band, self.distance, self.step_pattern, backend=self.backend
            )
        return dtw(x, y, x_lengths, y_lengths, self.band, self.step_pattern, self.distance, backend=self.backend)

    def extra_repr(self) -> str:
        dist = self.distance if isinstance(self.distance, str) else getattr(self.distance, "__name__", "callable")
        mode = f"soft=True, gamma={self.gamma}" if self.soft else "soft=False"
        return f"band={self.band}, step_pattern={self.step_pattern!r}, distance={dist!r}, {mode}"
