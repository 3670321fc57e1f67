"""Initialisation: equal segmentation for left-to-right models, k-means otherwise, and a fresh
model trained by gradient descent is initialised from its first batch (as fit does)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import pytorch_hmm as ph
from pytorch_hmm.emissions import Gaussian
from pytorch_hmm.errors import HMMValueError
from pytorch_hmm.training.data import as_batches
from pytorch_hmm.training.em import equal_segments, initialize_emission, is_left_to_right

MEANS = torch.tensor([[0.0, 0.0], [3.0, 0.0], [6.0, 0.0], [3.0, 3.0], [0.0, 0.0]], dtype=torch.float64)


def _chain_sequences(num: int = 8, seed: int = 0):
    """Left-to-right data whose first and last states look alike (silence at both ends)."""
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for _ in range(num):
        states = torch.repeat_interleave(torch.arange(5), torch.randint(6, 14, (5,), generator=g))
        seqs.append(MEANS[states] + 0.5 * torch.randn(len(states), 2, generator=g, dtype=torch.float64))
    return seqs


def test_equal_segments_is_the_uniform_segmentation() -> None:
    lengths = torch.tensor([7, 3, 2])
    got = equal_segments(lengths, 7, 3, torch.float64)
    for b, n in enumerate(lengths.tolist()):
        want = np.zeros((7, 3))
        for t in range(n):
            want[t, min(t * 3 // n, 2)] = 1.0  # HTK's uniform segmentation: T/K frames per state
        np.testing.assert_array_equal(got[b].numpy(), want)
    assert got[0].argmax(-1).tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert got[2].sum().item() == 2 and got[1].argmax(-1)[:3].tolist() == [0, 1, 2]


def test_segments_start_each_state_from_its_own_stretch_of_every_sequence() -> None:
    seqs = _chain_sequences()
    model = ph.HMM(Gaussian(5, 2, dtype=torch.float64), "left_to_right")
    assert initialize_emission(model, as_batches(seqs), "auto") == "segments"
    stretches = [[] for _ in range(5)]
    for s in seqs:
        n = len(s)
        for t in range(n):
            stretches[t * 5 // n].append(s[t].numpy())
    want = np.array([np.mean(rows, axis=0) for rows in stretches])
    np.testing.assert_allclose(model.emission.means.detach().numpy(), want, rtol=1e-12, atol=1e-12)
    assert not model.emission.needs_init


def test_left_to_right_fits_start_from_segments_and_reach_the_better_optimum() -> None:
    """k-means over all frames merges the two silent ends and gives the chain's states clusters
    in no particular order; EM then stops in a worse optimum for most seeds."""
    seqs = _chain_sequences()
    finals = {}
    for method in ("kmeans", "segments"):
        finals[method] = []
        for seed in range(5):
            model = ph.HMM(Gaussian(5, 2, dtype=torch.float64), "left_to_right", final="last")
            history = model.fit(seqs, max_iter=50, verbose=False, initialize=method,
                                generator=torch.Generator().manual_seed(seed))
            finals[method].append(history[-1])
        if method == "segments":
            np.testing.assert_allclose(model.emission.means.detach().numpy(), MEANS.numpy(), atol=0.3)
    best = max(finals["segments"])
    assert all(f == pytest.approx(best, abs=1e-3) for f in finals["segments"])  # the same optimum for every seed
    assert sum(f < best - 50 for f in finals["kmeans"]) >= 2  # k-means: stuck far below for some seeds
    default = ph.HMM(Gaussian(5, 2, dtype=torch.float64), "left_to_right", final="last")
    assert default.fit(seqs, max_iter=50, verbose=False)[-1] == pytest.approx(best, abs=1e-3)  # auto = segments


def test_which_models_are_left_to_right() -> None:
    assert is_left_to_right(ph.HMM(Gaussian(3, 2), "left_to_right"))
    assert not is_left_to_right(ph.HMM(Gaussian(3, 2), "ergodic"))
    assert not is_left_to_right(ph.HMM(Gaussian(3, 2), "left_to_right", initial=torch.full((3,), 1 / 3)))
    assert is_left_to_right(ph.HSMM(Gaussian(3, 2), "poisson", "left_to_right", max_duration=5))
    assert not is_left_to_right(ph.HSMM(Gaussian(3, 2), "poisson", max_duration=5))
    assert not is_left_to_right(ph.HMM(Gaussian(1, 2)))
    ergodic = ph.HMM(Gaussian(3, 2))
    assert initialize_emission(ergodic, as_batches([torch.randn(30, 2)]), "auto") == "kmeans"


def test_hsmm_chains_start_from_segments_too() -> None:
    seqs = [s.float() for s in _chain_sequences()]
    model = ph.HSMM(Gaussian(5, 2), "poisson", "left_to_right", max_duration=20)
    assert initialize_emission(model, as_batches(seqs), "auto") == "segments"
    means = model.emission.means.detach()
    assert means[2, 0] > 5.0 and means[0].abs().max() < 1.0  # state 2 from the middle, state 0 from the start


def test_bad_initialize_is_named() -> None:
    model = ph.HMM(Gaussian(2, 2))
    with pytest.raises(HMMValueError, match=r"initialize must be None, a bool or one of \('auto', 'kmeans', 'segments'\); got 'kmeans\+\+'"):
        model.fit(torch.randn(2, 10, 2), initialize="kmeans++", verbose=False)


def _two_clusters(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    states = (torch.rand(8, 40, generator=g) < 0.5).long()
    return torch.tensor([[-3.0, 0.0], [3.0, 0.0]])[states] + 0.3 * torch.randn(8, 40, 2, generator=g)


def test_gradient_training_from_a_fresh_model_separates_the_states() -> None:
    x = _two_clusters()
    model = ph.HMM(Gaussian(2, 2))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)  # made before the first forward: still the same tensors
    for _ in range(30):
        optimiser.zero_grad()
        loss = -model(x).mean()
        loss.backward()
        optimiser.step()
    means = model.emission.means.detach()
    assert not model.emission.needs_init
    assert (means[0] - means[1]).norm() > 4.0  # placeholders (both zero) would have stayed identical
    assert sorted(means[:, 0].tolist()) == pytest.approx([-3.0, 3.0], abs=0.3)


def test_scoring_a_fresh_model_changes_nothing() -> None:
    x = _two_clusters()
    model = ph.HMM(Gaussian(2, 2))
    with torch.no_grad():
        model(x)
    model.eval()
    model(x)
    assert model.emission.needs_init and not model.emission.means.detach().any()
