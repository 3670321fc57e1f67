"""Token spans: runs of equal frame labels turned into (token, start, end, score) segments.

:func:`merge_tokens` turns a frame-level CTC alignment (from
:func:`~pytorch_hmm.alignment.ctc_forced_align`) into one :class:`TokenSpan` per emitted
token: consecutive equal frames merge, blanks and padding (``-1``) are dropped, and a token
repeated with a blank between its runs gives two spans.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Union

import torch

from ..errors import HMMDimensionError, HMMDtypeError, HMMValueError

__all__ = ["TokenSpan", "merge_tokens"]


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
    bsz, t_max = labels.shape
    if t_max == 0:
        return [] if single else [[] for _ in range(bsz)]
    # a run starts at frame 0 of every row and wherever the label changes
    change = torch.ones_like(labels, dtype=torch.bool)
    change[:, 1:] = labels[:, 1:] != labels[:, :-1]
    flat_starts = change.reshape(-1).nonzero().squeeze(1)
    flat_ends = torch.cat([flat_starts[1:], flat_starts.new_tensor([bsz * t_max])])
    # a run never crosses a row boundary, because every row starts a new run
    tokens = labels.reshape(-1)[flat_starts]
    probs = scores.detach().reshape(-1).to(torch.float64).exp()
    cumulative = torch.cat([probs.new_zeros(1), probs.cumsum(0)])
    # clamped: differences of one running sum over the batch can round a mean of ones past 1
    mean = ((cumulative[flat_ends] - cumulative[flat_starts]) / (flat_ends - flat_starts)).clamp_(0.0, 1.0)
    keep = (tokens != blank) & (tokens >= 0)
    rows = (flat_starts // t_max)[keep].tolist()
    starts = (flat_starts % t_max)[keep].tolist()
    lengths = (flat_ends - flat_starts)[keep].tolist()
    out: List[List[TokenSpan]] = [[] for _ in range(bsz)]
    for row, tok, start, n, score in zip(rows, tokens[keep].tolist(), starts, lengths, mean[keep].tolist()):
        out[row].append(TokenSpan(tok, start, start + n, score))
    return out[0] if single else out


def _check(labels: torch.Tensor, scores: torch.Tensor, blank: int):
    for name, x in (("labels", labels), ("scores", scores)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (T,) or (B, T); got {type(x).__name__}")
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
    return labels, scores.to(labels.device)
