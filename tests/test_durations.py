"""Duration distributions: support and normalisation, exact M-steps, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from pytorch_hmm.durations import Categorical, Gamma, Gaussian, Neural, Poisson
from pytorch_hmm.errors import HMMDimensionError, HMMValueError


def _truncated(pmf: np.ndarray, lo: int) -> np.ndarray:
    """Normalise ``pmf`` (values at d = 1..D) over ``lo..D``; 0 below."""
    p = np.where(np.arange(1, len(pmf) + 1) >= lo, pmf, 0.0)
    return p / p.sum()


def test_families_match_scipy_on_their_support():
    d = np.arange(1, 31)
    cases = [
        (Poisson(2, 30, rate=torch.tensor([3.0, 8.0]), min_duration=2),
         [sps.poisson(3.0, loc=2).pmf(d), sps.poisson(8.0, loc=2).pmf(d)]),
        (Gaussian(2, 30, mean=torch.tensor([5.0, 12.0]), std=torch.tensor([1.5, 4.0]), min_duration=2),
         [sps.norm(5, 1.5).pdf(d), sps.norm(12, 4).pdf(d)]),
        (Gamma(2, 30, shape=torch.tensor([2.0, 5.0]), scale=torch.tensor([2.0, 1.5]), min_duration=2),
         [sps.gamma(2.0, scale=2.0).pdf(d), sps.gamma(5.0, scale=1.5).pdf(d)]),
    ]
    for dist, pmfs in cases:
        expected = np.stack([_truncated(p, 2) for p in pmfs])
        got = dist.probs().double().detach().numpy()
        np.testing.assert_allclose(got, expected, atol=2e-7)
        assert (dist.log_probs()[:, 0] == -math.inf).all()
        np.testing.assert_allclose(dist.mean().detach().numpy(), expected @ d, rtol=1e-5)


@pytest.mark.parametrize("make, names", [
    (lambda: Poisson(2, 30, rate=torch.tensor([3.0, 8.0]), min_duration=2), ["rate"]),
    (lambda: Gaussian(2, 30, mean=torch.tensor([5.0, 12.0]), std=torch.tensor([1.5, 3.0])), ["location", "std"]),
    (lambda: Gamma(2, 30, shape=torch.tensor([2.0, 5.0]), scale=torch.tensor([2.0, 1.5])), ["shape", "scale"]),
])
def test_m_step_recovers_parameters_from_expected_counts(make, names):
    truth = make()
    est = type(truth)(2, 30, min_duration=truth.min_duration)  # default start, far from the truth
    stats = est.init_stats()
    est.accumulate(stats, 1000 * truth.probs().detach().double()[None])  # (B, K, D) counts
    est.m_step(stats)
    for name in names:
        torch.testing.assert_close(getattr(est, name).double(), getattr(truth, name).double(), rtol=1e-4, atol=0)


def _expected_log_likelihood(dist, counts):
    return float((counts * dist.log_probs().detach().double().clamp(min=-1e30)).sum())


@settings(max_examples=30)
@given(seed=st.integers(0, 10_000), family=st.sampled_from(["poisson", "gaussian", "gamma"]))
def test_m_step_maximises_the_expected_log_likelihood(seed, family):
    """No nearby parameter does better (the M-step is the exact maximiser), and it never does worse than the start."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.rand(3, 20, generator=g, dtype=torch.float64) ** 3 * 10
    make = {"poisson": lambda: Poisson(3, 20, min_duration=2), "gaussian": lambda: Gaussian(3, 20, min_duration=2),
            "gamma": lambda: Gamma(3, 20, min_duration=2)}[family]
    counts[:, 0] = 0.0
    dist = make()
    before = _expected_log_likelihood(dist, counts)
    dist.m_step(counts)
    best = _expected_log_likelihood(dist, counts)
    assert best >= before - 1e-9 * abs(before)
    with torch.no_grad():
        for _ in range(5):
            other = make()
            other.natural.copy_(dist.natural + 1e-2 * torch.randn(dist.natural.shape, generator=g) * dist.natural.abs())
            assert _expected_log_likelihood(other, counts) <= best + 1e-6 * abs(best)


def test_m_step_keeps_states_without_counts():
    dist = Poisson(2, 10, rate=torch.tensor([2.0, 5.0]))
    counts = torch.zeros(2, 10, dtype=torch.float64)
    counts[0, 3] = 5.0
    dist.m_step(counts)
    assert dist.rate[1].item() == pytest.approx(5.0)
    assert dist.rate[0].item() != pytest.approx(2.0)


def test_categorical_m_step_is_normalised_counts():
    dist = Categorical(2, 5, min_duration=2, pseudo_count=1.0)
    counts = torch.tensor([[0.0, 1.0, 2.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    before = dist.probs()[1].clone()
    dist.m_step(counts)
    expected = torch.tensor([0.0, 2.0, 3.0, 1.0, 4.0], dtype=torch.float64) / 10
    torch.testing.assert_close(dist.probs()[0].double(), expected, rtol=1e-6, atol=1e-7)
    # pseudo-counts alone for the state without data: uniform on the support
    torch.testing.assert_close(dist.probs()[1], before)
    assert dist.log_probs()[0, 0] == -math.inf


def test_accumulate_is_additive():
    dist = Categorical(2, 4)
    a, b = torch.rand(3, 2, 4), torch.rand(2, 2, 4)
    s1, s2 = dist.init_stats(), dist.init_stats()
    dist.accumulate(s1, a)
    dist.accumulate(s1, b)
    dist.accumulate(s2, torch.cat([a, b]))
    torch.testing.assert_close(s1, s2)


def test_neural_durations_learn_a_target_distribution():
    torch.manual_seed(0)
    dist = Neural(context_dim=3, max_duration=8, hidden=16, min_duration=2)
    context = torch.eye(3)
    target = torch.tensor([[0, 0.7, 0.3, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0.5, 0.5, 0, 0], [0, 0, 0, 0, 0, 0, 0.1, 0.9]])
    opt = torch.optim.Adam(dist.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss = -(target * dist.log_probs(context).clamp(min=-1e4)).sum()
        loss.backward()
        opt.step()
    torch.testing.assert_close(dist.probs(context), target, atol=0.03, rtol=0)
    assert dist.log_probs(context.expand(2, 3, 3)).shape == (2, 3, 8)


# --- errors ---

def test_error_bad_support():
    with pytest.raises(HMMValueError, match=r"min_duration must be an int in \[1, max_duration\] = \[1, 5\]; got 6"):
        Poisson(2, 5, min_duration=6)
    with pytest.raises(HMMValueError, match=r"max_duration must be a positive int; got 0"):
        Gamma(2, 0)
    with pytest.raises(HMMValueError, match=r"num_states must be a positive int; got 0"):
        Categorical(0, 5)


def test_error_bad_parameters():
    with pytest.raises(HMMValueError, match=r"rate must be finite and > 0; got \[1.0, -1.0\]"):
        Poisson(2, 5, rate=torch.tensor([1.0, -1.0]))
    with pytest.raises(HMMDimensionError, match=r"std must be a scalar or \(K,\) with K == 2; got shape \(3,\)"):
        Gaussian(2, 5, std=torch.ones(3))


def test_error_categorical_probs():
    with pytest.raises(HMMDimensionError, match=r"probs must be \(K, D\) == \(2, 5\); got \(2, 4\)"):
        Categorical(2, 5, probs=torch.full((2, 4), 0.25))
    with pytest.raises(HMMValueError, match=r"rows summing to 1"):
        Categorical(2, 2, probs=torch.tensor([[0.5, 0.4], [0.5, 0.5]]))


def test_error_context():
    with pytest.raises(HMMValueError, match=r"Poisson durations take no context; got a tensor of shape \(2, 3\)"):
        Poisson(2, 5).log_probs(torch.zeros(2, 3))
    with pytest.raises(HMMDimensionError, match=r"Neural durations need a context of shape \(K, C\) or \(B, K, C\) with C == 4; got None"):
        Neural(4, 5).log_probs()
    with pytest.raises(HMMValueError, match=r"Neural durations have no closed-form M-step"):
        Neural(4, 5).m_step(torch.zeros(2, 5))


def test_error_counts_shape():
    dist = Poisson(2, 5)
    with pytest.raises(HMMDimensionError, match=r"counts must be \(B, K, D\) or \(K, D\) with \(K, D\) == \(2, 5\); got \(2, 4\)"):
        dist.accumulate(dist.init_stats(), torch.zeros(2, 4))
