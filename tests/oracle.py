"""Brute-force oracle for the chain kernel: enumerate every state path.

Independent of ``pytorch_hmm`` on purpose (numpy + itertools, float64 only), so that the
kernel tests compare against something that shares no code with the kernel. Only meant for
tiny problems: the cost is ``K ** L`` paths.

Conventions (same as the kernel contract, DESIGN.md §3):

* ``log_emissions``: ``(T, K)``; only the first ``length`` frames are read.
* ``transitions``: dense ``(K, K)`` (static) or ``(T - 1, K, K)`` (per step; step ``t`` goes
  from frame ``t`` to ``t + 1``; only the first ``length - 1`` steps are read).
  ``[i, j] = log p(z_{t+1} = j | z_t = i)``.
* ``log_init``: ``(K,)``; ``log_final``: ``(K,)`` or ``None`` (= 0), added at the last frame.

A path ``z_0 .. z_{L-1}`` scores
``init[z_0] + em[0, z_0] + sum_t (A_t[z_t, z_{t+1}] + em[t+1, z_{t+1}]) + final[z_{L-1}]``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

NEG_INF = -np.inf


def banded_to_dense(banded: np.ndarray) -> np.ndarray:
    """``(..., K, W)`` band storage -> ``(..., K, K)`` dense, ``-inf`` off the band.

    ``banded[..., i, w]`` is the move ``i -> i + w``; entries with ``i + w >= K`` do not
    exist and are dropped whatever their value.
    """
    banded = np.asarray(banded, dtype=np.float64)
    k, w = banded.shape[-2:]
    dense = np.full(banded.shape[:-1] + (k,), NEG_INF, dtype=np.float64)
    for i in range(k):
        for d in range(w):
            if i + d < k:
                dense[..., i, i + d] = banded[..., i, d]
    return dense


def sparse_to_dense(predecessors: np.ndarray, log_probs: np.ndarray) -> np.ndarray:
    """Predecessor lists -> ``(..., K, K)`` dense, ``-inf`` where there is no edge.

    ``predecessors`` ``(K, P)`` (shared by every leading index of ``log_probs``) with ``-1`` for an
    unused slot (its entry is dropped whatever its value); ``log_probs[..., j, p]`` is the edge
    ``predecessors[j, p] -> j``. A source listed twice for one destination: probabilities add.
    """
    pred = np.asarray(predecessors, dtype=np.int64)
    lp = np.asarray(log_probs, dtype=np.float64)
    k, width = pred.shape
    dense = np.full(lp.shape[:-2] + (k, k), NEG_INF, dtype=np.float64)
    for j in range(k):
        for x in range(width):
            i = pred[j, x]
            if i >= 0:
                dense[..., i, j] = np.logaddexp(dense[..., i, j], lp[..., j, x])
    return dense


def dense_to_sparse_counts(dense: np.ndarray, predecessors: np.ndarray, log_probs: np.ndarray) -> np.ndarray:
    """Per-edge counts ``(..., K, K)`` -> per-slot ``(..., K, P)``: parallel edges share their count
    in proportion to their probabilities; unused slots and edges of probability 0 count 0."""
    pred = np.asarray(predecessors, dtype=np.int64)
    lp = np.asarray(log_probs, dtype=np.float64)
    merged = sparse_to_dense(pred, lp)
    k, width = pred.shape
    out = np.zeros(np.broadcast_shapes(dense.shape[:-2], lp.shape[:-2]) + (k, width), dtype=np.float64)
    for j in range(k):
        for x in range(width):
            i = pred[j, x]
            if i >= 0:
                with np.errstate(invalid="ignore"):
                    share = np.where(np.isneginf(lp[..., j, x]), 0.0, np.exp(lp[..., j, x] - merged[..., i, j]))
                out[..., j, x] = dense[..., i, j] * share
    return out


def dense_to_banded_counts(dense: np.ndarray, width: int) -> np.ndarray:
    """Gather ``(..., K, K)`` edge quantities into ``(..., K, W)`` band storage (0 off-chain)."""
    dense = np.asarray(dense, dtype=np.float64)
    k = dense.shape[-1]
    out = np.zeros(dense.shape[:-1] + (width,), dtype=np.float64)
    for i in range(k):
        for d in range(width):
            if i + d < k:
                out[..., i, d] = dense[..., i, i + d]
    return out


def logsumexp(values) -> float:
    """log(sum(exp(values))) in float64; ``-inf`` for an empty or all ``-inf`` input."""
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        return NEG_INF
    m = a.max()
    if m == NEG_INF:
        return NEG_INF
    return float(m + np.log(np.exp(a - m).sum()))


def _per_step(transitions: np.ndarray, length: int) -> np.ndarray:
    """Transitions as ``(length - 1, K, K)``, one matrix per step."""
    a = np.asarray(transitions, dtype=np.float64)
    if a.ndim == 2:
        return np.broadcast_to(a, (max(length - 1, 0),) + a.shape)
    if a.ndim != 3:
        raise ValueError(f"transitions must be (K, K) or (T-1, K, K); got {a.shape}")
    if a.shape[0] < length - 1:
        raise ValueError(f"need at least {length - 1} transition steps; got {a.shape[0]}")
    return a[: length - 1]


def _inputs(log_emissions, transitions, log_init, log_final, length):
    em = np.asarray(log_emissions, dtype=np.float64)
    if em.ndim != 2:
        raise ValueError(f"log_emissions must be (T, K); got {em.shape}")
    t_max, k = em.shape
    length = t_max if length is None else int(length)
    if not 1 <= length <= t_max:
        raise ValueError(f"length must be in [1, {t_max}]; got {length}")
    em = em[:length]
    steps = _per_step(transitions, length)
    init = np.asarray(log_init, dtype=np.float64).reshape(k)
    final = np.zeros(k) if log_final is None else np.asarray(log_final, dtype=np.float64).reshape(k)
    return em, steps, init, final, length, k


def path_score(log_emissions, transitions, log_init, path, log_final=None) -> float:
    """Score of one path (its length is the sequence length); no enumeration, any size."""
    path = np.asarray(path, dtype=np.int64)
    em, steps, init, final, length, _ = _inputs(log_emissions, transitions, log_init, log_final, len(path))
    s = init[path[0]] + em[0, path[0]]
    for t in range(length - 1):
        s += steps[t, path[t], path[t + 1]] + em[t + 1, path[t + 1]]
    return float(s + final[path[-1]])


@dataclass
class OracleResult:
    log_z: float
    posteriors: np.ndarray  # (L, K)
    expected_transitions: np.ndarray  # (L-1, K, K), per step
    best_score: float
    best_paths: List[Tuple[int, ...]] = field(default_factory=list)  # every path within tol of the best
    margin: float = np.inf  # best score minus the best score of any other path

    @property
    def unique_best(self) -> Optional[Tuple[int, ...]]:
        """The best path when it beats every other path by more than the tolerance."""
        return self.best_paths[0] if len(self.best_paths) == 1 else None


def brute_force(
    log_emissions,
    transitions,
    log_init,
    log_final=None,
    length: Optional[int] = None,
    tol: float = 1e-6,
) -> OracleResult:
    """Enumerate all ``K ** length`` paths of one sequence.

    Returns log Z, state posteriors ``(L, K)``, per-step expected transitions
    ``(L-1, K, K)``, the best score and every path whose score is within ``tol`` of it.
    With no finite-scoring path: log Z = best = -inf, zero posteriors/counts, no best path.
    """
    em, steps, init, final, length, k = _inputs(log_emissions, transitions, log_init, log_final, length)

    paths = np.array(list(itertools.product(range(k), repeat=length)), dtype=np.int64).reshape(-1, length)
    n = paths.shape[0]
    scores = init[paths[:, 0]] + em[0, paths[:, 0]]
    for t in range(length - 1):
        scores = scores + steps[t][paths[:, t], paths[:, t + 1]] + em[t + 1, paths[:, t + 1]]
    scores = scores + final[paths[:, -1]]

    log_z = logsumexp(scores)
    posteriors = np.zeros((length, k))
    xi = np.zeros((max(length - 1, 0), k, k))
    if log_z == NEG_INF:
        return OracleResult(NEG_INF, posteriors, xi, NEG_INF, [], np.inf)

    weights = np.exp(scores - log_z)  # -inf scores give exactly 0
    for t in range(length):
        np.add.at(posteriors[t], paths[:, t], weights)
    for t in range(length - 1):
        np.add.at(xi[t], (paths[:, t], paths[:, t + 1]), weights)

    order = np.argsort(-scores, kind="stable")
    best = float(scores[order[0]])
    close = [tuple(int(z) for z in paths[i]) for i in range(n) if scores[i] >= best - tol]
    margin = best - float(scores[order[1]]) if n > 1 else np.inf
    return OracleResult(log_z, posteriors, xi, best, close, margin)


# ---------------------------------------------------------------------------------------
# Random batched problems (numpy only) and the oracle's answers for a whole batch.
# ---------------------------------------------------------------------------------------

STORAGES = ("dense", "banded", "sparse")
LAYOUTS = ("shared", "batched", "time_varying")

# Value written where the kernel must not look (padded frames/steps, band entries past the
# last state). Large and positive so that any leak changes the result visibly.
GARBAGE = 1e3


@dataclass
class Problem:
    """One batched kernel input in numpy (float64), plus what the oracle needs to read it.

    ``trans`` is in the storage's own shape: dense ``(K, K)``, ``(B, K, K)``,
    ``(B, T-1, K, K)``; banded ``(K, W)``, ``(B, K, W)``, ``(B, T-1, K, W)``; sparse
    ``(K, P)``, ``(B, K, P)``, ``(B, T-1, K, P)`` with ``pred`` ``(K, P)`` or ``(B, K, P)``.
    ``lengths`` ``None`` means all ``T`` (the kernel is then called without lengths).
    """

    em: np.ndarray  # (B, T, K)
    trans: np.ndarray
    storage: str  # "dense" | "banded" | "sparse"
    init: np.ndarray  # (K,) or (B, K)
    final: Optional[np.ndarray]  # None, (K,) or (B, K)
    lengths: Optional[np.ndarray]  # None or (B,) int64
    pred: Optional[np.ndarray] = None  # sparse only: (K, P) or (B, K, P) int64, -1 = unused slot

    def item_pred(self, b: int) -> np.ndarray:
        """Sparse predecessor lists ``(K, P)`` of item ``b``."""
        return self.pred if self.pred.ndim == 2 else self.pred[b]

    @property
    def batch(self) -> int:
        return self.em.shape[0]

    @property
    def frames(self) -> int:
        return self.em.shape[1]

    @property
    def states(self) -> int:
        return self.em.shape[2]

    @property
    def layout(self) -> str:
        return {2: "shared", 3: "batched", 4: "time_varying"}[self.trans.ndim]

    def length(self, b: int) -> int:
        return self.frames if self.lengths is None else int(self.lengths[b])

    def item(self, b: int):
        """Oracle arguments for item ``b``: (em (T, K), dense transitions, init, final, L)."""
        trans = self.trans if self.trans.ndim == 2 else self.trans[b]
        if self.storage == "banded":
            trans = banded_to_dense(trans)
        elif self.storage == "sparse":
            trans = sparse_to_dense(self.item_pred(b), trans)
        init = self.init if self.init.ndim == 1 else self.init[b]
        final = None if self.final is None else (self.final if self.final.ndim == 1 else self.final[b])
        return self.em[b], trans, init, final, self.length(b)

    def solve(self, tol: float = 1e-6) -> "BatchAnswer":
        return BatchAnswer.of(self, tol)


@dataclass
class BatchAnswer:
    """The oracle's answers for a :class:`Problem`, laid out like the kernel's outputs."""

    items: List[OracleResult]
    log_z: np.ndarray  # (B,)
    posteriors: np.ndarray  # (B, T, K), 0 at padded frames
    expected_transitions: np.ndarray  # (B, K, K|W) or (B, T-1, K, K|W)
    best_score: np.ndarray  # (B,)

    @classmethod
    def of(cls, p: Problem, tol: float) -> "BatchAnswer":
        b_, t_, k_ = p.em.shape
        items = [brute_force(*p.item(b)[:4], length=p.length(b), tol=tol) for b in range(b_)]
        post = np.zeros((b_, t_, k_))
        xi = np.zeros((b_, max(t_ - 1, 0), k_, k_))  # per step, dense
        for b, r in enumerate(items):
            n = p.length(b)
            post[b, :n] = r.posteriors
            xi[b, : n - 1] = r.expected_transitions
        if p.storage == "sparse":  # per item and step (parallel edges share by their probabilities)
            xi = np.stack([
                dense_to_sparse_counts(xi[b], p.item_pred(b), p.trans if p.trans.ndim == 2 else p.trans[b])
                for b in range(b_)
            ]) if b_ else np.zeros((0, max(t_ - 1, 0)) + p.trans.shape[-2:])
        if p.layout != "time_varying":
            xi = xi.sum(axis=1)
        if p.storage == "banded":
            xi = dense_to_banded_counts(xi, p.trans.shape[-1])
        return cls(
            items=items,
            log_z=np.array([r.log_z for r in items]),
            posteriors=post,
            expected_transitions=xi,
            best_score=np.array([r.best_score for r in items]),
        )


def random_problem(
    rng: np.random.Generator,
    batch: int,
    frames: int,
    states: int,
    storage: str = "dense",
    layout: str = "shared",
    width: Optional[int] = None,
    p_inf: float = 0.0,
    init_batched: bool = False,
    final: Optional[str] = None,
    lengths: Optional[List[int]] = None,
    scale: float = 1.5,
    pred_batched: bool = False,
) -> Problem:
    """A random, unnormalised problem.

    ``p_inf`` is the probability of each transition / init / final / emission entry being
    ``-inf`` (sparse edges; the whole problem may then be infeasible). ``final`` is ``None``,
    ``"shared"`` (``(K,)``) or ``"batched"`` (``(B, K)``). Padded frames, padded
    time-varying steps, band entries past the last state and unused sparse slots hold
    :data:`GARBAGE`. Sparse problems (``width`` = ``P``, default ``min(3, K)``) draw each
    predecessor uniformly from ``-1 .. K-1``, so unused slots and parallel edges (a source twice
    in one list) are common; ``pred_batched`` gives each item its own lists (not for ``"shared"``).
    """
    b_, t_, k_ = batch, frames, states
    if storage not in STORAGES or layout not in LAYOUTS:
        raise ValueError(f"unknown storage/layout {storage!r}/{layout!r}")
    default_width = {"dense": k_, "banded": min(2, k_), "sparse": min(3, k_)}[storage]
    w_ = k_ if storage == "dense" else (width if width is not None else default_width)

    def draw(shape, p=p_inf):
        x = rng.normal(0.0, scale, size=shape)
        if p > 0:
            x[rng.random(shape) < p] = NEG_INF
        return x

    em = draw((b_, t_, k_))
    tshape = {"shared": (k_, w_), "batched": (b_, k_, w_), "time_varying": (b_, t_ - 1, k_, w_)}[layout]
    trans = draw(tshape)
    init = draw((b_, k_) if init_batched else (k_,))
    fin = None if final is None else draw((b_, k_) if final == "batched" else (k_,))
    lens = None if lengths is None else np.asarray(lengths, dtype=np.int64)

    pred = None
    if storage == "banded":
        invalid = np.arange(k_)[:, None] + np.arange(w_)[None, :] >= k_
        trans[..., invalid] = GARBAGE
    elif storage == "sparse":
        batched = pred_batched and layout != "shared"
        pred = rng.integers(-1, k_, size=((b_,) if batched else ()) + (k_, w_))
        unused = pred < 0
        if batched and layout == "time_varying":
            unused = unused[:, None]
        trans[np.broadcast_to(unused, trans.shape)] = GARBAGE
    if lens is not None:
        for b in range(b_):
            em[b, lens[b]:] = GARBAGE
            if layout == "time_varying":
                trans[b, max(lens[b] - 1, 0):] = GARBAGE
    return Problem(em, trans, storage, init, fin, lens, pred)
