"""Spherical and tied covariances of GaussianMixture / MixtureGaussianHMM (hmmlearn's GMMHMM
shapes: spherical ``(K, M)``, tied ``(K, D, D)`` one matrix per state): densities against scipy,
one M-step and several EM iterations against hmmlearn's GMMHMM (with and without priors),
n_parameters, initialisation, splitting, the variance floor, save/load, batch == items, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import pytorch_hmm
from pytorch_hmm import MixtureGaussianHMM
from pytorch_hmm.emissions import GaussianMixture
from pytorch_hmm.errors import HMMDimensionError, HMMValueError

TYPES = ["spherical", "tied"]
K, M, D, T = 3, 2, 3, 40

pytestmark = pytest.mark.usefixtures("one_thread")


def params(ct, seed=0):
    """weights, means, covars (hmmlearn's shape for ``ct``) and the ``(K, M, D, D)`` matrices."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(M) * 2, size=K)
    means = rng.normal(size=(K, M, D)) * 2
    if ct == "spherical":
        covars = rng.uniform(0.3, 2.0, (K, M))
        mats = covars[..., None, None] * np.eye(D)
    else:
        a = rng.normal(size=(K, D, D))
        covars = a @ np.swapaxes(a, -1, -2) / D + 0.5 * np.eye(D)
        mats = np.broadcast_to(covars[:, None], (K, M, D, D))
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
    g.accumulate(s, x, post, mask)
    return s


# our spherical default (no prior) is alpha = -(D + 2) / 2; hmmlearn 0.3's is -(M + 2) / 2
NO_PRIOR_FOR_HMMLEARN = {"spherical": dict(covars_prior=-(D + 2) / 2), "tied": {}}
PRIORS = {
    "spherical": dict(weights_prior=1.5, means_prior=0.3, means_weight=0.7,
                      covars_prior=np.array([[0.5, 1.0], [0.2, 0.4], [0.8, 0.1]]), covars_weight=0.3),
    "tied": dict(weights_prior=1.5, means_prior=0.3, means_weight=0.7, covars_prior=0.2 * np.eye(D),
                 covars_weight=np.array([2.0, 0.5, 1.0])),
}


def hmmlearn_gmm(ct, n_mix=M, **kw):
    hmm = pytest.importorskip("hmmlearn.hmm")
    return hmm.GMMHMM(K, n_mix, covariance_type=ct, init_params="", **kw)


# --------------------------------------------------------------------------- densities


@pytest.mark.parametrize("ct", TYPES)
def test_log_prob_matches_scipy_mixtures(ct):
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
    # float32 close to float64, also for components far from the data
    g32 = GaussianMixture(K, M, D, ct, weights=w, means=mu + 30.0, covars=cv)
    g64 = GaussianMixture(K, M, D, ct, weights=w, means=mu + 30.0, covars=cv, dtype=torch.float64)
    np.testing.assert_allclose(g32.log_prob(x.float()).detach().double().numpy(), g64.log_prob(x).detach().numpy(), rtol=1e-4)


@pytest.mark.parametrize("ct", TYPES)
def test_covars_scale_tril_and_gradients(ct):
    w, mu, cv, mats = params(ct)
    g = model(ct)
    assert tuple(g.covars.shape) == ((K, M) if ct == "spherical" else (K, D, D))
    np.testing.assert_allclose(g.covars.detach().numpy(), cv, rtol=1e-10)
    lower = g.scale_tril.detach().numpy()
    np.testing.assert_allclose(lower @ np.swapaxes(lower, -1, -2), mats, rtol=1e-10, atol=1e-12)
    # log_prob is differentiable in the covariance parameter (finite differences)
    x, _ = data(b=1, t=4)
    name = "log_var" if ct == "spherical" else "scale_tril_raw"
    start = getattr(g, name).detach().clone()

    def f(raw):
        with torch.no_grad():
            getattr(g, name).copy_(raw)
        return g.log_prob(x).sum().detach()

    getattr(g, name).grad = None
    g.log_prob(x).sum().backward()
    grad = getattr(g, name).grad.clone()
    eps, i = 1e-6, (1, 0) if ct == "spherical" else (1, 2, 0)
    bump = torch.zeros_like(start)
    bump[i] = eps
    numeric = (f(start + bump) - f(start - bump)) / (2 * eps)
    f(start)
    assert float(grad[i]) == pytest.approx(float(numeric), rel=1e-6)


# --------------------------------------------------------------------------------- EM


@pytest.mark.parametrize("prior", ["none", "informative"])
@pytest.mark.parametrize("ct", TYPES)
def test_m_step_matches_hmmlearn(ct, prior):
    theirs = NO_PRIOR_FOR_HMMLEARN[ct] if prior == "none" else PRIORS[ct]
    ours = {} if prior == "none" else PRIORS[ct]
    w, mu, cv, _ = params(ct, 4)
    h = hmmlearn_gmm(ct, params="mcw", **theirs)
    h.startprob_, h.transmat_ = np.full(K, 1.0 / K), np.full((K, K), 1.0 / K)
    h.weights_, h.means_, h.covars_, h.n_features = w, mu, cv, D
    h._check()
    g = model(ct, 4, **ours)
    x, post = data(seed=5, b=1, t=90)
    X, P = x[0].numpy(), post[0].numpy()
    hs = h._initialize_sufficient_statistics()
    h._accumulate_sufficient_statistics(hs, X, h._compute_log_likelihood(X), P, None, None)
    h._do_mstep(hs)
    g.m_step(stats_of(g, x, post))
    np.testing.assert_allclose(g.weights.detach().numpy(), h.weights_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g.means.detach().numpy(), h.means_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g.covars.detach().numpy(), h.covars_, rtol=1e-9, atol=1e-12)


def _pair(ct, seed, **priors):
    rng = np.random.default_rng(seed)
    start, trans = rng.dirichlet(np.ones(K) * 3), rng.dirichlet(np.ones(K) * 3, size=K)
    w, mu, cv, _ = params(ct, seed)
    theirs = priors or NO_PRIOR_FOR_HMMLEARN[ct]
    ref = hmmlearn_gmm(ct, n_iter=6, tol=-np.inf, **theirs)
    ref.startprob_, ref.transmat_, ref.weights_, ref.means_, ref.covars_ = start, trans, w, mu, cv
    ours = MixtureGaussianHMM(K, M, D, ct, transitions=torch.tensor(trans), init_probs=torch.tensor(start),
                              weights=torch.tensor(w), means=torch.tensor(mu), covars=torch.tensor(cv),
                              dtype=torch.float64, **priors)
    return ref, ours


@pytest.mark.parametrize("prior", ["none", "informative"])
@pytest.mark.parametrize("ct", TYPES)
def test_em_matches_hmmlearn_gmmhmm(ct, prior):
    ref, ours = _pair(ct, 2, **({} if prior == "none" else PRIORS[ct]))
    rng = np.random.default_rng(7)
    lengths = [40, 25, 33]
    X = np.concatenate([ref.sample(n, random_state=i)[0] for i, n in enumerate(lengths)]) + rng.normal(size=(98, D)) * 0.1
    assert ours.score(X, lengths) == pytest.approx(ref.score(X, lengths), rel=1e-12)
    ref.fit(X, lengths)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # priors: the likelihood alone may fall
        history = ours.fit(X, lengths, max_iter=6, tol=-1.0, verbose=False)
    assert len(history) == 6
    np.testing.assert_allclose(history, list(ref.monitor_.history), rtol=1e-12)
    for mine, theirs in [(ours.startprob_, ref.startprob_), (ours.transmat_, ref.transmat_),
                         (ours.weights_, ref.weights_), (ours.means_, ref.means_), (ours.covars_, ref.covars_)]:
        assert mine.shape == theirs.shape
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("ct", TYPES)
def test_n_parameters_and_covars_view_as_hmmlearn(ct):
    ref, ours = _pair(ct, 3)
    X = ref.sample(50, random_state=0)[0]
    ref.n_features = D
    # hmmlearn 0.3 counts M - 1 mixture weights in all; ours K (M - 1) (see hmmlearn_api)
    assert ours.n_parameters() == sum(ref._get_n_fit_scalars_per_param().values()) + (K - 1) * (M - 1)
    assert ours.covars_.shape == np.shape(ref.covars_)
    np.testing.assert_allclose(ours.predict_proba(X).numpy(), ref.predict_proba(X), atol=1e-10)
    np.testing.assert_array_equal(ours.predict(X).numpy(), ref.predict(X))
    ours.covars_ = ref.covars_ * 2.0  # assignable in hmmlearn's shape
    np.testing.assert_allclose(ours.covars_, ref.covars_ * 2.0, rtol=1e-10)


@pytest.mark.parametrize("ct", TYPES)
def test_statistics_additive_and_padding_invariant(ct):
    g = model(ct)
    x, post = data(b=3)
    whole = stats_of(g, x, post)
    first, second = stats_of(g, x[:, :11], post[:, :11]), stats_of(g, x[:, 11:], post[:, 11:])
    items = [stats_of(g, x[i : i + 1], post[i : i + 1]) for i in range(3)]
    padded_x, padded_p = x.clone(), post.clone()
    padded_x[0, 19:], padded_p[0, 19:] = float("nan"), -5.0
    mask = torch.ones(3, T, dtype=torch.bool)
    mask[0, 19:] = False
    padded = stats_of(g, padded_x, padded_p, mask)
    short = stats_of(g, x[:1, :19], post[:1, :19])
    for key in whole:
        torch.testing.assert_close(first[key] + second[key], whole[key])
        torch.testing.assert_close(sum(s[key] for s in items), whole[key])
        torch.testing.assert_close(padded[key], short[key] + items[1][key] + items[2][key])
    out = g.log_prob(padded_x, mask)
    assert (out[~mask] == 0).all()
    torch.testing.assert_close(out[mask], g.log_prob(x)[mask])
    torch.testing.assert_close(g.log_prob(x), torch.cat([g.log_prob(x[i : i + 1]) for i in range(3)]))


@pytest.mark.parametrize("ct", TYPES)
def test_model_batch_equals_items(ct):
    _, ours = _pair(ct, 4)
    x, _ = data(seed=8, b=3)
    lengths = torch.tensor([T, 23, 31])
    batch = ours(x, lengths)
    for b in range(3):
        n = int(lengths[b])
        assert float(batch[b].detach()) == pytest.approx(float(ours(x[b : b + 1, :n])[0].detach()), rel=1e-12)


@pytest.mark.parametrize("ct", TYPES)
def test_variance_floor(ct):
    """Two tight clusters, one component on each: the default floor is var_floor times the
    variance of all the frames per dimension (about both clusters); spherical takes its mean,
    tied is at least diag(F) in every direction (here about F itself)."""
    rng = np.random.default_rng(3)
    centres = np.array([[0.1, 1.0, 10.0], [-0.1, -1.0, -10.0]])
    pts = (centres[np.arange(200) % 2] + rng.normal(size=(200, D)) * 1e-4)[None]
    one = torch.ones(1, 200, 1, dtype=torch.float64)
    g = GaussianMixture(1, 2, D, ct, means=centres[None], var_floor=0.1, dtype=torch.float64)
    g.m_step(stats_of(g, torch.tensor(pts), one))
    floor = 0.1 * pts[0].var(0)
    if ct == "spherical":
        np.testing.assert_allclose(g.covars.detach().numpy(), np.full((1, 2), floor.mean()), rtol=1e-12)
        g = GaussianMixture(1, 2, D, ct, means=centres[None], min_covar=0.5, dtype=torch.float64)
        g.m_step(stats_of(g, torch.tensor(pts), one))
        np.testing.assert_allclose(g.covars.detach().numpy(), np.full((1, 2), 0.5), rtol=1e-12)
    else:
        root = 1.0 / np.sqrt(floor)
        evals = np.linalg.eigvalsh(root[:, None] * g.covars[0].detach().numpy() * root[None, :])
        assert evals.min() == pytest.approx(1.0, rel=1e-9) and evals.max() < 1.0 + 1e-4
        g = GaussianMixture(1, 2, D, ct, means=centres[None], min_covar=0.5, dtype=torch.float64)
        g.m_step(stats_of(g, torch.tensor(pts), one))
        np.testing.assert_allclose(np.linalg.eigvalsh(g.covars[0].detach().numpy()), 0.5, rtol=1e-6)


# ----------------------------------------------------------------- initialisation, split


@pytest.mark.parametrize("ct", TYPES)
def test_initialize_gives_hmmlearns_shapes_and_covariances(ct):
    rng = np.random.default_rng(9)
    centres = np.array([[0.0, 0, 0], [8, 0, 0], [0, 8, 0], [8, 8, 0], [0, 0, 8], [8, 0, 8]])
    pts = centres[rng.integers(0, 6, size=300)] + rng.normal(size=(300, D)) * 0.3
    g = GaussianMixture(K, M, D, ct, min_covar=1e-3, dtype=torch.float64)
    g.initialize(torch.tensor(pts)[None], generator=torch.Generator().manual_seed(0))
    got = g.means.detach().reshape(-1, D).numpy()
    assert max(np.linalg.norm(got - c, axis=1).min() for c in centres) < 0.3
    cv = np.cov(pts.T) + 1e-3 * np.eye(D)  # hmmlearn's _init
    if ct == "spherical":
        assert g.covars.shape == (K, M)
        np.testing.assert_allclose(g.covars.detach().numpy(), np.full((K, M), np.diag(cv).mean()), rtol=1e-10)
    else:
        assert g.covars.shape == (K, D, D)
        np.testing.assert_allclose(g.covars.detach().numpy(), np.broadcast_to(cv, (K, D, D)), rtol=1e-10)
        assert np.linalg.eigvalsh(g.covars.detach().numpy()).min() > 0
    assert torch.isfinite(g.log_prob(torch.tensor(pts)[None])).all()


@pytest.mark.parametrize("ct", TYPES)
def test_split(ct):
    w, mu, cv, mats = params(ct)
    g = model(ct, **PRIORS[ct])
    g.split()
    assert g.num_mixtures == 2 * M and g.means.shape == (K, 2 * M, D)
    np.testing.assert_allclose(g.weights.detach().numpy(), np.repeat(w / 2, 2, axis=1), rtol=1e-12)
    want_cv = np.repeat(cv, 2, axis=1) if ct == "spherical" else cv
    np.testing.assert_allclose(g.covars.detach().numpy(), want_cv, rtol=1e-10)
    for k in range(K):
        for m in range(M):
            evals, evecs = np.linalg.eigh(mats[k, m])
            half = (g.means[k, 2 * m] - g.means[k, 2 * m + 1]).detach().numpy() / 2
            np.testing.assert_allclose((g.means[k, 2 * m] + g.means[k, 2 * m + 1]).detach().numpy() / 2, mu[k, m], atol=1e-12)
            np.testing.assert_allclose(np.linalg.norm(half), 0.2 * np.sqrt(evals[-1]), rtol=1e-8)
            if ct == "tied":  # along the state's leading eigenvector
                np.testing.assert_allclose(np.abs(half @ evecs[:, -1]), 0.2 * np.sqrt(evals[-1]), rtol=1e-8)
    if ct == "tied":
        np.testing.assert_allclose(g.covars_weight.numpy(), PRIORS[ct]["covars_weight"] - M)
    else:
        np.testing.assert_allclose(g.covars_prior.numpy(), np.repeat(PRIORS[ct]["covars_prior"], 2, axis=1))


@pytest.mark.parametrize("ct", TYPES)
def test_split_model_m_step_matches_hmmlearn_with_2m_components(ct):
    """After a split the default priors are hmmlearn's defaults for 2M components (tied's
    covars_weight moved from -(M + D + 1) to -(2M + D + 1))."""
    g = model(ct, 6)
    g.split()
    h = hmmlearn_gmm(ct, n_mix=2 * M, params="mcw",
                     **({"covars_prior": -(D + 2) / 2} if ct == "spherical" else {}))
    h.startprob_, h.transmat_ = np.full(K, 1.0 / K), np.full((K, K), 1.0 / K)
    h.weights_, h.means_, h.covars_ = (t.detach().numpy().copy() for t in (g.weights, g.means, g.covars))
    h.n_features = D
    h._check()
    x, post = data(seed=6, b=1, t=80)
    X, P = x[0].numpy(), post[0].numpy()
    hs = h._initialize_sufficient_statistics()
    h._accumulate_sufficient_statistics(hs, X, h._compute_log_likelihood(X), P, None, None)
    h._do_mstep(hs)
    g.m_step(stats_of(g, x, post))
    np.testing.assert_allclose(g.means.detach().numpy(), h.means_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g.covars.detach().numpy(), h.covars_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("ct", TYPES)
def test_sample_moments(ct):
    w, mu, cv, mats = params(ct)
    s = model(ct).sample(torch.full((20000,), 1), torch.Generator().manual_seed(0)).numpy()
    mean = (w[1][:, None] * mu[1]).sum(0)
    cov = sum(w[1, m] * (mats[1, m] + np.outer(mu[1, m] - mean, mu[1, m] - mean)) for m in range(M))
    np.testing.assert_allclose(s.mean(0), mean, atol=0.06)
    np.testing.assert_allclose(np.cov(s.T), cov, atol=0.15)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("ct", TYPES)
def test_cpu_equals_cuda(ct):
    g, x, post = model(ct), *data()
    gc = model(ct).to("cuda")
    torch.testing.assert_close(gc.log_prob(x.cuda()).cpu(), g.log_prob(x))
    s, sc = stats_of(g, x, post), stats_of(gc, x.cuda(), post.cuda())
    for key in s:
        torch.testing.assert_close(sc[key].cpu(), s[key])
    g.m_step(s)
    gc.m_step(sc)
    torch.testing.assert_close(gc.covars.cpu(), g.covars)
    gc.split(torch.Generator("cuda").manual_seed(0))
    gc.initialize(x.cuda(), generator=torch.Generator("cuda").manual_seed(0))
    assert torch.isfinite(gc.log_prob(x.cuda())).all()


# ----------------------------------------------------------------------- save and load


@pytest.mark.parametrize("ct", TYPES)
def test_save_load_round_trip(ct, tmp_path):
    _, ours = _pair(ct, 5, **PRIORS[ct])
    ours.emission.split(torch.Generator().manual_seed(0))
    x, _ = data(seed=9)
    same = pytorch_hmm.load(ours.save(tmp_path / "gmm.pt"))
    assert type(same) is MixtureGaussianHMM and same.emission.covariance_type == ct and same.num_mixtures == 2 * M
    torch.testing.assert_close(same(x), ours(x), rtol=0, atol=0)
    for name in ("covars", "covars_prior", "covars_weight", "means_weight"):
        torch.testing.assert_close(getattr(same.emission, name), getattr(ours.emission, name), rtol=0, atol=0)


# ------------------------------------------------------------------------------ errors


def test_error_covariance_type():
    with pytest.raises(HMMValueError, match=r"covariance_type must be 'diag', 'full', 'spherical' or 'tied' "
                                             r"for GaussianMixture; got 'banded'"):
        GaussianMixture(K, M, D, "banded")


def test_error_spherical_covars_shape():
    with pytest.raises(HMMDimensionError, match=r"covars for covariance_type='spherical' must be \(K, M\) == \(3, 2\); "
                                                 r"got \(3, 2, 3\)"):
        GaussianMixture(K, M, D, "spherical", covars=np.ones((K, M, D)))


def test_error_tied_covars_shape():
    # hmmlearn's GMMHMM tied is one matrix per state, not GaussianHMM's one for all
    with pytest.raises(HMMDimensionError, match=r"covars for covariance_type='tied' must be \(K, D, D\) == \(3, 3, 3\); "
                                                 r"got \(3, 2, 3, 3\)"):
        GaussianMixture(K, M, D, "tied", covars=np.ones((K, M, D, D)))


def test_error_spherical_non_positive():
    with pytest.raises(HMMValueError, match=r"covars must be positive for covariance_type='spherical'; got minimum -1"):
        GaussianMixture(K, M, D, "spherical", covars=-np.ones((K, M)))


def test_error_tied_not_positive_definite():
    cv = np.tile(np.eye(D), (K, 1, 1))
    cv[1] = np.ones((D, D))
    with pytest.raises(HMMValueError, match=r"covars for covariance_type='tied' must be symmetric positive-definite; "
                                             r"matrix \[1\] is not positive-definite"):
        GaussianMixture(K, M, D, "tied", covars=cv)


def test_error_stats_of_another_covariance_type():
    with pytest.raises(HMMValueError, match=r"stats must come from this GaussianMixture's init_stats\(\) "
                                             r"\(covariance_type='tied': obs_outer \(3, 3, 3\)\); got shapes"):
        GaussianMixture(K, M, D, "tied").m_step(GaussianMixture(K, M, D, "full").init_stats())


def test_error_prior_shape():
    with pytest.raises(HMMDimensionError, match=r"covars_weight must broadcast to \(3,\); got \(2,\)"):
        GaussianMixture(K, M, D, "tied", covars_weight=np.ones(2))
