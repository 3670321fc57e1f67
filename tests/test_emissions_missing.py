"""Missing values (NaN entries of valid frames) in Gaussian emissions, ``missing="marginalize"``:
marginal densities of the observed dimensions (scipy, pomegranate), per-dimension EM statistics
(pomegranate's Normal and DenseHMM with masked tensors, a numpy closed form with priors), and
bitwise the old results without NaN."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal, norm

import pytorch_hmm as ph
from pytorch_hmm.emissions import Gaussian
from pytorch_hmm.errors import HMMValueError

K, D = 3, 4
TYPES = ["diag", "spherical", "full", "tied"]


def _emission(ct: str, seed: int = 0, **kw) -> Gaussian:
    g = torch.Generator().manual_seed(seed)
    em = Gaussian(K, D, ct, dtype=torch.float64, missing="marginalize", **kw)
    em.means = 2.0 * torch.randn(K, D, generator=g, dtype=torch.float64)
    if ct == "diag":
        em.covars = 0.5 + torch.rand(K, D, generator=g, dtype=torch.float64)
    elif ct == "spherical":
        em.covars = 0.5 + torch.rand(K, generator=g, dtype=torch.float64)
    else:
        a = torch.randn(K, D, D, generator=g, dtype=torch.float64)
        cov = a @ a.transpose(-1, -2) / D + 0.5 * torch.eye(D, dtype=torch.float64)
        em.covars = cov if ct == "full" else cov[0]
    return em


def _with_holes(shape, rate: float, seed: int) -> torch.Tensor:
    """Random data with about ``rate`` of the entries NaN, one frame entirely missing."""
    g = torch.Generator().manual_seed(seed)
    x = 2.0 * torch.randn(shape, generator=g, dtype=torch.float64)
    holes = torch.rand(shape, generator=g) < rate
    x = x.masked_fill(holes, float("nan"))
    x[0, 1] = float("nan")
    return x


# ------------------------------------------------------------------------------ log_prob


@pytest.mark.parametrize("ct", TYPES)
def test_log_prob_is_the_marginal_density_of_the_observed_dimensions(ct) -> None:
    em = _emission(ct)
    x = _with_holes((2, 7, D), 0.3, seed=1)
    got = em.log_prob(x).detach().numpy()
    mu, cov = em.means.detach().numpy(), em.covariance_matrices.detach().numpy()
    worst = 0.0
    for b in range(2):
        for t in range(7):
            row = x[b, t].numpy()
            seen = ~np.isnan(row)
            for k in range(K):
                if not seen.any():
                    want = 0.0
                elif ct in ("diag", "spherical"):
                    want = norm.logpdf(row[seen], mu[k, seen], np.sqrt(np.diag(cov[k])[seen])).sum()
                else:
                    want = multivariate_normal(mu[k, seen], cov[k][np.ix_(seen, seen)]).logpdf(row[seen])
                worst = max(worst, abs(got[b, t, k] - want))
    assert np.isnan(x.numpy()).any(axis=-1).sum() >= 5  # several incomplete frames
    assert worst < 1e-10


@pytest.mark.parametrize("ct", TYPES)
def test_log_prob_batch_equals_items_and_padding_stays_padding(ct) -> None:
    em = _emission(ct, seed=2)
    seqs = [_with_holes((1, n, D), 0.25, seed=n)[0] for n in (6, 3, 5)]
    x = torch.full((3, 6, D), float("nan"), dtype=torch.float64)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    for b, s in enumerate(seqs):
        x[b, : len(s)], mask[b, : len(s)] = s, True
    batch = em.log_prob(x, mask)
    for b, s in enumerate(seqs):
        torch.testing.assert_close(batch[b, : len(s)], em.log_prob(s[None])[0], rtol=1e-12, atol=1e-12)
        assert bool((batch[b, len(s):] == 0).all())


def test_log_prob_float32_matches_float64() -> None:
    em = _emission("diag", seed=3)
    x = _with_holes((2, 9, D), 0.3, seed=3)
    em32 = Gaussian(K, D, "diag", means=em.means.detach().float(), covars=em.covars.detach().float(),
                    missing="marginalize")
    torch.testing.assert_close(em32.log_prob(x.float()).double(), em.log_prob(x).detach(), rtol=1e-5, atol=1e-4)


def test_log_prob_equals_pomegranates_normal_on_masked_tensors() -> None:
    pytest.importorskip("pomegranate")
    from pomegranate.distributions import Normal

    em = _emission("diag", seed=4)
    x = _with_holes((1, 12, D), 0.3, seed=4)[0]
    got = em.log_prob(x[None])[0].detach()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.masked is a prototype
        masked = torch.masked.MaskedTensor(x.nan_to_num(0.0), mask=~torch.isnan(x))
        for k in range(K):
            ref = Normal(em.means[k].detach().clone(), em.covars[k].detach().clone(), covariance_type="diag")
            want = ref.log_probability(masked)._masked_data  # a frame with nothing observed: 0
            np.testing.assert_allclose(got[:, k].numpy(), want.numpy(), rtol=1e-12, atol=1e-12)


def test_gradients_skip_the_missing_dimensions() -> None:
    em = _emission("diag", seed=5)
    x = 2.0 * torch.randn(1, 8, D, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    x[..., 2] = float("nan")  # dimension 2 never observed
    em.log_prob(x).sum().backward()
    assert bool((em.loc.grad[:, 2] == 0).all()) and bool((em.log_var.grad[:, 2] == 0).all())
    assert bool((em.loc.grad[:, [0, 1, 3]] != 0).all())
    em.zero_grad()
    ref = _emission("diag", seed=5)
    keep = [0, 1, 3]
    sub = Gaussian(K, 3, "diag", means=ref.means.detach()[:, keep], covars=ref.covars.detach()[:, keep],
                   dtype=torch.float64)
    sub.log_prob(x[..., keep]).sum().backward()
    em.log_prob(x).sum().backward()
    torch.testing.assert_close(em.loc.grad[:, keep], sub.loc.grad, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------ EM


@pytest.mark.parametrize("ct", ["diag", "spherical"])
def test_em_step_equals_pomegranates_normal_with_missing_values(ct) -> None:
    """diag: pomegranate's M-step; spherical: its per-dimension means, and the pooled variance
    sum_d (Q_d - S_d^2 / N_d) / sum_d N_d (pomegranate averages the per-dimension variances)."""
    pytest.importorskip("pomegranate")
    from pomegranate.distributions import Normal

    em = _emission(ct, seed=6, covars_prior=0.0, min_covar=0.0)
    x = _with_holes((2, 15, D), 0.25, seed=6)
    post = torch.softmax(torch.randn(2, 15, K, dtype=torch.float64, generator=torch.Generator().manual_seed(6)), -1)
    stats = em.init_stats()
    em.accumulate(stats, x, post)
    em.m_step(stats)
    flat, g = x.reshape(-1, D), post.reshape(-1, K)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masked = torch.masked.MaskedTensor(flat.nan_to_num(0.0), mask=~torch.isnan(flat))
        for k in range(K):
            ref = Normal(torch.zeros(D, dtype=torch.float64), torch.ones(D, dtype=torch.float64),
                         covariance_type="diag" if ct == "diag" else "sphere").double()
            ref.summarize(masked, sample_weight=g[:, k])
            w, s1, s2 = (t.detach().numpy().copy() for t in (ref._w_sum, ref._xw_sum, ref._xxw_sum))
            ref.from_summaries()
            np.testing.assert_allclose(em.means[k].detach().numpy(), ref.means.detach().numpy(), rtol=1e-11, atol=1e-12)
            if ct == "diag":
                np.testing.assert_allclose(em.covars[k].detach().numpy(), ref.covs.detach().numpy(), rtol=1e-10)
            else:  # pomegranate's per-dimension sums (its mass per dimension), pooled
                assert np.ptp(w) > 0.1  # the dimensions really have unequal mass
                pooled = (s2 - s1**2 / w).sum() / w.sum()
                np.testing.assert_allclose(em.covars[k].detach().numpy(), pooled, rtol=1e-10)


def test_em_step_with_priors_equals_the_per_dimension_closed_form() -> None:
    em = _emission("diag", seed=7, means_prior=0.5, means_weight=2.0, covars_prior=0.3, covars_weight=3.0, min_covar=0.0)
    x = _with_holes((3, 10, D), 0.3, seed=7)
    x[:, :, 3] = float("nan")
    x[0, 0, 3] = 1.5  # dimension 3 observed once
    post = torch.softmax(torch.randn(3, 10, K, dtype=torch.float64, generator=torch.Generator().manual_seed(7)), -1)
    stats = em.init_stats()
    em.accumulate(stats, x, post)
    em.m_step(stats)
    xs, g = x.reshape(-1, D).numpy(), post.reshape(-1, K).numpy()
    seen = ~np.isnan(xs)
    xz = np.where(seen, xs, 0.0)
    n = g.T @ seen  # (K, D) posterior mass where observed
    s1, s2 = g.T @ xz, g.T @ xz**2
    mu = (2.0 * 0.5 + s1) / (2.0 + n)
    var = (0.3 + 2.0 * (mu - 0.5) ** 2 + s2 - 2 * mu * s1 + mu**2 * n) / (3.0 - 1.0 + n)
    np.testing.assert_allclose(em.means.detach().numpy(), mu, rtol=1e-11)
    np.testing.assert_allclose(em.covars.detach().numpy(), var, rtol=1e-10)


def test_one_hmm_em_step_equals_pomegranates_dense_hmm_with_missing_values() -> None:
    pytest.importorskip("pomegranate")
    from pomegranate.distributions import Normal
    from pomegranate.hmm import DenseHMM
    from pytorch_hmm.transitions import LearnedFinal

    rng = np.random.default_rng(8)
    start, trans, ends = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K) * 2, size=K), rng.uniform(0.05, 0.3, K)
    means, covars = rng.normal(size=(K, D)) * 2, rng.uniform(0.5, 2.0, (K, D))
    x = _with_holes((4, 12, D), 0.15, seed=8)
    dists = [Normal(torch.tensor(means[i]), torch.tensor(covars[i]), covariance_type="diag") for i in range(K)]
    ref = DenseHMM(dists, edges=torch.tensor(trans * (1 - ends)[:, None]), starts=torch.tensor(start),
                   ends=torch.tensor(ends), max_iter=1).double()
    ours = ph.HMM(Gaussian(K, D, "diag", means=torch.tensor(means), covars=torch.tensor(covars), dtype=torch.float64,
                           covars_prior=0.0, missing="marginalize"),
                  transitions=torch.tensor(trans), initial=torch.tensor(start),
                  final=LearnedFinal(torch.log(torch.tensor(ends))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masked = torch.masked.MaskedTensor(x.nan_to_num(0.0), mask=~torch.isnan(x))
        want = ref.log_probability(masked)
        ref.fit(masked)
    with torch.no_grad():
        np.testing.assert_allclose(ours(x).numpy(), want.numpy(), rtol=1e-11)
    ours.fit(x, max_iter=1, verbose=False, initialize=False)
    np.testing.assert_allclose(ours.init_probs.detach().numpy(), ref.starts.exp().numpy(), atol=1e-12)
    np.testing.assert_allclose(ours.emission.means.detach().numpy(),
                               torch.stack([d.means for d in ref.distributions]).numpy(), atol=1e-10)
    np.testing.assert_allclose(ours.emission.covars.detach().numpy(),
                               torch.stack([d.covs for d in ref.distributions]).numpy(), atol=1e-10)


def _hmm_data(seed: int, num: int = 12, length: int = 40):
    g = torch.Generator().manual_seed(seed)
    means = torch.tensor([[0.0, 0.0, 0.0], [4.0, 1.0, -2.0], [-3.0, 4.0, 2.0]], dtype=torch.float64)
    trans = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]], dtype=torch.float64)
    seqs = []
    for _ in range(num):
        s = [int(torch.randint(0, 3, (1,), generator=g))]
        for _ in range(length - 1):
            s.append(int(torch.multinomial(trans[s[-1]], 1, generator=g)))
        seqs.append(means[s] + 0.7 * torch.randn(length, 3, generator=g, dtype=torch.float64))
    return torch.stack(seqs), means


@pytest.mark.parametrize("ct", ["diag", "spherical"])
def test_fit_with_ten_percent_missing_stays_close_to_the_complete_fit(ct) -> None:
    x, true_means = _hmm_data(9)
    holes = torch.rand(x.shape, generator=torch.Generator().manual_seed(10)) < 0.1
    fits = {}
    for name, data in (("complete", x), ("missing", x.masked_fill(holes, float("nan")))):
        model = ph.HMM(Gaussian(3, 3, ct, dtype=torch.float64, missing="marginalize"))
        history = model.fit(data, max_iter=30, verbose=False, generator=torch.Generator().manual_seed(0))
        assert np.isfinite(history).all()
        assert all(b >= a - 1e-10 * abs(a) for a, b in zip(history, history[1:]))  # EM never goes down
        order = torch.argsort(model.emission.means.detach()[:, 0])
        fits[name] = (model.emission.means.detach()[order], model.emission.covars.detach()[order], model.transmat.detach())
    assert 0.08 < float(holes.double().mean()) < 0.12
    torch.testing.assert_close(fits["missing"][0], fits["complete"][0], rtol=0, atol=0.1)
    torch.testing.assert_close(fits["missing"][1], fits["complete"][1], rtol=0.15, atol=0.0)
    torch.testing.assert_close(fits["complete"][0], true_means[torch.argsort(true_means[:, 0])], rtol=0, atol=0.15)


@pytest.mark.parametrize("ct", TYPES)
def test_without_nan_the_results_are_bitwise_unchanged(ct) -> None:
    x, _ = _hmm_data(11, num=4, length=20)
    lengths = torch.tensor([20, 13, 20, 7])
    padded = x.clone()
    for b, n in enumerate(lengths.tolist()):
        padded[b, n:] = float("nan")  # NaN in padded frames is padding, not a missing value
    params = {}
    for missing in ("error", "marginalize"):
        model = ph.HMM(Gaussian(3, 3, ct, dtype=torch.float64, missing=missing))
        history = model.fit(padded, lengths, max_iter=4, tol=0.0, verbose=False, generator=torch.Generator().manual_seed(1))
        params[missing] = (history, [p.detach().clone() for p in model.parameters()],
                           model.emission.log_prob(padded, lengths[:, None] > torch.arange(20)).detach())
    assert params["error"][0] == params["marginalize"][0]
    assert all(torch.equal(a, b) for a, b in zip(params["error"][1], params["marginalize"][1]))
    assert torch.equal(params["error"][2], params["marginalize"][2])


def test_initialize_with_missing_values() -> None:
    x, true_means = _hmm_data(12, num=6, length=40)
    holes = torch.rand(x.shape, generator=torch.Generator().manual_seed(12)) < 0.1
    data = x.masked_fill(holes, float("nan"))
    em = Gaussian(3, 3, "full", dtype=torch.float64, missing="marginalize", min_covar=0.0)
    em.initialize(data, generator=torch.Generator().manual_seed(0))
    order = torch.argsort(em.means.detach()[:, 0])
    torch.testing.assert_close(em.means.detach()[order], true_means[torch.argsort(true_means[:, 0])], rtol=0, atol=0.3)
    flat = data.reshape(-1, 3).numpy()
    want_var = np.nanvar(flat, axis=0, ddof=1)  # each dimension from its observed values
    np.testing.assert_allclose(np.diag(em.covars[0].detach().numpy()), want_var, rtol=1e-12)
    np.linalg.cholesky(em.covars[0].detach().numpy())  # positive-definite


@pytest.mark.parametrize("ct", ["full", "tied"])
def test_full_and_tied_em_step_equals_the_incomplete_data_closed_form(ct) -> None:
    """Missing entries as hidden variables: x_M -> E[x_M | x_O, k], plus the conditional covariance."""
    em = _emission(ct, seed=18, covars_prior=0.0, min_covar=0.0)
    x = _with_holes((2, 12, D), 0.3, seed=18)
    post = torch.softmax(torch.randn(2, 12, K, dtype=torch.float64, generator=torch.Generator().manual_seed(18)), -1)
    mu, cov = em.means.detach().numpy().copy(), em.covariance_matrices.detach().numpy()  # before the M-step
    stats = em.init_stats()
    em.accumulate(stats, x, post)
    em.m_step(stats)
    xs, g = x.reshape(-1, D).numpy(), post.reshape(-1, K).numpy()
    n, s1, s2 = np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D))
    for t in range(xs.shape[0]):
        o = ~np.isnan(xs[t])
        m = ~o
        for k in range(K):
            xhat, extra = xs[t].copy(), np.zeros((D, D))
            if m.any():
                if o.any():
                    gain = np.linalg.solve(cov[k][np.ix_(o, o)], cov[k][np.ix_(o, m)])
                    xhat[m] = mu[k, m] + (xs[t, o] - mu[k, o]) @ gain
                    extra[np.ix_(m, m)] = cov[k][np.ix_(m, m)] - cov[k][np.ix_(m, o)] @ gain
                else:
                    xhat[m], extra[np.ix_(m, m)] = mu[k, m], cov[k][np.ix_(m, m)]
            n[k] += g[t, k]
            s1[k] += g[t, k] * xhat
            s2[k] += g[t, k] * (np.outer(xhat, xhat) + extra)
    want_mu = s1 / n[:, None]
    scatter = s2 - n[:, None, None] * want_mu[:, :, None] * want_mu[:, None, :]
    want_cov = scatter / n[:, None, None] if ct == "full" else scatter.sum(0) / n.sum()
    np.testing.assert_allclose(em.means.detach().numpy(), want_mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(em.covars.detach().numpy(), want_cov, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("ct", ["full", "tied"])
def test_full_and_tied_fit_with_ten_percent_missing_stays_close_to_the_complete_fit(ct) -> None:
    x, true_means = _hmm_data(19)
    holes = torch.rand(x.shape, generator=torch.Generator().manual_seed(19)) < 0.1
    fits = {}
    for name, data in (("complete", x), ("missing", x.masked_fill(holes, float("nan")))):
        model = ph.HMM(Gaussian(3, 3, ct, dtype=torch.float64, missing="marginalize"))
        history = model.fit(data, max_iter=30, verbose=False, generator=torch.Generator().manual_seed(0))
        assert np.isfinite(history).all()
        assert all(b >= a - 1e-10 * abs(a) for a, b in zip(history, history[1:]))  # EM never goes down
        order = torch.argsort(model.emission.means.detach()[:, 0])
        covars = model.emission.covariance_matrices.detach()[order]
        fits[name] = (model.emission.means.detach()[order], covars)
    torch.testing.assert_close(fits["missing"][0], fits["complete"][0], rtol=0, atol=0.1)
    torch.testing.assert_close(fits["missing"][1], fits["complete"][1], rtol=0, atol=0.1)
    torch.testing.assert_close(fits["complete"][0], true_means[torch.argsort(true_means[:, 0])], rtol=0, atol=0.25)


# --------------------------------------------------------------------------- save / load


def test_missing_is_saved_with_the_model(tmp_path) -> None:
    model = ph.HMM(_emission("diag", seed=13))
    path = model.save(tmp_path / "m.pt")
    back = ph.load(path)
    assert back.emission.missing == "marginalize"
    x = _with_holes((2, 6, D), 0.3, seed=13)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)
    assert ph.load(ph.HMM(Gaussian(K, D)).save(tmp_path / "d.pt")).emission.missing == "error"


# --------------------------------------------------------------------------------- errors


def test_nan_is_still_an_error_by_default() -> None:
    x = _with_holes((1, 5, D), 0.3, seed=14)
    with pytest.raises(HMMValueError, match=r"x must be finite at valid frames; got NaN or inf in \d+ frame\(s\)"):
        Gaussian(K, D).to(torch.float64).log_prob(x)


def test_inf_is_an_error_even_when_marginalising() -> None:
    x = _with_holes((1, 5, D), 0.3, seed=15)
    x[0, 3, 0] = float("inf")
    with pytest.raises(HMMValueError, match=r"x must be finite at valid frames; got NaN or inf in 1 frame\(s\)"):
        _emission("diag").log_prob(x)


def test_bad_missing_mode() -> None:
    with pytest.raises(HMMValueError, match=r"missing must be one of 'error', 'marginalize'; got 'drop'"):
        Gaussian(K, D, missing="drop")


def test_initialize_needs_an_observed_value_in_every_dimension() -> None:
    x = _with_holes((1, 10, D), 0.1, seed=17)
    x[..., 1] = float("nan")
    with pytest.raises(HMMValueError, match=r"initialize needs an observed value in every dimension; "
                                            r"dimension\(s\) \[1\] are missing in every valid frame"):
        Gaussian(K, D, dtype=torch.float64, missing="marginalize").initialize(x)
