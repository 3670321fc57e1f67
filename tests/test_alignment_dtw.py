"""DTW and soft-DTW (pytorch_hmm.alignment.dtw, kernel/lattice.py) against independent references.

References: brute-force enumeration of every monotone path (tests/dtw_oracle.py), librosa's
``sequence.dtw`` (float64), scipy's ``cdist`` and finite differences (``gradcheck``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from dtw_oracle import brute_force, in_band, path_cost
from pytorch_hmm.alignment import DTWAligner, DTWResult, dtw, soft_dtw, soft_dtw_alignment
from pytorch_hmm.errors import HMMDimensionError, HMMDtypeError, HMMValueError, InfeasibleAlignmentError
from pytorch_hmm.alignment.distances import ROW_DISTANCES, pairwise_euclidean
from pytorch_hmm.errors import HMMTypeError
from pytorch_hmm.kernel.lattice import lattice_dtw, lattice_dtw_rows, lattice_soft_alignment, lattice_soft_dtw


BACKENDS = ["torch", "numba"]
PATTERNS = {"symmetric1": 1.0, "symmetric2": 2.0}
F64 = torch.float64


@pytest.fixture
def librosa():
    """librosa, or a skip for the tests that compare with it (the others run without it)."""
    return pytest.importorskip("librosa")


def as_path_tuples(path: torch.Tensor):
    return tuple(tuple(int(v) for v in cell) for cell in path)


def check_path(path: torch.Tensor, n: int, m: int, band=None) -> None:
    """Monotone unit steps from (0, 0) to (n-1, m-1), every cell inside the band."""
    assert path.dtype == torch.int64 and path.ndim == 2 and path.shape[1] == 2
    p = path.cpu().numpy()
    assert tuple(p[0]) == (0, 0) and tuple(p[-1]) == (n - 1, m - 1)
    steps = {tuple(s) for s in np.diff(p, axis=0)}
    assert steps <= {(1, 0), (0, 1), (1, 1)}
    assert all(in_band(i, j, n, m, band) for i, j in p)


# ---------------------------------------------------------------------------------------------
# Brute force on tiny lattices


@st.composite
def tiny_costs(draw):
    n, m = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    integer = draw(st.booleans())  # integer costs: many ties, exercising the tie rule
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    cost = rng.integers(0, 3, (n, m)).astype(np.float64) if integer else rng.exponential(1.0, (n, m))
    return cost, draw(st.sampled_from([None, 0, 1, 2])), draw(st.sampled_from(sorted(PATTERNS)))


@settings(max_examples=60)
@given(tiny_costs(), st.sampled_from(BACKENDS))
def test_dtw_matches_brute_force(case, backend):
    cost, band, pattern = case
    oracle = brute_force(cost, PATTERNS[pattern], band)
    c = torch.from_numpy(cost)[None]
    if not oracle.best_paths:
        with pytest.raises(InfeasibleAlignmentError, match="no monotone path with finite cost for pair 0"):
            lattice_dtw(c, band=band, step_pattern=pattern, backend=backend)
        return
    total, paths = lattice_dtw(c, band=band, step_pattern=pattern, backend=backend)
    assert total.item() == pytest.approx(oracle.best, abs=1e-12)
    assert as_path_tuples(paths[0]) in oracle.best_paths


@settings(max_examples=40)
@given(tiny_costs(), st.sampled_from(BACKENDS), st.sampled_from([0.3, 1.0, 5.0]))
def test_soft_dtw_matches_brute_force(case, backend, gamma):
    cost, band, pattern = case
    oracle = brute_force(cost, PATTERNS[pattern], band, gamma)
    c = torch.from_numpy(cost)[None].requires_grad_(True)
    if not oracle.best_paths:  # no finite path: soft-DTW and its alignment raise, as hard DTW does
        assert oracle.soft == math.inf
        for routine in (lattice_soft_dtw, lattice_soft_alignment):
            with pytest.raises(InfeasibleAlignmentError, match="no monotone path with finite cost for pair 0"):
                routine(c, gamma, band=band, step_pattern=pattern, backend=backend)
        return
    value = lattice_soft_dtw(c, gamma, band=band, step_pattern=pattern, backend=backend)
    assert value.item() == pytest.approx(oracle.soft, abs=1e-10)
    (grad,) = torch.autograd.grad(value.sum(), c)
    np.testing.assert_allclose(grad[0].numpy(), oracle.grad, atol=1e-10)
    occ = lattice_soft_alignment(c.detach(), gamma, band=band, step_pattern=pattern, backend=backend)
    np.testing.assert_allclose(occ[0].numpy(), oracle.occupancy, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# librosa


def librosa_weights(pattern: str) -> np.ndarray:
    # librosa's default step_sizes_sigma is [[1, 1], [0, 1], [1, 0]]: the diagonal comes first
    return np.array([PATTERNS[pattern], 1.0, 1.0])


def band_cost(cost: np.ndarray, band) -> np.ndarray:
    """The cost with +inf outside our band (librosa's own band_rad has another definition)."""
    n, m = cost.shape
    out = cost.copy()
    for i in range(n):
        for j in range(m):
            if not in_band(i, j, n, m, band):
                out[i, j] = np.inf
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("band", [None, 1, 3])
@pytest.mark.parametrize("shape", [(17, 23), (23, 17), (20, 20), (1, 6)])
def test_cost_equals_librosa(shape, band, pattern, backend, librosa):
    rng = np.random.default_rng(sum(shape) + (band or 0))
    x, y = rng.normal(size=(shape[0], 5)), rng.normal(size=(shape[1], 5))
    result = dtw(torch.from_numpy(x), torch.from_numpy(y), band=band, step_pattern=pattern, backend=backend)
    weights = librosa_weights(pattern)
    if band is None:
        ref, _ = librosa.sequence.dtw(x.T, y.T, metric="euclidean", weights_mul=weights)
    else:
        ref, _ = librosa.sequence.dtw(C=band_cost(cdist(x, y), band), weights_mul=weights)
    assert result.cost.shape == (1,)
    assert result.cost.item() == pytest.approx(ref[-1, -1], rel=1e-9)
    path = result.paths[0]
    check_path(path, shape[0], shape[1], band)
    assert path_cost(cdist(x, y), path, PATTERNS[pattern]) == pytest.approx(ref[-1, -1], rel=1e-9)


@pytest.mark.parametrize("distance, metric", [("sqeuclidean", "sqeuclidean"), ("cosine", "cosine")])
def test_distances_equal_librosa(distance, metric, librosa):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2, 11, 4)), rng.normal(size=(2, 9, 4))
    result = dtw(torch.from_numpy(x), torch.from_numpy(y), distance=distance)
    for b in range(2):
        ref, _ = librosa.sequence.dtw(x[b].T, y[b].T, metric=metric)
        assert result.cost[b].item() == pytest.approx(ref[-1, -1], rel=1e-9)


def test_callable_and_precomputed_distance(librosa):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(12, 3))
    ref, _ = librosa.sequence.dtw(x.T, y.T, metric="cityblock")
    city = dtw(torch.from_numpy(x), torch.from_numpy(y), distance=lambda a, b: torch.cdist(a, b, p=1))
    pre = dtw(torch.from_numpy(cdist(x, y, "cityblock")), distance="precomputed")
    assert city.cost.item() == pytest.approx(ref[-1, -1], rel=1e-9)
    assert pre.cost.item() == pytest.approx(ref[-1, -1], rel=1e-9)
    assert torch.equal(city.paths[0], pre.paths[0])


def test_dtaidistance_convention(librosa):
    """dtaidistance/tslearn report sqrt(sum of squared distances): our sqeuclidean cost, square-rooted."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(15, 3)), rng.normal(size=(12, 3))
    ref, _ = librosa.sequence.dtw(x.T, y.T, metric="sqeuclidean")
    ours = dtw(torch.from_numpy(x), torch.from_numpy(y), distance="sqeuclidean").cost.sqrt()
    assert ours.item() == pytest.approx(math.sqrt(ref[-1, -1]), rel=1e-12)


def test_normalized_cost():
    rng = np.random.default_rng(6)
    x, y = torch.from_numpy(rng.normal(size=(8, 2))), torch.from_numpy(rng.normal(size=(5, 2)))
    one = dtw(x, y)
    assert one.normalized_cost.item() == pytest.approx(one.cost.item() / len(one.paths[0]))
    two = dtw(x, y, step_pattern="symmetric2")
    assert two.normalized_cost.item() == pytest.approx(two.cost.item() / 13)


# ---------------------------------------------------------------------------------------------
# Batches, padding, backends


def padded_batch(rng, xl, yl, dim=3, fill=float("nan")):
    x = torch.full((len(xl), max(xl), dim), fill, dtype=F64)
    y = torch.full((len(yl), max(yl), dim), fill, dtype=F64)
    for b, (n, m) in enumerate(zip(xl, yl)):
        x[b, :n] = torch.from_numpy(rng.normal(size=(n, dim)))
        y[b, :m] = torch.from_numpy(rng.normal(size=(m, dim)))
    return x, y


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("band", [None, 2])
def test_batch_equals_items_with_nan_padding(backend, pattern, band):
    rng = np.random.default_rng(7)
    xl, yl = [7, 3, 9, 1], [5, 9, 9, 4]
    x, y = padded_batch(rng, xl, yl)
    batch = dtw(x, y, xl, yl, band=band, step_pattern=pattern, backend=backend)
    soft = soft_dtw(x, y, 0.7, xl, yl, band=band, step_pattern=pattern, backend=backend)
    for b, (n, m) in enumerate(zip(xl, yl)):
        item = dtw(x[b, :n], y[b, :m], band=band, step_pattern=pattern, backend=backend)
        assert batch.cost[b].item() == pytest.approx(item.cost.item(), rel=1e-12)
        assert batch.normalized_cost[b].item() == pytest.approx(item.normalized_cost.item(), rel=1e-12)
        assert torch.equal(batch.paths[b], item.paths[0])
        one = soft_dtw(x[b : b + 1, :n], y[b : b + 1, :m], 0.7, band=band, step_pattern=pattern, backend=backend)
        assert soft[b].item() == pytest.approx(one.item(), rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_never_reaches_gradients(backend):
    rng = np.random.default_rng(8)
    xl, yl = [4, 6], [6, 3]
    x, y = padded_batch(rng, xl, yl, fill=float("nan"))
    x.requires_grad_(True)
    y.requires_grad_(True)
    soft_dtw(x, y, 1.0, xl, yl, backend=backend).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    assert (x.grad[0, 4:] == 0).all() and (y.grad[1, 3:] == 0).all()
    garbage_x, garbage_y = padded_batch(np.random.default_rng(8), xl, yl, fill=1e6)
    assert torch.equal(soft_dtw(x.detach(), y.detach(), 1.0, xl, yl), soft_dtw(garbage_x, garbage_y, 1.0, xl, yl))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_torch_equals_numba(dtype, pattern):
    rng = np.random.default_rng(9)
    xl, yl = [30, 12, 25], [18, 31, 25]
    cost = torch.from_numpy(rng.integers(0, 4, (3, 30, 31)).astype(np.float64)).to(dtype)  # ties everywhere
    for band in (None, 3):
        a = lattice_dtw(cost, xl, yl, band, pattern, backend="torch")
        b = lattice_dtw(cost, xl, yl, band, pattern, backend="numba")
        assert torch.equal(a[0], b[0])
        for pa, pb in zip(a[1], b[1]):
            assert torch.equal(pa, pb)
        sa = lattice_soft_alignment(cost, 0.5, xl, yl, band, pattern, backend="torch")
        sb = lattice_soft_alignment(cost, 0.5, xl, yl, band, pattern, backend="numba")
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        torch.testing.assert_close(sa, sb, atol=tol, rtol=tol)
    x, y = padded_batch(rng, xl, yl, fill=0.0)
    for distance in ("euclidean", "sqeuclidean"):
        a = dtw(x.to(dtype), y.to(dtype), xl, yl, step_pattern=pattern, distance=distance, backend="torch")
        b = dtw(x.to(dtype), y.to(dtype), xl, yl, step_pattern=pattern, distance=distance, backend="numba")
        torch.testing.assert_close(a.cost, b.cost)
        assert a.cost.dtype == dtype


@pytest.mark.parametrize("squared", [False, True])
def test_fused_rows_equal_the_precomputed_cost(squared):
    """The numba DP reading distance rows (lattice_dtw_rows) == the DP on the whole cost."""
    rng = np.random.default_rng(12)
    xl, yl = torch.tensor([30, 12, 25]), torch.tensor([18, 31, 25])
    x, y = padded_batch(rng, xl.tolist(), yl.tolist(), fill=0.0)
    cost = pairwise_euclidean(x, y, xl, yl, squared, backend="torch")
    for band, pattern in ((None, "symmetric1"), (3, "symmetric2")):
        a = lattice_dtw_rows(x, y, ROW_DISTANCES[squared], xl, yl, band, pattern)
        b = lattice_dtw(cost, xl, yl, band, pattern, backend="numba")
        torch.testing.assert_close(a[0], b[0], rtol=1e-12, atol=0)
        for pa, pb in zip(a[1], b[1]):
            assert torch.equal(pa, pb)
        one = lattice_dtw_rows(x[:1], y[:1], ROW_DISTANCES[squared], xl[:1], yl[:1], band, pattern)  # single-pair path
        torch.testing.assert_close(one[0], a[0][:1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("squared", [False, True])
def test_pairwise_euclidean_backends_agree_with_gradients(squared):
    rng = np.random.default_rng(13)
    xl, yl = torch.tensor([7, 4]), torch.tensor([5, 6])
    x, y = padded_batch(rng, xl.tolist(), yl.tolist(), fill=0.0)
    y[0, 1] = x[0, 2]  # two coinciding frames: the Euclidean gradient there is 0
    out = {}
    for backend in BACKENDS:
        xg, yg = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        cost = pairwise_euclidean(xg, yg, xl, yl, squared, backend=backend)
        weights = torch.from_numpy(rng.normal(size=cost.shape)) if backend == "torch" else out["torch"][3]
        (cost * weights).sum().backward()
        out[backend] = (cost.detach(), xg.grad, yg.grad, weights)
    for a, b in zip(out["torch"][:3], out["numba"][:3]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    ref = torch.from_numpy(cdist(x[1, :4].numpy(), y[1, :6].numpy(), "sqeuclidean" if squared else "euclidean"))
    torch.testing.assert_close(out["torch"][0][1, :4, :6], ref, rtol=1e-12, atol=1e-12)


def test_distances_live_outside_the_kernel():
    """Frame distances are alignment's; the lattice kernel takes a cost (or a row function)."""
    import pytorch_hmm.alignment as alignment
    from pytorch_hmm.alignment import distances
    from pytorch_hmm.kernel import lattice, lattice_torch

    assert alignment.pairwise_cost is distances.pairwise_cost
    assert not hasattr(lattice, "pairwise_euclidean") and not hasattr(lattice_torch, "distances")


def test_float32_close_to_float64():
    rng = np.random.default_rng(10)
    x, y = torch.from_numpy(rng.normal(size=(2, 40, 13))), torch.from_numpy(rng.normal(size=(2, 50, 13)))
    for fn in (lambda a, b: dtw(a, b).cost, lambda a, b: soft_dtw(a, b, 1.0)):
        torch.testing.assert_close(fn(x.float(), y.float()).double(), fn(x, y), rtol=1e-5, atol=0)


def test_unbatched_input_gives_batch_of_one():
    x, y = torch.randn(6, 2, dtype=F64), torch.randn(4, 2, dtype=F64)
    result = dtw(x, y)
    assert isinstance(result, DTWResult)
    assert result.cost.shape == (1,) and result.normalized_cost.shape == (1,) and len(result.paths) == 1
    assert soft_dtw(x, y).shape == (1,)
    assert soft_dtw_alignment(x, y).shape == (1, 6, 4)


def test_forbidden_cells_in_precomputed_cost():
    cost = torch.rand(1, 4, 4, dtype=F64)
    cost[0, 1, 1] = cost[0, 2, 2] = math.inf
    free = cost.clone().requires_grad_(True)
    value = soft_dtw(free, distance="precomputed", gamma=0.5)
    value.sum().backward()
    assert torch.isfinite(value).all() and free.grad[0, 1, 1] == 0 and free.grad[0, 2, 2] == 0
    oracle = brute_force(np.where(np.isinf(cost[0].numpy()), 1e300, cost[0].numpy()), gamma=0.5)
    assert value.item() == pytest.approx(oracle.soft, rel=1e-12)
    assert dtw(cost, distance="precomputed").cost.item() == pytest.approx(oracle.best, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Soft-DTW gradients and limits


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
def test_soft_dtw_gradcheck(backend, pattern):
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 5, 3, dtype=F64, generator=gen, requires_grad=True)
    y = torch.randn(2, 4, 3, dtype=F64, generator=gen, requires_grad=True)

    def fn(a, b):
        return soft_dtw(a, b, 0.8, [5, 3], [4, 4], band=2, step_pattern=pattern, backend=backend)

    assert torch.autograd.gradcheck(fn, (x, y))


@pytest.mark.parametrize("backend", BACKENDS)
def test_soft_dtw_gradcheck_precomputed(backend):
    cost = torch.rand(2, 4, 5, dtype=F64, generator=torch.Generator().manual_seed(12), requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: soft_dtw(c, distance="precomputed", gamma=0.3, backend=backend), (cost,))


@pytest.mark.parametrize("backend", BACKENDS)
def test_soft_dtw_tends_to_dtw(backend):
    rng = np.random.default_rng(13)
    x, y = torch.from_numpy(rng.normal(size=(3, 12, 4))), torch.from_numpy(rng.normal(size=(3, 10, 4)))
    hard = dtw(x, y, distance="sqeuclidean", backend=backend).cost
    gamma = 1e-4
    soft = soft_dtw(x, y, gamma, backend=backend)
    # soft <= hard, and hard - soft <= gamma * log(number of paths)
    assert (soft <= hard + 1e-9).all()
    assert (hard - soft <= gamma * math.log(1e7)).all()


def test_alignment_is_gradient_for_symmetric1():
    rng = np.random.default_rng(14)
    cost = torch.from_numpy(rng.exponential(size=(2, 6, 7))).requires_grad_(True)
    (grad,) = torch.autograd.grad(soft_dtw(cost, gamma=0.5, distance="precomputed").sum(), cost)
    torch.testing.assert_close(soft_dtw_alignment(cost.detach(), gamma=0.5, distance="precomputed"), grad)


# ---------------------------------------------------------------------------------------------
# DTWAligner


def test_aligner_hard_and_soft():
    rng = np.random.default_rng(15)
    x, y = torch.from_numpy(rng.normal(size=(2, 9, 3))), torch.from_numpy(rng.normal(size=(2, 7, 3)))
    hard = DTWAligner(band=3, step_pattern="symmetric2")(x, y, [9, 5])
    ref = dtw(x, y, [9, 5], band=3, step_pattern="symmetric2")
    assert torch.equal(hard.cost, ref.cost) and all(torch.equal(a, b) for a, b in zip(hard.paths, ref.paths))
    aligner = DTWAligner(soft=True, gamma=0.5)
    x.requires_grad_(True)
    loss = aligner(x, y).mean()
    loss.backward()
    assert loss.item() == pytest.approx(soft_dtw(x, y, 0.5).mean().item())
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert "soft=True, gamma=0.5" in repr(aligner) and "'sqeuclidean'" in repr(aligner)


# ---------------------------------------------------------------------------------------------
# Errors (one per message)


def feats():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(2, 5, 3, generator=gen), torch.randn(2, 4, 3, generator=gen)


def test_error_x_ndim():
    _, y = feats()
    with pytest.raises(HMMDimensionError, match=r"x must be \(B, N, D\) or one unbatched pair without B; got shape \(5,\)"):
        dtw(torch.zeros(5), y)


def test_error_x_not_tensor():
    _, y = feats()
    with pytest.raises(TypeError, match="x must be a torch.Tensor of shape") as info:
        dtw([[0.0]], y)
    assert isinstance(info.value, HMMTypeError) and isinstance(info.value, HMMValueError)


def test_error_ndim_mismatch():
    x, y = feats()
    with pytest.raises(HMMDimensionError, match="x and y must both be batched"):
        dtw(x, y[0])


def test_error_feature_mismatch():
    x, _ = feats()
    message = r"y must be \(B, M, D\) with B == 2 and D == 3 .* got shape \(2, 4, 5\)"
    with pytest.raises(HMMDimensionError, match=message) as info:
        dtw(x, torch.zeros(2, 4, 5))
    assert info.value.expected_shape == (2, "M", 3)


def test_error_dtype():
    x, y = feats()
    with pytest.raises(HMMDtypeError, match="x must be float32 or float64; got torch.int64"):
        dtw(x.long(), y.long())


def test_error_dtype_mismatch():
    x, y = feats()
    with pytest.raises(HMMDtypeError, match=r"y must have the dtype of x \(torch.float32\); got torch.float64"):
        dtw(x, y.double())


def test_error_empty():
    x, y = feats()
    with pytest.raises(HMMDimensionError, match="y must have at least one pair, frame and feature"):
        dtw(x, y[:, :0])


@pytest.mark.parametrize("bad, kind", [(float("nan"), "NaN"), (float("inf"), "inf")])
def test_error_non_finite_features(bad, kind):
    x, y = feats()
    y[1, 2, 0] = bad
    with pytest.raises(HMMValueError, match=rf"y must be finite \(at frames before y_lengths\); found {kind}"):
        dtw(x, y)
    dtw(x, y, y_lengths=[4, 2])  # past the lengths it is padding


@pytest.mark.parametrize("backend", BACKENDS)
def test_error_nan_cost(backend):
    cost = torch.rand(2, 3, 3)
    cost[1, 1, 1] = float("nan")
    with pytest.raises(HMMValueError, match="cost must not contain NaN or -inf inside the band and lengths"):
        lattice_dtw(cost, backend=backend)
    lattice_dtw(cost, x_lengths=[3, 1], backend=backend)  # outside the lengths: ignored


def test_error_y_missing():
    x, _ = feats()
    with pytest.raises(HMMValueError, match="y is required unless distance='precomputed'"):
        dtw(x)


def test_error_y_with_precomputed():
    x, y = feats()
    with pytest.raises(HMMValueError, match="y must be None when distance='precomputed'"):
        dtw(x, y, distance="precomputed")


def test_error_callable_shape():
    x, y = feats()
    message = r"distance\(x, y\) must return a \(B, N, M\) = \(2, 5, 4\) tensor; got \(2, 4, 5\)"
    with pytest.raises(HMMDimensionError, match=message):
        dtw(x, y, distance=lambda a, b: torch.cdist(b, a))


@pytest.mark.parametrize("band", [-1, 1.5, True, "2"])
def test_error_band(band):
    x, y = feats()
    with pytest.raises(HMMValueError, match="band must be None or a non-negative integer radius in frames"):
        dtw(x, y, band=band)


def test_error_step_pattern():
    x, y = feats()
    with pytest.raises(HMMValueError, match=r"step_pattern must be one of \('symmetric1', 'symmetric2'\); got 'asymmetric'"):
        dtw(x, y, step_pattern="asymmetric")


def test_error_distance():
    x, y = feats()
    with pytest.raises(HMMValueError, match="distance must be one of .* or a callable"):
        soft_dtw(x, y, distance="manhattan")


@pytest.mark.parametrize("backend", BACKENDS)
def test_error_infeasible_band(backend):
    x, y = torch.randn(2, 5, 2), torch.randn(2, 5, 2)
    dtw(x, y, band=0, backend=backend)  # equal lengths: the diagonal itself
    with pytest.raises(InfeasibleAlignmentError, match=r"pair 1 \(x length 3, y length 5\) with band=0"):
        dtw(x, y, x_lengths=[5, 3], band=0, backend=backend)
    with pytest.raises(InfeasibleAlignmentError, match=r"pair 1 \(x length 3, y length 5\) with band=0"):
        soft_dtw(x, y, x_lengths=[5, 3], band=0, backend=backend)
    dtw(x, y, x_lengths=[5, 3], band=1, backend=backend)  # any radius >= 1 is feasible


@pytest.mark.parametrize("name", ["x_lengths", "y_lengths"])
def test_error_lengths_range(name):
    x, y = feats()
    limit = 5 if name == "x_lengths" else 4
    with pytest.raises(HMMValueError, match=rf"{name} must be in \[1, {limit}\]; got values in \[0, 2\]"):
        dtw(x, y, **{name: [0, 2]})


def test_error_lengths_dtype():
    x, y = feats()
    with pytest.raises(HMMDtypeError, match="x_lengths must have an integer dtype; got torch.float32"):
        dtw(x, y, x_lengths=torch.tensor([1.0, 2.0]))


def test_error_lengths_shape():
    x, y = feats()
    with pytest.raises(HMMDimensionError, match=r"y_lengths must be \(B,\) with B == 2; got shape \(3,\)"):
        dtw(x, y, y_lengths=[1, 2, 3])


def test_error_lengths_not_integers():
    x, y = feats()
    with pytest.raises(HMMValueError, match=r"x_lengths must be a \(B,\) sequence of integers"):
        dtw(x, y, x_lengths=["a", "b"])


@pytest.mark.parametrize("gamma", [0.0, -1.0, float("inf"), "1"])
def test_error_gamma(gamma):
    x, y = feats()
    with pytest.raises(HMMValueError, match="gamma must be a positive finite number"):
        soft_dtw(x, y, gamma)


def test_error_backend():
    x, y = feats()
    with pytest.raises(HMMValueError, match=r"backend must be one of \('auto', 'torch', 'numba'\); got 'cuda'"):
        dtw(x, y, backend="cuda")


def test_error_cost_ndim():
    with pytest.raises(HMMDimensionError, match=r"cost must be \(B, N, M\); got shape \(3, 4\)") as info:
        lattice_dtw(torch.zeros(3, 4))
    assert "unsqueeze(0)" in info.value.suggestion


def test_error_cost_not_tensor():
    with pytest.raises(HMMTypeError, match="cost must be a torch.Tensor"):
        lattice_soft_dtw(np.zeros((1, 2, 2)))


def test_error_cost_dtype():
    with pytest.raises(HMMDtypeError, match="cost must be float32 or float64; got torch.int64"):
        lattice_dtw(torch.zeros(1, 2, 2, dtype=torch.long))


def test_error_cost_empty():
    with pytest.raises(HMMDimensionError, match="cost must have at least one pair, row and column"):
        lattice_dtw(torch.zeros(1, 0, 2))


# ---------------------------------------------------------------------------------------------
# CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_equals_cuda():
    rng = np.random.default_rng(16)
    xl, yl = [30, 12, 25], [18, 31, 25]
    x, y = padded_batch(rng, xl, yl, fill=float("nan"))
    for pattern in sorted(PATTERNS):
        cpu = dtw(x, y, xl, yl, band=4, step_pattern=pattern)
        gpu = dtw(x.cuda(), y.cuda(), xl, yl, band=4, step_pattern=pattern)
        assert gpu.cost.device.type == "cuda" and gpu.paths[0].device.type == "cuda"
        torch.testing.assert_close(gpu.cost.cpu(), cpu.cost)
        for a, b in zip(cpu.paths, gpu.paths):
            assert torch.equal(a, b.cpu())
        xc, yc = x.cuda().requires_grad_(True), y.cuda().requires_grad_(True)
        soft = soft_dtw(xc, yc, 0.5, xl, yl, step_pattern=pattern)
        soft.sum().backward()
        xr = x.clone().requires_grad_(True)
        ref = soft_dtw(xr, y, 0.5, xl, yl, step_pattern=pattern)
        ref.sum().backward()
        torch.testing.assert_close(soft.cpu(), ref)
        torch.testing.assert_close(xc.grad.cpu(), xr.grad)
    with pytest.raises(HMMValueError, match="backend='numba' runs on CPU tensors only"):
        dtw(x.cuda(), y.cuda(), xl, yl, backend="numba")
