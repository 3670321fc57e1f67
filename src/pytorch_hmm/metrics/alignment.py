"""Alignment accuracy: boundaries, frames, durations and phone error rate.

A *segmentation* is a list of segments ``(label, start_s, end_s)`` in time order (tuples or
lists, or objects with ``start``, ``end`` and ``unit``, ``label`` or ``token`` attributes, such as
:class:`~pytorch_hmm.alignment.Segment` in seconds), with
``0 <= start <= end`` and no overlap (``start[k] >= end[k-1]``); gaps (unlabelled time) are
allowed. Times may be Python or numpy numbers or 0-d tensors; labels any hashable.

Batches: every function takes one ``ref``/``hyp`` pair, or a batch (a list of segmentations
each, of equal count). A batch gives *pooled* (micro-averaged) results: counts are summed over
utterances before dividing, so long utterances weigh more.

Boundaries. The boundaries of a segmentation are its distinct onsets and offsets, in time
order: a contiguous segmentation of ``N`` segments has ``N + 1`` (the first onset, the ``N - 1``
phone-to-phone transitions, the last offset); an offset followed by a gap is a boundary of its
own. Two boundaries closer than ``1e-6`` s are one boundary, and every "within tolerance" test
has ``1e-6`` s slack for float round-off (``0.13 - 0.11 > 0.02`` in floating point; float32
times). Times are read in seconds; any unit works if the tolerances use the same one.

Matching (one-to-one, so precision and recall never exceed 1):

* ``label_aware=True`` (default): the label sequences (after ``fold``) are aligned by minimum
  edit distance (:func:`~pytorch_hmm.metrics.sequence.align_sequences`); for every *hit* (a ref
  segment aligned to a hyp segment with the same folded label) the onsets are candidate pairs
  and the offsets are candidate pairs. Candidates are taken closest in time first (ties: onset
  pairs, then in order) and kept when neither boundary is paired yet, which treats ref and hyp
  alike (swapping them swaps precision and recall). The tolerance only decides whether a kept
  pair counts. With equal label strings and contiguous
  segments, boundary ``k`` of ``ref`` pairs with boundary ``k`` of ``hyp``.
* ``label_aware=False``: boundaries are matched by time alone: a maximum one-to-one matching
  of the pairs within the tolerance (two-pointer greedy over the sorted times, which is optimal
  for points on a line).

With ``m`` matched boundaries (within ``tol``), ``R`` ref and ``H`` hyp boundaries::

    accuracy(tol) = recall = m / R,   precision = m / H,   F1 = 2 P R / (P + R)  (0 if P = R = 0)
"""

from __future__ import annotations

import numbers
import re
from typing import Any, Callable, Dict, Hashable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from ..validation import check_lengths
from .sequence import align_sequences

__all__ = [
    "BoundaryScores",
    "BoundaryError",
    "boundary_accuracy",
    "boundary_errors",
    "boundary_f1",
    "boundary_mae",
    "frame_accuracy",
    "duration_accuracy",
    "phone_error_rate",
    "strip_stress",
]

EPS = 1e-6  # seconds of slack in every time comparison (float32 times are exact to ~1e-8 s)
Fold = Optional[Callable[[Hashable], Hashable]]


class BoundaryScores(NamedTuple):
    """Boundary precision, recall and F1, each in ``[0, 1]``."""

    precision: float
    recall: float
    f1: float


class BoundaryError(NamedTuple):
    """One reference boundary: the (folded) label of the segment that starts there (``None``
    for the last offset or an offset before a gap), its time and ``hyp - ref`` of its
    label-aware pair (``None`` when unpaired), in seconds."""

    label: Optional[Hashable]
    time: float
    error: Optional[float]


_LABEL_ATTRIBUTES = ("unit", "label", "token")  # Segment, labelled tuples, TokenSpan


def strip_stress(label: Hashable) -> Hashable:
    """Fold for ARPAbet labels: drop a trailing stress digit (``"AH0"`` -> ``"AH"``); other labels pass.

    >>> [strip_stress(p) for p in ("AH0", "IY1", "ER2", "K", 7)]
    ['AH', 'IY', 'ER', 'K', 7]
    """
    return re.sub(r"(?<=[A-Za-z])[0-2]$", "", label) if isinstance(label, str) else label


# ---------------------------------------------------------------------------------------------
# Input parsing


class _Seg(NamedTuple):
    labels: List[Hashable]
    starts: np.ndarray  # (N,) float64
    ends: np.ndarray  # (N,) float64


def _is_real(v: Any) -> bool:
    if isinstance(v, torch.Tensor):
        return v.ndim == 0 and not v.dtype.is_complex and v.dtype != torch.bool
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _is_segment(item: Any) -> bool:
    if isinstance(item, (tuple, list)):
        return len(item) == 3 and _is_real(item[1]) and _is_real(item[2]) and not isinstance(item[0], (tuple, list))
    return hasattr(item, "start") and hasattr(item, "end") and any(hasattr(item, a) for a in _LABEL_ATTRIBUTES)


def _seq_like(x: Any) -> bool:
    return isinstance(x, (list, tuple))


def _split(ref: Any, hyp: Any, is_item: Callable[[Any], bool]) -> Tuple[List[Any], List[Any], bool]:
    """Lists of utterances (one for a single pair). A batch is a list whose first element is a
    list of items (segments), not an item itself nor a malformed one (a list of scalars, which
    :func:`_parse` then reports as that segment)."""
    out = []
    for name, x in (("ref", ref), ("hyp", hyp)):
        if not _seq_like(x):
            raise HMMTypeError(f"{name} must be a list of (label, start_s, end_s) segments or a list of such lists; "
                            f"got {type(x).__name__}")
        first = x[0] if len(x) else None
        batch = _seq_like(first) and not is_item(first) and all(_seq_like(u) or is_item(u) for u in first)
        out.append((list(x) if batch else [x], batch))
    (r, rb), (h, hb) = out
    if rb != hb or len(r) != len(h):
        raise HMMValueError(
            f"ref and hyp must both be single utterances or batches of equal size; got "
            f"{len(r) if rb else 'one utterance'} and {len(h) if hb else 'one utterance'}"
        )
    return r, h, rb


def _time(v: Any, name: str) -> float:
    if not _is_real(v):
        raise HMMValueError(f"{name} must be a real number of seconds; got {v!r}")
    t = float(v)
    if not np.isfinite(t) or t < 0:
        raise HMMValueError(f"{name} must be finite and >= 0; got {t}")
    return t


def _parse(x: Sequence[Any], name: str, fold: Fold) -> _Seg:
    if not _seq_like(x):
        raise HMMTypeError(f"{name} must be a list of (label, start_s, end_s) segments; got {type(x).__name__}")
    if len(x) == 0:
        raise HMMValueError(f"{name} must hold at least one segment; got an empty segmentation")
    labels, starts, ends = [], [], []
    for k, item in enumerate(x):
        if not _is_segment(item):
            raise HMMValueError(f"{name}[{k}] must be a (label, start_s, end_s) segment; got {item!r}")
        if _seq_like(item):
            label, s, e = item
        else:
            label, s, e = next(getattr(item, a) for a in _LABEL_ATTRIBUTES if hasattr(item, a)), item.start, item.end
        s, e = _time(s, f"{name}[{k}] start"), _time(e, f"{name}[{k}] end")
        if e < s:
            raise HMMValueError(f"{name}[{k}] ends before it starts: start {s} > end {e}")
        if k and s < ends[-1] - EPS:
            raise HMMValueError(f"{name}[{k}] starts at {s}, before {name}[{k - 1}] ends at {ends[-1]}; "
                                "segments must be in time order without overlap")
        try:
            label = fold(label) if fold is not None else label
            hash(label)
        except TypeError as err:
            raise HMMValueError(f"{name}[{k}] label must be hashable (after fold); got {label!r}") from err
        labels.append(label)
        starts.append(s)
        ends.append(e)
    return _Seg(labels, np.asarray(starts), np.asarray(ends))


def _check_fold(fold: Fold) -> Fold:
    if fold is not None and not callable(fold):
        raise HMMValueError(f"fold must be None or a callable label -> label; got {fold!r}")
    return fold


def _segmentations(ref: Any, hyp: Any, fold: Fold) -> List[Tuple[_Seg, _Seg]]:
    fold = _check_fold(fold)
    refs, hyps, batch = _split(ref, hyp, _is_segment)
    name = (lambda n, b: f"{n}[{b}]") if batch else (lambda n, b: n)
    return [(_parse(r, name("ref", b), fold), _parse(h, name("hyp", b), fold)) for b, (r, h) in enumerate(zip(refs, hyps))]


# ---------------------------------------------------------------------------------------------
# Boundaries and their matching


def _boundaries(seg: _Seg) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct boundary times ``(R,)`` and, per segment, the index of its onset and offset."""
    points = np.stack([seg.starts, seg.ends], 1).reshape(-1)  # s0, e0, s1, e1, ... non-decreasing
    group = np.concatenate([[0], np.cumsum(np.diff(points) > EPS)])
    times = points[np.concatenate([[True], np.diff(group) > 0])]
    return times, group[0::2], group[1::2]


def _hits(r: _Seg, h: _Seg) -> Tuple[np.ndarray, np.ndarray]:
    pairs = [(i, j) for op, i, j in align_sequences(r.labels, h.labels).ops if op == "hit"]
    arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def _label_pairs(r: _Seg, h: _Seg) -> Tuple[np.ndarray, np.ndarray, int, int]:
    """Ref and hyp boundary times of the label-aware pairs (see the module docstring), and R, H."""
    rt, r_on, r_off = _boundaries(r)
    ht, h_on, h_off = _boundaries(h)
    i, j = _hits(r, h)
    rb = np.concatenate([r_on[i], r_off[i]])  # claims: onsets of hits, then offsets of hits
    hb = np.concatenate([h_on[j], h_off[j]])
    onset = np.arange(len(rb)) < len(i)
    order = np.lexsort((~onset, np.abs(rt[rb] - ht[hb])))  # closest first; ties: onset first
    paired_r, paired_h, kept = set(), set(), []
    for c in order.tolist():  # over candidate boundary pairs (tens per utterance), not frames
        if rb[c] not in paired_r and hb[c] not in paired_h:
            paired_r.add(rb[c])
            paired_h.add(hb[c])
            kept.append(c)
    kept = np.asarray(kept, dtype=np.int64)
    return rt[rb[kept]], ht[hb[kept]], len(rt), len(ht)


def _greedy(rt: np.ndarray, ht: np.ndarray, tol: float) -> Tuple[np.ndarray, np.ndarray]:
    """Maximum one-to-one matching of sorted times within ``tol`` (two pointers, O(R + H))."""
    i = j = 0
    ri, hj = [], []
    while i < len(rt) and j < len(ht):  # loop over boundaries (tens per utterance), not frames
        if abs(rt[i] - ht[j]) <= tol + EPS:
            ri.append(i)
            hj.append(j)
            i, j = i + 1, j + 1
        elif rt[i] < ht[j]:
            i += 1
        else:
            j += 1
    return rt[np.asarray(ri, dtype=np.int64)], ht[np.asarray(hj, dtype=np.int64)]


def _check_tol(tol: Any, name: str) -> float:
    if not _is_real(tol) or not (0 <= float(tol) < np.inf):
        raise HMMValueError(f"{name} must be a finite number of seconds >= 0; got {tol!r}")
    return float(tol)


def _counts(pairs, tol: float, label_aware: bool) -> Tuple[int, int, int]:
    """Pooled (matched within tol, R, H) over utterances."""
    m = n_ref = n_hyp = 0
    for r, h in pairs:
        if label_aware:
            rt, ht, nr, nh = _label_pairs(r, h)
            m += int(np.sum(np.abs(rt - ht) <= tol + EPS))
        else:
            rb, hb = _boundaries(r)[0], _boundaries(h)[0]
            nr, nh = len(rb), len(hb)
            m += len(_greedy(rb, hb, tol)[0])
        n_ref, n_hyp = n_ref + nr, n_hyp + nh
    return m, n_ref, n_hyp


def boundary_accuracy(
    ref: Any,
    hyp: Any,
    tolerances: Sequence[float] = (0.01, 0.02, 0.025, 0.05),
    *,
    label_aware: bool = True,
    fold: Fold = None,
) -> Dict[float, float]:
    """Share of reference boundaries matched one-to-one within each tolerance (seconds).

    ``accuracy(tol) = m(tol) / R`` (boundary recall; see the module docstring for boundaries
    and matching), in ``[0, 1]`` and non-decreasing in ``tol``.

    >>> ref = [("k", 0.0, 0.10), ("ae", 0.10, 0.25), ("t", 0.25, 0.40)]
    >>> hyp = [("k", 0.0, 0.12), ("ae", 0.12, 0.26), ("t", 0.26, 0.40)]
    >>> boundary_accuracy(ref, hyp, tolerances=(0.01, 0.02))
    {0.01: 0.75, 0.02: 1.0}
    """
    tols = [_check_tol(t, "tolerances") for t in (tolerances if _seq_like(tolerances) else [tolerances])]
    pairs = _segmentations(ref, hyp, fold)
    out = {}
    for t in tols:
        m, n_ref, _ = _counts(pairs, t, label_aware)
        out[t] = m / n_ref
    return out


def boundary_f1(
    ref: Any, hyp: Any, tolerance: float = 0.02, *, label_aware: bool = True, fold: Fold = None
) -> BoundaryScores:
    """Boundary precision ``m / H``, recall ``m / R`` and ``F1 = 2 P R / (P + R)`` within ``tolerance``.

    One-to-one matching (module docstring), so ``P, R, F1`` lie in ``[0, 1]``; F1 is 0 when
    ``P = R = 0``.

    >>> ref = [("k", 0.0, 0.10), ("ae", 0.10, 0.25), ("t", 0.25, 0.40)]
    >>> hyp = [("k", 0.0, 0.05), ("sil", 0.05, 0.10), ("ae", 0.10, 0.25), ("t", 0.25, 0.40)]
    >>> boundary_f1(ref, hyp, 0.02)
    BoundaryScores(precision=0.8, recall=1.0, f1=0.888...)
    """
    m, n_ref, n_hyp = _counts(_segmentations(ref, hyp, fold), _check_tol(tolerance, "tolerance"), label_aware)
    p, r = m / n_hyp, m / n_ref
    return BoundaryScores(p, r, 2 * p * r / (p + r) if p + r > 0 else 0.0)


def boundary_mae(
    ref: Any, hyp: Any, *, tolerance: Optional[float] = None, label_aware: bool = True, fold: Fold = None
) -> float:
    """Mean absolute difference (seconds) between matched boundaries, ``sum |r - h| / m``.

    Label-aware: over all label-aware pairs (``tolerance=None``) or those within ``tolerance``.
    ``label_aware=False`` needs a ``tolerance`` and averages over the greedy time matching.
    NaN when nothing is matched.

    >>> ref = [("k", 0.0, 0.10), ("ae", 0.10, 0.25), ("t", 0.25, 0.40)]
    >>> hyp = [("k", 0.0, 0.12), ("ae", 0.12, 0.26), ("t", 0.26, 0.40)]
    >>> round(boundary_mae(ref, hyp), 6)
    0.0075
    """
    tol = None if tolerance is None else _check_tol(tolerance, "tolerance")
    if tol is None and not label_aware:
        raise HMMValueError("boundary_mae with label_aware=False needs a tolerance (seconds) to match boundaries by time")
    diffs = []
    for r, h in _segmentations(ref, hyp, fold):
        rt, ht = _label_pairs(r, h)[:2] if label_aware else _greedy(_boundaries(r)[0], _boundaries(h)[0], tol)
        d = np.abs(rt - ht)
        diffs.append(d if tol is None else d[d <= tol + EPS])
    d = np.concatenate(diffs)
    return float(d.mean()) if len(d) else float("nan")


def boundary_errors(ref: Any, hyp: Any, *, fold: Fold = None) -> List[List[BoundaryError]]:
    """Per utterance, every reference boundary as a :class:`BoundaryError`, with the label-aware
    pairing that :func:`boundary_accuracy` and :func:`boundary_mae` count: for per-label
    breakdowns and error histograms. A single ``ref``/``hyp`` pair gives a list of one.

    >>> ref = [("k", 0.0, 0.10), ("ae", 0.10, 0.25)]
    >>> hyp = [("k", 0.0, 0.12), ("ae", 0.12, 0.25)]
    >>> [(e.label, e.time, round(e.error, 6)) for e in boundary_errors(ref, hyp)[0]]
    [('k', 0.0, 0.0), ('ae', 0.1, 0.02), (None, 0.25, 0.0)]
    """
    out = []
    for r, h in _segmentations(ref, hyp, fold):
        times, onsets, _ = _boundaries(r)
        labels: List[Optional[Hashable]] = [None] * len(times)
        for k, b in enumerate(onsets.tolist()):
            labels[b] = r.labels[k]
        errors: List[Optional[float]] = [None] * len(times)
        rt, ht = _label_pairs(r, h)[:2]
        for b, d in zip(np.searchsorted(times, rt).tolist(), (ht - rt).tolist()):
            errors[b] = d
        out.append([BoundaryError(lab, t, e) for lab, t, e in zip(labels, times.tolist(), errors)])
    return out


# ---------------------------------------------------------------------------------------------
# Durations and phone error rate


def duration_accuracy(
    ref: Any, hyp: Any, rel_tol: float = 0.2, abs_tol: float = 0.01, *, fold: Fold = None
) -> float:
    """Share of reference segments whose duration the hypothesis gets right.

    A ref segment ``i`` of duration ``d_i`` counts when it is a hit of the label alignment
    (paired with hyp segment ``j`` of the same folded label) and
    ``|d_hyp_j - d_i| <= max(rel_tol * d_i, abs_tol)`` (default: within 20 % or one 10 ms
    frame). Denominator: all ref segments (a deleted or substituted phone counts as wrong).

    >>> ref = [("k", 0.0, 0.10), ("ae", 0.10, 0.25), ("t", 0.25, 0.40)]
    >>> hyp = [("k", 0.0, 0.13), ("ae", 0.13, 0.26), ("t", 0.26, 0.40)]
    >>> duration_accuracy(ref, hyp)
    0.666...
    """
    rel_tol, abs_tol = _check_tol(rel_tol, "rel_tol"), _check_tol(abs_tol, "abs_tol")
    good = total = 0
    for r, h in _segmentations(ref, hyp, fold):
        i, j = _hits(r, h)
        d_ref = (r.ends - r.starts)[i]
        d_hyp = (h.ends - h.starts)[j]
        good += int(np.sum(np.abs(d_hyp - d_ref) <= np.maximum(rel_tol * d_ref, abs_tol) + EPS))
        total += len(r.labels)
    return good / total


def _label_seq(x: Any, name: str, lengths: Any, fold: Fold) -> List[List[Hashable]]:
    """Label sequences of one utterance or a batch: arrays ``(L,)``/``(B, L)`` or lists."""
    if isinstance(x, (np.ndarray, torch.Tensor)):
        t = torch.as_tensor(x)
        if t.ndim not in (1, 2):
            raise HMMDimensionError(f"{name} must be (L,) or (B, L) label ids; got shape {tuple(t.shape)}",
                                    expected_shape=("B", "L"), actual_shape=t.shape)
        if t.dtype.is_floating_point or t.dtype.is_complex:
            raise HMMDtypeError(f"{name} must hold integer label ids; got {t.dtype}")
        t2 = t if t.ndim == 2 else t[None]
        lens = check_lengths(lengths, f"{name}_lengths", t2.shape[0], t2.shape[1], "cpu", low=0).tolist()
        rows = t2.cpu().tolist()
        seqs = [row[:n] for row, n in zip(rows, lens)]
    else:
        if lengths is not None:
            raise HMMValueError(f"{name}_lengths is only for (B, L) arrays; {name} is a {type(x).__name__}")
        if not _seq_like(x):
            raise HMMTypeError(f"{name} must be a list of labels or segments, a batch of them, or an array; got {type(x).__name__}")
        # a list inside is a label sequence (batch); segments here are tuples or span objects,
        # so [[1, 2, 3], [4, 5, 6]] is two utterances of integer labels, not two segments
        batch = len(x) > 0 and isinstance(x[0], list)
        seqs = [list(u) for u in (x if batch else [x])]
        seqs = [[_segment_label(u) if _is_label_segment(u) else u for u in s] for s in seqs]
    return [[fold(v) for v in s] for s in seqs] if fold is not None else seqs


def _is_label_segment(item: Any) -> bool:
    return (isinstance(item, tuple) or not _seq_like(item)) and _is_segment(item)


def _segment_label(item: Any) -> Hashable:
    return item[0] if _seq_like(item) else getattr(item, "label", getattr(item, "token", None))


def phone_error_rate(
    ref: Any, hyp: Any, *, fold: Fold = None, ref_lengths: Any = None, hyp_lengths: Any = None
) -> float:
    """Phone (token) error rate ``(S + D + I) / N`` from the minimum edit distance.

    ``ref``/``hyp``: label lists, segmentations (labels taken in order; here segments must be
    ``(label, start, end)`` *tuples* or span objects), integer arrays ``(L,)``, or batches (a
    list of lists, or ``(B, L)`` arrays with ``*_lengths``): a list whose items are lists is a
    batch of label sequences. A batch pools the errors and ``N`` (total ref labels). May exceed 1
    (insertions). ``N`` must be > 0.

    >>> phone_error_rate(["k", "ae", "t"], ["k", "ah", "t", "s"])
    0.666...
    >>> phone_error_rate(["K", "AE1", "T"], ["K", "AE0", "T"], fold=strip_stress)
    0.0
    """
    fold = _check_fold(fold)
    refs = _label_seq(ref, "ref", ref_lengths, fold)
    hyps = _label_seq(hyp, "hyp", hyp_lengths, fold)
    if len(refs) != len(hyps):
        raise HMMValueError(f"ref and hyp must hold the same number of utterances; got {len(refs)} and {len(hyps)}")
    n = sum(len(r) for r in refs)
    if n == 0:
        raise HMMValueError("ref must hold at least one label (PER divides by the number of ref labels)")
    return sum(align_sequences(r, h).distance for r, h in zip(refs, hyps)) / n


# ---------------------------------------------------------------------------------------------
# Frames


def _frame_ids(seg: _Seg, n_frames: int, shift: float, vocab: dict) -> np.ndarray:
    """Label id per frame (centre ``(t + 0.5) shift``); -1 where no segment covers the centre."""
    ids = np.array([vocab.setdefault(x, len(vocab)) for x in seg.labels], dtype=np.int64)
    centre = (np.arange(n_frames) + 0.5) * shift
    k = np.searchsorted(seg.starts, centre, side="right") - 1
    inside = (k >= 0) & (centre < seg.ends[np.maximum(k, 0)])
    return np.where(inside, ids[np.maximum(k, 0)], -1)


# frames frame_accuracy will lay out for one segmentation (1e8: ~11 days at 10 ms, 1.6 GB of ids)
MAX_FRAMES = 10**8


def frame_accuracy(
    ref: Any, hyp: Any, frame_shift: float = 0.01, *, lengths: Any = None, fold: Fold = None
) -> float:
    """Share of frames whose labels agree.

    Segmentations: frame ``t`` has centre ``c_t = (t + 0.5) frame_shift`` for ``c_t < end`` of
    the ref's last segment; its label is that of the segment with ``start <= c_t < end`` (or
    "none" in a gap). ``accuracy = #{t : ref(t) == hyp(t)} / T_ref``; frames past the hyp's end
    are "none" in the hyp, so they count as errors (never truncated).

    Frame-label arrays (torch or numpy, integer ids): ``ref`` and ``hyp`` ``(T,)`` or ``(B, T)``
    of the same shape, ``lengths (B,)`` valid frames per row (default all ``T``); the accuracy is
    pooled over the valid frames. ``frame_shift`` and ``fold`` apply to segmentations only.

    >>> ref = [("k", 0.0, 0.10), ("ae", 0.10, 0.25), ("t", 0.25, 0.40)]
    >>> hyp = [("k", 0.0, 0.12), ("ae", 0.12, 0.26), ("t", 0.26, 0.40)]
    >>> frame_accuracy(ref, hyp)
    0.925
    >>> frame_accuracy(torch.tensor([[1, 1, 2, 2], [3, 3, 0, 0]]), np.array([[1, 2, 2, 2], [3, 3, 3, 3]]),
    ...                lengths=[4, 2])
    0.833...
    """
    if isinstance(ref, (np.ndarray, torch.Tensor)) or isinstance(hyp, (np.ndarray, torch.Tensor)):
        return _frame_accuracy_arrays(ref, hyp, lengths, fold)
    if lengths is not None:
        raise HMMValueError("lengths is only for frame-label arrays; ref and hyp are segmentations")
    shift = _check_tol(frame_shift, "frame_shift")
    if shift == 0:
        raise HMMValueError("frame_shift must be > 0 seconds; got 0")
    good = total = 0
    for r, h in _segmentations(ref, hyp, fold):
        n_frames = int(np.ceil(r.ends[-1] / shift - 0.5 - EPS))
        if n_frames > MAX_FRAMES:  # checked before two arrays of that many frames are allocated
            raise HMMValueError(
                f"ref ends at {float(r.ends[-1]):g} s, {n_frames} frames of frame_shift {shift:g} s (more than "
                f"{MAX_FRAMES:.0e}); segment times must be in seconds (are they samples or milliseconds?)"
            )
        vocab: dict = {}
        a, b = _frame_ids(r, n_frames, shift, vocab), _frame_ids(h, n_frames, shift, vocab)
        good += int(np.sum(a == b))
        total += n_frames
    if total == 0:
        raise HMMValueError("ref spans no frame centre; frame_accuracy needs ref longer than frame_shift / 2")
    return good / total


def _as_ids(x: Any, name: str) -> torch.Tensor:
    if not isinstance(x, (np.ndarray, torch.Tensor)):
        raise HMMTypeError(f"{name} must be a torch.Tensor or numpy array of frame label ids when the other one is; "
                        f"got {type(x).__name__}")
    t = torch.as_tensor(x)
    if t.dtype.is_floating_point or t.dtype.is_complex:
        raise HMMDtypeError(f"{name} must hold integer frame label ids; got {t.dtype}")
    if t.ndim not in (1, 2):
        raise HMMDimensionError(f"{name} must be (T,) or (B, T) frame label ids; got shape {tuple(t.shape)}",
                                expected_shape=("B", "T"), actual_shape=t.shape)
    return t if t.ndim == 2 else t[None]


def _frame_accuracy_arrays(ref: Any, hyp: Any, lengths: Any, fold: Fold) -> float:
    if fold is not None:
        raise HMMValueError("fold applies to segment labels; map frame label ids before calling frame_accuracy")
    r, h = _as_ids(ref, "ref"), _as_ids(hyp, "hyp")
    if r.shape != h.shape:
        raise HMMDimensionError(f"hyp must have the shape of ref {tuple(torch.as_tensor(ref).shape)}; "
                                f"got {tuple(torch.as_tensor(hyp).shape)}",
                                expected_shape=torch.as_tensor(ref).shape, actual_shape=torch.as_tensor(hyp).shape)
    h = h.to(r.device)
    lens = check_lengths(lengths, "lengths", r.shape[0], r.shape[1], r.device, low=0)
    mask = torch.arange(r.shape[1], device=r.device)[None, :] < lens[:, None]
    total = int(lens.sum())
    if total == 0:
        raise HMMValueError("frame_accuracy needs at least one valid frame; lengths are all 0")
    return int(((r == h) & mask).sum()) / total
