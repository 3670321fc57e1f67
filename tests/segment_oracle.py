"""Brute-force oracle for the semi-Markov kernel: enumerate every segmentation.

Independent of ``pytorch_hmm`` (numpy + itertools, float64). A segmentation of ``L`` frames is
a list of ``(state, duration)`` whose durations sum to ``L``; consecutive states differ (the
kernel's transitions have a ``-inf`` diagonal, so equal neighbours score ``-inf`` anyway and
are skipped here). It scores

``init[k_0] + sum_i (dur[k_i, d_i - 1] + sum of em over its frames) + sum_i A[k_{i-1}, k_i] + final[k_last]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import numpy as np

from oracle import logsumexp

Segmentation = List[Tuple[int, int]]  # (state, duration)


def compositions(total: int, max_part: int) -> Iterator[Tuple[int, ...]]:
    """All ordered tuples of parts in ``1..max_part`` summing to ``total``."""
    if total == 0:
        yield ()
        return
    for first in range(1, min(total, max_part) + 1):
        for rest in compositions(total - first, max_part):
            yield (first,) + rest


def segmentations(length: int, num_states: int, max_duration: int) -> Iterator[Segmentation]:
    for durations in compositions(length, max_duration):
        for states in np.ndindex(*([num_states] * len(durations))):
            if all(a != b for a, b in zip(states, states[1:])):
                yield list(zip(states, durations))


def score(seg: Segmentation, em, trans, dur, init, final) -> float:
    total, t, prev = 0.0, 0, None
    for state, d in seg:
        total += init[state] if prev is None else trans[prev, state]
        total += dur[state, d - 1] + em[t:t + d, state].sum()
        t, prev = t + d, state
    return total + final[prev]


@dataclass
class SegmentTruth:
    log_z: float
    posteriors: np.ndarray  # (L, K)
    durations: np.ndarray  # (K, D) expected segment counts per duration
    transitions: np.ndarray  # (K, K)
    init: np.ndarray  # (K,)
    best_score: float
    best: Optional[Segmentation]


def brute_force(em, trans, dur, init, final=None, length: Optional[int] = None) -> SegmentTruth:
    """Exact marginals over all segmentations of ``em[:length]`` (float64 numpy arrays)."""
    em = np.asarray(em, dtype=np.float64)
    length = em.shape[0] if length is None else length
    k, d_max = np.shape(dur)
    final = np.zeros(k) if final is None else np.asarray(final, dtype=np.float64)
    segs = list(segmentations(length, k, d_max))
    scores = np.array([score(s, em, trans, dur, init, final) for s in segs])
    log_z = logsumexp(scores)
    post, counts = np.zeros((length, k)), np.zeros((k, d_max))
    moves, first = np.zeros((k, k)), np.zeros(k)
    best_i = int(np.argmax(scores)) if len(segs) else None
    if np.isfinite(log_z):
        for s, sc in zip(segs, scores):
            w = np.exp(sc - log_z)
            t = 0
            first[s[0][0]] += w
            for i, (state, d) in enumerate(s):
                post[t:t + d, state] += w
                counts[state, d - 1] += w
                if i:
                    moves[s[i - 1][0], state] += w
                t += d
    best_score = float(scores[best_i]) if best_i is not None else -np.inf
    return SegmentTruth(log_z, post, counts, moves, first, best_score,
                        segs[best_i] if best_i is not None and np.isfinite(best_score) else None)
