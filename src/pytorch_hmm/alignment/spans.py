"""Spans: runs of frames turned into (unit, start, end, score) segments.

:func:`path_segments` turns a path of graph states (a Viterbi path on a
:class:`~pytorch_hmm.alignment.graph.StateGraph`) into one
:class:`~pytorch_hmm.alignment.segments.Segment` per run of frames in one graph position, so
two equal adjacent phones (two positions) stay two segments. :func:`merge_tokens` turns a
frame-level CTC alignment (from :func:`~pytorch_hmm.alignment.ctc_forced_align`) into one
:class:`TokenSpan` per emitted token: consecutive equal frames merge, blanks and padding
(``-1``) are dropped, and a token repeated with a blank between its runs gives two spans.
Both score a span by the mean per-frame probability ``exp(score_t)``, in ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import torch

from ..errors import HMMDimensionError, HMMDtypeError, HMMValueError
from ..validation import check_finite_or_neginf, check_tensor
from .segments import Segment

__all__ = ["TokenSpan", "merge_tokens", "path_segments"]


@dataclass(frozen=True)
class TokenSpan:
    """One token over the frames ``start <= t < end`` (``end`` exclusive).

    ``score`` is the mean per-frame probability ``exp(score_t)`` over the span, in ``[0, 1]``.
    """

    token: int
    start: int
    end: int
    score: float

    def __len__(self) -> int:
        return self.end - self.start


def merge_tokens(
    labels: torch.Tensor, scores: torch.Tensor, blank: int = 0
) -> Union[List[TokenSpan], List[List[TokenSpan]]]:
    """Spans of the non-blank tokens of a frame alignment.

    Args:
        labels: ``(T,)`` or ``(B, T)`` integer token id per frame; ``-1`` marks padded frames.
        scores: same shape, the log-probability of each frame's label (as returned by
            :func:`~pytorch_hmm.alignment.ctc_forced_align`).
        blank: the blank id (dropped).

    Returns:
        For ``(T,)`` input a list of :class:`TokenSpan` in time order; for ``(B, T)`` input
        one such list per sequence. A span's score is the mean of ``exp(scores)`` over its frames.
    """
    labels, scores = _check(labels, scores, blank)
    single = labels.ndim == 1
    if single:
        labels, scores = labels[None], scores[None]
    out: List[List[TokenSpan]] = [[] for _ in range(labels.shape[0])]
    for row, token, start, end, score in _runs(labels, (labels != blank) & (labels >= 0), scores, labels):
        out[row].append(TokenSpan(token, start, end, score))
    return out[0] if single else out


def path_segments(
    paths: torch.Tensor,
    positions: torch.Tensor,
    units: torch.Tensor,
    scores: torch.Tensor,
    labels: Optional[Sequence[Sequence[Union[str, int]]]] = None,
) -> List[List[Segment]]:
    """Segments of a path of graph states: consecutive frames merge while they stay in one graph position.

    Args:
        paths: ``(B, T)`` int64 state per frame, ``-1`` at padded frames.
        positions: ``(B, K)`` int64 position id per state; ``-1`` = not reported (blank, padding).
        units: ``(B, K)`` int64 unit id per state (the segment's unit without ``labels``).
        scores: ``(B, T)`` float per-frame log-score; a segment scores the mean of ``exp(scores)``.
        labels: optional per item the unit to report for each position id.

    Returns one list of :class:`~pytorch_hmm.alignment.segments.Segment` (frames, ``end``
    exclusive) per item. Two equal adjacent units in different positions stay two segments.
    """
    for name, x, what in (("paths", paths, "(B, T)"), ("positions", positions, "(B, K)"), ("units", units, "(B, K)"),
                          ("scores", scores, "(B, T)")):
        check_tensor(x, name, what)
    if paths.ndim != 2 or positions.ndim != 2 or units.shape != positions.shape or positions.shape[0] != paths.shape[0]:
        raise HMMDimensionError(
            f"paths must be (B, T) and positions, units (B, K) with the same B; got {tuple(paths.shape)}, "
            f"{tuple(positions.shape)} and {tuple(units.shape)}",
            expected_shape=("B", "K"),
            actual_shape=positions.shape,
        )
    if scores.shape != paths.shape or not scores.dtype.is_floating_point:
        raise HMMDimensionError(
            f"scores must be a float tensor with the shape of paths {tuple(paths.shape)}; got {tuple(scores.shape)} {scores.dtype}",
            expected_shape=paths.shape,
            actual_shape=scores.shape,
        )
    if paths.dtype.is_floating_point or paths.dtype.is_complex or paths.dtype == torch.bool:
        raise HMMDtypeError(f"paths must have an integer dtype; got {paths.dtype}")
    if paths.numel():
        low, high = torch.stack([paths.min(), paths.max()]).tolist()
        if low < -1 or high >= positions.shape[1]:
            raise HMMValueError(f"paths must hold graph states in [0, K) = [0, {positions.shape[1]}) or -1 (padding); "
                                f"got values in [{low}, {high}]")
    check_finite_or_neginf(scores, "scores", paths.to(scores.device) >= 0, " (at frames that are not padding)")
    if labels is not None and len(labels) != paths.shape[0]:
        raise HMMValueError(f"labels must hold one sequence per batch item ({paths.shape[0]}); got {len(labels)}")
    state = paths.clamp(min=0)
    key = positions.gather(1, state).masked_fill(paths < 0, -1)  # (B, T) position per frame
    values = units.gather(1, state) if labels is None else key
    out: List[List[Segment]] = [[] for _ in range(paths.shape[0])]
    for row, value, start, end, score in _runs(key, key >= 0, scores.to(paths.device), values):
        if labels is not None and value >= len(labels[row]):
            raise HMMValueError(f"labels[{row}] must name every position id on the path of item {row}; "
                                f"got {len(labels[row])} labels and position {value}")
        out[row].append(Segment(value if labels is None else labels[row][value], start, end, score))
    return out


def _runs(
    keys: torch.Tensor, keep: torch.Tensor, scores: torch.Tensor, values: torch.Tensor
) -> Iterator[Tuple[int, int, int, int, float]]:
    """``(row, values at the run's first frame, start, end, mean exp(score))`` of each run of equal
    ``keys`` ``(B, T)`` whose ``keep`` is True (``end`` exclusive, frames within the row).

    Vectorised over the batch: one pass of tensor ops, then one host transfer.
    """
    bsz, t_max = keys.shape
    if t_max == 0:
        return iter(())
    # a run starts at frame 0 of every row and wherever the key changes
    change = torch.ones_like(keys, dtype=torch.bool)
    change[:, 1:] = keys[:, 1:] != keys[:, :-1]
    flat_starts = change.reshape(-1).nonzero().squeeze(1)
    flat_ends = torch.cat([flat_starts[1:], flat_starts.new_tensor([bsz * t_max])])
    # a run never crosses a row boundary, because every row starts a new run
    probs = scores.detach().reshape(-1).to(torch.float64).exp()
    cumulative = torch.cat([probs.new_zeros(1), probs.cumsum(0)])
    # clamped: differences of one running sum over the batch can round a mean of ones past 1
    mean = ((cumulative[flat_ends] - cumulative[flat_starts]) / (flat_ends - flat_starts)).clamp_(0.0, 1.0)
    kept = keep.reshape(-1)[flat_starts]
    starts, ends = flat_starts[kept], flat_ends[kept]
    rows = starts // t_max
    return zip(rows.tolist(), values.reshape(-1)[starts].tolist(), (starts % t_max).tolist(),
               (ends - rows * t_max).tolist(), mean[kept].tolist())


def _check(labels: torch.Tensor, scores: torch.Tensor, blank: int):
    for name, x in (("labels", labels), ("scores", scores)):
        check_tensor(x, name, "(T,) or (B, T)")
    if labels.ndim not in (1, 2):
        raise HMMDimensionError(
            f"labels must be (T,) or (B, T); got shape {tuple(labels.shape)}",
            expected_shape=("B", "T"),
            actual_shape=labels.shape,
        )
    if scores.shape != labels.shape:
        raise HMMDimensionError(
            f"scores must have the shape of labels {tuple(labels.shape)}; got {tuple(scores.shape)}",
            expected_shape=labels.shape,
            actual_shape=scores.shape,
        )
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise HMMDtypeError(f"labels must have an integer dtype; got {labels.dtype}")
    if not scores.dtype.is_floating_point:
        raise HMMDtypeError(f"scores must have a floating-point dtype; got {scores.dtype}")
    if not isinstance(blank, int) or isinstance(blank, bool) or blank < 0:
        raise HMMValueError(f"blank must be a non-negative int; got {blank!r}")
    scores = scores.to(labels.device)
    check_finite_or_neginf(scores, "scores", labels >= 0, " (at frames that are not padding)")
    return labels, scores
