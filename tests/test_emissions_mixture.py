"""Gaussian-mixture emissions: densities and M-step against scipy / hmmlearn's GMMHMM,
additivity, padding, EM and gradient training, splitting, initialisation and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytorch_hmm.emissions.mixture import GaussianMixture
from pytorch_hmm.errors import HMMDimensionError, HMMValueError

TYPES = ["diag", "full"]
K, M, D, T = 3, 2, 3, 40


pytestmark = pytest.mark.usefixtures("one_thread")


def params(ct, seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(M) * 2, size=K)
    means = rng.normal(size=(K, M, D)) * 2
    a = rng.normal(size=(K, M, D, D))
    full = a @ np.swapaxes(a, -1, -2) / D + 0.5 * np.eye(D)
    covars = rng.uniform(0.3, 2.0, (K, M, D)) if ct == "diag" else full
    mats = np.einsum("kmd,de->kmde", covars, np.eye(D)) if ct == "diag" else full
    return weights, means, covars, mats


def data(seed=1, b=2, t=T):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, t, D)) * 2 + 0.5
    post = rng.dirichlet(np.ones(K), size=(b, t))
    return torch.tensor(x), torch.tensor(post)


def model(ct, seed=0, **kw):
    w, mu, cv, _ = params(ct, seed)
    return GaussianMixture(K, M, D, ct, weights=w, means=mu, covars=cv, dtype=torch.float64, **kw)


def stats_of(g, x, post, mask=None):
    s = g.init_stats()
    g.accumulate(s, x, post, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask)
    return s


def hmmlearn_model(ct, seed, **priors):
    hmm = pytest.importorskip("hmmlearn.hmm")
    w, mu, cv, _ = params(ct, seed)
    h = hmm.GMMHMM(K, M, covariance_type=ct, init_params="", params="mcw", **priors)
    h.startprob_ = np.full(K, 1.0 / K)
    h.transmat_ = np.full((K, K), 1.0 / K)
    h.weights_, h.means_, h.covars_ = w, mu, cv
    h.n_features = D
    h._check()  # fills in and broadcasts the prior hyper-parameters
    return h


# --------------------------------------------------------------------------- densities


@pytest.mark.parametrize("ct", TYPES)
def test_log_prob_matches_scipy(ct):
    stats = pytest.importorskip("scipy.stats")
    special = pytest.importorskip("scipy.special")
    w, mu, cv, mats = params(ct)
    g = model(ct)
    x, _ = data()
    got = g.log_prob(x).detach().numpy()
    assert got.shape == (2, T, K)
    for k in range(K):
        comps = [np.log(w[k, m]) + stats.multivariate_normal(mu[k, m], mats[k, m]).logpdf(x.numpy()) for m in range(M)]
        np.testing.assert_allclose(got[..., k], special.logsumexp(np.stack(comps), axis=0), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ct", TYPES)
def test_log_prob_matches_hmmlearn(ct):
    h = hmmlearn_model(ct, seed=2)
    g = model(ct, seed=2)
    x, _ = data(seed=3, b=1)
    np.testing.assert_allclose(g.log_prob(x)[0].detach().numpy(), h._compute_log_likelihood(x[0].numpy()), rtol=1e-10)


@pytest.mark.parametrize("ct", TYPES)
def test_parameter_round_trip(ct):
    w, mu, cv, _ = params(ct)
    g = model(ct)
    np.testing.assert_allclose(g.weights.detach().numpy(), w, rtol=1e-12)
    np.testing.assert_allclose(g.means.detach().numpy(), mu, rtol=1e-12)
    np.testing.assert_allclose(g.covars.detach().numpy(), cv, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ct", TYPES)
def test_float32_close_to_float64(ct):
    w, mu, cv, _ = params(ct)
    g32 = GaussianMixture(K, M, D, ct, weights=w, means=mu, covars=cv)
    x, _ = data()
    np.testing.assert_allclose(g32.log_prob(x.float()).detach().numpy(), model(ct).log_prob(x).detach().numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ct", TYPES)
def test_state_dict_round_trip(ct):
    g = model(ct, means_prior=0.2)
    fresh = GaussianMixture(K, M, D, ct, dtype=torch.float64)
    fresh.load_state_dict(g.state_dict())
    x, _ = data()
    torch.testing.assert_close(fresh.log_prob(x), g.log_prob(x))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("ct", TYPES)
def test_cpu_equals_cuda(ct):
    g = model(ct)
    x, post = data()
    cpu_lp = g.log_prob(x)
    cpu_stats = stats_of(g, x, post)
    gc = model(ct).to("cuda")
    torch.testing.assert_close(gc.log_prob(x.cuda()).cpu(), cpu_lp)
    s = stats_of(gc, x.cuda(), post.cuda())
    for key in s:
        torch.testing.assert_close(s[key].cpu(), cpu_stats[key])
    gc.m_step(s)
    gc.split(torch.Generator("cuda").manual_seed(0))
    gc.initialize(x.cuda(), torch.ones(x.shape[:2], dtype=torch.bool, device="cuda"), torch.Generator("cuda").manual_seed(0))


def test_log_prob_mask_ignores_garbage_padding():
    g = model("full")
    x, _ = data()
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[0, 30:] = False
    bad = x.clone()
    bad[0, 30:] = float("inf")
    out = g.log_prob(bad, mask)
    assert (out[~mask] == 0).all()
    torch.testing.assert_close(out[mask], g.log_prob(x)[mask])


def test_needs_init_flag():
    assert GaussianMixture(K, M, D).needs_init
    g = model("diag")
    assert not g.needs_init
    fresh = GaussianMixture(K, M, D, dtype=torch.float64)
    fresh.load_state_dict(g.state_dict())
    assert not fresh.needs_init


# --------------------------------------------------------------------------------- EM


PRIORS = {
    "default": {"diag": {}, "full": {}},
    "informative": {
        "diag": dict(weights_prior=1.5, means_prior=0.3, means_weight=0.7, covars_prior=0.1, covars_weight=0.3),
        "full": dict(weights_prior=1.5, means_prior=0.3, means_weight=0.7, covars_prior=0.2 * np.eye(D), covars_weight=2.0),
    },
}


@pytest.mark.parametrize("prior", list(PRIORS))
@pytest.mark.parametrize("ct", TYPES)
def test_m_step_matches_hmmlearn(ct, prior):
    h = hmmlearn_model(ct, 4, **PRIORS[prior][ct])
    g = model(ct, 4, **PRIORS[prior][ct])
    x, post = data(seed=5, b=1, t=90)
    X, P = x[0].numpy(), post[0].numpy()
    hs = h._initialize_sufficient_statistics()
    h._accumulate_sufficient_statistics(hs, X, h._compute_log_likelihood(X), P, None, None)
    h._do_mstep(hs)
    g.m_step(stats_of(g, x, post))
    np.testing.assert_allclose(g.weights.detach().numpy(), h.weights_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(g.means.detach().numpy(), h.means_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(g.covars.detach().numpy(), h.covars_, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("ct", TYPES)
def test_statistics_are_additive(ct):
    g = model(ct)
    x, post = data(b=3)
    whole = stats_of(g, x, post)
    first, second = stats_of(g, x[:, :11], post[:, :11]), stats_of(g, x[:, 11:], post[:, 11:])
    for key in whole:
        torch.testing.assert_close(first[key] + second[key], whole[key])


@pytest.mark.parametrize("ct", TYPES)
def test_padded_frames_do_not_change_statistics(ct):
    g = model(ct)
    x, post = data(b=2)
    padded_x, padded_p = x.clone(), post.clone()
    padded_x[0, 19:] = float("nan")
    padded_p[0, 19:] = -5.0
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[0, 19:] = False
    got = stats_of(g, padded_x, padded_p, mask)
    want = stats_of(g, x[1:], post[1:])
    extra = stats_of(g, x[:1, :19], post[:1, :19])
    for key in got:
        torch.testing.assert_close(got[key], want[key] + extra[key])


@pytest.mark.parametrize("ct", TYPES)
def test_em_never_decreases_likelihood(ct):
    """One state, unit posteriors: EM on a GMM (hmmlearn's update is a generalised EM step)."""
    rng = np.random.default_rng(6)
    pts = np.concatenate([rng.normal(size=(150, D)) * 0.5 - 2, rng.normal(size=(150, D)) + 2])
    x = torch.tensor(pts)[None]
    ones = torch.ones(1, 300, 1, dtype=torch.float64)
    g = GaussianMixture(1, 2, D, ct, dtype=torch.float64)
    g.initialize(x, torch.ones(1, 300, dtype=torch.bool), torch.Generator().manual_seed(0))
    lls = []
    for _ in range(8):
        lls.append(float(g.log_prob(x).sum().detach()))
        g.m_step(stats_of(g, x, ones))
    assert all(b >= a - 1e-9 for a, b in zip(lls, lls[1:]))
    got = g.means[0].detach()
    assert torch.cdist(got, torch.tensor([[-2.0] * D, [2.0] * D], dtype=torch.float64)).min(0).values.max() < 0.3


@pytest.mark.parametrize("ct", TYPES)
def test_float32_m_step_accurate_far_from_origin(ct):
    gen = torch.Generator().manual_seed(0)
    x64 = torch.randn(1, 20000, D, dtype=torch.float64, generator=gen) + 500.0
    x64[0, 10000:] += 4.0
    g = GaussianMixture(1, 2, D, ct, means=np.full((1, 2, D), 500.0) + [[[0.0], [4.0]]], min_covar=0.0)
    g.m_step(stats_of(g, x64.float(), torch.ones(1, 20000, 1)))
    ref = GaussianMixture(1, 2, D, ct, means=np.full((1, 2, D), 500.0) + [[[0.0], [4.0]]], min_covar=0.0, dtype=torch.float64)
    ref.m_step(stats_of(ref, x64, torch.ones(1, 20000, 1, dtype=torch.float64)))
    torch.testing.assert_close(g.covars.detach().double(), ref.covars.detach(), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(g.means.detach().double(), ref.means.detach(), rtol=1e-6, atol=0)


def test_dead_component_keeps_parameters():
    w, mu, cv, _ = params("full")
    g = model("full")
    x, post = data()
    s = stats_of(g, x, post)
    for key in ("post_mix", "obs", "obs_outer"):
        s[key][1, 0] = 0
    s["post"][1] = s["post_mix"][1].sum()
    g.m_step(s)
    np.testing.assert_allclose(g.means[1, 0].detach().numpy(), mu[1, 0])
    np.testing.assert_allclose(g.covars[1, 0].detach().numpy(), cv[1, 0], rtol=1e-10)
    assert float(g.weights[1, 0].detach()) == 0.0
    assert torch.isfinite(g.log_prob(x)).all()


@pytest.mark.parametrize("ct", TYPES)
def test_gradient_training_moves_means_to_data(ct):
    torch.manual_seed(0)
    centres = torch.tensor([[3.0, 0, 0], [0, -3, 0], [0, 0, 3]])
    labels = torch.arange(150) % K
    x = (centres[labels] + torch.randn(150, D) * 0.5 + torch.randn(150, 1).sign() * 0.8)[None]
    onehot = torch.nn.functional.one_hot(labels, K).float()[None]
    g = GaussianMixture(K, M, D, ct)
    with torch.no_grad():
        g.loc.add_(0.1 * torch.randn(K, M, D))
    opt = torch.optim.Adam(g.parameters(), lr=0.05)

    def loss_fn():
        return -(onehot * g.log_prob(x)).sum() / 150

    data_means = torch.stack([x[0, labels == k].mean(0) for k in range(K)])

    def state_means():
        return (g.weights[..., None] * g.means).sum(1)

    first = float(loss_fn().detach())
    start = float((state_means() - data_means).norm().detach())
    for _ in range(200):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    assert float(loss_fn().detach()) < first - 1.0
    assert float((state_means() - data_means).norm().detach()) < 0.1 * start


@pytest.mark.parametrize("ct", TYPES)
def test_split_doubles_components(ct):
    w, mu, cv, mats = params(ct)
    g = model(ct, weights_prior=np.arange(1, 1 + K * M, dtype=float).reshape(K, M))
    g.split()
    assert g.num_mixtures == 2 * M
    assert g.means.shape == (K, 2 * M, D) and g.weights.shape == (K, 2 * M)
    np.testing.assert_allclose(g.weights.detach().numpy(), np.repeat(w / 2, 2, axis=1), rtol=1e-12)
    np.testing.assert_allclose(g.covars.detach().numpy(), np.repeat(cv, 2, axis=1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g.weights_prior.numpy(), np.repeat(np.arange(1, 1 + K * M).reshape(K, M), 2, axis=1))
    for k in range(K):
        for m in range(M):
            evals, evecs = np.linalg.eigh(mats[k, m])
            offset = 0.2 * np.sqrt(evals[-1]) * evecs[:, -1]
            plus, minus = g.means[k, 2 * m].detach().numpy(), g.means[k, 2 * m + 1].detach().numpy()
            np.testing.assert_allclose((plus + minus) / 2, mu[k, m], atol=1e-12)
            half = (plus - minus) / 2
            np.testing.assert_allclose(np.abs(half @ evecs[:, -1]), np.linalg.norm(offset), rtol=1e-8)
            np.testing.assert_allclose(np.linalg.norm(half), np.linalg.norm(offset), rtol=1e-8)
    fresh = GaussianMixture(K, 2 * M, D, ct, dtype=torch.float64)
    fresh.load_state_dict(g.state_dict())
    x, post = data()
    torch.testing.assert_close(fresh.log_prob(x), g.log_prob(x))
    g.m_step(stats_of(g, x, post))  # the split model trains


def test_split_breaks_variance_ties_with_generator():
    g = GaussianMixture(20, 1, 4, "diag", dtype=torch.float64)
    g.split()
    dims = (g.means[:, 0] != 0).double().argmax(-1)
    assert dims.tolist() == [0] * 20
    g = GaussianMixture(20, 1, 4, "diag", dtype=torch.float64)
    g.split(torch.Generator().manual_seed(0))
    dims = (g.means[:, 0] != 0).double().argmax(-1)
    assert len(set(dims.tolist())) > 1
    torch.testing.assert_close(g.means[:, 0].abs().sum(-1), torch.full((20,), 0.2, dtype=torch.float64))


def test_initialize_finds_clusters():
    rng = np.random.default_rng(9)
    centres = np.array([[0.0, 0, 0], [8, 0, 0], [0, 8, 0], [8, 8, 0], [0, 0, 8], [8, 0, 8]])
    pts = centres[rng.integers(0, 6, size=600)] + rng.normal(size=(600, D)) * 0.3
    x = torch.tensor(pts, dtype=torch.float32).reshape(2, 300, D)
    g = GaussianMixture(K, M, D, "full", min_covar=1e-3)
    g.initialize(x, torch.ones(2, 300, dtype=torch.bool), torch.Generator().manual_seed(0))
    got = g.means.detach().reshape(-1, D).numpy()
    for c in centres:
        assert np.linalg.norm(got - c, axis=1).min() < 0.3
    torch.testing.assert_close(g.weights.detach(), torch.full((K, M), 0.5))
    cv = np.cov(pts.T) + 1e-3 * np.eye(D)
    np.testing.assert_allclose(g.covars.detach().numpy(), np.broadcast_to(cv, (K, M, D, D)), rtol=1e-4, atol=1e-5)


def test_initialize_small_cluster_draws_means():
    x = torch.tensor([[[0.0, 0, 0]] * 20 + [[50.0, 50, 50]]])
    x = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    g = GaussianMixture(2, 3, D, "diag")
    g.initialize(x, torch.ones(1, 21, dtype=torch.bool), torch.Generator().manual_seed(1))
    assert torch.isfinite(g.means).all()
    assert torch.isfinite(g.log_prob(x)).all()


def test_sample_mean():
    w, mu, _, _ = params("full")
    g = model("full")
    s = g.sample(torch.full((4, 5000), 2), torch.Generator().manual_seed(0))
    assert s.shape == (4, 5000, D)
    np.testing.assert_allclose(s.reshape(-1, D).mean(0).numpy(), (w[2][:, None] * mu[2]).sum(0), atol=0.05)


# ------------------------------------------------------------------------------ errors


def test_error_covariance_type():
    with pytest.raises(HMMValueError, match=r"covariance_type must be 'diag', 'full', 'spherical' or 'tied' for GaussianMixture; got 'banded'"):
        GaussianMixture(K, M, D, "banded")


def test_error_num_mixtures():
    with pytest.raises(HMMValueError, match=r"num_mixtures must be a positive int; got 0"):
        GaussianMixture(K, 0, D)


def test_error_weights_shape():
    with pytest.raises(HMMDimensionError, match=r"weights must be \(K, M\) == \(3, 2\); got \(2, 3\)"):
        GaussianMixture(K, M, D, weights=np.full((2, 3), 0.5))


def test_error_weights_sum():
    w = np.full((K, M), 0.5)
    w[1] = [0.5, 0.4]
    with pytest.raises(HMMValueError, match=r"weights must sum to 1 over the mixtures of each state; state 1 sums to 0.9"):
        GaussianMixture(K, M, D, weights=w)


def test_error_weights_negative():
    with pytest.raises(HMMValueError, match="weights must be finite and non-negative"):
        GaussianMixture(K, M, D, weights=np.tile([1.5, -0.5], (K, 1)))


def test_error_means_shape():
    with pytest.raises(HMMDimensionError, match=r"means must be \(K, M, D\) == \(3, 2, 3\); got \(3, 3\)"):
        GaussianMixture(K, M, D, means=np.zeros((K, D)))


def test_error_diag_covars_shape():
    with pytest.raises(HMMDimensionError, match=r"covars for covariance_type='diag' must be \(K, M, D\) == \(3, 2, 3\); got \(3, 3\)"):
        GaussianMixture(K, M, D, covars=np.ones((K, D)))


def test_error_full_covars_shape():
    with pytest.raises(HMMDimensionError, match=r"covars for covariance_type='full' must be \(K, M, D, D\) == \(3, 2, 3, 3\); got \(3, 3, 3\)"):
        GaussianMixture(K, M, D, "full", covars=np.ones((K, D, D)))


def test_error_non_positive_variance():
    with pytest.raises(HMMValueError, match=r"covars must be positive for covariance_type='diag'; got minimum 0"):
        GaussianMixture(K, M, D, covars=np.zeros((K, M, D)))


def test_error_full_covars_not_positive_definite():
    cv = np.tile(np.eye(D), (K, M, 1, 1))
    cv[2, 1] = np.ones((D, D))
    with pytest.raises(HMMValueError, match=r"must be symmetric positive-definite; matrix \[2, 1\] is not positive-definite"):
        GaussianMixture(K, M, D, "full", covars=cv)


def test_error_feature_dimension():
    with pytest.raises(HMMDimensionError, match=r"x must be \(B, T, D\) with D == 3; got \(2, 50, 12\)"):
        GaussianMixture(K, M, D).log_prob(torch.zeros(2, 50, 12))


def test_error_stats_missing_key():
    g = GaussianMixture(K, M, D, "full")
    with pytest.raises(HMMValueError, match=r"stats must come from GaussianMixture.init_stats\(\); missing \['obs_outer'\]"):
        g.m_step(GaussianMixture(K, M, D, "diag").init_stats())


def test_error_initialize_too_few_frames():
    with pytest.raises(HMMValueError, match=r"initialize needs at least K == 3 valid frames; got 2"):
        GaussianMixture(K, M, D).initialize(torch.zeros(1, 2, D), torch.ones(1, 2, dtype=torch.bool))


def test_sample_padding_gives_nan_rows():
    em = GaussianMixture(2, 2, 1, means=torch.tensor([[[-10.0], [-9.0]], [[9.0], [10.0]]]), covars=torch.full((2, 2, 1), 1e-4))
    out = em.sample(torch.tensor([1, -1, 0]), generator=torch.Generator().manual_seed(0))
    assert torch.isnan(out[1]).all() and out[0].item() > 8.0 and out[2].item() < -8.0
    with pytest.raises(HMMValueError, match=r"states must be in \[0, 2\) or -1 \(padding\); got 5"):
        em.sample(torch.tensor([5]))


def test_diag_density_recomputes_only_the_coarse_components_in_float64():
    """float32 expansion error is bounded per component: a component with a tiny variance far
    from the data is redone in float64, the others stay float32, all within 1e-2 nats."""
    from pytorch_hmm.emissions.covariance import _coarse_components, diag_log_density

    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 4, generator=g) * 3
    means = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, -1.0, 0.5, 0.0], [20.0, 0.0, 0.0, 5.0]])
    log_var = torch.log(torch.tensor([[1.0] * 4, [2.0] * 4, [1e-5] * 4]))
    ref = means.mean(0)
    coarse = _coarse_components(x - ref, means - ref, torch.exp(-log_var))
    assert coarse.tolist() == [False, False, True]
    got = diag_log_density(x, means, log_var)
    x64, m64, v64 = x.double(), means.double(), log_var.double().exp()
    exact = -0.5 * (4 * math.log(2 * math.pi) + v64.log().sum(-1) + (((x64[:, None] - m64) ** 2) / v64).sum(-1))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), exact, rtol=1e-6, atol=1e-2)


@pytest.mark.parametrize("ct", TYPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_without_gradients_matches_scipy_with_far_components(ct, dtype):
    """Under ``no_grad`` the densities are reduced in place; components 10-40 standard deviations
    from the data (their terms underflow ``exp``) must still give scipy's log-density, and the
    result must equal the autograd path's."""
    stats = pytest.importorskip("scipy.stats")
    special = pytest.importorskip("scipy.special")
    w, mu, cv, mats = params(ct)
    mu = mu.copy()
    mu[:, 1] += np.array([10.0, 25.0, 40.0])[:, None]  # the second component of each state far off
    g = GaussianMixture(K, M, D, ct, weights=w, means=mu, covars=cv, dtype=dtype)
    x, _ = data()
    with torch.no_grad():
        got = g.log_prob(x.to(dtype))
    with_grad = g.log_prob(x.to(dtype))
    assert with_grad.requires_grad and not got.requires_grad
    torch.testing.assert_close(got, with_grad.detach(), rtol=0.0, atol=1e-4 if dtype == torch.float32 else 1e-10)
    for k in range(K):
        comps = [np.log(w[k, m]) + stats.multivariate_normal(mu[k, m], mats[k, m]).logpdf(x.numpy()) for m in range(M)]
        want = special.logsumexp(np.stack(comps), axis=0)
        tol = 1e-3 if dtype == torch.float32 else 1e-9
        np.testing.assert_allclose(got[..., k].double().numpy(), want, rtol=tol, atol=tol)
