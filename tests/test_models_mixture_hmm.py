"""MixtureGaussianHMM against hmmlearn's GMMHMM, mixture splitting, and parameter recovery."""

import itertools

import numpy as np
import pytest
import torch

from pytorch_hmm import HMM, MixtureGaussianHMM
from pytorch_hmm.emissions import Gaussian
from pytorch_hmm.errors import HMMValueError

hmm = pytest.importorskip("hmmlearn.hmm")

K, M, D = 3, 2, 2


def _gmm_pair(cov_type: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    startprob, transmat = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K) * 2, size=K)
    weights = rng.dirichlet(np.ones(M), size=K)
    means = rng.normal(scale=3.0, size=(K, M, D))
    if cov_type == "diag":
        covars = rng.uniform(0.5, 2.0, size=(K, M, D))
    else:
        a = rng.normal(size=(K, M, D, D))
        covars = a @ np.swapaxes(a, -1, -2) + np.eye(D)
    ref = hmm.GMMHMM(K, M, covariance_type=cov_type, init_params="", n_iter=1)
    ref.startprob_, ref.transmat_, ref.weights_, ref.means_, ref.covars_ = startprob, transmat, weights, means, covars
    ours = MixtureGaussianHMM(K, M, D, cov_type, transitions=torch.tensor(transmat), init_probs=torch.tensor(startprob),
                              weights=torch.tensor(weights), means=torch.tensor(means), covars=torch.tensor(covars),
                              dtype=torch.float64)
    return ref, ours


def _padded(xs):
    out = torch.zeros(len(xs), max(len(v) for v in xs), D, dtype=torch.float64)
    for i, v in enumerate(xs):
        out[i, : len(v)] = torch.tensor(v)
    return out, torch.tensor([len(v) for v in xs])


@pytest.mark.parametrize("cov_type", ["diag", "full"])
def test_gmm_hmm_matches_hmmlearn(cov_type):
    ref, ours = _gmm_pair(cov_type)
    xs = [ref.sample(n, random_state=i)[0] for i, n in enumerate([35, 22, 28])]
    x, lengths = _padded(xs)
    log_z, gamma = ours(x, lengths), ours.posteriors(x, lengths)
    paths, scores = ours.viterbi(x, lengths)
    for b, v in enumerate(xs):
        n = len(v)
        assert log_z[b].item() == pytest.approx(ref.score(v), rel=1e-10)
        np.testing.assert_allclose(gamma[b, :n].numpy(), ref.predict_proba(v), atol=1e-9)
        logprob, path = ref.decode(v)
        assert scores[b].item() == pytest.approx(logprob, rel=1e-10)
        np.testing.assert_array_equal(paths[b, :n].numpy(), path)
    # one EM step from the same parameters gives the same parameters
    ref.fit(np.concatenate(xs), [len(v) for v in xs])
    ours.fit(x, lengths, max_iter=1, verbose=False)
    for mine, theirs in [(ours.init_probs, ref.startprob_), (ours.transmat, ref.transmat_), (ours.emission.weights, ref.weights_),
                         (ours.emission.means, ref.means_), (ours.emission.covars, ref.covars_)]:
        np.testing.assert_allclose(mine.detach().numpy(), theirs, rtol=1e-6, atol=1e-12)


def test_splitting_doubles_the_mixtures_and_keeps_improving():
    ref, _ = _gmm_pair("diag", seed=3)
    xs = [ref.sample(200, random_state=i)[0] for i in range(4)]
    x, lengths = _padded(xs)
    model = MixtureGaussianHMM(K, 1, D, "diag", dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    one = model.fit(x, lengths, max_iter=30, verbose=False, generator=g)
    history = model.fit(x, lengths, max_iter=30, verbose=False, generator=g, splits=1, initialize=False)
    assert model.num_mixtures == 2 and model.emission.means.shape == (K, 2, D)
    assert history[-1] > one[-1]  # two components per state explain 2-component data better


def test_splits_must_be_non_negative():
    with pytest.raises(HMMValueError, match="splits must be a non-negative int; got -1"):
        MixtureGaussianHMM(K, 1, D).fit(torch.randn(1, 5, D), splits=-1, verbose=False)


def test_fit_recovers_a_known_model():
    true_means = torch.tensor([[-4.0, 0.0], [0.0, 4.0], [4.0, 0.0]], dtype=torch.float64)
    true_trans = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]], dtype=torch.float64)
    truth = HMM(Gaussian(K, D, means=true_means, covars=torch.full((K, D), 0.5, dtype=torch.float64), dtype=torch.float64),
                transitions=true_trans, init_probs=torch.full((K,), 1 / K, dtype=torch.float64))
    x, states = truth.sample(20, 150, generator=torch.Generator().manual_seed(1))
    assert x.shape == (20, 150, D) and states.shape == (20, 150)
    model = HMM(Gaussian(K, D, dtype=torch.float64))
    model.fit(x, max_iter=100, tol=1e-6, verbose=False, generator=torch.Generator().manual_seed(2))
    # match states by the permutation that best aligns the means
    perm = min(itertools.permutations(range(K)), key=lambda p: (model.emission.means[list(p)] - true_means).abs().sum().item())
    perm = list(perm)
    torch.testing.assert_close(model.emission.means.detach()[perm], true_means, atol=0.1, rtol=0)
    torch.testing.assert_close(model.emission.covars.detach()[perm], torch.full((K, D), 0.5, dtype=torch.float64), atol=0.08, rtol=0)
    torch.testing.assert_close(model.transmat.detach()[perm][:, perm], true_trans, atol=0.04, rtol=0)
