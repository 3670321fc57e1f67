"""Path-level posterior quantities against a brute-force enumeration of every state path.

``kernel.entropy`` (the Shannon entropy of p(path | x)), ``kernel.sample_posterior`` (forward
filtering, backward sampling) and ``kernel.viterbi_k`` (the k best paths) on tiny problems
(K <= 3, T <= 5) in every storage (dense/banded/sparse x shared/batched/time-varying), with
lengths, log_final and -inf entries, float64. The enumeration below is numpy only and is
itself checked against ``oracle.brute_force``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import oracle
from kernel_calls import rebuild, torch_inputs
from oracle import LAYOUTS, STORAGES, Problem, random_problem
from pytorch_hmm import kernel
from pytorch_hmm.errors import HMMValueError
from pytorch_hmm.transitions import Banded, Dense, Sparse

STRUCTURES = [(s, l) for s in STORAGES for l in LAYOUTS]


# ---------------------------------------------------------------------------------------
# the enumeration
# ---------------------------------------------------------------------------------------


def enumerate_paths(p: Problem, b: int):
    """Every state path of item ``b`` ``(N, L)`` and its score ``(N,)`` (numpy, float64)."""
    em, trans, init, final, n = p.item(b)
    k = p.states
    em = em[:n]
    steps = np.broadcast_to(trans, (max(n - 1, 0), k, k)) if trans.ndim == 2 else trans[: n - 1]
    final = np.zeros(k) if final is None else final
    paths = np.array(list(itertools.product(range(k), repeat=n)), dtype=np.int64).reshape(-1, n)
    scores = init[paths[:, 0]] + em[0, paths[:, 0]] + final[paths[:, -1]]
    for t in range(n - 1):
        scores = scores + steps[t][paths[:, t], paths[:, t + 1]] + em[t + 1, paths[:, t + 1]]
    return paths, scores


def posterior_of_paths(p: Problem, b: int):
    """``(paths, scores, probabilities)``; probabilities ``None`` when no path has a finite score."""
    paths, scores = enumerate_paths(p, b)
    log_z = oracle.logsumexp(scores)
    return paths, scores, None if log_z == -math.inf else np.exp(scores - log_z)


def brute_entropy(p: Problem, b: int) -> float:
    _, scores, w = posterior_of_paths(p, b)
    if w is None:
        return math.nan
    live = w > 0
    return float(-(w[live] * np.log(w[live])).sum())


def draw_problem(draw, storage: str, layout: str, max_states: int = 3, allow_inf: bool = True) -> Problem:
    batch = draw(st.integers(1, 3))
    frames = draw(st.integers(1, 5))
    states = draw(st.integers(1, max_states))
    width = {"banded": draw(st.integers(1, states)), "sparse": draw(st.integers(1, 3))}.get(storage)
    return random_problem(
        np.random.default_rng(draw(st.integers(0, 2**32 - 1))), batch, frames, states, storage=storage, layout=layout,
        width=width, p_inf=draw(st.sampled_from([0.0, 0.0, 0.2, 0.5] if allow_inf else [0.0])),
        init_batched=draw(st.booleans()), final=draw(st.sampled_from([None, "shared", "batched"])),
        lengths=draw(st.one_of(st.none(), st.lists(st.integers(1, frames), min_size=batch, max_size=batch))),
        pred_batched=draw(st.booleans()) if storage == "sparse" else False,
    )


@st.composite
def problems(draw, storage, layout, allow_inf=True):
    return draw_problem(draw, storage, layout, allow_inf=allow_inf)


def call(name, inp, *args, **kwargs):
    return getattr(kernel, name)(inp["log_emissions"], inp["transitions"], inp["log_init"], *args,
                                 lengths=inp["lengths"], log_final=inp["log_final"], **kwargs)


@pytest.mark.parametrize("seed", range(12))
def test_enumeration_matches_oracle(seed):
    p = random_problem(np.random.default_rng(seed), 2, 4, 3, storage=STORAGES[seed % 3], layout=LAYOUTS[seed // 3 % 3],
                       p_inf=0.3 * (seed % 2), final="batched", lengths=[4, 2], pred_batched=True)
    for b in range(p.batch):
        paths, scores = enumerate_paths(p, b)
        r = oracle.brute_force(*p.item(b)[:4], length=p.length(b))
        assert paths.shape == (p.states ** p.length(b), p.length(b))
        assert oracle.logsumexp(scores) == pytest.approx(r.log_z, abs=1e-12) or r.log_z == -math.inf
        assert scores.max() == pytest.approx(r.best_score, abs=1e-12) or r.best_score == -math.inf
        for path, score in zip(paths[:5], scores[:5]):
            assert oracle.path_score(*p.item(b)[:3], path, p.item(b)[3]) == pytest.approx(score, abs=1e-12) or score == -math.inf


# ---------------------------------------------------------------------------------------
# entropy
# ---------------------------------------------------------------------------------------


def check_entropy(p: Problem, backend: str, requires_grad: bool = False) -> None:
    inp = torch_inputs(p, requires_grad=requires_grad)
    h = call("entropy", inp, backend=backend)
    assert h.shape == (p.batch,) and h.dtype == torch.float64
    expected = np.array([brute_entropy(p, b) for b in range(p.batch)])
    np.testing.assert_allclose(h.detach().numpy(), expected, atol=1e-10, rtol=1e-10, equal_nan=True)
    assert (h[torch.isfinite(h)] >= -1e-10).all()


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("storage,layout", STRUCTURES)
@given(data=st.data())
def test_entropy_matches_bruteforce(storage, layout, backend, data):
    check_entropy(data.draw(problems(storage, layout)), backend)


@pytest.mark.parametrize("storage,layout", STRUCTURES)
@given(data=st.data())
def test_differentiable_entropy_value_matches_bruteforce(storage, layout, data):
    check_entropy(data.draw(problems(storage, layout)), "torch", requires_grad=True)


def test_entropy_closed_forms():
    k, t = 3, 5
    dtype = torch.float64
    # uniform emissions and a deterministic chain 0 -> 1 -> 2 -> 2: exactly one path
    shift = torch.full((k, k), -math.inf, dtype=dtype)
    shift[0, 1] = shift[1, 2] = shift[2, 2] = 0.0
    init = torch.tensor([0.0, -math.inf, -math.inf], dtype=dtype)
    h = kernel.entropy(torch.zeros(2, t, k, dtype=dtype), Dense(shift), init, lengths=torch.tensor([5, 2]))
    assert torch.equal(h, torch.zeros(2, dtype=dtype))
    # independent frames (every row of the transition matrix the same): sum of per-frame entropies
    rng = np.random.default_rng(0)
    row = torch.tensor(rng.normal(size=k), dtype=dtype).log_softmax(-1)
    e = torch.tensor(rng.normal(size=(2, t, k)) * 2, dtype=dtype)
    init = torch.tensor(rng.normal(size=k), dtype=dtype)
    h = kernel.entropy(e, Dense(row.expand(k, k).clone()), init, lengths=torch.tensor([5, 3]))
    frame = e + row  # frames 1.. : p(z_t | x) ∝ row * emission
    frame[:, 0] = e[:, 0] + init
    q = frame.log_softmax(-1)
    per_frame = -(q.exp() * q).sum(-1)
    torch.testing.assert_close(h, torch.stack([per_frame[0].sum(), per_frame[1, :3].sum()]), atol=1e-12, rtol=0)


def test_entropy_of_infeasible_sequence_is_nan_and_batch_equals_items():
    p = random_problem(np.random.default_rng(3), 3, 5, 3, storage="banded", layout="batched", width=2, final="batched",
                       lengths=[5, 2, 4])
    p.em[1, :2] = -np.inf  # item 1: no path
    inp = torch_inputs(p)
    h = call("entropy", inp)
    assert torch.isnan(h[1]) and torch.isfinite(h[[0, 2]]).all()
    for b in range(3):
        n = p.length(b)
        one = kernel.entropy(inp["log_emissions"][b:b + 1, :n], Banded(inp["transitions"].log_probs[b:b + 1]),
                             inp["log_init"], log_final=inp["log_final"][b:b + 1])
        torch.testing.assert_close(one[0], h[b], atol=1e-12, rtol=0, equal_nan=True)


def torch_brute_entropy(inp, p: Problem):
    """The entropy from every feasible path's score, built with differentiable torch ops on the
    storage's own tensors (no kernel code): ``H = -sum_paths w log w``, ``w = softmax(scores)``."""
    em, lp, init, final = inp["log_emissions"], inp["transitions"].log_probs, inp["log_init"], inp["log_final"]
    out = []
    for b in range(p.batch):
        paths, scores, w = posterior_of_paths(p, b)
        terms = []
        for path in paths[w > 0]:
            n = len(path)
            s = (init if init.ndim == 1 else init[b])[path[0]] + em[b, 0, path[0]]
            if final is not None:
                s = s + (final if final.ndim == 1 else final[b])[path[-1]]
            for t in range(n - 1):
                step = lp if lp.ndim == 2 else (lp[b] if lp.ndim == 3 else lp[b, t])
                i, j = path[t], path[t + 1]
                if p.storage == "dense":
                    move = step[i, j]
                elif p.storage == "banded":
                    move = step[i, j - i]
                else:
                    slots = np.flatnonzero(p.item_pred(b)[j] == i)
                    move = torch.logsumexp(step[j, torch.as_tensor(slots)], 0)
                s = s + move + em[b, t + 1, j]
            terms.append(s)
        scores_t = torch.stack(terms)
        logw = scores_t.log_softmax(0)
        out.append(-(logw.exp() * logw).sum())
    return torch.stack(out)


@pytest.mark.parametrize("storage,layout", STRUCTURES)
def test_entropy_gradient_matches_bruteforce_autograd(storage, layout):
    for seed in range(2):
        p = random_problem(np.random.default_rng(seed), 2, 4, 3, storage=storage, layout=layout, width=2,
                           final="batched", lengths=[4, 3], init_batched=bool(seed), pred_batched=bool(seed))
        inp = torch_inputs(p, requires_grad=True)
        tensors = [inp["log_emissions"], inp["transitions"].log_probs, inp["log_init"], inp["log_final"]]
        h = call("entropy", inp)
        ref = torch_brute_entropy(inp, p)
        torch.testing.assert_close(h, ref, atol=1e-10, rtol=0)
        weights = torch.tensor([1.0, -0.7], dtype=torch.float64)
        got = torch.autograd.grad((h * weights).sum(), tensors)
        want = torch.autograd.grad((ref * weights).sum(), tensors, allow_unused=True)
        for name, g, w, x in zip(["log_emissions", "transitions", "log_init", "log_final"], got, want, tensors):
            w = torch.zeros_like(x) if w is None else w
            assert not torch.isnan(g).any(), name
            torch.testing.assert_close(g, w, atol=1e-9, rtol=0, msg=lambda m: f"d entropy / d {name}: {m}")


def test_entropy_gradient_ignores_infeasible_items():
    # item 1 has no path (NaN entropy); the gradient of the others' entropy is that of the feasible batch alone
    p = random_problem(np.random.default_rng(4), 3, 4, 3, storage="dense", layout="shared", final="batched",
                       lengths=[4, 3, 2])
    p.em[1, 1] = -np.inf
    inp = torch_inputs(p, requires_grad=True)
    h = call("entropy", inp)
    assert torch.isnan(h[1]) and torch.isfinite(h[[0, 2]]).all()
    lp, em = inp["transitions"].log_probs, inp["log_emissions"]
    g_lp, g_em = torch.autograd.grad(h[[0, 2]].sum(), (lp, em))
    assert not torch.isnan(g_lp).any() and not torch.isnan(g_em).any()
    assert (g_em[1] == 0).all()
    keep = [0, 2]
    sub = Problem(p.em[keep], p.trans, "dense", p.init, p.final[keep], p.lengths[keep])
    sub_inp = torch_inputs(sub, requires_grad=True)
    ref = torch_brute_entropy(sub_inp, sub)
    r_lp, r_em = torch.autograd.grad(ref.sum(), (sub_inp["transitions"].log_probs, sub_inp["log_emissions"]))
    torch.testing.assert_close(g_lp, r_lp, atol=1e-10, rtol=0)
    torch.testing.assert_close(g_em[keep], r_em, atol=1e-10, rtol=0)


# ---------------------------------------------------------------------------------------
# posterior sampling
# ---------------------------------------------------------------------------------------


def sampling_problem(storage: str, layout: str, seed: int = 0) -> Problem:
    return random_problem(np.random.default_rng(seed), 3, 4, 3, storage=storage, layout=layout, width=2, p_inf=0.15,
                          final="batched", lengths=[4, 2, 3], init_batched=True, pred_batched=True, scale=1.0)


def check_path_frequencies(p: Problem, samples: torch.Tensor) -> None:
    """Every item's sampled paths follow its brute-force posterior (chi-square); impossible paths never appear."""
    num = samples.shape[0]
    assert samples.shape == (num, p.batch, p.frames) and samples.dtype == torch.int64
    for b in range(p.batch):
        n = p.length(b)
        drawn = samples[:, b].numpy()
        assert (drawn[:, n:] == -1).all()
        paths, _, w = posterior_of_paths(p, b)
        if w is None:
            assert (drawn == -1).all()
            continue
        code = (drawn[:, :n] * p.states ** np.arange(n - 1, -1, -1)).sum(1)  # itertools.product order
        counts = np.bincount(code, minlength=len(paths))
        assert counts[w == 0].sum() == 0, f"item {b}: drew a path of posterior probability 0"
        expected = w * num
        big = expected >= 5
        f_obs = np.append(counts[big], counts[~big].sum())
        f_exp = np.append(expected[big], expected[~big].sum())
        if f_exp[-1] == 0:
            f_obs, f_exp = f_obs[:-1], f_exp[:-1]
        if len(f_obs) < 2:
            assert counts[big].sum() == num
            continue
        pvalue = stats.chisquare(f_obs, f_exp).pvalue
        assert pvalue > 1e-4, f"item {b}: chi-square p = {pvalue:.2e} over {len(f_obs)} bins"


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("storage,layout", STRUCTURES)
def test_sample_posterior_frequencies_match_bruteforce(storage, layout, backend):
    p = sampling_problem(storage, layout)
    assert any(posterior_of_paths(p, b)[2] is not None and (posterior_of_paths(p, b)[2] == 0).any() for b in range(3))
    g = torch.Generator().manual_seed(7)
    samples = call("sample_posterior", torch_inputs(p), 20000, generator=g, backend=backend)
    check_path_frequencies(p, samples)


def test_sample_posterior_infeasible_padding_invariance_and_float32():
    p = sampling_problem("sparse", "time_varying", seed=3)
    p.em[2, 1] = -np.inf  # item 2 (length 3): no path
    samples = call("sample_posterior", torch_inputs(p), 5000, generator=torch.Generator().manual_seed(1))
    check_path_frequencies(p, samples)
    assert (samples[:, 2] == -1).all()
    # padded frames / steps hold other garbage: the same draws with the same seed
    q = sampling_problem("sparse", "time_varying", seed=3)
    q.em[2, 1] = -np.inf
    q.em[1, 2:] = -5.0
    q.trans[1, 1:] = 3.0
    again = call("sample_posterior", torch_inputs(q), 5000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(samples, again)
    f32 = call("sample_posterior", torch_inputs(p, dtype=torch.float32), 5000, generator=torch.Generator().manual_seed(2))
    check_path_frequencies(p, f32)


def test_sample_posterior_differs_from_the_prior():
    # the observations force state 2 at frame 1: the posterior always visits it, the prior rarely
    k = 3
    e = torch.zeros(1, 3, k, dtype=torch.float64)
    e[0, 1, :2] = -math.inf
    trans = Dense(torch.tensor([[0.9, 0.05, 0.05]] * k, dtype=torch.float64).log())
    samples = kernel.sample_posterior(e, trans, torch.zeros(k, dtype=torch.float64), 200,
                                      generator=torch.Generator().manual_seed(0))
    assert (samples[:, 0, 1] == 2).all()


# ---------------------------------------------------------------------------------------
# k-best Viterbi
# ---------------------------------------------------------------------------------------


def check_viterbi_k(p: Problem, k: int) -> None:
    paths, scores = call("viterbi_k", torch_inputs(p), k)
    assert paths.shape == (p.batch, k, p.frames) and paths.dtype == torch.int64
    assert scores.shape == (p.batch, k) and scores.dtype == torch.float64
    for b in range(p.batch):
        n = p.length(b)
        all_paths, all_scores = enumerate_paths(p, b)
        order = np.argsort(-all_scores, kind="stable")
        want = np.full(k, -np.inf)
        top = all_scores[order[:k]]
        want[: len(top)] = np.where(np.isfinite(top), top, -np.inf)
        got = scores[b].numpy()
        np.testing.assert_allclose(got, want, atol=1e-10, rtol=1e-10)  # -inf == -inf
        em, trans, init, final, _ = p.item(b)
        seen = set()
        for r in range(k):
            path = paths[b, r].numpy()
            if got[r] == -np.inf:
                assert (path == -1).all(), f"item {b} rank {r}: no path left, got {path}"
                continue
            assert (path[n:] == -1).all() and ((path[:n] >= 0) & (path[:n] < p.states)).all()
            assert oracle.path_score(em, trans, init, path[:n], final) == pytest.approx(got[r], abs=1e-10)
            assert tuple(path[:n]) not in seen, f"item {b}: path {path} listed twice"
            seen.add(tuple(path[:n]))
            tied = [s for s in all_scores if abs(s - got[r]) <= 1e-9]
            if len(tied) == 1:
                assert tuple(path[:n]) == tuple(all_paths[order[r]])


@pytest.mark.parametrize("storage,layout", STRUCTURES)
@given(data=st.data())
def test_viterbi_k_matches_bruteforce(storage, layout, data):
    p = data.draw(problems(storage, layout))
    check_viterbi_k(p, data.draw(st.integers(1, p.states ** p.frames + 2)))


def test_viterbi_k_ties_and_more_than_all_paths():
    # every path scores the same: any order, but k distinct real paths; k > K^T pads with -inf / -1
    p = Problem(em=np.zeros((2, 3, 2)), trans=np.zeros((2, 2)), storage="dense", init=np.zeros(2), final=None,
                lengths=np.array([3, 2]))
    check_viterbi_k(p, 10)


@pytest.mark.parametrize("storage,layout", STRUCTURES)
def test_viterbi_k_one_equals_viterbi(storage, layout):
    for seed in range(4):
        p = random_problem(np.random.default_rng(seed), 3, 5, 3, storage=storage, layout=layout, width=2, p_inf=0.2,
                           final="batched", lengths=[5, 1, 3], pred_batched=True)
        inp = torch_inputs(p)
        paths, scores = call("viterbi_k", inp, 1)
        best_paths, best = call("viterbi", inp, backend="torch")
        assert torch.equal(scores[:, 0], best)
        assert torch.equal(paths[:, 0], best_paths)  # continuous random scores: no ties


def test_viterbi_k_batch_equals_items():
    p = random_problem(np.random.default_rng(5), 3, 5, 3, storage="banded", layout="time_varying", width=2,
                       final="batched", lengths=[5, 2, 4])
    inp = torch_inputs(p)
    paths, scores = call("viterbi_k", inp, 4)
    for b in range(3):
        n = p.length(b)
        one_paths, one_scores = kernel.viterbi_k(inp["log_emissions"][b:b + 1, :n],
                                                 Banded(inp["transitions"].log_probs[b:b + 1, :n - 1]), inp["log_init"], 4,
                                                 log_final=inp["log_final"][b:b + 1])
        torch.testing.assert_close(one_scores[0], scores[b], atol=1e-12, rtol=0)
        assert torch.equal(one_paths[0], paths[b, :, :n])


# ---------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------


def test_errors():
    e = torch.zeros(1, 3, 2, dtype=torch.float64)
    trans = Dense(torch.zeros(2, 2, dtype=torch.float64))
    init = torch.zeros(2, dtype=torch.float64)
    with pytest.raises(HMMValueError, match="k must be a positive int; got 0"):
        kernel.viterbi_k(e, trans, init, 0)
    with pytest.raises(HMMValueError, match="k must be a positive int; got 1.5"):
        kernel.viterbi_k(e, trans, init, 1.5)
    with pytest.raises(HMMValueError, match="num_samples must be a positive int; got 0"):
        kernel.sample_posterior(e, trans, init, 0)
    with pytest.raises(HMMValueError, match=r"log_emissions must be \(B, T, K\)"):
        kernel.entropy(e[0], trans, init)
    with pytest.raises(HMMValueError, match="backend must be one of"):
        kernel.sample_posterior(e, trans, init, 3, backend="cuda")


# ---------------------------------------------------------------------------------------
# the HMM conveniences
# ---------------------------------------------------------------------------------------


def test_hmm_methods_match_bruteforce():
    from pytorch_hmm import HMM
    from pytorch_hmm.emissions import Categorical

    dtype = torch.float64
    emit = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.3, 0.4, 0.3]], dtype=dtype)
    trans = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.25, 0.25, 0.5]], dtype=dtype)
    init = torch.tensor([0.5, 0.3, 0.2], dtype=dtype)
    model = HMM(Categorical(3, 3, probs=emit, dtype=dtype), transitions=trans, initial=init)
    x = torch.tensor([[0, 2, 1, 2], [1, 0, 0, 0]])
    lengths = torch.tensor([4, 2])
    em = emit.log().T[x].numpy()  # (B, T, K) by hand
    p = Problem(em, trans.log().numpy(), "dense", init.log().numpy(), None, lengths.numpy())
    h = model.entropy(x, lengths)
    np.testing.assert_allclose(h.detach().numpy(), [brute_entropy(p, b) for b in range(2)], atol=1e-10, rtol=0)
    paths, scores = model.viterbi_k(x, 3, lengths)
    for b in range(2):
        _, all_scores = enumerate_paths(p, b)
        np.testing.assert_allclose(scores[b].numpy(), np.sort(all_scores)[::-1][:3], atol=1e-10, rtol=0)
    samples = model.sample_posterior(x, 20000, lengths, generator=torch.Generator().manual_seed(3))
    check_path_frequencies(p, samples)


# ---------------------------------------------------------------------------------------
# long sequences and devices
# ---------------------------------------------------------------------------------------


def test_long_float32_sequences_stay_finite_and_close_to_float64():
    from pytorch_hmm.transitions import ergodic, left_to_right

    gen = torch.Generator().manual_seed(0)
    e = torch.randn(2, 10000, 6, generator=gen, dtype=torch.float64) * 2
    lengths = torch.tensor([10000, 7000])
    for trans in (ergodic(6, self_loop=0.9, dtype=torch.float64), left_to_right(6, skip=1, dtype=torch.float64)):
        init = torch.zeros(6, dtype=torch.float64)
        h64 = kernel.entropy(e, trans, init, lengths)
        h32 = kernel.entropy(e.float(), type(trans)(trans.log_probs.float()), init.float(), lengths)
        assert h32.dtype == torch.float32 and torch.isfinite(h32).all() and (h32 >= 0).all()
        torch.testing.assert_close(h32.double(), h64, rtol=1e-3, atol=1e-2)
        short = torch.tensor([1000, 700])  # the differentiable path (second-order autograd) on 1000 frames
        e32 = e[:, :1000].float().requires_grad_(True)
        h32 = kernel.entropy(e32, type(trans)(trans.log_probs.float()), init.float(), short)
        torch.testing.assert_close(h32.detach().double(), kernel.entropy(e[:, :1000], trans, init, short), rtol=1e-3, atol=1e-2)
        (grad,) = torch.autograd.grad(h32.sum(), e32)
        assert torch.isfinite(grad).all() and (grad[1, 700:] == 0).all()
        _, s64 = kernel.viterbi(e, trans, init, lengths)
        _, s32 = kernel.viterbi(e.float(), type(trans)(trans.log_probs.float()), init.float(), lengths, backend="torch")
        _, sk = kernel.viterbi_k(e.float(), type(trans)(trans.log_probs.float()), init.float(), 3, lengths)
        assert torch.isfinite(sk).all() and (sk[:, :-1] >= sk[:, 1:]).all()
        torch.testing.assert_close(sk[:, 0], s32, rtol=1e-6, atol=0)  # float32 sums over 10^4 frames
        torch.testing.assert_close(sk[:, 0].double(), s64, rtol=1e-3, atol=0)
        draws = kernel.sample_posterior(e.float(), type(trans)(trans.log_probs.float()), init.float(), 4, lengths,
                                        generator=torch.Generator().manual_seed(1))
        assert (draws[:, 0] >= 0).all() and (draws[:, 1, :7000] >= 0).all() and (draws[:, 1, 7000:] == -1).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("storage,layout", STRUCTURES)
def test_cuda_equals_cpu(storage, layout):
    p = sampling_problem(storage, layout, seed=1)
    cpu, gpu = torch_inputs(p), torch_inputs(p, device="cuda")
    torch.testing.assert_close(call("entropy", gpu).cpu(), call("entropy", cpu), atol=1e-10, rtol=0, equal_nan=True)
    paths, scores = call("viterbi_k", gpu, 5)
    ref_paths, ref_scores = call("viterbi_k", cpu, 5)
    torch.testing.assert_close(scores.cpu(), ref_scores, atol=1e-10, rtol=0)
    assert paths.device.type == "cuda"
    samples = call("sample_posterior", gpu, 20000, generator=torch.Generator(device="cuda").manual_seed(0))
    assert samples.device.type == "cuda"
    check_path_frequencies(p, samples.cpu())
