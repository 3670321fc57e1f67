"""Components (Initial, Dense/Banded/Sparse/FixedTransitions, Final): statistics, M-steps, models built from them, errors."""

from __future__ import annotations

import math

import pytest
import torch

from pytorch_hmm import HMM, HMMLayer
from pytorch_hmm.emissions import Gaussian
from pytorch_hmm.errors import HMMDimensionError, HMMTypeError, HMMValueError
from pytorch_hmm.kernel import log_partition, posteriors, viterbi
from pytorch_hmm.transitions import (Banded, BandedTransitions, Dense, DenseTransitions, Final, FixedTransitions, Initial,
                                     Sparse, SparseTransitions, TransitionComponent, left_to_right)

F64 = torch.float64
K, D = 4, 2
NEG = -math.inf


def _kernel_runs_sparse() -> bool:
    """Whether the kernel runs ``Sparse`` structures (it gives the dense numbers on the same graph)."""
    g = torch.Generator().manual_seed(0)
    e = torch.randn(2, 5, 3, dtype=F64, generator=g)
    a = torch.log_softmax(torch.randn(3, 3, dtype=F64, generator=g), -1)
    a[0, 2] = NEG
    init = torch.full((3,), -math.log(3), dtype=F64)
    try:
        got = log_partition(e, Sparse.from_dense(Dense(a)), init)
    except Exception:  # noqa: BLE001 - any failure means "not supported yet"
        return False
    return torch.allclose(got, log_partition(e, Dense(a), init), rtol=1e-10, atol=1e-10)


needs_sparse_kernel = pytest.mark.skipif(not _kernel_runs_sparse(), reason="the kernel does not run Sparse structures yet")


def _graph():
    """A (K, K) transition matrix with some missing edges (-inf), and its predecessor-list form."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(K, K, dtype=F64, generator=g)
    a[0, 3] = a[2, 0] = a[3, 1] = a[1, 2] = NEG  # in-degree 3: P == 3
    return torch.log_softmax(a, -1)


def _emission(seed: int = 0) -> Gaussian:
    g = torch.Generator().manual_seed(seed)
    return Gaussian(K, D, means=torch.randn(K, D, dtype=F64, generator=g) * 3, covars=torch.ones(K, D, dtype=F64), dtype=F64)


def _data(seed: int = 2, b: int = 4, t: int = 30):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, D, dtype=F64, generator=g) * 3
    lengths = torch.randint(t // 2, t + 1, (b,), generator=g)
    lengths[0] = t
    return x, lengths


def _components():
    dense = _graph()
    return {
        "dense": DenseTransitions(dense),
        "banded": BandedTransitions(torch.log_softmax(torch.randn(K, 3, dtype=F64), -1)),
        "sparse": SparseTransitions.from_structure(Sparse.from_dense(Dense(dense))),
    }


def _random_counts(comp, b: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = torch.rand((b,) + tuple(comp.logits.shape), dtype=F64, generator=g)
    return c.masked_fill(~torch.isfinite(comp.log_probs), 0.0)  # no counts on missing edges, as from the kernel


# --- statistics protocol ---

@pytest.mark.parametrize("name", ["dense", "banded", "sparse"])
def test_statistics_are_additive(name):
    comp = _components()[name]
    counts = _random_counts(comp, 6, seed=3)
    whole, halves = comp.init_stats(), comp.init_stats()
    comp.accumulate(whole, counts)
    comp.accumulate(halves, counts[:2])
    comp.accumulate(halves, counts[2:])
    torch.testing.assert_close(halves, whole, rtol=1e-14, atol=0)
    assert whole["counts"].shape == comp.logits.shape


def test_initial_statistics_are_additive_and_m_step_is_normalised_counts():
    init = Initial.uniform(K, F64)
    gamma0 = torch.softmax(torch.randn(6, K, dtype=F64), -1)
    whole, halves = init.init_stats(), init.init_stats()
    init.accumulate(whole, gamma0)
    init.accumulate(halves, gamma0[:3])
    init.accumulate(halves, gamma0[3:])
    torch.testing.assert_close(halves, whole, rtol=1e-14, atol=0)
    init.m_step(whole)
    torch.testing.assert_close(init.probs, gamma0.sum(0) / gamma0.sum(), rtol=1e-14, atol=0)


def test_dense_and_banded_m_step_is_row_normalised_counts():
    for name in ("dense", "banded"):
        comp = _components()[name]
        counts = _random_counts(comp, 1, seed=4)[0]
        stats = comp.init_stats()
        comp.accumulate(stats, counts)
        comp.m_step(stats)
        valid = torch.isfinite(comp.log_probs)
        expected = counts / counts.sum(-1, keepdim=True)
        torch.testing.assert_close(comp.log_probs.exp()[valid], expected[valid], rtol=1e-14, atol=0)


def test_sparse_m_step_normalises_each_source():
    comp = _components()["sparse"]
    counts = _random_counts(comp, 1, seed=5)[0]
    stats = comp.init_stats()
    comp.accumulate(stats, counts)
    comp.m_step(stats)
    pred = comp.predecessors
    for i in range(K):  # oracle: each source's outgoing counts, normalised
        slots = pred == i
        expected = counts[slots] / counts[slots].sum()
        torch.testing.assert_close(comp.log_probs.exp()[slots], expected, rtol=1e-14, atol=0)
    # the dense view is row-stochastic: a proper Markov chain
    torch.testing.assert_close(comp.dense_log_probs().exp().sum(-1), torch.ones(K, dtype=F64), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name", ["dense", "banded", "sparse"])
def test_missing_edges_stay_missing_and_rows_without_counts_keep_their_values(name):
    comp = _components()[name]
    before = comp.log_probs.detach().clone()
    counts = _random_counts(comp, 1, seed=6)[0]
    if name == "sparse":
        counts[comp.predecessors == 1] = 0.0  # source 1 unseen
    else:
        counts[1] = 0.0  # row 1 unseen
    stats = comp.init_stats()
    comp.accumulate(stats, counts)
    comp.m_step(stats)
    after = comp.log_probs
    assert torch.equal(torch.isneginf(after), torch.isneginf(before))
    unseen = comp.predecessors == 1 if name == "sparse" else torch.arange(K)[:, None].expand(comp.logits.shape) == 1
    torch.testing.assert_close(after[unseen], before[unseen], rtol=1e-14, atol=0)


def test_counts_on_slots_that_do_not_exist_are_ignored():
    comp = BandedTransitions(left_to_right(3, skip=1, dtype=F64).log_probs)
    counts = torch.ones(3, 3, dtype=F64)  # past-the-end moves too
    stats = comp.init_stats()
    comp.accumulate(stats, counts)
    comp.m_step(stats)
    torch.testing.assert_close(comp.log_probs.exp()[0], torch.full((3,), 1 / 3, dtype=F64))
    assert comp.log_probs[2, 1:].isneginf().all() and comp.log_probs[2, 0] == 0


def test_structure_shapes_and_kinds():
    comps = _components()
    assert isinstance(comps["dense"].structure(), Dense) and comps["dense"].structure().log_probs.shape == (K, K)
    assert isinstance(comps["banded"].structure(), Banded) and comps["banded"].structure().log_probs.shape == (K, 3)
    s = comps["sparse"].structure()
    assert isinstance(s, Sparse) and s.log_probs.shape == s.predecessors.shape == (K, 3)
    # the sparse component renormalises to the same chain as the dense one
    torch.testing.assert_close(comps["sparse"].dense_log_probs(), comps["dense"].log_probs, rtol=1e-12, atol=1e-12)
    assert Initial.first(K, F64).log_probs.shape == (K,)
    for comp in comps.values():
        assert isinstance(comp, TransitionComponent) and comp.has_m_step and comp.num_states == K


def test_state_dicts_round_trip_and_parameters_get_gradients():
    comp = _components()["sparse"]
    copy = SparseTransitions(torch.zeros_like(comp.predecessors), torch.zeros(K, 3, dtype=F64))
    copy.load_state_dict(comp.state_dict())
    assert torch.equal(copy.predecessors, comp.predecessors)
    torch.testing.assert_close(copy.log_probs, comp.log_probs)
    dense = _components()["dense"]
    (dense.log_probs[torch.isfinite(dense.log_probs)] * torch.arange(1.0, 13.0, dtype=F64)).sum().backward()
    assert isinstance(dense.logits, torch.nn.Parameter) and torch.isfinite(dense.logits.grad).all()


def test_gradient_of_the_sparse_normaliser_matches_the_dense_one():
    dense, sparse = _components()["dense"], _components()["sparse"]
    w = torch.randn(K, K, dtype=F64)
    (torch.where(torch.isfinite(dense.log_probs), dense.log_probs, 0.0) * w).sum().backward()
    lp = sparse.dense_log_probs()
    (torch.where(torch.isfinite(lp), lp, 0.0) * w).sum().backward()
    # sparse slot [j, p] holds edge predecessors[j, p] -> j
    pred = sparse.predecessors
    j = torch.arange(K)[:, None].expand_as(pred)
    used = pred >= 0
    torch.testing.assert_close(sparse.logits.grad[used], dense.logits.grad[pred[used], j[used]], rtol=1e-12, atol=1e-12)


# --- models built from components ---

def test_hmm_from_components_equals_the_old_construction():
    probs, init = _graph().exp(), torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64)
    x, lengths = _data()
    old = HMM(_emission(), transitions=probs, init_probs=init)
    new = HMM(_emission(), DenseTransitions.from_probs(probs), Initial.from_probs(init))
    e = old.log_emissions(x, lengths)
    ref = log_partition(e, Dense(probs.log()), init.log(), lengths)
    torch.testing.assert_close(new(x, lengths), ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(old(x, lengths), ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(new.posteriors(x, lengths), posteriors(e, Dense(probs.log()), init.log(), lengths), rtol=0, atol=1e-12)
    assert torch.equal(new.viterbi(x, lengths)[0], viterbi(e, Dense(probs.log()), init.log(), lengths)[0])
    assert old.fit(x, lengths, max_iter=4, verbose=False) == new.fit(x, lengths, max_iter=4, verbose=False)
    torch.testing.assert_close(new.transmat, old.transmat, rtol=0, atol=0)
    torch.testing.assert_close(new.init_probs, old.init_probs, rtol=0, atol=0)


def test_left_to_right_hmm_from_a_banded_component_equals_the_string_form():
    x, lengths = _data(seed=3)
    old = HMM(_emission(), transitions="left_to_right")
    new = HMM(_emission(), BandedTransitions(left_to_right(K, dtype=F64).log_probs), Initial.first(K, F64))
    assert old.fit(x, lengths, max_iter=3, verbose=False) == new.fit(x, lengths, max_iter=3, verbose=False)
    torch.testing.assert_close(new.transmat, old.transmat, rtol=0, atol=0)


@needs_sparse_kernel
def test_sparse_em_equals_dense_em_on_the_same_graph():
    x, lengths = _data(seed=4)
    dense = HMM(_emission(), DenseTransitions(_graph()))
    sparse = HMM(_emission(), SparseTransitions.from_structure(Sparse.from_dense(Dense(_graph()))))
    torch.testing.assert_close(sparse(x, lengths), dense(x, lengths), rtol=1e-12, atol=0)
    assert torch.equal(sparse.viterbi(x, lengths)[0], dense.viterbi(x, lengths)[0])
    h_dense = dense.fit(x, lengths, max_iter=5, tol=-1.0, verbose=False)
    h_sparse = sparse.fit(x, lengths, max_iter=5, tol=-1.0, verbose=False)
    assert h_sparse == pytest.approx(h_dense, rel=1e-10)
    torch.testing.assert_close(sparse.transmat, dense.transmat, rtol=0, atol=1e-10)
    torch.testing.assert_close(sparse.init_probs, dense.init_probs, rtol=0, atol=1e-10)
    torch.testing.assert_close(sparse.emission.means, dense.emission.means, rtol=0, atol=1e-10)


def test_final_constraint_equals_the_kernel_with_log_final():
    x, lengths = _data(seed=5)
    model = HMM(_emission(), DenseTransitions(_graph()), final="last")
    log_final = torch.tensor([NEG, NEG, NEG, 0.0], dtype=F64)
    e = model.log_emissions(x, lengths)
    args = (e, model.transitions, model.log_init, lengths, log_final)
    torch.testing.assert_close(model(x, lengths), log_partition(*args), rtol=1e-12, atol=0)
    torch.testing.assert_close(model.posteriors(x, lengths), posteriors(*args), rtol=0, atol=1e-12)
    paths, _ = model.viterbi(x, lengths)
    assert (paths[torch.arange(len(lengths)), lengths - 1] == K - 1).all()  # every path ends in the last state
    weights = torch.tensor([-1.0, 0.0, -2.0, -0.5], dtype=F64)
    torch.testing.assert_close(HMM(_emission(), DenseTransitions(_graph()), final=weights)(x, lengths),
                               log_partition(e, model.transitions, model.log_init, lengths, weights), rtol=1e-12, atol=0)
    history = model.fit(x, lengths, max_iter=4, tol=-1.0, verbose=False)
    assert all(b >= a - 1e-9 * abs(a) for a, b in zip(history, history[1:]))
    assert torch.equal(model.log_final, log_final)


def test_fixed_time_varying_transitions_are_frozen_by_em():
    x, lengths = _data(seed=6)
    b, t = x.shape[:2]
    table = torch.log_softmax(torch.randn(b, t - 1, K, K, dtype=F64), -1)
    model = HMM(_emission(), Dense(table))
    assert isinstance(model.transition, FixedTransitions) and not list(model.transition.parameters())
    torch.testing.assert_close(model(x, lengths), log_partition(model.log_emissions(x, lengths), Dense(table), model.log_init, lengths))
    before = model.init_probs.clone()
    history = model.fit(x, lengths, max_iter=3, verbose=False)
    assert len(history) == 3 and history[-1] >= history[0]
    assert torch.equal(model.transitions.log_probs, table) and not torch.equal(model.init_probs, before)


def test_old_format_state_dicts_load():
    model = HMM(_emission(), transitions="left_to_right")
    x, lengths = _data(seed=7)
    model.fit(x, lengths, max_iter=2, verbose=False)
    state = model.state_dict()
    old = {("transition_logits" if k == "transition.logits" else "init_logits" if k == "initial.logits" else k): v
           for k, v in state.items()}
    assert "transition_logits" in old
    copy = HMM(_emission(1), transitions="left_to_right")
    copy.load_state_dict(old)
    torch.testing.assert_close(copy(x, lengths), model(x, lengths))
    layer = HMMLayer(3, dtype=F64)
    other = HMMLayer(3, dtype=F64)
    with torch.no_grad():
        layer.transition.logits.add_(torch.randn(3, 3, dtype=F64))
    other.load_state_dict({"transition_logits": layer.transition.logits.detach(), "init_logits": layer.initial.logits.detach()})
    torch.testing.assert_close(other.transitions.log_probs, layer.transitions.log_probs)


def test_init_probs_keyword_and_positional_probabilities_still_work():
    init = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=F64)
    a = HMM(_emission(), "ergodic", init)
    b = HMM(_emission(), "ergodic", init_probs=init)
    torch.testing.assert_close(a.init_probs, init)
    torch.testing.assert_close(b.init_probs, init)


# --- errors: one per message ---

@pytest.mark.parametrize("make, error, message", [
    (lambda: Initial([0.0, 0.0]), HMMTypeError, r"Initial log_probs must be a torch.Tensor of shape \(K,\); got list"),
    (lambda: Initial(torch.zeros(3, dtype=torch.long)), HMMTypeError,
     r"Initial log_probs must be a float32/float64 tensor of shape \(K,\); got dtype torch.int64"),
    (lambda: Initial(torch.zeros(2, 3)), HMMDimensionError, r"Initial log_probs must be \(K,\); got \(2, 3\)"),
    (lambda: DenseTransitions(torch.zeros(2, 3, 3)), HMMDimensionError,
     r"DenseTransitions log_probs must be \(K, K\); got \(2, 3, 3\). batched or time-varying structures are fixed"),
    (lambda: FixedTransitions(torch.zeros(3, 3)), HMMTypeError,
     r"FixedTransitions structure must be a Dense, Banded or Sparse structure; got Tensor"),
    (lambda: Final(torch.zeros(2, 2)), HMMDimensionError, r"log_final must be \(K,\); got \(2, 2\)"),
    (lambda: HMM(_emission(), transitions=3), HMMTypeError,
     r"transitions must be 'ergodic', 'left_to_right', a \(K, K\) probability tensor, a Dense/Banded/Sparse structure "
     r"or a TransitionComponent; got int"),
    (lambda: HMM(_emission(), DenseTransitions(torch.zeros(3, 3, dtype=F64))), HMMDimensionError,
     r"transitions must describe K == 4 states \(the emission's\); got 3"),
    (lambda: HMM(_emission(), initial="first"), HMMTypeError,
     r"initial must be an Initial component or a \(K,\) probability tensor; got str"),
    (lambda: HMM(_emission(), initial=Initial.uniform(3, F64)), HMMDimensionError,
     r"initial must describe K == 4 states \(the emission's\); got 3"),
    (lambda: HMM(_emission(), initial=Initial.uniform(4, F64), init_probs=torch.full((4,), 0.25)), HMMValueError,
     r"pass initial or init_probs \(its older name\), not both"),
    (lambda: HMM(_emission(), final="first"), HMMTypeError,
     r"final must be None, 'last', a \(K,\) log-weight tensor or a Final; got 'first'"),
    (lambda: HMM(_emission(), final=0.0), HMMTypeError,
     r"final must be None, 'last', a \(K,\) log-weight tensor or a Final; got float"),
    (lambda: HMM(_emission(), final=torch.zeros(3, dtype=F64)), HMMDimensionError, r"final must be \(K,\) with K == 4; got \(3,\)"),
    (lambda: HMM(torch.nn.Linear(2, 3)), HMMTypeError, r"emission must be a pytorch_hmm.emissions Emission; got Linear"),
])
def test_construction_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_accumulate_error_names_the_expected_shape():
    comp = _components()["dense"]
    with pytest.raises(HMMDimensionError, match=r"DenseTransitions counts must end in \(4, 4\) \(the parameter shape\); got \(2, 4, 3\)"):
        comp.accumulate(comp.init_stats(), torch.zeros(2, 4, 3, dtype=F64))
    with pytest.raises(HMMTypeError, match=r"counts must be a torch.Tensor of shape \(\.\.\., 4, 4\); got list"):
        comp.accumulate(comp.init_stats(), [[0.0]])


def test_a_component_without_closed_form_statistics_says_so():
    class Neural(TransitionComponent):  # the seat of a future NeuralTransitions
        def structure(self):
            return Dense(torch.zeros(2, 2))

    with pytest.raises(NotImplementedError, match="Neural has no closed-form EM statistics; train it by gradient or freeze it"):
        Neural().init_stats()
    assert not Neural.has_m_step


def test_hsmm_old_format_state_dict_and_components():
    from pytorch_hmm import HSMM
    from pytorch_hmm.durations import Poisson

    model = HSMM(_emission(), Poisson(K, 10), transitions="left_to_right")
    assert isinstance(model.initial, Initial) and isinstance(model.transition, DenseTransitions)
    assert torch.isneginf(torch.diagonal(model.log_transitions)).all() and model.log_final[-1] == 0
    old = {{"transition.logits": "transition_logits", "initial.logits": "init_logits", "final.log_weights": "log_final"}.get(k, k): v
           for k, v in model.state_dict().items()}
    copy = HSMM(_emission(1), Poisson(K, 10))
    copy.load_state_dict(old)
    x, lengths = _data(seed=8, t=20)
    torch.testing.assert_close(copy(x, lengths), model(x, lengths))


def test_layer_takes_a_sparse_component():
    comp = _components()["sparse"]
    layer = HMMLayer(K, transitions=comp, dtype=F64)
    scores = torch.randn(2, 7, K, dtype=F64)
    ref = posteriors(scores, comp.structure(), layer.initial.log_probs)
    torch.testing.assert_close(layer(scores), ref, rtol=1e-10, atol=1e-12)
    layer(scores).pow(2).sum().backward()
    assert torch.isfinite(comp.logits.grad).all() and comp.logits.grad.abs().sum() > 0


def test_float32_components_follow_the_emission_dtype():
    model = HMM(Gaussian(K, D, means=torch.randn(K, D), covars=torch.ones(K, D)),
                SparseTransitions.from_structure(Sparse.from_dense(Dense(_graph()))), final="last")
    assert model.transitions.dtype == model.log_init.dtype == model.log_final.dtype == torch.float32
    x, lengths = _data(seed=9)
    assert torch.isfinite(model(x.float(), lengths)).all()


def test_sparse_gradients_stay_finite_with_a_source_whose_edges_are_all_missing():
    """A source whose every edge is -inf (a dead state) must not put NaN into the gradient."""
    comp = SparseTransitions(torch.tensor([[0, -1], [0, 1], [1, -1]]), torch.tensor([[0.0, 0.0], [0.0, NEG], [NEG, 0.0]], dtype=F64))
    lp = comp.log_probs
    assert torch.isneginf(lp[1, 1]) and torch.isneginf(lp[2, 0])
    torch.where(torch.isfinite(lp), lp, 0.0).sum().backward()
    assert torch.isfinite(comp.logits.grad).all()
    e = torch.randn(2, 6, 3, dtype=F64)
    comp.logits.grad = None
    log_partition(e, comp.structure(), torch.log(torch.tensor([1.0, 0.0, 0.0], dtype=F64))).sum().backward()
    assert torch.isfinite(comp.logits.grad).all()


def test_loading_a_sparse_state_dict_takes_its_graph_and_missing_entries_hold_zero():
    """The slots that exist follow the loaded predecessors; entries that do not exist hold 0 after loading."""
    pred = torch.tensor([[0, -1], [0, 1], [1, 2]])
    comp = SparseTransitions(pred, torch.log(torch.tensor([[0.5, 1.0], [0.5, 0.4], [0.6, 1.0]], dtype=F64)))
    copy = SparseTransitions(torch.tensor([[0, 1], [0, 1], [1, 2]]), torch.zeros(3, 2, dtype=F64))
    copy.load_state_dict(comp.state_dict())
    assert torch.equal(copy.exists, pred >= 0)
    torch.testing.assert_close(copy.log_probs, comp.log_probs)
    torch.testing.assert_close(copy.dense_log_probs(), comp.dense_log_probs())
    banded = BandedTransitions(torch.zeros(3, 2, dtype=F64))
    old = {"logits": torch.tensor([[0.0, -1.0], [0.0, -2.0], [0.0, NEG]], dtype=F64)}  # pre-component layout: -inf past the end
    banded.load_state_dict(old)
    assert torch.isfinite(banded.logits).all() and banded.logits[2, 1] == 0.0


def test_components_say_their_shape_in_repr():
    model = HMM(_emission(), transitions=_components()["sparse"])
    text = repr(model)
    assert "SparseTransitions(num_states=4, slots=3)" in text and "Initial(num_states=4)" in text
    assert repr(_components()["banded"]) == "BandedTransitions(num_states=4, width=3)"
    assert repr(_components()["dense"]) == "DenseTransitions(num_states=4)"
    assert repr(Final.last(3)) == "Final(num_states=3)"
    assert repr(FixedTransitions(Dense(torch.zeros(2, 5, 3, 3)))) == "FixedTransitions(storage=Dense, shape=(2, 5, 3, 3))"


def test_sparse_from_probs_like_dense_and_banded():
    """``SparseTransitions.from_probs`` validates that each source's outgoing edges sum to 1, as ``Sparse.from_probs``."""
    pred = torch.tensor([[0, -1], [0, 1], [1, 2]])
    probs = torch.tensor([[0.5, 0.0], [0.5, 0.25], [0.75, 1.0]], dtype=F64)
    comp = SparseTransitions.from_probs(pred, probs)
    torch.testing.assert_close(comp.dense_log_probs().exp().sum(-1), torch.ones(3, dtype=F64))
    torch.testing.assert_close(comp.log_probs.exp().masked_fill(pred < 0, 0.0), probs)
    with pytest.raises(HMMValueError, match="outgoing edges of each source state"):
        SparseTransitions.from_probs(pred, probs * 0.5)
