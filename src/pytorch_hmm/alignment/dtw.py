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
:mod:`pytorch_hmm.kernel.lattice` (one shared anti-diagonal DP for DTW and soft-DTW); the frame
distances and :func:`pairwise_cost` are those of :mod:`pytorch_hmm.alignment.distances`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, List, NamedTuple, Optional, Sequence, Union

import torch
from torch import nn

from ..errors import HMMValueError, InfeasibleAlignmentError
from ..kernel.lattice import (
    STEP_PATTERNS,
    check_band,
    check_gamma,
    check_step_pattern,
    check_steps,
    check_subsequence,
    lattice_dtw,
    lattice_dtw_rows,
    lattice_dtw_steps,
    lattice_soft_alignment,
    lattice_soft_dtw,
    use_numba,
)
from ..validation import LengthsLike
from .distances import ROW_DISTANCES, Distance, check_distance, check_features, pairwise_cost, pairwise_euclidean

__all__ = ["DTWResult", "dtw", "soft_dtw", "soft_dtw_alignment", "DTWAligner", "pairwise_cost"]


@contextmanager
def _overflow_explained(x, y, distance, band: Optional[int]) -> Iterator[None]:
    """An infeasible pair under a Euclidean distance of finite features means the squared
    distances overflowed the dtype (a band of radius >= 1 always admits a path): say so,
    instead of blaming the band."""
    try:
        yield
    except InfeasibleAlignmentError as err:
        euclidean = distance in ("euclidean", "sqeuclidean") and (band is None or band >= 1)
        if euclidean and isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            top = float(x.detach().abs().amax()) + float(y.detach().abs().amax())
            if x.shape[-1] * top * top > torch.finfo(x.dtype).max:
                raise InfeasibleAlignmentError(
                    f"the squared differences between x and y overflow {x.dtype} (features up to {top:.3g} "
                    f"apart), so every path costs inf: convert x and y to torch.float64 or rescale them"
                ) from err
        raise


class _DTWFields(NamedTuple):
    cost: torch.Tensor
    normalized_cost: torch.Tensor
    paths: List[torch.Tensor]


class DTWResult(_DTWFields):
    """Hard DTW result: a 3-tuple ``(cost, normalized_cost, paths)`` with two optional attributes.

    Attributes:
        cost: ``(B,)`` minimum accumulated cost per pair.
        normalized_cost: ``(B,)`` cost divided by ``N_b + M_b`` (symmetric2; with ``subsequence``,
            ``N_b`` plus the span's length) or by the number of cells on the returned path
            (symmetric1, and any explicit ``step_sizes`` / weights).
        paths: one ``(L_b, 2)`` int64 tensor of ``(i, j)`` per pair, from ``(0, 0)`` to
            ``(N_b - 1, M_b - 1)`` (with ``subsequence``: from ``(0, start)`` to ``(N_b - 1, end - 1)``).
        cost_matrix: ``(B, N, M)`` accumulated cost ``D`` (librosa's ``D``; ``+inf`` where
            unreachable and outside the band and lengths), or ``None`` unless ``return_cost_matrix``.
        spans: ``(B, 2)`` int64 ``(start, end)`` of the part of ``y`` each ``x`` matched (``end``
            exclusive: ``y[b, start:end]``), or ``None`` unless ``subsequence``.
    """

    cost_matrix: Optional[torch.Tensor] = None
    spans: Optional[torch.Tensor] = None

    def __new__(cls, cost, normalized_cost, paths, cost_matrix=None, spans=None):
        self = super().__new__(cls, cost, normalized_cost, paths)
        self.cost_matrix = cost_matrix
        self.spans = spans
        return self

    def _replace(self, **changes) -> "DTWResult":
        extra = {k: changes.pop(k, getattr(self, k)) for k in ("cost_matrix", "spans")}
        return DTWResult(*super()._replace(**changes), **extra)


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
    subsequence: bool = False,
    step_sizes: Optional[Sequence[Sequence[int]]] = None,
    weights_add: Optional[Sequence[float]] = None,
    weights_mul: Optional[Sequence[float]] = None,
    return_cost_matrix: bool = False,
) -> DTWResult:
    """Hard DTW between ``x`` ``(B, N, D)`` and ``y`` ``(B, M, D)`` (see the module docstring).

    Args:
        band: Sakoe-Chiba radius in frames around each pair's slanted diagonal: cell ``(i, j)``
            is allowed iff ``|i (M_b-1) - j (N_b-1)| <= band * max(N_b-1, M_b-1)``; ``None``: no band.
            (librosa's ``band_rad`` is a fraction instead; see docs/index.md.)
        step_pattern: ``"symmetric1"`` (unit steps, every cell on the path counts once) or
            ``"symmetric2"`` (the diagonal step counts the cell twice).
        distance: ``"euclidean"`` (default), ``"sqeuclidean"``, ``"cosine"``, a callable, or
            ``"precomputed"`` (``x`` is the cost, ``y`` is ``None``).
        backend: ``"auto"``, ``"torch"`` or ``"numba"`` (see :mod:`pytorch_hmm.kernel.lattice`);
            the four options below always run the PyTorch wavefront.
        subsequence: match all of ``x`` to the cheapest contiguous part of ``y`` (free start and
            end along ``y``; librosa's ``subseq=True``, without its swap when ``x`` is longer).
            Not with ``band``. Fills ``spans``.
        step_sizes: ``(di, dj)`` steps (librosa's ``step_sizes_sigma``); default
            ``[(1, 1), (0, 1), (1, 0)]``. They replace the default steps. Not with ``"symmetric2"``.
        weights_add, weights_mul: one weight per step: entering cell ``(i, j)`` by step ``s`` adds
            ``weights_mul[s] * c[i, j] + weights_add[s]`` (the start cell counts ``c`` once).
        return_cost_matrix: fill ``cost_matrix`` with the accumulated cost ``D`` ``(B, N, M)``.

    With any of the four options the recursion is that of
    :func:`pytorch_hmm.kernel.lattice.lattice_dtw_steps` and ties follow librosa's rule (the
    earlier step in ``step_sizes`` wins), except that without explicit ``step_sizes`` or weights
    the default tie rule is kept (diagonal, then ``(i-1, j)``, then ``(i, j-1)``).

    Returns:
        :class:`DTWResult` with ``B = 1`` for unbatched input. No gradient (use :func:`soft_dtw`).

    Raises:
        InfeasibleAlignmentError: a pair has no path inside the band (or only ``+inf`` costs).
    """
    check_step_pattern(step_pattern)
    check_band(band)
    general = subsequence or return_cost_matrix or any(v is not None for v in (step_sizes, weights_add, weights_mul))
    if general:
        return _dtw_general(
            x, y, x_lengths, y_lengths, band, step_pattern, distance, backend,
            bool(subsequence), step_sizes, weights_add, weights_mul, bool(return_cost_matrix),
        )
    with torch.no_grad(), _overflow_explained(x, y, distance, band):
        if check_distance(distance) in ("euclidean", "sqeuclidean"):
            x3, y3, xl, yl = check_features(x, y, x_lengths, y_lengths)
            squared = distance == "sqeuclidean"
            if use_numba(x3.device, backend):  # fused: each row of distances computed inside the DP
                total, paths = lattice_dtw_rows(x3, y3, ROW_DISTANCES[squared], xl, yl, band, step_pattern)
            else:
                cost = pairwise_euclidean(x3, y3, xl, yl, squared, backend=backend)
                total, paths = lattice_dtw(cost, xl, yl, band, step_pattern, backend=backend)
        else:
            cost, xl, yl = pairwise_cost(x, y, x_lengths, y_lengths, distance, backend=backend)
            total, paths = lattice_dtw(cost, xl, yl, band, step_pattern, backend=backend)
        if step_pattern == "symmetric2":
            norm = (xl + yl).to(total.dtype)
        else:
            norm = torch.tensor([len(q) for q in paths], dtype=total.dtype, device=total.device)
    return DTWResult(total, total / norm, paths)


_TIE_ORDER = ((1, 1), (1, 0), (0, 1))  # the default steps in the default tie order


def _dtw_general(
    x, y, x_lengths, y_lengths, band, step_pattern, distance, backend,
    subsequence, step_sizes, weights_add, weights_mul, return_cost_matrix,
) -> DTWResult:
    """:func:`dtw` with subsequence, explicit steps or weights, or the cost matrix (lattice_dtw_steps)."""
    explicit = any(v is not None for v in (step_sizes, weights_add, weights_mul))
    if explicit and step_pattern != "symmetric1":
        raise HMMValueError(
            f"step_pattern={step_pattern!r} cannot be combined with step_sizes, weights_add or weights_mul: "
            "keep step_pattern='symmetric1' and put the diagonal weight into weights_mul (e.g. [2, 1, 1])"
        )
    check_subsequence(subsequence, band)
    if not explicit:  # the default steps in the default tie order: diagonal, (i-1, j), (i, j-1)
        step_sizes, weights_mul = _TIE_ORDER, (STEP_PATTERNS[step_pattern], 1.0, 1.0)
    check_steps(step_sizes, weights_add, weights_mul)  # before any distance is computed
    with torch.no_grad(), _overflow_explained(x, y, distance, band):
        cost, xl, yl = pairwise_cost(x, y, x_lengths, y_lengths, distance, backend=backend)
        use_numba(cost.device, backend)  # validates ``backend``; the wavefront runs on any device
        res = lattice_dtw_steps(cost, xl, yl, band, step_sizes, weights_add, weights_mul, subsequence=subsequence)
    paths = res.paths
    spans = None
    if subsequence:
        spans = torch.stack([torch.stack((q[0, 1], q[-1, 1] + 1)) for q in paths]).to(cost.device)
    total = res.total
    if step_pattern == "symmetric2":
        width = (spans[:, 1] - spans[:, 0]) if subsequence else yl
        norm = (xl + width).to(total.dtype)
    else:
        norm = torch.tensor([len(q) for q in paths], dtype=total.dtype, device=total.device)
    return DTWResult(total, total / norm, paths, res.cost_matrix if return_cost_matrix else None, spans)


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
    with _overflow_explained(x, y, distance, band):
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
    with torch.no_grad(), _overflow_explained(x, y, distance, band):
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
        self.distance = check_distance(distance if distance is not None else ("sqeuclidean" if soft else "euclidean"))
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
