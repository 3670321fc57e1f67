"""Gaussian emissions and k-means: densities, EM statistics and M-step against independent
references (scipy, hmmlearn), additivity, padding, gradient training and input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytorch_hmm.emissions.gaussian import Gaussian
from pytorch_hmm.emissions.kmeans import _update, kmeans
from pytorch_hmm.errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError

TYPES = ["diag", "full", "spherical", "tied"]
K, D, T = 3, 4, 40


pytestmark = pytest.mark.usefixtures("one_thread")


def params(ct, seed=0):
    """Random means and covariances in hmmlearn's shapes, plus full matrices for scipy."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(K, D)) * 2
    a = rng.normal(size=(K, D, D))
    full = a @ a.transpose(0, 2, 1) / D + 0.5 * np.eye(D)
    covars = {
        "diag": rng.uniform(0.3, 2.0, (K, D)),
        "spherical": rng.uniform(0.3, 2.0, K),
        "full": full,
        "tied": full[0],
    }[ct]
    mats = {
        "diag": np.stack([np.diag(c) for c in covars]) if ct == "diag" else None,
        "spherical": covars[:, None, None] * np.eye(D) if ct == "spherical" else None,
        "full": full,
        "tied": np.broadcast_to(full[0], (K, D, D)),
    }[ct]
    return means, covars, mats


def data(seed=1, b=2, t=T):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(b, t, D)) * 1.5 + 0.5
    post = rng.dirichlet(np.ones(K), size=(b, t))
    return torch.tensor(x), torch.tensor(post)


def stats_of(g, x, post, mask=None):
    s = g.init_stats()
    g.accumulate(s, x, post, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask)
    return s


def hmmlearn_model(ct, means, covars, **priors):
    hmm = pytest.importorskip("hmmlearn.hmm")
    h = hmm.GaussianHMM(K, covariance_type=ct, init_params="", params="mc", **priors)
    h.startprob_ = np.full(K, 1.0 / K)
    h.transmat_ = np.full((K, K), 1.0 / K)
    h.means_ = means
    h.covars_ = covars
    h.n_features = D
    return h


# --------------------------------------------------------------------------- densities


@pytest.mark.parametrize("ct", TYPES)
def test_log_prob_matches_scipy(ct):
    stats = pytest.importorskip("scipy.stats")
    means, covars, mats = params(ct)
    g = Gaussian(K, D, ct, means=means, covars=covars, dtype=torch.float64)
    x, _ = data()
    got = g.log_prob(x).detach().numpy()
    assert got.shape == (2, T, K)
    for k in range(K):
        want = stats.multivariate_normal(means[k], mats[k]).logpdf(x.numpy())
        np.testing.assert_allclose(got[..., k], want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ct", TYPES)
def test_log_prob_matches_hmmlearn(ct):
    means, covars, _ = params(ct, seed=3)
    h = hmmlearn_model(ct, means, covars)
    g = Gaussian(K, D, ct, means=means, covars=covars, dtype=torch.float64)
    x, _ = data(seed=4, b=1)
    np.testing.assert_allclose(g.log_prob(x)[0].detach().numpy(), h._compute_log_likelihood(x[0].numpy()), rtol=1e-10)


@pytest.mark.parametrize("ct", TYPES)
def test_parameter_round_trip(ct):
    means, covars, _ = params(ct)
    g = Gaussian(K, D, ct, means=means, covars=covars, dtype=torch.float64)
    np.testing.assert_allclose(g.means.detach().numpy(), means, rtol=1e-12)
    np.testing.assert_allclose(g.covars.detach().numpy(), covars, rtol=1e-10, atol=1e-12)
    assert g.covariance_matrices.shape == (K, D, D)


@pytest.mark.parametrize("ct", TYPES)
def test_float32_close_to_float64(ct):
    means, covars, _ = params(ct)
    g64 = Gaussian(K, D, ct, means=means, covars=covars, dtype=torch.float64)
    g32 = Gaussian(K, D, ct, means=means, covars=covars, dtype=torch.float32)
    x, _ = data()
    out32 = g32.log_prob(x.float())
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.detach().numpy(), g64.log_prob(x).detach().numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ct", TYPES)
def test_state_dict_round_trip(ct):
    means, covars, _ = params(ct)
    g = Gaussian(K, D, ct, means=means, covars=covars, means_prior=0.5, covars_prior=0.1)
    fresh = Gaussian(K, D, ct)
    fresh.load_state_dict(g.state_dict())
    x, _ = data()
    torch.testing.assert_close(fresh.log_prob(x.float()), g.log_prob(x.float()))
    torch.testing.assert_close(fresh.means_prior, g.means_prior)


def test_to_changes_dtype():
    means, covars, _ = params("full")
    g = Gaussian(K, D, "full", means=means, covars=covars).to(torch.float64)
    x, _ = data()
    assert g.log_prob(x).dtype == torch.float64
    assert g.init_stats()["obs_outer"].dtype == torch.float64


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("ct", TYPES)
def test_cpu_equals_cuda(ct):
    means, covars, _ = params(ct)
    g = Gaussian(K, D, ct, means=means, covars=covars, dtype=torch.float64)
    x, post = data()
    cpu = g.log_prob(x)
    gc = g.to("cuda")
    torch.testing.assert_close(gc.log_prob(x.cuda()).cpu(), cpu)
    s = stats_of(gc, x.cuda(), post.cuda())
    gc.m_step(s)
    assert gc.means.device.type == "cuda"
    gc.initialize(x.cuda(), torch.ones(x.shape[:2], dtype=torch.bool, device="cuda"), torch.Generator("cuda").manual_seed(0))


@pytest.mark.parametrize("ct", TYPES)
def test_log_prob_gradients_finite(ct):
    means, covars, _ = params(ct)
    g = Gaussian(K, D, ct, means=means, covars=covars, dtype=torch.float64)
    x, _ = data()
    g.log_prob(x).sum().backward()
    for p in g.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()


def test_full_log_prob_gradcheck():
    means, covars, _ = params("full")
    g = Gaussian(K, D, "full", means=means, covars=covars, dtype=torch.float64)
    x, _ = data(b=1, t=5)

    def f(loc, raw):
        return torch.func.functional_call(g, {"loc": loc, "scale_tril_raw": raw}, (x,))

    assert torch.autograd.gradcheck(f, (g.loc.detach().clone().requires_grad_(), g.scale_tril_raw.detach().clone().requires_grad_()))


def test_log_prob_mask_ignores_garbage_padding():
    means, covars, _ = params("diag")
    g = Gaussian(K, D, "diag", means=means, covars=covars, dtype=torch.float64)
    x, _ = data()
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[1, 25:] = False
    bad = x.clone()
    bad[1, 25:] = float("nan")
    out = g.log_prob(bad, mask)
    assert (out[~mask] == 0).all()
    torch.testing.assert_close(out[mask], g.log_prob(x)[mask])
    torch.testing.assert_close(g(bad, mask), out)


def test_mask_none_means_all_frames():
    means, covars, _ = params("tied")
    g = Gaussian(K, D, "tied", means=means, covars=covars, dtype=torch.float64)
    x, post = data()
    s = g.init_stats()
    g.accumulate(s, x, post)
    for key, value in stats_of(g, x, post).items():
        torch.testing.assert_close(s[key], value)


def test_needs_init_flag():
    assert Gaussian(K, D).needs_init
    means, covars, _ = params("diag")
    assert not Gaussian(K, D, means=means).needs_init
    g = Gaussian(K, D)
    g.initialize(data()[0].float())
    assert not g.needs_init
    fresh = Gaussian(K, D)
    fresh.load_state_dict(g.state_dict())
    assert not fresh.needs_init


# --------------------------------------------------------------------------------- EM


PRIORS = {
    "default": {},
    "informative": dict(means_prior=0.4, means_weight=2.0, covars_prior=0.3, covars_weight=D + 3.0),
}


@pytest.mark.parametrize("prior", list(PRIORS))
@pytest.mark.parametrize("ct", TYPES)
def test_m_step_matches_hmmlearn(ct, prior):
    means, covars, _ = params(ct, seed=5)
    h = hmmlearn_model(ct, means, covars, **PRIORS[prior])
    g = Gaussian(K, D, ct, means=means, covars=covars, dtype=torch.float64, **PRIORS[prior])
    x, post = data(seed=6, b=1, t=80)
    X, P = x[0].numpy(), post[0].numpy()
    hs = h._initialize_sufficient_statistics()
    h._accumulate_sufficient_statistics(hs, X, h._compute_log_likelihood(X), P, None, None)
    h._do_mstep(hs)
    g.m_step(stats_of(g, x, post))
    np.testing.assert_allclose(g.means.detach().numpy(), h.means_, rtol=1e-6, atol=1e-12)
    want = h._covars_[:, 0] if ct == "spherical" else h._covars_
    np.testing.assert_allclose(g.covars.detach().numpy(), want, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("ct", TYPES)
def test_statistics_are_additive(ct):
    means, covars, _ = params(ct)
    g = Gaussian(K, D, ct, means=means, covars=covars, dtype=torch.float64)
    x, post = data(b=3)
    whole = stats_of(g, x, post)
    first, second = stats_of(g, x[:, :17], post[:, :17]), stats_of(g, x[:, 17:], post[:, 17:])
    batch_split = stats_of(g, x[:1], post[:1])
    g.accumulate(batch_split, x[1:], post[1:], torch.ones(2, T, dtype=torch.bool))
    for key in whole:
        torch.testing.assert_close(first[key] + second[key], whole[key])
        torch.testing.assert_close(batch_split[key], whole[key])


@pytest.mark.parametrize("ct", TYPES)
def test_padded_frames_do_not_change_statistics(ct):
    means, covars, _ = params(ct)
    g = Gaussian(K, D, ct, means=means, covars=covars, dtype=torch.float64)
    x, post = data(b=2)
    lengths = [T, 23]
    padded_x, padded_p = x.clone(), post.clone()
    padded_x[1, 23:] = float("nan")
    padded_p[1, 23:] = 1e9
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    got = stats_of(g, padded_x, padded_p, mask)
    want = stats_of(g, x[:1], post[:1])
    extra = stats_of(g, x[1:, :23], post[1:, :23])
    for key in got:
        torch.testing.assert_close(got[key], want[key] + extra[key])


def test_m_step_floors_variances_at_min_covar():
    g = Gaussian(2, 2, "diag", dtype=torch.float64, covars_prior=0.0, min_covar=1e-3)
    x = torch.tensor([[[1.0, 2.0]] * 10 + [[5.0, 0.0], [6.0, 1.0]]], dtype=torch.float64)
    post = torch.zeros(1, 12, 2, dtype=torch.float64)
    post[0, :10, 0] = 1
    post[0, 10:, 1] = 1
    g.m_step(stats_of(g, x, post))
    torch.testing.assert_close(g.covars[0], torch.full((2,), 1e-3, dtype=torch.float64))
    torch.testing.assert_close(g.covars[1], torch.tensor([0.25, 0.25], dtype=torch.float64))


def test_m_step_full_floor_keeps_positive_definite():
    g = Gaussian(1, 2, "full", dtype=torch.float64, covars_prior=0.0, min_covar=0.01)
    t = torch.linspace(-1, 1, 9, dtype=torch.float64)
    x = torch.stack([t, 2 * t], -1)[None]  # all points on a line: singular scatter
    g.m_step(stats_of(g, x, torch.ones(1, 9, 1, dtype=torch.float64)))
    evals = torch.linalg.eigvalsh(g.covars[0].detach())
    assert evals.min() == pytest.approx(0.01, rel=1e-8)
    assert evals.max() == pytest.approx(float(5 * (t * t).mean()), rel=1e-8)


def test_state_without_posterior_mass_keeps_its_mean():
    means, covars, _ = params("full")
    g = Gaussian(K, D, "full", means=means, covars=covars, dtype=torch.float64)
    x, post = data()
    post[..., 2] = 0
    g.m_step(stats_of(g, x, post))
    np.testing.assert_allclose(g.means[2].detach().numpy(), means[2])
    np.testing.assert_allclose(g.covars[2].detach().numpy(), covars[2], rtol=1e-10)
    assert torch.isfinite(g.means).all() and torch.isfinite(g.covars).all()


@pytest.mark.parametrize("ct", TYPES)
def test_em_single_state_gives_sample_moments(ct):
    """With one state and unit posteriors the M-step (no priors) is the sample mean/covariance."""
    rng = np.random.default_rng(7)
    pts = rng.normal(size=(500, D)) @ rng.normal(size=(D, D)) + 3.0
    g = Gaussian(1, D, ct, dtype=torch.float64, covars_prior=0.0, min_covar=0.0)
    x = torch.tensor(pts)[None]
    g.m_step(stats_of(g, x, torch.ones(1, 500, 1, dtype=torch.float64)))
    cov = np.cov(pts.T, bias=True)
    want = {"diag": np.diag(cov)[None], "spherical": np.diag(cov).mean()[None], "full": cov[None], "tied": cov}[ct]
    np.testing.assert_allclose(g.means[0].detach().numpy(), pts.mean(0), rtol=1e-10)
    np.testing.assert_allclose(g.covars.detach().numpy(), want, rtol=1e-8)


@pytest.mark.parametrize("ct", TYPES)
def test_float32_m_step_accurate_far_from_origin(ct):
    """Statistics about stats_offset: float32 EM stays accurate for features with |mean| >> std."""
    x64 = torch.randn(1, 20000, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 1000.0
    g = Gaussian(1, D, ct, covars_prior=0.0, min_covar=0.0)
    g.initialize(x64.float())
    g.m_step(stats_of(g, x64.float(), torch.ones(1, 20000, 1)))
    var = x64[0].var(0, unbiased=False)
    if ct == "spherical":
        var = var.mean().expand(D)
    got = torch.diagonal(g.covariance_matrices[0].detach()).double()
    torch.testing.assert_close(got, var, rtol=1e-3, atol=0)
    torch.testing.assert_close(g.means[0].detach().double(), x64[0].mean(0), rtol=1e-6, atol=0)


@pytest.mark.parametrize("ct", TYPES)
def test_initialize_uses_kmeans_and_data_covariance(ct):
    rng = np.random.default_rng(8)
    centres = np.array([[0.0, 0, 0, 0], [10, 10, 0, 0], [0, 10, 10, 10]])
    pts = centres[rng.integers(0, 3, size=300)] + rng.normal(size=(300, D)) * 0.3
    x = torch.tensor(pts, dtype=torch.float32).reshape(3, 100, D)
    mask = torch.ones(3, 100, dtype=torch.bool)
    mask[2, 60:] = False
    x[2, 60:] = float("nan")
    g = Gaussian(K, D, ct, min_covar=1e-3)
    g.initialize(x, mask, torch.Generator().manual_seed(0))
    got = g.means.detach().numpy()
    for c in centres:
        assert np.linalg.norm(got - c, axis=1).min() < 0.2
    valid = x[mask].double().numpy()
    cv = np.cov(valid.T) + 1e-3 * np.eye(D)
    want = {"diag": np.tile(np.diag(cv), (K, 1)), "spherical": np.full(K, np.diag(cv).mean()),
            "full": np.tile(cv, (K, 1, 1)), "tied": cv}[ct]
    np.testing.assert_allclose(g.covars.detach().numpy(), want, rtol=1e-4)


@pytest.mark.parametrize("ct", TYPES)
def test_gradient_training_moves_means_to_data(ct):
    torch.manual_seed(0)
    true_means = torch.tensor([[2.0, 0, 0, 0], [0, -2, 0, 1], [1, 1, 3, 0]])
    labels = torch.arange(120) % K
    x = (true_means[labels] + 0.5 * torch.randn(120, D))[None]
    onehot = torch.nn.functional.one_hot(labels, K).float()[None]
    g = Gaussian(K, D, ct)
    opt = torch.optim.Adam(g.parameters(), lr=0.05)

    def loss_fn():
        return -(onehot * g.log_prob(x)).sum() / 120

    first = float(loss_fn().detach())
    start = (g.means - true_means).norm()
    for _ in range(200):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    assert float(loss_fn().detach()) < first - 1.0
    data_means = torch.stack([x[0, labels == k].mean(0) for k in range(K)])
    assert (g.means - data_means).norm() < 0.1 * start


@pytest.mark.parametrize("ct", TYPES)
def test_sample_moments(ct):
    means, covars, mats = params(ct)
    g = Gaussian(K, D, ct, means=means, covars=covars, dtype=torch.float64)
    states = torch.full((20000,), 1)
    s = g.sample(states, torch.Generator().manual_seed(0))
    assert s.shape == (20000, D)
    np.testing.assert_allclose(s.mean(0).numpy(), means[1], atol=0.05)
    np.testing.assert_allclose(np.cov(s.numpy().T), mats[1], atol=0.08)


# ------------------------------------------------------------------------------ kmeans


def test_kmeans_recovers_separated_centres():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = centres.repeat_interleave(50, 0) + 0.5 * torch.randn(200, 2, generator=g)
    got, labels = kmeans(x, 4, generator=torch.Generator().manual_seed(1))
    dist = torch.cdist(centres, got)
    assert dist.min(1).values.max() < 0.3
    assert sorted(dist.argmin(1).tolist()) == [0, 1, 2, 3]
    assert labels.shape == (200,) and labels.dtype == torch.int64
    truth = torch.arange(4).repeat_interleave(50)
    assert all(len(set(labels[truth == c].tolist())) == 1 for c in range(4))


def test_kmeans_is_deterministic_given_generator():
    x = torch.randn(300, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    a = kmeans(x, 5, generator=torch.Generator().manual_seed(3))
    b = kmeans(x, 5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a[0], b[0])
    assert torch.equal(a[1], b[1])


def test_kmeans_duplicate_points_and_k_equals_n():
    x = torch.tensor([[1.0, 1.0]] * 5 + [[3.0, 3.0]])
    centres, labels = kmeans(x, 2, generator=torch.Generator().manual_seed(0))
    assert sorted(centres[:, 0].tolist()) == [1.0, 3.0]
    centres, labels = kmeans(torch.eye(3), 3)
    assert sorted(labels.tolist()) == [0, 1, 2]


def test_kmeans_reseeds_empty_cluster_at_farthest_point():
    x = torch.tensor([[0.0], [1.0], [2.0], [9.0]])
    old = torch.tensor([[1.0], [100.0]])
    labels = torch.zeros(4, dtype=torch.long)  # cluster 1 empty
    new = _update(x, labels, old, 2)
    torch.testing.assert_close(new, torch.tensor([[3.0], [9.0]]))


def test_kmeans_too_few_points():
    with pytest.raises(HMMValueError, match=r"kmeans needs at least k == 5 points; got N == 3"):
        kmeans(torch.zeros(3, 2), 5)


def test_kmeans_bad_k():
    with pytest.raises(HMMValueError, match=r"k must be a positive int; got 0"):
        kmeans(torch.zeros(3, 2), 0)


def test_kmeans_bad_shape():
    with pytest.raises(HMMDimensionError, match=r"x must be \(N, D\) points; got shape \(3,\)"):
        kmeans(torch.zeros(3), 2)


def test_kmeans_nan():
    with pytest.raises(HMMValueError, match="x must be finite; got NaN"):
        kmeans(torch.tensor([[0.0], [float("nan")]]), 1)


# ------------------------------------------------------------------------------ errors


def good(ct="diag"):
    means, covars, _ = params(ct)
    return Gaussian(K, D, ct, means=means, covars=covars)


def test_error_feature_dimension():
    g = Gaussian(5, 13)
    with pytest.raises(HMMDimensionError, match=r"x must be \(B, T, D\) with D == 13; got \(2, 50, 12\)") as info:
        g.log_prob(torch.zeros(2, 50, 12))
    assert info.value.expected_shape == ("B", "T", 13) and info.value.actual_shape == (2, 50, 12)


def test_error_two_dim_input_suggests_unsqueeze():
    with pytest.raises(HMMDimensionError, match=r"got \(50, 4\)\. for a single sequence use x.unsqueeze\(0\)"):
        good().log_prob(torch.zeros(50, D))


def test_error_nan_in_x():
    x = torch.zeros(2, 5, D)
    x[1, 2, 0] = float("nan")
    with pytest.raises(HMMValueError, match=r"x must be finite at valid frames; got NaN or inf in 1 frame"):
        good().log_prob(x)


def test_error_x_dtype():
    with pytest.raises(HMMDtypeError, match=r"x must have the dtype of the emission parameters \(torch.float32\); got torch.float64"):
        good().log_prob(torch.zeros(1, 3, D, dtype=torch.float64))


def test_error_x_not_tensor():
    with pytest.raises(HMMTypeError, match="x must be a torch.Tensor"):
        good().log_prob(np.zeros((1, 3, D)))


def test_error_unknown_covariance_type():
    with pytest.raises(HMMValueError, match=r"covariance_type must be one of 'diag', 'full', 'spherical', 'tied'; got 'diagonal'"):
        Gaussian(K, D, "diagonal")


def test_error_means_shape():
    with pytest.raises(HMMDimensionError, match=r"means must be \(K, D\) == \(3, 4\); got \(3, 5\)"):
        Gaussian(K, D, means=np.zeros((3, 5)))


def test_error_means_nan():
    with pytest.raises(HMMValueError, match="means must be finite"):
        Gaussian(K, D, means=np.full((K, D), np.nan))


def test_error_covars_shape():
    with pytest.raises(HMMDimensionError, match=r"covars for covariance_type='spherical' must be \(K,\) == \(3,\); got \(3, 4\)"):
        Gaussian(K, D, "spherical", covars=np.ones((K, D)))


def test_error_non_positive_variance():
    with pytest.raises(HMMValueError, match=r"covars must be positive for covariance_type='diag'; got minimum -1"):
        Gaussian(K, D, "diag", covars=-np.ones((K, D)))


def test_error_covars_not_positive_definite():
    cov = np.tile(np.eye(D), (K, 1, 1))
    cov[1, 0, 0] = -1.0
    with pytest.raises(HMMValueError, match=r"covars for covariance_type='full' must be symmetric positive-definite; matrix \[1\] is not positive-definite"):
        Gaussian(K, D, "full", covars=cov)


def test_error_covars_not_symmetric():
    cov = np.eye(D)
    cov[0, 1] = 0.5
    with pytest.raises(HMMValueError, match=r"covars for covariance_type='tied' must be symmetric positive-definite; the matrix is not symmetric"):
        Gaussian(K, D, "tied", covars=cov)


def test_error_covars_nan():
    with pytest.raises(HMMValueError, match=r"covars for covariance_type='full' must be finite"):
        Gaussian(K, D, "full", covars=np.full((K, D, D), np.nan))


def test_error_bad_num_states():
    with pytest.raises(HMMValueError, match=r"num_states must be a positive int; got 0"):
        Gaussian(0, D)


def test_error_bad_dtype():
    with pytest.raises(HMMDtypeError, match=r"dtype must be torch.float32 or torch.float64; got torch.int64"):
        Gaussian(K, D, dtype=torch.int64)


def test_error_negative_min_covar():
    with pytest.raises(HMMValueError, match=r"min_covar must be a finite number >= 0; got -1"):
        Gaussian(K, D, min_covar=-1)


def test_error_prior_shape():
    with pytest.raises(HMMDimensionError, match=r"means_prior must broadcast to \(3, 4\); got \(2,\)"):
        Gaussian(K, D, means_prior=[1.0, 2.0])


def test_error_posteriors_shape():
    g = good()
    with pytest.raises(HMMDimensionError, match=r"posteriors must be \(B, T, K\) == \(2, 5, 3\) to match x; got \(2, 5, 4\)"):
        g.accumulate(g.init_stats(), torch.zeros(2, 5, D), torch.zeros(2, 5, 4), torch.ones(2, 5, dtype=torch.bool))


def test_error_posteriors_nan():
    g = good()
    post = torch.full((2, 5, K), 1.0 / K)
    post[0, 0, 0] = float("nan")
    with pytest.raises(HMMValueError, match="posteriors must be finite and non-negative at valid frames"):
        g.accumulate(g.init_stats(), torch.zeros(2, 5, D), post, torch.ones(2, 5, dtype=torch.bool))


def test_error_mask_shape():
    g = good()
    with pytest.raises(HMMDimensionError, match=r"mask must be \(B, T\) == \(2, 5\) to match x; got \(2, 4\)"):
        g.accumulate(g.init_stats(), torch.zeros(2, 5, D), torch.zeros(2, 5, K), torch.ones(2, 4, dtype=torch.bool))


def test_error_mask_dtype():
    g = good()
    with pytest.raises(HMMDtypeError, match=r"mask must be a bool tensor \(True at valid frames\); got torch.int64"):
        g.accumulate(g.init_stats(), torch.zeros(2, 5, D), torch.zeros(2, 5, K), torch.ones(2, 5, dtype=torch.long))


def test_error_stats_missing_key():
    g = good("full")
    with pytest.raises(HMMValueError, match=r"stats must come from Gaussian.init_stats\(\); missing \['obs_outer'\]"):
        g.m_step(good("diag").init_stats())


def test_error_initialize_too_few_frames():
    mask = torch.zeros(1, 5, dtype=torch.bool)
    mask[0, :2] = True
    with pytest.raises(HMMValueError, match=r"initialize needs at least K == 3 valid frames; got 2"):
        good().initialize(torch.zeros(1, 5, D), mask)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_error_device_mismatch():
    with pytest.raises(HMMDeviceError, match=r"x must be on the device of the emission parameters \(cpu\); got cuda:0"):
        good().log_prob(torch.zeros(1, 3, D, device="cuda"))


def test_kmeans_not_tensor():
    with pytest.raises(HMMTypeError, match=r"x must be a torch.Tensor of shape \(N, D\); got list"):
        kmeans([[0.0]], 1)


def test_kmeans_integer_points():
    with pytest.raises(HMMDtypeError, match="x must be float32 or float64; got torch.int64"):
        kmeans(torch.zeros(3, 2, dtype=torch.long), 2)


def test_kmeans_bad_iters():
    with pytest.raises(HMMValueError, match=r"iters must be a non-negative int; got -1"):
        kmeans(torch.zeros(3, 2), 2, iters=-1)


def test_error_parameter_not_numeric():
    with pytest.raises(HMMValueError, match="means must be a tensor or array of numbers; got str"):
        Gaussian(K, D, means="zeros")


def test_error_diag_covars_nan():
    with pytest.raises(HMMValueError, match=r"covars must be finite; got NaN or infinite values"):
        Gaussian(K, D, "diag", covars=np.full((K, D), np.nan))


def test_error_posteriors_not_tensor():
    g = good()
    with pytest.raises(HMMTypeError, match=r"posteriors must be a torch.Tensor of shape \(B, T, K\); got ndarray"):
        g.accumulate(g.init_stats(), torch.zeros(2, 5, D), np.zeros((2, 5, K)))


def test_error_posteriors_dtype():
    g = good()
    with pytest.raises(HMMDtypeError, match=r"posteriors must have the dtype and device of x \(torch.float32, cpu\); got torch.float64, cpu"):
        g.accumulate(g.init_stats(), torch.zeros(2, 5, D), torch.zeros(2, 5, K, dtype=torch.float64))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_error_mask_device():
    g = good().to("cuda")
    with pytest.raises(HMMDeviceError, match=r"mask must be on the device of x \(cuda:0\); got cpu"):
        g.log_prob(torch.zeros(1, 3, D, device="cuda"), torch.ones(1, 3, dtype=torch.bool))


@pytest.mark.parametrize("ct", TYPES)
def test_float32_well_separated_states(ct):
    """States far apart relative to their spread: float32 M-step and log_prob stay accurate."""
    g = torch.Generator().manual_seed(0)
    n, sep, sd = 5000, 1000.0, 0.1
    x = torch.cat([torch.full((n, 1), -sep), torch.full((n, 1), sep)]) + sd * torch.randn(2 * n, 1, generator=g)
    post = torch.zeros(2 * n, 2)
    post[:n, 0] = post[n:, 1] = 1.0
    means = torch.tensor([[-sep], [sep]])
    covars = {"diag": torch.ones(2, 1), "full": torch.ones(2, 1, 1), "spherical": torch.ones(2), "tied": torch.ones(1, 1)}[ct]
    em = Gaussian(2, 1, ct, means=means, covars=covars, min_covar=1e-6, covars_prior=0.0)
    stats = em.init_stats()
    em.accumulate(stats, x[None], post[None])
    em.m_step(stats)
    variances = em.covariance_matrices.detach().flatten()
    assert torch.allclose(variances, torch.full_like(variances, sd**2), rtol=0.1), variances
    # log density of a point 0.1 from a state 1000 away from the origin, against float64
    ref = Gaussian(2, 1, "diag", means=means.double(), covars=torch.full((2, 1), 0.01, dtype=torch.float64), dtype=torch.float64)
    ours = Gaussian(2, 1, "diag", means=means, covars=torch.full((2, 1), 0.01))
    point = torch.tensor([[[sep - 0.1]]])
    assert ours.log_prob(point)[0, 0, 1].item() == pytest.approx(ref.log_prob(point.double())[0, 0, 1].item(), abs=1e-3)


def test_sample_padding_and_range():
    em = Gaussian(2, 1, means=torch.tensor([[-10.0], [10.0]]), covars=torch.full((2, 1), 1e-4))
    out = em.sample(torch.tensor([[0, 1, -1]]), generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 1) and torch.isnan(out[0, 2]).all()
    assert out[0, 0].item() == pytest.approx(-10.0, abs=0.1) and out[0, 1].item() == pytest.approx(10.0, abs=0.1)
    with pytest.raises(HMMValueError, match=r"states must be in \[0, 2\) or -1 \(padding\); got 2"):
        em.sample(torch.tensor([0, 2]))
    with pytest.raises(HMMValueError, match=r"states must be in \[0, 2\) or -1 \(padding\); got -3"):
        em.sample(torch.tensor([-3]))
