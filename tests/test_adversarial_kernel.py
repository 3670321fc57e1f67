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
