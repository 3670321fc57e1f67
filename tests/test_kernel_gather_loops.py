"""Hostile tests of the compiled (numba) chain loops rewritten in 181bc92.

The banded and sparse forward/backward loops keep their sources as scaled numbers (a mantissa in
``[1, e^300)`` and a level, a multiple of ``LEVEL = 300`` nats), sum exp-space factors and redo
doubtful sums as an exact logsumexp; time-varying tables run the exact path for every state. The
dense Viterbi is a source-major max-product whose ties must go to the lowest source. These tests
aim at exactly those places (states many levels below the best, values on level boundaries,
sums that underflow, a dominant path that dies, infeasible items, float32, ties, ``-inf`` rows)
and compare against an independent reference each time: the brute-force oracle
(``tests/oracle.py``) on tiny shapes, or the PyTorch loops (``backend="torch"``, exact
logsumexps) in float64 on larger ones; ``torch.nn.functional.ctc_loss`` for the CTC chain.
The last group checks the PyTorch path's own change (backward masks per frame only when lengths
differ): a padded batch equals its items run one by one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from oracle import Problem
from pytorch_hmm import kernel
from pytorch_hmm.kernel.gather_numba import LEVEL
from pytorch_hmm.transitions import Banded, Dense, Sparse

NINF = -math.inf
F64 = torch.float64


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def rebuilt(structure, lp):
    """``structure``'s storage (and predecessor lists) around new log-probs ``lp``."""
    if isinstance(structure, Sparse):
        return Sparse(structure.predecessors, lp)
    return type(structure)(lp)


def close(actual, expected, what, rtol=1e-9, atol=1e-9):
    actual = actual.detach().double().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    expected = expected.detach().double().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert not np.isnan(actual).any(), f"{what}: NaN in the result"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def outputs(e, s, init, lengths, final, backend):
    """log Z, posteriors, expected transitions, ``marginals`` and the gradients of ``sum log Z``
    (finite items) w.r.t. the emissions, the transition log-probs, ``log_init`` and ``log_final``."""
    out = {}
    out["posteriors"] = kernel.posteriors(e, s, init, lengths, final, backend=backend)
    out["expected_transitions"] = kernel.expected_transitions(e, s, init, lengths, final, backend=backend)
    lz, post, xi = kernel.marginals(e, s, init, lengths, final, backend=backend)
    out["marginals.log_z"], out["marginals.posteriors"], out["marginals.xi"] = lz, post, xi
    leaves = [x.detach().clone().requires_grad_(True) for x in (e, s.log_probs, init)]
    fin = None if final is None else final.detach().clone().requires_grad_(True)
    log_z = kernel.log_partition(leaves[0], rebuilt(s, leaves[1]), leaves[2], lengths, fin, backend=backend)
    out["log_z"] = log_z.detach()
    total = torch.where(torch.isfinite(log_z), log_z, torch.zeros_like(log_z)).sum()
    wrt = leaves + ([fin] if fin is not None else [])
    grads = torch.autograd.grad(total, wrt, allow_unused=True)
    for name, g, x in zip(("grad.emissions", "grad.transitions", "grad.init", "grad.final"), grads, wrt):
        out[name] = torch.zeros_like(x) if g is None else g
    return out


def assert_backends_agree(e, s, init, lengths=None, final=None, rtol=1e-9, atol=1e-9, lz_rtol=1e-12):
    """numba == torch (float64) for every output of :func:`outputs`; returns the torch outputs."""
    ref = outputs(e, s, init, lengths, final, "torch")
    got = outputs(e, s, init, lengths, final, "numba")
    for name in ("log_z", "marginals.log_z"):
        r, g = ref[name], got[name]
        assert torch.equal(torch.isneginf(r), torch.isneginf(g)), f"{name}: feasibility differs: torch {r}, numba {g}"
        fin = torch.isfinite(r)
        assert torch.isfinite(g[fin]).all(), f"{name}: numba not finite where torch is: {g}"
        close(g[fin], r[fin], name, rtol=lz_rtol, atol=1e-9)
    for name in ref:
        if name.endswith("log_z"):
            continue
        close(got[name], ref[name], name, rtol=rtol, atol=atol)
    # and the gradient w.r.t. the emissions is the posterior (of the other backend)
    close(got["grad.emissions"], ref["posteriors"], "numba d logZ/d emissions vs torch posteriors", rtol=rtol, atol=atol)
    return ref


def hostile_emissions(g, shape):
    """Emissions mixing 0, -1e4 and N(0, 1) * 1e3: states sit many LEVELs below the frame's best."""
    e = torch.randn(shape, dtype=F64, generator=g) * 1e3
    u = torch.rand(shape, generator=g, dtype=F64)
    e[u < 0.25] = -1e4
    e[(u >= 0.25) & (u < 0.45)] = 0.0
    return e


BOUNDARY = torch.tensor(
    [0.0, -LEVEL, -2 * LEVEL, -3 * LEVEL, -4 * LEVEL, -LEVEL + 1e-9, -LEVEL - 1e-9, -2 * LEVEL - 1e-9,
     -1e-12, -LEVEL / 2, -7 * LEVEL, -2 * LEVEL + 1e-9],
    dtype=F64,
)


def boundary_emissions(g, shape):
    """Every entry exactly on, or a hair from, a multiple of LEVEL below 0 (the frame maximum is 0)."""
    idx = torch.randint(0, len(BOUNDARY), shape, generator=g)
    e = BOUNDARY[idx]
    e[..., 0] = 0.0  # the frame maximum
    return e


def banded_table(g, shape, hostile=True):
    lp = torch.randn(shape, dtype=F64, generator=g) * 2
    if hostile:
        u = torch.rand(shape, generator=g, dtype=F64)
        lp[u < 0.2] = -800.0
        lp[(u >= 0.2) & (u < 0.35)] = -1500.0
        lp[(u >= 0.35) & (u < 0.4)] = NINF
    return lp


def sparse_graph(g, k, p, batch=None):
    """Predecessor lists with unused slots and parallel edges, every state with at least one slot used."""
    shape = (k, p) if batch is None else (batch, k, p)
    pred = torch.randint(-1, k, shape, generator=g)
    pred[..., 0] = torch.randint(0, k, shape[:-1], generator=g)
    return pred


def layout_shape(layout, b, t, k, w):
    return {"shared": (k, w), "batched": (b, k, w), "time_varying": (b, t - 1, k, w)}[layout]


def make_structure(storage, layout, g, b, t, k, w, hostile=True):
    lp = banded_table(g, layout_shape(layout, b, t, k, w), hostile)
    if storage == "banded":
        return Banded(lp)
    pred = sparse_graph(g, k, w, None if layout == "shared" else b)
    return Sparse(pred, lp)


def oracle_problem(e, s, init, lengths=None, final=None) -> Problem:
    storage = "banded" if isinstance(s, Banded) else ("sparse" if isinstance(s, Sparse) else "dense")
    pred = s.predecessors.numpy() if isinstance(s, Sparse) else None
    return Problem(
        em=e.detach().double().numpy(),
        trans=s.log_probs.detach().double().numpy(),
        storage=storage,
        init=init.detach().double().numpy(),
        final=None if final is None else final.detach().double().numpy(),
        lengths=None if lengths is None else lengths.numpy().astype(np.int64),
        pred=pred,
    )


def assert_matches_oracle(e, s, init, lengths=None, final=None, backend="numba"):
    ans = oracle_problem(e, s, init, lengths, final).solve()
    lz, post, xi = kernel.marginals(e, s, init, lengths, final, backend=backend)
    assert torch.equal(torch.isneginf(lz), torch.from_numpy(np.isneginf(ans.log_z))), f"feasibility: {lz} vs {ans.log_z}"
    close(lz, ans.log_z, "log Z vs brute force", rtol=1e-12, atol=1e-9)
    close(post, ans.posteriors, "posteriors vs brute force")
    close(xi, ans.expected_transitions, "expected transitions vs brute force")
    return ans


# ---------------------------------------------------------------------------------------
# 1. scores spanning thousands of nats (static tables: the scaled-number fast path)
# ---------------------------------------------------------------------------------------


STATIC = [("banded", "shared"), ("banded", "batched"), ("sparse", "shared"), ("sparse", "batched")]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("storage,layout", STATIC)
def test_thousands_of_nats_numba_equals_torch(storage, layout, seed):
    g = torch.Generator().manual_seed(100 * seed + len(storage + layout))
    b, t, k, w = 4, 30, 11, 3
    e = hostile_emissions(g, (b, t, k))
    s = make_structure(storage, layout, g, b, t, k, w)
    init = torch.randn(k, dtype=F64, generator=g) * 500
    final = torch.randn(b, k, dtype=F64, generator=g) * 500
    lengths = torch.tensor([t, t - 9, 2, 1])
    ref = assert_backends_agree(e, s, init, lengths, final)
    assert torch.isfinite(ref["log_z"]).sum() >= 2  # the comparison is about feasible items, not -inf == -inf
    # the scores really span many levels: the gap between a frame's best and worst finite state
    spread = (e.amax(-1) - torch.where(e > -1e4, e, e.amax(-1, keepdim=True)).amin(-1)).max()
    assert spread > 5 * LEVEL


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("storage,layout", STATIC)
def test_level_boundary_values_numba_equals_torch(storage, layout, seed):
    # emissions, log_init and log_final exactly on multiples of LEVEL below the frame maximum:
    # the first forward step and the first backward step see sources on level boundaries
    g = torch.Generator().manual_seed(7 + seed)
    b, t, k, w = 3, 12, 12, 3
    e = boundary_emissions(g, (b, t, k))
    lp = BOUNDARY[torch.randint(0, len(BOUNDARY), layout_shape(layout, b, t, k, w), generator=g)].clone()
    s = Banded(lp) if storage == "banded" else Sparse(sparse_graph(g, k, w, None if layout == "shared" else b), lp)
    init = BOUNDARY[torch.randint(0, len(BOUNDARY), (k,), generator=g)].clone()
    final = BOUNDARY[torch.randint(0, len(BOUNDARY), (b, k), generator=g)].clone()
    assert_backends_agree(e, s, init, torch.tensor([t, t - 3, 5]), final)


@pytest.mark.parametrize("shift", [0.0, 1e-9, -1e-9])
@pytest.mark.parametrize("storage", ["banded", "sparse"])
def test_level_boundaries_every_frame_vs_bruteforce(storage, shift):
    # every state has moves whose scores stay exact multiples of LEVEL (+- a hair) at every frame:
    # sources two at a time, one on a level, the next one a level (or two) below
    k, t = 4, 5
    lv = LEVEL
    e = torch.tensor([[0.0, -lv, -2 * lv, -3 * lv]] * t, dtype=F64).unsqueeze(0) + shift
    e[0, :, 0] = 0.0
    e[0, 2] = torch.tensor([-lv, 0.0, -lv + shift, -2 * lv])
    init = torch.tensor([0.0, -lv, -2 * lv + shift, -lv], dtype=F64)
    final = torch.tensor([-2 * lv, 0.0, -lv, shift], dtype=F64)
    if storage == "banded":
        s = Banded(torch.tensor([[0.0, -lv, -2 * lv], [-lv, 0.0, -lv], [shift, -lv, 0.0], [-lv, 0.0, 0.0]], dtype=F64))
    else:
        pred = torch.tensor([[0, 3, 2], [0, 1, -1], [1, 0, 2], [3, 2, 1]])
        s = Sparse(pred, torch.tensor([[0.0, -lv, -2 * lv], [-lv, shift, 0.0], [0.0, -3 * lv, -lv], [-lv, 0.0, -2 * lv]], dtype=F64))
    ans = assert_matches_oracle(e, s, init, None, final, backend="numba")
    assert np.isfinite(ans.log_z).all()
    assert_backends_agree(e, s, init, None, final)


@pytest.mark.parametrize("storage,layout", STATIC)
def test_thousands_of_nats_vs_bruteforce(storage, layout):
    g = torch.Generator().manual_seed(11)
    b, t, k, w = 3, 5, 4, 2
    for _ in range(3):
        e = hostile_emissions(g, (b, t, k))
        s = make_structure(storage, layout, g, b, t, k, w)
        init = torch.randn(k, dtype=F64, generator=g) * 700
        final = torch.randn(b, k, dtype=F64, generator=g) * 700
        assert_matches_oracle(e, s, init, torch.tensor([5, 3, 4]), final)


# ---------------------------------------------------------------------------------------
# 2. the exact fallback: underflowing sums, a dominant path that dies, infeasible items
# ---------------------------------------------------------------------------------------


def _dying_banded(t=6):
    """Banded K = 4, W = 2 (stay, next). State 0 is thousands of nats above the rest until the
    last frame, where it and state 1 are impossible: the only survivors went through the
    -800 / -1500 moves into states many levels below."""
    k = 4
    e = torch.zeros(1, t, k, dtype=F64)
    e[0, :, 1] = -2000.0
    e[0, :, 2] = -3500.0
    e[0, :, 3] = -5000.0
    e[0, -1, :2] = NINF
    lp = torch.tensor([[0.0, -800.0], [0.0, -1500.0], [-800.0, -1500.0], [0.0, 0.0]], dtype=F64)
    init = torch.tensor([0.0, -900.0, NINF, NINF], dtype=F64)
    return e, Banded(lp), init


def test_dominant_path_dies_banded_vs_bruteforce():
    e, s, init = _dying_banded()
    ans = assert_matches_oracle(e, s, init)
    assert np.isfinite(ans.log_z).all() and ans.log_z[0] < -5000
    assert_backends_agree(e, s, init)


def test_dominant_path_dies_sparse_vs_bruteforce():
    # a cycle 0 -> 0 (best), 0 -> 1 -> 2 -> 0 and 2 -> 3, with -800 / -1500 moves; the best state
    # dies at frame 3 and again at the last frame, a state ~4000 nats below is the only survivor
    k, t = 4, 6
    pred = torch.tensor([[0, 2, -1], [0, 1, -1], [1, 2, -1], [2, 3, 3]])
    lp = torch.tensor([[0.0, -800.0, 5.0], [-1500.0, 0.0, 1.0], [-800.0, 0.0, 0.0], [-1500.0, 0.0, -800.0]], dtype=F64)
    e = torch.zeros(1, t, k, dtype=F64)
    e[0, :, 1:] = torch.tensor([-1000.0, -2500.0, -4000.0], dtype=F64)
    e[0, 3, 0] = NINF
    e[0, -1, :3] = NINF
    init = torch.tensor([0.0, NINF, -600.0, NINF], dtype=F64)
    s = Sparse(pred, lp)
    ans = assert_matches_oracle(e, s, init)
    assert np.isfinite(ans.log_z).all()
    assert_backends_agree(e, s, init)


@pytest.mark.parametrize("storage", ["banded", "sparse"])
def test_underflowing_sums_and_dying_paths_numba_equals_torch(storage):
    # larger problems: moves of 0 / -800 / -1500, emissions thousands of nats apart, and the
    # best states killed (-inf emission for every state the best paths can be in) every 7 frames
    g = torch.Generator().manual_seed(5)
    b, t, k, w = 3, 60, 24, 3
    e = -torch.arange(k, dtype=F64) * 450.0 + torch.randn(b, t, k, dtype=F64, generator=g)
    e = e.contiguous()
    for f in range(6, t, 7):
        top = (f // 7) % (k - 8)
        e[:, f, : top + 6] = NINF  # every state at or below the current front dies
    values = torch.tensor([0.0, -800.0, -1500.0], dtype=F64)
    lp = values[torch.randint(0, 3, (k, w), generator=g)]
    lp[:, 0] = values[torch.arange(k) % 3]
    if storage == "banded":
        s = Banded(lp)
    else:
        pred = (torch.arange(k)[:, None] - torch.arange(w)[None, :]).clamp(min=-1)
        pred[pred < 0] = -1
        pred[:, -1] = torch.where(torch.arange(k) >= 5, torch.arange(k) - 5, -1)  # long jumps forward
        s = Sparse(pred, lp)
    init = torch.full((k,), -300.0, dtype=F64)
    init[0] = 0.0
    lengths = torch.tensor([t, t - 13, t - 30])
    ref = assert_backends_agree(e, s, init, lengths, None)
    assert torch.isfinite(ref["log_z"]).all()
    assert (ref["log_z"] < -5000).all()  # the survivors are far below the initial best path


def test_exact_fallback_needed_by_the_fast_path():
    # a state whose every source is many levels below the best of the frame, reached only through
    # moves of -800 / -1500: its exp-space sum underflows and must be redone exactly
    k, t = 3, 4
    e = torch.tensor([[[0.0, -2400.0, -4900.0]] * t], dtype=F64)
    lp = torch.tensor([[-1500.0, -800.0], [-800.0, -1500.0], [0.0, 0.0]], dtype=F64)
    init = torch.tensor([0.0, -1200.0, NINF], dtype=F64)
    for final in (None, torch.tensor([NINF, NINF, 0.0], dtype=F64), torch.tensor([NINF, 0.0, NINF], dtype=F64)):
        ans = assert_matches_oracle(e, Banded(lp), init, None, final)
        assert np.isfinite(ans.log_z).all()
        assert_backends_agree(e, Banded(lp), init, None, final)


@pytest.mark.parametrize("storage", ["banded", "sparse"])
def test_partial_loss_redone_exactly(storage):
    # a sum that does not underflow but lost its dominant term: into state 1 (forward) and out of
    # state 0 (backward), the source on the top level has a move of -400 (factor e^-400, a normal
    # float64), the other source lies 301 nats lower, two levels down (dropped by the fast sum),
    # with a move of 0: logaddexp(-400, -301) = -301 + 1e-43, the fast sum alone gives -400
    k, t = 2, 2
    e = torch.tensor([[[0.0, 0.0], [-301.0, 0.0]]], dtype=F64)
    init = torch.tensor([0.0, -301.0], dtype=F64)
    if storage == "banded":
        s = Banded(torch.tensor([[0.0, -400.0], [0.0, 7.0]], dtype=F64))  # [1, 1] (1 -> 2) does not exist
    else:
        s = Sparse(torch.tensor([[0, -1], [1, 0]]), torch.tensor([[0.0, 5.0], [0.0, -400.0]], dtype=F64))
    ans = assert_matches_oracle(e, s, init)
    assert ans.posteriors[0, 1, 1] == pytest.approx(0.5, abs=1e-12)  # (0, 0) and (1, 1) score -301, (0, 1) -400
    assert_backends_agree(e, s, init)
    # the same inside a longer, batched problem (every frame repeats the pattern)
    eb = torch.cat([e, e, e], 1).expand(3, -1, -1).contiguous()
    eb[1] -= 1000.0 * torch.arange(k, dtype=F64)
    assert_backends_agree(eb, s, init, torch.tensor([6, 5, 2]))


def _huge_gap_problem(storage, where, big, dtype=F64):
    """A left-to-right chain (stay / next) whose states 1.. start (``init``), emit at frame 0
    (``emission``) or end (``final``) ``big`` nats below state 0: finite, but far below."""
    k, t = 4, 4
    e = torch.zeros(1, t, k, dtype=dtype)
    init = torch.zeros(k, dtype=dtype)
    final = torch.zeros(k, dtype=dtype)
    if where == "init":
        init[1:] = -big
    elif where == "emission":
        e[0, 0, 1:] = -big
    else:
        final[1:] = -big
    if storage == "banded":
        s = Banded(torch.zeros(k, 2, dtype=dtype))
    else:
        s = Sparse(torch.tensor([[0, -1], [1, 0], [2, 1], [3, 2]]), torch.zeros(k, 2, dtype=dtype))
    return e, s, init, final


@pytest.mark.parametrize("where", ["init", "emission", "final"])
@pytest.mark.parametrize("storage", ["banded", "sparse"])
@pytest.mark.parametrize("big", [1e9, 1e16, -float(torch.finfo(torch.float32).min)])
def test_huge_finite_gaps_numba_equals_torch(storage, where, big):
    # "impossible" written as a large finite number (-1e9, the float32 minimum) instead of -inf
    e, s, init, final = _huge_gap_problem(storage, where, big)
    ref = assert_backends_agree(e, s, init, None, final)
    assert torch.isfinite(ref["log_z"]).all()


@pytest.mark.parametrize("where", ["init", "emission", "final"])
@pytest.mark.parametrize("storage", ["banded", "sparse"])
@pytest.mark.parametrize("big", [1e20, 1e25])
def test_gaps_beyond_1e19_nats_numba_equals_torch(storage, where, big):
    # beyond ~3e18 nats, LEVEL * floor(d / LEVEL) is no longer within LEVEL of d: such sources must be
    # left out of the fast path (its mantissa would overflow) and their sums recomputed exactly
    e, s, init, final = _huge_gap_problem(storage, where, big)
    ref = assert_backends_agree(e, s, init, None, final)
    assert torch.isfinite(ref["log_z"]).all()


@pytest.mark.parametrize("storage,layout", STATIC + [("banded", "time_varying"), ("sparse", "time_varying")])
def test_infeasible_item_next_to_feasible(storage, layout):
    g = torch.Generator().manual_seed(3)
    b, t, k, w = 4, 9, 5, 2
    e = hostile_emissions(g, (b, t, k))
    s = make_structure(storage, layout, g, b, t, k, w, hostile=False)
    init = torch.zeros(b, k, dtype=F64)
    final = torch.zeros(b, k, dtype=F64)
    e[1, 4] = NINF  # item 1: a frame no state can emit
    final[2] = NINF  # item 2: no state may end
    lengths = torch.tensor([t, t, t - 2, t - 4])
    ref = assert_backends_agree(e, s, init, lengths, final)
    for name in ("log_z", "marginals.log_z"):
        assert torch.isneginf(ref[name][1:3]).all() and torch.isfinite(ref[name][[0, 3]]).all()
    numba_post = kernel.posteriors(e, s, init, lengths, final, backend="numba")
    numba_xi = kernel.expected_transitions(e, s, init, lengths, final, backend="numba")
    assert (numba_post[1:3] == 0).all() and (numba_xi[1:3] == 0).all()
    assert torch.allclose(numba_post[0].sum(-1), torch.ones(t, dtype=F64), rtol=0, atol=1e-12)
    # the batch equals its items: the infeasible neighbours change nothing for the feasible ones
    for i in (0, 3):
        lp_i = s.log_probs if layout == "shared" else s.log_probs[i : i + 1]
        s_i = Banded(lp_i) if storage == "banded" else Sparse(s.predecessors if layout == "shared" else s.predecessors[i : i + 1], lp_i)
        n = int(lengths[i])
        if layout == "time_varying":
            s_i = rebuilt(s_i, s_i.log_probs[:, : n - 1])
        lz_i = kernel.log_partition(e[i : i + 1, :n], s_i, init[i : i + 1], None, final[i : i + 1], backend="numba")
        close(lz_i, ref["log_z"][i : i + 1], f"item {i} alone", rtol=1e-12)


@pytest.mark.parametrize("storage", ["banded", "sparse"])
def test_infeasible_by_structure_vs_bruteforce(storage):
    # infeasible because no move reaches the only state allowed to end (not because of -inf emissions)
    k, t = 3, 4
    e = torch.zeros(2, t, k, dtype=F64)
    e[1] = -1000.0 * torch.arange(k, dtype=F64)
    if storage == "banded":
        s = Banded(torch.tensor([[0.0, NINF], [0.0, 0.0], [0.0, 0.0]], dtype=F64))
    else:
        s = Sparse(torch.tensor([[0, -1], [1, 2], [2, 1]]), torch.tensor([[0.0, 5.0], [0.0, -800.0], [0.0, 0.0]], dtype=F64))
    init = torch.tensor([[0.0, NINF, NINF], [0.0, -900.0, NINF]], dtype=F64)
    final = torch.tensor([[NINF, NINF, 0.0], [NINF, NINF, 0.0]], dtype=F64)
    ans = assert_matches_oracle(e, s, init, None, final)
    assert np.isneginf(ans.log_z[0]) and np.isfinite(ans.log_z[1])
    assert_backends_agree(e, s, init, None, final)


@pytest.mark.parametrize("layout", ["shared", "batched", "time_varying"])
def test_sparse_states_without_edges(layout):
    # a state nothing enters (all slots unused), one that leads nowhere, a state whose three slots
    # are the same source (parallel edges): hostile scores, numba == torch, and brute force (tiny)
    g = torch.Generator().manual_seed(12)
    pred = torch.tensor([[0, 1, -1], [-1, -1, -1], [0, 1, 2], [2, 2, -1], [3, 0, -1], [4, 4, 4]])
    k, p = pred.shape
    for b, t in ((3, 12), (2, 4)):
        lp = banded_table(g, layout_shape(layout, b, t, k, p)) * 100
        pr = pred if layout == "shared" else pred.expand(b, k, p).clone()
        s = Sparse(pr, lp)
        e = hostile_emissions(g, (b, t, k))
        init = torch.randn(k, dtype=F64, generator=g) * 300
        final = torch.randn(b, k, dtype=F64, generator=g) * 300
        lengths = torch.tensor([t, t - 1, 2][:b])
        ref = assert_backends_agree(e, s, init, lengths, final)
        assert (ref["posteriors"][:, 1:, 1] == 0).all()  # nothing enters state 1
        if t <= 4:
            assert_matches_oracle(e, s, init, lengths, final)


# ---------------------------------------------------------------------------------------
# 3. time-varying tables (exact-only mode)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", [False, True])
@pytest.mark.parametrize("storage", ["banded", "sparse"])
def test_time_varying_numba_equals_torch(storage, hostile):
    g = torch.Generator().manual_seed(21 + hostile)
    b, t, k, w = 4, 25, 10, 3
    e = hostile_emissions(g, (b, t, k)) if hostile else torch.randn(b, t, k, dtype=F64, generator=g)
    s = make_structure(storage, "time_varying", g, b, t, k, w, hostile=hostile)
    init = torch.randn(b, k, dtype=F64, generator=g)
    final = torch.randn(k, dtype=F64, generator=g)
    final[::3] = NINF
    lengths = torch.tensor([t, 2, t - 11, 1])
    # garbage (large, finite) past each length, in the emissions and in the unused steps
    for i, n in enumerate(lengths.tolist()):
        e[i, n:] = 1e3
        s.log_probs.data[i, n - 1 :] = 1e3
    ref = assert_backends_agree(e, s, init, lengths, final)
    assert torch.isfinite(ref["log_z"]).sum() >= 3


@pytest.mark.parametrize("storage", ["banded", "sparse"])
@pytest.mark.parametrize("frames", [2, 3, 5])
def test_time_varying_vs_bruteforce(storage, frames):
    # frames = 2 is a time-varying table with a single step (S = 1): it takes the static fast path
    g = torch.Generator().manual_seed(frames)
    b, k, w = 3, 4, 3
    for _ in range(3):
        e = hostile_emissions(g, (b, frames, k))
        s = make_structure(storage, "time_varying", g, b, frames, k, w)
        init = torch.randn(k, dtype=F64, generator=g) * 400
        final = torch.randn(b, k, dtype=F64, generator=g) * 400
        lengths = torch.tensor([frames, 1, max(frames - 1, 1)])
        assert_matches_oracle(e, s, init, lengths, final)


def test_time_varying_single_frame():
    # (B, 0, K, W) tables: only the first frame counts
    g = torch.Generator().manual_seed(0)
    e = torch.randn(2, 1, 4, dtype=F64, generator=g) * 1e3
    init = torch.randn(4, dtype=F64, generator=g)
    for s in (Banded(torch.zeros(2, 0, 4, 2, dtype=F64)), Sparse(torch.tensor([[0, 1]] * 4), torch.zeros(2, 0, 4, 2, dtype=F64))):
        assert_matches_oracle(e, s, init)
        assert_backends_agree(e, s, init)


# ---------------------------------------------------------------------------------------
# 4. float32, CTC-like
# ---------------------------------------------------------------------------------------


def _ctc_problem(dtype, seed=0, b=3, t=200, labels=30, vocab=12):
    rng = np.random.default_rng(seed)
    target = torch.from_numpy(rng.integers(1, vocab, size=(b, labels)))
    target[:, 5] = target[:, 4]  # a repeated label: no skip between them
    k = 2 * labels + 1
    ext = torch.zeros(b, k, dtype=torch.long)
    ext[:, 1::2] = target
    logits = torch.from_numpy(rng.normal(0.0, 3.0, size=(b, t, vocab)))
    logp = torch.log_softmax(logits, -1)  # float64
    e = logp.gather(-1, ext[:, None, :].expand(b, t, k))
    lp = torch.zeros(b, k, 3, dtype=F64)
    skip_ok = torch.zeros(b, k, dtype=torch.bool)
    skip_ok[:, 1 : k - 2] = (ext[:, 1 : k - 2] != 0) & (ext[:, 3:k] != ext[:, 1 : k - 2])
    lp[..., 2] = torch.where(skip_ok, 0.0, NINF)
    init = torch.full((k,), NINF, dtype=F64)
    init[:2] = 0.0
    final = torch.full((k,), NINF, dtype=F64)
    final[-2:] = 0.0
    lengths = torch.tensor([t, t - 37, t - 80][:b])
    return e.to(dtype), Banded(lp.to(dtype)), init.to(dtype), final.to(dtype), lengths, logp, target


def test_ctc_float64_equals_ctc_loss():
    e, s, init, final, lengths, logp, target = _ctc_problem(F64)
    b, labels = target.shape
    expected = -F.ctc_loss(logp.transpose(0, 1), target, lengths, torch.full((b,), labels), blank=0, reduction="none")
    for backend in ("numba", "torch"):
        lz = kernel.log_partition(e, s, init, lengths, final, backend=backend)
        close(lz, expected, f"{backend}: log Z vs ctc_loss", rtol=1e-10, atol=1e-9)


def test_ctc_float32_numba_vs_torch():
    e32, s32, init32, final32, lengths, *_ = _ctc_problem(torch.float32)
    e64, s64, init64, final64, *_ = _ctc_problem(F64)
    ref64 = kernel.log_partition(e64, s64, init64, lengths, final64, backend="torch")
    post64 = kernel.posteriors(e64, s64, init64, lengths, final64, backend="torch")
    lz_n = kernel.log_partition(e32, s32, init32, lengths, final32, backend="numba")
    lz_t = kernel.log_partition(e32, s32, init32, lengths, final32, backend="torch")
    assert lz_n.dtype == torch.float32 and torch.isfinite(lz_n).all()
    close(lz_n, lz_t, "float32 log Z: numba vs torch", rtol=1e-5, atol=0)
    # the float32 result is within float32 accuracy of the float64 reference
    err_n = ((lz_n.double() - ref64).abs() / ref64.abs()).max().item()
    err_t = ((lz_t.double() - ref64).abs() / ref64.abs()).max().item()
    assert err_n < 5e-7, f"numba float32 log Z off the float64 reference by {err_n:.2e} (torch float32: {err_t:.2e})"
    post_n = kernel.posteriors(e32, s32, init32, lengths, final32, backend="numba")
    post_t = kernel.posteriors(e32, s32, init32, lengths, final32, backend="torch")
    assert post_n.dtype == torch.float32
    close(post_n, post_t, "float32 posteriors: numba vs torch", rtol=0, atol=5e-5)
    close(post_n, post64, "float32 numba posteriors vs float64", rtol=0, atol=5e-5)
    xi_n = kernel.expected_transitions(e32, s32, init32, lengths, final32, backend="numba")
    xi_64 = kernel.expected_transitions(e64, s64, init64, lengths, final64, backend="torch")
    close(xi_n, xi_64, "float32 numba expected transitions vs float64", rtol=1e-4, atol=2e-4)
    # gradient w.r.t. float32 emissions is the posterior
    x = e32.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(kernel.log_partition(x, s32, init32, lengths, final32, backend="numba").sum(), x)
    close(g, post64, "float32 numba d logZ / d emissions vs float64 posteriors", rtol=0, atol=5e-5)


@pytest.mark.parametrize("storage", ["banded", "sparse"])
def test_float32_thousands_of_nats(storage):
    # float32 scores spanning thousands of nats: the scaled numbers are float64 whatever the input
    g = torch.Generator().manual_seed(9)
    b, t, k, w = 2, 40, 9, 3
    e = hostile_emissions(g, (b, t, k))
    s = make_structure(storage, "batched", g, b, t, k, w)
    init = torch.zeros(k, dtype=F64)
    ref = kernel.log_partition(e, s, init, backend="torch")
    s32 = rebuilt(s, s.log_probs.float())
    lz_n = kernel.log_partition(e.float(), s32, init.float(), backend="numba")
    lz_t = kernel.log_partition(e.float(), s32, init.float(), backend="torch")
    fin = torch.isfinite(ref)
    assert fin.any() and torch.equal(fin, torch.isfinite(lz_n))
    close(lz_n[fin], lz_t[fin], "float32 numba vs torch", rtol=1e-5, atol=0)
    assert ((lz_n.double() - ref).abs()[fin] / ref.abs()[fin]).max() < 1e-6
    post_n = kernel.posteriors(e.float(), s32, init.float(), backend="numba")
    post_64 = kernel.posteriors(e, s, init, backend="torch")
    close(post_n, post_64, "float32 numba posteriors vs float64 torch", rtol=0, atol=5e-4)


# ---------------------------------------------------------------------------------------
# 5. dense Viterbi (source-major max-product)
# ---------------------------------------------------------------------------------------


def viterbi_both(e, s, init, lengths=None, final=None):
    pt, st = kernel.viterbi(e, s, init, lengths, final, backend="torch")
    pn, sn = kernel.viterbi(e, s, init, lengths, final, backend="numba")
    assert pn.dtype == torch.int64 and pn.shape == pt.shape
    assert torch.equal(pn, pt), f"paths differ:\nnumba {pn}\ntorch {pt}"
    assert torch.equal(torch.isneginf(sn), torch.isneginf(st))
    fin = torch.isfinite(st)
    assert torch.equal(sn[fin], st[fin]), f"scores differ: numba {sn}, torch {st}"  # the same adds: bit-equal
    return pt, st


def path_scores(e, trans, init, paths, final=None):
    """Scores of given paths under a dense (K, K) / (B, K, K) transition matrix (independent of the kernel)."""
    out = []
    for b in range(e.shape[0]):
        a = trans if trans.ndim == 2 else trans[b]
        p = paths[b][paths[b] >= 0]
        sc = init[p[0]] + e[b, 0, p[0]]
        for u in range(1, len(p)):
            sc = sc + a[p[u - 1], p[u]] + e[b, u, p[u]]
        if final is not None:
            sc = sc + final[p[-1]]
        out.append(float(sc))
    return out


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dense_viterbi_all_ties_take_the_lowest_source(dtype):
    b, t, k = 2, 7, 6
    e = torch.zeros(b, t, k, dtype=dtype)
    s = Dense(torch.full((k, k), -math.log(k), dtype=dtype))
    paths, scores = viterbi_both(e, s, torch.zeros(k, dtype=dtype), torch.tensor([t, 3]))
    expected = torch.full((b, t), -1, dtype=torch.long)
    expected[0] = 0
    expected[1, :3] = 0
    assert torch.equal(paths, expected)  # every step's tie goes to source 0, the last state to 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dense_viterbi_integer_ties(seed):
    # integer-valued scores: many exact ties between sources at every step
    g = torch.Generator().manual_seed(seed)
    b, t, k = 4, 40, 9
    e = torch.randint(-2, 1, (b, t, k), generator=g).double()
    trans = torch.randint(-2, 1, (b, k, k), generator=g).double()
    init = torch.randint(-1, 1, (k,), generator=g).double()
    final = torch.randint(-1, 1, (k,), generator=g).double()
    lengths = torch.tensor([t, t - 5, 1, 2])
    paths, scores = viterbi_both(e, Dense(trans), init, lengths, final)
    close(torch.tensor(path_scores(e, trans, init, paths, final), dtype=F64), scores, "score of the returned path", rtol=0, atol=0)
    # float32 and shared / time-varying matrices as well
    viterbi_both(e.float(), Dense(trans[0].float()), init.float(), lengths, final.float())
    tv = torch.randint(-1, 1, (b, t - 1, k, k), generator=g).double()
    viterbi_both(e, Dense(tv), init, lengths, final)


def test_dense_viterbi_ties_vs_bruteforce():
    # tiny integer problems: the path is a best path (oracle) and the torch path
    g = torch.Generator().manual_seed(4)
    for _ in range(10):
        e = torch.randint(-1, 1, (2, 5, 3), generator=g).double()
        trans = torch.randint(-1, 1, (3, 3), generator=g).double()
        init = torch.zeros(3, dtype=F64)
        paths, scores = viterbi_both(e, Dense(trans), init)
        ans = oracle_problem(e, Dense(trans), init).solve()
        close(scores, ans.best_score, "Viterbi score vs brute force", rtol=0, atol=1e-12)
        for i in range(2):
            assert tuple(paths[i].tolist()) in ans.items[i].best_paths


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dense_viterbi_k256(dtype):
    g = torch.Generator().manual_seed(256)
    b, t, k = 2, 30, 256
    e = torch.randn(b, t, k, dtype=F64, generator=g) * 3
    trans = torch.log_softmax(torch.randn(k, k, dtype=F64, generator=g) * 2, -1)
    init = torch.log_softmax(torch.randn(k, dtype=F64, generator=g), -1)
    paths, scores = viterbi_both(e.to(dtype), Dense(trans.to(dtype)), init.to(dtype), torch.tensor([t, t - 11]))
    assert (paths[0] >= 0).all() and (paths[1, t - 11 :] == -1).all()
    close(torch.tensor(path_scores(e, trans, init, paths), dtype=F64), scores.double(), "K=256 path score", rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)


def test_dense_viterbi_unreachable_states():
    # -inf rows (states with no way out), -inf columns, -inf init entries (state 0 among them:
    # the max-product starts its running best from source 0)
    g = torch.Generator().manual_seed(8)
    b, t, k = 3, 12, 7
    e = torch.randn(b, t, k, dtype=F64, generator=g)
    trans = torch.randn(k, k, dtype=F64, generator=g)
    trans[2] = NINF  # state 2 leads nowhere
    trans[:, 0] = NINF  # nothing enters state 0
    trans[5, :] = NINF
    trans[5, 6] = 0.0
    init = torch.randn(k, dtype=F64, generator=g)
    init[[0, 3]] = NINF
    for init_ in (init, torch.tensor([NINF, 0.0, NINF, NINF, NINF, 0.0, NINF], dtype=F64)):
        paths, scores = viterbi_both(e, Dense(trans), init_, torch.tensor([t, 5, 1]))
        assert torch.isfinite(scores).all()
        assert ((paths[:, 1:] != 0)).all()  # nothing enters state 0
        used = paths[:, :-1] >= 0
        assert not ((paths[:, :-1] == 2) & used & (paths[:, 1:] >= 0)).any()  # state 2 is never left
    # integer ties with the same -inf pattern
    ti = torch.randint(-1, 1, (k, k), generator=g).double().masked_fill(torch.isneginf(trans), NINF)
    viterbi_both(torch.randint(-1, 1, (b, t, k), generator=g).double(), Dense(ti), torch.zeros(k, dtype=F64).masked_fill(torch.isneginf(init), NINF))


def test_dense_viterbi_infeasible():
    b, t, k = 4, 6, 4
    e = torch.zeros(b, t, k, dtype=F64)
    trans = torch.zeros(k, k, dtype=F64)
    trans[:, 3] = NINF  # nothing enters state 3
    init = torch.tensor([0.0, 0.0, 0.0, NINF], dtype=F64)
    final = torch.tensor([NINF, NINF, NINF, 0.0], dtype=F64)
    lengths = torch.tensor([t, 3, 1, 2])
    e[3, 1] = NINF
    pt, st = kernel.viterbi(e, Dense(trans), init, lengths, final, backend="torch")
    pn, sn = kernel.viterbi(e, Dense(trans), init, lengths, final, backend="numba")
    for paths, scores in ((pt, st), (pn, sn)):
        assert torch.isneginf(scores).all()
        assert (paths == -1).all()
    # the same batch with one feasible item in it (final allows state 0)
    final2 = torch.stack([final, torch.zeros(k, dtype=F64), final, final])
    paths, scores = viterbi_both(e, Dense(trans), init, lengths, final2)
    assert torch.isfinite(scores[1]) and torch.isneginf(scores[[0, 2, 3]]).all()
    assert (paths[[0, 2, 3]] == -1).all() and (paths[1, :3] == 0).all() and (paths[1, 3:] == -1).all()


@pytest.mark.parametrize("layout", ["shared", "batched", "time_varying"])
@pytest.mark.parametrize("storage", ["banded", "sparse"])
def test_window_and_list_viterbi_ties(storage, layout):
    # banded (slot-major max over the window) and sparse Viterbi: integer scores tie often; ties go
    # to the first slot (banded: the state itself, then j - 1, ...), as on the PyTorch path
    g = torch.Generator().manual_seed(17)
    b, t, k, w = 4, 30, 9, 3
    for trial in range(3):
        e = torch.randint(-2, 1, (b, t, k), generator=g).double()
        lp = torch.randint(-2, 1, layout_shape(layout, b, t, k, w), generator=g).double()
        lp[torch.rand(lp.shape, generator=g) < 0.1] = NINF
        if storage == "banded":
            s = Banded(lp)
        else:
            s = Sparse(sparse_graph(g, k, w, None if layout == "shared" else b), lp)
        init = torch.zeros(k, dtype=F64)
        init[k // 2 :] = NINF if trial else 0.0
        final = torch.randint(-1, 1, (k,), generator=g).double()
        lengths = torch.tensor([t, t - 4, 1, 2])
        paths, scores = viterbi_both(e, s, init, lengths, final)
        viterbi_both(e.float(), rebuilt(s, lp.float()), init.float(), lengths, final.float())
        # and on a tiny shape: a best path of the brute force
        ans = oracle_problem(e[:, :4], rebuilt(s, lp[:, :3] if layout == "time_varying" else lp), init, None, final).solve()
        p4, s4 = viterbi_both(e[:, :4], rebuilt(s, lp[:, :3] if layout == "time_varying" else lp), init, None, final)
        close(s4, ans.best_score, "Viterbi score vs brute force", rtol=0, atol=1e-12)
        for i in range(b):
            if np.isfinite(ans.best_score[i]):
                assert tuple(p4[i].tolist()) in ans.items[i].best_paths
            else:
                assert (p4[i] == -1).all()


def test_banded_viterbi_all_ties_take_the_state_itself():
    # every move and emission equal: the first slot (stay) wins every tie, the last state the first one
    b, t, k = 2, 6, 5
    s = Banded(torch.zeros(k, 3, dtype=F64))
    paths, _ = viterbi_both(torch.zeros(b, t, k, dtype=F64), s, torch.zeros(k, dtype=F64), torch.tensor([t, 2]))
    assert (paths[0] == 0).all() and (paths[1, :2] == 0).all() and (paths[1, 2:] == -1).all()
    # from state 3 only (init): it stays, ties between stay and next go to stay
    init = torch.full((k,), NINF, dtype=F64)
    init[3] = 0.0
    paths, _ = viterbi_both(torch.zeros(1, t, k, dtype=F64), s, init)
    assert (paths[0] == 3).all()


# ---------------------------------------------------------------------------------------
# 6. the PyTorch path: variable vs equal lengths (padded batch == items one by one)
# ---------------------------------------------------------------------------------------


def _item_structure(s, i, n):
    lp = s.log_probs
    if lp.ndim == 2:
        item_lp = lp
    elif lp.ndim == 3:
        item_lp = lp[i : i + 1]
    else:
        item_lp = lp[i : i + 1, : n - 1]
    if isinstance(s, Sparse):
        pred = s.predecessors if s.predecessors.ndim == 2 else s.predecessors[i : i + 1]
        return Sparse(pred, item_lp)
    return type(s)(item_lp)


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize(
    "storage,layout",
    [("dense", "shared"), ("dense", "batched"), ("dense", "time_varying"), ("banded", "shared"),
     ("banded", "time_varying"), ("sparse", "batched"), ("sparse", "time_varying")],
)
@pytest.mark.parametrize("ragged", [True, False])
def test_padded_batch_equals_items(storage, layout, ragged, backend):
    g = torch.Generator().manual_seed(31)
    b, t, k, w = 4, 14, 6, 3
    w = k if storage == "dense" else w
    e = torch.randn(b, t, k, dtype=F64, generator=g) * 4
    lp = torch.randn(layout_shape(layout, b, t, k, w), dtype=F64, generator=g)
    if storage == "sparse":
        s = Sparse(sparse_graph(g, k, w, b), lp)
    else:
        s = Dense(lp) if storage == "dense" else Banded(lp)
    init = torch.randn(b, k, dtype=F64, generator=g)
    final = torch.randn(b, k, dtype=F64, generator=g)
    lengths = torch.tensor([t, 1, 9, t - 1]) if ragged else torch.full((b,), t)
    # garbage past each length: large finite values, not NaN
    for i, n in enumerate(lengths.tolist()):
        e[i, n:] = 1e4 * (1 + torch.rand(t - n, k, generator=g, dtype=F64))
        if layout == "time_varying":
            s.log_probs.data[i, n - 1 :] = 5e3
    batch = outputs(e, s, init, lengths if ragged else None, final, backend)
    paths, scores = kernel.viterbi(e, s, init, lengths, final, backend=backend)
    for i, n in enumerate(lengths.tolist()):
        s_i = _item_structure(s, i, n)
        item = outputs(e[i : i + 1, :n], s_i, init[i : i + 1], None, final[i : i + 1], backend)
        close(batch["log_z"][i : i + 1], item["log_z"], f"item {i}: log Z", rtol=1e-12)
        close(batch["posteriors"][i : i + 1, :n], item["posteriors"], f"item {i}: posteriors")
        assert (batch["posteriors"][i, n:] == 0).all()
        close(batch["grad.emissions"][i : i + 1, :n], item["grad.emissions"], f"item {i}: d/d emissions")
        assert (batch["grad.emissions"][i, n:] == 0).all()
        close(batch["grad.init"][i : i + 1], item["grad.init"], f"item {i}: d/d init")
        close(batch["grad.final"][i : i + 1], item["grad.final"], f"item {i}: d/d final")
        xi_b, xi_i = batch["expected_transitions"][i : i + 1], item["expected_transitions"]
        if layout == "time_varying":
            assert (xi_b[0, n - 1 :] == 0).all()
            xi_b = xi_b[:, : n - 1]
        close(xi_b, xi_i, f"item {i}: expected transitions")
        if layout != "shared":
            gt_b = batch["grad.transitions"][i : i + 1]
            gt_b = gt_b[:, : n - 1] if layout == "time_varying" else gt_b
            close(gt_b, item["grad.transitions"], f"item {i}: d/d transitions")
        p_i, s_i_score = kernel.viterbi(e[i : i + 1, :n], s_i, init[i : i + 1], None, final[i : i + 1], backend=backend)
        assert torch.equal(paths[i, :n], p_i[0]) and (paths[i, n:] == -1).all()
        close(scores[i : i + 1], s_i_score, f"item {i}: Viterbi score", rtol=1e-12)
    if layout == "shared":  # a shared table's gradient is the sum over the items
        total = sum(
            outputs(e[i : i + 1, :n], _item_structure(s, i, n), init[i : i + 1], None, final[i : i + 1], backend)["grad.transitions"]
            for i, n in enumerate(lengths.tolist())
        )
        close(batch["grad.transitions"], total, "shared d/d transitions == sum over items")
