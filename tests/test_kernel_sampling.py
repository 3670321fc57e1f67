"""sample_paths draws from the chain it is given."""

import pytest
import torch

from pytorch_hmm.errors import HMMValueError
from pytorch_hmm.kernel import sample_paths
from pytorch_hmm.transitions import Banded, Dense, left_to_right


def _transition_frequencies(paths: torch.Tensor, k: int) -> torch.Tensor:
    counts = torch.zeros(k, k, dtype=torch.float64)
    counts.index_put_((paths[:, :-1].flatten(), paths[:, 1:].flatten()), torch.ones(paths[:, 1:].numel(), dtype=torch.float64), accumulate=True)
    return counts / counts.sum(-1, keepdim=True)


def test_dense_frequencies_match_the_matrix():
    g = torch.Generator().manual_seed(1)
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.05, 0.15, 0.8]], dtype=torch.float64)
    init = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    paths = sample_paths(Dense(probs.log()), init.log(), 400, 200, generator=g)
    assert paths.shape == (400, 200) and paths.dtype == torch.int64
    torch.testing.assert_close(_transition_frequencies(paths, 3), probs, atol=0.015, rtol=0)
    first = torch.bincount(paths[:, 0], minlength=3).double() / 400
    torch.testing.assert_close(first, init, atol=0.08, rtol=0)


def test_banded_paths_move_forward_within_the_band():
    g = torch.Generator().manual_seed(2)
    band = left_to_right(6, skip=1, self_loop=0.6, dtype=torch.float64)
    init = torch.log(torch.tensor([1.0, 0, 0, 0, 0, 0], dtype=torch.float64))
    paths = sample_paths(band, init, 3000, 20, generator=g)
    steps = paths[:, 1:] - paths[:, :-1]
    assert (steps >= 0).all() and (steps <= 2).all() and (paths <= 5).all()
    torch.testing.assert_close(_transition_frequencies(paths, 6), band.to_dense().log_probs.exp(), atol=0.03, rtol=0)


def test_time_varying_steps_are_used_in_order():
    k, n, t = 2, 50, 4
    # step 0 forces state 1, step 1 forces state 0, step 2 forces state 1
    logits = torch.full((n, t - 1, k, k), float("-inf"))
    for step, target in enumerate([1, 0, 1]):
        logits[:, step, :, target] = 0.0
    paths = sample_paths(Dense(logits), torch.zeros(k), n, t, generator=torch.Generator().manual_seed(0))
    assert (paths[:, 1:] == torch.tensor([1, 0, 1])).all()


def test_sample_paths_errors():
    band = left_to_right(3)
    with pytest.raises(HMMValueError, match="length must be a positive int; got 0"):
        sample_paths(band, torch.zeros(3), 2, 0)
    with pytest.raises(HMMValueError, match="num_sequences must be a positive int; got -1"):
        sample_paths(band, torch.zeros(3), -1, 5)
    with pytest.raises(HMMValueError, match=r"log_init must be \(K,\) or \(N, K\) with K == 3"):
        sample_paths(band, torch.zeros(4), 2, 5)
    with pytest.raises(HMMValueError, match="batched transitions must have B == num_sequences == 2; got 3"):
        sample_paths(Banded(torch.zeros(3, 3, 2)), torch.zeros(3), 2, 5)
    with pytest.raises(HMMValueError, match="time-varying transitions must have length-1 == 4 steps; got 2"):
        sample_paths(Banded(torch.zeros(2, 2, 3, 2)), torch.zeros(3), 2, 5)
