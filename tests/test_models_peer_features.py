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
