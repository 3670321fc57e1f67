"""What hmmlearn and pomegranate users expect of a model: the stationary distribution, Dirichlet
priors on start and transition probabilities, per-sequence weights in fit and learned end
probabilities, each against the peer library on the same parameters (or brute force)."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch

from pytorch_hmm import HMM
from pytorch_hmm.emissions import Categorical, Gaussian
from pytorch_hmm.errors import HMMValueError
from pytorch_hmm.transitions import Banded, Sparse

hmm = pytest.importorskip("hmmlearn.hmm")
K, D = 3, 2
LENGTHS = [30, 17, 25]


def _gaussian_model(transitions, k: int = K, seed: int = 0, **kwargs) -> HMM:
    rng = np.random.default_rng(seed)
    means = torch.tensor(rng.normal(size=(k, D)) * 2)
    covars = torch.tensor(rng.uniform(0.5, 2.0, (k, D)))
    return HMM(Gaussian(k, D, "diag", means=means, covars=covars, dtype=torch.float64), transitions=transitions, **kwargs)


def _hmmlearn_stationary(transmat: np.ndarray) -> np.ndarray:
    ref = hmm.GaussianHMM(transmat.shape[0])
    ref.transmat_ = transmat
    return ref.get_stationary_distribution()


# --- 1. stationary distribution ---

@pytest.mark.parametrize("seed", range(4))
def test_stationary_distribution_of_dense_transitions_matches_hmmlearn(seed):
    rng = np.random.default_rng(seed)
    k = 2 + seed
    trans = rng.dirichlet(np.ones(k) * 0.7, size=k)
    model = _gaussian_model(torch.tensor(trans), k=k)
    pi = model.stationary_distribution()
    assert pi.dtype == torch.float64 and pi.shape == (k,)
    np.testing.assert_allclose(pi.numpy(), _hmmlearn_stationary(trans), atol=1e-10)
    np.testing.assert_allclose((pi @ model.transmat.detach()).numpy(), pi.numpy(), atol=1e-12)   # pi A = pi
    np.testing.assert_allclose(model.get_stationary_distribution(), pi.numpy(), rtol=0, atol=0)
    single = HMM(Gaussian(k, D), transitions=torch.tensor(trans, dtype=torch.float32))  # float32 rows sum to 1 +- eps
    np.testing.assert_allclose(single.stationary_distribution().numpy(), _hmmlearn_stationary(trans), atol=1e-6)


def test_stationary_distribution_of_banded_and_sparse_transitions_matches_hmmlearn():
    # a banded chain with a move back from the last state (a loop 0 -> 1 -> 2 -> 0): irreducible
    probs = torch.tensor([[0.6, 0.4], [0.7, 0.3], [0.9, 0.0]], dtype=torch.float64)
    banded = _gaussian_model(Banded(torch.log(probs)))
    # left-to-right: the absorbing last state holds all the mass, as hmmlearn finds
    np.testing.assert_allclose(banded.stationary_distribution().numpy(), [0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(banded.stationary_distribution().numpy(), _hmmlearn_stationary(banded.transmat_), atol=1e-10)
    # sparse graph: 0 -> {0, 1}, 1 -> {1, 2}, 2 -> {0, 2} (a ring with self-loops)
    pred = torch.tensor([[0, 2], [0, 1], [1, 2]])
    logp = torch.log(torch.tensor([[0.5, 0.2], [0.5, 0.9], [0.1, 0.8]], dtype=torch.float64))
    sparse = _gaussian_model(Sparse(pred, logp))
    pi = sparse.stationary_distribution()
    np.testing.assert_allclose(pi.numpy(), _hmmlearn_stationary(sparse.transmat_), atol=1e-10)
    np.testing.assert_allclose((pi @ sparse.transmat.detach()).numpy(), pi.numpy(), atol=1e-12)
    assert pi.min() > 0.05  # irreducible: every state carries mass


def test_stationary_distribution_with_transient_states_matches_hmmlearn():
    # state 0 is transient (left forever), {1, 2} is the one closed class
    trans = np.array([[0.5, 0.3, 0.2], [0.0, 0.4, 0.6], [0.0, 0.7, 0.3]])
    model = _gaussian_model(torch.tensor(trans))
    pi = model.stationary_distribution()
    assert pi[0].item() == 0.0
    np.testing.assert_allclose(pi.numpy(), _hmmlearn_stationary(trans), atol=1e-10)
    # the default left-to-right chain (banded, no move back): all mass in its absorbing last state
    chain = _gaussian_model("left_to_right", k=4)
    np.testing.assert_allclose(chain.stationary_distribution().numpy(), [0, 0, 0, 1], atol=0)
    np.testing.assert_allclose(chain.stationary_distribution().numpy(), _hmmlearn_stationary(chain.transmat_), atol=1e-10)


def test_stationary_distribution_errors():
    two_absorbing = torch.tensor([[1.0, 0.0, 0.0], [0.3, 0.4, 0.3], [0.0, 0.0, 1.0]], dtype=torch.float64)
    with pytest.raises(HMMValueError, match=r"stationary_distribution is not unique: the transition matrix has 2 closed "
                                            r"classes of states \(\[0\], \[2\]\)"):
        _gaussian_model(two_absorbing).stationary_distribution()
    from pytorch_hmm.transitions import DenseTransitions

    empty_row = DenseTransitions.from_probs(torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 0.0]], dtype=torch.float64),
                                            allow_empty_rows=True)
    with pytest.raises(HMMValueError, match=r"every state to have outgoing transitions summing to 1; states \[2\] do not"):
        _gaussian_model(empty_row).stationary_distribution()
    batched = _gaussian_model(Banded(torch.zeros(2, K, 2, dtype=torch.float64).log_softmax(-1)))
    with pytest.raises(HMMValueError, match=r"needs a static \(K, K\) transition matrix; this model's is \(2, 3, 3\)"):
        batched.stationary_distribution()


# --- 2. Dirichlet priors on start and transition probabilities ---

def _hmmlearn_pair(seed: int, **priors):
    rng = np.random.default_rng(seed)
    start = rng.dirichlet(np.ones(K))
    trans = rng.dirichlet(np.ones(K) * 2, size=K)
    means, covars = rng.normal(size=(K, D)) * 2, rng.uniform(0.5, 2.0, (K, D))
    x = rng.normal(size=(sum(LENGTHS), D)) * 2
    ref = hmm.GaussianHMM(K, covariance_type="diag", init_params="", params="stmc", n_iter=4, tol=-np.inf, **priors)
    ref.startprob_, ref.transmat_, ref.means_, ref.covars_ = start, trans, means, covars
    ours = HMM(Gaussian(K, D, "diag", means=torch.tensor(means), covars=torch.tensor(covars), dtype=torch.float64),
               transitions=torch.tensor(trans), initial=torch.tensor(start),
               startprob_prior=priors.get("startprob_prior"), transmat_prior=priors.get("transmat_prior"))
    return ours, ref, x


@pytest.mark.parametrize("kind", ["arrays", "scalars", "below_one"])
def test_em_with_dirichlet_priors_matches_hmmlearn(kind):
    rng = np.random.default_rng(21)
    priors = {"arrays": dict(startprob_prior=rng.uniform(1.0, 8.0, K), transmat_prior=rng.uniform(1.0, 30.0, (K, K))),
              "scalars": dict(startprob_prior=5.0, transmat_prior=12.0),
              # concentrations < 1 push small counts below 0: clipped to 0 (that probability is then 0 for good)
              "below_one": dict(startprob_prior=np.array([0.2, 1.0, 3.0]), transmat_prior=rng.uniform(0.3, 1.5, (K, K)))}[kind]
    ours, ref, x = _hmmlearn_pair(31, **priors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MAP EM need not raise the likelihood; both libraries may warn
        ref.fit(x, LENGTHS)
        history = ours.fit(x, LENGTHS, max_iter=4, tol=-np.inf, verbose=False, initialize=False)
    np.testing.assert_allclose(history, ref.monitor_.history, rtol=1e-10)
    np.testing.assert_allclose(ours.startprob_, ref.startprob_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ours.transmat_, ref.transmat_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-8, atol=1e-10)
    # the priors moved the estimates: without them EM ends elsewhere (the comparison can fail)
    plain, plain_ref, _ = _hmmlearn_pair(31)
    plain.fit(x, LENGTHS, max_iter=4, tol=-np.inf, verbose=False, initialize=False)
    assert np.abs(plain.transmat_ - ours.transmat_).max() > 1e-3
    if kind == "below_one":
        assert (ref.transmat_ == 0).any() or (ref.startprob_ == 0).any()  # the clip happened
        np.testing.assert_array_equal(ours.transmat_ == 0, ref.transmat_ == 0)


def test_priors_on_banded_and_sparse_components_are_map_estimates():
    """The MAP M-step on one table against the closed form, for each storage (prior in the storage's shape)."""
    from pytorch_hmm.transitions import BandedTransitions, Initial, SparseTransitions

    banded = BandedTransitions(torch.zeros(3, 2, dtype=torch.float64), prior=torch.tensor([[3.0, 0.5], [2.0, 2.0], [4.0, 9.0]]))
    stats = banded.init_stats()
    banded.accumulate(stats, torch.tensor([[[2.0, 0.2], [1.0, 3.0], [5.0, 0.0]]], dtype=torch.float64))
    banded.m_step(stats)
    want = torch.tensor([[4.0, 0.0], [2.0, 4.0], [8.0, 0.0]], dtype=torch.float64)  # max(n + a - 1, 0); the last move does not exist
    np.testing.assert_allclose(banded.log_probs.detach().exp().numpy(), (want / want.sum(-1, keepdim=True)).numpy(), atol=1e-15)
    pred = torch.tensor([[0, 2], [0, 1], [1, 2]])
    sparse = SparseTransitions(pred, torch.zeros(3, 2, dtype=torch.float64), prior=2.0)
    stats = sparse.init_stats()
    counts = torch.tensor([[1.0, 3.0], [2.0, 4.0], [5.0, 6.0]], dtype=torch.float64)
    sparse.accumulate(stats, counts)
    sparse.m_step(stats)
    dense = torch.zeros(3, 3, dtype=torch.float64)  # per source: (n + 1) / sum over the source's edges
    for j in range(3):
        for p in range(2):
            dense[pred[j, p], j] = counts[j, p] + 1.0
    np.testing.assert_allclose(sparse.structure().to_dense().log_probs.detach().exp().numpy(),
                               (dense / dense.sum(-1, keepdim=True)).numpy(), atol=1e-15)
    initial = Initial(torch.log(torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64)), prior=3.0)
    stats = initial.init_stats()
    initial.accumulate(stats, torch.tensor([[0.25, 0.75, 0.0]], dtype=torch.float64))
    initial.m_step(stats)  # probability 0 stays 0 although the prior adds 2
    np.testing.assert_allclose(initial.probs.detach().numpy(), [2.25 / 5, 2.75 / 5, 0.0], atol=1e-15)


def test_priors_round_trip_and_survive_attribute_assignment(tmp_path):
    import pytorch_hmm

    model = _gaussian_model(torch.full((K, K), 1.0 / K, dtype=torch.float64), startprob_prior=2.5,
                            transmat_prior=torch.arange(1.0, 10.0).reshape(K, K))
    model.save(tmp_path / "m.pt")
    same = pytorch_hmm.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(same.transmat_prior, model.transmat_prior)
    np.testing.assert_array_equal(same.startprob_prior, np.full(K, 2.5))
    fresh = _gaussian_model("ergodic")
    fresh.load_state_dict(model.state_dict())  # a saved prior is adopted
    np.testing.assert_array_equal(fresh.transmat_prior, model.transmat_prior)
    model.transmat_ = np.eye(K) * 0.5 + 0.5 / K  # hmmlearn-style assignment keeps the prior
    model.startprob_ = np.ones(K) / K
    np.testing.assert_array_equal(model.transmat_prior, np.arange(1.0, 10.0).reshape(K, K))
    assert model.startprob_prior[0] == 2.5
    model.transmat_prior = None
    assert model.transmat_prior == 1.0 and "transition.prior" not in model.state_dict()
    model.startprob_prior = 4.0
    assert model.initial.prior.dtype == torch.float64 and float(model.initial.prior[1]) == 4.0


def test_prior_errors():
    from pytorch_hmm.errors import HMMDimensionError, HMMTypeError
    from pytorch_hmm.transitions import FixedTransitions, Initial

    with pytest.raises(HMMValueError, match=r"Initial prior must be Dirichlet concentrations > 0 \(a number or a tensor "
                                            r"broadcastable to \(3,\)\); got values that are not finite and > 0 \(min -1\)"):
        Initial.uniform(3).set_prior(torch.tensor([1.0, -1.0, 2.0]))
    with pytest.raises(HMMValueError, match=r"DenseTransitions prior must be .* got values that are not finite and > 0 \(min nan\)"):
        _gaussian_model("ergodic", transmat_prior=float("nan"))
    with pytest.raises(HMMDimensionError, match=r"DenseTransitions prior must be .*broadcastable to \(3, 3\)\); got shape \(2,\)"):
        _gaussian_model("ergodic", transmat_prior=torch.ones(2))
    with pytest.raises(HMMTypeError, match=r"Initial prior must be Dirichlet concentrations .*; got str"):
        _gaussian_model("ergodic", startprob_prior="uniform")
    fixed = FixedTransitions(Banded(torch.zeros(2, K, 2, dtype=torch.float64).log_softmax(-1)))
    with pytest.raises(HMMTypeError, match=r"transmat_prior needs learned transitions \(dense, banded or sparse tables\); "
                                           r"this model's are FixedTransitions"):
        _gaussian_model(fixed, transmat_prior=2.0)
    with pytest.raises(HMMTypeError, match=r"transmat_prior needs learned transitions"):
        _gaussian_model(fixed).transmat_prior = 2.0


# --- 3. per-sequence weights in fit ---

def _sequences(seed: int, lengths=(30, 17, 25, 21)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, D, generator=g, dtype=torch.float64) * 2 + (torch.arange(n, dtype=torch.float64)[:, None] > n / 2) * 3
            for n in lengths]


def _state(model: HMM) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(a: dict, b: dict, atol: float = 1e-10) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if a[key].is_floating_point():
            finite = torch.isfinite(a[key])
            assert torch.equal(finite, torch.isfinite(b[key])), key
            np.testing.assert_allclose(a[key][finite].numpy(), b[key][finite].numpy(), atol=atol, rtol=0, err_msg=key)
        else:
            assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("transitions", ["ergodic", "left_to_right"])
def test_integer_weights_equal_repeating_the_sequences(transitions):
    seqs = _sequences(0)
    weights = [2, 1, 3, 1]
    repeated = [s for s, w in zip(seqs, weights) for _ in range(w)]
    a, b = _gaussian_model(transitions, seed=1), _gaussian_model(transitions, seed=1)
    ha = a.fit(seqs, weights=weights, max_iter=6, tol=-np.inf, verbose=False, initialize=False)
    hb = b.fit(repeated, max_iter=6, tol=-np.inf, verbose=False, initialize=False)
    np.testing.assert_allclose(ha, hb, rtol=1e-12)  # the reported log-likelihood is weighted the same way
    _assert_same_state(_state(a), _state(b))
    unweighted = _gaussian_model(transitions, seed=1)
    unweighted.fit(seqs, max_iter=6, tol=-np.inf, verbose=False, initialize=False)
    assert (unweighted.emission.means - a.emission.means).abs().max() > 1e-3  # the weights did something


def test_weight_two_in_hmmlearns_layout_and_a_padded_batch_equals_the_sequence_twice():
    seqs = _sequences(2, (20, 26, 15))
    x = torch.cat(seqs).numpy()
    lengths = [len(s) for s in seqs]
    a, b, c = (_gaussian_model("ergodic", seed=3) for _ in range(3))
    ha = a.fit(x, lengths, weights=np.array([1.0, 2.0, 1.0]), max_iter=4, tol=-np.inf, verbose=False, initialize=False)
    hb = b.fit(np.concatenate([x[:20], x[20:46], x[20:46], x[46:]]), [20, 26, 26, 15], max_iter=4, tol=-np.inf,
               verbose=False, initialize=False)
    padded = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    hc = c.fit(padded, torch.tensor(lengths), weights=torch.tensor([1.0, 2.0, 1.0]), max_iter=4, tol=-np.inf,
               verbose=False, initialize=False)
    np.testing.assert_allclose(ha, hb, rtol=1e-12)
    np.testing.assert_allclose(hc, hb, rtol=1e-12)
    _assert_same_state(_state(a), _state(b))
    _assert_same_state(_state(c), _state(b))


def test_weight_zero_equals_dropping_the_sequence_even_an_infeasible_one():
    seqs = _sequences(4, (24, 18, 3, 27))  # a 3-frame sequence cannot cross a 4-state chain that must end last
    a, b = (_gaussian_model("left_to_right", k=4, seed=5, final="last") for _ in range(2))
    ha = a.fit(seqs, weights=[1.0, 0.0, 0.0, 1.0], max_iter=4, tol=-np.inf, verbose=False, initialize=False)
    hb = b.fit([seqs[0], seqs[3]], max_iter=4, tol=-np.inf, verbose=False, initialize=False)
    np.testing.assert_allclose(ha, hb, rtol=1e-12)
    _assert_same_state(_state(a), _state(b))
    with pytest.raises(HMMValueError, match=r"zero likelihood under the model"):  # with weight > 0 it is used, and fails
        _gaussian_model("left_to_right", k=4, seed=5, final="last").fit(seqs, verbose=False, initialize=False)


def test_scaling_all_weights_keeps_the_estimates_and_scales_the_log_likelihood():
    """The start and transition M-steps are ratios of weighted counts: weights 0.5 everywhere give weight 1's
    parameters and half the log-likelihood (the emission is frozen: its covariance floor is not scale-free)."""
    seqs = _sequences(6)
    a, b = _gaussian_model("ergodic", seed=7), _gaussian_model("ergodic", seed=7)
    ha = a.fit(seqs, weights=[0.5] * 4, max_iter=3, tol=-np.inf, verbose=False, initialize=False, frozen="emission")
    hb = b.fit(seqs, max_iter=3, tol=-np.inf, verbose=False, initialize=False, frozen="emission")
    assert abs(hb[-1] - hb[0]) > 1.0  # EM moved
    np.testing.assert_allclose(np.array(ha) * 2, hb, rtol=1e-12)
    _assert_same_state(_state(a), _state(b))


def test_weight_errors():
    from pytorch_hmm import HSMM
    from pytorch_hmm.errors import HMMDimensionError, HMMTypeError
    from pytorch_hmm.training import fit_em

    seqs = _sequences(8, (10, 12, 9))
    model = _gaussian_model("ergodic")
    with pytest.raises(HMMValueError, match=r"weights must be finite and >= 0; sequences \[1\] have \[-1.0\]"):
        model.fit(seqs, weights=[1.0, -1.0, 1.0], verbose=False)
    with pytest.raises(HMMValueError, match=r"weights must be finite and >= 0; sequences \[2\] have \[nan\]"):
        model.fit(seqs, weights=[1.0, 1.0, float("nan")], verbose=False)
    with pytest.raises(HMMDimensionError, match=r"weights must be \(B,\) with one weight per sequence, B == 3; got shape \(2,\)"):
        model.fit(seqs, weights=[1.0, 1.0], verbose=False)
    with pytest.raises(HMMValueError, match=r"weights must give some sequence a weight > 0; got all 0"):
        model.fit(seqs, weights=[0, 0, 0], verbose=False)
    with pytest.raises(HMMTypeError, match=r"weights must be one number per sequence \(a list, array or tensor\); got float"):
        model.fit(seqs, weights=2.0, verbose=False)
    with pytest.raises(HMMTypeError, match=r"weights must be one number per sequence \(a list, array or tensor\); got \['a'"):
        model.fit(seqs, weights=["a", "b", "c"], verbose=False)
    with pytest.raises(HMMTypeError, match=r"weights must be real numbers, one per sequence; got dtype torch.bool"):
        model.fit(seqs, weights=torch.tensor([True, False, True]), verbose=False)
    loader = [(torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True), torch.tensor([10, 12, 9]))] * 2
    with pytest.raises(HMMValueError, match=r"weights are one per sequence of a padded tensor or a list of sequences; "
                                            r"batches from an iterable \(a DataLoader\) cannot take them"):
        fit_em(model, _Loader(loader), weights=[1.0, 1.0, 1.0], verbose=False)
    hsmm = HSMM(Gaussian(K, D, dtype=torch.float64), "poisson", max_duration=5)
    with pytest.raises(HMMTypeError, match=r"weights need a model whose accumulate takes weights \(HMM, MixtureGaussianHMM\); HSMM does not"):
        fit_em(hsmm, seqs, weights=[1.0, 1.0, 1.0], verbose=False)


class _Loader:
    """A re-iterable of batches (what a DataLoader is to fit)."""

    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)


# --- 4. end probabilities learned by EM (pomegranate's ends) ---

def _pomegranate_pair(seed: int):
    pytest.importorskip("pomegranate")
    from pomegranate.distributions import Normal
    from pomegranate.hmm import DenseHMM
    from pytorch_hmm.transitions import LearnedFinal

    rng = np.random.default_rng(seed)
    start, trans, ends = rng.dirichlet(np.ones(K)), rng.dirichlet(np.ones(K) * 2, size=K), rng.uniform(0.05, 0.3, K)
    means, covars = rng.normal(size=(K, D)) * 2, rng.uniform(0.5, 2.0, (K, D))
    x = torch.tensor(rng.normal(size=(5, 16, D)) * 2)
    dists = [Normal(torch.tensor(means[i]), torch.tensor(covars[i]), covariance_type="diag") for i in range(K)]
    # pomegranate's edges hold each state's going-on mass: edges_ij = (1 - e_i) A_ij, rows + ends sum to 1
    ref = DenseHMM(dists, edges=torch.tensor(trans * (1 - ends)[:, None]), starts=torch.tensor(start),
                   ends=torch.tensor(ends), max_iter=1).double()
    ours = HMM(Gaussian(K, D, "diag", means=torch.tensor(means), covars=torch.tensor(covars), dtype=torch.float64,
                        covars_prior=0.0), transitions=torch.tensor(trans), initial=torch.tensor(start),
               final=LearnedFinal(torch.log(torch.tensor(ends))))
    return ours, ref, x


def test_learned_ends_match_pomegranate_likelihood_and_one_em_step():
    ours, ref, x = _pomegranate_pair(0)
    with torch.no_grad():
        np.testing.assert_allclose(ours(x).numpy(), ref.log_probability(x).numpy(), rtol=1e-11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(x)
    ours.fit(x, max_iter=1, verbose=False, initialize=False)
    np.testing.assert_allclose(ours.init_probs.detach().numpy(), ref.starts.exp().numpy(), atol=1e-12)
    np.testing.assert_allclose(ours.final.end_probs.detach().numpy(), ref.ends.exp().numpy(), atol=1e-12)
    edges = ours.transmat.detach() * (1 - ours.final.end_probs.detach())[:, None]
    np.testing.assert_allclose(edges.numpy(), ref.edges.exp().numpy(), atol=1e-12)
    np.testing.assert_allclose(ours.emission.means.detach().numpy(),
                               torch.stack([d.means for d in ref.distributions]).numpy(), atol=1e-10)
    np.testing.assert_allclose(ours.emission.covars.detach().numpy(),
                               torch.stack([d.covs for d in ref.distributions]).numpy(), atol=1e-10)
    with torch.no_grad():  # the updated models agree too
        np.testing.assert_allclose(ours(x).numpy(), ref.log_probability(x).numpy(), rtol=1e-11)


def _brute_force(model: HMM, x: torch.Tensor, lengths):
    """log p(x_b, length T_b) and (ends, departures) expected counts by enumerating every path."""
    log_em = model.log_emissions(x, torch.tensor(lengths)).detach()
    pi, a, e = model.init_probs.detach(), model.transmat.detach(), model.final.end_probs.detach()
    k = pi.shape[0]
    log_z, ends, departures = [], torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
    for b, n in enumerate(lengths):
        scores, paths = [], list(itertools.product(range(k), repeat=n))
        for z in paths:
            p = pi[z[0]] * e[z[-1]] * torch.exp(sum(log_em[b, t, z[t]] for t in range(n)))
            for t in range(1, n):
                p = p * (1 - e[z[t - 1]]) * a[z[t - 1], z[t]]
            scores.append(p)
        scores = torch.stack(scores)
        total = scores.sum()
        log_z.append(torch.log(total))
        for z, s in zip(paths, scores / total):
            ends[z[-1]] += s
            for t in range(n - 1):
                departures[z[t]] += s
    return torch.stack(log_z), ends, departures


@pytest.mark.parametrize("storage", ["dense", "banded", "sparse"])
def test_learned_ends_against_brute_force(storage):
    from pytorch_hmm.transitions import LearnedFinal

    k, lengths = 3, [4, 3, 5]
    transitions = {"dense": torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]], dtype=torch.float64),
                   "banded": Banded(torch.log(torch.tensor([[0.6, 0.4], [0.7, 0.3], [1.0, 0.0]], dtype=torch.float64))),
                   "sparse": Sparse(torch.tensor([[0, 2], [0, 1], [1, 2]]),
                                    torch.log(torch.tensor([[0.5, 0.2], [0.5, 0.9], [0.1, 0.8]], dtype=torch.float64)))}[storage]
    final = LearnedFinal(torch.log(torch.tensor([0.2, 0.1, 0.4], dtype=torch.float64)))
    model = _gaussian_model(transitions, k=k, seed=9, initial=torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), final=final)
    x = torch.nn.utils.rnn.pad_sequence(_sequences(10, lengths), batch_first=True)
    log_z, ends, departures = _brute_force(model, x, lengths)
    with torch.no_grad():
        np.testing.assert_allclose(model(x, torch.tensor(lengths)).numpy(), log_z.numpy(), rtol=1e-12)
        paths, scores = model.viterbi(x, torch.tensor(lengths))
    assert (scores <= log_z).all()
    history = model.fit(x, torch.tensor(lengths), max_iter=1, verbose=False, initialize=False, frozen=("emission",))
    assert history[0] == pytest.approx(float(log_z.sum()), rel=1e-12)
    np.testing.assert_allclose(model.final.end_probs.detach().numpy(), (ends / (ends + departures)).numpy(), atol=1e-12)
    # EM with learned ends never lowers the likelihood
    history = model.fit(x, torch.tensor(lengths), max_iter=8, tol=-np.inf, verbose=False, initialize=False)
    assert all(b >= a - 1e-9 for a, b in zip(history, history[1:]))


def test_learned_final_option_frozen_weights_and_saving(tmp_path):
    import pytorch_hmm
    from pytorch_hmm.transitions import LearnedFinal

    seqs = _sequences(12, (12, 20, 9))
    model = _gaussian_model("ergodic", final="learn")
    assert isinstance(model.final, LearnedFinal) and torch.allclose(model.final.end_probs, torch.full((K,), 1 / K, dtype=torch.float64))
    frozen = _gaussian_model("ergodic", final="learn")
    frozen.fit(seqs, max_iter=2, verbose=False, initialize=False, frozen="final")
    np.testing.assert_allclose(frozen.final.end_probs.detach().numpy(), 1 / K, atol=1e-15)
    model.fit(seqs, max_iter=3, verbose=False, initialize=False)
    assert model.final.end_probs.max() < 0.3  # ~ one end per 14 frames
    assert model.n_parameters() == _gaussian_model("ergodic").n_parameters() + K
    twice = _gaussian_model("ergodic", final="learn")
    twice.fit(seqs + [seqs[1]], max_iter=3, verbose=False, initialize=False)
    weighted = _gaussian_model("ergodic", final="learn")
    weighted.fit(seqs, weights=[1, 2, 1], max_iter=3, verbose=False, initialize=False)
    _assert_same_state(_state(weighted), _state(twice))  # the end counts are weighted too
    model.save(tmp_path / "m.pt")
    same = pytorch_hmm.load(tmp_path / "m.pt")
    assert isinstance(same.final, LearnedFinal)
    _assert_same_state(_state(same), _state(model), atol=0)
    x = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    with torch.no_grad():
        assert torch.equal(same(x, torch.tensor([12, 20, 9])), model(x, torch.tensor([12, 20, 9])))
    chain = _gaussian_model("left_to_right", final=LearnedFinal.last(K, torch.float64, end_prob=0.25))
    np.testing.assert_allclose(chain.final.end_probs.detach().numpy(), [0, 0, 0.25])


def test_learned_final_errors():
    from pytorch_hmm.errors import HMMDimensionError, HMMTypeError
    from pytorch_hmm.transitions import LearnedFinal

    with pytest.raises(HMMValueError, match=r"LearnedFinal log_end_probs must be log-probabilities <= 0 \(each state's "
                                            r"probability of ending the sequence\); got max 0.5"):
        LearnedFinal(torch.tensor([0.5, -1.0]))
    with pytest.raises(HMMDimensionError, match=r"LearnedFinal log_end_probs must be \(K,\); got \(2, 2\)"):
        LearnedFinal(torch.zeros(2, 2))
    with pytest.raises(HMMValueError, match=r"LearnedFinal log_end_probs must let some state end"):
        LearnedFinal(torch.full((3,), -math.inf))
    with pytest.raises(HMMTypeError, match=r"final must be None, 'last', .*; got 'learned' \(or 'learn': end probabilities learned by EM\)"):
        _gaussian_model("ergodic", final="learned")
    with pytest.raises(HMMValueError, match=r"frozen must name components among \('init_probs', 'transitions', 'emission'\); got \['final'\]"):
        _gaussian_model("ergodic").fit(_sequences(0), frozen="final", verbose=False)
