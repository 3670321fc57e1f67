"""Neural emissions: log-likelihood and hybrid modes, priors, gradient training, errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from pytorch_hmm import kernel
from pytorch_hmm.emissions.neural import Neural
from pytorch_hmm.errors import HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from pytorch_hmm.transitions import Dense


class Fixed(nn.Module):
    """Returns a stored tensor (or whatever ``fn`` makes of x), for exact comparisons."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def mlp(d=3, k=4, dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, k)).to(dtype)


# ----------------------------------------------------------------------------- modes
def test_log_likelihood_mode_uses_output_as_is():
    net = mlp()
    em = Neural(net, num_states=4)
    x = torch.randn(2, 5, 3)
    out = em.log_prob(x)
    assert torch.equal(out, net(x)) and torch.equal(em(x), out)
    assert em.log_priors is None and em.mode == "log_likelihood"
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_hybrid_equals_log_softmax_minus_log_prior_by_hand():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(2, 6, 3)) * 3.0
    counts = np.array([50.0, 30.0, 20.0])
    # no parameters to take a dtype from: the priors buffer starts float32, .double() casts it
    em = Neural(Fixed(lambda x: torch.from_numpy(scores)), num_states=3, mode="hybrid").double()
    assert em.log_priors.dtype == torch.float64
    em.set_priors_from_counts(torch.tensor([50, 30, 20]))  # integer counts, e.g. from bincount
    out = em.log_prob(torch.zeros(2, 6, 1, dtype=torch.float64)).numpy()
    m = scores.max(-1, keepdims=True)
    log_post = scores - m - np.log(np.exp(scores - m).sum(-1, keepdims=True))
    by_hand = log_post - np.log(counts / counts.sum())
    np.testing.assert_allclose(out, by_hand, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(em.log_priors.numpy(), np.log([0.5, 0.3, 0.2]), rtol=1e-12)
    # the scaled likelihoods are posterior / prior
    np.testing.assert_allclose(np.exp(out), np.exp(log_post) / (counts / counts.sum()), rtol=1e-10)


def test_hybrid_priors_default_pseudocount_and_assignment():
    scores = torch.randn(1, 4, 3, dtype=torch.float64)
    em = Neural(Fixed(lambda x: scores), num_states=3, mode="hybrid").double()
    x = torch.zeros(1, 4, 2, dtype=torch.float64)
    # default: uniform priors, scaled likelihood = log posterior + log K
    torch.testing.assert_close(em.log_prob(x), torch.log_softmax(scores, -1) + math.log(3))
    em.set_priors_from_counts(torch.tensor([0.0, 1.0, 3.0]), pseudocount=1.0)
    torch.testing.assert_close(em.log_priors, torch.log(torch.tensor([1.0, 2.0, 4.0]) / 7.0), check_dtype=False)
    em.log_priors = torch.tensor([-1.0, -2.0, -0.5], dtype=torch.float64)
    assert em._buffers["log_priors"] is em.log_priors  # still a buffer, in the state dict
    torch.testing.assert_close(em.log_prob(x), torch.log_softmax(scores, -1) - torch.tensor([-1.0, -2.0, -0.5], dtype=torch.float64))
    # num_states from the priors
    em2 = Neural(Fixed(lambda x: scores), mode="hybrid", log_priors=torch.log(torch.tensor([0.2, 0.3, 0.5])))
    assert em2.num_states == 3
    # the gradient does not reach the priors buffer
    assert not em2.log_priors.requires_grad


def test_any_k_without_num_states_and_token_inputs():
    em = Neural(nn.Embedding(10, 5))
    x = torch.randint(0, 10, (3, 7))
    assert em.log_prob(x).shape == (3, 7, 5)
    assert em.num_states is None


def test_state_dict_round_trip_and_dtype():
    em = Neural(mlp(), num_states=4, mode="hybrid")
    em.set_priors_from_counts(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert set(em.state_dict()) == {"module.0.weight", "module.0.bias", "module.2.weight", "module.2.bias", "log_priors"}
    buf = io.BytesIO()
    torch.save(em.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(123)
    other = Neural(nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 4)), num_states=4, mode="hybrid")
    x = torch.randn(2, 5, 3)
    assert not torch.allclose(other.log_prob(x), em.log_prob(x))
    other.load_state_dict(torch.load(buf))
    torch.testing.assert_close(other.log_prob(x), em.log_prob(x))
    d = em.to(torch.float64)
    assert d.log_priors.dtype == torch.float64 and d.module[0].weight.dtype == torch.float64
    assert d.log_prob(x.double()).dtype == torch.float64
    d.log_priors = torch.zeros(4, dtype=torch.float32)  # cast to the buffer's dtype
    assert d.log_priors.dtype == torch.float64


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_equals_cuda():
    em = Neural(mlp(), num_states=4, mode="hybrid")
    em.set_priors_from_counts(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    x = torch.randn(2, 5, 3)
    cpu = em.log_prob(x)
    gpu = em.to("cuda").log_prob(x.cuda())
    assert gpu.device.type == "cuda" and em.log_priors.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-5, atol=1e-5)


def test_no_closed_form_em():
    em = Neural(mlp(), num_states=4)
    with pytest.raises(NotImplementedError, match="Neural has no closed-form EM statistics; train it by gradient"):
        em.init_stats()
    with pytest.raises(NotImplementedError, match="train it by gradient"):
        em.accumulate({}, torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(NotImplementedError, match="train it by gradient"):
        em.m_step({})


# ----------------------------------------------------------------------------- training
TRANS = torch.log(torch.tensor([[0.9, 0.1], [0.15, 0.85]]))
INIT = torch.log(torch.tensor([0.5, 0.5]))


def sample_data(n, t, gen):
    """2-state sticky chain; 2-D XOR features: state 0 in quadrants 1 and 3, state 1 in 2 and 4."""
    z = torch.empty(n, t, dtype=torch.long)
    z[:, 0] = torch.randint(0, 2, (n,), generator=gen)
    for i in range(1, t):
        stay = torch.rand(n, generator=gen) < torch.exp(TRANS)[z[:, i - 1], z[:, i - 1]]
        z[:, i] = torch.where(stay, z[:, i - 1], 1 - z[:, i - 1])
    s1 = torch.where(torch.rand(n, t, generator=gen) < 0.5, -1.0, 1.0)
    s2 = s1 * torch.where(z == 0, 1.0, -1.0)
    mag = 0.3 + torch.rand(n, t, 2, generator=gen)
    return mag * torch.stack([s1, s2], -1), z


def path_score(log_e, z, lengths):
    """log p-score of the given state path (emissions + transitions + init) over valid frames."""
    mask = torch.arange(z.shape[1])[None] < lengths[:, None]
    e = log_e.gather(-1, z.clamp(min=0)[..., None])[..., 0].masked_fill(~mask, 0.0).sum(1)
    tr = TRANS[z[:, :-1].clamp(min=0), z[:, 1:].clamp(min=0)].masked_fill(~mask[:, 1:], 0.0).sum(1)
    return e + tr + INIT[z[:, 0]]


def test_mlp_trains_by_adam_through_the_kernel():
    """Discriminative (CRF-style) training: maximise log p(z | x) = score(z) - log Z."""
    gen = torch.Generator().manual_seed(0)
    x, z = sample_data(12, 30, gen)
    lengths = torch.tensor([30, 25, 30, 18, 30, 30, 22, 30, 30, 27, 30, 30])
    mask = torch.arange(30)[None] < lengths[:, None]
    x = x.masked_fill(~mask[..., None], float(1e6))  # garbage at padded frames must not matter
    torch.manual_seed(0)
    em = Neural(nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2)), num_states=2)
    opt = torch.optim.Adam(em.parameters(), lr=0.05)

    def loss_fn():
        log_e = em.log_prob(x)
        return (kernel.log_partition(log_e, Dense(TRANS), INIT, lengths) - path_score(log_e, z, lengths)).mean()

    start = loss_fn().item()
    for _ in range(80):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    end = loss_fn().item()
    assert np.isfinite(end) and end < 0.3 * start
    paths, _ = kernel.viterbi(em.log_prob(x).detach(), Dense(TRANS), INIT, lengths)
    acc = (paths[mask] == z[mask]).float().mean().item()
    assert acc > 0.9


def test_hybrid_pipeline_frame_training_then_decoding():
    """Classic hybrid NN/HMM: frame cross-entropy, priors from state counts, Viterbi on scaled likelihoods."""
    gen = torch.Generator().manual_seed(1)
    x, z = sample_data(10, 40, gen)
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
    em = Neural(net, num_states=2, mode="hybrid")
    em.set_priors_from_counts(torch.bincount(z.reshape(-1), minlength=2))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    ce0 = nn.functional.cross_entropy(net(x).reshape(-1, 2), z.reshape(-1)).item()
    for _ in range(150):
        opt.zero_grad()
        ce = nn.functional.cross_entropy(net(x).reshape(-1, 2), z.reshape(-1))
        ce.backward()
        opt.step()
    assert ce.item() < 0.5 * ce0
    paths, _ = kernel.viterbi(em.log_prob(x).detach(), Dense(TRANS), INIT)
    assert (paths == z).float().mean().item() > 0.9


# ----------------------------------------------------------------------------- errors
def test_constructor_errors():
    with pytest.raises(HMMValueError, match="module must be a torch.nn.Module; got function"):
        Neural(lambda x: x)
    with pytest.raises(HMMValueError, match="mode must be 'log_likelihood' or 'hybrid'; got 'posterior'"):
        Neural(mlp(), mode="posterior")
    with pytest.raises(HMMValueError, match="num_states must be a positive int; got 0"):
        Neural(mlp(), num_states=0)
    with pytest.raises(HMMValueError, match="log_priors only apply in mode='hybrid'"):
        Neural(mlp(), num_states=4, log_priors=torch.zeros(4))
    with pytest.raises(HMMValueError, match="mode='hybrid' needs num_states or log_priors"):
        Neural(mlp(), mode="hybrid")


def test_log_priors_errors():
    em = Neural(mlp(), num_states=4, mode="hybrid")
    with pytest.raises(HMMDtypeError, match=r"log_priors must be a floating-point tensor \(K,\) = \(4,\); got torch.int64"):
        em.log_priors = torch.zeros(4, dtype=torch.long)
    with pytest.raises(HMMDimensionError, match=r"log_priors must be \(K,\) = \(4,\); got \(3,\)"):
        em.log_priors = torch.zeros(3)
    with pytest.raises(HMMValueError, match="log_priors must be finite"):
        em.log_priors = torch.tensor([0.0, -math.inf, 0.0, 0.0])
    with pytest.raises(HMMTypeError, match=r"counts must be a tensor \(K,\) = \(4,\); got list"):
        em.set_priors_from_counts([1, 2, 3, 4])
    with pytest.raises(HMMDimensionError, match=r"counts must be \(K,\) = \(4,\); got \(2, 2\)"):
        em.set_priors_from_counts(torch.ones(2, 2))
    with pytest.raises(HMMValueError, match=r"counts \(plus pseudocount\) must be non-negative and not NaN"):
        em.set_priors_from_counts(torch.tensor([1.0, -1.0, 2.0, 3.0]))
    with pytest.raises(HMMValueError, match=r"state 2 has count 0 \(use pseudocount > 0\)"):
        em.set_priors_from_counts(torch.tensor([1, 5, 0, 3]))
    torch.testing.assert_close(em.log_priors, torch.full((4,), -math.log(4)))  # unchanged by the failures


def test_input_and_output_errors():
    em = Neural(mlp(), num_states=4)
    with pytest.raises(HMMTypeError, match="x must be a torch.Tensor"):
        em.log_prob(np.zeros((1, 2, 3)))
    with pytest.raises(HMMDimensionError, match=r"x must be \(B, T, ...\) \(batch first, then frames\); got \(3,\)"):
        em.log_prob(torch.zeros(3))
    with pytest.raises(HMMValueError, match="x must not contain NaN"):
        em.log_prob(torch.full((1, 2, 3), float("nan")))
    with pytest.raises(HMMDimensionError, match=r"must return \(B, T, K\) = \(2, 5, 3\) scores for x \(2, 5, 3\); got \(2, 5, 4\)") as e:
        Neural(mlp(), num_states=3).log_prob(torch.randn(2, 5, 3))
    assert e.value.expected_shape == (2, 5, 3) and e.value.actual_shape == (2, 5, 4)
    assert "output layer size" in e.value.suggestion
    with pytest.raises(HMMDimensionError, match=r"\(B, T, K\) = \(2, 5, K\) scores for x \(2, 5, 3\); got \(10, 4\)"):
        Neural(Fixed(lambda x: torch.zeros(10, 4))).log_prob(torch.randn(2, 5, 3))
    with pytest.raises(HMMValueError, match="the wrapped module must return a tensor \\(B, T, K\\); got tuple"):
        Neural(nn.LSTM(3, 4, batch_first=True)).log_prob(torch.randn(2, 5, 3))
    with pytest.raises(HMMDtypeError, match="the wrapped module must return floating-point scores; got torch.int64"):
        Neural(Fixed(lambda x: torch.zeros(2, 5, 4, dtype=torch.long))).log_prob(torch.randn(2, 5, 3))
    with pytest.raises(HMMValueError, match="the wrapped module returned NaN scores"):
        Neural(Fixed(lambda x: torch.full((2, 5, 4), float("nan")))).log_prob(torch.randn(2, 5, 3))
