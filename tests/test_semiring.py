"""The two semirings against closed forms."""

import math

import pytest
import torch

from pytorch_hmm import LogSemiring, MaxSemiring


def test_log_semiring_sums_probabilities():
    x = torch.tensor([[math.log(0.2), math.log(0.3), float("-inf")], [float("-inf")] * 3], dtype=torch.float64)
    out = LogSemiring.sum(x, -1)
    assert out[0].item() == pytest.approx(math.log(0.5), rel=1e-12)
    assert out[1].item() == float("-inf")  # no path: -inf, not NaN


def test_max_semiring_keeps_best_and_its_index():
    x = torch.tensor([[1.0, 5.0, 3.0], [-2.0, -1.0, -7.0]])
    values, index = MaxSemiring.sum_with_argmax(x, -1)
    assert values.tolist() == [5.0, -1.0] and index.tolist() == [1, 1]
    assert MaxSemiring.sum(x, 0).tolist() == [1.0, 5.0, 3.0]

