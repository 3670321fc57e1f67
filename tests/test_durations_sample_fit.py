"""Duration ``sample`` and ``fit`` from observed durations (pytorch_hmm.durations).

References, independent of the implementation:

* ``sample``: a chi-square test (scipy.stats.chisquare, fixed seeds, loose threshold) of the
  empirical frequencies against ``exp(log_probs())``, plus exact checks (support, zero-probability
  durations never drawn, shapes, reproducibility);
* ``fit``: closed forms (Poisson rate = mean excess over ``min_duration``, Gaussian mean and
  biased variance, Categorical normalised counts) on a support wide enough that the truncation
  is immaterial; on a narrow support, the exact condition of the truncated maximum-likelihood fit
  of an exponential family (model moments of the sufficient statistics == sample moments); for
  Gamma, a direct maximisation of the truncated likelihood with scipy.optimize; counts against
  ``np.add.at``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import optimize
from scipy import stats as sps
from scipy.special import logsumexp

from pytorch_hmm.durations import Categorical, Gamma, Gaussian, Neural, Poisson
from pytorch_hmm.errors import HMMDimensionError, HMMDtypeError, HMMValueError


def _chi_square_pvalue(draws: np.ndarray, probs: np.ndarray) -> float:
    """p-value of draws (durations 1..D) against probs (D,); bins expecting < 5 are pooled."""
    n = draws.size
    observed = np.bincount(draws - 1, minlength=probs.size).astype(float)
    expected = n * probs / probs.sum()  # float32 tables sum to 1 up to rounding
    big = expected >= 5
    f_obs, f_exp = list(observed[big]), list(expected[big])
    if (~big).any() and expected[~big].sum() > 0:
        f_obs.append(observed[~big].sum())
        f_exp.append(expected[~big].sum())
    return float(sps.chisquare(f_obs, f_exp).pvalue)


def _families():
    cat = torch.tensor([[0.0, 0.0, 0.5, 0.0, 0.3, 0.2, 0.0, 0.0], [0.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.4]])
    return {
        "poisson": Poisson(2, 25, rate=torch.tensor([2.5, 9.0]), min_duration=2),
        "gaussian": Gaussian(2, 25, mean=torch.tensor([6.0, 20.0]), std=torch.tensor([2.0, 6.0]), min_duration=3),
        "gamma": Gamma(2, 25, shape=torch.tensor([2.0, 6.0]), scale=torch.tensor([2.0, 1.5])),
        "categorical": Categorical(2, 8, probs=cat, min_duration=2),
    }


# ---------------------------------------------------------------------------------------
# sample
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["poisson", "gaussian", "gamma", "categorical"])
def test_sample_follows_the_kernel_pmf(family):
    dist = _families()[family]
    n = 20_000
    draws = dist.sample(n, torch.Generator().manual_seed(11))
    assert draws.shape == (n, 2) and draws.dtype == torch.int64
    assert int(draws.min()) >= dist.min_duration and int(draws.max()) <= dist.max_duration
    probs = dist.log_probs().detach().double().exp().numpy()
    for k in range(2):
        assert _chi_square_pvalue(draws[:, k].numpy(), probs[k]) > 1e-4
        one = dist.sample(n, torch.Generator().manual_seed(12 + k), state=k)
        assert one.shape == (n,)
        assert _chi_square_pvalue(one.numpy(), probs[k]) > 1e-4
        # a duration of probability 0 is never drawn
        never = np.flatnonzero(probs[k] == 0) + 1
        assert not np.isin(draws[:, k].numpy(), never).any() and not np.isin(one.numpy(), never).any()


def test_sample_rejects_a_wrong_pmf():
    """The chi-square check has power: draws shifted by one frame fail it."""
    dist = _families()["poisson"]
    draws = dist.sample(20_000, torch.Generator().manual_seed(11))[:, 1].numpy()
    probs = dist.log_probs().detach().double().exp().numpy()[1]
    assert _chi_square_pvalue(np.minimum(draws + 1, 25), probs) < 1e-6


def test_sample_neural_with_context():
    torch.manual_seed(0)
    dist = Neural(context_dim=3, max_duration=10, hidden=8, min_duration=2)
    context = torch.randn(2, 4, 3)  # (B, K, C)
    n = 20_000
    draws = dist.sample(n, torch.Generator().manual_seed(3), context=context)
    assert draws.shape == (n, 2, 4)
    assert int(draws.min()) >= 2 and int(draws.max()) <= 10
    probs = dist.log_probs(context).detach().double().exp().numpy()
    for b in range(2):
        for k in range(4):
            assert _chi_square_pvalue(draws[:, b, k].numpy(), probs[b, k]) > 1e-4
    assert dist.sample(5, state=3, context=context[0]).shape == (5,)
    assert dist.sample(5, state=3, context=context).shape == (5, 2)


def test_sample_is_reproducible():
    dist = _families()["gamma"]
    a = dist.sample(50, torch.Generator().manual_seed(5))
    b = dist.sample(50, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, dist.sample(50, torch.Generator().manual_seed(6)))


# ---------------------------------------------------------------------------------------
# fit: closed forms
# ---------------------------------------------------------------------------------------


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_fit_poisson_equals_the_mean_excess_on_a_wide_support():
    rng = _rng(1)
    d = np.stack([rng.poisson(3.0, 500) + 2, rng.poisson(11.0, 500) + 2], 1)  # (N, K), min_duration 2
    dist = Poisson(2, 200, min_duration=2).fit(torch.as_tensor(d))
    np.testing.assert_allclose(dist.rate.detach().double().numpy(), (d - 2).mean(0), rtol=1e-6)


def test_fit_gaussian_equals_mean_and_biased_variance_on_a_wide_support():
    rng = _rng(2)
    d = np.stack([np.rint(rng.normal(60, 8, 800)), np.rint(rng.normal(100, 15, 800))], 1).astype(int)
    dist = Gaussian(2, 200, dtype=torch.float64).fit(torch.as_tensor(d))
    np.testing.assert_allclose(dist.location.detach().numpy(), d.mean(0), rtol=1e-8)
    np.testing.assert_allclose(dist.std.detach().numpy(), d.std(0), rtol=1e-6)  # numpy's std is the biased (MLE) one


@pytest.mark.parametrize("family", ["poisson", "gaussian", "gamma"])
def test_fit_on_a_narrow_support_matches_the_moments_of_the_truncated_family(family):
    """Truncated ML of an exponential family: E_model[T(d)] == mean of T(d) over the data."""
    rng = _rng(3)
    d_max, d_min = 12, 2
    d = np.stack([rng.integers(d_min, d_max + 1, 300), np.clip(rng.poisson(9.0, 300), d_min, d_max)], 1)
    make = {"poisson": Poisson, "gaussian": Gaussian, "gamma": Gamma}[family]
    dist = make(2, d_max, min_duration=d_min, dtype=torch.float64).fit(torch.as_tensor(d))
    grid = np.arange(1, d_max + 1, dtype=float)
    feats = {"poisson": [grid - d_min], "gaussian": [grid, grid ** 2], "gamma": [np.log(grid), grid]}[family]
    probs = dist.probs().detach().numpy()
    for k in range(2):
        for f in feats:
            np.testing.assert_allclose(probs[k] @ f, f[d[:, k] - 1].mean(), rtol=1e-8)
    assert (probs[:, : d_min - 1] == 0).all()


def _truncated_gamma_nll(eta, d, d_min, d_max):
    grid = np.arange(d_min, d_max + 1, dtype=float)
    log_norm = logsumexp(eta[0] * np.log(grid) + eta[1] * grid)
    return -(eta[0] * np.log(d) + eta[1] * d).sum() + d.size * log_norm


def test_fit_gamma_equals_a_direct_maximisation_of_the_truncated_likelihood():
    rng = _rng(4)
    d_min, d_max = 2, 40
    d = np.clip(np.rint(rng.gamma(4.0, 2.5, 400)), d_min, d_max).astype(int)
    dist = Gamma(1, d_max, min_duration=d_min, dtype=torch.float64).fit(torch.as_tensor(d)[:, None])
    res = optimize.minimize(_truncated_gamma_nll, x0=np.array([0.0, -0.1]), args=(d.astype(float), d_min, d_max),
                            method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20_000})
    assert res.success
    ours = dist.natural.detach().numpy()[0]  # (shape - 1, -1 / scale)
    np.testing.assert_allclose(ours, res.x, rtol=1e-5)
    assert _truncated_gamma_nll(ours, d.astype(float), d_min, d_max) <= res.fun + 1e-9 * abs(res.fun)
    np.testing.assert_allclose([dist.shape.item(), dist.scale.item()], [res.x[0] + 1, -1 / res.x[1]], rtol=1e-5)


def test_fit_categorical_is_normalised_counts_with_pseudo_counts():
    d = torch.tensor([[2, 5], [2, 5], [3, 5], [5, 4]])
    dist = Categorical(2, 5, min_duration=2).fit(d)
    torch.testing.assert_close(dist.probs().double(), torch.tensor(
        [[0, 2 / 4, 1 / 4, 0, 1 / 4], [0, 0, 0, 1 / 4, 3 / 4]], dtype=torch.float64), rtol=1e-6, atol=1e-7)
    smoothed = Categorical(2, 5, min_duration=2, pseudo_count=0.5).fit(d)
    expected = (torch.tensor([[0, 2, 1, 0, 1], [0, 0, 0, 1, 3]], dtype=torch.float64) + 0.5 * (torch.arange(5) >= 1)) / 6
    torch.testing.assert_close(smoothed.probs().double(), expected, rtol=1e-6, atol=1e-7)


def test_fit_recovers_the_parameters_of_sampled_durations():
    for truth, names in [(Poisson(2, 60, rate=torch.tensor([4.0, 15.0]), min_duration=3), ["rate"]),
                         (Gaussian(2, 60, mean=torch.tensor([10.0, 30.0]), std=torch.tensor([3.0, 8.0])), ["location", "std"]),
                         (Gamma(2, 60, shape=torch.tensor([3.0, 8.0]), scale=torch.tensor([2.0, 2.5])), ["shape", "scale"])]:
        d = truth.sample(40_000, torch.Generator().manual_seed(8))
        est = type(truth)(2, 60, min_duration=truth.min_duration).fit(d)
        for name in names:
            torch.testing.assert_close(getattr(est, name).double(), getattr(truth, name).double(), rtol=0.05, atol=0)


# ---------------------------------------------------------------------------------------
# fit: layouts, weights, counts
# ---------------------------------------------------------------------------------------


def test_counts_equal_numpy_and_are_additive():
    rng = _rng(5)
    d = rng.integers(2, 9, (50, 3))
    w = rng.random((50, 3))
    dist = Poisson(3, 8, min_duration=2)
    expected = np.zeros((3, 8))
    np.add.at(expected, (np.broadcast_to(np.arange(3), d.shape), d - 1), w)
    counts = dist.duration_counts(torch.as_tensor(d), weights=torch.as_tensor(w))
    assert counts.dtype == torch.float64 and counts.shape == (3, 8)
    np.testing.assert_allclose(counts.numpy(), expected, rtol=1e-12)
    halves = dist.duration_counts(d[:20], weights=w[:20]) + dist.duration_counts(d[20:], weights=w[20:])
    torch.testing.assert_close(halves, counts, rtol=1e-12, atol=1e-12)


def test_states_layout_equals_columns_and_weights_equal_repetition():
    rng = _rng(6)
    d = rng.integers(1, 16, (40, 2))
    columns = Gamma(2, 15, dtype=torch.float64).fit(torch.as_tensor(d))
    pairs = Gamma(2, 15, dtype=torch.float64).fit(d.T.reshape(-1), states=np.repeat([0, 1], 40))
    torch.testing.assert_close(pairs.natural, columns.natural, rtol=1e-10, atol=1e-12)
    # weight 2 == the row twice; weight 0 == left out; (N,) weights apply to whole rows
    w = np.ones(40)
    w[:5], w[5:10] = 2, 0
    weighted = Gamma(2, 15, dtype=torch.float64).fit(torch.as_tensor(d), weights=torch.as_tensor(w))
    repeated = Gamma(2, 15, dtype=torch.float64).fit(torch.as_tensor(np.concatenate([d[:5], d[:5], d[10:]])))
    torch.testing.assert_close(weighted.natural, repeated.natural, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(weighted.natural, columns.natural)


def test_fit_keeps_states_without_observations_and_returns_self():
    dist = Poisson(3, 10, rate=torch.tensor([2.0, 5.0, 7.0]))
    out = dist.fit(torch.tensor([3, 4, 4]), states=torch.tensor([1, 1, 1]))
    assert out is dist
    assert dist.rate[0].item() == pytest.approx(2.0) and dist.rate[2].item() == pytest.approx(7.0)
    assert dist.mean()[1].item() == pytest.approx(11 / 3, rel=1e-5)  # truncated mean == sample mean
    empty = Poisson(2, 10, rate=torch.tensor([2.0, 5.0])).fit(torch.zeros(0, 2, dtype=torch.long))
    torch.testing.assert_close(empty.rate, torch.tensor([2.0, 5.0]))


def test_float_durations_holding_integers_are_accepted():
    a = Categorical(1, 6).fit(torch.tensor([[1.0], [4.0], [4.0]]))
    b = Categorical(1, 6).fit([[1], [4], [4]])
    torch.testing.assert_close(a.logits, b.logits)


# ---------------------------------------------------------------------------------------
# errors: one test per message
# ---------------------------------------------------------------------------------------


def test_error_durations_outside_the_support():
    dist = Poisson(2, 10, min_duration=3)
    with pytest.raises(HMMValueError, match=r"durations must lie in the support \[min_duration, max_duration\] = \[3, 10\]; got 2 \(state 1\)"):
        dist.fit(torch.tensor([[4, 5], [3, 2]]))
    with pytest.raises(HMMValueError, match=r"= \[3, 10\]; got 11 \(state 0\)"):
        dist.fit(torch.tensor([11, 4]), states=torch.tensor([0, 1]))


def test_error_durations_not_integers():
    dist = Gaussian(1, 10)
    with pytest.raises(HMMValueError, match=r"durations must be finite integers; got 2.5"):
        dist.fit(torch.tensor([[2.5]]))
    with pytest.raises(HMMValueError, match=r"durations must be finite integers; got nan"):
        dist.fit(torch.tensor([[float("nan")]]))
    with pytest.raises(HMMDtypeError, match=r"durations must hold integers \(an integer or integer-valued float tensor\); got torch.bool"):
        dist.fit(torch.ones(2, 1, dtype=torch.bool))
    with pytest.raises(HMMValueError, match=r"durations must be a tensor or array of numbers; got str"):
        dist.fit("3")


def test_error_durations_shape():
    dist = Gamma(3, 10)
    with pytest.raises(HMMDimensionError, match=r"durations must be \(N, K\) with K == 3 \(one column per state\), or \(N,\) with states \(N,\); got shape \(4, 2\)"):
        dist.fit(torch.ones(4, 2, dtype=torch.long))
    with pytest.raises(HMMDimensionError, match=r"got shape \(4,\)"):
        dist.fit(torch.ones(4, dtype=torch.long))


def test_error_states():
    dist = Categorical(3, 10)
    with pytest.raises(HMMDimensionError, match=r"durations and states must both be \(N,\) with one N; got durations \(4,\) and states \(3,\)"):
        dist.fit(torch.ones(4, dtype=torch.long), states=torch.zeros(3, dtype=torch.long))
    with pytest.raises(HMMDimensionError, match=r"got durations \(4, 3\) and states \(4, 3\)"):
        dist.fit(torch.ones(4, 3, dtype=torch.long), states=torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(HMMValueError, match=r"states must be in \[0, K\) = \[0, 3\); got values in \[-1, 3\]"):
        dist.fit(torch.ones(2, dtype=torch.long), states=torch.tensor([-1, 3]))
    with pytest.raises(HMMValueError, match=r"states must be finite integers; got 0.5"):
        dist.fit(torch.ones(2, dtype=torch.long), states=torch.tensor([0.5, 1.0]))


def test_error_weights():
    dist = Poisson(2, 10)
    d = torch.ones(3, 2, dtype=torch.long)
    with pytest.raises(HMMValueError, match=r"weights must be finite and >= 0; got -1.0"):
        dist.fit(d, weights=torch.tensor([1.0, -1.0, 1.0]))
    with pytest.raises(HMMValueError, match=r"weights must be finite and >= 0; got nan"):
        dist.fit(d, weights=torch.full((3, 2), float("nan")))
    with pytest.raises(HMMDimensionError, match=r"weights must have the durations' shape \(3, 2\) or \(N,\); got \(2,\)"):
        dist.fit(d, weights=torch.ones(2))
    with pytest.raises(HMMDimensionError, match=r"weights must have the durations' shape \(3,\); got \(3, 1\)"):
        dist.fit(torch.ones(3, dtype=torch.long), states=torch.zeros(3, dtype=torch.long), weights=torch.ones(3, 1))


def test_error_sample_arguments():
    dist = Poisson(2, 10)
    with pytest.raises(HMMValueError, match=r"num_samples must be a positive int; got 0"):
        dist.sample(0)
    with pytest.raises(HMMValueError, match=r"state must be an int in \[0, K\) = \[0, 2\); got 2"):
        dist.sample(3, state=2)
    with pytest.raises(HMMValueError, match=r"state must be an int in \[0, K\) = \[0, 2\); got True"):
        dist.sample(3, state=True)
    with pytest.raises(HMMValueError, match=r"Poisson durations take no context"):
        dist.sample(3, context=torch.zeros(2, 3))
    with pytest.raises(HMMDimensionError, match=r"Neural durations need a context"):
        Neural(3, 10).sample(3)


def test_error_neural_cannot_fit():
    dist = Neural(3, 10)
    with pytest.raises(HMMValueError, match=r"Neural durations cannot be fitted from observed durations in closed form"):
        dist.fit(torch.ones(4, 2, dtype=torch.long))
    with pytest.raises(HMMValueError, match=r"minimise -log_probs\(context\)\[states, durations - 1\]\.sum\(\)"):
        dist.duration_counts(torch.ones(4, 2, dtype=torch.long))
