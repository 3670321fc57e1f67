"""State graphs over shared units (pytorch_hmm.alignment.graph) and segments by graph position.

References, none of which shares code with the implementation:

* the brute-force enumeration of every state path (tests/oracle.py) on small phone graphs
  with optional silences, built here from an explicit edge list;
* autograd: the scatter of state posteriors onto units is the gradient of log Z w.r.t. the
  unit scores, the scatter of edge counts the gradient w.r.t. the tied transition log-probs;
* the same graphs item by item (padding invariance of :meth:`StateGraph.stack`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle import brute_force
from pytorch_hmm.alignment import Segment, StateGraph, merge_tokens, path_segments
from pytorch_hmm.errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from pytorch_hmm.transitions import Banded, Dense, Sparse

NEG_INF = float("-inf")
SIL = 0  # the silence unit


# ---------------------------------------------------------------------------------------
# phone graphs from an explicit edge list
# ---------------------------------------------------------------------------------------


@dataclass
class PhoneGraph:
    """A phone sequence with optional silences (before, between and after the phones).

    Phone ``p`` of the inventory with ``S`` states uses units ``1 + p S .. 1 + p S + S - 1``;
    silence is unit 0 (one state). Every state has a self-loop (tied edge ``2 u``) and exits
    (tied edge ``2 u + 1``). ``edges`` are ``(src, dst, edge id, log-prob)``.
    """

    units: List[int]
    positions: List[int]
    labels: List[str]  # per position
    edges: List[Tuple[int, int, int, float]]
    init: List[float]
    final: List[float]

    @property
    def k(self) -> int:
        return len(self.units)

    def graph(self, storage: str, dtype=torch.float64) -> StateGraph:
        k = self.k
        if storage == "dense":
            lp = torch.full((k, k), NEG_INF, dtype=dtype)
            ids = torch.full((k, k), -1, dtype=torch.long)
            for i, j, e, v in self.edges:
                lp[i, j], ids[i, j] = v, e
            trans = Dense(lp)
        else:
            into = [[(i, e, v) for i, jj, e, v in self.edges if jj == j] for j in range(k)]
            p = max(len(x) for x in into)
            pred = torch.full((k, p), -1, dtype=torch.long)
            lp = torch.full((k, p), NEG_INF, dtype=dtype)
            ids = torch.full((k, p), -1, dtype=torch.long)
            for j, slots in enumerate(into):
                for s, (i, e, v) in enumerate(slots):
                    pred[j, s], lp[j, s], ids[j, s] = i, v, e
            trans = Sparse(pred, lp)
        t = lambda x: torch.tensor(x, dtype=dtype)  # noqa: E731
        return StateGraph(torch.tensor(self.units), trans, t(self.init), t(self.final), ids, torch.tensor(self.positions))

    def dense_numpy(self) -> np.ndarray:
        a = np.full((self.k, self.k), -np.inf)
        for i, j, _, v in self.edges:
            a[i, j] = v
        return a


def phone_graph(phones, inventory=("a", "b"), states=2, silence=True, rng=None) -> PhoneGraph:
    rng = rng or np.random.default_rng(0)
    units, positions, labels, blocks = [], [], [], []  # blocks: (first state, last state, is_silence)

    def add(unit_ids, label):
        first = len(units)
        units.extend(unit_ids)
        positions.extend([len(labels)] * len(unit_ids))
        labels.append(label)
        blocks.append((first, len(units) - 1, label == "sil"))

    for n, ph in enumerate(phones):
        if silence:
            add([SIL], "sil")
        p = inventory.index(ph)
        add([1 + p * states + s for s in range(states)], ph)
    if silence:
        add([SIL], "sil")
    w = lambda: float(rng.normal(0, 1))  # noqa: E731  (unnormalised on purpose)
    edges = []
    for first, last, _ in blocks:
        for s in range(first, last + 1):
            edges.append((s, s, 2 * units[s], w()))
            if s < last:
                edges.append((s, s + 1, 2 * units[s] + 1, w()))
    # a block's last state enters the next block, and skips an optional silence
    for b, (first, last, _) in enumerate(blocks[:-1]):
        nxt = blocks[b + 1]
        edges.append((last, nxt[0], 2 * units[last] + 1, w()))
        if nxt[2] and b + 2 < len(blocks):
            edges.append((last, blocks[b + 2][0], 2 * units[last] + 1, w()))
    starts = {blocks[0][0]} | ({blocks[1][0]} if blocks[0][2] and len(blocks) > 1 else set())
    ends = {blocks[-1][1]} | ({blocks[-2][1]} if blocks[-1][2] and len(blocks) > 1 else set())
    init = [w() if k in starts else NEG_INF for k in range(len(units))]
    final = [w() if k in ends else NEG_INF for k in range(len(units))]
    return PhoneGraph(units, positions, labels, edges, init, final)


def num_units(inventory=("a", "b"), states=2) -> int:
    return 1 + len(inventory) * states


def unit_scores(b, t, u, seed=0, dtype=torch.float64, p_inf=0.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, u, dtype=dtype, generator=g) * 1.5
    if p_inf:
        x[torch.rand(b, t, u, generator=g) < p_inf] = NEG_INF
    return x


STORAGES = ["dense", "sparse"]
UTTERANCES = [["a", "b"], ["a", "a"], ["b"], ["b", "a", "b"]]


def batch_of(utterances, storage, silence=True, dtype=torch.float64):
    items = [phone_graph(u, silence=silence, rng=np.random.default_rng(i)) for i, u in enumerate(utterances)]
    graphs = [it.graph(storage, dtype) for it in items]
    return items, graphs, StateGraph.stack(graphs)


# ---------------------------------------------------------------------------------------
# gather / scatter
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gather_and_scatter_are_adjoint(dtype):
    _, _, g = batch_of(UTTERANCES, "dense", dtype=dtype)
    u = num_units()
    x = unit_scores(g.batch_size, 6, u, seed=1, dtype=dtype)
    v = torch.rand(g.batch_size, 6, g.num_states, dtype=dtype)
    e = g.gather(x)
    assert e.shape == (g.batch_size, 6, g.num_states) and e.dtype == dtype
    real = (g.units >= 0)[:, None, :]
    assert torch.isneginf(e[~real.expand_as(e)]).all()  # padding states read -inf
    lhs = torch.where(real, e * v, torch.zeros((), dtype=dtype)).sum()
    s = g.scatter(v * real, u)
    assert s.shape == (g.batch_size, 6, u) and s.dtype == dtype
    torch.testing.assert_close(lhs, (x * s).sum())
    torch.testing.assert_close(g.occupancy(v * real, u), s.sum((0, 1)))
    torch.testing.assert_close(g.occupancy(v, u), s.sum((0, 1)))  # padding states are dropped


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("storage", STORAGES)
def test_scatter_of_posteriors_is_the_gradient_wrt_unit_scores(storage, dtype):
    _, _, g = batch_of(UTTERANCES, storage, dtype=dtype)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    lengths = torch.tensor([6, 4, 3, 6])
    x = unit_scores(g.batch_size, 6, num_units(), seed=2, dtype=dtype).requires_grad_(True)
    log_z = g.log_partition(x, lengths)
    assert torch.isfinite(log_z).all() and log_z.dtype == dtype
    (grad,) = torch.autograd.grad(log_z.sum(), x)
    post = g.posteriors(x.detach(), lengths)
    torch.testing.assert_close(g.scatter(post, num_units()), grad, **tol)
    torch.testing.assert_close(g.occupancy(post, num_units()), grad.sum((0, 1)), **tol)
    # each valid frame's posteriors sum to 1 over the units
    frames = g.scatter(post, num_units()).sum(-1)
    torch.testing.assert_close(frames, (torch.arange(6)[None] < lengths[:, None]).to(dtype), **tol)


@pytest.mark.parametrize("storage", STORAGES)
def test_scatter_of_edge_counts_is_the_gradient_wrt_tied_transitions(storage):
    _, _, g = batch_of(UTTERANCES, storage)
    lengths = torch.tensor([6, 5, 4, 6])
    e = g.max_edge + 1
    theta = torch.randn(e, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).requires_grad_(True)
    tied = g.with_edges(theta)
    x = unit_scores(g.batch_size, 6, num_units(), seed=4)
    (grad,) = torch.autograd.grad(tied.log_partition(x, lengths).sum(), theta)
    _, _, counts = tied.marginals(x, lengths)
    assert counts.shape == tied.edge_ids.shape
    torch.testing.assert_close(tied.scatter_edges(counts), grad, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(tied.scatter_edges(counts, e + 2)[:e], grad, rtol=1e-9, atol=1e-10)
    # untied slots keep their own log-probs; with_edges of the graph's own values changes nothing
    assert torch.equal(tied.transitions.log_probs[tied.edge_ids < 0], g.transitions.log_probs.expand_as(tied.edge_ids)[g.edge_ids < 0])


def test_scatter_edges_sums_a_time_axis():
    units = torch.tensor([[1, 2, 2]])
    lp = torch.zeros(1, 3, 3, 2, dtype=torch.float64)
    g = StateGraph(units, Banded(lp), torch.tensor([0.0, NEG_INF, NEG_INF], dtype=torch.float64),
                   edge_ids=torch.tensor([[0, 1], [2, 3], [2, 3]]))
    counts = torch.rand(1, 3, 3, 2, dtype=torch.float64)
    torch.testing.assert_close(g.scatter_edges(counts), g.scatter_edges(counts.sum(1)))
    theta = torch.randn(4, dtype=torch.float64)
    assert g.with_edges(theta).transitions.log_probs.shape == (1, 3, 3, 2)


# ---------------------------------------------------------------------------------------
# brute force on phone graphs with optional silences
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("storage", STORAGES)
@settings(max_examples=15)
@given(
    phones=st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=2),
    silence=st.booleans(),
    t=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    p_inf=st.sampled_from([0.0, 0.2]),
)
def test_phone_graph_equals_brute_force(backend, storage, phones, silence, t, seed, p_inf):
    spec = phone_graph(phones, silence=silence, rng=np.random.default_rng(seed))
    g = spec.graph(storage)
    x = unit_scores(1, t, num_units(), seed=seed, p_inf=p_inf)
    em = g.gather(x)[0].numpy()
    ans = brute_force(em, spec.dense_numpy(), np.array(spec.init), np.array(spec.final))
    log_z = g.log_partition(x, backend=backend)
    np.testing.assert_allclose(log_z.numpy(), [ans.log_z], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(g.posteriors(x, backend=backend)[0].numpy(), ans.posteriors, atol=1e-9)
    _, _, counts = g.marginals(x, backend=backend)
    # counts in storage shape; the oracle's per step (src, dst)
    xi = ans.expected_transitions.sum(0) if t > 1 else np.zeros((g.num_states,) * 2)
    expected = np.zeros(tuple(counts.shape[1:]))
    for i, j, _, _ in spec.edges:
        if storage == "dense":
            expected[i, j] = xi[i, j]
        else:
            slot = g.transitions.predecessors[j].tolist().index(i)
            expected[j, slot] = xi[i, j]
    np.testing.assert_allclose(counts[0].numpy(), expected, atol=1e-9)
    paths, best = g.viterbi(x, backend=backend)
    np.testing.assert_allclose(best.numpy(), [ans.best_score], rtol=1e-9, atol=1e-9)
    if np.isfinite(ans.best_score):
        assert tuple(paths[0].tolist()) in ans.best_paths
        # the path's emission score is the sum of the frame scores
        frame = g.path_scores(x, paths)
        np.testing.assert_allclose(frame.sum().item(), em[np.arange(t), paths[0].numpy()].sum(), rtol=1e-12)
        segs = g.segments(paths, frame, [spec.labels])[0]
        assert segs[0].start == 0 and segs[-1].end == t
        assert all(a.end == b.start for a, b in zip(segs, segs[1:]))
        assert [s.unit for s in segs if s.unit != "sil"] == list(phones)  # every phone once, in order


# ---------------------------------------------------------------------------------------
# segments by graph position
# ---------------------------------------------------------------------------------------


def test_repeated_adjacent_phones_give_two_segments():
    spec = phone_graph(["a", "a"], silence=False)
    g = spec.graph("dense")
    assert spec.units == [1, 2, 1, 2] and spec.positions == [0, 0, 1, 1]
    paths = torch.tensor([[0, 0, 1, 2, 3, 3]])
    probs = torch.tensor([[0.5, 1.0, 0.6, 0.2, 0.4, 0.3]], dtype=torch.float64)
    segs = g.segments(paths, probs.log())
    assert segs == [[Segment(1, 0, 3, pytest.approx(0.7)), Segment(1, 3, 6, pytest.approx(0.3))]]
    assert g.segments(paths, probs.log(), [["a", "a"]]) == [
        [Segment("a", 0, 3, pytest.approx(0.7)), Segment("a", 3, 6, pytest.approx(0.3))]]
    # merging by unit id instead would give one span per state change, not per phone
    assert len(merge_tokens(g.path_units(paths)[0], probs.log()[0], blank=99)) == 4


def test_repeated_phones_from_viterbi():
    spec = phone_graph(["a", "a"], silence=True)
    g = spec.graph("dense")
    # frames prefer a_0 a_1 a_0 a_1: no silence frames, two "a" segments
    x = torch.full((1, 4, num_units()), -5.0, dtype=torch.float64)
    x[0, [0, 2], 1] = 0.0
    x[0, [1, 3], 2] = 0.0
    paths, _ = g.viterbi(x)
    segs = g.segments(paths, g.path_scores(x, paths), [spec.labels])[0]
    assert [(s.unit, s.start, s.end) for s in segs] == [("a", 0, 2), ("a", 2, 4)]


def test_path_segments_drop_padding_and_unreported_positions():
    paths = torch.tensor([[0, 1, 1, 2, -1], [2, 2, 0, -1, -1]])
    positions = torch.tensor([[0, -1, 1], [0, -1, 1]])
    units = torch.tensor([[5, 9, 6], [5, 9, 6]])
    out = path_segments(paths, positions, units, torch.zeros(2, 5))
    assert out == [[Segment(5, 0, 1, 1.0), Segment(6, 3, 4, 1.0)], [Segment(6, 0, 2, 1.0), Segment(5, 2, 3, 1.0)]]
    assert path_segments(paths[:, :0], positions, units, torch.zeros(2, 0)) == [[], []]


def test_from_edges_equals_predecessor_lists():
    spec = phone_graph(["a", "b", "a"])
    manual = spec.graph("sparse")
    src, dst, ids, lp = zip(*spec.edges)
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    src, dst, ids, lp = torch.tensor(src), torch.tensor(dst), torch.tensor(ids), t(lp)
    g = StateGraph.from_edges(torch.tensor(spec.units), src, dst, lp, t(spec.init), t(spec.final), ids,
                              torch.tensor(spec.positions))
    assert isinstance(g.transitions, Sparse) and g.transitions.width == manual.transitions.width
    assert torch.equal(g.transitions.predecessors, manual.transitions.predecessors)
    assert torch.equal(g.transitions.log_probs, manual.transitions.log_probs)
    assert torch.equal(g.edge_ids, manual.edge_ids) and torch.equal(g.positions, manual.positions)
    torch.testing.assert_close(g.transitions.to_dense().log_probs, torch.from_numpy(spec.dense_numpy()))


def test_to_changes_dtype_and_keeps_ids():
    _, _, g = batch_of(UTTERANCES, "sparse")
    h = g.to(dtype=torch.float32)
    assert h.dtype == torch.float32 and h.log_init.dtype == torch.float32 and h.log_final.dtype == torch.float32
    assert torch.equal(h.units, g.units) and torch.equal(h.edge_ids, g.edge_ids) and torch.equal(h.positions, g.positions)
    assert isinstance(h.transitions, Sparse) and torch.equal(h.transitions.predecessors, g.transitions.predecessors)


# ---------------------------------------------------------------------------------------
# batching per-item graphs
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("storage", STORAGES + ["banded"])
def test_stack_equals_items(storage):
    if storage == "banded":
        graphs = [
            StateGraph(torch.tensor([1, 2, 1, 2, 3]), Banded(torch.randn(5, 3, dtype=torch.float64)),
                       torch.tensor([0.0] + [NEG_INF] * 4, dtype=torch.float64),
                       torch.tensor([NEG_INF] * 3 + [0.0, 0.0], dtype=torch.float64), torch.randint(0, 6, (5, 3))),
            StateGraph(torch.tensor([[3, 4]]), Banded(torch.randn(1, 2, 2, dtype=torch.float64)),
                       torch.tensor([0.0, -1.0], dtype=torch.float64), positions=torch.tensor([0, 0])),
        ]
        items = None
    else:
        items, graphs, _ = batch_of(UTTERANCES, storage)
    g = StateGraph.stack(graphs)
    k = g.num_states
    assert g.batch_size == len(graphs) and k == max(h.num_states for h in graphs)
    t, u = 6, num_units()
    x = unit_scores(g.batch_size, t, u, seed=5)
    lengths = torch.tensor([6, 3, 5, 2][: g.batch_size])
    log_z = g.log_partition(x, lengths)
    log_z_b, post, counts = g.marginals(x, lengths)
    paths, best = g.viterbi(x, lengths)
    scores = g.path_scores(x, paths)
    segs = g.segments(paths, scores)
    torch.testing.assert_close(log_z, log_z_b)
    for b, h in enumerate(graphs):
        n, kb = int(lengths[b]), h.num_states
        xb = x[b : b + 1, :n]
        torch.testing.assert_close(h.log_partition(xb), log_z[b : b + 1], rtol=1e-12, atol=1e-12)
        _, hp, hc = h.marginals(xb)
        torch.testing.assert_close(hp[0], post[b, :n, :kb], rtol=1e-10, atol=1e-12)
        assert not post[b, :, kb:].any() and not post[b, n:].any()
        x_slots = hc.shape[-1]
        torch.testing.assert_close(hc[0], counts[b, :kb, :x_slots], rtol=1e-10, atol=1e-12)
        assert not counts[b, kb:].any()
        hpath, hbest = h.viterbi(xb)
        torch.testing.assert_close(hbest, best[b : b + 1], rtol=1e-12, atol=1e-12)
        assert torch.equal(hpath[0], paths[b, :n]) and (paths[b, n:] == -1).all()
        assert h.segments(hpath, h.path_scores(xb, hpath))[0] == segs[b]
        u_b = h.scatter(hp, u)[0]
        torch.testing.assert_close(u_b, g.scatter(post, u)[b, :n], rtol=1e-10, atol=1e-12)
    if g.edge_ids is not None:
        theta = torch.randn(g.max_edge + 1, dtype=torch.float64)
        tied = g.with_edges(theta)
        per_item = [h.with_edges(theta) if h.edge_ids is not None else h for h in graphs]
        torch.testing.assert_close(
            tied.scatter_edges(tied.marginals(x, lengths)[2]),
            sum(h.scatter_edges(h.marginals(x[b : b + 1, : int(lengths[b])])[2], g.max_edge + 1)
                for b, h in enumerate(per_item) if h.edge_ids is not None),
            rtol=1e-10, atol=1e-12)


def test_stack_keeps_batched_items_and_pads_with_nothing():
    _, graphs, g = batch_of([["a"], ["a", "b"]], "dense")
    assert torch.equal(StateGraph.stack([g, graphs[0]]).units[:2], g.units)
    k0 = graphs[0].num_states
    assert (g.units[0, k0:] == -1).all() and (g.positions[0, k0:] == -1).all()
    assert torch.isneginf(g.log_init[0, k0:]).all() and torch.isneginf(g.log_final[0, k0:]).all()
    assert torch.isneginf(g.transitions.log_probs[0, k0:]).all() and torch.isneginf(g.transitions.log_probs[0, :, k0:]).all()
    assert (g.edge_ids[0, k0:] == -1).all()


# ---------------------------------------------------------------------------------------
# errors: one test per message
# ---------------------------------------------------------------------------------------


def _small():
    return StateGraph(torch.tensor([[0, 1], [1, 0]]), Banded(torch.zeros(2, 2)), torch.zeros(2),
                      edge_ids=torch.tensor([[0, 1], [2, -1]]))


META = torch.device("meta")


ERRORS = [
    (lambda: StateGraph([0, 1], Banded(torch.zeros(2, 2)), torch.zeros(2)), HMMTypeError,
     r"units must be a torch.Tensor of shape \(B, K\); got list"),
    (lambda: StateGraph(torch.zeros(2), Banded(torch.zeros(2, 2)), torch.zeros(2)), HMMDtypeError,
     "units must have an integer dtype; got torch.float32"),
    (lambda: StateGraph(torch.zeros(1, 1, 2, dtype=torch.long), Banded(torch.zeros(2, 2)), torch.zeros(2)), HMMDimensionError,
     r"units must be \(B, K\) or \(K,\); got shape \(1, 1, 2\)"),
    (lambda: StateGraph(torch.tensor([0, 1]), torch.zeros(2, 2), torch.zeros(2)), HMMTypeError,
     "transitions must be a pytorch_hmm.transitions.Dense, Banded or Sparse structure; got Tensor"),
    (lambda: StateGraph(torch.tensor([0, 1]), Banded(torch.zeros(3, 2)), torch.zeros(2)), HMMDimensionError,
     r"transitions must describe K == 2 states \(shared or batched with B == 1\) to match units \(1, 2\)"),
    (lambda: StateGraph(torch.tensor([0, 1]), Banded(torch.zeros(2, 2, device=META)), torch.zeros(2)), HMMDeviceError,
     r"transitions must be on the device of units \(cpu\); got meta"),
    (lambda: StateGraph(torch.tensor([0, 1]), Banded(torch.zeros(2, 2)), [0.0, 0.0]), HMMTypeError,
     r"log_init must be a torch.Tensor of shape \(K,\) or \(B, K\); got list"),
    (lambda: StateGraph(torch.tensor([0, 1]), Banded(torch.zeros(2, 2)), torch.zeros(3)), HMMDimensionError,
     r"log_init must be \(K,\) or \(B, K\) with B == 1, K == 2; got shape \(3,\)"),
    (lambda: StateGraph(torch.tensor([0, 1]), Banded(torch.zeros(2, 2)), torch.zeros(2, device=META)), HMMDeviceError,
     r"log_init must be on the device of units \(cpu\); got meta"),
    (lambda: StateGraph(torch.tensor([0, 1]), Banded(torch.zeros(2, 2)), torch.zeros(2), torch.zeros(2, dtype=torch.float64)),
     HMMDtypeError, r"log_final must have the dtype of the transitions \(torch.float32\); got torch.float64"),
    (lambda: StateGraph(torch.tensor([0, 1]), Banded(torch.zeros(2, 2)), torch.zeros(2), edge_ids=torch.zeros(2, 3, dtype=torch.long)),
     HMMDimensionError, r"edge_ids must be \(K, X\) or \(B, K, X\) with B == 1, K == 2, X == 2 .* got shape \(2, 3\)"),
    (lambda: StateGraph(torch.tensor([0, 1]), Banded(torch.zeros(2, 2)), torch.zeros(2), positions=torch.zeros(2, dtype=torch.long, device=META)),
     HMMDeviceError, r"positions must be on the device of units \(cpu\); got meta"),
    (lambda: StateGraph(torch.tensor([0, -2]), Banded(torch.zeros(2, 2)), torch.zeros(2)), HMMValueError,
     r"units must be ids >= 0 or -1 \(none\); got -2"),
    (lambda: _small().gather(torch.zeros(3, 4, 2)), HMMDimensionError,
     r"unit_scores must be \(B, T, U\) with B == 2 \(the graph's batch\); got shape \(3, 4, 2\)"),
    (lambda: _small().gather(torch.zeros(2, 4, 2, device=META)), HMMDeviceError,
     r"unit_scores is on the meta device \(no data\)"),  # a CPU-only stand-in for another device: meta is refused first
    (lambda: _small().gather(torch.zeros(2, 4, 1)), HMMValueError,
     r"unit_scores must have U > 1 units \(the largest unit id of the graph\); got U == 1"),
    (lambda: _small().scatter(torch.zeros(2, 4, 3), 2), HMMDimensionError,
     r"state_values must be \(B, T, K\) with K == 2 states; got shape \(2, 4, 3\)"),
    (lambda: _small().scatter(torch.zeros(2, 4, 2), 0), HMMValueError, "num_units must be a positive int; got 0"),
    (lambda: _small().occupancy(torch.zeros(2, 4, 2), 1), HMMValueError,
     r"num_units must be > 1 \(the largest unit id of the graph\); got 1"),
    (lambda: _small().scatter_edges(torch.zeros(2, 2, 2), 2), HMMValueError,
     r"num_edges must be > 2 \(the largest edge id of the graph\); got 2"),
    (lambda: _small().scatter_edges(torch.zeros(2, 2, 3)), HMMDimensionError,
     r"counts must be float \(B, K, X\) == \(2, 2, 2\) or \(B, T-1, K, X\) .*; got \(2, 2, 3\) torch.float32"),
    (lambda: StateGraph(torch.tensor([0, 1]), Banded(torch.zeros(2, 2)), torch.zeros(2)).scatter_edges(torch.zeros(1, 2, 2)),
     HMMValueError, "this StateGraph has no edge_ids: build it with edge_ids to tie its transitions"),
    (lambda: _small().with_edges(torch.zeros(2)), HMMDimensionError,
     r"edge_log_probs must be \(E,\) with E > 2 \(the largest edge id\); got shape \(2,\)"),
    (lambda: _small().with_edges(torch.zeros(3, dtype=torch.float64)), HMMDtypeError,
     r"edge_log_probs must have the dtype of the transitions \(torch.float32\); got torch.float64"),
    (lambda: _small().path_scores(torch.zeros(2, 3, 2), torch.zeros(2, 4, dtype=torch.long)), HMMDimensionError,
     r"unit_scores must be \(B, T, U\) with T == 4 \(the paths' frames\) and U > 1; got shape \(2, 3, 2\)"),
    (lambda: _small().path_units(torch.zeros(4, dtype=torch.long)), HMMDimensionError,
     r"paths must be \(B, T\) with B == 2 \(the graph's batch\); got shape \(4,\)"),
    (lambda: _small().path_units(torch.zeros(2, 4)), HMMDtypeError, "paths must have an integer dtype; got torch.float32"),
    (lambda: StateGraph.from_edges(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([1, 1]), torch.zeros(1),
                                   torch.zeros(2)), HMMDimensionError,
     r"from_edges needs units \(K,\) and sources, destinations, log_probs, edge_ids \(N,\); got units \(2,\), "
     r"sources \(1,\), destinations \(2,\), log_probs \(1,\)"),
    (lambda: StateGraph.from_edges(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([2]), torch.zeros(1), torch.zeros(2)),
     HMMValueError, r"sources and destinations must be states in \[0, K\) = \[0, 2\); got values in \[0, 2\]"),
    (lambda: StateGraph.stack([]), HMMTypeError, "graphs must be a non-empty sequence of StateGraph"),
    (lambda: StateGraph.stack([_small(), StateGraph(torch.tensor([0]), Dense(torch.zeros(1, 1)), torch.zeros(1))]),
     HMMValueError, r"graphs must share one transition storage, dtype and device; got Banded\(.*\) on cpu and Dense"),
    (lambda: path_segments(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long),
                           torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 2)), HMMDimensionError,
     r"scores must be a float tensor with the shape of paths \(1, 3\); got \(1, 2\) torch.float32"),
    (lambda: path_segments(torch.zeros(1, 3, dtype=torch.long), torch.zeros(2, 1, dtype=torch.long),
                           torch.zeros(2, 1, dtype=torch.long), torch.zeros(1, 3)), HMMDimensionError,
     r"paths must be \(B, T\) and positions, units \(B, K\) with the same B; got \(1, 3\), \(2, 1\) and \(2, 1\)"),
    (lambda: path_segments([[0]], torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long),
                           torch.zeros(1, 1)), HMMTypeError, r"paths must be a torch.Tensor of shape \(B, T\); got list"),
    (lambda: _small().segments(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3), [["a"]]), HMMValueError,
     r"labels must hold one sequence per batch item \(2\); got 1"),
    (lambda: path_segments(torch.tensor([[0, 3]]), torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long),
                           torch.zeros(1, 2)), HMMValueError,
     r"paths must hold graph states in \[0, K\) = \[0, 3\) or -1 \(padding\); got values in \[0, 3\]"),
    (lambda: _small().path_units(torch.tensor([[0, 2], [0, 0]])), HMMValueError,
     r"paths must hold graph states in \[0, K\) = \[0, 2\) or -1 \(padding\); got values in \[0, 2\]"),
    (lambda: _small().segments(torch.tensor([[0, -2], [0, 0]]), torch.zeros(2, 2)), HMMValueError,
     r"paths must hold graph states in \[0, K\) = \[0, 2\) or -1 \(padding\); got values in \[-2, 0\]"),
    (lambda: _small().segments(torch.tensor([[0, 1, 1], [0, 0, 0]]), torch.zeros(2, 3), [["a"], ["b"]]), HMMValueError,
     r"labels\[0\] must name every position id on the path of item 0; got 1 labels and position 1"),
    (lambda: StateGraph.from_edges(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([1]), torch.zeros(1, dtype=torch.long),
                                   torch.zeros(2)), HMMDtypeError, "log_probs must be float32 or float64; got torch.int64"),
]


@pytest.mark.parametrize("call,error,match", ERRORS, ids=[e[2][:40] for e in ERRORS])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_type_errors_are_type_errors():
    with pytest.raises(TypeError):
        StateGraph([0, 1], Banded(torch.zeros(2, 2)), torch.zeros(2))


# ---------------------------------------------------------------------------------------
# CUDA
# ---------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("storage", STORAGES)
def test_cpu_equals_cuda(storage):
    _, graphs, g = batch_of(UTTERANCES, storage)
    gc = StateGraph.stack([h.to("cuda") for h in graphs])
    assert gc.device.type == "cuda" and gc.transitions.device.type == "cuda"
    x = unit_scores(g.batch_size, 6, num_units(), seed=6)
    lengths = torch.tensor([6, 4, 3, 6])
    torch.testing.assert_close(gc.log_partition(x.cuda(), lengths.cuda()).cpu(), g.log_partition(x, lengths))
    post = g.posteriors(x, lengths)
    torch.testing.assert_close(gc.scatter(gc.posteriors(x.cuda(), lengths.cuda()), num_units()).cpu(), g.scatter(post, num_units()))
    paths, _ = g.viterbi(x, lengths)
    paths_c, _ = gc.viterbi(x.cuda(), lengths.cuda())
    assert torch.equal(paths_c.cpu(), paths)
    assert gc.segments(paths_c, gc.path_scores(x.cuda(), paths_c)) == g.segments(paths, g.path_scores(x, paths))
