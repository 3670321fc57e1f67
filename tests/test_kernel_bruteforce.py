"""Chain kernel vs. a brute-force enumeration of all state paths (tests/oracle.py).

Tiny problems drawn by hypothesis (B <= 3, T <= 5, K <= 4, W <= 3) in every transition
storage (dense/banded/sparse x shared/batched/time-varying), with random lengths, optional
log_final, optional -inf entries and unnormalised potentials, float64, both backends. Sparse
problems have unused slots and parallel edges (a source listed twice: probabilities add),
shared or per-item predecessor lists.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import oracle
from kernel_calls import rebuild, run, torch_inputs
from oracle import LAYOUTS, STORAGES, Problem, brute_force, random_problem
from pytorch_hmm import kernel
from pytorch_hmm.transitions import Banded, Dense

BACKENDS = ("torch", "numba")
ATOL = 1e-9
RTOL = 1e-9


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def assert_close(actual, expected, what, atol=ATOL, rtol=RTOL):
    actual = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != expected {expected.shape}"
    assert not np.isnan(actual).any(), f"{what}: NaN in kernel output\n{actual}"
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=rtol, err_msg=what)


def check_values(p: Problem, backend: str) -> None:
    """log Z, posteriors, expected transitions and Viterbi of the kernel == the oracle."""
    ans = p.solve()
    inp = torch_inputs(p)

    log_z = run("log_partition", inp, backend)
    assert log_z.dtype == torch.float64
    assert_close(log_z, ans.log_z, "log_partition")  # -inf == -inf passes, -inf vs finite fails

    post = run("posteriors", inp, backend)
    assert_close(post, ans.posteriors, "posteriors")

    xi = run("expected_transitions", inp, backend)
    assert_close(xi, ans.expected_transitions, "expected_transitions")

    for value, expected, name in zip(run("marginals", inp, backend), (ans.log_z, ans.posteriors, ans.expected_transitions), ("log Z", "posteriors", "counts")):
        assert_close(value, expected, f"marginals: {name}")

    paths, scores = run("viterbi", inp, backend)
    assert paths.dtype == torch.int64
    assert tuple(paths.shape) == (p.batch, p.frames)
    assert_close(scores, ans.best_score, "viterbi scores")
    check_paths(p, ans, paths)


def check_paths(p: Problem, ans, paths: torch.Tensor) -> None:
    paths = paths.cpu().numpy()
    for b, r in enumerate(ans.items):
        n = p.length(b)
        assert (paths[b, n:] == -1).all(), f"item {b}: padded frames must be -1, got {paths[b]}"
        if r.best_score == -math.inf:
            assert (paths[b] == -1).all(), f"item {b} is infeasible: path must be all -1, got {paths[b]}"
            continue
        path = paths[b, :n]
        assert ((path >= 0) & (path < p.states)).all(), f"item {b}: bad state ids {paths[b]}"
        em, trans, init, final, _ = p.item(b)
        score = oracle.path_score(em, trans, init, path, final)
        assert score == pytest.approx(r.best_score, abs=ATOL, rel=RTOL), (
            f"item {b}: Viterbi path {path} scores {score}, best is {r.best_score} ({r.best_paths})"
        )
        if r.unique_best is not None:
            assert tuple(path) == r.unique_best, f"item {b}: path {path} != unique best {r.unique_best}"


@st.composite
def problems(draw, storage: str, layout: str, allow_inf: bool = True) -> Problem:
    batch = draw(st.integers(1, 3))
    frames = draw(st.integers(1, 5))
    states = draw(st.integers(1, 4))
    width = {"banded": draw(st.integers(1, min(3, states))), "sparse": draw(st.integers(1, 3))}.get(storage)
    pred_batched = draw(st.booleans()) if storage == "sparse" else False
    p_inf = draw(st.sampled_from([0.0, 0.0, 0.2, 0.5] if allow_inf else [0.0]))
    init_batched = draw(st.booleans())
    final = draw(st.sampled_from([None, "shared", "batched"]))
    lengths = draw(
        st.one_of(
            st.none(),
            st.lists(st.integers(1, frames), min_size=batch, max_size=batch),
        )
    )
    seed = draw(st.integers(0, 2**32 - 1))
    return random_problem(
        np.random.default_rng(seed),
        batch,
        frames,
        states,
        storage=storage,
        layout=layout,
        width=width,
        p_inf=p_inf,
        init_batched=init_batched,
        final=final,
        lengths=lengths,
        pred_batched=pred_batched,
    )


STRUCTURES = [(s, l) for s in STORAGES for l in LAYOUTS]


# ---------------------------------------------------------------------------------------
# the oracle itself: against a plain forward / backward / max-product recursion in numpy
# ---------------------------------------------------------------------------------------


def _lse(a, axis):
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def _forward_backward_numpy(em, steps, init, final):
    """Textbook log-space recursions (independent of the enumeration in oracle.py)."""
    n, k = em.shape
    alpha = np.empty((n, k))
    delta = np.empty((n, k))
    alpha[0] = init + em[0]
    delta[0] = init + em[0]
    for t in range(1, n):
        alpha[t] = _lse(alpha[t - 1][:, None] + steps[t - 1], 0) + em[t]
        delta[t] = np.max(delta[t - 1][:, None] + steps[t - 1], axis=0) + em[t]
    beta = np.empty((n, k))
    beta[-1] = final
    for t in range(n - 2, -1, -1):
        beta[t] = _lse(steps[t] + (em[t + 1] + beta[t + 1])[None, :], 1)
    log_z = _lse(alpha[-1] + final, 0)
    best = np.max(delta[-1] + final)
    if log_z == -np.inf:
        return log_z, np.zeros((n, k)), best
    return log_z, np.exp(alpha + beta - log_z), best


@pytest.mark.parametrize("seed", range(40))
def test_oracle_matches_forward_backward(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 6)), int(rng.integers(1, 5))
    em = rng.normal(size=(n, k)) * 2
    steps = rng.normal(size=(max(n - 1, 0), k, k))
    init, final = rng.normal(size=k), rng.normal(size=k)
    if seed % 2:  # sparse edges, sometimes infeasible
        for x in (em, steps, init, final):
            x[rng.random(x.shape) < 0.3] = -np.inf
    static = seed % 3 == 0 and n > 1
    trans = steps[0] if static else steps
    if static:
        steps = np.broadcast_to(steps[0], steps.shape)
    r = brute_force(em, trans, init, final)
    log_z, post, best = _forward_backward_numpy(em, steps, init, final)
    assert r.log_z == pytest.approx(log_z, rel=1e-12, abs=1e-12)
    assert r.best_score == pytest.approx(best, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(r.posteriors, post, atol=1e-12)
    if log_z > -np.inf:
        np.testing.assert_allclose(r.posteriors.sum(1), 1.0, atol=1e-12)
        # edge marginals are consistent with the state marginals on both ends
        np.testing.assert_allclose(r.expected_transitions.sum(2), post[:-1], atol=1e-12)
        np.testing.assert_allclose(r.expected_transitions.sum(1), post[1:], atol=1e-12)
        for path in r.best_paths:
            assert oracle.path_score(em, trans, init, path, final) == pytest.approx(best, abs=1e-6)
    else:
        assert r.best_paths == [] and not r.expected_transitions.any()


def test_oracle_toy_example_by_hand():
    # two states, two frames: four paths whose scores are easy to write down
    em = np.log(np.array([[0.5, 0.25], [0.1, 0.9]]))
    a = np.log(np.array([[0.7, 0.3], [0.4, 0.6]]))
    init = np.log(np.array([0.6, 0.4]))
    probs = {
        (i, j): np.exp(init[i] + em[0, i] + a[i, j] + em[1, j]) for i in range(2) for j in range(2)
    }
    z = sum(probs.values())
    r = brute_force(em, a, init)
    assert r.log_z == pytest.approx(math.log(z), rel=1e-14)
    assert r.posteriors[0, 0] == pytest.approx((probs[0, 0] + probs[0, 1]) / z)
    assert r.expected_transitions[0, 1, 0] == pytest.approx(probs[1, 0] / z)
    assert r.unique_best == max(probs, key=probs.get)
    assert r.best_score == pytest.approx(math.log(max(probs.values())))


def test_oracle_banded_to_dense_by_hand():
    band = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
    ninf = -np.inf
    expected = np.array([[1.0, 2.0, 3.0], [ninf, 4.0, 5.0], [ninf, ninf, 7.0]])
    np.testing.assert_array_equal(oracle.banded_to_dense(band), expected)
    on_chain = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(oracle.dense_to_banded_counts(np.exp(expected), 3), np.exp(band) * on_chain)


# ---------------------------------------------------------------------------------------
# Banded.to_dense (library) vs the oracle's own conversion
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(4, 3), (2, 4, 2), (2, 3, 5, 3), (1, 1), (3, 3)])
def test_banded_to_dense_matches_oracle(shape):
    rng = np.random.default_rng(0)
    band = rng.normal(size=shape)
    band[..., 0, 0] = -np.inf
    k, w = shape[-2:]
    band[..., np.arange(k)[:, None] + np.arange(w)[None, :] >= k] = 1e3  # ignored entries
    for dtype in (torch.float32, torch.float64):
        dense = Banded(torch.tensor(band, dtype=dtype)).to_dense()
        assert isinstance(dense, Dense)
        assert dense.log_probs.dtype == dtype
        rounded = band.astype(np.float32) if dtype == torch.float32 else band
        np.testing.assert_array_equal(dense.log_probs.numpy().astype(np.float64), oracle.banded_to_dense(rounded))


# ---------------------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("storage,layout", STRUCTURES)
@given(data=st.data())
def test_values_match_bruteforce(storage, layout, backend, data):
    p = data.draw(problems(storage, layout))
    check_values(p, backend)


EDGE_CASES = [
    # (batch, frames, states, storage, layout, width, lengths, final)
    (1, 1, 1, "dense", "shared", None, None, None),
    (2, 1, 3, "dense", "time_varying", None, None, "batched"),  # (B, 0, K, K) transitions
    (2, 1, 3, "banded", "time_varying", 2, None, "shared"),
    (3, 4, 1, "banded", "batched", 1, [4, 1, 2], "shared"),  # K = W = 1
    (3, 5, 3, "dense", "batched", None, [1, 1, 1], None),  # only first frames count
    (3, 5, 4, "banded", "time_varying", 3, [5, 1, 3], "batched"),
    (2, 5, 4, "dense", "time_varying", None, [2, 5], None),
    (2, 5, 4, "banded", "shared", 4, [5, 4], "batched"),  # W == K
    (1, 1, 1, "sparse", "shared", 1, None, None),
    (2, 1, 3, "sparse", "time_varying", 2, None, "batched"),  # (B, 0, K, P) log-probs
    (3, 4, 1, "sparse", "batched", 3, [4, 1, 2], "shared"),  # K = 1, P = 3: parallel self-loops
    (3, 5, 4, "sparse", "time_varying", 5, [5, 1, 3], "batched"),  # P > K
    (2, 5, 4, "sparse", "batched", 2, [2, 5], None),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", EDGE_CASES, ids=lambda c: "-".join(map(str, c[:5])))
def test_edge_shapes_match_bruteforce(case, backend):
    batch, frames, states, storage, layout, width, lengths, final = case
    for seed in range(3):
        p = random_problem(
            np.random.default_rng(seed),
            batch,
            frames,
            states,
            storage=storage,
            layout=layout,
            width=width,
            final=final,
            lengths=lengths,
            init_batched=bool(seed % 2),
            pred_batched=bool(seed % 2),
        )
        check_values(p, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_viterbi_tie_returns_a_best_path(backend):
    # every path has the same score: any path is optimal, but it must be a real path
    p = Problem(
        em=np.zeros((2, 4, 3)),
        trans=np.zeros((3, 3)),
        storage="dense",
        init=np.zeros(3),
        final=None,
        lengths=np.array([4, 2]),
    )
    check_values(p, backend)


# ---------------------------------------------------------------------------------------
# gradients are the marginals
# ---------------------------------------------------------------------------------------


def expected_gradients(p: Problem, ans):
    """d(sum_b log Z_b)/d input, from the oracle's marginals."""
    post = ans.posteriors
    first = post[:, 0]
    last = np.stack([post[b, p.length(b) - 1] for b in range(p.batch)])
    xi = ans.expected_transitions
    return dict(
        log_emissions=post,
        transitions=xi.sum(0) if p.layout == "shared" else xi,
        log_init=first.sum(0) if p.init.ndim == 1 else first,
        log_final=None if p.final is None else (last.sum(0) if p.final.ndim == 1 else last),
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("storage,layout", STRUCTURES)
@given(data=st.data())
def test_gradients_are_marginals(storage, layout, backend, data):
    p = data.draw(problems(storage, layout))
    ans = p.solve()
    inp = torch_inputs(p, requires_grad=True)
    names = ["log_emissions", "transitions", "log_init"] + (["log_final"] if p.final is not None else [])
    tensors = [inp[n].log_probs if n == "transitions" else inp[n] for n in names]

    log_z = run("log_partition", inp, backend)
    grads = torch.autograd.grad(log_z.sum(), tensors, allow_unused=True)

    expected = expected_gradients(p, ans)
    for name, g, tensor in zip(names, grads, tensors):
        if g is None:  # an input that cannot influence log Z (e.g. nothing feasible) may be unused
            g = torch.zeros_like(tensor)
        assert_close(g, expected[name], f"d log_partition / d {name}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("storage,layout", STRUCTURES)
def test_gradcheck(storage, layout, backend):
    rng = np.random.default_rng(1)
    p = random_problem(
        rng, 2, 3, 3, storage=storage, layout=layout, width=2, final="batched", lengths=[3, 2],
        init_batched=(layout != "shared"),
    )
    inp = torch_inputs(p, requires_grad=True)
    structure = inp["transitions"]

    def f(em, lp, init, final):
        return kernel.log_partition(
            em, rebuild(structure, lp), init, lengths=inp["lengths"], log_final=final, backend=backend
        )

    args = (inp["log_emissions"], inp["transitions"].log_probs, inp["log_init"], inp["log_final"])
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_oracle_sparse_to_dense_by_hand():
    ninf = -np.inf
    pred = np.array([[0, -1, 1], [0, 0, -1]])  # state 1 has two parallel edges from 0
    lp = np.log(np.array([[0.5, 7.0, 0.25], [0.1, 0.3, 9.0]]))
    dense = oracle.sparse_to_dense(pred, lp)
    np.testing.assert_allclose(np.exp(dense), [[0.5, 0.4], [0.25, 0.0]], atol=1e-15)
    assert dense[1, 1] == ninf
    counts = oracle.dense_to_sparse_counts(np.array([[2.0, 4.0], [1.0, 0.0]]), pred, lp)
    np.testing.assert_allclose(counts, [[2.0, 0.0, 1.0], [1.0, 3.0, 0.0]], atol=1e-12)
