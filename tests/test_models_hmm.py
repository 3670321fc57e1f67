"""HMM against hmmlearn, EM properties, gradient training and bad input."""

import warnings

import numpy as np
import pytest
import torch

from pytorch_hmm import HMM
from pytorch_hmm.emissions import Categorical, Gaussian
from pytorch_hmm.errors import HMMDimensionError, HMMValueError

hmm = pytest.importorskip("hmmlearn.hmm")

K, D = 3, 2
COV_TYPES = ["diag", "full", "spherical", "tied"]


def _params(cov_type: str, rng: np.random.Generator):
    startprob = rng.dirichlet(np.ones(K))
    transmat = rng.dirichlet(np.ones(K) * 2, size=K)
    means = rng.normal(scale=3.0, size=(K, D))
    if cov_type == "diag":
        covars = rng.uniform(0.5, 2.0, size=(K, D))
    elif cov_type == "spherical":
        covars = rng.uniform(0.5, 2.0, size=K)
    elif cov_type == "full":
        a = rng.normal(size=(K, D, D))
        covars = a @ a.transpose(0, 2, 1) + np.eye(D)
    else:
        a = rng.normal(size=(D, D))
        covars = a @ a.T + np.eye(D)
    return startprob, transmat, means, covars


def _pair(cov_type: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    startprob, transmat, means, covars = _params(cov_type, rng)
    ref = hmm.GaussianHMM(K, covariance_type=cov_type, init_params="", n_iter=1)
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = startprob, transmat, means, covars
    ours = HMM(
        Gaussian(K, D, covariance_type=cov_type, means=torch.tensor(means), covars=torch.tensor(covars), dtype=torch.float64),
        transitions=torch.tensor(transmat),
        init_probs=torch.tensor(startprob),
    )
    return ref, ours


def _data(ref, lengths, seed=1):
    xs = [ref.sample(n, random_state=seed + i)[0] for i, n in enumerate(lengths)]
    padded = np.zeros((len(xs), max(lengths), D))
    for i, x in enumerate(xs):
        padded[i, : len(x)] = x
    return xs, torch.tensor(padded), torch.tensor(lengths)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_inference_matches_hmmlearn(cov_type):
    ref, ours = _pair(cov_type)
    xs, x, lengths = _data(ref, [30, 17, 24])
    log_z = ours(x, lengths)
    gamma = ours.posteriors(x, lengths)
    paths, scores = ours.viterbi(x, lengths)
    for b, xb in enumerate(xs):
        n = len(xb)
        assert log_z[b].item() == pytest.approx(ref.score(xb), rel=1e-10)
        np.testing.assert_allclose(gamma[b, :n].numpy(), ref.predict_proba(xb), atol=1e-10)
        logprob, path = ref.decode(xb, algorithm="viterbi")
        assert scores[b].item() == pytest.approx(logprob, rel=1e-10)
        np.testing.assert_array_equal(paths[b, :n].numpy(), path)
    assert torch.equal(ours.decode(x, lengths)[0], paths)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_one_em_step_matches_hmmlearn(cov_type):
    ref, ours = _pair(cov_type, seed=2)
    xs, x, lengths = _data(ref, [40, 25, 33], seed=5)
    ref.fit(np.concatenate(xs), [len(v) for v in xs])
    ours.fit(x, lengths, max_iter=1, verbose=False)
    np.testing.assert_allclose(ours.init_probs.detach().numpy(), ref.startprob_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ours.transmat.detach().numpy(), ref.transmat_, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(ours.emission.means.detach().numpy(), ref.means_, rtol=1e-6)
    ours_covars = ours.emission.covars.detach().numpy()
    if cov_type == "spherical":  # hmmlearn's M-step stores spherical variances repeated per feature, (K, D)
        ours_covars = np.repeat(ours_covars[:, None], D, axis=1)
    np.testing.assert_allclose(ours_covars, ref._covars_, rtol=1e-6)


def test_categorical_hmm_matches_hmmlearn():
    rng = np.random.default_rng(3)
    startprob, transmat = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K), size=K)
    emissionprob = rng.dirichlet(np.ones(4), size=K)
    ref = hmm.CategoricalHMM(K, init_params="", n_iter=1)
    ref.startprob_, ref.transmat_, ref.emissionprob_ = startprob, transmat, emissionprob
    ref.n_features = 4
    xs = [ref.sample(n, random_state=i)[0] for i, n in enumerate([20, 12])]
    x = torch.zeros(2, 20, dtype=torch.long)
    for i, v in enumerate(xs):
        x[i, : len(v)] = torch.tensor(v[:, 0])
    lengths = torch.tensor([20, 12])
    ours = HMM(Categorical(K, 4, probs=torch.tensor(emissionprob), dtype=torch.float64),
               transitions=torch.tensor(transmat), init_probs=torch.tensor(startprob))
    log_z = ours(x, lengths)
    for b, v in enumerate(xs):
        assert log_z[b].item() == pytest.approx(ref.score(v), rel=1e-10)
    ref.fit(np.concatenate(xs), [len(v) for v in xs])
    ours.fit(x, lengths, max_iter=1, verbose=False)
    np.testing.assert_allclose(ours.emission.probs.detach().numpy(), ref.emissionprob_, rtol=1e-6)
    np.testing.assert_allclose(ours.transmat.detach().numpy(), ref.transmat_, rtol=1e-6)


@pytest.mark.parametrize("cov_type", ["diag", "full"])
def test_em_never_decreases_the_likelihood(cov_type):
    ref, _ = _pair(cov_type, seed=4)
    _, x, lengths = _data(ref, [60, 45, 50, 38], seed=9)
    model = HMM(Gaussian(K, D, covariance_type=cov_type, dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ConvergenceWarning (likelihood drop) fails the test
        history = model.fit(x, lengths, max_iter=25, tol=1e-8, verbose=False, generator=torch.Generator().manual_seed(0))
    assert len(history) >= 5
    assert all(b >= a - 1e-8 * abs(a) for a, b in zip(history, history[1:]))
    assert model(x, lengths).sum().item() >= history[-1] - 1e-6


def test_fit_accepts_lists_and_batches_with_the_same_result():
    ref, _ = _pair("diag", seed=6)
    xs, x, lengths = _data(ref, [30, 20, 25], seed=2)
    runs = []
    for data, lens in [(x, lengths), ([torch.tensor(v) for v in xs], None), ([(x[:2], lengths[:2]), (x[2:], lengths[2:])], None)]:
        _, model = _pair("diag", seed=6)
        runs.append(model.fit(data, lens, max_iter=3, verbose=False))
        runs.append(model.emission.means.detach().clone())
    torch.testing.assert_close(runs[1], runs[3])
    torch.testing.assert_close(runs[1], runs[5])
    np.testing.assert_allclose(runs[0], runs[2], rtol=1e-10)
    np.testing.assert_allclose(runs[0], runs[4], rtol=1e-10)


def test_statistics_are_additive():
    ref, model = _pair("diag", seed=7)
    _, x, lengths = _data(ref, [30, 20, 25, 28], seed=3)
    whole, halves = model.init_stats(), model.init_stats()
    model.accumulate(whole, x, lengths)
    model.accumulate(halves, x[:2], lengths[:2])
    model.accumulate(halves, x[2:], lengths[2:])
    for key in whole:
        torch.testing.assert_close(halves[key], whole[key])


def test_uniform_transitions_reduce_to_a_mixture():
    ref, _ = _pair("diag", seed=8)
    _, x, _ = _data(ref, [40], seed=4)
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    model = HMM(Gaussian(K, D, means=torch.tensor(ref.means_), covars=torch.tensor(ref._covars_), dtype=torch.float64),
                transitions=weights.expand(K, K).clone(), init_probs=weights)
    per_frame = torch.logsumexp(model.log_emissions(x) + weights.log(), -1)  # log sum_k w_k p(x_t | k)
    assert model(x).item() == pytest.approx(per_frame.sum().item(), rel=1e-12)


def test_frozen_components_stay_fixed():
    ref, model = _pair("diag", seed=10)
    _, x, lengths = _data(ref, [30, 30], seed=1)
    before = (model.transmat.clone(), model.init_probs.clone(), model.emission.means.detach().clone())
    model.fit(x, lengths, max_iter=2, verbose=False, frozen=("transitions", "init_probs"))
    torch.testing.assert_close(model.transmat, before[0])
    torch.testing.assert_close(model.init_probs, before[1])
    assert not torch.allclose(model.emission.means, before[2])


def test_gradient_training_raises_the_likelihood():
    ref, _ = _pair("diag", seed=11)
    _, x, lengths = _data(ref, [50, 40], seed=6)
    model = HMM(Gaussian(K, D, means=torch.zeros(K, D, dtype=torch.float64) + torch.arange(K)[:, None], covars=torch.ones(K, D, dtype=torch.float64), dtype=torch.float64))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        optimiser.zero_grad()
        loss = -model(x, lengths).mean()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0


def test_left_to_right_model_and_state_dict_round_trip():
    model = HMM(Gaussian(4, D, dtype=torch.float64), transitions="left_to_right")
    assert model.init_probs.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert torch.all(torch.triu(model.transmat) == model.transmat)
    x = torch.randn(2, 10, D, dtype=torch.float64)
    model.fit(x, max_iter=3, verbose=False, generator=torch.Generator().manual_seed(0))  # move off the defaults
    copy = HMM(Gaussian(4, D, dtype=torch.float64), transitions="left_to_right")
    assert not torch.allclose(copy(x), model(x))
    copy.load_state_dict(model.state_dict())
    torch.testing.assert_close(copy(x), model(x))
    assert not copy.emission.needs_init  # a later fit keeps the loaded parameters
    assert model.to(torch.float32)(x.float()).dtype == torch.float32


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: HMM(Gaussian(K, D), init_probs=torch.tensor([0.5, 0.6, 0.1])), HMMValueError, r"each row of init_probs must sum to 1 \(within 0.0001\); found a row summing to 1.2"),
        (lambda: HMM(Gaussian(K, D), init_probs=torch.tensor([0.5, 0.5])), HMMDimensionError, r"init_probs must have shape \(3,\); got \(2,\)"),
        (lambda: HMM(Gaussian(K, D), transitions=torch.eye(2)), HMMDimensionError, r"transitions must have shape \(3, 3\); got \(2, 2\)"),
        (lambda: HMM(Gaussian(K, D), transitions="circular"), HMMValueError, "transitions must be 'ergodic', 'left_to_right'"),
        (lambda: HMM(torch.nn.Linear(2, 3)), TypeError, "emission must be a pytorch_hmm.emissions Emission"),
    ],
)
def test_construction_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_fit_errors():
    model = HMM(Gaussian(K, D, means=torch.zeros(K, D), covars=torch.ones(K, D)))
    x = torch.randn(2, 10, D)
    with pytest.raises(HMMValueError, match=r"frozen must name components among"):
        model.fit(x, frozen=("emissions",), verbose=False)
    with pytest.raises(HMMValueError, match="data must be re-iterable for EM"):
        model.fit((b for b in [x]), verbose=False)
    with pytest.raises(HMMValueError, match=r"lengths must be in \[1, T\] = \[1, 10\]"):
        model.fit(x, torch.tensor([10, 11]), verbose=False)
    with pytest.raises(HMMDimensionError, match="every sequence in data must have at least one frame"):
        model.fit([torch.randn(5, D), torch.randn(0, D)], verbose=False)
    with pytest.raises(HMMValueError, match="max_iter must be a positive int; got 0"):
        model.fit(x, max_iter=0, verbose=False)


def test_lengths_that_do_not_match_the_batch():
    model = HMM(Gaussian(K, D, means=torch.zeros(K, D), covars=torch.ones(K, D)))
    with pytest.raises(HMMDimensionError, match=r"lengths must be \(B,\) with B == 2; got shape \(3,\)"):
        model(torch.randn(2, 10, D), torch.tensor([10, 9, 8]))


def test_gradient_training_does_as_well_as_em():
    ref, _ = _pair("diag", seed=12)
    _, x, lengths = _data(ref, [80, 70, 90], seed=8)
    # no covariance prior: EM then maximises the plain likelihood, as Adam does
    start = dict(means=torch.tensor(ref.means_) + 0.5, covars=torch.tensor(ref._covars_) * 1.5, covars_prior=0.0, dtype=torch.float64)
    em = HMM(Gaussian(K, D, **start))
    em_history = em.fit(x, lengths, max_iter=200, tol=1e-9, verbose=False)
    sgd = HMM(Gaussian(K, D, **start))
    optimiser = torch.optim.Adam(sgd.parameters(), lr=0.05)
    for _ in range(400):
        optimiser.zero_grad()
        (-sgd(x, lengths).sum()).backward()
        optimiser.step()
    final = sgd(x, lengths).sum().item()
    # Adam from the same start gets at least as high as EM (here it finds a better optimum than
    # EM's slow crawl, which matches hmmlearn's to 1e-12 in the run that made this test)
    assert final >= em_history[-1] - 0.5
    assert final > em_history[0] + 50


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_agree():
    ref, cpu = _pair("full", seed=13)
    _, x, lengths = _data(ref, [30, 22], seed=2)
    _, gpu = _pair("full", seed=13)
    gpu = gpu.cuda()
    torch.testing.assert_close(gpu(x.cuda(), lengths.cuda()).cpu(), cpu(x, lengths))
    cpu.fit(x, lengths, max_iter=3, verbose=False)
    gpu.fit(x.cuda(), lengths.cuda(), max_iter=3, verbose=False)
    torch.testing.assert_close(gpu.emission.means.detach().cpu(), cpu.emission.means.detach())
    torch.testing.assert_close(gpu.transmat.detach().cpu(), cpu.transmat.detach())


def test_frozen_takes_a_single_name_as_a_string():
    """``frozen="transitions"`` is one name, not the letters of one (hmmlearn users write ``params="st"``-like strings)."""
    ref, model = _pair("diag", seed=10)
    _, x, lengths = _data(ref, [30, 30], seed=1)
    before = model.transmat.clone()
    model.fit(x, lengths, max_iter=2, verbose=False, frozen="transitions")
    torch.testing.assert_close(model.transmat, before)
