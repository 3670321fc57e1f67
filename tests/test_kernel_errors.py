"""Bad input to the kernel raises a ValueError subclass naming the argument (one test per message)."""

import math

import pytest
import torch

from pytorch_hmm.errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMValueError
from pytorch_hmm.kernel import expected_transitions, log_partition, posteriors, viterbi
from pytorch_hmm.transitions import Banded, Dense, Sparse, ergodic, left_to_right

B, T, K = 2, 5, 3
ROUTINES = [log_partition, posteriors, expected_transitions, viterbi]


def good():
    torch.manual_seed(0)
    return torch.randn(B, T, K), ergodic(K), torch.full((K,), -math.log(K))


@pytest.mark.parametrize("routine", ROUTINES)
def test_emissions_ndim(routine):
    e, tr, init = good()
    with pytest.raises(HMMDimensionError, match=r"log_emissions must be \(B, T, K\); got shape \(5, 3\)") as info:
        routine(e[0], tr, init)
    assert info.value.actual_shape == (T, K)
    assert info.value.expected_shape == ("B", "T", "K")
    assert "unsqueeze(0)" in info.value.suggestion


def test_emissions_not_tensor():
    _, tr, init = good()
    with pytest.raises(TypeError, match="log_emissions must be a torch.Tensor"):
        log_partition([[[0.0]]], tr, init)


def test_emissions_dtype():
    e, tr, init = good()
    with pytest.raises(HMMDtypeError, match="log_emissions must be float32 or float64; got torch.int64"):
        log_partition(e.long(), tr, init)


def test_emissions_empty():
    _, tr, init = good()
    with pytest.raises(HMMDimensionError, match="at least one sequence, frame and state; got shape \\(2, 0, 3\\)"):
        log_partition(torch.zeros(B, 0, K), tr, init)


def test_state_count_mismatch():
    e, _, init = good()
    with pytest.raises(HMMDimensionError, match=r"transitions must describe K == 3 states .* \(4 states\)"):
        log_partition(e, ergodic(4), init)


def test_batch_mismatch():
    e, _, init = good()
    with pytest.raises(HMMDimensionError, match=r"batched transitions must have B == 2 .* got shape \(3, 3, 3\)"):
        log_partition(e, Dense(torch.zeros(3, K, K)), init)


def test_time_varying_steps_mismatch():
    e, _, init = good()
    with pytest.raises(HMMDimensionError, match=r"time-varying transitions must have T-1 == 4 steps for T == 5 frames"):
        log_partition(e, Banded(torch.zeros(B, T, K, 2)), init)


def test_transition_dtype_mismatch():
    e, tr, init = good()
    with pytest.raises(HMMDtypeError, match=r"transitions.log_probs must have the dtype of log_emissions \(torch.float32\); got torch.float64"):
        log_partition(e, tr.to(torch.float64), init)


def test_transitions_wrong_type():
    e, _, init = good()
    with pytest.raises(TypeError, match="transitions must be a pytorch_hmm.transitions.Dense or Banded"):
        log_partition(e, "ergodic", init)


def test_plain_tensor_transitions_are_dense():
    e, tr, init = good()
    torch.testing.assert_close(log_partition(e, tr.log_probs, init), log_partition(e, tr, init))


def test_dense_not_square():
    with pytest.raises(HMMDimensionError, match=r"Dense log_probs must be square .* got \(3, 2\)") as info:
        Dense(torch.zeros(3, 2))
    assert "Banded" in info.value.suggestion


def test_structure_ndim():
    with pytest.raises(HMMDimensionError, match=r"Banded log_probs must be \(K, W\), \(B, K, W\) or time-varying"):
        Banded(torch.zeros(3))


def test_structure_dtype():
    with pytest.raises(HMMDtypeError, match="Dense log_probs must be float32 or float64; got torch.int64"):
        Dense(torch.zeros(3, 3, dtype=torch.long))


def test_banded_too_wide():
    with pytest.raises(HMMDimensionError, match=r"Banded log_probs must be \(..., K, W\) with 1 <= W <= K; got \(2, 3\)"):
        Banded(torch.zeros(2, 3))


@pytest.mark.parametrize("name", ["log_init", "log_final"])
def test_state_vector_shape(name):
    e, tr, init = good()
    kwargs = {"log_init": init, "log_final": None, name: torch.zeros(K + 1)}
    with pytest.raises(HMMDimensionError, match=rf"{name} must be \(K,\) or \(B, K\) with B == 2, K == 3; got shape \(4,\)"):
        log_partition(e, tr, kwargs["log_init"], log_final=kwargs["log_final"])


@pytest.mark.parametrize("name", ["log_init", "log_final"])
def test_state_vector_dtype(name):
    e, tr, init = good()
    kwargs = {"log_init": init, "log_final": None, name: torch.zeros(K, dtype=torch.float64)}
    with pytest.raises(HMMDtypeError, match=rf"{name} must have the dtype of log_emissions \(torch.float32\); got torch.float64"):
        log_partition(e, tr, kwargs["log_init"], log_final=kwargs["log_final"])


def test_state_vector_not_tensor():
    e, tr, _ = good()
    with pytest.raises(TypeError, match=r"log_init must be a torch.Tensor of shape \(K,\) or \(B, K\); got list"):
        log_partition(e, tr, [0.0, 0.0, 0.0])


@pytest.mark.parametrize("bad", [[0, 5], [1, 6]])
def test_lengths_range(bad):
    e, tr, init = good()
    with pytest.raises(HMMValueError, match=r"lengths must be in \[1, T\] = \[1, 5\]; got values in"):
        log_partition(e, tr, init, lengths=torch.tensor(bad))


def test_lengths_shape():
    e, tr, init = good()
    with pytest.raises(HMMDimensionError, match=r"lengths must be \(B,\) with B == 2; got shape \(3,\)"):
        log_partition(e, tr, init, lengths=torch.tensor([5, 5, 5]))


def test_lengths_dtype():
    e, tr, init = good()
    with pytest.raises(HMMDtypeError, match="lengths must have an integer dtype; got torch.float32"):
        log_partition(e, tr, init, lengths=torch.tensor([5.0, 4.0]))


def test_lengths_not_integers():
    e, tr, init = good()
    with pytest.raises(HMMValueError, match=r"lengths must be a \(B,\) sequence of integers"):
        log_partition(e, tr, init, lengths=["a", "b"])


def test_lengths_as_list():
    e, tr, init = good()
    torch.testing.assert_close(log_partition(e, tr, init, lengths=[5, 3]), log_partition(e, tr, init, lengths=torch.tensor([5, 3])))


def test_nan_in_emissions():
    e, tr, init = good()
    e[1, 2, 0] = float("nan")
    with pytest.raises(HMMValueError, match=r"log_emissions must not contain NaN or \+inf \(at valid frames\); found NaN"):
        log_partition(e, tr, init)


def test_posinf_in_emissions():
    e, tr, init = good()
    e[0, 0, 1] = float("inf")
    with pytest.raises(HMMValueError, match=r"log_emissions must not contain NaN or \+inf \(at valid frames\); found \+inf"):
        viterbi(e, tr, init)


def test_nan_in_padding_is_ignored():
    e, tr, init = good()
    e[1, 3:] = float("nan")
    assert torch.isfinite(log_partition(e, tr, init, lengths=[5, 3])).all()


@pytest.mark.parametrize("name", ["transitions.log_probs", "log_init", "log_final"])
def test_nan_in_parameters(name):
    e, tr, init = good()
    final = torch.zeros(K)
    target = {"transitions.log_probs": tr.log_probs, "log_init": init, "log_final": final}[name]
    target[0] = float("nan")
    with pytest.raises(HMMValueError, match=rf"{name} must not contain NaN or \+inf; found NaN"):
        log_partition(e, tr, init, log_final=final)


def test_banded_entries_past_last_state_are_ignored():
    e, _, init = good()
    band = left_to_right(K, skip=1)
    garbage = band.log_probs.clone()
    garbage[-1, 1:] = float("nan")
    torch.testing.assert_close(log_partition(e, Banded(garbage), init), log_partition(e, band, init))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.cuda
def test_device_mismatch():
    e, tr, init = good()
    with pytest.raises(HMMDeviceError, match="transitions.log_probs must be on the device of log_emissions"):
        log_partition(e.cuda(), tr.to(torch.float32), init.cuda())


def test_numba_backend_rejects_unknown_backend():
    e, tr, init = good()
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'torch', 'numba'\); got 'jax'"):
        log_partition(e, tr, init, backend="jax")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: Dense.from_probs(torch.tensor([[0.5, 0.6], [0.5, 0.5]])), "each row of probs must sum to 1"),
        (lambda: Dense.from_probs(torch.tensor([[1.5, -0.5], [0.5, 0.5]])), r"probs must hold probabilities in \[0, 1\]"),
        (lambda: ergodic(0), "num_states must be a positive int; got 0"),
        (lambda: left_to_right(3, skip=-1), "skip must be an int >= 0; got -1"),
        (lambda: left_to_right(3, self_loop=1.5), r"self_loop must be a probability in \[0, 1\]; got 1.5"),
    ],
)
def test_builder_errors(call, message):
    with pytest.raises(HMMValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------
# Sparse storage (one test per message)
# ---------------------------------------------------------------------------------------


def test_sparse_predecessors_not_tensor():
    with pytest.raises(TypeError, match=r"Sparse predecessors must be a torch.Tensor of shape \(K, P\) or \(B, K, P\); got list"):
        Sparse([[0, 1]], torch.zeros(1, 2))


def test_sparse_predecessors_dtype():
    with pytest.raises(HMMDtypeError, match="Sparse predecessors must have an integer dtype; got torch.float32"):
        Sparse(torch.zeros(3, 2), torch.zeros(3, 2))


def test_sparse_predecessors_ndim():
    with pytest.raises(HMMDimensionError, match=r"Sparse predecessors must be \(K, P\) or \(B, K, P\); got \(3,\)") as info:
        Sparse(torch.zeros(3, dtype=torch.long), torch.zeros(3, 2))
    assert info.value.actual_shape == (3,)


def test_sparse_log_probs_shape_mismatch():
    with pytest.raises(HMMDimensionError, match=r"Sparse log_probs must match predecessors \(3, 2\) in B, K and P .* got \(3, 3\)"):
        Sparse(torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 3))


def test_sparse_log_probs_not_batched():
    with pytest.raises(HMMDimensionError, match=r"Sparse log_probs must be batched like predecessors \(2, 3, 2\); got \(3, 2\)") as info:
        Sparse(torch.zeros(2, 3, 2, dtype=torch.long), torch.zeros(3, 2))
    assert "expand" in info.value.suggestion


def test_sparse_log_probs_dtype():
    with pytest.raises(HMMDtypeError, match="Sparse log_probs must be float32 or float64; got torch.int64"):
        Sparse(torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))


def test_sparse_log_probs_ndim():
    with pytest.raises(HMMDimensionError, match=r"Sparse log_probs must be \(K, P\), \(B, K, P\) or time-varying \(B, T-1, K, P\); got \(2,\)"):
        Sparse(torch.zeros(3, 2, dtype=torch.long), torch.zeros(2))


@pytest.mark.parametrize("bad", [-2, 3])
def test_sparse_predecessors_out_of_range(bad):
    pred = torch.tensor([[0, -1], [1, 2], [bad, 0]])
    with pytest.raises(HMMValueError, match=r"Sparse predecessors must be source states in \[0, K\) = \[0, 3\) or -1 \(unused slot\); got values in"):
        Sparse(pred, torch.zeros(3, 2))


def test_sparse_state_count_mismatch():
    e, _, init = good()
    with pytest.raises(HMMDimensionError, match=r"transitions must describe K == 3 states .* got Sparse log_probs of shape \(4, 2\) \(4 states\)") as info:
        log_partition(e, Sparse(torch.zeros(4, 2, dtype=torch.long), torch.zeros(4, 2)), init)
    assert info.value.expected_shape == (3, "P")


def test_sparse_batch_mismatch():
    e, _, init = good()
    with pytest.raises(HMMDimensionError, match=r"batched transitions must have B == 2 .* got shape \(3, 3, 2\)"):
        viterbi(e, Sparse(torch.zeros(3, K, 2, dtype=torch.long), torch.zeros(3, K, 2)), init)


def test_sparse_nan_in_unused_slot_is_ignored_but_not_in_a_used_one():
    e, tr, init = good()
    sparse = Sparse.from_dense(tr)
    pred = torch.cat([sparse.predecessors, torch.full((K, 1), -1)], 1)
    lp = torch.cat([sparse.log_probs, torch.full((K, 1), float("nan"))], 1)
    torch.testing.assert_close(log_partition(e, Sparse(pred, lp), init), log_partition(e, tr, init))
    lp[0, 0] = float("nan")
    with pytest.raises(HMMValueError, match=r"transitions.log_probs must not contain NaN or \+inf; found NaN"):
        log_partition(e, Sparse(pred, lp), init)


def test_structure_without_kernel_operations():
    from pytorch_hmm.transitions import TransitionStructure

    class Odd(TransitionStructure):
        kind = "odd"
        _last_dim_name = "X"

        def _check_storage(self):
            pass

    e, _, init = good()
    with pytest.raises(TypeError, match="transitions must be a Dense, Banded or Sparse structure; got Odd"):
        log_partition(e, Odd(torch.zeros(K, 2)), init)


def test_sparse_without_slots():
    with pytest.raises(HMMDimensionError, match=r"Sparse predecessors must have at least one state and one slot \(K >= 1, P >= 1\); got \(3, 0\)"):
        Sparse(torch.zeros(3, 0, dtype=torch.long), torch.zeros(3, 0))
