"""Soft-DTW on costs far beyond ``gamma``, against the float64 brute-force path enumeration.

When ``cost / gamma`` is large the accumulated cost ``R`` carries more rounding than ``gamma``
can absorb: a backward pass that takes edge weights from ``R[cell] - R[pred]`` then produces
weights above 1, overflow and NaN. The guarantees held here, for both backends and dtypes:
occupancies are probabilities (``0 <= occ <= 1``, 1 at both corners, every row visited at least
once), gradients are finite, and they equal the oracle wherever the oracle's answer does not
depend on rounding the dtype cannot avoid.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dtw_oracle import brute_force
from pytorch_hmm.alignment import soft_dtw
from pytorch_hmm.kernel.lattice import lattice_soft_alignment, lattice_soft_dtw

BACKENDS = ("torch", "numba")
PATTERNS = {"symmetric1": 1.0, "symmetric2": 2.0}
EPS = {torch.float64: 1e-12, torch.float32: 1e-5}


@st.composite
def extreme_costs(draw):
    n, m = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e2, 1e4, 1e6]))
    gamma = draw(st.sampled_from([1e-6, 1e-4, 1e-2, 1.0]))
    return rng.exponential(scale, (n, m)), gamma, draw(st.sampled_from(sorted(PATTERNS)))


def _well_separated(cost: np.ndarray, w_diag: float, gamma: float, dtype) -> bool:
    """The oracle's occupancy is robust to the dtype's rounding of R: the two cheapest paths
    differ by far more than that rounding, or the whole problem sits within a few ``gamma``."""
    oracle = brute_force(cost, w_diag, None, gamma)
    rounding = torch.finfo(dtype).eps * float(cost.sum()) * (w_diag + 1) * 8
    return rounding < 1e-3 * gamma or (len(oracle.best_paths) == 1 and _second_gap(cost, w_diag) > 50 * max(rounding, gamma))


def _second_gap(cost: np.ndarray, w_diag: float) -> float:
    from dtw_oracle import monotone_paths, path_cost

    costs = sorted(path_cost(cost, p, w_diag) for p in monotone_paths(*cost.shape))
    return np.inf if len(costs) == 1 else costs[1] - costs[0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None)
@given(case=extreme_costs())
def test_soft_dtw_gradients_stay_probabilities_at_extreme_cost_over_gamma(backend, dtype, case):
    cost, gamma, pattern = case
    c = torch.from_numpy(cost).to(dtype)[None].requires_grad_(True)
    exact = c.detach().double()[0].numpy()  # the oracle sees the dtype's rounding of the input only
    value = lattice_soft_dtw(c, gamma, step_pattern=pattern, backend=backend)
    (grad,) = torch.autograd.grad(value.sum(), c)
    occ = lattice_soft_alignment(c.detach(), gamma, step_pattern=pattern, backend=backend)[0].double().numpy()
    grad = grad[0].double().numpy()
    eps = EPS[dtype]
    assert np.isfinite(grad).all() and np.isfinite(occ).all(), f"non-finite gradient\n{grad}\n{occ}"
    assert (occ >= -eps).all() and (occ <= 1 + eps).all(), f"occupancy outside [0, 1]\n{occ}"
    assert occ[0, 0] == pytest.approx(1.0, abs=eps) and occ[-1, -1] == pytest.approx(1.0, abs=eps)
    assert (occ.sum(1) >= 1 - eps * occ.shape[1]).all(), f"a row no path visits\n{occ}"
    w_diag = PATTERNS[pattern]
    assert (grad >= occ - eps).all() and (grad <= w_diag * occ + eps).all()
    if _well_separated(exact, w_diag, gamma, dtype):
        oracle = brute_force(exact, w_diag, None, gamma)
        np.testing.assert_allclose(occ, oracle.occupancy, atol=1e-3 if dtype == torch.float32 else 1e-8)
        np.testing.assert_allclose(grad, oracle.grad, atol=1e-3 if dtype == torch.float32 else 1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_soft_dtw_gradient_of_the_reported_float32_example(backend):
    """Issue "Reliability": NaN on the numba backend, finite on the torch one."""
    x = torch.tensor([[92.6], [-589.8]], requires_grad=True)
    y = torch.tensor([[512.6], [806.2], [-1770.0]], requires_grad=True)
    soft_dtw(x, y, gamma=1e-4, backend=backend).sum().backward()
    # the cheapest path (0,0) (0,1) (1,2) is unique by a margin of ~1e6: gamma -> 0 gives its
    # subgradient of the squared Euclidean cost
    x64, y64 = x.detach().double(), y.detach().double()
    gx = torch.stack([2 * (x64[0] - y64[0]) + 2 * (x64[0] - y64[1]), 2 * (x64[1] - y64[2])])
    gy = torch.stack([-2 * (x64[0] - y64[0]), -2 * (x64[0] - y64[1]), -2 * (x64[1] - y64[2])])
    torch.testing.assert_close(x.grad.double(), gx, rtol=1e-5, atol=1e-2)
    torch.testing.assert_close(y.grad.double(), gy, rtol=1e-5, atol=1e-2)
