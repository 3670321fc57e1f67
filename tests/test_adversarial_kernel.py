"""The chain kernel on extreme but finite scores, against a float64 brute-force enumeration.

The documented guarantee is: a sequence is infeasible iff ``log Z = -inf``; feasible sequences
get finite log Z, posteriors and expected counts, never NaN, whatever the scale of the scores.
The dense storage runs a max-shifted GEMM per step, which underflows when the best source of a
state lies hundreds of nats below the best state; these tests hold it (and the banded and
sparse storages, which do not use the GEMM) to the oracle on problems drawn with scores of
scale 30 to 3000, in float64 and float32, on both backends.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_calls import run, torch_inputs
from oracle import LAYOUTS, STORAGES, random_problem
from pytorch_hmm import kernel
from pytorch_hmm.transitions import Banded, Dense

BACKENDS = ("torch", "numba")

# scale of the drawn scores -> (log Z rtol, posterior / count atol) per dtype
TOLERANCES = {torch.float64: (1e-10, 1e-7), torch.float32: (1e-5, 2e-3)}
SCALES = {torch.float64: (30.0, 300.0, 3000.0), torch.float32: (30.0, 150.0)}


def _close(actual, expected, what, atol, rtol=0.0):
    actual = actual.detach().double().cpu().numpy()
    assert not np.isnan(actual).any(), f"{what}: NaN in kernel output\n{actual}"
    np.testing.assert_allclose(actual, np.asarray(expected, dtype=np.float64), atol=atol, rtol=rtol, err_msg=what)


@st.composite
def extreme_problems(draw, storage, layout, dtype):
    batch = draw(st.integers(1, 2))
    frames = draw(st.integers(2, 5))
    states = draw(st.integers(2, 4))
    width = {"banded": draw(st.integers(1, min(3, states))), "sparse": draw(st.integers(1, 3))}.get(storage)
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(1, frames), min_size=batch, max_size=batch)))
    return random_problem(
        np.random.default_rng(draw(st.integers(0, 2**32 - 1))),
        batch,
        frames,
        states,
        storage=storage,
        layout=layout,
        width=width,
        p_inf=draw(st.sampled_from([0.0, 0.3])),
        final=draw(st.sampled_from([None, "shared"])),
        lengths=lengths,
        scale=draw(st.sampled_from(SCALES[dtype])),
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("storage,layout", [(s, l) for s in STORAGES for l in LAYOUTS])
@settings(max_examples=40)
@given(data=st.data())
def test_extreme_scores_match_bruteforce(storage, layout, backend, dtype, data):
    p = data.draw(extreme_problems(storage, layout, dtype))
    ans = p.solve()
    inp = torch_inputs(p, dtype=dtype)
    rtol, atol = TOLERANCES[dtype]
    scale = float(np.abs(np.nan_to_num(p.em, neginf=0.0)).max()) * p.frames * 4 + 1.0
    log_z, post, xi = run("marginals", inp, backend)
    # the infeasible <=> -inf guarantee, exactly
    np.testing.assert_array_equal(np.isneginf(log_z.double().numpy()), np.isneginf(ans.log_z), "feasibility")
    _close(log_z, ans.log_z, "log Z", atol=rtol * scale)
    _close(post, ans.posteriors, "posteriors", atol=atol)
    _close(xi, ans.expected_transitions, "expected transitions", atol=atol * p.frames)
    _, scores = run("viterbi", inp, backend)
    _close(scores, ans.best_score, "viterbi score", atol=rtol * scale)


# ---------------------------------------------------------------------------------------
# the two failures an adversarial pass found (issue "Reliability"), as written there
# ---------------------------------------------------------------------------------------


def _left_to_right_gaussian(dtype):
    """3 states, means -100 / 0 / 100, unit variance, on ``x = [-100, -100, 100, 100]``."""
    x = torch.tensor([-100.0, -100.0, 100.0, 100.0], dtype=torch.float64)
    means = torch.tensor([-100.0, 0.0, 100.0], dtype=torch.float64)
    log_em = (-0.5 * (x[:, None] - means) ** 2 - 0.5 * math.log(2 * math.pi)).unsqueeze(0)
    probs = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    init = torch.log(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    return log_em.to(dtype), probs.log().to(dtype), init.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_left_to_right_as_dense_equals_banded(backend, dtype):
    log_em, log_trans, init = _left_to_right_gaussian(dtype)
    tol = 1e-9 if dtype == torch.float64 else 2e-3  # float32 scores of ~5000 nats carry ~5e-4 nats of rounding
    band = torch.stack([log_trans.diagonal(), _past_the_end(log_trans.diagonal(1))], -1)
    log_z_d, post_d, xi_d = kernel.marginals(log_em, Dense(log_trans), init, backend=backend)
    log_z_b, post_b, xi_b = kernel.marginals(log_em, Banded(band), init, backend=backend)
    assert torch.isfinite(log_z_d).all() and not torch.isnan(xi_d).any() and not torch.isnan(post_d).any()
    torch.testing.assert_close(log_z_d, log_z_b, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(post_d, post_b, rtol=0.0, atol=tol)
    # the only path: 0 0 ... is not possible (x_2 = 100 needs state 2): 0 -> 0 -> 1 -> 2 -> 2 is
    # the cheapest of the feasible paths; counts sum to T - 1 = 3
    assert float(xi_d.sum()) == pytest.approx(3.0, abs=tol)
    dense_from_band = torch.zeros(3, 3, dtype=dtype)
    for i in range(3):
        for w in range(2):
            if i + w < 3:
                dense_from_band[i, i + w] = xi_b[0, i, w]
    torch.testing.assert_close(xi_d[0], dense_from_band, rtol=0.0, atol=tol)


def _past_the_end(v):
    """``(K - 1,)`` superdiagonal -> ``(K,)`` with ``-inf`` for the move past the last state."""
    return torch.cat([v, v.new_full((1,), float("-inf"))])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "dtype,gap", [(torch.float64, 1000.0), (torch.float32, 120.0)], ids=["f64-1000", "f32-120"]
)
def test_dense_mass_far_below_the_column_maximum_is_kept(backend, dtype, gap):
    log_em = torch.tensor([[[0.0, -gap], [0.0, 0.0]]], dtype=dtype)
    trans = Dense(torch.tensor([[-gap, -gap], [0.0, 0.0]], dtype=dtype))
    init = torch.zeros(2, dtype=dtype)
    # every one of the 4 paths scores -gap
    expected = -gap + math.log(4.0)
    log_z = kernel.log_partition(log_em, trans, init, backend=backend)
    assert float(log_z) == pytest.approx(expected, rel=1e-6)
    _, score = kernel.viterbi(log_em, trans, init, backend=backend)
    assert float(score) == pytest.approx(-gap, rel=1e-6)
    post = kernel.posteriors(log_em, trans, init, backend=backend)
    torch.testing.assert_close(post, torch.full_like(post, 0.5), rtol=0.0, atol=1e-6)
    xi = kernel.expected_transitions(log_em, trans, init, backend=backend)
    torch.testing.assert_close(xi, torch.full_like(xi, 0.25), rtol=0.0, atol=1e-6)


@pytest.mark.parametrize("dtype,gap", [(torch.float64, 1000.0), (torch.float32, 120.0)], ids=["f64", "f32"])
def test_dense_step_api_keeps_mass_far_below_the_column_maximum(dtype, gap):
    trans = Dense(torch.tensor([[-gap, -gap], [0.0, 0.0]], dtype=dtype))
    v = torch.tensor([[0.0, -gap]], dtype=dtype)
    out = kernel.forward_step(v, trans)
    torch.testing.assert_close(out, torch.full_like(out, -gap + math.log(2.0)), rtol=1e-6, atol=0.0)


# ---------------------------------------------------------------------------------------
# posteriors(differentiable=True) (HMMLayer's path) with -inf emissions on feasible sequences
# ---------------------------------------------------------------------------------------


def _enumerated_posteriors(log_em, log_trans, log_init):
    """``(T, K)`` posteriors of one sequence by summing over all ``K ** T`` paths, as torch ops
    (so autograd gives the reference gradient); independent of the kernel."""
    frames, states = log_em.shape
    paths = torch.cartesian_prod(*[torch.arange(states)] * frames).reshape(-1, frames)
    scores = log_init[paths[:, 0]] + log_em[torch.arange(frames), paths].sum(1)
    if frames > 1:
        scores = scores + log_trans[paths[:, :-1], paths[:, 1:]].sum(1)
    weights = torch.softmax(scores, 0)
    onehot = torch.nn.functional.one_hot(paths, states).to(weights.dtype)
    return (weights[:, None, None] * onehot).sum(0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("storage", ["dense", "banded"])
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), frames=st.integers(1, 4), states=st.integers(2, 3),
       scale=st.sampled_from([1.0, 30.0, 300.0]))
def test_differentiable_posteriors_with_minus_inf_emissions(backend, storage, seed, frames, states, scale):
    rng = np.random.default_rng(seed)
    em = rng.normal(0, scale, (frames, states))
    em[rng.random((frames, states)) < 0.3] = -np.inf
    trans = np.log(rng.dirichlet(np.ones(states), states))
    if storage == "banded":  # left-to-right, width 2
        mask = (np.arange(states)[None] - np.arange(states)[:, None])
        trans = np.where((mask >= 0) & (mask <= 1), trans, -np.inf)
    init = np.log(rng.dirichlet(np.ones(states)))
    e = torch.tensor(em, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(trans, dtype=torch.float64, requires_grad=True)
    reference = _enumerated_posteriors(e, t, torch.tensor(init))
    if torch.isnan(reference).any():  # no feasible path: not what this test is about
        return
    if storage == "dense":
        structure = Dense(t)
    else:
        band = torch.stack([t.diagonal(), torch.cat([t.diagonal(1), t.new_full((1,), -math.inf)])], -1)
        structure = Banded(band)
    post = kernel.posteriors(e[None], structure, torch.tensor(init), backend=backend, differentiable=True)[0]
    _close(post, reference.detach(), "posteriors", atol=1e-9)
    v = torch.tensor(rng.normal(size=(frames, states)))
    got = torch.autograd.grad((post * v).sum(), (e, t), allow_unused=True)
    want = torch.autograd.grad((reference * v).sum(), (e, t), allow_unused=True)
    for g, w, what in zip(got, want, ("d/d emissions", "d/d transitions")):
        g = torch.zeros_like(e if what == "d/d emissions" else t) if g is None else g
        w = torch.zeros_like(g) if w is None else w
        assert not torch.isnan(g).any(), f"{what}: NaN\n{g}"
        finite = torch.isfinite(e if what == "d/d emissions" else t)  # the reference is 0 or NaN at -inf inputs
        _close(g[finite], w[finite].detach().numpy(), what, atol=1e-7 * scale)
