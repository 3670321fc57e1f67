"""The public single-step API (forward_step, viterbi_step) iterated over a sequence == the whole-sequence kernel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kernel_calls import torch_inputs
from oracle import LAYOUTS, STORAGES, random_problem
from pytorch_hmm import LogSemiring, MaxSemiring, kernel
from pytorch_hmm.errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMValueError
from pytorch_hmm.kernel import chain_step, forward_step, viterbi_step
from pytorch_hmm.transitions import Banded, Dense, Sparse, ergodic

STRUCTURES = [(s, l) for s in STORAGES for l in LAYOUTS]
IDS = [f"{s}-{l}" for s, l in STRUCTURES]


def inputs(storage, layout, seed=0, dtype=torch.float64, p_inf=0.1):
    p = random_problem(np.random.default_rng(seed), 3, 7, 5, storage=storage, layout=layout, width=3,
                       final="batched", p_inf=p_inf, init_batched=True, pred_batched=seed % 2 == 1, scale=1.0)
    return torch_inputs(p, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("storage,layout", STRUCTURES, ids=IDS)
def test_forward_steps_give_log_partition(storage, layout, dtype):
    for seed in range(2):
        inp = inputs(storage, layout, seed, dtype)
        e, tr, init, final = inp["log_emissions"], inp["transitions"], inp["log_init"], inp["log_final"]
        alpha = init + e[:, 0]
        for t in range(1, e.shape[1]):
            alpha = forward_step(alpha, tr, e[:, t], step=t - 1)
            assert alpha.shape == e[:, t].shape and alpha.dtype == dtype
        log_z = torch.logsumexp(alpha + final, -1)
        expected = kernel.log_partition(e, tr, init, log_final=final, backend="torch")
        tol = 1e-10 if dtype == torch.float64 else 1e-4
        np.testing.assert_allclose(log_z.numpy(), expected.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("storage,layout", STRUCTURES, ids=IDS)
def test_viterbi_steps_give_viterbi(storage, layout):
    for seed in range(2):
        inp = inputs(storage, layout, seed)
        e, tr, init, final = inp["log_emissions"], inp["transitions"], inp["log_init"], inp["log_final"]
        delta = init + e[:, 0]
        pointers = []
        for t in range(1, e.shape[1]):
            delta, back = viterbi_step(delta, tr, e[:, t], step=t - 1)
            assert back.dtype == torch.int64 and back.shape == delta.shape
            pointers.append(back)
        scores, state = (delta + final).max(-1)
        path = [state]
        for back in reversed(pointers):
            state = back.gather(1, state[:, None]).squeeze(1)
            path.append(state)
        path = torch.stack(path[::-1], 1)
        ref_paths, ref_scores = kernel.viterbi(e, tr, init, log_final=final, backend="torch")
        np.testing.assert_allclose(scores.numpy(), ref_scores.numpy(), rtol=1e-12, atol=1e-12)
        feasible = torch.isfinite(ref_scores)
        assert torch.equal(path[feasible], ref_paths[feasible])


def test_forward_step_without_emissions_and_with_a_tensor():
    torch.manual_seed(0)
    lp = torch.randn(3, 3, dtype=torch.float64)
    a = torch.randn(2, 3, dtype=torch.float64)
    expected = torch.logsumexp(a[:, :, None] + lp, 1)
    torch.testing.assert_close(forward_step(a, lp), expected)
    torch.testing.assert_close(forward_step(a, Sparse.from_dense(lp)), expected)
    best, back = viterbi_step(a, Dense(lp))
    torch.testing.assert_close(best, (a[:, :, None] + lp).amax(1))
    assert torch.equal(back, (a[:, :, None] + lp).argmax(1))


def test_forward_step_is_differentiable():
    inp = inputs("sparse", "batched", 1)
    e = inp["log_emissions"].clone().requires_grad_(True)
    tr, init, final = inp["transitions"], inp["log_init"], inp["log_final"]
    alpha = init + e[:, 0]
    for t in range(1, e.shape[1]):
        alpha = forward_step(alpha, tr, e[:, t])
    (g,) = torch.autograd.grad(torch.logsumexp(alpha + final, -1).sum(), [e])
    post = kernel.posteriors(e.detach(), tr, init, log_final=final)
    np.testing.assert_allclose(g.numpy(), post.numpy(), atol=1e-10)


def test_chain_step_is_parameterised_by_the_semiring():
    torch.manual_seed(1)
    tr = ergodic(4, dtype=torch.float64)
    a = torch.randn(2, 4, dtype=torch.float64)
    torch.testing.assert_close(chain_step(a, tr, semiring=LogSemiring), forward_step(a, tr))
    v, b = chain_step(a, tr, semiring=MaxSemiring)
    v2, b2 = viterbi_step(a, tr)
    assert torch.equal(v, v2) and torch.equal(b, b2)


# ---------------------------------------------------------------------------------------
# boundary checks (one per message)
# ---------------------------------------------------------------------------------------


def good():
    return torch.zeros(2, 3), ergodic(3)


def test_scores_not_tensor():
    with pytest.raises(TypeError, match=r"log_alpha must be a torch.Tensor of shape \(B, K\); got list"):
        forward_step([[0.0, 0.0, 0.0]], ergodic(3))


def test_scores_ndim():
    a, tr = good()
    with pytest.raises(HMMDimensionError, match=r"delta must be \(B, K\); got shape \(3,\)"):
        viterbi_step(a[0], tr)


def test_scores_dtype():
    a, tr = good()
    with pytest.raises(HMMDtypeError, match="log_alpha must be float32 or float64; got torch.int64"):
        forward_step(a.long(), tr)


def test_step_state_count():
    a, _ = good()
    with pytest.raises(HMMDimensionError, match=r"transitions must describe K == 3 states to match log_alpha \(2, 3\); got Dense .* \(4 states\)"):
        forward_step(a, ergodic(4))


def test_step_batch_mismatch():
    a, _ = good()
    with pytest.raises(HMMDimensionError, match=r"batched transitions must have B == 2 \(the batch size of log_alpha\); got shape \(3, 3, 3\)"):
        forward_step(a, Dense(torch.zeros(3, 3, 3)))


def test_step_transition_dtype():
    a, tr = good()
    with pytest.raises(HMMDtypeError, match=r"transitions.log_probs must have the dtype of log_alpha \(torch.float32\); got torch.float64"):
        forward_step(a, tr.to(torch.float64))


def test_step_index_type():
    a, tr = good()
    with pytest.raises(HMMValueError, match="step must be an int; got float"):
        forward_step(a, tr, step=1.0)


def test_step_index_bool():
    a, tr = good()
    with pytest.raises(HMMValueError, match="step must be an int; got bool"):
        forward_step(a, tr, step=True)


def test_step_index_numpy_integer_is_an_int():
    a, _ = good()
    tr = Dense(torch.randn(2, 4, 3, 3))
    assert torch.equal(forward_step(a, tr, step=np.int64(2)), forward_step(a, tr, step=2))


def test_step_semiring_must_be_log_or_max():
    a, tr = good()
    with pytest.raises(HMMValueError, match=r"semiring must be pytorch_hmm.LogSemiring or pytorch_hmm.MaxSemiring; got 'max'"):
        chain_step(a, tr, semiring="max")


def test_time_varying_step_puts_only_its_slice_in_canonical_form():
    """A step of a time-varying storage reads (and masks) one slice, not the whole (B, T-1, K, X) table:
    garbage (NaN) at other steps and at unused slots does not reach the result."""
    torch.manual_seed(0)
    pred = torch.tensor([[0, -1], [0, 1], [1, 2]])
    lp = torch.randn(2, 6, 3, 2, dtype=torch.float64)
    ref = forward_step(torch.zeros(2, 3, dtype=torch.float64), Sparse(pred, lp), step=3)
    lp[:, [0, 1, 2, 4, 5]] = float("nan")
    lp[:, 3, 0, 1] = float("nan")  # an unused slot
    got = forward_step(torch.zeros(2, 3, dtype=torch.float64), Sparse(pred, lp), step=3)
    assert torch.equal(got, ref)
    banded = torch.randn(2, 6, 3, 2, dtype=torch.float64)
    ref = forward_step(torch.zeros(2, 3, dtype=torch.float64), Banded(banded), step=1)
    banded[:, 0] = float("nan")
    assert torch.equal(forward_step(torch.zeros(2, 3, dtype=torch.float64), Banded(banded), step=1), ref)


def test_step_index_range():
    a, _ = good()
    with pytest.raises(HMMValueError, match=r"step must index the T-1 == 4 steps of time-varying transitions, in \[0, 4\); got 4"):
        forward_step(a, Dense(torch.zeros(2, 4, 3, 3)), step=4)


def test_step_emissions_shape():
    a, tr = good()
    with pytest.raises(HMMDimensionError, match=r"log_emissions_t must be \(B, K\) == \(2, 3\) like log_alpha; got shape \(3,\)"):
        forward_step(a, tr, torch.zeros(3))


def test_step_emissions_not_tensor():
    a, tr = good()
    with pytest.raises(TypeError, match=r"log_emissions_t must be a torch.Tensor of shape \(B, K\)"):
        forward_step(a, tr, [0.0, 0.0, 0.0])


def test_step_emissions_dtype():
    a, tr = good()
    with pytest.raises(HMMDtypeError, match=r"log_emissions_t must have the dtype of log_alpha \(torch.float32\); got torch.float64"):
        forward_step(a, tr, torch.zeros(2, 3, dtype=torch.float64))


def test_step_with_infeasible_scores_stays_minus_inf():
    a = torch.full((1, 3), -math.inf)
    for tr in (ergodic(3), Sparse.from_dense(ergodic(3))):
        assert torch.isneginf(forward_step(a, tr)).all()
        assert torch.isneginf(viterbi_step(a, tr)[0]).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("storage,layout", STRUCTURES, ids=IDS)
def test_steps_on_cuda(storage, layout):
    inp = inputs(storage, layout, 1)
    e, tr, init = inp["log_emissions"], inp["transitions"], inp["log_init"]
    tr_gpu = inputs(storage, layout, 1)["transitions"].to("cuda")
    a, d = init + e[:, 0], init + e[:, 0]
    a_gpu, d_gpu = a.cuda(), d.cuda()
    for t in range(1, e.shape[1]):
        a = forward_step(a, tr, e[:, t], step=t - 1)
        a_gpu = forward_step(a_gpu, tr_gpu, e[:, t].cuda(), step=t - 1)
        d, back = viterbi_step(d, tr, e[:, t], step=t - 1)
        d_gpu, back_gpu = viterbi_step(d_gpu, tr_gpu, e[:, t].cuda(), step=t - 1)
        assert a_gpu.device.type == "cuda" and back_gpu.device.type == "cuda"
        torch.testing.assert_close(d_gpu.cpu(), d)
        assert torch.equal(back_gpu.cpu()[torch.isfinite(d)], back[torch.isfinite(d)])
    torch.testing.assert_close(a_gpu.cpu(), a)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_step_device_mismatch():
    a, tr = good()
    with pytest.raises(HMMDeviceError, match="transitions.log_probs must be on the device of log_alpha"):
        forward_step(a.cuda(), tr)
    with pytest.raises(HMMDeviceError, match="log_emissions_t must be on the device of log_alpha"):
        forward_step(a, tr, torch.zeros(2, 3, device="cuda"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sparse_device_mismatch():
    with pytest.raises(HMMDeviceError, match=r"Sparse predecessors must be on the device of log_probs \(cuda"):
        Sparse(torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 2, device="cuda"))
