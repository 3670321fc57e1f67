"""Brute-force oracle for DTW and soft-DTW: enumerate every monotone path of a tiny lattice.

Independent of ``pytorch_hmm`` on purpose (numpy + recursion, float64). A path goes from
``(0, 0)`` to ``(n-1, m-1)`` by steps ``(1, 0)``, ``(0, 1)``, ``(1, 1)``; its cost is the start
cell's cost plus, for every step, the cost of the cell it enters times the step's weight
(``w_diag`` for ``(1, 1)``, else 1). Only meant for ``n, m <= 4`` (at most 63 paths).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

Path = Tuple[Tuple[int, int], ...]


def in_band(i: int, j: int, n: int, m: int, band: Optional[int]) -> bool:
    """Sakoe-Chiba radius ``band`` around the straight line from (0, 0) to (n-1, m-1)."""
    return band is None or abs(i * (m - 1) - j * (n - 1)) <= band * max(n - 1, m - 1)


def monotone_paths(n: int, m: int, band: Optional[int] = None) -> List[Path]:
    """All monotone paths whose cells all lie inside the band."""
    out: List[Path] = []

    def walk(path):
        i, j = path[-1]
        if (i, j) == (n - 1, m - 1):
            out.append(tuple(path))
            return
        for di, dj in ((1, 0), (0, 1), (1, 1)):
            a, b = i + di, j + dj
            if a < n and b < m and in_band(a, b, n, m, band):
                walk(path + [(a, b)])

    walk([(0, 0)])
    return out


def cell_weights(path: Path, w_diag: float) -> List[float]:
    """Weight of each cell of ``path`` in its cost (1 for the start cell)."""
    weights = [1.0]
    for (a, b), (c, d) in zip(path[:-1], path[1:]):
        weights.append(w_diag if (c - a, d - b) == (1, 1) else 1.0)
    return weights


def path_cost(cost: np.ndarray, path, w_diag: float) -> float:
    path = [tuple(int(v) for v in cell) for cell in path]
    return float(sum(w * cost[i, j] for w, (i, j) in zip(cell_weights(path, w_diag), path)))


@dataclass
class Oracle:
    best: float  # minimum path cost (inf when no path)
    best_paths: List[Path]  # every path reaching it
    soft: float  # -gamma log sum exp(-cost / gamma)
    occupancy: np.ndarray  # (n, m) p(path visits cell)
    grad: np.ndarray  # (n, m) d soft / d cost = E[weight of the cell in the path]


def brute_force(cost: np.ndarray, w_diag: float = 1.0, band: Optional[int] = None, gamma: float = 1.0) -> Oracle:
    cost = np.asarray(cost, dtype=np.float64)
    n, m = cost.shape
    paths = monotone_paths(n, m, band)
    occupancy, grad = np.zeros((n, m)), np.zeros((n, m))
    if not paths:
        return Oracle(np.inf, [], np.inf, occupancy, grad)
    costs = np.array([path_cost(cost, p, w_diag) for p in paths])
    best = float(costs.min())
    best_paths = [p for p, c in zip(paths, costs) if c == best]
    z = -costs / gamma
    top = z.max()
    probs = np.exp(z - top)
    total = probs.sum()
    probs /= total
    for p, prob in zip(paths, probs):
        for w, (i, j) in zip(cell_weights(p, w_diag), p):
            occupancy[i, j] += prob
            grad[i, j] += prob * w
    return Oracle(best, best_paths, float(-gamma * (np.log(total) + top)), occupancy, grad)
