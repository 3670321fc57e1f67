"""Checkpointed forward-backward (kernel/checkpoint.py) == the plain kernel.

Every storage and layout (dense/banded/sparse x shared/batched/time-varying), both backends,
random lengths (sequences ending inside, at the end of and before a chunk), optional
log_final and -inf entries, chunk lengths from 1 to past T (dividing T or not): log Z,
posteriors, expected transitions, marginals, the streaming chunks and every gradient of
log_partition match the kernel without checkpoints to 1e-10 (float64) and 1e-5 (float32).
Then a 100 000-frame float32 run, EM through HMM.fit(checkpoint=...), and the argument errors.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_calls import torch_inputs
from oracle import LAYOUTS, STORAGES, random_problem
from pytorch_hmm import HMM, kernel
from pytorch_hmm.emissions import Gaussian
from pytorch_hmm.errors import HMMValueError
from pytorch_hmm.transitions import Dense, ergodic, left_to_right

BACKENDS = ("torch", "numba")
STRUCTURES = [(s, l) for s in STORAGES for l in LAYOUTS]


def close(actual, expected, what, tol):
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert not torch.isnan(actual).any(), f"{what}: NaN"
    torch.testing.assert_close(actual, expected, atol=tol, rtol=tol, equal_nan=False, msg=lambda m: f"{what}: {m}")


def args(inp):
    return (inp["log_emissions"], inp["transitions"], inp["log_init"], inp["lengths"], inp["log_final"])


def check_against_plain(inp, backend, size, tol):
    """Every checkpointed output == the plain kernel's, for one problem and chunk length."""
    a = args(inp)
    log_z, post, xi = kernel.marginals(*a, backend=backend)
    kw = dict(backend=backend, checkpoint=size)
    close(kernel.log_partition(*a, **kw), log_z, "log_partition", tol)
    for name, value in zip(("log Z", "posteriors"), kernel.forward_backward(*a, **kw)):
        close(value, log_z if name == "log Z" else post, f"forward_backward: {name}", tol)
    close(kernel.posteriors(*a, **kw), post, "posteriors", tol)
    close(kernel.expected_transitions(*a, **kw), xi, "expected_transitions", tol)
    for name, value, expected in zip(("log Z", "posteriors", "counts"), kernel.marginals(*a, **kw), (log_z, post, xi)):
        close(value, expected, f"marginals: {name}", tol)

    # the streaming form: chunks last first, covering every frame once; counts add up (or concatenate)
    chunks = kernel.posterior_chunks(*a, edges=True, **kw)
    close(chunks.log_z, log_z, "posterior_chunks: log Z", tol)
    t = post.shape[1]
    pieces = list(chunks)
    starts = [c.start for c in pieces]
    assert starts == list(range(0, t, size))[::-1] and len(chunks) == len(pieces)
    close(torch.cat([c.posteriors for c in pieces[::-1]], 1), post, "posterior_chunks: posteriors", tol)
    if xi.ndim == 4:  # time-varying: one count table per step
        counts = torch.cat([c.transitions for c in pieces[::-1]], 1)
    else:
        counts = sum(c.transitions for c in pieces)
    close(counts, xi, "posterior_chunks: counts", tol)


def check_gradients(inp, backend, size, tol, weights):
    """d(sum_b w_b log Z_b)/d every input, with and without checkpoints."""
    names = ["log_emissions", "log_init"] + (["log_final"] if inp["log_final"] is not None else [])
    tensors = [inp[n] for n in names] + [inp["transitions"].log_probs]
    grads = []
    for checkpoint in (None, size):
        log_z = kernel.log_partition(*args(inp), backend=backend, checkpoint=checkpoint)
        grads.append(torch.autograd.grad((log_z.nan_to_num(neginf=0.0) * weights).sum(), tensors, allow_unused=True))
    for name, plain, chunked in zip(names + ["transitions"], *grads):
        plain = torch.zeros_like(chunked) if plain is None else plain
        chunked = torch.zeros_like(plain) if chunked is None else chunked
        close(chunked, plain, f"d log_partition / d {name}", tol)


@st.composite
def problems(draw, storage: str, layout: str):
    batch = draw(st.integers(1, 3))
    frames = draw(st.integers(1, 12))
    states = draw(st.integers(1, 4))
    width = {"banded": draw(st.integers(1, min(3, states))), "sparse": draw(st.integers(1, 3))}.get(storage)
    lengths = draw(st.one_of(st.none(), st.lists(st.integers(1, frames), min_size=batch, max_size=batch)))
    p = random_problem(
        np.random.default_rng(draw(st.integers(0, 2**32 - 1))), batch, frames, states, storage=storage, layout=layout,
        width=width, p_inf=draw(st.sampled_from([0.0, 0.0, 0.2])), init_batched=draw(st.booleans()),
        final=draw(st.sampled_from([None, "shared", "batched"])), lengths=lengths,
        pred_batched=draw(st.booleans()) if storage == "sparse" else False,
    )
    return p, draw(st.integers(1, frames + 2))


@pytest.mark.parametrize("storage,layout", STRUCTURES)
@settings(max_examples=12)
@given(data=st.data())
def test_checkpoint_matches_plain_float64(storage, layout, data):
    p, size = data.draw(problems(storage, layout))
    for backend in BACKENDS:
        check_against_plain(torch_inputs(p), backend, size, 1e-10)
        inp = torch_inputs(p, requires_grad=True)
        weights = torch.tensor(data.draw(st.sampled_from([[1.0] * p.batch, [0.5, -2.0, 3.0][: p.batch]])), dtype=torch.float64)
        check_gradients(inp, backend, size, 1e-10, weights)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("storage,layout", STRUCTURES)
def test_checkpoint_matches_plain_float32(storage, layout, backend):
    rng = np.random.default_rng(7)
    p = random_problem(rng, 3, 40, 5, storage=storage, layout=layout, width=3, final="batched", lengths=[40, 17, 1],
                       init_batched=True, pred_batched=True)
    for size in (1, 7, 13, 40, 64):
        check_against_plain(torch_inputs(p, dtype=torch.float32), backend, size, 1e-5)
    inp = torch_inputs(p, dtype=torch.float32, requires_grad=True)
    check_gradients(inp, backend, 9, 1e-5, torch.ones(3))


def test_lengths_at_chunk_edges():
    """Sequences ending at the last frame of a chunk, at the first frame of the next, and inside one."""
    torch.manual_seed(0)
    e = torch.randn(5, 24, 3, dtype=torch.float64)
    trans = Dense(torch.randn(5, 23, 3, 3, dtype=torch.float64))  # time-varying
    inp = dict(log_emissions=e, transitions=trans, log_init=torch.randn(3, dtype=torch.float64),
               lengths=torch.tensor([24, 8, 9, 7, 16]), log_final=torch.randn(5, 3, dtype=torch.float64))
    for backend in BACKENDS:
        check_against_plain(inp, backend, 8, 1e-10)


def test_long_sequence_float32_stays_finite_and_normalised(one_thread):
    """T = 100 000, K = 64, float32, in 1024-frame chunks (compiled loops; the checks per chunk on one
    thread: small torch ops between compiled loops spin on a busy 2-core machine)."""
    torch.manual_seed(0)
    k, t = 64, 100_000
    e = torch.randn(1, t, k).log_softmax(-1)
    trans = ergodic(k, self_loop=0.9)
    log_init = torch.full((k,), -float(np.log(k)))
    plain = kernel.log_partition(e, trans, log_init, backend="numba")
    chunks = kernel.posterior_chunks(e, trans, log_init, checkpoint=1024, backend="numba", edges=True)
    assert torch.isfinite(chunks.log_z).all()
    torch.testing.assert_close(chunks.log_z, plain, rtol=1e-6, atol=0.0)
    steps = 0.0
    for chunk in chunks:
        assert torch.isfinite(chunk.posteriors).all()
        torch.testing.assert_close(chunk.posteriors.sum(-1), torch.ones(chunk.posteriors.shape[:2]), atol=1e-5, rtol=0)
        steps += float(chunk.transitions.double().sum())
    assert steps == pytest.approx(t - 1, rel=1e-5)  # every step's counts sum to 1

    e.requires_grad_(True)
    (grad,) = torch.autograd.grad(kernel.log_partition(e, trans, log_init, backend="numba", checkpoint=1024).sum(), e)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad.sum(-1), torch.ones(1, t), atol=1e-5, rtol=0)


def test_long_sequence_torch_loops():
    """The PyTorch loops over 5 000 frames in chunks (their 100 000-frame cost belongs in benchmarks)."""
    torch.manual_seed(1)
    e = torch.randn(2, 5000, 16).log_softmax(-1)
    trans = left_to_right(16, skip=1)
    log_init = torch.full((16,), -float("inf"))
    log_init[0] = 0.0
    lengths = torch.tensor([5000, 3333])
    log_z, post = kernel.forward_backward(e, trans, log_init, lengths, backend="torch")
    log_z2, post2 = kernel.forward_backward(e, trans, log_init, lengths, backend="torch", checkpoint=700)
    torch.testing.assert_close(log_z2, log_z, rtol=1e-6, atol=0.0)
    torch.testing.assert_close(post2, post, atol=1e-5, rtol=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("storage,layout", STRUCTURES)
def test_checkpoint_on_cuda_equals_plain(storage, layout):
    """The PyTorch loops on CUDA: checkpointed == plain, and every output stays on the device."""
    p = random_problem(np.random.default_rng(3), 3, 30, 5, storage=storage, layout=layout, width=3, final="batched",
                       lengths=[30, 11, 1], init_batched=True, pred_batched=True)
    inp = torch_inputs(p, device="cuda")
    check_against_plain(inp, "torch", 7, 1e-10)
    assert kernel.posteriors(*args(inp), checkpoint=7).device.type == "cuda"
    check_gradients(torch_inputs(p, requires_grad=True, device="cuda"), "torch", 7, 1e-10,
                    torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64, device="cuda"))


@pytest.mark.parametrize("final", [None, "learn"])
@pytest.mark.parametrize("transitions", ["ergodic", "left_to_right"])
def test_hmm_fit_with_checkpoint_equals_fit_without(transitions, final):
    torch.manual_seed(0)
    x = torch.randn(3, 300, 2, dtype=torch.float64)
    x[:, 150:] += 3.0
    lengths = torch.tensor([300, 201, 17])
    model = HMM(Gaussian(3, 2, dtype=torch.float64), transitions, final=final)
    twin = copy.deepcopy(model)
    fit = dict(max_iter=4, verbose=False, weights=[1.0, 2.0, 0.5])
    history = model.fit(x, lengths, checkpoint=False, generator=torch.Generator().manual_seed(0), **fit)
    chunked = twin.fit(x, lengths, checkpoint=37, generator=torch.Generator().manual_seed(0), **fit)
    np.testing.assert_allclose(chunked, history, rtol=1e-12)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(b, a, atol=1e-10, rtol=1e-10, msg=name)
    assert twin._em_checkpoint is None  # fit's setting does not outlive the call


def test_hmm_auto_checkpoint_size():
    from pytorch_hmm.models.hmm import AUTO_CHECKPOINT_CELLS, default_checkpoint, em_chunk_length

    assert em_chunk_length(None, (1, 1000, 64)) is None
    assert em_chunk_length(None, (1, AUTO_CHECKPOINT_CELLS // 64, 64)) == default_checkpoint(AUTO_CHECKPOINT_CELLS // 64)
    assert em_chunk_length(False, (1, 10**8, 64)) is None
    assert em_chunk_length(True, (1, 100, 4)) == 1024
    assert em_chunk_length(50, (1, 100, 4)) == 50
    assert default_checkpoint(10**8) == 10**4


# ---------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------


def _small():
    e = torch.randn(1, 5, 2)
    return e, ergodic(2), torch.zeros(2).log_softmax(-1)


@pytest.mark.parametrize("bad", [0, -3])
def test_checkpoint_must_be_positive(bad):
    with pytest.raises(HMMValueError, match=r"checkpoint must be None or a positive int \(the chunk length in frames\); got -?\d"):
        kernel.log_partition(*_small(), checkpoint=bad)


@pytest.mark.parametrize("bad", [2.5, "4", True])
def test_checkpoint_must_be_an_int(bad):
    with pytest.raises(HMMValueError, match=r"checkpoint must be None or a positive int \(the chunk length in frames\); got (float|str|bool)"):
        kernel.posterior_chunks(*_small(), checkpoint=bad)


def test_checkpoint_errors_reach_every_routine():
    for fn in (kernel.forward_backward, kernel.posteriors, kernel.marginals, kernel.expected_transitions):
        with pytest.raises(HMMValueError, match="checkpoint must be None or a positive int"):
            fn(*_small(), checkpoint=0)
    with pytest.raises(HMMValueError, match="checkpoint must be None or a positive int"):
        HMM(Gaussian(2, 1), "ergodic").fit(torch.randn(1, 5, 1), checkpoint=0, verbose=False)


def test_checkpoint_not_with_differentiable_posteriors():
    with pytest.raises(HMMValueError, match=r"checkpoint cannot be combined with differentiable=True"):
        kernel.posteriors(*_small(), differentiable=True, checkpoint=2)


def test_checkpointed_backward_is_first_order():
    e, trans, init = _small()
    e.requires_grad_(True)
    log_z = kernel.log_partition(e, trans, init, checkpoint=2).sum()
    with pytest.raises(HMMValueError, match="kernel.log_partition has first derivatives only"):
        torch.autograd.grad(log_z, e, create_graph=True)
