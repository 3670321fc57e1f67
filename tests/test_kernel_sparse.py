"""Sparse (predecessor-list) transitions equal Dense and Banded on the same graph, for every routine.

Brute-force agreement is in test_kernel_bruteforce.py and batch/padding invariance in
test_kernel_properties.py; here: ``Sparse.from_dense(d)`` == ``d``, a banded chain as predecessor
lists == ``Banded``, parallel edges == one edge with the summed probability, gradients,
differentiable posteriors, sampling (same paths as Dense with a fixed generator, same
frequencies as Banded) and the successor lists.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pytorch_hmm import kernel
from pytorch_hmm.kernel.factors import merge_parallel_edges, successor_lists
from pytorch_hmm.transitions import Banded, Dense, Sparse, ergodic, left_to_right

BACKENDS = ("torch", "numba")
FUNCS = ("log_partition", "posteriors", "expected_transitions", "viterbi")
NINF = float("-inf")


def run_all(e, tr, init, lengths, final, backend):
    out = {}
    for name in FUNCS:
        out[name] = getattr(kernel, name)(e, tr, init, lengths=lengths, log_final=final, backend=backend)
    out["paths"], out["scores"] = out.pop("viterbi")
    return out


def counts_to_dense(tr, xi: torch.Tensor) -> torch.Tensor:
    """Edge counts in ``tr``'s storage -> ``(..., K, K)`` per (source, destination)."""
    k = tr.num_states
    if isinstance(tr, Dense):
        return xi
    if isinstance(tr, Banded):
        dest = (torch.arange(k)[:, None] + torch.arange(tr.width)).clamp(max=k - 1)
        valid = torch.arange(k)[:, None] + torch.arange(tr.width) < k
        out = xi.new_zeros(xi.shape[:-1] + (k,))
        return out.scatter_add(-1, dest.expand(xi.shape), xi.masked_fill(~valid, 0.0))
    pred = tr.predecessors
    if xi.ndim == 4 and pred.ndim == 3:
        pred = pred.unsqueeze(1)
    flat = (pred.clamp(min=0) * k + torch.arange(k)[:, None]).expand(xi.shape).reshape(xi.shape[:-2] + (-1,))
    vals = xi.masked_fill((pred < 0).expand(xi.shape), 0.0).reshape(flat.shape)
    return xi.new_zeros(xi.shape[:-2] + (k * k,)).scatter_add(-1, flat, vals).reshape(xi.shape[:-2] + (k, k))


def assert_same(a: dict, b: dict, tr_a, tr_b, atol=1e-10, paths=True):
    for key in ("log_partition", "posteriors", "scores"):
        np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=atol, rtol=atol, err_msg=key)
    xa, xb = counts_to_dense(tr_a, a["expected_transitions"]), counts_to_dense(tr_b, b["expected_transitions"])
    np.testing.assert_allclose(xa.numpy(), xb.numpy(), atol=atol, err_msg="expected_transitions")
    if paths:
        assert torch.equal(a["paths"], b["paths"])


def banded_as_sparse(band: Banded) -> Sparse:
    """The band's moves as predecessor lists (:meth:`Sparse.from_banded`), checked against a plain loop."""
    sparse = Sparse.from_banded(band)
    k, w = band.num_states, band.width
    lp = band.log_probs.masked_fill(~band.valid_mask(), NINF)
    by_dest = torch.full(lp.shape, NINF, dtype=lp.dtype)
    for d in range(w):
        by_dest[..., d:, d] = lp[..., : k - d, d]
    src = torch.arange(k)[:, None] - torch.arange(w)
    assert torch.equal(sparse.predecessors, torch.where(src >= 0, src, -1))
    assert torch.equal(sparse.log_probs, by_dest)
    return sparse


def problem(seed, b=3, t=9, k=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(b, t, k, dtype=dtype, generator=g) * 2
    init = torch.randn(k, dtype=dtype, generator=g)
    final = torch.randn(b, k, dtype=dtype, generator=g)
    return e, init, final, torch.tensor([t, 4, 1][:b]), g


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["shared", "batched", "time_varying"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_from_dense_equals_dense(layout, backend, dtype):
    e, init, final, lengths, g = problem(0, dtype=dtype)
    b, t, k = e.shape
    shape = {"shared": (k, k), "batched": (b, k, k), "time_varying": (b, t - 1, k, k)}[layout]
    lp = torch.randn(shape, dtype=dtype, generator=g)
    lp[torch.rand(shape, generator=g) < 0.3] = NINF  # missing edges; from_dense drops edges absent everywhere
    lp[..., 2, :] = NINF  # a source without any outgoing edge
    dense = Dense(lp)
    sparse = Sparse.from_dense(dense)
    assert sparse.width < k
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert_same(run_all(e, sparse, init, lengths, final, backend), run_all(e, dense, init, lengths, final, backend),
                sparse, dense, atol=tol, paths=dtype == torch.float64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["shared", "batched", "time_varying"])
@pytest.mark.parametrize("convert", ["from_banded", "from_dense"])
def test_banded_as_sparse_equals_banded(layout, backend, convert):
    e, init, final, lengths, g = problem(1)
    b, t, k = e.shape
    w = 3
    shape = {"shared": (k, w), "batched": (b, k, w), "time_varying": (b, t - 1, k, w)}[layout]
    lp = torch.randn(shape, dtype=torch.float64, generator=g)
    lp[..., 1, 1] = NINF
    band = Banded(lp)
    sparse = banded_as_sparse(band) if convert == "from_banded" else Sparse.from_dense(band.to_dense())
    assert_same(run_all(e, sparse, init, lengths, final, backend), run_all(e, band, init, lengths, final, backend),
                sparse, band)


@pytest.mark.parametrize("backend", BACKENDS)
def test_parallel_edges_add_probabilities(backend):
    # state 1 reaches 0 by two parallel edges of probability 0.2 and 0.3: the same chain as one edge of 0.5
    e, init, final, lengths, _ = problem(2, k=3)
    pred = torch.tensor([[1, 1, 0, -1], [0, 2, -1, -1], [2, 1, 0, -1]])
    lp = torch.log(torch.tensor([[0.2, 0.3, 0.6, 7.0], [0.4, 0.1, 5.0, 5.0], [0.9, 0.5, 0.0, 3.0]], dtype=torch.float64))
    sparse = Sparse(pred, lp)
    dense = sparse.to_dense()
    np.testing.assert_allclose(dense.log_probs[1, 0].exp().item(), 0.5)
    out_s = run_all(e, sparse, init, lengths, final, backend)
    out_d = run_all(e, dense, init, lengths, final, backend)
    assert_same(out_s, out_d, sparse, dense)
    # the two parallel slots share the edge's count in proportion 0.2 : 0.3
    xi = out_s["expected_transitions"]
    np.testing.assert_allclose((xi[:, 0, 0] * 0.3).numpy(), (xi[:, 0, 1] * 0.2).numpy(), atol=1e-12)
    assert (xi[:, :, 3] == 0).all() and (xi[:, 1, 2] == 0).all(), "unused slots count 0"
    assert (xi[:, 2, 2] == 0).all(), "an edge of probability 0 counts 0"


def test_merge_parallel_edges():
    pred = torch.tensor([[[1, 1, 0, 1, -1]]])
    lp = torch.log(torch.tensor([[[[0.1, 0.2, 0.3, 0.4, 9.0]]]], dtype=torch.float64))
    merged = merge_parallel_edges(lp, pred)
    np.testing.assert_allclose(merged.exp()[0, 0, 0].numpy(), [0.7, 0.0, 0.3, 0.0, 9.0], atol=1e-12)
    no_dup = torch.tensor([[[1, 0, -1, -1, -1]]])
    assert merge_parallel_edges(lp, no_dup) is lp  # nothing to merge: unchanged, no copy


def test_successor_lists():
    pred = torch.tensor([[[1, 1, -1], [0, 2, 1], [-1, -1, -1]], [[0, -1, -1], [0, -1, -1], [0, 1, 2]]])
    slots, dest = successor_lists(pred)
    assert slots.shape == (2, 3, 3)
    # item 0: state 0 -> 1 (slot 1*3+0); state 1 -> 0 twice (slots 0, 1) and -> 1 (slot 5); state 2 -> 1 (slot 4)
    assert slots[0].tolist() == [[3, -1, -1], [0, 1, 5], [4, -1, -1]]
    assert dest[0].tolist() == [[1, -1, -1], [0, 0, 1], [1, -1, -1]]
    assert dest[1].tolist() == [[0, 1, 2], [2, -1, -1], [2, -1, -1]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_are_the_expected_counts(backend):
    e, init, final, lengths, g = problem(3, k=4)
    pred = torch.tensor([[0, 3, 3], [0, 1, -1], [1, 2, 0], [2, 3, -1]])
    lp = torch.randn(3, 4, 3, dtype=torch.float64, generator=g).requires_grad_(True)
    tr = Sparse(pred, lp)
    (grad,) = torch.autograd.grad(kernel.log_partition(e, tr, init, lengths, final, backend=backend).sum(), [lp])
    xi = kernel.expected_transitions(e, tr, init, lengths, final, backend=backend)
    np.testing.assert_allclose(grad.numpy(), xi.numpy(), atol=1e-12)
    assert (grad[:, 1, 2] == 0).all() and (grad[:, 3, 2] == 0).all()
    assert torch.autograd.gradcheck(
        lambda x: kernel.log_partition(e, Sparse(pred, x), init, lengths, final, backend=backend), (lp.detach().requires_grad_(True),)
    )


def test_differentiable_posteriors():
    e, init, final, lengths, g = problem(4, k=4)
    dense = Dense(torch.randn(4, 4, dtype=torch.float64, generator=g))
    lp_d = dense.log_probs.clone().requires_grad_(True)
    sparse = Sparse.from_dense(dense)
    lp_s = sparse.log_probs.clone().requires_grad_(True)
    post_d = kernel.posteriors(e, Dense(lp_d), init, lengths, final, differentiable=True)
    post_s = kernel.posteriors(e, Sparse(sparse.predecessors, lp_s), init, lengths, final, differentiable=True)
    np.testing.assert_allclose(post_s.detach().numpy(), post_d.detach().numpy(), atol=1e-12)
    w = torch.randn(post_d.shape, dtype=torch.float64, generator=g)
    (gd,) = torch.autograd.grad((post_d * w).sum(), [lp_d])
    (gs,) = torch.autograd.grad((post_s * w).sum(), [lp_s])
    gd_by_slot = gd.t().gather(1, sparse.predecessors)  # [dest, slot] = d/dA[pred, dest]
    np.testing.assert_allclose(gs.numpy(), gd_by_slot.numpy(), atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_predecessor_lists(backend):
    # each item its own graph: the batch equals the items run one by one
    e, init, final, lengths, g = problem(5, k=4)
    pred = torch.tensor([[[0, 1], [1, 0], [2, 1], [3, 2]], [[0, -1], [0, 1], [1, 2], [2, 3]], [[3, 0], [1, 0], [2, 1], [3, -1]]])
    lp = torch.randn(3, 4, 2, dtype=torch.float64, generator=g)
    batched = run_all(e, Sparse(pred, lp), init, lengths, final, backend)
    for b in range(3):
        n = int(lengths[b])
        single = run_all(e[b : b + 1, :n], Sparse(pred[b], lp[b]), init, None, final[b : b + 1], backend)
        np.testing.assert_allclose(batched["log_partition"][b : b + 1].numpy(), single["log_partition"].numpy(), atol=1e-12)
        np.testing.assert_allclose(batched["posteriors"][b : b + 1, :n].numpy(), single["posteriors"].numpy(), atol=1e-12)
        np.testing.assert_allclose(batched["expected_transitions"][b : b + 1].numpy(), single["expected_transitions"].numpy(), atol=1e-12)
        assert torch.equal(batched["paths"][b : b + 1, :n], single["paths"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_infeasible_graph(backend):
    # nothing reaches state 2, and the sequence must end there
    e, init, _, lengths, _ = problem(6, k=3)
    pred = torch.tensor([[0, 1], [0, -1], [-1, -1]])
    final = torch.tensor([NINF, NINF, 0.0], dtype=torch.float64)
    init = torch.tensor([0.0, 0.0, NINF], dtype=torch.float64)
    out = run_all(e, Sparse(pred, torch.zeros(3, 2, dtype=torch.float64)), init, lengths, final, backend)
    assert (out["log_partition"] == -math.inf).all() and (out["scores"] == -math.inf).all()
    assert (out["posteriors"] == 0).all() and (out["expected_transitions"] == 0).all() and (out["paths"] == -1).all()


def test_sampling_equals_dense_with_a_fixed_generator():
    k = 4
    g = torch.Generator().manual_seed(7)
    dense = Dense(torch.randn(k, k, dtype=torch.float64, generator=g))  # every edge exists: same rows in the same order
    init = torch.randn(k, dtype=torch.float64, generator=g)
    a = kernel.sample_paths(dense, init, 50, 30, generator=torch.Generator().manual_seed(3))
    b = kernel.sample_paths(Sparse.from_dense(dense), init, 50, 30, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    tv = Dense(torch.randn(50, 29, k, k, dtype=torch.float64, generator=g))
    a = kernel.sample_paths(tv, init, 50, 30, generator=torch.Generator().manual_seed(4))
    b = kernel.sample_paths(Sparse.from_dense(tv), init, 50, 30, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


def _frequencies(paths: torch.Tensor, k: int) -> torch.Tensor:
    counts = torch.zeros(k, k, dtype=torch.float64)
    counts.index_put_((paths[:, :-1].flatten(), paths[:, 1:].flatten()), torch.ones(paths[:, 1:].numel(), dtype=torch.float64), accumulate=True)
    return counts / counts.sum(-1, keepdim=True).clamp(min=1)


def test_sampling_frequencies_match_banded_and_parallel_edges():
    band = left_to_right(5, skip=1, self_loop=0.5, dtype=torch.float64)
    init = torch.log(torch.tensor([1.0, 0, 0, 0, 0], dtype=torch.float64))
    paths = kernel.sample_paths(banded_as_sparse(band), init, 3000, 12, generator=torch.Generator().manual_seed(5))
    steps = paths[:, 1:] - paths[:, :-1]
    assert (steps >= 0).all() and (steps <= 2).all()
    torch.testing.assert_close(_frequencies(paths, 5), band.to_dense().log_probs.exp(), atol=0.03, rtol=0)
    # parallel edges 0 -> 1 (0.25 + 0.25) against 0 -> 0 (0.5)
    sparse = Sparse(torch.tensor([[0, 1], [0, 0]]), torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.25]], dtype=torch.float64)))
    paths = kernel.sample_paths(sparse, torch.zeros(2, dtype=torch.float64), 2000, 10, generator=torch.Generator().manual_seed(6))
    probs = sparse.to_dense().log_probs.exp()
    torch.testing.assert_close(_frequencies(paths, 2), probs / probs.sum(-1, keepdim=True), atol=0.03, rtol=0)  # rows normalised


def test_sampling_time_varying_and_batched_lists():
    n, t = 40, 4
    pred = torch.tensor([[0, 1], [0, 1]]).expand(n, 2, 2)
    logits = torch.full((n, t - 1, 2, 2), NINF)
    for step, target in enumerate([1, 0, 1]):
        logits[:, step, target, :] = 0.0  # only moves into `target`
    paths = kernel.sample_paths(Sparse(pred, logits), torch.zeros(2), n, t, generator=torch.Generator().manual_seed(0))
    assert (paths[:, 1:] == torch.tensor([1, 0, 1])).all()


def test_viterbi_uses_summed_parallel_edges():
    # two parallel edges 0 -> 1 of 0.3 each (0.6 in all) beat the self-loop 0 -> 0 of 0.4
    pred = torch.tensor([[0, -1, -1], [0, 0, 1]])
    lp = torch.log(torch.tensor([[0.4, 1.0, 1.0], [0.3, 0.3, 1.0]], dtype=torch.float64))
    e = torch.zeros(1, 2, 2, dtype=torch.float64)
    init = torch.tensor([0.0, NINF], dtype=torch.float64)
    for backend in BACKENDS:
        paths, scores = kernel.viterbi(e, Sparse(pred, lp), init, backend=backend)
        assert paths.tolist() == [[0, 1]] and scores.item() == pytest.approx(math.log(0.6))


def test_ergodic_builder_as_sparse():
    tr = ergodic(3, dtype=torch.float64)
    sparse = Sparse.from_dense(tr)
    e, init, final, lengths, _ = problem(8, k=3)
    assert_same(run_all(e, sparse, init, lengths, final, "torch"), run_all(e, tr, init, lengths, final, "torch"), sparse, tr)


def test_from_banded_rejects_other_structures():
    from pytorch_hmm.errors import HMMValueError

    with pytest.raises(HMMValueError, match="banded must be a pytorch_hmm.transitions.Banded structure; got Dense"):
        Sparse.from_banded(ergodic(3))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sparse_sampling_and_successors_on_cuda():
    dense = Dense(torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    sparse = Sparse.from_dense(dense).to("cuda")
    paths = kernel.sample_paths(sparse, torch.zeros(4, dtype=torch.float64, device="cuda"), 8, 6,
                                generator=torch.Generator(device="cuda").manual_seed(0))
    assert paths.device.type == "cuda" and ((paths >= 0) & (paths < 4)).all()
    slots, dest = successor_lists(sparse.predecessors.unsqueeze(0))
    cpu_slots, cpu_dest = successor_lists(sparse.predecessors.cpu().unsqueeze(0))
    assert torch.equal(slots.cpu(), cpu_slots) and torch.equal(dest.cpu(), cpu_dest)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_hub_state_backward_equals_dense(backend):
    """A state with a large out-degree (a start or loop state, here one -> all K) but P = 2 predecessors
    per state: the backward pass scatters over the predecessor lists, O(K P), and equals Dense."""
    torch.manual_seed(3)
    k = 40
    pred = torch.stack([torch.zeros(k, dtype=torch.long), torch.arange(k)], 1)  # j <- 0 and j <- j
    pred[0, 1] = -1  # (no parallel edge 0 -> 0)
    s = Sparse(pred, torch.randn(k, 2, dtype=torch.float64).log_softmax(-1))
    e = torch.randn(2, 30, k, dtype=torch.float64)
    init, lengths = torch.randn(k, dtype=torch.float64), torch.tensor([30, 17])
    got = kernel.marginals(e, s, init, lengths, backend=backend)
    want = kernel.marginals(e, s.to_dense(), init, lengths, backend=backend)
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got[1], want[1], rtol=1e-10, atol=1e-12)
    dense_counts = want[2][:, pred.clamp(min=0), torch.arange(k)[:, None]].masked_fill(pred < 0, 0.0)  # [b, j, p] = counts[b, pred[j, p], j]
    torch.testing.assert_close(got[2], dense_counts, rtol=1e-10, atol=1e-12)


def test_to_dense_with_batched_predecessors_and_time_varying_log_probs():
    pred = torch.tensor([[[0, 1], [1, -1]], [[0, -1], [0, 1]]])
    lp = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    dense = Sparse(pred, lp).to_dense().log_probs
    assert dense.shape == (2, 3, 2, 2)
    for b in range(2):
        for j in range(2):
            for p in range(2):
                i = int(pred[b, j, p])
                if i >= 0:
                    torch.testing.assert_close(dense[b, :, i, j], lp[b, :, j, p])
    assert torch.isneginf(dense[1, :, 1, 0]).all()  # item 1: no edge 1 -> 0


def test_from_dense_keeps_one_shared_graph_for_batched_log_probs():
    lp = torch.randn(3, 4, 4).masked_fill(torch.eye(4, dtype=torch.bool).roll(1, 1), float("-inf"))
    s = Sparse.from_dense(lp)
    assert s.predecessors.shape == (4, 3) and s.log_probs.shape == (3, 4, 3) and s.batch_size == 3
    torch.testing.assert_close(s.to_dense().log_probs, lp)


def test_from_dense_rejects_other_structures():
    with pytest.raises(TypeError, match=r"Sparse.from_dense needs a Dense structure or a \(\.\.\., K, K\) tensor; got Banded"):
        Sparse.from_dense(left_to_right(3))
