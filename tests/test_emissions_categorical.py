"""Categorical emissions: hmmlearn reference, EM statistics, padding, gradient training, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from pytorch_hmm import kernel
from pytorch_hmm.emissions.categorical import Categorical
from pytorch_hmm.errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from pytorch_hmm.transitions import Dense


def random_probs(k, s, rng, zeros=False):
    p = rng.random((k, s)) + 0.05
    if zeros:
        p[0, -1] = 0.0  # an impossible symbol for state 0
    return p / p.sum(1, keepdims=True)


def random_posteriors(n, k, rng):
    g = rng.gamma(0.5, size=(n, k)) + 1e-3
    return g / g.sum(1, keepdims=True)


def pad_int(seqs, fill=-1):
    out = np.full((len(seqs), max(map(len, seqs))), fill, dtype=np.int64)
    for b, s in enumerate(seqs):
        out[b, : len(s)] = s
    return torch.from_numpy(out)


def pad_float(seqs, fill=float("nan")):
    out = np.full((len(seqs), max(map(len, seqs))) + seqs[0].shape[1:], fill)
    for b, s in enumerate(seqs):
        out[b, : len(s)] = s
    return torch.from_numpy(out)


def mask_of(lengths, t):
    return torch.arange(t)[None, :] < torch.as_tensor(lengths)[:, None]


# ----------------------------------------------------------------------------- hmmlearn reference
def hmmlearn_model(probs, prior=1.0):
    hmm = pytest.importorskip("hmmlearn.hmm")  # only these two tests need hmmlearn
    k, s = probs.shape
    h = hmm.CategoricalHMM(n_components=k, n_features=s, params="e", init_params="", emissionprob_prior=prior)
    h.startprob_ = np.full(k, 1.0 / k)
    h.transmat_ = np.full((k, k), 1.0 / k)
    h.emissionprob_ = probs.copy()
    return h


def test_log_prob_matches_hmmlearn():
    rng = np.random.default_rng(0)
    k, s = 3, 5
    probs = random_probs(k, s, rng, zeros=True)
    seqs = [rng.integers(0, s, size=n) for n in (7, 3, 11)]
    em = Categorical(k, s, probs=torch.from_numpy(probs), dtype=torch.float64)
    x = pad_int(seqs)
    mask = mask_of([len(q) for q in seqs], x.shape[1])
    out = em.log_prob(x, mask)
    h = hmmlearn_model(probs)
    with np.errstate(divide="ignore"):
        for b, q in enumerate(seqs):
            ref = h._compute_log_likelihood(q[:, None])
            np.testing.assert_allclose(out[b, : len(q)].detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    assert (out[~mask] == 0).all()
    # without a mask on an unpadded batch
    full = pad_int([seqs[0]])
    np.testing.assert_allclose(em.log_prob(full)[0].detach().numpy(), out[0, : len(seqs[0])].detach().numpy())


@pytest.mark.parametrize("prior", [1.0, 1.5, 0.7, "array"])
def test_one_m_step_matches_hmmlearn(prior):
    rng = np.random.default_rng(1)
    k, s = 3, 6
    probs = random_probs(k, s, rng)
    if prior == "array":
        prior = rng.uniform(0.5, 3.0, size=(k, s))
    # symbol s-1 never occurs: with prior <= 1 its probability becomes 0 in every state
    seqs = [rng.integers(0, s - 1, size=n) for n in (9, 4, 13, 1)]
    posts = [random_posteriors(len(q), k, rng) for q in seqs]

    h = hmmlearn_model(probs, prior)
    stats = h._initialize_sufficient_statistics()
    for q, g in zip(seqs, posts):
        lattice = h._compute_log_likelihood(q[:, None])
        h._accumulate_sufficient_statistics(stats, q[:, None], lattice, g, np.zeros_like(g), np.zeros_like(g))
    h._do_mstep(stats)

    pc = prior - 1.0 if np.isscalar(prior) else torch.from_numpy(prior - 1.0)
    em = Categorical(k, s, probs=torch.from_numpy(probs), pseudocount=pc, dtype=torch.float64)
    ours = em.init_stats()
    x = pad_int(seqs)
    mask = mask_of([len(q) for q in seqs], x.shape[1])
    em.accumulate(ours, x, pad_float(posts), mask)
    np.testing.assert_allclose(ours["counts"].numpy(), stats["obs"], rtol=1e-12, atol=1e-14)
    em.m_step(ours)
    np.testing.assert_allclose(em.probs.detach().numpy(), h.emissionprob_, rtol=1e-6, atol=1e-12)
    assert torch.allclose(em.probs.sum(-1), torch.ones(k, dtype=torch.float64))


# ----------------------------------------------------------------------------- statistics
@given(
    b=st.integers(2, 4),
    t=st.integers(2, 7),
    k=st.integers(1, 4),
    s=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
    cut=st.integers(1, 6),
)
def test_statistics_are_additive(b, t, k, s, seed, cut):
    g = torch.Generator().manual_seed(seed)
    em = Categorical(k, s, dtype=torch.float64)
    x = torch.randint(0, s, (b, t), generator=g)
    post = torch.softmax(torch.randn(b, t, k, generator=g, dtype=torch.float64), -1)
    mask = torch.rand(b, t, generator=g) < 0.8
    whole = em.init_stats()
    em.accumulate(whole, x, post, mask)
    # split by sequences
    halves = em.init_stats()
    em.accumulate(halves, x[:1], post[:1], mask[:1])
    em.accumulate(halves, x[1:], post[1:], mask[1:])
    torch.testing.assert_close(halves["counts"], whole["counts"], rtol=1e-12, atol=1e-12)
    # split by frames
    c = min(cut, t - 1)
    halves = em.init_stats()
    em.accumulate(halves, x[:, :c], post[:, :c], mask[:, :c])
    em.accumulate(halves, x[:, c:], post[:, c:], mask[:, c:])
    torch.testing.assert_close(halves["counts"], whole["counts"], rtol=1e-12, atol=1e-12)
    # total mass = posterior mass over valid frames
    torch.testing.assert_close(whole["counts"].sum(), (post * mask[..., None]).sum(), rtol=1e-12, atol=1e-12)


def test_padded_frames_are_ignored():
    rng = np.random.default_rng(2)
    k, s = 2, 4
    seqs = [rng.integers(0, s, size=n) for n in (5, 2, 8)]
    posts = [random_posteriors(len(q), k, rng) for q in seqs]
    em = Categorical(k, s, dtype=torch.float64)
    padded = em.init_stats()
    x = pad_int(seqs, fill=-7)  # out of range at padded frames
    mask = mask_of([len(q) for q in seqs], x.shape[1])
    em.accumulate(padded, x, pad_float(posts, fill=float("nan")), mask)  # NaN posteriors there too
    items = em.init_stats()
    for q, p in zip(seqs, posts):
        em.accumulate(items, torch.from_numpy(q)[None], torch.from_numpy(p)[None], None)
    torch.testing.assert_close(padded["counts"], items["counts"], rtol=1e-12, atol=1e-12)
    # log_prob: valid frames equal item by item, padded frames 0, gradient finite
    out = em.log_prob(x, mask)
    for b, q in enumerate(seqs):
        torch.testing.assert_close(out[b, : len(q)], em.log_prob(torch.from_numpy(q)[None])[0])
    out.sum().backward()
    assert torch.isfinite(em.logits.grad).all()
    # initialize ignores padded frames too
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    em.initialize(x, mask, generator=g1)
    a = em.probs.detach().clone()
    em.initialize(torch.from_numpy(np.concatenate(seqs))[None], None, generator=g2)
    torch.testing.assert_close(em.probs.detach(), a)


def test_empty_state_keeps_its_row_and_pseudocount_smooths():
    em = Categorical(2, 3, probs=torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]], dtype=torch.float64), dtype=torch.float64)
    stats = {"counts": torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 6.0]], dtype=torch.float64)}
    em.m_step(stats)
    torch.testing.assert_close(em.probs.detach(), torch.tensor([[0.2, 0.3, 0.5], [0.25, 0.0, 0.75]], dtype=torch.float64))
    em2 = Categorical(2, 3, pseudocount=1.0, dtype=torch.float64)
    em2.m_step(stats)
    torch.testing.assert_close(em2.probs.detach(), torch.tensor([[1 / 3] * 3, [3 / 11, 1 / 11, 7 / 11]], dtype=torch.float64))


# ----------------------------------------------------------------------------- with the chain kernel
def sample_hmm(init, trans, probs, n, t, rng):
    k, s = probs.shape
    z = np.empty((n, t), dtype=np.int64)
    z[:, 0] = rng.choice(k, size=n, p=init)
    for i in range(1, t):
        u = rng.random(n)[:, None]
        z[:, i] = (np.cumsum(trans[z[:, i - 1]], 1) < u).sum(1)
    u = rng.random((n, t))[..., None]
    x = (np.cumsum(probs[z], -1) < u).sum(-1)
    return torch.from_numpy(np.minimum(x, s - 1))


TRUE_INIT = np.array([0.6, 0.4])
TRUE_TRANS = np.array([[0.9, 0.1], [0.2, 0.8]])
TRUE_PROBS = np.array([[0.7, 0.2, 0.05, 0.05], [0.05, 0.05, 0.3, 0.6]])


def chain_inputs(dtype):
    return Dense(torch.log(torch.tensor(TRUE_TRANS, dtype=dtype))), torch.log(torch.tensor(TRUE_INIT, dtype=dtype))


def test_gradient_of_log_partition_is_counts_minus_expected():
    """d log Z / d logits[k, s] = counts[k, s] - N_k probs[k, s] (counts from kernel posteriors)."""
    rng = np.random.default_rng(3)
    x = sample_hmm(TRUE_INIT, TRUE_TRANS, TRUE_PROBS, 4, 12, rng)
    lengths = torch.tensor([12, 7, 10, 3])
    mask = mask_of(lengths, 12)
    x = x.masked_fill(~mask, -1)
    trans, init = chain_inputs(torch.float64)
    em = Categorical(2, 4, dtype=torch.float64)
    kernel.log_partition(em.log_prob(x, mask), trans, init, lengths).sum().backward()
    stats = em.init_stats()
    post = kernel.posteriors(em.log_prob(x, mask).detach(), trans, init, lengths)
    em.accumulate(stats, x, post, mask)
    c = stats["counts"]
    expected = c - c.sum(-1, keepdim=True) * em.probs.detach()
    torch.testing.assert_close(em.logits.grad, expected, rtol=1e-9, atol=1e-10)


def test_em_never_decreases_likelihood_and_recovers_parameters():
    rng = np.random.default_rng(4)
    x = sample_hmm(TRUE_INIT, TRUE_TRANS, TRUE_PROBS, 40, 50, rng)
    trans, init = chain_inputs(torch.float64)
    em = Categorical(2, 4, dtype=torch.float64)
    em.initialize(x, None, generator=torch.Generator().manual_seed(0))
    prev = -np.inf
    for _ in range(30):
        with torch.no_grad():
            log_z, post = kernel.forward_backward(em.log_prob(x), trans, init)
        ll = log_z.sum().item()
        assert ll >= prev - 1e-8
        prev = ll
        stats = em.init_stats()
        em.accumulate(stats, x, post, None)
        em.m_step(stats)
    # states are identified by the known transitions; 2000 frames give about +-0.05
    np.testing.assert_allclose(em.probs.detach().numpy(), TRUE_PROBS, atol=0.08)


def test_gradient_training_reduces_nll():
    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    x = sample_hmm(TRUE_INIT, TRUE_TRANS, TRUE_PROBS, 16, 40, rng)
    trans, init = chain_inputs(torch.float32)
    em = Categorical(2, 4)
    opt = torch.optim.Adam(em.parameters(), lr=0.1)

    def nll():
        return -kernel.log_partition(em.log_prob(x), trans, init).mean()

    start = nll().item()
    for _ in range(60):
        opt.zero_grad()
        loss = nll()
        loss.backward()
        opt.step()
    end = nll().item()
    true = Categorical(2, 4, probs=torch.tensor(TRUE_PROBS, dtype=torch.float32))
    best = -kernel.log_partition(true.log_prob(x), trans, init).mean().item()
    assert np.isfinite(end) and end < start - 0.1 * abs(start - best)
    assert end < best + 0.02 * abs(best)
    torch.testing.assert_close(em.probs.sum(-1), torch.ones(2))


# ----------------------------------------------------------------------------- module behaviour
def test_probs_property_state_dict_and_dtype():
    p = torch.tensor([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]])
    em = Categorical(2, 3, probs=p)
    torch.testing.assert_close(em.probs.detach(), p)
    assert isinstance(em.logits, torch.nn.Parameter) and em.logits.shape == (2, 3)
    em.probs = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], dtype=torch.float64)
    assert em.logits.dtype == torch.float32
    torch.testing.assert_close(em.probs.detach(), torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]))
    buf = io.BytesIO()
    torch.save(em.state_dict(), buf)
    buf.seek(0)
    other = Categorical(2, 3)
    other.load_state_dict(torch.load(buf))
    torch.testing.assert_close(other.probs, em.probs)
    x = torch.tensor([[0, 1, 2, 0]])
    torch.testing.assert_close(other.log_prob(x), em.log_prob(x))
    d = em.to(torch.float64)
    assert d.logits.dtype == torch.float64 and d.pseudocount.dtype == torch.float64
    assert d.log_prob(x).dtype == torch.float64 and d.init_stats()["counts"].dtype == torch.float64
    assert torch.equal(em(x), em.log_prob(x))


def test_sample_frequencies_and_padding():
    em = Categorical(2, 3, probs=torch.tensor([[0.1, 0.2, 0.7], [0.6, 0.4, 0.0]]))
    states = torch.tensor([[0] * 4000 + [-1], [1] * 4000 + [-1]])
    a = em.sample(states, generator=torch.Generator().manual_seed(0))
    b = em.sample(states, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == states.shape and a.dtype == torch.int64
    assert (a[:, -1] == -1).all()
    f0 = torch.bincount(a[0, :-1], minlength=3) / 4000.0
    f1 = torch.bincount(a[1, :-1], minlength=3) / 4000.0
    torch.testing.assert_close(f0, torch.tensor([0.1, 0.2, 0.7]), atol=0.03, rtol=0)
    torch.testing.assert_close(f1, torch.tensor([0.6, 0.4, 0.0]), atol=0.03, rtol=0)


def test_initialize_uses_data_frequencies():
    x = torch.tensor([[0] * 60 + [1] * 30 + [2] * 9])  # symbol 3 unseen
    em = Categorical(3, 4, dtype=torch.float64)
    em.initialize(x, torch.ones_like(x, dtype=torch.bool), generator=torch.Generator().manual_seed(1))
    p = em.probs.detach()
    assert (p > 0).all()
    assert (p[:, 0] > p[:, 1]).all() and (p[:, 1] > p[:, 2]).all() and (p[:, 2] > p[:, 3]).all()
    assert not torch.allclose(p[0], p[1])  # states differ


def test_needs_init_flag():
    assert Categorical(2, 3).needs_init
    assert not Categorical(2, 3, probs=torch.full((2, 3), 1 / 3)).needs_init
    em = Categorical(2, 3)
    em.initialize(torch.tensor([[0, 1, 2]]), None)
    assert not em.needs_init
    em = Categorical(2, 3)
    em.m_step({"counts": torch.ones(2, 3)})
    assert not em.needs_init


# ----------------------------------------------------------------------------- errors
def test_constructor_errors():
    with pytest.raises(HMMValueError, match="num_states must be a positive int; got 0"):
        Categorical(0, 3)
    with pytest.raises(HMMValueError, match="num_symbols must be a positive int; got 2.5"):
        Categorical(2, 2.5)
    with pytest.raises(HMMDtypeError, match="dtype must be torch.float32 or torch.float64; got torch.int64"):
        Categorical(2, 3, dtype=torch.int64)
    with pytest.raises(HMMValueError, match="pseudocount must be finite"):
        Categorical(2, 3, pseudocount=float("nan"))
    with pytest.raises(HMMDimensionError, match=r"pseudocount must be a float or broadcastable to \(K, S\) = \(2, 3\)"):
        Categorical(2, 3, pseudocount=torch.zeros(4))


def test_probs_errors():
    with pytest.raises(HMMTypeError, match="probs must be a float torch.Tensor"):
        Categorical(2, 3, probs=[[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    with pytest.raises(HMMDtypeError, match="probs must be a floating-point tensor; got torch.int64"):
        Categorical(2, 3, probs=torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(HMMDimensionError, match=r"probs must be \(K, S\) = \(2, 3\) \(states x symbols\); got \(3, 2\)") as e:
        Categorical(2, 3, probs=torch.full((3, 2), 0.5))
    assert e.value.expected_shape == (2, 3) and e.value.actual_shape == (3, 2)
    with pytest.raises(HMMValueError, match="probs must not contain NaN"):
        Categorical(2, 2, probs=torch.tensor([[0.5, float("nan")], [0.5, 0.5]]))
    with pytest.raises(HMMValueError, match="probs must be non-negative; found an entry -0.2"):
        Categorical(2, 2, probs=torch.tensor([[1.2, -0.2], [0.5, 0.5]]))
    em = Categorical(2, 2)
    with pytest.raises(HMMValueError, match=r"each row of probs must sum to 1 \(within 0.0001\); row 1 sums to 0.9"):
        em.probs = torch.tensor([[0.5, 0.5], [0.5, 0.4]])


def test_x_errors():
    em = Categorical(2, 4)
    with pytest.raises(HMMTypeError, match="x must be an integer torch.Tensor"):
        em.log_prob([[0, 1]])
    with pytest.raises(HMMDtypeError, match=r"x must be an integer tensor \(B, T\) of symbols in \[0, 4\); got dtype torch.float32"):
        em.log_prob(torch.zeros(1, 3))
    with pytest.raises(HMMDimensionError, match=r"x must be \(B, T\) integer symbols; got \(3,\). add a batch dimension"):
        em.log_prob(torch.zeros(3, dtype=torch.long))
    with pytest.raises(HMMDeviceError, match="x is on meta but the Categorical parameters are on cpu"):
        em.log_prob(torch.zeros(1, 3, dtype=torch.long, device="meta"))
    with pytest.raises(HMMValueError, match=r"x must hold symbols in \[0, 4\) at valid frames; got values from -1 to 5 outside that range \(pass mask="):
        em.log_prob(torch.tensor([[0, -1, 5, 3]]))
    with pytest.raises(HMMValueError, match=r"got values from 4 to 4 outside that range$"):
        em.accumulate(em.init_stats(), torch.tensor([[4, -1]]), torch.full((1, 2, 2), 0.5), torch.tensor([[True, False]]))
    with pytest.raises(HMMDtypeError, match=r"mask must be a bool tensor \(B, T\); got torch.int64"):
        em.log_prob(torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(HMMDimensionError, match=r"mask must be \(B, T\) = \(1, 3\) like x; got \(3,\)"):
        em.log_prob(torch.zeros(1, 3, dtype=torch.long), torch.ones(3, dtype=torch.bool))


def test_statistics_errors():
    em = Categorical(2, 3)
    x = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(HMMDtypeError, match="posteriors must be a floating-point tensor; got torch.int64"):
        em.accumulate(em.init_stats(), x, torch.ones(1, 4, 2, dtype=torch.long), None)
    with pytest.raises(HMMDimensionError, match=r"posteriors must be \(B, T, K\) = \(1, 4, 2\) to match x; got \(1, 4, 3\)"):
        em.accumulate(em.init_stats(), x, torch.ones(1, 4, 3), None)
    for bad in [float("nan"), float("inf"), -1.0]:
        with pytest.raises(HMMValueError, match="posteriors must be finite and non-negative at valid frames"):
            em.accumulate(em.init_stats(), x, torch.full((1, 4, 2), bad), None)
    with pytest.raises(HMMValueError, match="stats must be the dict returned by Categorical.init_stats"):
        em.m_step({"obs": torch.zeros(2, 3)})
    with pytest.raises(HMMDimensionError, match=r"stats\['counts'\] must be \(K, S\) = \(2, 3\); got \(3, 2\)"):
        em.accumulate({"counts": torch.zeros(3, 2)}, x, torch.ones(1, 4, 2), None)
    with pytest.raises(HMMValueError, match=r"stats\['counts'\] must not contain NaN"):
        em.m_step({"counts": torch.full((2, 3), float("nan"))})


def test_sample_errors():
    em = Categorical(2, 3)
    with pytest.raises(HMMDtypeError, match="states must be an integer tensor; got torch.float32"):
        em.sample(torch.zeros(3))
    with pytest.raises(HMMValueError, match=r"states must hold state indices in \[0, 2\); got 2"):
        em.sample(torch.tensor([0, 2]))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_equals_cuda():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 5, (3, 9), generator=g)
    mask = torch.rand(3, 9, generator=g) < 0.8
    x = x.masked_fill(~mask, -1)
    post = torch.softmax(torch.randn(3, 9, 4, generator=g, dtype=torch.float64), -1)
    cpu = Categorical(4, 5, dtype=torch.float64, pseudocount=0.5)
    gpu = Categorical(4, 5, dtype=torch.float64, pseudocount=0.5).to("cuda")
    gpu.load_state_dict(cpu.state_dict())
    torch.testing.assert_close(gpu.log_prob(x.cuda(), mask.cuda()).cpu(), cpu.log_prob(x, mask))
    sc, sg = cpu.init_stats(), gpu.init_stats()
    cpu.accumulate(sc, x, post, mask)
    gpu.accumulate(sg, x.cuda(), post.cuda(), mask.cuda())
    assert sg["counts"].device.type == "cuda"
    torch.testing.assert_close(sg["counts"].cpu(), sc["counts"])
    cpu.m_step(sc)
    gpu.m_step(sg)
    torch.testing.assert_close(gpu.probs.cpu(), cpu.probs)
    gpu.initialize(x.cuda(), mask.cuda(), generator=torch.Generator("cuda").manual_seed(0))
    assert gpu.logits.device.type == "cuda" and torch.isfinite(gpu.logits).all()
    s = gpu.sample(torch.tensor([[0, 1, -1]], device="cuda"), generator=torch.Generator("cuda").manual_seed(0))
    assert s.device.type == "cuda" and s[0, -1] == -1


def test_loaded_parameters_are_not_reinitialised():
    a = Categorical(2, 3, probs=torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.05, 0.9]]))
    b = Categorical(2, 3)
    assert b.needs_init
    b.load_state_dict(a.state_dict())
    assert not b.needs_init
    torch.testing.assert_close(b.probs, a.probs)
