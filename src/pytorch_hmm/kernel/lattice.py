"""2-D monotone lattice DP: DTW (min-sum, with paths) and soft-DTW (soft-min, with its gradient).

A pair ``b`` aligns ``N_b`` rows with ``M_b`` columns of a local cost ``(B, N, M)``. A path
starts at ``(0, 0)``, ends at ``(N_b - 1, M_b - 1)`` and moves by ``(1, 0)``, ``(0, 1)`` or
``(1, 1)``. Accumulated cost, with ``w = 1`` (``"symmetric1"``) or ``w = 2`` (``"symmetric2"``)::

    D[0, 0] = c[0, 0]
    D[i, j] = min(D[i-1, j] + c[i, j], D[i, j-1] + c[i, j], D[i-1, j-1] + w c[i, j])

Soft-DTW (Cuturi & Blondel, 2017) replaces ``min`` by ``softmin_g(a) = -g log sum exp(-a / g)``.
Its gradient w.r.t. the cost is the expected alignment (each cell's occupancy under the Gibbs
distribution over paths, ``p(path) ~ exp(-cost(path) / g)``), times the expected step weight
into the cell (1 for symmetric1); the backward pass computes it with the reverse recursion in
``O(N M)`` memory per pair.

Band (Sakoe-Chiba radius ``r`` in frames, around the slanted diagonal of each pair): cell
``(i, j)`` is allowed iff ``|i (M_b - 1) - j (N_b - 1)| <= r max(N_b - 1, M_b - 1)``, i.e. it
lies within ``r`` frames of the straight line from ``(0, 0)`` to ``(N_b - 1, M_b - 1)``,
measured along the shorter sequence's axis (``|i - j| <= r`` for equal lengths). Any ``r >= 1``
admits a path; ``r = 0`` only where the line passes through a chain of cells (equal lengths).

Backends (keyword ``backend``): ``"torch"`` (:mod:`lattice_torch`) walks anti-diagonals
``i + j = d`` (cells of one diagonal depend only on the two previous ones; a few tensor ops per
diagonal, no host sync, any device); ``"numba"`` (:mod:`lattice_numba`) runs a row-major DP per
pair on CPU (parallel over pairs); ``"auto"`` picks numba for CPU tensors when it is installed.
Both return the same paths: ties prefer the diagonal step, then ``(i-1, j)``, then ``(i, j-1)``.

This module holds the problem type, its validation, the backend dispatch, the autograd
Function and the public ``lattice_*`` routines. The cost comes from the caller; frame distances
(and their gradient) live in :mod:`pytorch_hmm.alignment.distances`, which also hands
:func:`lattice_dtw_rows` the compiled row functions of its fused CPU path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import HMMValueError, InfeasibleAlignmentError
from ..validation import LengthsLike, check_first_order, check_float_batch, check_lengths
from . import lattice_torch
from .chain import pick_loops
from .lattice_torch import band_mask

try:  # numba is a declared dependency, but keep the kernel usable without it
    from . import lattice_numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    lattice_numba = None  # type: ignore[assignment]

STEP_PATTERNS = {"symmetric1": 1.0, "symmetric2": 2.0}  # weight of the diagonal step

DEFAULT_STEPS = ((1, 1), (0, 1), (1, 0))  # librosa's default ``step_sizes_sigma``, in its order

__all__ = [
    "LatticeProblem", "prepare_lattice", "band_mask", "lattice_dtw", "lattice_soft_dtw", "lattice_soft_alignment",
    "lattice_dtw_rows", "use_numba", "check_band", "check_step_pattern", "check_gamma",
    "StepDTW", "lattice_dtw_steps", "check_steps", "check_subsequence", "DEFAULT_STEPS",
]


@dataclass
class LatticeProblem:
    """Validated lattice inputs: a cost ``(B, N, M)`` with lengths, band and step pattern."""

    cost: torch.Tensor
    x_lengths: torch.Tensor  # (B,) int64
    y_lengths: torch.Tensor  # (B,) int64
    band: Optional[int]
    step_pattern: str

    @property
    def w_diag(self) -> float:
        return STEP_PATTERNS[self.step_pattern]

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.cost.shape)  # type: ignore[return-value]

    @property
    def device(self) -> torch.device:
        return self.cost.device

    def masked_cost(self) -> torch.Tensor:
        """The cost with ``+inf`` outside each pair's band and lengths (differentiable w.r.t. ``cost``).
        Raises on NaN or ``-inf`` inside the band and lengths (one host sync)."""
        masked = lattice_torch.mask_cost(self.cost, self.x_lengths, self.y_lengths, self.band)
        low = float(masked.detach().min())
        if math.isnan(low) or low == -math.inf:
            _raise_bad_cost()
        return masked


def _raise_bad_cost() -> None:
    raise HMMValueError("cost must not contain NaN or -inf inside the band and lengths")


# ---------------------------------------------------------------------------------------------
# Validation


def check_band(band) -> Optional[int]:
    if band is None:
        return None
    if isinstance(band, bool) or not isinstance(band, (int, np.integer)) or band < 0:
        raise HMMValueError(f"band must be None or a non-negative integer radius in frames; got {band!r}")
    return int(band)


def check_step_pattern(step_pattern: str) -> str:
    if step_pattern not in STEP_PATTERNS:
        raise HMMValueError(f"step_pattern must be one of {tuple(STEP_PATTERNS)}; got {step_pattern!r}")
    return step_pattern


def prepare_lattice(
    cost: torch.Tensor,
    x_lengths: LengthsLike = None,
    y_lengths: LengthsLike = None,
    band: Optional[int] = None,
    step_pattern: str = "symmetric1",
    name: str = "cost",
) -> LatticeProblem:
    """Validate the lattice inputs (shapes, lengths, band, step pattern; no pass over the cost).

    ``cost`` may hold ``+inf`` (forbidden cells) but no NaN or ``-inf`` inside the band and
    lengths (checked where the DP reads it); values outside are ignored whatever they are.
    """
    check_float_batch(cost, name, ("B", "N", "M"), "pair, row and column", "pair")
    b, n, m = cost.shape
    xl = check_lengths(x_lengths, "x_lengths", b, n, cost.device)
    yl = check_lengths(y_lengths, "y_lengths", b, m, cost.device)
    return LatticeProblem(cost, xl, yl, check_band(band), check_step_pattern(step_pattern))


def use_numba(device: torch.device, backend: str) -> bool:
    """Whether ``backend`` (``"auto"``, ``"torch"`` or ``"numba"``) runs the numba loops for tensors on
    ``device`` (the chain kernel's rule, :func:`~.chain.pick_loops`)."""
    return pick_loops(backend, device, lattice_numba, lattice_torch) is not lattice_torch


def _check_feasible(values: torch.Tensor, p: LatticeProblem) -> None:
    """Raise :class:`InfeasibleAlignmentError` naming the first pair without a finite path (one sync)."""
    bad = ~torch.isfinite(values.detach())
    if bool(bad.any()):
        _raise_infeasible(int(bad.nonzero()[0, 0]), p.x_lengths, p.y_lengths, p.band)


def _raise_infeasible(b: int, x_lengths: torch.Tensor, y_lengths: torch.Tensor, band: Optional[int]) -> None:
    raise InfeasibleAlignmentError(
        f"no monotone path with finite cost for pair {b} (x length {int(x_lengths[b])}, "
        f"y length {int(y_lengths[b])}) with band={band}: widen the band (any radius >= 1 "
        "admits a path) or remove +inf cells from the cost"
    )


# ---------------------------------------------------------------------------------------------
# Backend dispatch (both backends' ``run_*`` take and return tensors)


def _numba_dtw(p: LatticeProblem, want_paths: bool) -> Tuple[torch.Tensor, Optional[List[torch.Tensor]]]:
    total, paths, bad = lattice_numba.run_dtw(p.cost, p.x_lengths, p.y_lengths, p.band, p.w_diag, want_paths)
    if bad:
        _raise_bad_cost()
    if want_paths:
        _check_feasible(total, p)
    return total.to(p.device), paths


def _torch_dtw(p: LatticeProblem, want_paths: bool) -> Tuple[torch.Tensor, Optional[List[torch.Tensor]]]:
    total, table = lattice_torch.run_dtw(p.masked_cost(), p.x_lengths, p.y_lengths, p.w_diag)
    if not want_paths:
        return total, None
    _check_feasible(total, p)
    return total, lattice_torch.trace_paths(table)


def _soft_forward(p: LatticeProblem, cost: torch.Tensor, gamma: float, numba: bool):
    """Soft-DTW value ``(B,)`` on ``cost``'s device (raises where infeasible) and the state for
    :func:`_soft_backward`. ``cost``: ``p.cost`` for numba, ``p.masked_cost()`` for torch."""
    if numba:
        value, state, bad = lattice_numba.run_soft_forward(cost, p.x_lengths, p.y_lengths, p.band, p.w_diag, gamma)
        if bad:
            _raise_bad_cost()
    else:
        value, state = lattice_torch.run_soft_forward(cost.detach(), p.x_lengths, p.y_lengths, p.w_diag, gamma)
    value = value.to(cost.device)
    _check_feasible(value, p)
    return value, state


def _soft_backward(state, w_diag: float, numba: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Expected alignment and ``d value / d cost``, both ``(B, N, M)``."""
    return (lattice_numba if numba else lattice_torch).run_soft_backward(state, w_diag)


# ---------------------------------------------------------------------------------------------
# Public routines


def _dtw(p: LatticeProblem, backend: str, want_paths: bool) -> Tuple[torch.Tensor, Optional[List[torch.Tensor]]]:
    with torch.no_grad():
        return (_numba_dtw if use_numba(p.device, backend) else _torch_dtw)(p, want_paths)


def lattice_dtw(
    cost: torch.Tensor,
    x_lengths: LengthsLike = None,
    y_lengths: LengthsLike = None,
    band: Optional[int] = None,
    step_pattern: str = "symmetric1",
    *,
    backend: str = "auto",
    return_paths: bool = True,
) -> Tuple[torch.Tensor, Optional[List[torch.Tensor]]]:
    """Minimum path cost ``(B,)`` and, with ``return_paths``, one ``(L_b, 2)`` int64 path per pair.

    Paths list ``(i, j)`` from ``(0, 0)`` to ``(N_b - 1, M_b - 1)`` on the cost's device. Raises
    :class:`~pytorch_hmm.errors.InfeasibleAlignmentError` when a pair has no finite path and
    paths were asked for (without paths such pairs cost ``inf``). No gradient.
    """
    return _dtw(prepare_lattice(cost, x_lengths, y_lengths, band, step_pattern), backend, return_paths)


def lattice_dtw_rows(
    x: torch.Tensor,
    y: torch.Tensor,
    row,
    x_lengths: torch.Tensor,
    y_lengths: torch.Tensor,
    band: Optional[int] = None,
    step_pattern: str = "symmetric1",
    *,
    return_paths: bool = True,
) -> Tuple[torch.Tensor, Optional[List[torch.Tensor]]]:
    """:func:`lattice_dtw` on CPU (numba) with each row of the cost computed inside the DP as
    ``row(x_i, y_t, lo, hi, out)``, a numba function of frame ``x_i`` ``(D,)`` of ``x`` ``(B, N, D)``
    and the transposed pair ``y_t`` ``(D, M)`` of ``y`` ``(B, M, D)`` (columns ``lo..hi``), compiled
    for :data:`lattice_numba.ROW_SIGNATURES`: no ``N x M`` cost in memory. Inputs must be validated by the caller (CPU, finite, same dtype,
    lengths ``(B,)`` int64 in range) and give finite costs; see
    :mod:`pytorch_hmm.alignment.distances` for the row functions. No gradient.
    """
    if lattice_numba is None:
        raise ImportError("lattice_dtw_rows needs the numba package: pip install numba")
    band, w_diag = check_band(band), STEP_PATTERNS[check_step_pattern(step_pattern)]
    with torch.no_grad():
        total, paths = lattice_numba.run_dtw_rows(x, y, row, x_lengths, y_lengths, band, w_diag, return_paths)
    if return_paths:
        bad = ~torch.isfinite(total)
        if bool(bad.any()):
            b = int(bad.nonzero()[0, 0])
            _raise_infeasible(b, x_lengths, y_lengths, band)
    return total, paths


class _SoftDTW(torch.autograd.Function):
    """Soft-DTW value with the expected-alignment recursion as its backward."""

    @staticmethod
    def forward(ctx, cost, problem: LatticeProblem, gamma: float, numba: bool):  # type: ignore[override]
        value, state = _soft_forward(problem, cost, gamma, numba)
        ctx.state, ctx.numba, ctx.w = state, numba, problem.w_diag
        return value

    @staticmethod
    def backward(ctx, grad_value):  # type: ignore[override]
        check_first_order("soft-DTW", "soft-DTW has no second-order path")
        _, grad = _soft_backward(ctx.state, ctx.w, ctx.numba)
        grad = grad.to(grad_value.device)
        return grad * grad_value[:, None, None], None, None, None


def check_gamma(gamma: float) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not (0 < gamma < math.inf):
        raise HMMValueError(f"gamma must be a positive finite number; got {gamma!r}")
    return float(gamma)


def lattice_soft_dtw(
    cost: torch.Tensor,
    gamma: float = 1.0,
    x_lengths: LengthsLike = None,
    y_lengths: LengthsLike = None,
    band: Optional[int] = None,
    step_pattern: str = "symmetric1",
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Soft-DTW value ``(B,)``, differentiable w.r.t. ``cost`` (the gradient is computed by the
    expected-alignment recursion; no double backward)."""
    gamma = check_gamma(gamma)
    p = prepare_lattice(cost, x_lengths, y_lengths, band, step_pattern)
    numba = use_numba(p.device, backend)
    return _SoftDTW.apply(p.cost if numba else p.masked_cost(), p, gamma, numba)


def lattice_soft_alignment(
    cost: torch.Tensor,
    gamma: float = 1.0,
    x_lengths: LengthsLike = None,
    y_lengths: LengthsLike = None,
    band: Optional[int] = None,
    step_pattern: str = "symmetric1",
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Expected alignment ``(B, N, M)``: the probability that the path visits each cell under
    ``p(path) ~ exp(-cost(path) / gamma)``; 0 outside the band and lengths (no gradient)."""
    gamma = check_gamma(gamma)
    p = prepare_lattice(cost, x_lengths, y_lengths, band, step_pattern)
    numba = use_numba(p.device, backend)
    with torch.no_grad():
        _, state = _soft_forward(p, p.cost if numba else p.masked_cost(), gamma, numba)
        occ, _ = _soft_backward(state, p.w_diag, numba)
    return occ.to(p.device)


# ---------------------------------------------------------------------------------------------
# General steps and subsequence DTW (librosa's ``sequence.dtw`` conventions)

Steps = Tuple[Tuple[int, int], ...]


def _as_list(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return list(value)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_steps(step_sizes=None, weights_add=None, weights_mul=None) -> Tuple[Steps, Tuple[float, ...], Tuple[float, ...]]:
    """Validated steps ``((di, dj), ...)`` (default :data:`DEFAULT_STEPS`) and one additive
    (default 0) and one multiplicative (default 1) weight per step."""
    if step_sizes is None:
        steps: Steps = DEFAULT_STEPS
    else:
        entries = _as_list(step_sizes)
        if not entries:
            raise HMMValueError(f"step_sizes must be a non-empty list of (di, dj) pairs; got {entries!r}")
        out = []
        for k, entry in enumerate(entries):
            pair = tuple(entry) if isinstance(entry, (tuple, list)) else (entry,)
            if len(pair) != 2 or not all(_is_int(v) and v >= 0 for v in pair):
                raise HMMValueError(
                    f"step_sizes must hold pairs (di, dj) of non-negative integers; got {entry!r} at index {k}"
                )
            if pair == (0, 0):
                raise HMMValueError(f"step_sizes must not contain (0, 0), a step that does not move; got it at index {k}")
            out.append((int(pair[0]), int(pair[1])))
        steps = tuple(out)

    def weights(value, name: str, default: float, low: float) -> Tuple[float, ...]:
        if value is None:
            return (default,) * len(steps)
        vals = _as_list(value)
        if len(vals) != len(steps):
            raise HMMValueError(
                f"{name} must have one weight per step ({len(steps)} for step_sizes {list(steps)}); got {len(vals)}"
            )
        if not all(isinstance(v, (int, float, np.integer, np.floating)) and low <= v < math.inf for v in vals):
            kind = "finite non-negative numbers" if low == 0 else "finite numbers"
            raise HMMValueError(f"{name} must be {kind}; got {vals!r}")
        return tuple(float(v) for v in vals)

    return steps, weights(weights_add, "weights_add", 0.0, -math.inf), weights(weights_mul, "weights_mul", 1.0, 0.0)


def check_subsequence(subsequence: bool, band: Optional[int]) -> None:
    if subsequence and band is not None:
        raise HMMValueError(
            "band cannot be combined with subsequence=True (the band follows the line from (0, 0) to "
            f"(N-1, M-1), a subsequence match has free ends along y); got band={band}"
        )


class StepDTW(NamedTuple):
    """:func:`lattice_dtw_steps` result: ``total (B,)``; ``paths`` (one ``(L_b, 2)`` int64 per pair,
    or ``None``); ``cost_matrix`` ``D`` ``(B, N, M)``; ``ends`` ``(B,)`` the column of the last cell."""

    total: torch.Tensor
    paths: Optional[List[torch.Tensor]]
    cost_matrix: torch.Tensor
    ends: torch.Tensor


def lattice_dtw_steps(
    cost: torch.Tensor,
    x_lengths: LengthsLike = None,
    y_lengths: LengthsLike = None,
    band: Optional[int] = None,
    step_sizes: Optional[Sequence[Sequence[int]]] = None,
    weights_add: Optional[Sequence[float]] = None,
    weights_mul: Optional[Sequence[float]] = None,
    *,
    subsequence: bool = False,
    return_paths: bool = True,
) -> StepDTW:
    """DTW with general steps and weights, optionally subsequence, as librosa's ``sequence.dtw``.

    ``D[i, j] = min(start[i, j], min_s D[i - di_s, j - dj_s] + (weights_mul[s] c[i, j] + weights_add[s]))``
    where ``start`` is ``c[0, 0]`` at ``(0, 0)`` (or ``c[0, j]`` on the whole first row with
    ``subsequence``: a free start along ``y``) and ``+inf`` elsewhere. The total is
    ``D[N_b-1, M_b-1]`` (``subsequence``: the minimum of the last row, its first column on ties).
    Paths run from a start cell to the end; a cell's start value wins ties, then the earlier step
    in ``step_sizes`` (librosa's rule). ``D`` is ``+inf`` where unreachable and outside the band and
    lengths. PyTorch wavefront on any device (:func:`lattice_torch.run_dtw_steps`). No gradient.

    Raises:
        InfeasibleAlignmentError: with ``return_paths``, a pair has no finite path.
    """
    p = prepare_lattice(cost, x_lengths, y_lengths, band)
    steps, add, mul = check_steps(step_sizes, weights_add, weights_mul)
    check_subsequence(subsequence, p.band)
    with torch.no_grad():
        c = p.masked_cost()
        start = torch.full_like(c, math.inf)
        if subsequence:
            start[:, 0, :] = c[:, 0, :]
        else:
            start[:, 0, 0] = c[:, 0, 0]
        d, table = lattice_torch.run_dtw_steps(c, start, p.x_lengths, p.y_lengths, steps, add, mul)
        pairs = torch.arange(c.shape[0], device=c.device)
        last_row = d[pairs, p.x_lengths - 1]  # (B, M); +inf past each pair's length
        ends = last_row.argmin(1) if subsequence else p.y_lengths - 1
        total = last_row[pairs, ends]
        paths = None
        if return_paths:
            bad = ~torch.isfinite(total)
            if bool(bad.any()):
                _raise_infeasible_steps(int(bad.nonzero()[0, 0]), p, steps, subsequence)
            paths = lattice_torch.trace_steps(table, torch.stack((p.x_lengths - 1, ends), 1))
        return StepDTW(total, paths, d.contiguous(), ends)


def _raise_infeasible_steps(b: int, p: LatticeProblem, steps: Steps, subsequence: bool) -> None:
    n, m = int(p.x_lengths[b]), int(p.y_lengths[b])
    goal = f"row {n - 1} from row 0" if subsequence else f"({n - 1}, {m - 1}) from (0, 0)"
    raise InfeasibleAlignmentError(
        f"no path with finite cost for pair {b} (x length {n}, y length {m}) with step_sizes {list(steps)} "
        f"and band={p.band}: these steps cannot reach {goal}, or every such path crosses a +inf cell"
    )
