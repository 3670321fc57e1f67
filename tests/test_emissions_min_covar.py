"""The variance floor (``min_covar`` / ``var_floor``) of Gaussian and GaussianMixture: EM against
hmmlearn on features with variances from 1e-5 to 1e2, the floor's closed form (numpy), the guard
for constant features and collapsing components, and the explicit absolute floor."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from pytorch_hmm import HMM, MixtureGaussianHMM, load
from pytorch_hmm.alignment.acoustic import _flat_start
from pytorch_hmm.emissions import Gaussian, GaussianMixture
from pytorch_hmm.errors import HMMValueError

pytestmark = pytest.mark.usefixtures("one_thread")

VARIANCES = np.logspace(-5, 2, 8)  # true per-dimension variances
K, D = 3, len(VARIANCES)


def hmm_data(seed=0, n=3, t=150):
    """Sequences from a 3-state HMM whose dimension d has variance about VARIANCES[d]."""
    rng = np.random.default_rng(seed)
    sd = np.sqrt(VARIANCES)
    means = rng.normal(size=(K, D)) * 2 * sd
    scale = rng.uniform(0.5, 1.5, size=(K, D)) * sd
    xs = []
    for _ in range(n):
        z = [int(rng.integers(K))]
        for _ in range(t - 1):
            z.append(z[-1] if rng.random() < 0.9 else int(rng.integers(K)))
        z = np.array(z)
        xs.append(means[z] + rng.normal(size=(t, D)) * scale[z])
    return xs


def start(xs, seed=0, m=None):
    x = np.concatenate(xs)
    rng = np.random.default_rng(seed + 100)
    shape = (K, D) if m is None else (K, m, D)
    means = x[rng.choice(len(x), int(np.prod(shape[:-1])), replace=False)].reshape(shape)
    return means, np.broadcast_to(x.var(0), shape).copy()


def _quiet():
    logging.getLogger("hmmlearn").setLevel(logging.ERROR)


@pytest.mark.parametrize("n_iter", [1, 5])
def test_default_floor_fits_small_variances_as_hmmlearn(n_iter):
    """The default (relative) floor never binds here: EM equals hmmlearn's GaussianHMM (whose
    M-step has no floor) to 1e-9, on dimensions with variances 1e-5 .. 1e2."""
    hmm = pytest.importorskip("hmmlearn.hmm")
    _quiet()
    xs = hmm_data()
    means, covars = start(xs)
    trans = np.full((K, K), 1.0 / K)
    ref = hmm.GaussianHMM(K, "diag", init_params="", n_iter=n_iter, tol=0.0)
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = np.full(K, 1.0 / K), trans, means, covars
    ref.fit(np.concatenate(xs), [len(v) for v in xs])
    em = Gaussian(K, D, "diag", means=torch.tensor(means), covars=torch.tensor(covars), dtype=torch.float64)
    ours = HMM(em, torch.tensor(trans), init_probs=torch.full((K,), 1.0 / K, dtype=torch.float64))
    x = torch.tensor(np.stack(xs))
    ours.fit(x, max_iter=n_iter, tol=0.0, verbose=False, initialize=False)
    np.testing.assert_allclose(em.means.detach().numpy(), ref.means_, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(em.covars.detach().numpy(), ref.covars_[:, range(D), range(D)], rtol=1e-9, atol=1e-16)
    assert float(ours(x).sum().detach()) == pytest.approx(ref.score(np.concatenate(xs), [len(v) for v in xs]), rel=1e-9)
    # the former default, an absolute floor of 1e-3, caps the four smallest variances and loses
    old = Gaussian(K, D, "diag", means=torch.tensor(means), covars=torch.tensor(covars), dtype=torch.float64, min_covar=1e-3)
    capped = HMM(old, torch.tensor(trans), init_probs=torch.full((K,), 1.0 / K, dtype=torch.float64))
    capped.fit(x, max_iter=n_iter, tol=0.0, verbose=False, initialize=False)
    assert float(old.covars.min().detach()) == pytest.approx(1e-3, rel=1e-12)
    assert float(capped(x).sum().detach()) < float(ours(x).sum().detach()) - 100.0


def test_default_floor_gmm_matches_hmmlearn():
    hmm = pytest.importorskip("hmmlearn.hmm")
    _quiet()
    m = 2
    xs = hmm_data(seed=1)
    means, covars = start(xs, seed=1, m=m)
    trans, w = np.full((K, K), 1.0 / K), np.full((K, m), 1.0 / m)
    ref = hmm.GMMHMM(K, m, "diag", init_params="", n_iter=3, tol=0.0)
    ref.startprob_, ref.transmat_, ref.weights_, ref.means_, ref.covars_ = np.full(K, 1.0 / K), trans, w, means, covars
    ref.fit(np.concatenate(xs), [len(v) for v in xs])
    ours = MixtureGaussianHMM(K, m, D, "diag", transitions=torch.tensor(trans), init_probs=torch.full((K,), 1.0 / K, dtype=torch.float64),
                              weights=torch.tensor(w), means=torch.tensor(means), covars=torch.tensor(covars), dtype=torch.float64)
    ours.fit(torch.tensor(np.stack(xs)), max_iter=3, tol=0.0, verbose=False, initialize=False)
    np.testing.assert_allclose(ours.emission.covars.detach().numpy(), ref.covars_, rtol=1e-9, atol=1e-16)
    np.testing.assert_allclose(ours.emission.means.detach().numpy(), ref.means_, rtol=1e-9, atol=1e-14)


def _one_state_collapsed(ct, cls=Gaussian, **kw):
    """Two states: state 0 sees ten identical frames (zero scatter), state 1 the rest."""
    rng = np.random.default_rng(3)
    scale = np.array([1e-4, 1.0, 30.0])
    pts = rng.normal(size=(60, 3)) * scale
    pts[:10] = pts[0]
    post = np.zeros((60, 2))
    post[:10, 0], post[10:, 1] = 1.0, 1.0
    if cls is GaussianMixture:  # its scatter is about the E-step means: put them at the state means
        g = cls(2, 1, 3, ct, means=np.stack([pts[:1], pts[10:].mean(0, keepdims=True)]), dtype=torch.float64, **kw)
    else:
        g = cls(2, 3, ct, dtype=torch.float64, **kw)
    x, p = torch.tensor(pts)[None], torch.tensor(post)[None]
    s = g.init_stats()
    g.accumulate(s, x, p)
    g.m_step(s)
    return g, pts


@pytest.mark.parametrize("ct", ["diag", "spherical", "full", "tied"])
def test_floor_is_a_fraction_of_the_data_variance(ct):
    g, pts = _one_state_collapsed(ct, covars_prior=0.0)
    floor = 1e-3 * pts.var(0)
    if ct == "diag":
        np.testing.assert_allclose(g.covars[0].detach().numpy(), floor, rtol=1e-9)
    elif ct == "spherical":
        assert float(g.covars[0].detach()) == pytest.approx(floor.mean(), rel=1e-9)
    elif ct == "full":
        np.testing.assert_allclose(g.covars[0].detach().numpy(), np.diag(floor), rtol=1e-9, atol=1e-15)
        # state 1 has more scatter than the floor in every direction: unchanged
        rest = pts[10:]
        np.testing.assert_allclose(g.covars[1].detach().numpy(), np.cov(rest.T, bias=True), rtol=1e-9)
    else:  # the pooled scatter, floored only where it falls below F
        scatter = np.cov(pts[10:].T, bias=True) * 50 / 60
        want = scatter if np.linalg.eigvalsh(scatter / np.sqrt(np.outer(floor, floor))).min() >= 1 else None
        assert want is not None
        np.testing.assert_allclose(g.covars.detach().numpy(), want, rtol=1e-9)


@pytest.mark.parametrize("ct", ["diag", "full"])
def test_mixture_floor_is_a_fraction_of_the_data_variance(ct):
    g, pts = _one_state_collapsed(ct, cls=GaussianMixture)
    floor = 1e-3 * pts.var(0)
    want = floor if ct == "diag" else np.diag(floor)
    np.testing.assert_allclose(g.covars[0, 0].detach().numpy(), want, rtol=1e-9, atol=1e-15)
    scatter = np.cov(pts[10:].T, bias=True)
    np.testing.assert_allclose(g.covars[1, 0].detach().numpy(), np.diag(scatter) if ct == "diag" else scatter, rtol=1e-9)


def test_full_floor_lifts_only_the_low_directions():
    """Scatter on a line: the floored matrix is >= F (F^-1/2 Sigma F^-1/2 has eigenvalues >= 1)
    and keeps the variance along the line, computed independently with numpy."""
    t = np.linspace(-1, 1, 9)
    pts = np.stack([t, 200 * t], -1)
    g = Gaussian(1, 2, "full", dtype=torch.float64, covars_prior=0.0, var_floor=0.01)
    s = g.init_stats()
    g.accumulate(s, torch.tensor(pts)[None], torch.ones(1, 9, 1, dtype=torch.float64))
    g.m_step(s)
    f = 0.01 * pts.var(0)
    root = np.sqrt(f)
    scaled = np.cov(pts.T, bias=True) / np.outer(root, root)
    evals, evecs = np.linalg.eigh(scaled)
    want = (evecs * np.maximum(evals, 1.0)) @ evecs.T * np.outer(root, root)
    got = g.covars[0].detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert np.linalg.eigvalsh(got / np.outer(root, root)).min() == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("ct", ["diag", "spherical", "full", "tied"])
def test_initialize_adds_the_relative_floor(ct):
    rng = np.random.default_rng(4)
    pts = rng.normal(size=(300, 3)) * np.array([1e-3, 1.0, 50.0]) + np.array([[0.0, 5, 0]]) * rng.integers(0, 2, (300, 1))
    g = Gaussian(2, 3, ct, dtype=torch.float64, var_floor=0.01)
    g.initialize(torch.tensor(pts)[None], generator=torch.Generator().manual_seed(0))
    cv = np.cov(pts.T) + np.diag(0.01 * pts.var(0))
    want = {"diag": np.tile(np.diag(cv), (2, 1)), "spherical": np.full(2, np.diag(cv).mean()),
            "full": np.tile(cv, (2, 1, 1)), "tied": cv}[ct]
    np.testing.assert_allclose(g.covars.detach().numpy(), want, rtol=1e-9)


def test_explicit_min_covar_is_absolute_and_ignores_var_floor():
    g, _ = _one_state_collapsed("diag", covars_prior=0.0, min_covar=0.02, var_floor=0.5)
    np.testing.assert_allclose(g.covars[0].detach().numpy(), np.full(3, 0.02), rtol=1e-12)
    g, pts = _one_state_collapsed("diag", covars_prior=0.0, min_covar=0.0)
    assert float(g.covars[0].min().detach()) < 1e-300  # no floor at all: the collapse hmmlearn also shows


def test_constant_feature_keeps_a_positive_floor():
    x = torch.zeros(1, 50, 2, dtype=torch.float64)
    x[0, :, 0] = 3.0  # constant
    x[0, :, 1] = torch.linspace(0, 1, 50, dtype=torch.float64)
    g = Gaussian(1, 2, "diag", dtype=torch.float64, covars_prior=0.0)
    s = g.init_stats()
    g.accumulate(s, x, torch.ones(1, 50, 1, dtype=torch.float64))
    g.m_step(s)
    eps = torch.finfo(torch.float64).eps
    assert float(g.covars[0, 0].detach()) == pytest.approx(1e-3 * eps * (1 + 9.0), rel=1e-6)
    assert torch.isfinite(g.log_prob(x)).all()


def test_collapsing_component_stays_finite_under_em():
    """Twenty identical frames: with min_covar=0 a component collapses onto them (NaN scores);
    the default floor keeps every variance at or above 1e-3 of the data variance."""
    xs = hmm_data(seed=0, n=2, t=150)
    for v in xs:
        v[100:120] = v[100]
    x = torch.tensor(np.stack(xs))
    means, covars = start(xs, m=2)
    w = torch.full((K, 2), 0.5, dtype=torch.float64)
    model = MixtureGaussianHMM(K, 2, D, "diag", weights=w, means=torch.tensor(means), covars=torch.tensor(covars), dtype=torch.float64)
    history = model.fit(x, max_iter=25, tol=0.0, verbose=False, initialize=False)
    assert np.isfinite(history).all()
    floor = 1e-3 * np.concatenate(xs).var(0)
    assert (model.emission.covars.detach().numpy() >= floor * (1 - 1e-9)).all()


def test_flat_start_uses_the_floor():
    frames = torch.zeros(40, 2, dtype=torch.float64)
    frames[:, 1] = torch.linspace(-1, 1, 40, dtype=torch.float64)
    em = GaussianMixture(2, 1, 2, dtype=torch.float64)
    _flat_start(em, [frames[:25], frames[25:]])  # blocks of frames (one per utterance)
    eps = torch.finfo(torch.float64).eps
    want = torch.tensor([1e-3 * eps, float(frames[:, 1].var(unbiased=False))], dtype=torch.float64)
    torch.testing.assert_close(em.covars[0, 0].detach(), want, rtol=1e-9, atol=0)
    em = GaussianMixture(2, 1, 2, dtype=torch.float64, min_covar=0.05)
    _flat_start(em, [frames])
    assert float(em.covars[0, 0, 0].detach()) == pytest.approx(0.05, rel=1e-12)


@pytest.mark.parametrize("kw", [dict(var_floor=0.02), dict(min_covar=0.004)])
def test_floor_settings_survive_save_and_load(kw, tmp_path):
    model = MixtureGaussianHMM(2, 2, 3, "diag", dtype=torch.float64, **kw)
    loaded = load(model.save(tmp_path / "m.pt"))
    assert loaded.emission.var_floor == model.emission.var_floor
    assert loaded.emission.min_covar == model.emission.min_covar
    gauss = HMM(Gaussian(2, 3, dtype=torch.float64, **kw))
    back = load(gauss.save(tmp_path / "g.pt"))
    assert (back.emission.var_floor, back.emission.min_covar) == (gauss.emission.var_floor, gauss.emission.min_covar)


@pytest.mark.parametrize("cls", [Gaussian, GaussianMixture])
@pytest.mark.parametrize("value", [-0.1, 1.0, float("nan")])
def test_error_var_floor(cls, value):
    args = (2, 2, 3) if cls is GaussianMixture else (2, 3)
    with pytest.raises(HMMValueError, match=r"var_floor must be a finite number >= 0 below 1; got"):
        cls(*args, var_floor=value)
