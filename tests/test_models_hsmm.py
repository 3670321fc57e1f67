"""HSMM model: reduction to an HMM, EM monotonicity, parameter recovery, topology, errors."""

from __future__ import annotations

import math

import pytest
import torch

from pytorch_hmm import HMM, HSMM, SemiMarkovHMM
from pytorch_hmm.durations import Categorical, Gamma, Neural, Poisson
from pytorch_hmm.durations import Gaussian as GaussianDuration
from pytorch_hmm.emissions import Gaussian
from pytorch_hmm.errors import HMMDimensionError, HMMValueError

MEANS = torch.tensor([[0.0, 0.0], [4.0, 4.0], [-4.0, 4.0]], dtype=torch.float64)


def _true_model(durations=None) -> HSMM:
    emission = Gaussian(3, 2, means=MEANS, covars=torch.ones(3, 2, dtype=torch.float64), dtype=torch.float64)
    durations = durations or Poisson(3, 25, rate=torch.tensor([2.0, 6.0, 12.0]))
    return HSMM(emission, durations)


def test_geometric_durations_reduce_to_the_hmm():
    """Geometric durations and leaving probabilities give exactly the HMM with self-loops."""
    torch.manual_seed(0)
    t, k, d_max = 30, 3, 150  # stay <= 0.8: the geometric mass past 150 frames is < 1e-14
    stay = torch.tensor([0.6, 0.8, 0.3], dtype=torch.float64)
    leave = torch.tensor([[0.0, 0.7, 0.3], [0.5, 0.0, 0.5], [0.1, 0.9, 0.0]], dtype=torch.float64)
    d = torch.arange(1, d_max + 1, dtype=torch.float64)
    geometric = stay[:, None] ** (d - 1) * (1 - stay)[:, None]
    emission = Gaussian(k, 2, means=MEANS, covars=torch.ones(k, 2, dtype=torch.float64), dtype=torch.float64)
    hsmm = HSMM(emission, Categorical(k, d_max, probs=geometric / geometric.sum(-1, keepdim=True), dtype=torch.float64), transitions=leave)
    hmm = HMM(emission, transitions=torch.diag(stay) + (1 - stay)[:, None] * leave, init_probs=hsmm.init_probs.detach())
    x = torch.randn(4, t, 2, dtype=torch.float64) * 3
    lengths = torch.tensor([30, 12, 5, 1])
    # the HSMM applies the last segment's leaving factor, the HMM does not: log_final undoes it
    with torch.no_grad():
        hsmm.log_final.copy_(-torch.log1p(-stay))
    torch.testing.assert_close(hsmm.posteriors(x, lengths), hmm.posteriors(x, lengths), atol=1e-10, rtol=0)
    torch.testing.assert_close(hsmm(x, lengths), hmm(x, lengths), rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("make_durations", [
    lambda: Poisson(3, 25),
    lambda: GaussianDuration(3, 25),
    lambda: Gamma(3, 25),
    lambda: Categorical(3, 25),
])
def test_em_never_decreases_the_likelihood(make_durations):
    g = torch.Generator().manual_seed(1)
    x, _ = _true_model().sample(12, 80, generator=g)
    lengths = torch.randint(40, 81, (12,), generator=g)
    model = HSMM(Gaussian(3, 2, dtype=torch.float64), make_durations())
    history = model.fit(x, lengths, max_iter=12, tol=-1.0, verbose=False, generator=g)
    assert len(history) == 12
    assert all(b >= a - 1e-10 * abs(a) for a, b in zip(history, history[1:])), history


def test_fit_recovers_durations_and_transitions():
    g = torch.Generator().manual_seed(2)
    truth = _true_model()
    with torch.no_grad():
        truth.transition.logits.copy_(torch.log(torch.tensor([[0.0, 0.8, 0.2], [0.3, 0.0, 0.7], [0.5, 0.5, 0.0]])).double())
    x, _ = truth.sample(60, 150, generator=g)
    model = HSMM(Gaussian(3, 2, dtype=torch.float64), Poisson(3, 25))
    model.fit(x, max_iter=60, verbose=False, generator=g)
    order = torch.cdist(truth.emission.loc.detach(), model.emission.loc.detach()).argmin(1)  # truth state -> fitted state
    torch.testing.assert_close(model.durations.rate[order].double(), truth.durations.rate.double(), rtol=0.1, atol=0)
    torch.testing.assert_close(model.transmat[order][:, order], truth.transmat, atol=0.08, rtol=0)


def test_left_to_right_phone_chain_one_liner():
    """TTS-style: phones in order, each with its own duration; the last phone ends the utterance."""
    g = torch.Generator().manual_seed(3)
    k = 4
    means = torch.arange(k, dtype=torch.float64)[:, None].expand(k, 3) * 5
    model = HSMM(Gaussian(k, 3, means=means, covars=torch.ones(k, 3, dtype=torch.float64), dtype=torch.float64), "gaussian",
                 transitions="left_to_right", max_duration=20)
    x = torch.cat([means[i].expand(n, 3) for i, n in enumerate([3, 7, 2, 9])])[None] + 0.1 * torch.randn(1, 21, 3, generator=g, dtype=torch.float64)
    _, _, segments = model.viterbi(x)
    assert segments == [[(0, 0, 3), (1, 3, 10), (2, 10, 12), (3, 12, 21)]]
    # a sequence too short for every phone has no alignment
    assert model(x[:, :3]).item() == -math.inf
    assert model.expected_durations().shape == (k,)


def test_frozen_durations_keep_their_parameters_and_fit_the_rest():
    g = torch.Generator().manual_seed(4)
    x, _ = _true_model().sample(8, 60, generator=g)
    model = HSMM(Gaussian(3, 2, dtype=torch.float64), Poisson(3, 25, rate=4.0))
    model.fit(x, max_iter=3, verbose=False, frozen=("durations",), generator=g)
    torch.testing.assert_close(model.durations.rate, torch.full((3,), 4.0, dtype=torch.float64))


def test_neural_durations_train_by_gradient_inside_the_model():
    torch.manual_seed(5)
    g = torch.Generator().manual_seed(5)
    x, _ = _true_model().sample(16, 60, generator=g)
    model = HSMM(Gaussian(3, 2, means=MEANS, covars=torch.ones(3, 2, dtype=torch.float64), dtype=torch.float64), Neural(context_dim=3, max_duration=25))
    model.durations.double()
    context = torch.eye(3, dtype=torch.float64)
    opt = torch.optim.Adam(model.durations.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = -model(x, duration_context=context).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0
    with pytest.raises(HMMValueError, match=r"Neural durations have no closed-form M-step; pass frozen=\('durations',\)"):
        model.fit(x, max_iter=1, verbose=False)


def test_state_dict_round_trip_and_alias():
    model = _true_model()
    other = SemiMarkovHMM(Gaussian(3, 2, dtype=torch.float64), Poisson(3, 25))
    other.load_state_dict(model.state_dict())
    x, _ = model.sample(2, 30)
    torch.testing.assert_close(other(x), model(x))
    assert SemiMarkovHMM is HSMM


def test_sample_respects_durations_and_topology():
    g = torch.Generator().manual_seed(6)
    model = HSMM(Gaussian(2, 1, dtype=torch.float64), Categorical(2, 3, probs=torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])))
    x, states = model.sample(5, 9, generator=g)
    assert x.shape == (5, 9, 1)
    for row in states.tolist():  # ergodic over two states: alternate 3 frames of one, 1 of the other
        assert row in ([0, 0, 0, 1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 1, 0, 0, 0, 1])


# --- errors ---

def test_error_named_family_needs_max_duration():
    with pytest.raises(HMMValueError, match=r"durations='poisson' needs max_duration"):
        HSMM(Gaussian(2, 1), "poisson")
    with pytest.raises(HMMValueError, match=r"durations must be a Duration module or one of"):
        HSMM(Gaussian(2, 1), "weibull", max_duration=5)


def test_error_durations_mismatch():
    with pytest.raises(HMMDimensionError, match=r"durations must describe K == 2 states \(the emission's\); got 3"):
        HSMM(Gaussian(2, 1), Poisson(3, 5))
    with pytest.raises(HMMValueError, match=r"max_duration \(7\) differs from durations.max_duration \(5\)"):
        HSMM(Gaussian(2, 1), Poisson(2, 5), max_duration=7)


def test_error_transitions():
    with pytest.raises(HMMValueError, match=r"transitions must have a zero diagonal"):
        HSMM(Gaussian(2, 1), Poisson(2, 5), transitions=torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
    with pytest.raises(HMMValueError, match=r"each row of transitions must sum to 1 \(or 0 for a state without moves\)"):
        HSMM(Gaussian(2, 1), Poisson(2, 5), transitions=torch.tensor([[0.0, 0.5], [1.0, 0.0]]))
    with pytest.raises(HMMDimensionError, match=r"transitions must have shape \(2, 2\); got \(3, 3\)"):
        HSMM(Gaussian(2, 1), Poisson(2, 5), transitions=torch.zeros(3, 3))
    with pytest.raises(HMMValueError, match=r"transitions must be 'ergodic', 'left_to_right' or a \(K, K\) tensor; got 'banded'"):
        HSMM(Gaussian(2, 1), Poisson(2, 5), transitions="banded")


def test_double_and_float_moves_keep_the_model_working():
    """``model.double()`` after construction in float32 casts every component; forward and fit run in float64."""
    emission = Gaussian(3, 2, means=MEANS.float(), covars=torch.ones(3, 2))
    model = HSMM(emission, "poisson", max_duration=10).double()
    x = torch.randn(2, 20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert model(x).dtype == torch.float64
    history = model.fit(x, max_iter=3, verbose=False)
    assert all(b >= a - 1e-8 for a, b in zip(history, history[1:]))
    model.float()
    assert model(x.float()).dtype == torch.float32


def test_frozen_durations_as_a_string():
    g = torch.Generator().manual_seed(4)
    x, _ = _true_model().sample(4, 60, generator=g)
    model = HSMM(Gaussian(3, 2, dtype=torch.float64), Poisson(3, 25, rate=4.0))
    model.fit(x, max_iter=2, verbose=False, frozen="durations", generator=g)
    torch.testing.assert_close(model.durations.rate, torch.full((3,), 4.0, dtype=torch.float64))
