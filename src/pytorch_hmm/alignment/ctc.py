"""CTC loss, forced alignment and greedy decoding on the shared chain kernel.

A target ``l_1 .. l_S`` becomes the blank-extended chain of ``K = 2 S + 1`` states
``(blank, l_1, blank, l_2, ..., l_S, blank)``: a :class:`~pytorch_hmm.alignment.graph.StateGraph`
over the ``C`` classes with :class:`~pytorch_hmm.transitions.Banded` transitions of width 3:
stay (``w = 0``), next (``w = 1``) and skip a blank (``w = 2``, only into a label that
differs from the label two states back). A path may start in the first
blank or the first label and must end in the last label or the last blank. Emissions are
``log_probs`` gathered at each state's token, so ``-log_partition`` of this chain is the CTC
loss and :func:`~pytorch_hmm.kernel.viterbi` on it is CTC forced alignment. Each label state
is its own graph position (blanks have none), so the token spans of an alignment are the
graph's segments.

Batches hold targets of different lengths: the chain has ``K = 2 S_max + 1`` states and the
states past ``2 S_b + 1`` of a shorter target are padding states (unit ``-1``, unreachable).

``log_probs`` are batch-first ``(B, T, C)`` (``torch.nn.functional.ctc_loss`` is time-first) or,
as in ``F.ctc_loss``, unbatched ``(T, C)`` with ``(S,)`` targets. An item with 0 input frames
never reaches the kernel (whose lengths are at least 1): its loss is 0 for an empty target and
``inf`` (infeasible) otherwise, as in ``F.ctc_loss``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import List, NamedTuple, Sequence, Tuple, Union

import numpy as np

import torch
from torch import nn

from ..errors import HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError, InfeasibleAlignmentError
from ..validation import check_finite_or_neginf, check_frame_scores, check_lengths, frame_mask
from ..transitions import Banded
from .graph import StateGraph
from .spans import TokenSpan

__all__ = ["ctc_loss", "ctc_forced_align", "ctc_greedy_decode", "CTCAligner", "CTCAlignment"]

IntsLike = Union[torch.Tensor, Sequence[int], int, None]
REDUCTIONS = ("none", "sum", "mean")
_NEG_INF = float("-inf")


@dataclass
class _Batch:
    """Validated CTC inputs: ``targets`` padded to ``(B, S_max)`` (padding = blank), lengths ``(B,)`` int64."""

    log_probs: torch.Tensor
    targets: torch.Tensor
    input_lengths: torch.Tensor
    target_lengths: torch.Tensor
    blank: int


def ctc_loss(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: IntsLike = None,
    target_lengths: IntsLike = None,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """CTC negative log-likelihood, equal in value to ``torch.nn.functional.ctc_loss``.

    Args:
        log_probs: ``(B, T, C)`` float, per-frame log-probabilities of the ``C`` classes
            (batch-first; pass ``x.transpose(0, 1)`` for a time-first ``(T, B, C)`` tensor), or
            one unbatched sequence ``(T, C)`` as ``F.ctc_loss`` takes it. ``B = 0`` and ``T = 0``
            are errors, as in ``F.ctc_loss``.
        targets: ``(B, S_max)`` padded, or 1-D ``(sum(target_lengths),)`` concatenated token ids
            in ``[0, C)``, never ``blank``. Entries past each target length are ignored.
            Unbatched: ``(S,)`` (or ``(1, S)``).
        input_lengths: ``(B,)`` frames per sequence in ``[0, T]``; default all ``T``. Unbatched:
            an int, a 0-d tensor or a length-1 sequence / tensor.
        target_lengths: ``(B,)`` tokens per target; default ``S_max`` (2-D targets only).
            Unbatched: like ``input_lengths``; default ``S``.
        blank: id of the blank class.
        reduction: ``"none"`` -> ``(B,)`` (a 0-d tensor when unbatched); ``"sum"``; ``"mean"``:
            each loss divided by its target length (at least 1), then averaged over the batch
            (as in ``F.ctc_loss``).
        zero_infinity: replace infinite losses (targets too long for their input) and their
            gradients by 0. Without it such items give ``inf``.
        backend: kernel backend (``"auto"``, ``"torch"``, ``"numba"``).

    Empty items, as in ``F.ctc_loss``: a target of length 0 costs ``-sum_t log_probs[t, blank]``;
    an input of length 0 costs 0 with an empty target and ``inf`` otherwise (0 with
    ``zero_infinity``).

    Gradients: this is the true derivative. W.r.t. ``log_probs`` it is minus the expected
    number of frames in which each class is emitted (the posterior of the CTC states), whereas
    PyTorch's native ``F.ctc_loss`` returns ``exp(log_probs) - posterior``, which is only
    correct after a ``log_softmax``. Both agree w.r.t. the logits before ``log_softmax``.
    An infinite (infeasible) loss gets a zero gradient here (``F.ctc_loss`` gives NaN).
    """
    if reduction not in REDUCTIONS:
        raise HMMValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
    unbatched, (log_probs, targets, input_lengths, target_lengths) = _batched(log_probs, targets, input_lengths, target_lengths)
    batch = _validate(log_probs, targets, input_lengths, target_lengths, blank)
    run, empty = _non_empty(batch)
    loss = -_graph(run).log_partition(run.log_probs, run.input_lengths, backend=backend)
    if empty is not None:  # 0 frames: free for an empty target, impossible otherwise
        impossible = torch.where(batch.target_lengths > 0, torch.inf, 0.0).to(loss.dtype)
        loss = torch.where(empty, impossible, loss)
    if zero_infinity:
        loss = torch.where(torch.isinf(loss), torch.zeros((), dtype=loss.dtype, device=loss.device), loss)
    if reduction == "none":
        return loss[0] if unbatched else loss
    if reduction == "sum":
        return loss.sum()
    return (loss / batch.target_lengths.clamp(min=1).to(loss.dtype)).mean()


def ctc_forced_align(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    input_lengths: IntsLike = None,
    target_lengths: IntsLike = None,
    blank: int = 0,
    *,
    backend: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Most likely CTC alignment of each target to its frames (batched, variable lengths).

    Arguments as in :func:`ctc_loss`, unbatched ``(T, C)`` input and 0-frame items included.

    Returns:
        labels: ``(B, T)`` int64 token id per frame (``blank`` included), ``-1`` at padded frames
            (every frame of an item with input length 0); ``(T,)`` when unbatched.
        scores: ``(B, T)`` ``log_probs`` of each frame's label, 0 at padded frames, so that
            ``scores.sum(1)`` is the log-score of the best alignment; ``(T,)`` when unbatched.

    Raises:
        InfeasibleAlignmentError: an input is shorter than ``S + repeats`` frames (a blank must
            separate equal consecutive tokens), or every alignment hits a ``-inf`` log-prob.
    """
    unbatched, (log_probs, targets, input_lengths, target_lengths) = _batched(log_probs, targets, input_lengths, target_lengths)
    batch = _validate(log_probs, targets, input_lengths, target_lengths, blank)
    _, _, labels, scores = _align(batch, backend)
    return (labels[0], scores[0]) if unbatched else (labels, scores)


def _align(batch: _Batch, backend: str) -> Tuple[StateGraph, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(graph, state paths (B, T), labels (B, T), scores (B, T))`` of :func:`ctc_forced_align`."""
    _check_feasible(batch)
    run, empty = _non_empty(batch)
    g = _graph(run)
    paths, best = g.viterbi(run.log_probs, run.input_lengths, backend=backend)
    if empty is not None:  # an item of 0 frames (and, being feasible, 0 tokens) has no frames to label
        paths = paths.masked_fill(empty[:, None], -1)
    dead = torch.isneginf(best)
    if bool(dead.any()):
        b = int(dead.nonzero()[0, 0])
        raise InfeasibleAlignmentError(
            f"no CTC alignment with a finite score for batch item {b}: every alignment of its "
            f"{int(batch.target_lengths[b])} tokens to its {int(batch.input_lengths[b])} frames "
            "passes through a frame where log_probs of the required token is -inf"
        )
    return g, paths, g.path_units(paths), g.path_scores(run.log_probs, paths)


def _non_empty(batch: _Batch) -> Tuple[_Batch, Union[torch.Tensor, None]]:
    """``(batch for the kernel, (B,) bool of 0-frame items or None)``.

    The kernel needs at least one frame per item: a 0-frame item runs as one frame of zeros with
    an empty target (``masked_fill``, so no gradient reaches its ``log_probs``), and the caller
    replaces its result.
    """
    empty = batch.input_lengths == 0
    if not bool(empty.any()):
        return batch, None
    lp = batch.log_probs.masked_fill(empty[:, None, None], 0.0)
    lengths = batch.input_lengths.clamp(min=1)
    target_lengths = batch.target_lengths.masked_fill(empty, 0)
    return _Batch(lp, batch.targets, lengths, target_lengths, batch.blank), empty


def ctc_greedy_decode(log_probs: torch.Tensor, input_lengths: IntsLike = None, blank: int = 0) -> List[List[int]]:
    """Best class per frame, repeats collapsed and blanks dropped: one token list per sequence.

    Args:
        log_probs: ``(B, T, C)``; input_lengths: ``(B,)`` in ``[1, T]`` (default all ``T``).
    """
    lp = check_frame_scores(log_probs, "log_probs", "C", "class", layout="batch-first ")
    bsz, t_max, c = lp.shape
    _check_blank(blank, c)
    lengths = check_lengths(input_lengths, "input_lengths", bsz, t_max, lp.device)
    valid = frame_mask(lengths, t_max, lp.device)
    check_finite_or_neginf(lp, "log_probs", valid[:, :, None])
    best = lp.argmax(-1).masked_fill(~valid, -1)
    previous = torch.cat([best.new_full((bsz, 1), -1), best[:, :-1]], 1)
    keep = valid & (best != previous) & (best != blank)
    return [tokens.tolist() for tokens in torch.split(best[keep], keep.sum(1).tolist())]


class CTCAlignment(NamedTuple):
    """Result of :meth:`CTCAligner.align`: frame ``labels``/``scores`` ``(B, T)`` and token ``spans`` per sequence."""

    labels: torch.Tensor
    scores: torch.Tensor
    spans: List[List[TokenSpan]]


class CTCAligner(nn.Module):
    """CTC as a module: ``forward`` is the loss, ``align`` the forced alignment, ``decode`` greedy decoding.

    ``forward`` also takes unbatched ``(T, C)`` input (see :func:`ctc_loss`); ``align`` and
    ``decode`` are batched ``(B, T, C)`` only.

    Args:
        blank: id of the blank class.
        reduction, zero_infinity: as in :func:`ctc_loss`.
        backend: kernel backend for the loss and the alignment.
    """

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False, backend: str = "auto") -> None:
        super().__init__()
        if not isinstance(blank, int) or isinstance(blank, bool) or blank < 0:
            raise HMMValueError(f"blank must be a non-negative int; got {blank!r}")
        if reduction not in REDUCTIONS:
            raise HMMValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
        self.blank = blank
        self.reduction = reduction
        self.zero_infinity = zero_infinity
        self.backend = backend

    def forward(
        self, log_probs: torch.Tensor, targets: torch.Tensor, input_lengths: IntsLike = None, target_lengths: IntsLike = None
    ) -> torch.Tensor:
        """CTC loss (see :func:`ctc_loss`)."""
        return ctc_loss(log_probs, targets, input_lengths, target_lengths, self.blank, self.reduction,
                        self.zero_infinity, backend=self.backend)

    def align(
        self, log_probs: torch.Tensor, targets: torch.Tensor, input_lengths: IntsLike = None, target_lengths: IntsLike = None
    ) -> CTCAlignment:
        """Forced alignment (see :func:`ctc_forced_align`) and its token spans: the segments of the label states.

        Equal to :func:`~pytorch_hmm.alignment.merge_tokens` of the frame labels (CTC puts a
        blank between equal tokens), built from graph positions.
        """
        batch = _validate(log_probs, targets, input_lengths, target_lengths, self.blank)
        g, paths, labels, scores = _align(batch, self.backend)
        spans = [[TokenSpan(s.unit, s.start, s.end, s.score) for s in row] for row in g.segments(paths, scores)]
        return CTCAlignment(labels, scores, spans)

    def decode(self, log_probs: torch.Tensor, input_lengths: IntsLike = None) -> List[List[int]]:
        """Greedy (best-path) decoding (see :func:`ctc_greedy_decode`)."""
        return ctc_greedy_decode(log_probs, input_lengths, self.blank)

    def extra_repr(self) -> str:
        return f"blank={self.blank}, reduction={self.reduction!r}, zero_infinity={self.zero_infinity}"


# ---------------------------------------------------------------------------------------
# graph
# ---------------------------------------------------------------------------------------


def _graph(batch: _Batch) -> StateGraph:
    """Build the ``K = 2 S_max + 1`` state chain (see the module docstring)."""
    lp, targets, target_lengths = batch.log_probs, batch.targets, batch.target_lengths
    bsz = lp.shape[0]
    k = 2 * targets.shape[1] + 1
    dev, dtype = lp.device, lp.dtype
    labels = torch.full((bsz, k), batch.blank, dtype=torch.long, device=dev)
    labels[:, 1::2] = targets
    num_states = (2 * target_lengths + 1)[:, None]  # (B, 1)
    has_label = (target_lengths > 0)[:, None]
    states = torch.arange(k, device=dev)[None]  # (1, K)
    padding = states >= num_states

    width = min(3, k)
    moves = torch.arange(width, device=dev)
    allowed = (states[..., None] + moves) < num_states[..., None]  # (B, K, W): destination exists
    if width == 3:
        two_ahead = torch.cat([labels[:, 2:], labels[:, :2]], 1)  # wrap-around columns are never allowed
        skip = (states % 2 == 1) & (labels != two_ahead)
        allowed = torch.cat([allowed[..., :2], (allowed[..., 2] & skip)[..., None]], -1)
    zero = torch.zeros((), dtype=dtype, device=dev)
    neg_inf = torch.full((), _NEG_INF, dtype=dtype, device=dev)
    trans = torch.where(allowed, zero, neg_inf)
    init = torch.where((states == 0) | ((states == 1) & has_label), zero, neg_inf)
    final = torch.where((states == num_states - 1) | ((states == num_states - 2) & has_label), zero, neg_inf)
    positions = states.masked_fill(padding | (states % 2 == 0), -1).expand(bsz, k)
    return StateGraph(labels.masked_fill(padding, -1), Banded(trans), init, final, positions=positions)


def _repeats(batch: _Batch) -> torch.Tensor:
    """``(B,)`` number of ``i`` with ``target[i] == target[i + 1]`` inside each target."""
    t = batch.targets
    if t.shape[1] < 2:
        return torch.zeros(t.shape[0], dtype=torch.long, device=t.device)
    inside = torch.arange(1, t.shape[1], device=t.device)[None] < batch.target_lengths[:, None]
    return ((t[:, 1:] == t[:, :-1]) & inside).sum(1)


def _check_feasible(batch: _Batch) -> None:
    repeats = _repeats(batch)
    need = batch.target_lengths + repeats
    short = batch.input_lengths < need
    if bool(short.any()):
        b = int(short.nonzero()[0, 0])
        s, r, t = int(batch.target_lengths[b]), int(repeats[b]), int(batch.input_lengths[b])
        raise InfeasibleAlignmentError(
            f"CTC alignment is infeasible for batch item {b}: its target needs at least S + repeats = "
            f"{s} + {r} = {s + r} frames (S = {s} tokens, {r} repeated consecutive tokens that need a "
            f"blank between them); got T = {t} frames"
        )


# ---------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------


def _validate(log_probs, targets, input_lengths, target_lengths, blank) -> _Batch:
    lp = check_frame_scores(log_probs, "log_probs", "C", "class", layout="batch-first ")
    bsz, t_max, c = lp.shape
    _check_blank(blank, c)
    in_len = check_lengths(input_lengths, "input_lengths", bsz, t_max, lp.device, low=0)
    padded, tgt_len = _check_targets(targets, target_lengths, bsz, lp.device)
    inside = torch.arange(padded.shape[1], device=lp.device)[None] < tgt_len[:, None]
    bad = inside & ((padded < 0) | (padded >= c) | (padded == blank))
    if bool(bad.any()):
        b, i = (int(v) for v in bad.nonzero()[0])
        raise HMMValueError(
            f"targets must hold class ids in [0, C) = [0, {c}) other than blank = {blank}; "
            f"got {int(padded[b, i])} at position {i} of batch item {b}"
        )
    padded = padded.masked_fill(~inside, blank)
    check_finite_or_neginf(lp, "log_probs", frame_mask(in_len, t_max, lp.device)[:, :, None])
    return _Batch(lp, padded, in_len, tgt_len, blank)


def _batched(log_probs, targets, input_lengths, target_lengths) -> Tuple[bool, tuple]:
    """``(unbatched, (log_probs, targets, input_lengths, target_lengths))`` with a batch axis of 1 added
    to unbatched ``(T, C)`` input, as ``F.ctc_loss`` accepts it; batched input passes unchanged."""
    if not isinstance(log_probs, torch.Tensor) or log_probs.ndim == 3:
        return False, (log_probs, targets, input_lengths, target_lengths)
    if log_probs.ndim != 2:
        raise HMMDimensionError(
            f"log_probs must be batch-first (B, T, C) or unbatched (T, C); got shape {tuple(log_probs.shape)}",
            expected_shape=("B", "T", "C"),
            actual_shape=log_probs.shape,
        )
    if 0 in log_probs.shape:
        raise HMMDimensionError(
            f"log_probs must have at least one frame and class; got unbatched shape {tuple(log_probs.shape)}",
            expected_shape=("T>0", "C>0"),
            actual_shape=log_probs.shape,
        )
    if isinstance(targets, torch.Tensor) and not (targets.ndim == 1 or (targets.ndim == 2 and targets.shape[0] == 1)):
        raise HMMDimensionError(
            f"targets must be (S,) (or (1, S)) with unbatched log_probs (T, C); got shape {tuple(targets.shape)}",
            expected_shape=("S",),
            actual_shape=targets.shape,
        )
    if isinstance(targets, torch.Tensor) and targets.ndim == 1:
        targets = targets.unsqueeze(0)
    lengths = (_one_length(input_lengths, "input_lengths"), _one_length(target_lengths, "target_lengths"))
    return True, (log_probs.unsqueeze(0), targets) + lengths


def _one_length(value: IntsLike, name: str) -> IntsLike:
    """An unbatched length (an int, a 0-d tensor or a length-1 sequence / tensor) as a ``(1,)`` sequence."""
    if value is None:
        return None
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return [int(value)]
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.ndim > 1:
            raise HMMDimensionError(
                f"{name} must be a scalar, a 0-d tensor or (1,) with unbatched log_probs (T, C); got shape {tuple(value.shape)}",
                expected_shape=(1,),
                actual_shape=value.shape,
            )
        return value.reshape(1)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) != 1:
        raise HMMDimensionError(
            f"{name} must be a scalar, a 0-d tensor or (1,) with unbatched log_probs (T, C); got {len(value)} values",
            expected_shape=(1,),
            actual_shape=(len(value),),
        )
    return value  # a length-1 sequence, or something check_lengths rejects with its own message


def _check_blank(blank, num_classes: int) -> None:
    if not isinstance(blank, int) or isinstance(blank, bool) or not 0 <= blank < num_classes:
        raise HMMValueError(f"blank must be an int in [0, C) = [0, {num_classes}); got {blank!r}")


def _check_targets(targets, target_lengths: IntsLike, bsz: int, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(padded (B, S_max), target_lengths (B,))`` from padded or concatenated targets."""
    if not isinstance(targets, torch.Tensor):
        raise HMMTypeError(f"targets must be a torch.Tensor of shape (B, S) or (sum(target_lengths),); got {type(targets).__name__}")
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        raise HMMDtypeError(f"targets must have an integer dtype; got {targets.dtype}")
    targets = targets.to(device=device, dtype=torch.long)
    if targets.ndim == 2:
        if targets.shape[0] != bsz:
            raise HMMDimensionError(
                f"targets must be (B, S) with B == {bsz} (the batch size of log_probs); got shape {tuple(targets.shape)}",
                expected_shape=(bsz, "S"),
                actual_shape=targets.shape,
            )
        s_max = targets.shape[1]
        lengths = check_lengths(target_lengths, "target_lengths", bsz, s_max, device, low=0)
        return targets, lengths
    if targets.ndim != 1:
        raise HMMDimensionError(
            f"targets must be (B, S) padded or (sum(target_lengths),) concatenated; got shape {tuple(targets.shape)}",
            expected_shape=(bsz, "S"),
            actual_shape=targets.shape,
        )
    if target_lengths is None:
        raise HMMValueError("target_lengths is required with 1-D (concatenated) targets")
    lengths = check_lengths(target_lengths, "target_lengths", bsz, None, device, low=0)
    total = int(lengths.sum())
    if targets.shape[0] != total:
        raise HMMDimensionError(
            f"concatenated targets must have sum(target_lengths) == {total} entries; got {targets.shape[0]}",
            expected_shape=(total,),
            actual_shape=targets.shape,
        )
    s_max = int(lengths.max())
    starts = torch.cumsum(lengths, 0) - lengths
    index = starts[:, None] + torch.arange(s_max, device=device)[None]
    inside = torch.arange(s_max, device=device)[None] < lengths[:, None]
    padded = targets[index.clamp(max=max(total - 1, 0))] if total > 0 else index.new_zeros((bsz, s_max))
    return torch.where(inside, padded, torch.zeros_like(padded)), lengths
