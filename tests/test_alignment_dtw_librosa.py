"""librosa's DTW conventions in ``pytorch_hmm.alignment.dtw``: the accumulated cost matrix,
subsequence DTW, and general step sizes with additive / multiplicative weights.

References: librosa's ``sequence.dtw`` (float64, ``C=`` precomputed so that librosa never swaps
the sequences), and an enumeration of every path of a tiny lattice under arbitrary steps (written
here, independent of both libraries).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from dtw_oracle import in_band
from pytorch_hmm.alignment import DTWResult, dtw
from pytorch_hmm.errors import HMMValueError, InfeasibleAlignmentError
from pytorch_hmm.kernel.lattice import lattice_dtw, lattice_dtw_steps

F64 = torch.float64
DEFAULT = ((1, 1), (0, 1), (1, 0))
SHAPES = [(17, 23), (23, 17), (12, 12), (1, 6), (6, 1), (1, 1)]


@pytest.fixture
def librosa():
    return pytest.importorskip("librosa")


def band_cost(cost: np.ndarray, band) -> np.ndarray:
    """The cost with +inf outside our band (our radius in frames, not librosa's band_rad)."""
    out = cost.copy()
    n, m = cost.shape
    for i in range(n):
        for j in range(m):
            if not in_band(i, j, n, m, band):
                out[i, j] = np.inf
    return out


def librosa_dtw(librosa, cost, subseq=False, steps=None, add=None, mul=None):
    """librosa's (D, wp) with wp from start to end as (i, j) pairs, or None where it finds no path."""
    kw = {}
    if steps is not None:
        kw["step_sizes_sigma"] = np.array(steps)
    if add is not None:
        kw["weights_add"] = np.array(add, dtype=np.float64)
    if mul is not None:
        kw["weights_mul"] = np.array(mul, dtype=np.float64)
    try:
        d, wp = librosa.sequence.dtw(C=cost, subseq=subseq, **kw)
    except librosa.util.exceptions.ParameterError:
        return librosa.sequence.dtw(C=cost, subseq=subseq, backtrack=False, **kw), None
    wp = wp[::-1]
    if subseq and cost.shape[0] > cost.shape[1]:
        wp = wp[:, ::-1]  # librosa returns (j, i) pairs for a precomputed C taller than wide
    return d, np.ascontiguousarray(wp)


def assert_same_matrix(ours: torch.Tensor, ref: np.ndarray, atol: float = 1e-9) -> None:
    ours = ours.cpu().numpy()
    assert ours.shape == ref.shape
    np.testing.assert_array_equal(np.isinf(ours), np.isinf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(ours[finite], ref[finite], rtol=0, atol=atol)


# ---------------------------------------------------------------------------------------------
# Item 1: the accumulated cost matrix


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("pattern", ["symmetric1", "symmetric2"])
@pytest.mark.parametrize("band", [None, 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_cost_matrix_equals_librosa(shape, band, pattern, backend, librosa):
    rng = np.random.default_rng(shape[0] * 31 + shape[1] + (band or 0))
    x, y = rng.normal(size=(shape[0], 4)), rng.normal(size=(shape[1], 4))
    cost = band_cost(cdist(x, y), band)
    result = dtw(torch.from_numpy(x), torch.from_numpy(y), band=band, step_pattern=pattern,
                 backend=backend, return_cost_matrix=True)
    ref_d, ref_wp = librosa_dtw(librosa, cost, mul=[2.0 if pattern == "symmetric2" else 1.0, 1.0, 1.0])
    assert result.cost_matrix.shape == (1, *shape) and result.cost_matrix.dtype == F64
    assert_same_matrix(result.cost_matrix[0], ref_d)
    assert result.cost.item() == pytest.approx(ref_d[-1, -1], rel=1e-12)
    np.testing.assert_array_equal(result.paths[0].numpy(), ref_wp)  # continuous costs: no ties
    plain = dtw(torch.from_numpy(x), torch.from_numpy(y), band=band, step_pattern=pattern, backend=backend)
    assert plain.cost_matrix is None and plain.spans is None
    assert torch.equal(plain.cost, result.cost) and torch.equal(plain.normalized_cost, result.normalized_cost)
    assert torch.equal(plain.paths[0], result.paths[0])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**16), st.sampled_from([None, 1, 2]),
       st.sampled_from(["symmetric1", "symmetric2"]))
def test_cost_matrix_keeps_the_default_tie_rule(n, m, seed, band, pattern):
    """Integer costs (many ties): the paths with return_cost_matrix=True are those of the fast path."""
    cost = torch.from_numpy(np.random.default_rng(seed).integers(0, 3, (n, m)).astype(np.float64))[None]
    try:
        total, paths = lattice_dtw(cost, band=band, step_pattern=pattern, backend="torch")
    except InfeasibleAlignmentError:
        return
    res = dtw(cost, distance="precomputed", band=band, step_pattern=pattern, return_cost_matrix=True)
    assert torch.equal(res.cost, total) and torch.equal(res.paths[0], paths[0])


def test_result_stays_a_three_tuple():
    x, y = torch.randn(5, 2, dtype=F64), torch.randn(7, 2, dtype=F64)
    res = dtw(x, y, return_cost_matrix=True, subsequence=True)
    cost, normalized, paths = res  # unpacking as before
    assert isinstance(res, DTWResult) and len(res) == 3 and cost is res.cost
    again = res._replace(cost=cost * 2)
    assert again.cost_matrix is res.cost_matrix and again.spans is res.spans


# ---------------------------------------------------------------------------------------------
# Item 2: subsequence DTW


@pytest.mark.parametrize("pattern", ["symmetric1", "symmetric2"])
@pytest.mark.parametrize("shape", SHAPES + [(4, 30)])
def test_subsequence_equals_librosa(shape, pattern, librosa):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    x, y = rng.normal(size=(shape[0], 3)), rng.normal(size=(shape[1], 3))
    cost = cdist(x, y)
    mul = [2.0 if pattern == "symmetric2" else 1.0, 1.0, 1.0]
    ref_d, ref_wp = librosa_dtw(librosa, cost, subseq=True, mul=mul)
    res = dtw(torch.from_numpy(x), torch.from_numpy(y), step_pattern=pattern, subsequence=True,
              return_cost_matrix=True)
    assert res.cost.item() == pytest.approx(ref_d[-1].min(), rel=1e-12)
    assert_same_matrix(res.cost_matrix[0], ref_d)
    np.testing.assert_array_equal(res.paths[0].numpy(), ref_wp)
    start, end = res.spans[0].tolist()
    assert (start, end) == (ref_wp[0, 1], ref_wp[-1, 1] + 1)
    width = end - start
    norm = shape[0] + width if pattern == "symmetric2" else len(ref_wp)
    assert res.normalized_cost.item() == pytest.approx(ref_d[-1].min() / norm, rel=1e-12)


def test_subsequence_finds_a_planted_copy():
    rng = np.random.default_rng(3)
    query = torch.from_numpy(rng.normal(size=(6, 4)))
    y = torch.from_numpy(rng.normal(size=(40, 4)) + 5.0)
    y[17:23] = query
    res = dtw(query, y, subsequence=True)
    assert res.spans.tolist() == [[17, 23]] and res.cost.item() == 0.0
    assert res.paths[0].tolist() == [[i, 17 + i] for i in range(6)]


# ---------------------------------------------------------------------------------------------
# Item 3: step sizes and weights

STEP_SETS = [
    ((1, 1), (1, 2), (2, 1)),
    ((1, 0), (1, 1), (1, 2)),
    ((2, 1), (1, 2), (1, 1), (0, 1), (1, 0)),
    ((1, 1), (0, 1), (1, 0), (3, 1)),
]


@pytest.mark.parametrize("subsequence", [False, True])
@pytest.mark.parametrize("steps", STEP_SETS)
@pytest.mark.parametrize("shape", SHAPES + [(9, 25)])
def test_steps_and_weights_equal_librosa(shape, steps, subsequence, librosa):
    rng = np.random.default_rng(shape[0] * 13 + shape[1] + len(steps))
    cost = rng.exponential(1.0, shape)
    add = rng.uniform(0, 1, len(steps)).tolist()
    mul = rng.uniform(1, 3, len(steps)).tolist()  # >= 1: librosa's row-0 stop never cuts a path
    ref_d, ref_wp = librosa_dtw(librosa, cost, subsequence, steps, add, mul)
    c = torch.from_numpy(cost)
    if ref_wp is None:  # librosa finds no path: neither do we, and D still agrees
        with pytest.raises(InfeasibleAlignmentError, match=r"no path with finite cost for pair 0 .* with step_sizes"):
            dtw(c, distance="precomputed", subsequence=subsequence, step_sizes=steps, weights_add=add, weights_mul=mul)
        res = lattice_dtw_steps(c[None], step_sizes=steps, weights_add=add, weights_mul=mul,
                                subsequence=subsequence, return_paths=False)
        assert_same_matrix(res.cost_matrix[0], ref_d)
        return
    res = dtw(c, distance="precomputed", subsequence=subsequence, step_sizes=steps, weights_add=add,
              weights_mul=mul, return_cost_matrix=True)
    assert_same_matrix(res.cost_matrix[0], ref_d)
    expected = ref_d[-1].min() if subsequence else ref_d[-1, -1]
    assert res.cost.item() == pytest.approx(expected, rel=1e-12)
    np.testing.assert_array_equal(res.paths[0].numpy(), ref_wp)
    assert res.normalized_cost.item() == pytest.approx(expected / len(ref_wp), rel=1e-12)


def test_weights_on_the_default_steps_follow_librosa_order(librosa):
    """weights_* without step_sizes refer to librosa's default order (1, 1), (0, 1), (1, 0)."""
    rng = np.random.default_rng(5)
    cost = rng.exponential(1.0, (8, 11))
    add, mul = [0.0, 0.7, 0.1], [2.0, 1.0, 1.5]
    ref_d, ref_wp = librosa_dtw(librosa, cost, add=add, mul=mul)
    res = dtw(torch.from_numpy(cost), distance="precomputed", weights_add=add, weights_mul=mul, return_cost_matrix=True)
    assert_same_matrix(res.cost_matrix[0], ref_d)
    np.testing.assert_array_equal(res.paths[0].numpy(), ref_wp)


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("option", ["subsequence", "steps", "matrix"])
def test_batch_with_lengths_equals_items_and_librosa(option, backend, librosa):
    rng = np.random.default_rng(11)
    xl, yl = [7, 1, 9, 4, 5], [12, 9, 9, 1, 3]
    x = torch.full((5, max(xl), 3), float("nan"), dtype=F64)
    y = torch.full((5, max(yl), 3), float("nan"), dtype=F64)
    for b, (n, m) in enumerate(zip(xl, yl)):
        x[b, :n] = torch.from_numpy(rng.normal(size=(n, 3)))
        y[b, :m] = torch.from_numpy(rng.normal(size=(m, 3)))
    kw: Dict = dict(return_cost_matrix=True, backend=backend)
    lib: Dict = {}
    if option == "subsequence":
        kw["subsequence"] = lib["subseq"] = True
    elif option == "steps":
        kw.update(step_sizes=[(1, 1), (0, 1), (1, 0), (1, 2)], weights_add=[0.0, 0.2, 0.3, 0.1],
                  weights_mul=[2.0, 1.0, 1.0, 1.5])
        lib.update(steps=kw["step_sizes"], add=kw["weights_add"], mul=kw["weights_mul"])
    batch = dtw(x, y, xl, yl, **kw)
    assert batch.cost_matrix.shape == (5, max(xl), max(yl))
    for b, (n, m) in enumerate(zip(xl, yl)):
        item = dtw(x[b, :n], y[b, :m], **kw)
        assert batch.cost[b].item() == item.cost.item()
        assert batch.normalized_cost[b].item() == item.normalized_cost.item()
        assert torch.equal(batch.paths[b], item.paths[0])
        assert torch.equal(batch.cost_matrix[b, :n, :m], item.cost_matrix[0])
        assert torch.isinf(batch.cost_matrix[b, n:]).all() and torch.isinf(batch.cost_matrix[b, :, m:]).all()
        if option == "subsequence":
            assert torch.equal(batch.spans[b], item.spans[0])
        ref_d, ref_wp = librosa_dtw(librosa, cdist(x[b, :n].numpy(), y[b, :m].numpy()), **lib)
        assert_same_matrix(item.cost_matrix[0], ref_d)
        np.testing.assert_array_equal(item.paths[0].numpy(), ref_wp)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_equals_cuda():
    rng = np.random.default_rng(2)
    x, y = torch.from_numpy(rng.normal(size=(3, 9, 2))), torch.from_numpy(rng.normal(size=(3, 14, 2)))
    xl, yl = [9, 4, 7], [14, 14, 6]
    for kw in (dict(subsequence=True), dict(step_sizes=[(1, 1), (1, 2), (2, 1)], weights_add=[0.1, 0.2, 0.3])):
        cpu = dtw(x, y, xl, yl, return_cost_matrix=True, **kw)
        gpu = dtw(x.cuda(), y.cuda(), xl, yl, return_cost_matrix=True, **kw)
        assert gpu.cost.device.type == "cuda" and gpu.paths[0].device.type == "cuda"
        torch.testing.assert_close(gpu.cost.cpu(), cpu.cost, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(gpu.cost_matrix.cpu(), cpu.cost_matrix, rtol=1e-12, atol=1e-12)
        for a, b in zip(gpu.paths, cpu.paths):
            assert torch.equal(a.cpu(), b)


# ---------------------------------------------------------------------------------------------
# Enumeration of every path on tiny lattices (independent of librosa and of the kernel)

CANDIDATE_STEPS = [(1, 0), (0, 1), (1, 1), (1, 2), (2, 1), (2, 0), (0, 2)]


def enumerate_paths(n: int, m: int, steps: Sequence[Tuple[int, int]], starts, end) -> List[Tuple]:
    """Every path ``((i, j), ...), step indices`` from a cell in ``starts`` to ``end`` by ``steps``."""
    out = []

    def walk(cells, used):
        i, j = cells[-1]
        if (i, j) == end:
            out.append((tuple(cells), tuple(used)))
        for k, (di, dj) in enumerate(steps):
            a, b = i + di, j + dj
            if a <= end[0] and b <= end[1]:
                walk(cells + [(a, b)], used + [k])

    for s in starts:
        walk([s], [])
    return out


def enumerated_cost(cost, cells, used, add, mul) -> float:
    total = cost[cells[0]]
    for cell, k in zip(cells[1:], used):
        total = total + (mul[k] * cost[cell] + add[k]) if np.isfinite(cost[cell]) else math.inf
    return float(total)


@st.composite
def tiny_problems(draw):
    n, m = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if draw(st.booleans()):  # integer costs: ties
        cost = rng.integers(-1, 3, (n, m)).astype(np.float64)
    else:
        cost = rng.normal(size=(n, m))
    picks = draw(st.lists(st.sampled_from(CANDIDATE_STEPS), min_size=1, max_size=4, unique=True))
    add = [draw(st.sampled_from([0.0, 0.5, -0.25])) for _ in picks]
    mul = [draw(st.sampled_from([0.0, 1.0, 2.0])) for _ in picks]
    subsequence = draw(st.booleans())
    band = None if subsequence else draw(st.sampled_from([None, 0, 1]))
    return band_cost(cost, band), tuple(picks), add, mul, subsequence, band


@settings(max_examples=150, deadline=None)
@given(tiny_problems())
def test_steps_and_subsequence_match_path_enumeration(problem):
    cost, steps, add, mul, subsequence, band = problem
    n, m = cost.shape
    starts = [(0, j) for j in range(m)] if subsequence else [(0, 0)]
    # the accumulated cost of every cell is the cheapest enumerated path from a start cell to it
    want = np.full((n, m), np.inf)
    for i in range(n):
        for j in range(m):
            if np.isfinite(cost[i, j]):
                for cells, used in enumerate_paths(n, m, steps, [s for s in starts if s <= (i, j)], (i, j)):
                    want[i, j] = min(want[i, j], enumerated_cost(cost, cells, used, add, mul))
    c = torch.from_numpy(np.where(np.isfinite(cost), cost, 7.0))[None]  # the band does the masking
    res = lattice_dtw_steps(c, band=band, step_sizes=steps, weights_add=add, weights_mul=mul,
                            subsequence=subsequence, return_paths=False)
    got = res.cost_matrix[0].numpy()
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], atol=1e-12)
    ends = [(n - 1, j) for j in range(m)] if subsequence else [(n - 1, m - 1)]
    candidates = [p for e in ends for s in starts for p in enumerate_paths(n, m, steps, [s], e) if s[1] <= e[1]]
    scored = [(enumerated_cost(cost, cells, used, add, mul), cells) for cells, used in candidates]
    best = min((s for s, _ in scored), default=math.inf)
    if not math.isfinite(best):
        with pytest.raises(InfeasibleAlignmentError, match="no path with finite cost for pair 0"):
            lattice_dtw_steps(c, band=band, step_sizes=steps, weights_add=add, weights_mul=mul, subsequence=subsequence)
        return
    res = lattice_dtw_steps(c, band=band, step_sizes=steps, weights_add=add, weights_mul=mul, subsequence=subsequence)
    assert res.total.item() == pytest.approx(best, abs=1e-12)
    path = tuple(tuple(int(v) for v in cell) for cell in res.paths[0])
    assert path in {cells for s, cells in scored if abs(s - best) <= 1e-12}
    assert int(res.ends[0]) == path[-1][1]


# ---------------------------------------------------------------------------------------------
# Errors


def _xy():
    return torch.randn(4, 2, dtype=F64), torch.randn(6, 2, dtype=F64)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(step_sizes=[]), r"step_sizes must be a non-empty list of \(di, dj\) pairs; got \[\]"),
        (dict(step_sizes=[(1, 1), (-1, 2)]), r"non-negative integers; got \(-1, 2\) at index 1"),
        (dict(step_sizes=[(1, 1), (1, 2, 3)]), r"pairs \(di, dj\) of non-negative integers; got \(1, 2, 3\) at index 1"),
        (dict(step_sizes=[(1, 0.5)]), r"pairs \(di, dj\) of non-negative integers; got \(1, 0.5\) at index 0"),
        (dict(step_sizes=[(1, 1), (0, 0)]), r"step_sizes must not contain \(0, 0\), a step that does not move; got it at index 1"),
        (dict(step_sizes=[(1, 1), (1, 2)], weights_add=[0.0]),
         r"weights_add must have one weight per step \(2 for step_sizes \[\(1, 1\), \(1, 2\)\]\); got 1"),
        (dict(weights_mul=[1.0, 1.0]), r"weights_mul must have one weight per step \(3 for step_sizes .*\); got 2"),
        (dict(weights_add=[0.0, math.inf, 0.0]), r"weights_add must be finite numbers; got \[0.0, inf, 0.0\]"),
        (dict(weights_mul=[1.0, -1.0, 1.0]), r"weights_mul must be finite non-negative numbers; got \[1.0, -1.0, 1.0\]"),
        (dict(subsequence=True, band=2), r"band cannot be combined with subsequence=True .*; got band=2"),
        (dict(step_pattern="symmetric2", step_sizes=[(1, 1), (1, 2), (2, 1)]),
         r"step_pattern='symmetric2' cannot be combined with step_sizes, weights_add or weights_mul"),
        (dict(step_pattern="symmetric2", weights_mul=[2.0, 1.0, 1.0]), r"put the diagonal weight into weights_mul"),
    ],
)
def test_errors(kw, match):
    x, y = _xy()
    with pytest.raises(HMMValueError, match=match):
        dtw(x, y, **kw)


def test_kernel_errors():
    c = torch.rand(1, 3, 5, dtype=F64)
    with pytest.raises(HMMValueError, match=r"band cannot be combined with subsequence=True .*; got band=1"):
        lattice_dtw_steps(c, band=1, subsequence=True)
    with pytest.raises(HMMValueError, match=r"step_sizes must not contain \(0, 0\)"):
        lattice_dtw_steps(c, step_sizes=torch.tensor([[0, 0]]))
    with pytest.raises(InfeasibleAlignmentError,
                       match=r"pair 0 \(x length 3, y length 5\) with step_sizes \[\(1, 1\)\] and band=None: "
                             r"these steps cannot reach \(2, 4\) from \(0, 0\)"):
        lattice_dtw_steps(c, step_sizes=[(1, 1)])
    with pytest.raises(InfeasibleAlignmentError, match=r"these steps cannot reach row 2 from row 0"):
        lattice_dtw_steps(c, step_sizes=[(0, 1)], subsequence=True)
    with pytest.raises(HMMValueError, match=r"backend must be one of"):
        dtw(c, distance="precomputed", subsequence=True, backend="gpu")


def test_numpy_steps_accepted(librosa):
    cost = np.random.default_rng(0).exponential(1.0, (5, 9))
    steps = np.array([[1, 1], [1, 2], [2, 1]], dtype=np.uint32)
    res = dtw(torch.from_numpy(cost), distance="precomputed", step_sizes=steps, return_cost_matrix=True)
    ref_d, _ = librosa_dtw(librosa, cost, steps=steps)
    assert_same_matrix(res.cost_matrix[0], ref_d)
