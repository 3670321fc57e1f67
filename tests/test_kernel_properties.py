"""Properties of the chain kernel that hold beyond brute-force sizes.

batch == items, padding invariance (garbage / NaN in padded frames and steps), float32 vs
float64, torch vs numba backends on medium sizes, infeasible inputs, Banded == its Dense
form, T = 100000 stability, and CPU == CUDA (when a GPU is present).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import oracle
from kernel_calls import run, torch_inputs
from oracle import LAYOUTS, Problem, random_problem
from pytorch_hmm.transitions import Sparse, ergodic, left_to_right

BACKENDS = ("torch", "numba")
FUNCS = ("log_partition", "posteriors", "expected_transitions", "viterbi")


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def run_all(inp: dict, backend: str) -> dict:
    out = {name: run(name, inp, backend) for name in FUNCS}
    out["paths"], out["scores"] = out.pop("viterbi")
    return out


def np64(x) -> np.ndarray:
    return x.detach().cpu().to(torch.float64).numpy() if x.is_floating_point() else x.detach().cpu().numpy()


def assert_no_nan(out: dict) -> None:
    for k, v in out.items():
        assert not torch.isnan(v).any(), f"{k}: NaN in output"


def assert_outputs_close(a: dict, b: dict, atol=1e-10, rtol=1e-10, paths=True, what="") -> None:
    assert_no_nan(a)
    assert_no_nan(b)
    for k in ("log_partition", "posteriors", "expected_transitions", "scores"):
        assert a[k].shape == b[k].shape, f"{what} {k}: shape {tuple(a[k].shape)} vs {tuple(b[k].shape)}"
        np.testing.assert_allclose(np64(a[k]), np64(b[k]), atol=atol, rtol=rtol, err_msg=f"{what} {k}")
    if paths:
        np.testing.assert_array_equal(np64(a["paths"]), np64(b["paths"]), err_msg=f"{what} paths")


def item_problem(p: Problem, b: int) -> Problem:
    """Item ``b`` of a batch as a batch of one, trimmed to its length (no padding)."""
    n = p.length(b)
    trans = p.trans if p.trans.ndim == 2 else p.trans[b : b + 1]
    if p.trans.ndim == 4:
        trans = trans[:, : n - 1]
    return Problem(
        em=p.em[b : b + 1, :n],
        trans=trans,
        storage=p.storage,
        init=p.init if p.init.ndim == 1 else p.init[b : b + 1],
        final=None if p.final is None else (p.final if p.final.ndim == 1 else p.final[b : b + 1]),
        lengths=None,
        pred=None if p.pred is None else (p.pred if p.pred.ndim == 2 else p.pred[b : b + 1]),
    )


def check_against_oracle(p: Problem, out: dict, atol=1e-9) -> None:
    """Small problems only: every output against the brute-force oracle."""
    ans = p.solve()
    assert_no_nan(out)
    np.testing.assert_allclose(np64(out["log_partition"]), ans.log_z, atol=atol, rtol=atol)
    np.testing.assert_allclose(np64(out["posteriors"]), ans.posteriors, atol=atol)
    np.testing.assert_allclose(np64(out["expected_transitions"]), ans.expected_transitions, atol=atol)
    np.testing.assert_allclose(np64(out["scores"]), ans.best_score, atol=atol, rtol=atol)
    paths = np64(out["paths"])
    for b, r in enumerate(ans.items):
        n = p.length(b)
        assert (paths[b, n:] == -1).all()
        if r.best_score == -math.inf:
            assert (paths[b] == -1).all(), f"infeasible item {b} must have an all -1 path; got {paths[b]}"
        else:
            em, trans, init, final, _ = p.item(b)
            s = oracle.path_score(em, trans, init, paths[b, :n], final)
            assert s == pytest.approx(r.best_score, abs=atol)


STRUCTURES = [(s, l) for s in ("dense", "banded", "sparse") for l in LAYOUTS]
STRUCT_IDS = [f"{s}-{l}" for s, l in STRUCTURES]


# ---------------------------------------------------------------------------------------
# batch == items
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("storage,layout", STRUCTURES, ids=STRUCT_IDS)
def test_batch_equals_items(storage, layout, backend):
    for seed in range(3):
        p = random_problem(
            np.random.default_rng(seed), 4, 9, 5, storage=storage, layout=layout, width=3,
            p_inf=0.1 * seed, init_batched=bool(seed % 2), final=[None, "shared", "batched"][seed],
            lengths=[9, 4, 1, 7], pred_batched=bool(seed % 2),
        )
        batched = run_all(torch_inputs(p), backend)
        for b in range(p.batch):
            n = p.length(b)
            single = run_all(torch_inputs(item_problem(p, b)), backend)
            sliced = {
                "log_partition": batched["log_partition"][b : b + 1],
                "posteriors": batched["posteriors"][b : b + 1, :n],
                "scores": batched["scores"][b : b + 1],
                "paths": batched["paths"][b : b + 1, :n],
                "expected_transitions": batched["expected_transitions"][b : b + 1],
            }
            if layout == "time_varying":
                sliced["expected_transitions"] = sliced["expected_transitions"][:, : n - 1]
                assert (batched["expected_transitions"][b, n - 1 :] == 0).all()
            assert (batched["posteriors"][b, n:] == 0).all()
            assert (batched["paths"][b, n:] == -1).all()
            assert_outputs_close(sliced, single, what=f"seed {seed} item {b}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8], ids=str)
def test_lengths_integer_dtypes(dtype, backend):
    p = random_problem(np.random.default_rng(4), 3, 6, 3, storage="banded", layout="time_varying",
                       final="batched", lengths=[6, 2, 4])
    ref = run_all(torch_inputs(p), backend)
    inp = dict(torch_inputs(p), lengths=torch.tensor(p.lengths, dtype=dtype))
    assert_outputs_close(run_all(inp, backend), ref, atol=0, rtol=0, what=f"lengths as {dtype}")
    check_against_oracle(p, ref)


# ---------------------------------------------------------------------------------------
# padding invariance
# ---------------------------------------------------------------------------------------

PAD_VALUES = [float("nan"), float("inf"), float("-inf"), 1e30, -1e30]


def grads(inp: dict, backend: str):
    lz = run("log_partition", inp, backend)
    tensors = [inp["log_emissions"], inp["transitions"].log_probs, inp["log_init"]]
    if inp["log_final"] is not None:
        tensors.append(inp["log_final"])
    return [g if g is not None else torch.zeros_like(t) for g, t in zip(torch.autograd.grad(lz.sum(), tensors, allow_unused=True), tensors)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("storage,layout", STRUCTURES, ids=STRUCT_IDS)
@pytest.mark.parametrize("pad", PAD_VALUES, ids=str)
def test_padding_invariance(storage, layout, backend, pad):
    lengths = [6, 2, 1, 4]
    p = random_problem(np.random.default_rng(7), 4, 6, 4, storage=storage, layout=layout, width=2,
                       final="batched", lengths=lengths, p_inf=0.1)
    clean = Problem(p.em.copy(), p.trans.copy(), p.storage, p.init, p.final, p.lengths, p.pred)
    dirty = Problem(p.em.copy(), p.trans.copy(), p.storage, p.init, p.final, p.lengths, p.pred)
    rng = np.random.default_rng(0)
    for b, n in enumerate(lengths):
        clean.em[b, n:] = 0.0
        dirty.em[b, n:] = pad
        dirty.em[b, n:, 0] = rng.normal() * 1e6  # mixed garbage
        if layout == "time_varying":
            clean.trans[b, n - 1 :] = 0.0
            dirty.trans[b, n - 1 :] = pad
    out_clean = run_all(torch_inputs(clean), backend)
    out_dirty = run_all(torch_inputs(dirty), backend)
    assert_outputs_close(out_dirty, out_clean, atol=0, rtol=1e-12, what=f"pad={pad}")
    check_against_oracle(clean, out_clean)

    g_clean = grads(torch_inputs(clean, requires_grad=True), backend)
    g_dirty = grads(torch_inputs(dirty, requires_grad=True), backend)
    for name, a, b in zip(("log_emissions", "transitions", "log_init", "log_final"), g_dirty, g_clean):
        assert not torch.isnan(a).any(), f"NaN in d log Z / d {name} with padding {pad}"
        np.testing.assert_allclose(np64(a), np64(b), atol=1e-12, err_msg=f"d log Z / d {name}")
    for b, n in enumerate(lengths):
        assert (g_dirty[0][b, n:] == 0).all(), "padded frames must get zero gradient"
        if layout == "time_varying":
            assert (g_dirty[1][b, n - 1 :] == 0).all(), "padded steps must get zero gradient"


# ---------------------------------------------------------------------------------------
# float32 vs float64
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("storage,layout", STRUCTURES, ids=STRUCT_IDS)
def test_float32_agrees_with_float64(storage, layout, backend):
    p = random_problem(np.random.default_rng(3), 3, 30, 6, storage=storage, layout=layout, width=3,
                       final="shared", lengths=[30, 17, 1], scale=1.0)
    p64 = run_all(torch_inputs(p, torch.float64), backend)
    p32 = run_all(torch_inputs(p, torch.float32), backend)
    for k in ("log_partition", "posteriors", "expected_transitions", "scores"):
        assert p32[k].dtype == torch.float32, k
    assert_outputs_close(p32, p64, atol=1e-4, rtol=1e-4, paths=False, what="float32 vs float64")
    # the float32 Viterbi path is optimal (or within float32 noise of it) in float64
    for b in range(p.batch):
        n = p.length(b)
        em, trans, init, final, _ = p.item(b)
        path = np64(p32["paths"][b])
        assert (path[n:] == -1).all()
        s = oracle.path_score(em, trans, init, path[:n], final)
        assert s == pytest.approx(float(p64["scores"][b]), abs=1e-3)


# ---------------------------------------------------------------------------------------
# torch backend == numba backend (and "auto" on CPU)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("storage,layout", STRUCTURES, ids=STRUCT_IDS)
def test_backends_agree_medium(storage, layout, dtype):
    p = random_problem(np.random.default_rng(11), 4, 50, 16, storage=storage, layout=layout, width=3,
                       final="batched", lengths=[50, 37, 1, 20], p_inf=0.05, scale=1.0)
    tol = 1e-9 if dtype == torch.float64 else 2e-4
    ref = run_all(torch_inputs(p, dtype), "torch")
    fast = run_all(torch_inputs(p, dtype), "numba")
    auto = run_all(torch_inputs(p, dtype), "auto")
    assert np.isfinite(np64(ref["log_partition"])).all(), "test problem should be feasible"
    assert_outputs_close(fast, ref, atol=tol, rtol=tol, paths=dtype == torch.float64, what="numba vs torch")
    assert_outputs_close(auto, fast, atol=tol, rtol=tol, paths=dtype == torch.float64, what="auto vs numba")
    g_ref = grads(torch_inputs(p, dtype, requires_grad=True), "torch")
    g_fast = grads(torch_inputs(p, dtype, requires_grad=True), "numba")
    for a, b in zip(g_fast, g_ref):
        np.testing.assert_allclose(np64(a), np64(b), atol=tol, rtol=tol)


# ---------------------------------------------------------------------------------------
# infeasible inputs
# ---------------------------------------------------------------------------------------


def assert_infeasible_item(out: dict, b: int) -> None:
    assert out["log_partition"][b] == -math.inf
    assert (out["posteriors"][b] == 0).all()
    assert (out["expected_transitions"][b] == 0).all()
    assert out["scores"][b] == -math.inf
    assert (out["paths"][b] == -1).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("storage,layout", STRUCTURES, ids=STRUCT_IDS)
def test_infeasible_frame(storage, layout, backend, dtype):
    p = random_problem(np.random.default_rng(5), 3, 5, 3, storage=storage, layout=layout, width=2,
                       final="shared", lengths=[5, 4, 2])
    p.em[1, 2, :] = -np.inf  # item 1: no state can emit frame 2
    p.em[2, 3, :] = -np.inf  # item 2: same, but frame 3 is padding (length 2): still feasible
    inp = torch_inputs(p, dtype)
    out = run_all(inp, backend)
    assert_infeasible_item(out, 1)
    assert np.isfinite(np64(out["log_partition"])[[0, 2]]).all()
    if dtype == torch.float64:
        check_against_oracle(p, out)
    g = grads(torch_inputs(p, dtype, requires_grad=True), backend)
    for x in g:
        assert torch.isfinite(x).all(), "gradients must stay finite with an infeasible item in the batch"
    assert (g[0][1] == 0).all(), "an infeasible item has zero posteriors, so zero gradient"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("storage", ["dense", "banded"])
def test_infeasible_final_state(storage, backend, dtype):
    # left-to-right, start in state 0, one step forward per frame at most: after 2 frames
    # only states {0, 1} are reachable, so log_final allowing only state 3 rules out every path.
    k = 4
    lr = left_to_right(k, skip=0, self_loop=0.5, dtype=dtype)
    trans = lr if storage == "banded" else lr.to_dense()
    em = torch.randn(3, 5, k, dtype=dtype, generator=torch.Generator().manual_seed(0))
    init = torch.tensor([0.0, -math.inf, -math.inf, -math.inf], dtype=dtype)
    final = torch.tensor([-math.inf, -math.inf, -math.inf, 0.0], dtype=dtype)
    lengths = torch.tensor([2, 5, 3])  # item 0 (2 frames) and item 2 (3 frames) cannot reach state 3
    inp = dict(log_emissions=em, transitions=trans, log_init=init, lengths=lengths, log_final=final)
    out = run_all(inp, backend)
    assert_infeasible_item(out, 0)
    assert_infeasible_item(out, 2)
    assert torch.isfinite(out["log_partition"][1])
    path = out["paths"][1].tolist()
    assert path[0] == 0 and path[-1] == 3 and all(0 <= b - a <= 1 for a, b in zip(path, path[1:])), path
    # item 1 against the oracle
    if dtype == torch.float64:
        r = oracle.brute_force(em[1].numpy(), oracle.banded_to_dense(lr.log_probs.numpy()), init.numpy(), final.numpy())
        assert float(out["log_partition"][1]) == pytest.approx(r.log_z, abs=1e-10)
        np.testing.assert_allclose(out["posteriors"][1].numpy(), r.posteriors, atol=1e-10)
        assert float(out["scores"][1]) == pytest.approx(r.best_score, abs=1e-10)
    em_g = em.clone().requires_grad_(True)
    lz = run("log_partition", dict(inp, log_emissions=em_g), backend)
    (g,) = torch.autograd.grad(lz.sum(), [em_g])
    assert torch.isfinite(g).all()
    assert (g[0] == 0).all() and (g[2] == 0).all()
    np.testing.assert_allclose(g[1].numpy(), out["posteriors"][1].numpy(), atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_everything_infeasible(backend):
    em = torch.zeros(2, 3, 2, dtype=torch.float64)
    init = torch.full((2,), -math.inf, dtype=torch.float64)
    out = run_all(dict(log_emissions=em, transitions=ergodic(2, dtype=torch.float64), log_init=init,
                       lengths=None, log_final=None), backend)
    assert_no_nan(out)
    for b in range(2):
        assert_infeasible_item(out, b)


# ---------------------------------------------------------------------------------------
# Banded == Banded.to_dense()
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("width", [1, 2, 3, 6])
@pytest.mark.parametrize("ignored", [1e30, float("inf")], ids=["huge", "inf"])
def test_banded_equals_dense(layout, width, backend, ignored):
    p = random_problem(np.random.default_rng(width), 3, 12, 6, storage="banded", layout=layout, width=width,
                       final="batched", lengths=[12, 5, 1], p_inf=0.1, scale=1.0)
    invalid = np.arange(6)[:, None] + np.arange(width)[None, :] >= 6
    p.trans[..., invalid] = ignored  # moves past the last state: must be ignored whatever their value
    inp = torch_inputs(p)
    band = run_all(inp, backend)
    dense_inp = dict(inp, transitions=inp["transitions"].to_dense())
    dense = run_all(dense_inp, backend)
    # dense counts gathered onto the band
    k = 6
    idx = (torch.arange(k)[:, None] + torch.arange(width)[None, :]).clamp(max=k - 1)
    xi = dense["expected_transitions"]
    gathered = torch.gather(xi, -1, idx.expand(xi.shape[:-1] + (width,))).masked_fill(torch.tensor(invalid), 0.0)
    assert band["expected_transitions"].shape == gathered.shape
    assert (band["expected_transitions"][..., torch.tensor(invalid)] == 0).all()
    dense["expected_transitions"] = gathered
    assert_outputs_close(band, dense, atol=1e-10, rtol=1e-10, what="banded vs dense")


# ---------------------------------------------------------------------------------------
# long sequences in float32
# ---------------------------------------------------------------------------------------


def _numpy_forward_log_z(log_em: np.ndarray, dense: np.ndarray, init: np.ndarray) -> float:
    """float64 scaled forward (probability space, per-frame normalised) as a reference."""
    a = np.exp(dense)
    m = log_em.max(1, keepdims=True)
    e = np.exp(log_em - m)
    alpha = np.exp(init) * e[0]
    log_z = m[0, 0]
    for t in range(1, len(e)):
        c = alpha.sum()
        log_z += math.log(c)
        alpha = (alpha / c) @ a * e[t]
        log_z += m[t, 0]
    return log_z + math.log(alpha.sum())


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("model", ["dense", "banded", "sparse"])
def test_long_sequence_float32_is_stable(model, backend):
    # The PyTorch loops run the same per-step normalisation as the compiled ones at ~40 us a
    # step in eager mode: 20 000 frames keep them at a few seconds (100 000 took 35 s each in
    # CI); the compiled loops take the full 100 000.
    t_, k = (100_000 if backend == "numba" else 20_000), 4
    rng = np.random.default_rng(0)
    means = np.arange(k, dtype=np.float64) * 2.0
    if model == "dense":
        trans = ergodic(k, self_loop=0.95, dtype=torch.float32)
        z = np.empty(t_, dtype=np.int64)
        z[0] = 0
        switch = rng.random(t_) < 0.05
        jumps = rng.integers(1, k, size=t_)
        for t in range(1, t_):
            z[t] = (z[t - 1] + jumps[t]) % k if switch[t] else z[t - 1]
        dense = trans.log_probs.double().numpy()
    else:
        trans = left_to_right(k, skip=1, self_loop=0.9999, dtype=torch.float32)
        z = np.minimum(np.arange(t_) * k // t_, k - 1)
        dense = oracle.banded_to_dense(trans.log_probs.double().numpy())
        if model == "sparse":
            trans = Sparse.from_banded(trans)
    x = means[z] + rng.normal(size=t_)
    log_em = -0.5 * (x[:, None] - means[None, :]) ** 2 - 0.5 * math.log(2 * math.pi)
    init = np.log(np.full(k, 1.0 / k)) if model == "dense" else np.array([0.0] + [-np.inf] * (k - 1))

    em32 = torch.tensor(log_em[None], dtype=torch.float32)
    init32 = torch.tensor(init, dtype=torch.float32)
    inp = dict(log_emissions=em32, transitions=trans, log_init=init32, lengths=None, log_final=None)
    out = run_all(inp, backend)
    assert_no_nan(out)

    # the gradient (the posteriors, through the custom backward) is normalised too
    em_grad = em32.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(run("log_partition", dict(inp, log_emissions=em_grad), backend).sum(), [em_grad])
    assert torch.isfinite(g).all()
    assert (g[0].double().sum(-1) - 1).abs().max() < 1e-5, "d log Z / d log_emissions must sum to 1 per frame"

    lz = float(out["log_partition"][0])
    assert math.isfinite(lz)
    ref = _numpy_forward_log_z(log_em, dense, init)
    # per-frame normalisers are summed in float64: log Z keeps float32's relative precision
    assert lz == pytest.approx(ref, rel=1e-6)

    post = out["posteriors"][0].double()
    assert torch.isfinite(post).all()
    err = (post.sum(-1) - 1).abs()
    assert err.max() < 1e-5, f"posteriors must sum to 1 per frame: worst |sum - 1| = {err.max():.3g} at frame {int(err.argmax())}"
    assert (post >= -1e-6).all() and (post <= 1 + 1e-3).all()

    xi = out["expected_transitions"][0].double()
    assert torch.isfinite(xi).all()
    assert float(xi.sum()) == pytest.approx(t_ - 1, rel=1e-5)

    score = float(out["scores"][0])
    assert math.isfinite(score) and score <= lz + 1e-3 * abs(lz)
    path = out["paths"][0]
    assert ((path >= 0) & (path < k)).all()
    if model != "dense":
        steps = path[1:] - path[:-1]
        assert ((steps >= 0) & (steps <= 2)).all()
        assert path[0] == 0
    # the decoded path is close to the generating states
    assert (path.numpy() == z).mean() > 0.9


# ---------------------------------------------------------------------------------------
# CPU == CUDA
# ---------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
class TestCuda:
    @pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
    @pytest.mark.parametrize("storage,layout", STRUCTURES, ids=STRUCT_IDS)
    def test_cpu_equals_cuda(self, storage, layout, dtype):
        p = random_problem(np.random.default_rng(2), 4, 40, 8, storage=storage, layout=layout, width=3,
                           final="batched", lengths=[40, 23, 1, 9], p_inf=0.05, scale=1.0)
        cpu = run_all(torch_inputs(p, dtype), "torch")
        cuda_inp = torch_inputs(p, dtype, device="cuda")
        gpu = run_all(cuda_inp, "torch")
        for k, v in gpu.items():
            assert v.device.type == "cuda", f"{k} must stay on the input's device"
        tol = 1e-9 if dtype == torch.float64 else 1e-4
        assert_outputs_close({k: v.cpu() for k, v in gpu.items()}, cpu, atol=tol, rtol=tol,
                             paths=dtype == torch.float64, what="cuda vs cpu")
        g_cpu = grads(torch_inputs(p, dtype, requires_grad=True), "torch")
        g_gpu = grads(torch_inputs(p, dtype, requires_grad=True, device="cuda"), "torch")
        for a, b in zip(g_gpu, g_cpu):
            np.testing.assert_allclose(np64(a), np64(b), atol=tol, rtol=tol)

    def test_auto_backend_on_cuda(self):
        p = random_problem(np.random.default_rng(0), 2, 5, 3, storage="dense", layout="batched", lengths=[5, 3])
        out = run_all(torch_inputs(p, device="cuda"), "auto")
        check_against_oracle(p, {k: v.cpu() for k, v in out.items()})
