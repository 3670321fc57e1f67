"""Semi-Markov kernel against brute-force enumeration of segmentations, and its invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pytorch_hmm.errors import HMMDimensionError, HMMDtypeError, HMMValueError
from pytorch_hmm.kernel import (
    log_partition,
    posteriors,
    sample_segments,
    semi_markov_log_partition,
    semi_markov_marginals,
    semi_markov_posteriors,
    semi_markov_viterbi,
)
from pytorch_hmm.transitions import Dense
from segment_oracle import brute_force, score

NEG = -math.inf


def _problem(seed: int, b: int, t: int, k: int, d: int, holes: bool, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    em = torch.randn(b, t, k, generator=g, dtype=dtype)
    trans = torch.randn(k, k, generator=g, dtype=dtype)
    trans.fill_diagonal_(NEG)
    dur = torch.randn(k, d, generator=g, dtype=dtype)
    init = torch.randn(k, generator=g, dtype=dtype)
    final = torch.randn(k, generator=g, dtype=dtype)
    if holes:  # impossible emissions, durations, starts and ends
        em[torch.rand(b, t, k, generator=g) < 0.2] = NEG
        dur[torch.rand(k, d, generator=g) < 0.3] = NEG
        init[torch.rand(k, generator=g) < 0.3] = NEG
        final[torch.rand(k, generator=g) < 0.3] = NEG
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    return em, trans, dur, init, final, lengths


@pytest.mark.parametrize("backend", ["torch", "numba"])
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), b=st.integers(1, 3), t=st.integers(1, 6), k=st.integers(1, 3),
       d=st.integers(1, 4), holes=st.booleans())
def test_matches_brute_force(backend, seed, b, t, k, d, holes):
    em, trans, dur, init, final, lengths = _problem(seed, b, t, k, d, holes)
    m = semi_markov_marginals(em, trans, dur, init, lengths, final, backend=backend)
    paths, scores, segments = semi_markov_viterbi(em, trans, dur, init, lengths, final, backend=backend)
    for i in range(b):
        n = int(lengths[i])
        truth = brute_force(em[i].numpy(), trans.numpy(), dur.numpy(), init.numpy(), final.numpy(), n)
        if not np.isfinite(truth.log_z):
            assert m.log_z[i] == NEG and scores[i] == NEG
            assert segments[i] == [] and (paths[i] == -1).all()
            assert m.posteriors[i].abs().sum() == 0 and m.durations[i].abs().sum() == 0
            continue
        np.testing.assert_allclose(m.log_z[i].item(), truth.log_z, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(m.posteriors[i, :n].numpy(), truth.posteriors, atol=1e-10)
        np.testing.assert_allclose(m.durations[i].numpy(), truth.durations, atol=1e-10)
        np.testing.assert_allclose(m.transitions[i].numpy(), truth.transitions, atol=1e-10)
        np.testing.assert_allclose(m.init[i].numpy(), truth.init, atol=1e-10)
        assert (m.posteriors[i, n:] == 0).all()
        np.testing.assert_allclose(scores[i].item(), truth.best_score, rtol=1e-10, atol=1e-10)
        # the returned segmentation tiles [0, n), is consistent with the path, and scores the best score
        segs = segments[i]
        assert segs[0][1] == 0 and segs[-1][2] == n
        assert all(a[2] == b_[1] for a, b_ in zip(segs, segs[1:]))
        as_pairs = [(s, e - b_) for s, b_, e in segs]
        np.testing.assert_allclose(score(as_pairs, em[i].numpy(), trans.numpy(), dur.numpy(), init.numpy(), final.numpy()),
                                   truth.best_score, rtol=1e-10, atol=1e-10)
        expected_path = np.full(t, -1)
        for s, b_, e in segs:
            expected_path[b_:e] = s
        np.testing.assert_array_equal(paths[i].numpy(), expected_path)


def test_an_impossible_frame_only_blocks_segments_that_contain_it():
    """A -inf emission at frame 0 of state 0 must not poison state 0's later segments (review finding)."""
    em = torch.tensor([[[NEG, 0.0], [0.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    trans = torch.tensor([[NEG, 0.0], [0.0, NEG]], dtype=torch.float64)
    dur, init = torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    truth = brute_force(em[0].numpy(), trans.numpy(), dur.numpy(), init.numpy())
    m = semi_markov_marginals(em, trans, dur, init)
    np.testing.assert_allclose(m.log_z.item(), truth.log_z, rtol=1e-12)
    np.testing.assert_allclose(m.posteriors[0].numpy(), truth.posteriors, atol=1e-12)
    _, scores, segs = semi_markov_viterbi(em, trans, dur, init)
    assert scores.item() == truth.best_score and segs[0][0][0] == 1


def test_gradients_are_the_marginals():
    em, trans, dur, init, final, lengths = _problem(3, 3, 7, 3, 4, holes=False)
    leaves = [x.clone().requires_grad_(True) for x in (em, trans, dur, init, final)]
    semi_markov_log_partition(leaves[0], leaves[1], leaves[2], leaves[3], lengths, leaves[4]).sum().backward()
    m = semi_markov_marginals(em, trans, dur, init, lengths, final)
    torch.testing.assert_close(leaves[0].grad, m.posteriors)
    torch.testing.assert_close(leaves[1].grad, m.transitions.sum(0))
    torch.testing.assert_close(leaves[2].grad, m.durations.sum(0))
    torch.testing.assert_close(leaves[3].grad, m.init.sum(0))
    last = torch.stack([m.posteriors[i, int(n) - 1] for i, n in enumerate(lengths)])  # the last frame's state
    torch.testing.assert_close(leaves[4].grad, last.sum(0))


def test_gradcheck_batched_tables():
    em, _, _, init, final, lengths = _problem(5, 2, 5, 3, 3, holes=False)
    g = torch.Generator().manual_seed(9)
    trans = torch.randn(2, 3, 3, generator=g, dtype=torch.float64)
    trans[:, range(3), range(3)] = NEG
    dur = torch.randn(2, 3, 3, generator=g, dtype=torch.float64)
    inputs = [x.clone().requires_grad_(True) for x in (em, trans, dur, init, final)]
    assert torch.autograd.gradcheck(
        lambda e, a, d, i, f: semi_markov_log_partition(e, a, d, i, lengths, f), inputs)


def test_batch_equals_items_and_padding_is_ignored():
    em, trans, dur, init, final, lengths = _problem(11, 4, 9, 3, 5, holes=True)
    lengths = torch.tensor([9, 4, 1, 6])
    noisy = em.clone()
    for i, n in enumerate(lengths):
        noisy[i, n:] = float("nan")
    m = semi_markov_marginals(noisy, trans, dur, init, lengths, final)
    paths, scores, segs = semi_markov_viterbi(noisy, trans, dur, init, lengths, final)
    for i, n in enumerate(lengths.tolist()):
        one = semi_markov_marginals(em[i:i + 1, :n], trans, dur, init, None, final)
        torch.testing.assert_close(m.log_z[i:i + 1], one.log_z)
        torch.testing.assert_close(m.posteriors[i:i + 1, :n], one.posteriors)
        torch.testing.assert_close(m.durations[i:i + 1], one.durations)
        torch.testing.assert_close(m.transitions[i:i + 1], one.transitions)
        p1, s1, g1 = semi_markov_viterbi(em[i:i + 1, :n], trans, dur, init, None, final)
        torch.testing.assert_close(scores[i:i + 1], s1)
        assert segs[i] == g1[0]
        assert torch.equal(paths[i, :n], p1[0]) and (paths[i, n:] == -1).all()


def test_batched_tables_equal_per_item_tables():
    em, _, _, init, _, lengths = _problem(2, 3, 6, 2, 3, holes=False)
    g = torch.Generator().manual_seed(1)
    trans = torch.randn(3, 2, 2, generator=g, dtype=torch.float64)
    trans[:, range(2), range(2)] = NEG
    dur = torch.randn(3, 2, 3, generator=g, dtype=torch.float64)
    batched = semi_markov_log_partition(em, trans, dur, init, lengths)
    items = torch.cat([semi_markov_log_partition(em[i:i + 1], trans[i], dur[i], init, lengths[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, items)


def test_geometric_durations_equal_the_hmm_with_self_loops():
    """Durations ``a^(d-1) (1-a)`` with ``D >= T`` make the HSMM exactly the HMM with self-loops ``a``
    (the last segment never leaves, so ``log_final = -log(1 - a)`` removes its leaving factor)."""
    g = torch.Generator().manual_seed(0)
    b, t, k = 3, 40, 4
    em = torch.randn(b, t, k, generator=g, dtype=torch.float64)
    stay = torch.rand(k, generator=g, dtype=torch.float64) * 0.8 + 0.1
    leave = torch.softmax(torch.randn(k, k, generator=g, dtype=torch.float64).fill_diagonal_(NEG), -1)
    hmm_trans = torch.diag(stay) + (1 - stay)[:, None] * leave
    init = torch.log_softmax(torch.randn(k, generator=g, dtype=torch.float64), -1)
    d = torch.arange(1, t + 1, dtype=torch.float64)
    dur = (d - 1) * torch.log(stay)[:, None] + torch.log1p(-stay)[:, None]
    lengths = torch.tensor([40, 17, 3])
    hsmm = semi_markov_marginals(em, torch.log(leave), dur, init, lengths, -torch.log1p(-stay))
    hmm_z = log_partition(em, Dense(torch.log(hmm_trans)), init, lengths)
    torch.testing.assert_close(hsmm.log_z, hmm_z, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(hsmm.posteriors, posteriors(em, Dense(torch.log(hmm_trans)), init, lengths), rtol=0, atol=1e-10)


@pytest.mark.slow
def test_long_float32_stays_normalised_and_close_to_float64():
    em, trans, dur, init, final, _ = _problem(4, 2, 5000, 4, 30, holes=False)
    em = em * 3 - 20  # large negative log-likelihoods, as real features give
    m64 = semi_markov_marginals(em, trans, dur, init, None, final)
    m32 = semi_markov_marginals(em.float(), trans.float(), dur.float(), init.float(), None, final.float())
    assert m32.log_z.dtype == torch.float32 and torch.isfinite(m32.log_z).all()
    torch.testing.assert_close(m32.log_z.double(), m64.log_z, rtol=1e-6, atol=0)
    torch.testing.assert_close(m32.posteriors.sum(-1), torch.ones(2, 5000), atol=1e-6, rtol=0)
    torch.testing.assert_close(m32.posteriors.double(), m64.posteriors, atol=1e-5, rtol=0)


def test_infeasible_gives_minus_inf_zeros_and_empty_segments():
    em = torch.randn(1, 5, 1, dtype=torch.float64)
    trans = torch.full((1, 1), NEG, dtype=torch.float64)
    dur = torch.zeros(1, 3, dtype=torch.float64)  # one state, segments of at most 3 frames: 5 frames cannot be tiled
    init = torch.zeros(1, dtype=torch.float64)
    e = em.clone().requires_grad_(True)
    log_z = semi_markov_log_partition(e, trans, dur, init)
    assert log_z.item() == NEG
    log_z.sum().backward()
    assert (e.grad == 0).all()
    post, counts = semi_markov_posteriors(em, trans, dur, init)
    assert (post == 0).all() and (counts == 0).all()
    paths, scores, segs = semi_markov_viterbi(em, trans, dur, init)
    assert scores.item() == NEG and segs == [[]] and (paths == -1).all()
    # lengths that fit make it feasible again
    assert torch.isfinite(semi_markov_log_partition(em, trans, dur, init, lengths=[3]))


def test_durations_longer_than_the_sequence():
    em, trans, _, init, _, _ = _problem(8, 2, 3, 2, 1, holes=False)
    dur = torch.randn(2, 10, dtype=torch.float64, requires_grad=True)
    semi_markov_log_partition(em, trans, dur, init).sum().backward()
    assert dur.grad.shape == (2, 10) and (dur.grad[:, 3:] == 0).all() and (dur.grad[:, :3] > 0).any()
    _, counts = semi_markov_posteriors(em, trans, dur.detach(), init)
    assert counts.shape == (2, 2, 10)
    truth = brute_force(em[0].numpy(), trans.numpy(), dur.detach().numpy(), init.numpy())
    np.testing.assert_allclose(counts[0].numpy(), truth.durations, atol=1e-12)


def test_sample_segments_follows_the_duration_distribution():
    g = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.0, 0.5, 0.2, 0.3], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    trans = torch.log(torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64))
    init = torch.log(torch.tensor([1.0, 0.0], dtype=torch.float64))
    states = sample_segments(trans, torch.log(probs), init, 4000, 6, generator=g)
    assert states.shape == (4000, 6) and (states[:, 0] == 0).all()
    first = (states == 0).int().argmin(1)  # the first segment's duration: frames before state 1
    freq = torch.bincount(first, minlength=5)[1:].double() / 4000
    torch.testing.assert_close(freq, probs[0], atol=0.03, rtol=0)
    assert (states.gather(1, first[:, None]) == 1).all()  # state 1 lasts one frame, then state 0 again
    assert (states.gather(1, (first + 1)[:, None]) == 0).all()


def test_sample_segments_repeats_a_state_without_moves():
    trans = torch.full((2, 2), NEG)
    trans[0, 1] = 0.0
    dur = torch.log(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    states = sample_segments(trans, dur, torch.tensor([0.0, NEG]), 3, 7)
    assert states.tolist() == [[0, 0, 1, 1, 1, 1, 1]] * 3


# --- errors: one test per message ---

def _ok():
    em, trans, dur, init, final, lengths = _problem(0, 2, 4, 2, 3, holes=False)
    return dict(log_emissions=em, log_transitions=trans, log_durations=dur, log_init=init)


def test_error_self_transitions():
    kw = _ok()
    kw["log_transitions"] = torch.zeros(2, 2, dtype=torch.float64)
    with pytest.raises(HMMValueError, match=r"log_transitions must have -inf on its diagonal .* states \[0, 1\]"):
        semi_markov_log_partition(**kw)


def test_error_transition_shape():
    kw = _ok()
    kw["log_transitions"] = torch.full((3, 3), NEG, dtype=torch.float64)
    with pytest.raises(HMMDimensionError, match=r"log_transitions must be \(K, K\) or \(B, K, K\) with B == 2, K == 2; got shape \(3, 3\)"):
        semi_markov_log_partition(**kw)


def test_error_duration_shape():
    kw = _ok()
    kw["log_durations"] = torch.zeros(3, 4, dtype=torch.float64)
    with pytest.raises(HMMDimensionError, match=r"log_durations must be \(K, D\) or \(B, K, D\) with K == 2 states; got \(3, 4\)"):
        semi_markov_log_partition(**kw)


def test_error_duration_batch():
    kw = _ok()
    kw["log_durations"] = torch.zeros(5, 2, 3, dtype=torch.float64)
    with pytest.raises(HMMDimensionError, match=r"log_durations must be \(K, D\) or \(B, K, D\) with B == 2, K == 2; got shape \(5, 2, 3\)"):
        semi_markov_log_partition(**kw)


def test_error_empty_durations():
    kw = _ok()
    kw["log_durations"] = torch.zeros(2, 0, dtype=torch.float64)
    with pytest.raises(HMMDimensionError, match=r"at least one duration \(D >= 1\)"):
        semi_markov_log_partition(**kw)


def test_error_dtype_mismatch():
    kw = _ok()
    kw["log_durations"] = kw["log_durations"].float()
    with pytest.raises(HMMDtypeError, match=r"log_durations must have the dtype of log_emissions \(torch.float64\); got torch.float32"):
        semi_markov_log_partition(**kw)


def test_error_nan_durations():
    kw = _ok()
    kw["log_durations"][0, 1] = float("nan")
    with pytest.raises(HMMValueError, match=r"log_durations must not contain NaN or \+inf; found NaN"):
        semi_markov_marginals(**kw)


def test_error_not_a_tensor():
    kw = _ok()
    kw["log_transitions"] = [[NEG, 0.0], [0.0, NEG]]
    with pytest.raises(TypeError, match=r"log_transitions must be a torch.Tensor of shape \(K, K\) or \(B, K, K\); got list"):
        semi_markov_viterbi(**kw)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    em, trans, dur, init, final, lengths = _problem(6, 3, 30, 4, 8, holes=True)
    cpu = semi_markov_marginals(em, trans, dur, init, lengths, final)
    dev = [x.cuda() for x in (em, trans, dur, init)]
    gpu = semi_markov_marginals(*dev, lengths.cuda(), final.cuda())
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(a, b.cpu())
    p_cpu, s_cpu, g_cpu = semi_markov_viterbi(em, trans, dur, init, lengths, final)
    p_gpu, s_gpu, g_gpu = semi_markov_viterbi(*dev, lengths.cuda(), final.cuda())
    torch.testing.assert_close(s_cpu, s_gpu.cpu())
    assert g_cpu == g_gpu and torch.equal(p_cpu, p_gpu.cpu()) and p_gpu.device.type == "cuda"
