"""Semi-Markov kernel: the compiled loops (``backend="numba"``) against the PyTorch loops
(brute force checks both backends in test_kernel_segment.py).

The PyTorch loops are the exact reference (exact logsumexp everywhere); the compiled loops cache
exp-domain windows that must rescale and fall back to exact sums on extreme scores, so those get
their own problems (emissions of -1e4 next to 0, durations and transitions hundreds of nats apart).
"""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("numba")

from pytorch_hmm.errors import HMMValueError  # noqa: E402
from pytorch_hmm.kernel import (  # noqa: E402
    semi_markov_log_partition,
    semi_markov_marginals,
    semi_markov_posteriors,
    semi_markov_viterbi,
)

NEG = -math.inf
FIELDS = ("log_z", "posteriors", "durations", "transitions", "init")


def _problem(seed, b, t, k, d, topology="ergodic", holes=False, extreme=False, dtype=torch.float64):
    """``(em, trans, dur, init, lengths, final)``; ``extreme``: scores far apart, so the compiled
    windows rescale and fall back to exact sums."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    em = randn(b, t, k)
    if extreme:
        em = em - 1e4 * (torch.rand(b, t, k, generator=g) < 0.5)
    dur = randn(k, d, scale=300.0 if extreme else 1.0)
    if topology == "left_to_right":
        trans = torch.full((k, k), NEG, dtype=torch.float64)
        trans[torch.arange(k - 1), torch.arange(1, k)] = 0.0
        init = torch.full((k,), NEG, dtype=torch.float64)
        init[0] = 0.0
        final = torch.full((k,), NEG, dtype=torch.float64)
        final[-1] = 0.0
    else:
        trans = randn(k, k, scale=50.0 if extreme else 1.0).fill_diagonal_(NEG)
        init, final = randn(k), randn(k)
    if holes:  # impossible emissions, durations, starts and ends
        em[torch.rand(b, t, k, generator=g) < 0.15] = NEG
        dur[torch.rand(k, d, generator=g) < 0.3] = NEG
        if topology != "left_to_right":
            init[torch.rand(k, generator=g) < 0.3] = NEG
            final[torch.rand(k, generator=g) < 0.3] = NEG
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    lengths[0] = t
    return tuple(x.to(dtype) for x in (em, trans, dur, init)) + (lengths, final.to(dtype))


def _tolerance(args) -> float:
    """Absolute tolerance in nats (and on probabilities): both paths round the cumulative sums,
    which reach ``max |cum|``, to ~1e-16 relative at every step."""
    em = args[0].double()
    return max(1e-12, 5e-13 * em.masked_fill(torch.isinf(em), 0.0).abs().sum(1).max().item())


def _assert_same(args, atol=None):
    """Marginals and Viterbi of the compiled loops equal those of the PyTorch loops."""
    ref, got = (semi_markov_marginals(*args, backend=be) for be in ("torch", "numba"))
    dtype = args[0].dtype
    atol = _tolerance(args) if atol is None else atol
    rtol = 1e-12 if dtype == torch.float64 else 1e-5
    for name in FIELDS:
        x, y = getattr(ref, name), getattr(got, name)
        assert y.dtype == dtype and y.shape == x.shape, name
        assert torch.equal(torch.isneginf(x), torch.isneginf(y)), name
        finite = torch.isfinite(x)
        torch.testing.assert_close(y[finite], x[finite], rtol=rtol, atol=atol if dtype == torch.float64 else 1e-6,
                                   msg=lambda m: f"{name}: {m}")
    (p_ref, s_ref, g_ref), (p_got, s_got, g_got) = (semi_markov_viterbi(*args, backend=be) for be in ("torch", "numba"))
    assert torch.equal(torch.isneginf(s_ref), torch.isneginf(s_got))
    torch.testing.assert_close(s_got, s_ref, rtol=1e-12 if dtype == torch.float64 else 1e-6, atol=0)
    assert g_got == g_ref
    assert p_got.dtype == torch.int64 and torch.equal(p_got, p_ref)
    return got


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("topology", ["ergodic", "left_to_right"])
@pytest.mark.parametrize("holes", [False, True])
def test_matches_torch(dtype, topology, holes):
    for seed, (b, t, k, d) in enumerate([(3, 40, 4, 7), (2, 25, 5, 12), (4, 60, 3, 30), (1, 9, 2, 3)]):
        _assert_same(_problem(seed, b, t, k, d, topology, holes, dtype=dtype))


@pytest.mark.parametrize("topology", ["ergodic", "left_to_right"])
@pytest.mark.parametrize("holes", [False, True])
def test_matches_torch_on_extreme_scores(topology, holes):
    for seed in range(3):
        _assert_same(_problem(seed, 3, 150, 5, 25, topology, holes, extreme=True))


def test_matches_torch_on_long_left_to_right_chains():
    """Poisson-shaped durations and acoustic-like emissions (the benchmark's workload, smaller)."""
    g = torch.Generator().manual_seed(0)
    b, t, k, d = 3, 400, 12, 50
    em = torch.randn(b, t, k, generator=g, dtype=torch.float64) * 3 - 10
    steps = torch.arange(1, d + 1, dtype=torch.float64)
    rate = torch.rand(k, 1, generator=g, dtype=torch.float64) * t / k * 0.8 + 1
    dur = torch.log_softmax(steps * torch.log(rate) - rate - torch.lgamma(steps + 1), -1)
    _, trans, _, init, _, final = _problem(0, 1, 1, k, 1, "left_to_right")
    _assert_same((em, trans, dur, init, torch.tensor([400, 321, 150]), final))


def test_infeasible_sequences():
    em, trans, dur, init, _, final = _problem(5, 3, 12, 3, 4)
    em[1, 6] = NEG  # no state can emit frame 6
    init[:] = torch.tensor([0.0, NEG, NEG])
    dur[0] = NEG  # ... and the only first state has no duration: nothing is feasible
    em[2, 3:] = 0.0
    got = _assert_same((em, trans, dur, init, torch.tensor([12, 12, 3]), final), atol=1e-12)
    assert (got.log_z == NEG).all() and (got.posteriors == 0).all() and (got.durations == 0).all()
    _, _, segments = semi_markov_viterbi(em, trans, dur, init, None, final, backend="numba")
    assert segments == [[], [], []]


def test_some_infeasible_sequences_in_a_batch():
    em, trans, dur, init, _, final = _problem(6, 3, 10, 3, 5)
    em[1, 4] = NEG
    got = _assert_same((em, trans, dur, init, torch.tensor([10, 8, 7]), final), atol=1e-12)
    assert got.log_z[1] == NEG and torch.isfinite(got.log_z[[0, 2]]).all()
    assert (got.posteriors[1] == 0).all() and (got.transitions[1] == 0).all() and (got.init[1] == 0).all()


@pytest.mark.parametrize("shape", [(1, 1, 3, 4), (2, 1, 1, 1), (1, 3, 2, 10), (1, 7, 1, 3), (2, 5, 3, 5)])
def test_small_shapes(shape):
    """``T = 1``, ``B = 1``, ``K = 1``, ``D > T``."""
    b, t, k, d = shape
    args = _problem(sum(shape), b, t, k, d)
    got = _assert_same(args, atol=1e-12)
    assert got.durations.shape == (b, k, d)
    if d > t:
        assert (got.durations[..., t:] == 0).all()


def test_ties_break_as_in_torch():
    """Equal scores everywhere: both loops keep the longest duration and the first previous state."""
    b, t, k, d = 2, 9, 3, 4
    em = torch.zeros(b, t, k, dtype=torch.float64)
    trans = torch.zeros(k, k, dtype=torch.float64).fill_diagonal_(NEG)
    dur, init = torch.zeros(k, d, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
    _assert_same((em, trans, dur, init, torch.tensor([9, 6]), None), atol=1e-12)


def test_gradients_match_torch():
    em, _, _, init, lengths, final = _problem(3, 3, 20, 3, 6, holes=True)
    g = torch.Generator().manual_seed(2)
    trans = torch.randn(3, 3, 3, generator=g, dtype=torch.float64)
    trans[:, range(3), range(3)] = NEG
    dur = torch.randn(3, 6, generator=g, dtype=torch.float64)
    grads = []
    for backend in ("torch", "numba"):
        leaves = [x.clone().requires_grad_(True) for x in (em, trans, dur, init, final)]
        log_z = semi_markov_log_partition(leaves[0], leaves[1], leaves[2], leaves[3], lengths, leaves[4], backend=backend)
        (log_z * torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)).sum().backward()
        grads.append([log_z.detach()] + [x.grad for x in leaves])
    for ref, got in zip(*grads):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_gradcheck():
    em, trans, dur, init, lengths, final = _problem(4, 2, 6, 3, 3)
    inputs = [x.clone().requires_grad_(True) for x in (em, trans, dur, init, final)]
    assert torch.autograd.gradcheck(
        lambda e, a, d, i, f: semi_markov_log_partition(e, a, d, i, lengths, f, backend="numba"), inputs)


def test_posteriors_take_the_backend():
    args = _problem(7, 2, 15, 3, 4)
    for ref, got in zip(semi_markov_posteriors(*args, backend="torch"), semi_markov_posteriors(*args, backend="numba")):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_unknown_backend():
    args = _problem(0, 1, 4, 2, 2)
    for fn in (semi_markov_marginals, semi_markov_viterbi, semi_markov_log_partition, semi_markov_posteriors):
        with pytest.raises(HMMValueError, match="backend must be one of"):
            fn(*args, backend="cuda")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_numba_backend_refuses_cuda_tensors():
    args = [x.cuda() if x is not None else None for x in _problem(0, 1, 4, 2, 2)]
    with pytest.raises(HMMValueError, match="CPU tensors only"):
        semi_markov_marginals(*args, backend="numba")
