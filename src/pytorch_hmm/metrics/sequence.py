"""Minimum-edit-distance (Levenshtein) alignment of two label sequences.

The one edit-distance DP of :mod:`pytorch_hmm.metrics`: :func:`~pytorch_hmm.metrics.alignment.phone_error_rate`
counts its edits, and the label-aware boundary and duration metrics pair the segments it marks
as hits. With unit costs, for ``ref`` of length ``N`` and ``hyp`` of length ``M``::

    D[i, 0] = i,  D[0, j] = j
    D[i, j] = min(D[i-1, j] + 1,                         (deletion of ref[i-1])
                  D[i, j-1] + 1,                         (insertion of hyp[j-1])
                  D[i-1, j-1] + [ref[i-1] != hyp[j-1]])  (hit or substitution)

``D[N, M] = S + D + I``. Each row is computed with numpy at once: the insertion chain along a
row is a running minimum, ``D[i, j] = min_{k <= j} (t[k] + j - k)`` where ``t`` holds the
deletion and diagonal candidates, so the Python loop runs over rows (labels), never over cells.
The backtrace prefers, in order, the diagonal (hit or substitution), a deletion, an insertion.
"""

from __future__ import annotations

from typing import Hashable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

__all__ = ["EditAlignment", "align_sequences", "edit_distance"]


class EditAlignment(NamedTuple):
    """Result of :func:`align_sequences`.

    ``ops`` lists the edit path in order as ``(op, i, j)`` with ``op`` one of ``"hit"``,
    ``"sub"`` (both indices set), ``"del"`` (``j`` is ``None``) and ``"ins"`` (``i`` is ``None``).
    """

    distance: int
    hits: int
    substitutions: int
    deletions: int
    insertions: int
    ops: List[Tuple[str, Optional[int], Optional[int]]]


def _codes(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> Tuple[np.ndarray, np.ndarray]:
    vocab: dict = {}
    r = np.array([vocab.setdefault(x, len(vocab)) for x in ref], dtype=np.int64)
    h = np.array([vocab.setdefault(x, len(vocab)) for x in hyp], dtype=np.int64)
    return r, h


def _table(r: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The ``(N + 1, M + 1)`` table ``D`` of the module docstring."""
    n, m = len(r), len(h)
    cols = np.arange(m + 1, dtype=np.int64)
    d = np.empty((n + 1, m + 1), dtype=np.int64)
    d[0] = cols
    t = np.empty(m + 1, dtype=np.int64)
    for i in range(1, n + 1):  # one vector step per ref label
        prev = d[i - 1]
        t[0] = i
        np.minimum(prev[1:] + 1, prev[:-1] + (h != r[i - 1]), out=t[1:])
        d[i] = np.minimum.accumulate(t - cols) + cols
    return d


def align_sequences(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> EditAlignment:
    """Minimum-edit-distance alignment of ``ref`` to ``hyp`` (unit costs, labels compared by ``==``).

    >>> a = align_sequences(["k", "ae", "t"], ["k", "ah", "t", "s"])
    >>> a.distance, a.hits, a.substitutions, a.deletions, a.insertions
    (2, 2, 1, 0, 1)
    >>> a.ops
    [('hit', 0, 0), ('sub', 1, 1), ('hit', 2, 2), ('ins', None, 3)]
    """
    r, h = _codes(ref, hyp)
    d = _table(r, h)
    i, j = len(r), len(h)
    ops: List[Tuple[str, Optional[int], Optional[int]]] = []
    counts = {"hit": 0, "sub": 0, "del": 0, "ins": 0}
    while i > 0 or j > 0:  # backtrace: one step per edit (N + M at most)
        if i > 0 and j > 0 and d[i, j] == d[i - 1, j - 1] + (r[i - 1] != h[j - 1]):
            op = "hit" if r[i - 1] == h[j - 1] else "sub"
            ops.append((op, i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and d[i, j] == d[i - 1, j] + 1:
            op = "del"
            ops.append((op, i - 1, None))
            i -= 1
        else:
            op = "ins"
            ops.append((op, None, j - 1))
            j -= 1
        counts[op] += 1
    ops.reverse()
    return EditAlignment(int(d[-1, -1]), counts["hit"], counts["sub"], counts["del"], counts["ins"], ops)


def edit_distance(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> int:
    """Levenshtein distance ``S + D + I`` between two label sequences.

    >>> edit_distance("kitten", "sitting")
    3
    """
    r, h = _codes(ref, hyp)
    return int(_table(r, h)[-1, -1])
