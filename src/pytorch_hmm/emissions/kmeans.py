"""k-means clustering (k-means++ seeding, Lloyd iterations, restarts) for initialising emissions.

Vectorised over points: each iteration is one ``(N, k)`` distance matrix, one ``argmin`` and
one ``index_add``. Deterministic for a given ``torch.Generator`` (all randomness comes from
it; ties go to the lowest index), and independent of the order of the points: they are
clustered in a canonical order (rows sorted lexicographically), so a permuted corpus gives
bitwise the same centroids for the same generator seed.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..errors import HMMDimensionError, HMMDtypeError, HMMValueError
from ..validation import check_count, check_tensor

#: Default number of k-means++ restarts: hmmlearn 0.3.3's ``GaussianHMM._init`` and
#: ``GMMHMM._init`` pass ``n_init=10`` to sklearn's ``KMeans``.
DEFAULT_N_INIT = 10


def kmeans(
    x: torch.Tensor,
    k: int,
    generator: Optional[torch.Generator] = None,
    iters: int = 100,
    n_init: int = DEFAULT_N_INIT,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cluster the rows of ``x`` into ``k`` groups.

    Seeding is k-means++ (first centre uniform, each next one drawn with probability
    proportional to the squared distance to the nearest centre chosen so far). Lloyd
    iterations then alternate assignment and centroid update until the assignment stops
    changing or ``iters`` iterations have run. A cluster that becomes empty is re-seeded at
    the point farthest from its current centre (distinct points for several empty clusters).
    This runs ``n_init`` times (each seeding drawn from ``generator`` in turn, run ``r``
    right after run ``r - 1``) and the run with the lowest inertia (sum of squared distances
    to the nearest centroid; the first on ties) is kept. The default 10 is what hmmlearn
    0.3.3's ``GaussianHMM`` and ``GMMHMM`` pass to sklearn's ``KMeans``.

    The points are clustered in a canonical order (rows sorted lexicographically, ``-0.0``
    read as ``0.0``), so the result does not depend on their order: permuting the rows of
    ``x`` permutes ``labels`` the same way and leaves ``centroids`` bitwise unchanged.

    Args:
        x: ``(N, D)`` float32/float64 points, finite, ``N >= k``.
        k: number of clusters (positive int).
        generator: source of randomness for the seeding; ``None`` uses torch's global RNG.
            A generator on another device than ``x`` is fine (draws happen on its device).
        iters: maximum number of Lloyd iterations per run (non-negative int).
        n_init: number of k-means++ restarts (positive int).

    Returns:
        ``(centroids (k, D), labels (N,) int64)``, labels in ``0..k-1`` in the order of the
        rows of ``x``, centroids in the dtype and on the device of ``x``.
    """
    check_tensor(x, "x", "(N, D)")
    if x.ndim != 2:
        raise HMMDimensionError(
            f"x must be (N, D) points; got shape {tuple(x.shape)}", expected_shape=("N", "D"), actual_shape=x.shape
        )
    if x.dtype not in (torch.float32, torch.float64):
        raise HMMDtypeError(f"x must be float32 or float64; got {x.dtype}")
    check_count(k, "k")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise HMMValueError(f"iters must be a non-negative int; got {iters!r}")
    n_init = check_count(n_init, "n_init")
    n = x.shape[0]
    if n < k:
        raise HMMValueError(f"kmeans needs at least k == {k} points; got N == {n}")
    if not bool(torch.isfinite(x).all()):
        raise HMMValueError("x must be finite; got NaN or infinite values")

    order = canonical_order(x)
    xs = x[order] + 0.0  # + 0.0 maps -0.0 to 0.0, which the sort cannot tell apart
    # k-means is invariant to a shift and a common scale: cluster (x - mean) / scale, whose
    # squared distances cannot overflow (|x| ~ 1e20 gave inf - inf = NaN weights) or vanish
    mean = xs.mean(0)
    scale = (xs - mean).abs().amax()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    z = (xs - mean) / scale
    best = None
    for _ in range(n_init):
        centroids, labels, inertia = _lloyd(z, _plus_plus_seeds(z, k, generator), k, iters)
        if best is None or inertia < best[2]:
            best = (centroids, labels, inertia)
    centroids, labels_sorted, _ = best
    labels = torch.empty_like(labels_sorted).scatter_(0, order, labels_sorted)
    return centroids * scale + mean, labels


def canonical_order(x: torch.Tensor) -> torch.Tensor:
    """``(N,)`` int64 permutation sorting the rows of ``x`` ``(N, D)`` lexicographically
    (first column first); equal rows keep their relative order, so ``x[order]`` does not
    depend on the order of the rows of ``x`` (up to ``-0.0 == 0.0``)."""
    order = torch.arange(x.shape[0], device=x.device)
    for j in range(x.shape[1] - 1, -1, -1):  # least significant column first, stable sorts
        order = order[torch.sort(x[order, j], stable=True).indices]
    return order


def _lloyd(z: torch.Tensor, centroids: torch.Tensor, k: int, iters: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lloyd iterations from ``centroids``: ``(centroids, labels, inertia)`` (labels consistent
    with the returned centroids, inertia their sum of squared distances, a 0-d tensor)."""
    dist = _sq_dist(z, centroids)
    labels = dist.argmin(dim=1)
    for _ in range(iters):
        new_centroids = _update(z, labels, centroids, k)
        new_dist = _sq_dist(z, new_centroids)
        new_labels = new_dist.argmin(dim=1)
        centroids, dist = new_centroids, new_dist
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    return centroids, labels, dist.gather(1, labels[:, None]).sum()


def _sq_dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``(N, k)`` squared Euclidean distances, via ``|x|^2 - 2 x.c + |c|^2`` (clamped at 0)."""
    d = (x * x).sum(1, keepdim=True) - 2.0 * (x @ c.T) + (c * c).sum(1)[None, :]
    return d.clamp_min_(0.0)


def _draw(weights: torch.Tensor, generator: Optional[torch.Generator]) -> int:
    """One index drawn with probability proportional to ``weights`` (uniform if all zero)."""
    if generator is not None and weights.device != generator.device:
        weights = weights.to(generator.device)
    if not bool((weights > 0).any()):
        weights = torch.ones_like(weights)
    return int(torch.multinomial(weights, 1, generator=generator))


def _plus_plus_seeds(x: torch.Tensor, k: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    n = x.shape[0]
    first = _draw(torch.ones(n, dtype=x.dtype, device=x.device), generator)
    centroids = x[first : first + 1].clone()
    nearest = _sq_dist(x, centroids)[:, 0]
    for _ in range(1, k):
        idx = _draw(nearest, generator)
        centroids = torch.cat([centroids, x[idx : idx + 1]], dim=0)
        nearest = torch.minimum(nearest, _sq_dist(x, x[idx : idx + 1])[:, 0])
    return centroids


def _update(x: torch.Tensor, labels: torch.Tensor, old: torch.Tensor, k: int) -> torch.Tensor:
    """New centroids as cluster means; empty clusters re-seeded at the farthest points."""
    counts = torch.bincount(labels, minlength=k)
    sums = torch.zeros_like(old).index_add_(0, labels, x)
    centroids = sums / counts.clamp_min(1).to(x.dtype)[:, None]
    empty = torch.nonzero(counts == 0).flatten()
    if empty.numel() > 0:
        dist_own = _sq_dist(x, old).gather(1, labels[:, None])[:, 0]
        far = torch.topk(dist_own, empty.numel()).indices
        centroids[empty] = x[far]
    return centroids


__all__ = ["DEFAULT_N_INIT", "canonical_order", "kmeans"]
