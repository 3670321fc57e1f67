"""hmmlearn's calls on HMM (score, score_samples, predict, predict_proba, n_parameters, aic, bic)
against hmmlearn itself on the same parameters, with hmmlearn's concatenated (X, lengths) input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pytorch_hmm import HMM, MixtureGaussianHMM
from pytorch_hmm.emissions import Categorical, Gaussian
from pytorch_hmm.errors import HMMTypeError, HMMValueError

hmm = pytest.importorskip("hmmlearn.hmm")
K, D, M, S = 3, 2, 2, 4
LENGTHS = [30, 17, 25]


def _chain(rng):
    start = rng.dirichlet(np.ones(K))
    trans = rng.dirichlet(np.ones(K) * 2, size=K)
    return start, trans


def _gaussian_pair(ct: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    start, trans = _chain(rng)
    means = rng.normal(size=(K, D)) * 2
    a = rng.normal(size=(K, D, D))
    covars = {"diag": rng.uniform(0.5, 2.0, (K, D)), "spherical": rng.uniform(0.5, 2.0, K),
              "full": a @ np.swapaxes(a, -1, -2) / D + 0.5 * np.eye(D),
              "tied": a[0] @ a[0].T / D + 0.5 * np.eye(D)}[ct]
    ref = hmm.GaussianHMM(K, covariance_type=ct, init_params="", params="")
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = start, trans, means, covars
    ours = HMM(Gaussian(K, D, ct, means=torch.tensor(means), covars=torch.tensor(covars), dtype=torch.float64),
               transitions=torch.tensor(trans), initial=torch.tensor(start))
    x = rng.normal(size=(sum(LENGTHS), D)) * 2
    return ours, ref, x


@pytest.mark.parametrize("ct", ["diag", "full", "spherical", "tied"])
def test_gaussian_hmm_matches_hmmlearn(ct):
    ours, ref, x = _gaussian_pair(ct)
    assert ours.score(x, LENGTHS) == pytest.approx(ref.score(x, LENGTHS), rel=1e-10)
    logprob, post = ours.score_samples(x, LENGTHS)
    ref_logprob, ref_post = ref.score_samples(x, LENGTHS)
    assert logprob == pytest.approx(ref_logprob, rel=1e-10)
    np.testing.assert_allclose(post.numpy(), ref_post, atol=1e-10)
    np.testing.assert_allclose(ours.predict_proba(x, LENGTHS).numpy(), ref.predict_proba(x, LENGTHS), atol=1e-10)
    np.testing.assert_array_equal(ours.predict(x, LENGTHS).numpy(), ref.predict(x, LENGTHS))
    assert ours.n_parameters() == sum(ref._get_n_fit_scalars_per_param().values())
    assert ours.aic(x, LENGTHS) == pytest.approx(ref.aic(x, LENGTHS), rel=1e-10)
    assert ours.bic(x, LENGTHS) == pytest.approx(ref.bic(x, LENGTHS), rel=1e-10)


def test_gmm_hmm_matches_hmmlearn():
    rng = np.random.default_rng(3)
    start, trans = _chain(rng)
    weights = rng.dirichlet(np.ones(M) * 2, size=K)
    means = rng.normal(size=(K, M, D)) * 2
    covars = rng.uniform(0.5, 2.0, (K, M, D))
    ref = hmm.GMMHMM(K, M, covariance_type="diag", init_params="", params="")
    ref.startprob_, ref.transmat_, ref.weights_, ref.means_, ref.covars_ = start, trans, weights, means, covars
    ours = MixtureGaussianHMM(K, M, D, "diag", transitions=torch.tensor(trans), init_probs=torch.tensor(start),
                              weights=torch.tensor(weights), means=torch.tensor(means), covars=torch.tensor(covars),
                              dtype=torch.float64)
    x = rng.normal(size=(sum(LENGTHS), D)) * 2
    assert ours.score(x, LENGTHS) == pytest.approx(ref.score(x, LENGTHS), rel=1e-10)
    np.testing.assert_allclose(ours.predict_proba(x, LENGTHS).numpy(), ref.predict_proba(x, LENGTHS), atol=1e-10)
    # hmmlearn 0.3 counts one set of mixture weights ("w": M - 1) though every state has its own
    # (weights_ is (K, M)); ours counts K (M - 1)
    extra = (K - 1) * (M - 1)
    assert ours.n_parameters() == sum(ref._get_n_fit_scalars_per_param().values()) + extra
    assert ours.bic(x, LENGTHS) == pytest.approx(ref.bic(x, LENGTHS) + extra * np.log(sum(LENGTHS)), rel=1e-10)


def test_categorical_hmm_matches_hmmlearn_with_n_by_1_symbols():
    rng = np.random.default_rng(5)
    start, trans = _chain(rng)
    probs = rng.dirichlet(np.ones(S), size=K)
    ref = hmm.CategoricalHMM(K, init_params="", params="")
    ref.startprob_, ref.transmat_, ref.emissionprob_ = start, trans, probs
    ref.n_features = S
    ours = HMM(Categorical(K, S, probs=torch.tensor(probs), dtype=torch.float64),
               transitions=torch.tensor(trans), initial=torch.tensor(start))
    x = rng.integers(0, S, size=(sum(LENGTHS), 1))
    assert ours.score(x, LENGTHS) == pytest.approx(ref.score(x, LENGTHS), rel=1e-10)
    # few symbols make exactly tied paths (here at frames 10-11): the tie-breaking differs, the best score not
    path = ours.predict(x, LENGTHS).numpy()
    assert _path_log_prob(path, x[:, 0], start, trans, np.log(probs)) == pytest.approx(ref.decode(x, LENGTHS)[0], rel=1e-12)
    assert (path != ref.predict(x, LENGTHS)).mean() < 0.05
    np.testing.assert_allclose(ours.predict_proba(x[:, 0], LENGTHS).numpy(), ref.predict_proba(x, LENGTHS), atol=1e-10)
    assert ours.n_parameters() == sum(ref._get_n_fit_scalars_per_param().values())
    assert ours.aic(x, LENGTHS) == pytest.approx(ref.aic(x, LENGTHS), rel=1e-10)


def _path_log_prob(path, symbols, start, trans, log_emit) -> float:
    """Log-probability of the concatenated ``path`` of every sequence of LENGTHS, by its definition."""
    total, offset = 0.0, 0
    for n in LENGTHS:
        p, o = path[offset:offset + n], symbols[offset:offset + n]
        total += np.log(start[p[0]]) + np.log(trans[p[:-1], p[1:]]).sum() + log_emit[p, o].sum()
        offset += n
    return float(total)


def test_lists_float32_models_and_one_sequence():
    """A list of lists into a float32 model, lengths omitted (one sequence), no no_grad needed."""
    ours, ref, x = _gaussian_pair("diag", seed=7)
    ours32 = HMM(Gaussian(K, D, "diag", means=ours.emission.means.detach().float(), covars=ours.emission.covars.detach().float()),
                 transitions=ours.transmat.detach().float(), initial=ours.init_probs.detach().float())
    got = ours32.score(x[:40].tolist())
    assert isinstance(got, float) and got == pytest.approx(ref.score(x[:40]), rel=1e-5)
    assert ours32.predict_proba(x[:40]).dtype == torch.float32 and ours32.predict(x[:40]).shape == (40,)


def test_a_banded_chain_counts_its_allowed_moves():
    model = HMM(Gaussian(4, D), transitions="left_to_right")  # each state stays or moves on: 1 free per row but the last
    assert model.n_parameters() == 3 + 3 + 4 * D + 4 * D


def test_errors_name_the_argument():
    ours, _, x = _gaussian_pair("diag")
    with pytest.raises(HMMValueError, match=r"lengths must be positive integers summing to the 72 frames of X; got \[30, 17\]"):
        ours.score(x, [30, 17])
    with pytest.raises(HMMValueError, match=r"X must be \(N, D\) frames, the sequences concatenated as hmmlearn takes them; got shape \(2, 36, 2\)"):
        ours.score(x.reshape(2, 36, 2))
    with pytest.raises(HMMTypeError, match=r"X must be an array, a list or a tensor"):
        ours.score("frames")
    from pytorch_hmm.emissions import Neural

    neural = HMM(Neural(torch.nn.Linear(D, K), K))
    with pytest.raises(HMMTypeError, match=r"n_parameters counts Gaussian, GaussianMixture and Categorical emissions; got Neural"):
        neural.n_parameters()


def test_fit_takes_hmmlearns_concatenated_layout_and_matches_hmmlearn():
    ours, _, x = _gaussian_pair("diag", seed=11)
    ref = hmm.GaussianHMM(K, covariance_type="diag", init_params="", params="stmc", n_iter=5, tol=-np.inf)
    ref.startprob_, ref.transmat_ = ours.init_probs.detach().numpy(), ours.transmat.detach().numpy()
    ref.means_, ref.covars_ = ours.emission.means.detach().numpy(), ours.emission.covars.detach().numpy()
    ref.fit(x, LENGTHS)
    history = ours.fit(x, LENGTHS, max_iter=5, tol=-np.inf, verbose=False, initialize=False)
    # hmmlearn records the log-likelihood of each E-step, as ours does
    np.testing.assert_allclose(history, ref.monitor_.history, rtol=1e-10)
    np.testing.assert_allclose(ours.emission.means.detach().numpy(), ref.means_, rtol=1e-8, atol=1e-10)
    # a (N, D) tensor is one sequence, as hmmlearn reads it (not a batch of N one-frame sequences)
    fresh = HMM(Gaussian(K, D, dtype=torch.float64))
    fresh.fit(torch.from_numpy(x), max_iter=3, verbose=False, generator=torch.Generator().manual_seed(0))
    assert fresh.score(x) > HMM(Gaussian(K, D, dtype=torch.float64)).score(x)


def test_parameters_set_and_read_as_hmmlearn_attributes():
    """hmmlearn's workflow: assign startprob_, transmat_, means_, covars_ (numpy), then score."""
    _, ref, x = _gaussian_pair("diag", seed=13)
    ours = HMM(Gaussian(K, D, "diag", dtype=torch.float64))
    ours.startprob_, ours.transmat_, ours.means_, ours.covars_ = ref.startprob_, ref.transmat_, ref.means_, ref._covars_
    assert ours.score(x, LENGTHS) == pytest.approx(ref.score(x, LENGTHS), rel=1e-10)
    np.testing.assert_allclose(ours.transmat_, ref.transmat_, rtol=1e-12)
    np.testing.assert_allclose(ours.covars_, ref._covars_, rtol=1e-12)
    assert isinstance(ours.startprob_, np.ndarray) and ours.init_probs.dtype == torch.float64
    ours.startprob_[0] = 5.0  # a copy: the model is unchanged
    assert ours.init_probs[0].item() == pytest.approx(ref.startprob_[0])
    with pytest.raises(HMMValueError, match=r"startprob_ must sum to 1|each row of startprob_ must sum to 1"):
        ours.startprob_ = [0.5, 0.6, 0.1]
    with pytest.raises(HMMTypeError, match=r"weights_ needs an emission with weights; this model's is Gaussian"):
        ours.weights_
    chain = HMM(Gaussian(K, D), transitions="left_to_right")
    with pytest.raises(HMMTypeError, match=r"transmat_ can be assigned for dense \(ergodic\) transitions only"):
        chain.transmat_ = np.eye(K)


def test_fit_takes_a_padded_numpy_batch_as_its_tensor():
    """numpy at the boundary: a padded (B, T, D) array fits exactly as the same tensor does."""
    _, _, x = _gaussian_pair("diag", seed=17)
    padded = x[:60].reshape(2, 30, D)
    a, b = HMM(Gaussian(K, D, dtype=torch.float64)), HMM(Gaussian(K, D, dtype=torch.float64))
    ha = a.fit(padded, max_iter=4, verbose=False, generator=torch.Generator().manual_seed(0))
    hb = b.fit(torch.from_numpy(padded), max_iter=4, verbose=False, generator=torch.Generator().manual_seed(0))
    assert ha == hb and len(ha) == 4
