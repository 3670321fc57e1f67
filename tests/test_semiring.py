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



def test_semiring_vecmat_is_the_step_of_its_recursion():
    torch.manual_seed(0)
    a = torch.randn(5, 5, dtype=torch.float64)
    a[:, 3] = float("-inf")  # a state without incoming edges
    trans = a.expand(1, 2, 5, 5)  # (B', S, K, K)
    v = torch.randn(3, 5, dtype=torch.float64)
    v[0] = float("-inf")
    log = LogSemiring.vecmat(v, LogSemiring.matrix_factors(trans), 1)
    expected = torch.logsumexp(v[:, :, None] + a, 1)
    torch.testing.assert_close(log, expected)
    back = LogSemiring.vecmat(v, LogSemiring.matrix_factors(trans, reverse=True), 0)
    torch.testing.assert_close(back, torch.logsumexp(a + v[:, None, :], 2))
    best, arg = MaxSemiring.vecmat_with_argmax(v, MaxSemiring.matrix_factors(trans), 0)
    torch.testing.assert_close(best, (v[:, :, None] + a).amax(1))
    assert torch.equal(arg[1:], (v[:, :, None] + a).argmax(1)[1:])
    torch.testing.assert_close(MaxSemiring.vecmat(v, MaxSemiring.matrix_factors(trans), 0), best)


def test_log_semiring_gradient_of_an_empty_row_is_zero():
    x = torch.tensor([[0.0, float("-inf")], [float("-inf"), float("-inf")]], requires_grad=True)
    out = LogSemiring.sum(x, -1)
    assert out[1].item() == float("-inf")
    (g,) = torch.autograd.grad(out[0] + (out[1] * 0).nan_to_num(), [x])
    assert torch.equal(g, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logsumexp_in_place_matches_torch_on_hostile_rows(dtype):
    """Rows all -inf, with +inf, NaN, extreme but finite values and terms far below the maximum
    (where exp underflows): the in-place reduction equals ``torch.logsumexp`` (computed in
    float64) and overwrites its input."""
    from pytorch_hmm.semiring import logsumexp_

    inf, nan = math.inf, math.nan
    rows = [
        [-inf, -inf, -inf], [0.0, -inf, -inf], [inf, 0.0, -inf], [nan, 0.0, 1.0], [3e38 if dtype == torch.float32 else 1e300, 0.0, -1.0],
        [-3e38 if dtype == torch.float32 else -1e300, -3e38 if dtype == torch.float32 else -1e300, 0.0],
        [0.0, -79.0, -81.0], [0.0, -200.0, -1e4], [-1000.0, -1000.0, -1000.0], [1.0, 2.0, 3.0], [-5e4, -5e4 - 90, -5e4 - 1e-3],
    ]
    x = torch.tensor(rows, dtype=dtype)
    want = torch.logsumexp(x.double(), -1)
    got = logsumexp_(x.clone(), -1)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), want, rtol=2 * torch.finfo(dtype).eps, atol=0.0, equal_nan=True)
    y = x.clone().T.contiguous()  # the same rows along dim 0
    torch.testing.assert_close(logsumexp_(y, 0).double(), want, rtol=2 * torch.finfo(dtype).eps, atol=0.0, equal_nan=True)
    assert not torch.equal(y, x.T.contiguous())  # computed in the input's memory


def test_logsumexp_in_place_leaves_inputs_that_need_gradients():
    from pytorch_hmm.semiring import logsumexp_

    x = torch.tensor([[0.0, -1.0, -100.0], [-math.inf, -math.inf, -math.inf]], dtype=torch.float64, requires_grad=True)
    before = x.detach().clone()
    out = logsumexp_(x, -1)
    out[0].backward()
    assert torch.equal(x.detach(), before)
    torch.testing.assert_close(x.grad[0], torch.softmax(before[0], -1))
    assert out[1].item() == -math.inf
