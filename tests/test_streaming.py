"""Streaming decoding (pytorch_hmm.streaming) against offline references.

* exact online Viterbi == the brute-force best path (tiny problems) and offline ``kernel.viterbi``
  for any chunking, any storage;
* the filter == ``p(z_t | x_{1:t})`` of brute force on every prefix; fixed lag ``L`` ==
  ``p(z_t | x_{1:t+L})`` (offline posteriors of the prefix), the offline smoother when ``L >= T``;
* ``max_delay`` bounds every decision's wait and still gives a path the model allows;
* a batch of streams with per-chunk lengths == each stream alone.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernel_calls import torch_inputs
from oracle import brute_force, path_score, random_problem
from pytorch_hmm import HMM, HSMM, HMMLayer, kernel
from pytorch_hmm.emissions import Gaussian
from pytorch_hmm.errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from pytorch_hmm.streaming import StreamingHMMProcessor, StreamingResult
from pytorch_hmm.transitions import Banded, Dense, left_to_right


def run_stream(proc: StreamingHMMProcessor, e: torch.Tensor, cuts, lengths=None):
    """Feed ``e`` (B, T, K) cut at ``cuts``; returns (states (B, T), posteriors (B, T, K) or None,
    delays (B, T), forced (B, T), results). Every frame must be decided exactly once."""
    b, t = e.shape[:2]
    states = torch.full((b, t), -2, dtype=torch.long)
    post = torch.full((b, t, proc.num_states), float("nan"), dtype=e.dtype)
    delays = torch.full((b, t), -2, dtype=torch.long)
    forced = torch.zeros((b, t), dtype=torch.bool)
    results = []
    bounds = [0] + list(cuts) + [t]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi > lo:
            results.append(proc.process_chunk(e[:, lo:hi]))
    results.append(proc.flush())
    for r in results:
        for i in range(b):
            n = int(r.num_decided[i])
            idx = r.frame_indices[i, :n]
            assert torch.equal(idx, torch.arange(idx[0], idx[0] + n)) if n else True  # consecutive frames
            assert (states[i, idx] == -2).all(), "a frame was decided twice"
            states[i, idx] = r.states[i, :n]
            delays[i, idx] = r.delays[i, :n]
            forced[i, idx] = r.forced[i, :n]
            if r.posteriors is not None:
                post[i, idx] = r.posteriors[i, :n]
            assert (r.frame_indices[i, n:] == -1).all() and (r.states[i, n:] == -1).all()
    assert (states != -2).all(), "a frame was never decided"
    return states, (post if results[0].posteriors is not None else None), delays, forced, results


def cuts_for(t: int, data) -> list:
    return sorted(set(data.draw(st.lists(st.integers(1, max(t - 1, 1)), max_size=6)))) if t > 1 else []


# ---------------------------------------------------------------------------------------
# exact online Viterbi
# ---------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), storage=st.sampled_from(["dense", "banded", "sparse"]), k=st.integers(1, 4),
       t=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_online_viterbi_is_the_brute_force_best_path(data, storage, k, t, seed):
    p = random_problem(np.random.default_rng(seed), 2, t, k, storage=storage, width=min(3, k), final="shared",
                       p_inf=0.15)
    inp = torch_inputs(p)
    proc = StreamingHMMProcessor((inp["transitions"], inp["log_init"], inp["log_final"]))
    states, _, delays, forced, results = run_stream(proc, inp["log_emissions"], cuts_for(t, data))
    assert not forced.any()
    for b in range(2):
        oracle = brute_force(*p.item(b)[:4])
        if oracle.best_score == -math.inf:
            continue  # no path: the stream's frames are -1 once that is known (tested below)
        assert results[-1].log_score[b].item() == pytest.approx(oracle.best_score, abs=1e-9)
        path = tuple(states[b].tolist())
        assert path in oracle.best_paths or path_score(*p.item(b)[:3], path, p.item(b)[3]) == pytest.approx(
            oracle.best_score, abs=1e-9)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), storage=st.sampled_from(["dense", "banded", "sparse"]), k=st.integers(2, 9),
       t=st.integers(1, 60), seed=st.integers(0, 2**31 - 1))
def test_online_viterbi_equals_offline_viterbi_for_any_chunking(data, storage, k, t, seed):
    p = random_problem(np.random.default_rng(seed), 3, t, k, storage=storage, width=min(3, k), final="shared", scale=2.0)
    inp = torch_inputs(p)
    e, tr, init, final = inp["log_emissions"], inp["transitions"], inp["log_init"], inp["log_final"]
    paths, scores = kernel.viterbi(e, tr, init, log_final=final)
    states, _, delays, _, results = run_stream(StreamingHMMProcessor((tr, init, final)), e, cuts_for(t, data))
    np.testing.assert_allclose(results[-1].log_score.numpy(), scores.numpy(), rtol=1e-12, atol=1e-9)
    for b in range(3):
        if torch.isfinite(scores[b]) and not torch.equal(states[b], paths[b]):  # only an exact tie may differ
            dense = p.item(b)
            assert path_score(*dense[:3], states[b].tolist(), dense[3]) == pytest.approx(scores[b].item(), abs=1e-9)


def test_online_viterbi_decides_early_on_clear_evidence():
    """Frames are emitted before the stream ends once the paths coalesce (not all held to flush)."""
    k, t = 3, 200
    torch.manual_seed(1)
    truth = torch.randint(0, k, (t,))
    e = torch.full((1, t, k), -8.0, dtype=torch.float64)
    e[0, torch.arange(t), truth] = 0.0
    tr = Dense(torch.log(torch.full((k, k), 0.1, dtype=torch.float64) + 0.7 * torch.eye(k, dtype=torch.float64)))
    proc = StreamingHMMProcessor((tr, torch.log(torch.full((k,), 1 / k, dtype=torch.float64))))
    decided_before_flush = 0
    for i in range(t):
        r = proc.process_chunk(e[:, i:i + 1])
        decided_before_flush += int(r.num_decided.sum())
        assert (r.delays[r.delays >= 0] <= 3).all()
    assert decided_before_flush >= t - 3
    assert torch.equal(torch.cat([proc.flush().states[0, :int(0)]]), torch.empty(0, dtype=torch.long))


def test_online_viterbi_long_float32_stream_stays_exact():
    """10^4 frames in float32: the per-chunk shift keeps scores O(1); the path equals offline float64's."""
    torch.manual_seed(0)
    k, t = 6, 10_000
    tr = left_to_right(k, self_loop=0.6, dtype=torch.float64)
    loop = Dense(torch.log(torch.full((k, k), 0.02, dtype=torch.float64) + 0.88 * torch.eye(k, dtype=torch.float64)))
    truth = torch.randint(0, k, (t,))
    e64 = -0.5 * (torch.randn(1, t, 1, dtype=torch.float64) * 0.5 + truth[None, :, None] - torch.arange(k)) ** 2
    init = torch.full((k,), -math.log(k), dtype=torch.float64)
    paths, scores = kernel.viterbi(e64, loop, init)
    proc = StreamingHMMProcessor((Dense(loop.log_probs.float()), init.float()))
    states, _, delays, _, results = run_stream(proc, e64.float(), list(range(7, t, 7)))
    assert torch.equal(states, paths)
    assert results[-1].log_score.item() == pytest.approx(scores.item(), rel=1e-5)
    assert int(delays.max()) < 200  # memory stays small: the paths coalesce quickly
    del tr


@pytest.mark.parametrize("max_delay", [0, 1, 3])
def test_max_delay_is_fixed_lag_viterbi(max_delay):
    """Frame s is decided with frames up to s + max_delay: the state offline Viterbi gives frame s of
    the prefix x_0..x_{s+max_delay} (no end weights); the last max_delay frames by the flush."""
    rng = np.random.default_rng(max_delay)
    t = 40
    for storage in ("dense", "banded", "sparse"):
        p = random_problem(rng, 3, t, 5, storage=storage, width=3, final="shared", scale=0.3)
        inp = torch_inputs(p)
        e, tr, init, final = inp["log_emissions"], inp["transitions"], inp["log_init"], inp["log_final"]
        proc = StreamingHMMProcessor((tr, init, final), max_delay=max_delay)
        states, _, delays, forced, results = run_stream(proc, e, list(range(1, t)))  # frame by frame
        whole = kernel.viterbi(e, tr, init, log_final=final)[0]
        for s_ in range(t):
            if s_ + max_delay <= t - 1:
                expected = kernel.viterbi(e[:, : s_ + max_delay + 1], tr, init)[0][:, s_]
            else:
                expected = whole[:, s_]
            feasible = torch.isfinite(kernel.viterbi(e, tr, init, log_final=final)[1])
            assert torch.equal(states[feasible, s_], expected[feasible]), (storage, s_)
        assert (delays[:, : t - max_delay] <= max_delay).all()
        assert int(sum(r.forced.sum() for r in results)) == int(forced.sum())
        np.testing.assert_allclose(results[-1].log_score.numpy(),
                                   kernel.viterbi(e, tr, init, log_final=final)[1].numpy(), atol=1e-9)
        # the decisions do not depend on the chunking (only when they are reported)
        other = run_stream(StreamingHMMProcessor((tr, init, final), max_delay=max_delay), e, [3, 4, 17, 30])
        assert torch.equal(other[0], states) and torch.equal(other[3], forced)
    assert forced.any() or max_delay > 0


def test_beam_is_exact_when_wide_and_lets_left_to_right_chains_decide_early():
    """A left-to-right chain: the path lingering in state 0 never agrees with the others, so exact
    online Viterbi holds everything to the end; a beam drops it and decisions come within frames."""
    torch.manual_seed(0)
    k, t = 20, 400
    truth = torch.clamp(torch.arange(t) // 20, max=k - 1)
    e = (-0.5 * (torch.randn(1, t, 1, dtype=torch.float64) * 0.7 + truth[None, :, None] - torch.arange(k)) ** 2)
    tr = left_to_right(k, self_loop=0.9, dtype=torch.float64)
    init = torch.tensor([0.0] + [-math.inf] * (k - 1), dtype=torch.float64)
    final = torch.tensor([-math.inf] * (k - 1) + [0.0], dtype=torch.float64)
    paths = kernel.viterbi(e, tr, init, log_final=final)[0]
    exact, _, exact_delays, _, _ = run_stream(StreamingHMMProcessor((tr, init, final)), e, list(range(5, t, 5)))
    assert torch.equal(exact, paths)
    assert (exact_delays >= 0).float().mean() == 1 and exact_delays.float().median() > 100  # held back
    wide, _, _, _, _ = run_stream(StreamingHMMProcessor((tr, init, final), beam=1e6), e, list(range(5, t, 5)))
    assert torch.equal(wide, paths)
    beamed, _, delays, forced, results = run_stream(StreamingHMMProcessor((tr, init, final), beam=15.0), e,
                                                    list(range(5, t, 5)))
    assert torch.equal(beamed, paths)  # the best path never leaves a 15-nat beam here
    assert delays.float().median() <= 20 and not forced.any()  # 15 frames here, against over 100 exact


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), k=st.integers(2, 6), t=st.integers(1, 40), beam=st.floats(0.5, 6.0),
       seed=st.integers(0, 2**31 - 1))
def test_beam_equals_a_numpy_beam_viterbi(data, k, t, beam, seed):
    """Against an independent beam Viterbi (numpy, dense): same pruning rule, same path and score."""
    p = random_problem(np.random.default_rng(seed), 1, t, k, storage="dense", final="shared", scale=2.0)
    inp = torch_inputs(p)
    em, dense, ini, fin, _ = p.item(0)
    score = ini + em[0]
    score = np.where(score < score.max() - beam, -np.inf, score)
    back = []
    for s_ in range(1, t):
        cand = score[:, None] + dense
        back.append(cand.argmax(0))
        score = cand.max(0) + em[s_]
        score = np.where(score < score.max() - beam, -np.inf, score) if np.isfinite(score.max()) else score
    end = score + fin
    proc = StreamingHMMProcessor((inp["transitions"], inp["log_init"], inp["log_final"]), beam=beam)
    states, _, _, _, results = run_stream(proc, inp["log_emissions"], cuts_for(t, data))
    if not np.isfinite(end.max()):
        assert (states == -1).all() or results[-1].log_score.item() == -math.inf
        return
    path = [int(end.argmax())]
    for b_ in reversed(back):
        path.append(int(b_[path[-1]]))
    assert results[-1].log_score.item() == pytest.approx(float(end.max()), abs=1e-9)
    got = states[0].tolist()
    assert got == path[::-1] or path_score(em, dense, ini, got, fin) == pytest.approx(float(end.max()), abs=1e-9)


def test_num_forced_counts_since_the_start():
    p = random_problem(np.random.default_rng(4), 2, 30, 5, scale=0.2)
    inp = torch_inputs(p)
    proc = StreamingHMMProcessor((inp["transitions"], inp["log_init"]), max_delay=1)
    assert proc.num_forced is None
    total = torch.zeros(2, dtype=torch.long)
    for lo in range(0, 30, 6):
        total += proc.process_chunk(inp["log_emissions"][:, lo:lo + 6]).forced.sum(1)
        assert torch.equal(proc.num_forced, total)
    assert int(total.sum()) > 0
    proc.flush()
    assert proc.num_forced is None  # flush starts new streams


def test_max_delay_zero_decides_every_frame_at_once_and_large_max_delay_is_exact():
    p = random_problem(np.random.default_rng(5), 2, 30, 4, final="shared")
    inp = torch_inputs(p)
    e, tr, init, final = inp["log_emissions"], inp["transitions"], inp["log_init"], inp["log_final"]
    proc = StreamingHMMProcessor((tr, init, final), max_delay=0)
    for i in range(30):
        r = proc.process_chunk(e[:, i:i + 1])
        assert r.num_decided.tolist() == [1, 1] and r.frame_indices[:, 0].tolist() == [i, i]
    assert proc.flush().num_decided.tolist() == [0, 0]
    exact = run_stream(StreamingHMMProcessor((tr, init, final)), e, [5, 9])[0]
    loose, _, _, forced, _ = run_stream(StreamingHMMProcessor((tr, init, final), max_delay=30), e, [5, 9])
    assert torch.equal(exact, loose) and not forced.any()


def test_infeasible_stream_gives_minus_one_and_the_others_go_on():
    k = 3
    tr = Banded(torch.log(torch.tensor([[0.5, 0.5]] * k, dtype=torch.float64)))
    init = torch.tensor([0.0, -math.inf, -math.inf], dtype=torch.float64)
    e = torch.zeros(2, 6, k, dtype=torch.float64)
    e[1, 2] = -math.inf  # stream 1: no state can emit frame 2
    for mode, kw in (("viterbi", {}), ("filter", {}), ("fixed_lag", {"lag": 2})):
        states = run_stream(StreamingHMMProcessor((tr, init), mode, **kw), e, [1, 4])[0]
        assert (states[1, 2:] == -1).all(), mode
        assert (states[0] >= 0).all(), mode
    paths, _ = kernel.viterbi(e, tr, init)
    assert torch.equal(run_stream(StreamingHMMProcessor((tr, init)), e, [1, 4])[0][0], paths[0])


# ---------------------------------------------------------------------------------------
# filter and fixed-lag smoother
# ---------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), storage=st.sampled_from(["dense", "banded", "sparse"]), k=st.integers(1, 4),
       t=st.integers(1, 6), seed=st.integers(0, 2**31 - 1))
def test_filter_is_the_brute_force_prefix_posterior(data, storage, k, t, seed):
    p = random_problem(np.random.default_rng(seed), 2, t, k, storage=storage, width=min(3, k), final="shared")
    inp = torch_inputs(p)
    e, tr, init, final = inp["log_emissions"], inp["transitions"], inp["log_init"], inp["log_final"]
    _, post, _, _, results = run_stream(StreamingHMMProcessor((tr, init, final), "filter"), e, cuts_for(t, data))
    filtered, evidence = kernel.forward_filter(e, tr, init)
    for b in range(2):
        em, dense, ini, fin, _ = p.item(b)
        for s in range(t):
            prefix = brute_force(em, dense, ini, None, length=s + 1)
            np.testing.assert_allclose(post[b, s].numpy(), prefix.posteriors[s], atol=1e-10)
            np.testing.assert_allclose(filtered[b, s].exp().numpy(), prefix.posteriors[s], atol=1e-10)
            if prefix.log_z > -math.inf:
                assert evidence[b, s].item() == pytest.approx(prefix.log_z, abs=1e-9)
            else:
                assert evidence[b, s].item() == -math.inf and torch.isneginf(filtered[b, s]).all()
        whole = brute_force(em, dense, ini, fin)
        assert results[-1].log_score[b].item() == pytest.approx(whole.log_z, abs=1e-9) if whole.log_z > -math.inf \
            else results[-1].log_score[b].item() == -math.inf


@pytest.mark.parametrize("lag", [0, 1, 3, 7, 12, 50])
@pytest.mark.parametrize("storage", ["dense", "banded", "sparse"])
def test_fixed_lag_is_the_posterior_given_lag_frames_ahead(lag, storage):
    t = 20
    p = random_problem(np.random.default_rng(lag), 3, t, 4, storage=storage, width=3, final="shared")
    inp = torch_inputs(p)
    e, tr, init, final = inp["log_emissions"], inp["transitions"], inp["log_init"], inp["log_final"]
    proc = StreamingHMMProcessor((tr, init, final), "fixed_lag", lag=lag)
    states, post, delays, _, results = run_stream(proc, e, [1, 2, 6, 13, 14])
    whole = kernel.posteriors(e, tr, init, log_final=final)
    for s in range(t):
        if s + lag <= t - 1:  # decided by a chunk: sees frames up to s + lag, no end constraint
            expected = kernel.posteriors(e[:, : s + lag + 1], tr, init)[:, s]
        else:  # decided by flush: the offline smoother
            expected = whole[:, s]
        np.testing.assert_allclose(post[:, s].numpy(), expected.numpy(), atol=1e-10)
    assert torch.equal(states, torch.where(post.amax(-1) > 0, post.argmax(-1), -1))
    if lag >= t:
        np.testing.assert_allclose(post.numpy(), whole.numpy(), atol=1e-10)
    if lag < t:  # decided when frame s + lag arrives, or at the end of the chunk that brings it
        assert (delays[:, : t - lag] >= lag).all() and (delays[:, : t - lag] <= lag + 6).all()
    np.testing.assert_allclose(results[-1].log_score.numpy(),
                               kernel.log_partition(e, tr, init, log_final=final).numpy(), atol=1e-9)


def test_lag_zero_is_the_filter_and_lag_may_change_between_chunks():
    p = random_problem(np.random.default_rng(3), 2, 25, 3, final=None)
    inp = torch_inputs(p)
    e, tr, init = inp["log_emissions"], inp["transitions"], inp["log_init"]
    filt = run_stream(StreamingHMMProcessor((tr, init), "filter"), e, [4, 11])[1]
    lag0 = run_stream(StreamingHMMProcessor((tr, init), "fixed_lag", lag=0), e, [4, 11])[1]
    np.testing.assert_allclose(filt.numpy(), lag0.numpy(), atol=1e-12)
    proc = StreamingHMMProcessor((tr, init), "fixed_lag", lag=4)
    seen = []
    for lo, hi, lag in ((0, 10, 4), (10, 15, 1), (15, 25, 6)):
        proc.lag = lag
        r = proc.process_chunk(e[:, lo:hi])
        n = int(r.num_decided[0])
        seen += r.frame_indices[0, :n].tolist()
        assert n == max(hi - lag - (seen[-n] if n else 0), 0) if n else True
        for j, s in enumerate(r.frame_indices[0, :n].tolist()):
            expected = kernel.posteriors(e[:, : s + lag + 1], tr, init)[0, s]
            np.testing.assert_allclose(r.posteriors[0, j].numpy(), expected.numpy(), atol=1e-10)
    assert seen == list(range(len(seen)))


# ---------------------------------------------------------------------------------------
# batches with lengths, models, devices
# ---------------------------------------------------------------------------------------


def feed_ragged(proc, e, plan):
    """Feed stream b its frames ``plan[c][b]`` at a time (0 allowed) through padded chunks with
    lengths (NaN padding, never read); returns per stream {frame: (state, posterior)} and the results."""
    bsz, t, k = e.shape
    pos = np.zeros(bsz, dtype=int)
    got = [dict() for _ in range(bsz)]
    results = []

    def collect(r):
        results.append(r)
        for b in range(bsz):
            for j in range(int(r.num_decided[b])):
                frame = int(r.frame_indices[b, j])
                assert frame not in got[b], "a frame was decided twice"
                got[b][frame] = (int(r.states[b, j]), None if r.posteriors is None else r.posteriors[b, j].clone())
    for lens in plan:
        lens = np.minimum(lens, t - pos)
        width = max(int(lens.max()), 1)
        chunk = torch.full((bsz, width, k), float("nan"), dtype=e.dtype)
        for b in range(bsz):
            chunk[b, : lens[b]] = e[b, pos[b]: pos[b] + lens[b]]
        r = proc.process_chunk(chunk, torch.tensor(lens))
        pos += lens
        assert torch.equal(r.frames_seen, torch.tensor(pos))
        collect(r)
    collect(proc.flush())
    return got, results, pos


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(storage=st.sampled_from(["dense", "banded", "sparse"]), k=st.integers(1, 5), t=st.integers(1, 30),
       p_inf=st.sampled_from([0.0, 0.1, 0.3]), mode=st.sampled_from(["viterbi", "max_delay", "filter", "fixed_lag"]),
       seed=st.integers(0, 2**31 - 1))
def test_batch_with_chunk_lengths_equals_offline_per_stream(storage, k, t, p_inf, mode, seed):
    """Streams at their own pace (chunks of 0-12 frames, a stream that starts late, -inf entries) ==
    the offline routines on each stream alone."""
    rng = np.random.default_rng(seed)
    p = random_problem(rng, 3, t, k, storage=storage, width=min(3, k), final="shared", p_inf=p_inf)
    inp = torch_inputs(p)
    e, tr, init, final = inp["log_emissions"], inp["transitions"], inp["log_init"], inp["log_final"]
    plan = rng.integers(0, 13, size=(12, 3)) * (rng.random((12, 3)) < 0.7)
    plan[:2, 0] = 0  # stream 0 starts late
    delay, lag = int(rng.integers(0, 4)), int(rng.integers(0, 12))
    kw = {"max_delay": {"max_delay": delay}, "fixed_lag": {"lag": lag}}.get(mode, {})
    got, results, pos = feed_ragged(StreamingHMMProcessor((tr, init, final), "viterbi" if mode == "max_delay" else mode,
                                                          **kw), e, plan)
    for b in range(3):
        n = int(pos[b])
        assert sorted(got[b]) == list(range(n))
        if n == 0:
            assert results[-1].log_score[b].item() == 0.0  # the empty stream
            continue
        eb = e[b:b + 1, :n]
        states = [got[b][s_][0] for s_ in range(n)]
        paths, best = kernel.viterbi(eb, tr, init, log_final=final)
        if mode in ("viterbi", "max_delay"):
            assert results[-1].log_score[b].item() == pytest.approx(best.item(), abs=1e-9) if torch.isfinite(best) \
                else results[-1].log_score[b].item() == -math.inf or not math.isfinite(results[-1].log_score[b].item())
            if not torch.isfinite(best):
                continue  # frames decided before the stream turned out impossible keep their states
            if mode == "viterbi":
                dense = p.item(b)
                assert states == paths[0].tolist() or path_score(dense[0][:n], dense[1], dense[2], states, dense[3]) \
                    == pytest.approx(best.item(), abs=1e-9)
            else:  # fixed-lag Viterbi: offline Viterbi of the prefix up to s + max_delay
                for s_ in range(n):
                    prefix = kernel.viterbi(eb[:, : s_ + delay + 1], tr, init)[0][0, s_] if s_ + delay <= n - 1 \
                        else paths[0, s_]
                    assert states[s_] == int(prefix), s_
            continue
        post = torch.stack([got[b][s_][1] for s_ in range(n)])
        log_z = kernel.log_partition(eb, tr, init, log_final=final).item()
        assert results[-1].log_score[b].item() == pytest.approx(log_z, abs=1e-8) if math.isfinite(log_z) \
            else results[-1].log_score[b].item() == -math.inf
        if mode == "filter":
            np.testing.assert_allclose(post.numpy(), kernel.forward_filter(eb, tr, init)[0][0].exp().numpy(), atol=1e-9)
        else:
            whole = kernel.posteriors(eb, tr, init, log_final=final)[0]
            for s_ in range(n):
                expected = kernel.posteriors(eb[:, : s_ + lag + 1], tr, init)[0, s_] if s_ + lag <= n - 1 else whole[s_]
                np.testing.assert_allclose(post[s_].numpy(), expected.numpy(), atol=1e-9)


def test_lowering_max_delay_mid_stream_decides_the_older_frames():
    """A left-to-right chain never agrees before the end; after max_delay drops from 8 to 1, every frame
    more than 1 frame old is decided at the end of each later chunk."""
    torch.manual_seed(0)
    k = 10
    tr = left_to_right(k, self_loop=0.8, dtype=torch.float64)
    init = torch.tensor([0.0] + [-math.inf] * (k - 1), dtype=torch.float64)
    e = torch.randn(1, 60, k, dtype=torch.float64)
    proc = StreamingHMMProcessor((tr, init), max_delay=8)
    decided = set()
    for lo in range(0, 60, 5):
        if lo == 20:
            proc.max_delay = 1
        r = proc.process_chunk(e[:, lo:lo + 5])
        decided |= set(r.frame_indices[0, : int(r.num_decided[0])].tolist())
        bound = proc.max_delay
        assert set(range(lo + 5 - bound)) <= decided, (lo, bound)


def test_long_chunks_are_decided_in_steps():
    """One chunk of 3000 frames: the same path as offline Viterbi, and the pending buffer stays short
    (decisions every STEP_FRAMES frames, not at the end of the chunk)."""
    torch.manual_seed(0)
    k, t = 8, 3000
    truth = torch.randint(0, k, (t,))
    e = torch.full((1, t, k), -6.0, dtype=torch.float64)
    e[0, torch.arange(t), truth] = 0.0
    tr = Dense(torch.log(torch.full((k, k), 0.05, dtype=torch.float64) + 0.6 * torch.eye(k, dtype=torch.float64)))
    init = torch.full((k,), -math.log(k), dtype=torch.float64)
    proc = StreamingHMMProcessor((tr, init))
    r = proc.process_chunk(e)
    assert int(r.num_decided[0]) >= t - 10
    assert proc._viterbi.ancestors.shape[-1] < 64
    states = run_stream(StreamingHMMProcessor((tr, init)), e, [])[0]
    assert torch.equal(states, kernel.viterbi(e, tr, init)[0])
    lagged = run_stream(StreamingHMMProcessor((tr, init), "fixed_lag", lag=100), e, [])[1]
    np.testing.assert_allclose(lagged[0, :200].numpy(),
                               torch.stack([kernel.posteriors(e[:, : s_ + 101], tr, init)[0, s_] for s_ in range(200)]).numpy(),
                               atol=1e-9)


def test_lifecycle():
    proc = StreamingHMMProcessor((TR, INIT))
    proc.process_chunk(torch.zeros(2, 3, 3, dtype=torch.float64))
    proc.reset()
    with pytest.raises(HMMValueError, match=r"flush\(\) needs a stream: call process_chunk first"):
        proc.flush()
    proc.process_chunk(torch.zeros(1, 3, 3, dtype=torch.float64))
    assert proc.flush().frames_seen.tolist() == [3]
    with pytest.raises(HMMValueError, match=r"flush\(\) needs a stream"):
        proc.flush()  # flush started new streams: nothing to flush
    for mode, kw in (("viterbi", {}), ("filter", {}), ("fixed_lag", {"lag": 2})):
        proc = StreamingHMMProcessor((TR, INIT, torch.tensor([-math.inf, -math.inf, 0.0], dtype=torch.float64)), mode, **kw)
        r = proc.process_chunk(torch.zeros(2, 2, 3, dtype=torch.float64), torch.tensor([0, 2]))
        assert r.log_score[0].item() == 0.0  # no frames yet: the empty stream
        assert proc.flush().log_score[0].item() == 0.0


def _gaussian_hmm(k=3, d=2, dtype=torch.float64, final=None):
    torch.manual_seed(0)
    em = Gaussian(k, d, dtype=dtype)
    with torch.no_grad():
        em.means.copy_(torch.randn(k, d, dtype=dtype) * 2)
    return HMM(em, transitions="ergodic", final=final)


@pytest.mark.parametrize("mode,kw", [("viterbi", {}), ("filter", {}), ("fixed_lag", {"lag": 4})])
def test_model_source_scores_features_like_the_offline_model(mode, kw):
    model = _gaussian_hmm(final="last")
    x = torch.randn(2, 33, 2, dtype=torch.float64) * 2
    proc = StreamingHMMProcessor(model, mode, **kw)
    states, post, _, _, results = run_stream(proc, x, [3, 10, 11, 30])
    if mode == "viterbi":
        paths, scores = model.viterbi(x)
        assert torch.equal(states, paths)
        np.testing.assert_allclose(results[-1].log_score.numpy(), scores.numpy(), atol=1e-9)
    else:
        with torch.no_grad():  # (scoring under grad in training mode would initialise the fresh model)
            np.testing.assert_allclose(results[-1].log_score.numpy(), model(x).numpy(), atol=1e-9)
    e = model.log_emissions(x).detach()
    raw = StreamingHMMProcessor((model.transitions, model.log_init.detach(), model.log_final), mode, **kw)
    states_raw, post_raw, _, _, _ = run_stream(raw, e, [3, 10, 11, 30])
    assert torch.equal(states, states_raw)
    if post is not None:
        np.testing.assert_allclose(post.numpy(), post_raw.numpy(), atol=1e-12)


def test_layer_source_and_reset_reads_new_parameters():
    layer = HMMLayer(4, "left_to_right", dtype=torch.float64)
    scores = torch.randn(1, 12, 4, dtype=torch.float64)
    proc = StreamingHMMProcessor(layer)
    states = run_stream(proc, scores, [5])[0]
    assert torch.equal(states, kernel.viterbi(scores, layer.transitions, layer.initial.log_probs)[0])
    with torch.no_grad():
        layer.initial.logits.copy_(torch.tensor([-50.0, 0.0, -50.0, -50.0], dtype=torch.float64))
    proc.reset()
    states = run_stream(proc, scores, [5])[0]
    assert states[0, 0].item() == 1


def test_result_fields_and_repr():
    tr = left_to_right(3, dtype=torch.float64)
    init = torch.tensor([0.0, -math.inf, -math.inf], dtype=torch.float64)
    proc = StreamingHMMProcessor((tr, init), "fixed_lag", lag=2)
    assert "fixed_lag" in repr(proc) and "lag=2" in repr(proc) and proc.num_states == 3
    r = proc.process_chunk(torch.zeros(2, 5, 3, dtype=torch.float64))
    assert isinstance(r, StreamingResult) and r.compute_ms >= 0
    assert r.frame_indices.dtype == torch.long and r.num_decided.tolist() == [3, 3]
    assert r.log_score.dtype == torch.float64 and r.frames_seen.tolist() == [5, 5]
    assert r.delays[:, :3].tolist() == [[4, 3, 2]] * 2  # frame 2 waited for frame 4, frames 0 and 1 for the chunk
    assert not r.forced.any()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("mode,kw", [("viterbi", {}), ("viterbi", {"max_delay": 2}), ("filter", {}),
                                     ("fixed_lag", {"lag": 3})])
def test_cuda_equals_cpu(mode, kw):
    p = random_problem(np.random.default_rng(2), 3, 40, 6, storage="sparse", width=3, final="shared")
    cpu, gpu = torch_inputs(p), torch_inputs(p, device="cuda")
    a = run_stream(StreamingHMMProcessor((cpu["transitions"], cpu["log_init"], cpu["log_final"]), mode, **kw),
                   cpu["log_emissions"], [3, 17, 18])
    b = StreamingHMMProcessor((gpu["transitions"], gpu["log_init"], gpu["log_final"]), mode, **kw)
    r = b.process_chunk(gpu["log_emissions"][:, :3])
    assert r.states.device.type == "cuda"
    b.reset()
    got = run_stream(b, gpu["log_emissions"].cpu().cuda(), [3, 17, 18])
    assert torch.equal(a[0], got[0].cpu())
    if a[1] is not None:
        np.testing.assert_allclose(a[1].numpy(), got[1].cpu().numpy(), atol=1e-10)


# ---------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------

TR = left_to_right(3, dtype=torch.float64)
INIT = torch.tensor([0.0, -math.inf, -math.inf], dtype=torch.float64)


def test_settings_errors():
    with pytest.raises(HMMValueError, match=r"mode must be one of \('viterbi', 'filter', 'fixed_lag'\); got 'smooth'"):
        StreamingHMMProcessor((TR, INIT), "smooth")
    with pytest.raises(HMMValueError, match=r"mode='fixed_lag' needs lag"):
        StreamingHMMProcessor((TR, INIT), "fixed_lag")
    with pytest.raises(HMMValueError, match=r"lag is for mode='fixed_lag'; got lag=2 with mode='viterbi'"):
        StreamingHMMProcessor((TR, INIT), lag=2)
    with pytest.raises(HMMValueError, match=r"max_delay is for mode='viterbi'; got max_delay=2 with mode='filter'"):
        StreamingHMMProcessor((TR, INIT), "filter", max_delay=2)
    with pytest.raises(HMMValueError, match=r"beam is for mode='viterbi'; got beam=5.0 with mode='fixed_lag'"):
        StreamingHMMProcessor((TR, INIT), "fixed_lag", lag=1, beam=5.0)
    with pytest.raises(HMMValueError, match=r"beam must be a positive finite number; got 0"):
        StreamingHMMProcessor((TR, INIT), beam=0)
    with pytest.raises(HMMValueError, match=r"beam must be a positive finite number; got inf"):
        StreamingHMMProcessor((TR, INIT), beam=float("inf"))
    with pytest.raises(HMMValueError, match=r"lag must be None or an int >= 0; got -1"):
        StreamingHMMProcessor((TR, INIT), "fixed_lag", lag=-1)
    with pytest.raises(HMMTypeError, match=r"max_delay must be None or an int >= 0; got float"):
        StreamingHMMProcessor((TR, INIT), max_delay=2.5)
    with pytest.raises(HMMTypeError, match=r"max_delay must be None or an int >= 0; got bool"):
        StreamingHMMProcessor((TR, INIT), max_delay=True)
    proc = StreamingHMMProcessor((TR, INIT), "fixed_lag", lag=1)
    with pytest.raises(HMMValueError, match=r"lag must be an int >= 0 in mode='fixed_lag'; got None"):
        proc.lag = None


def test_source_errors():
    with pytest.raises(HMMTypeError, match=r"source must be an HMM / MixtureGaussianHMM / HMMLayer or a tuple"):
        StreamingHMMProcessor("model")
    with pytest.raises(HMMTypeError, match=r"source must be an HMM, MixtureGaussianHMM or HMMLayer .*got HSMM"):
        StreamingHMMProcessor(HSMM(Gaussian(2, 1), "poisson", max_duration=4))
    with pytest.raises(HMMValueError, match=r"streaming needs static transitions"):
        StreamingHMMProcessor((Dense(torch.zeros(1, 4, 3, 3, dtype=torch.float64)), INIT))
    with pytest.raises(HMMDimensionError, match=r"streaming needs transitions shared by the streams; got batched Dense"):
        StreamingHMMProcessor((Dense(torch.zeros(2, 3, 3, dtype=torch.float64)), INIT))
    with pytest.raises(HMMDimensionError, match=r"log_init must be \(K,\) or \(B, K\)"):
        StreamingHMMProcessor((TR, INIT[:2]))
    with pytest.raises(HMMDtypeError, match=r"log_init must have the dtype of log_emissions \(torch.float64\)"):
        StreamingHMMProcessor((TR, INIT.float()))
    with pytest.raises(HMMValueError, match=r"log_final"):
        StreamingHMMProcessor((TR, INIT, torch.tensor([0.0, float("nan"), 0.0], dtype=torch.float64)))
    with pytest.raises(HMMValueError, match=r"transitions.log_probs"):
        StreamingHMMProcessor((Banded(torch.tensor([[0.0, float("nan")]] * 3, dtype=torch.float64)), INIT))


def test_chunk_errors():
    proc = StreamingHMMProcessor((TR, INIT))
    with pytest.raises(HMMValueError, match=r"flush\(\) needs a stream: call process_chunk first"):
        proc.flush()
    with pytest.raises(HMMDimensionError, match=r"chunk log-emissions must be \(B, t, K\) with K == 3; got \(1, 4, 2\)"):
        proc.process_chunk(torch.zeros(1, 4, 2, dtype=torch.float64))
    with pytest.raises(HMMDtypeError, match=r"chunk log-emissions must have the model's dtype \(torch.float64\); got torch.float32"):
        proc.process_chunk(torch.zeros(1, 4, 3))
    with pytest.raises(HMMValueError, match=r"chunk must have at least one frame; got shape \(1, 0, 3\)"):
        proc.process_chunk(torch.zeros(1, 0, 3, dtype=torch.float64))
    with pytest.raises(HMMValueError, match=r"NaN"):
        proc.process_chunk(torch.full((1, 2, 3), float("nan"), dtype=torch.float64))
    with pytest.raises(HMMDimensionError, match=r"chunk must be \(B, T, K\)|chunk must be"):
        proc.process_chunk(torch.zeros(4, 3, dtype=torch.float64))
    proc.process_chunk(torch.zeros(2, 4, 3, dtype=torch.float64))
    with pytest.raises(HMMDimensionError, match=r"chunk must keep the batch size of the streams, B == 2; got shape \(3, 4, 3\)"):
        proc.process_chunk(torch.zeros(3, 4, 3, dtype=torch.float64))
    with pytest.raises(HMMValueError, match=r"lengths must be in \[0, t\] = \[0, 4\]; got values in \[0, 5\]"):
        proc.process_chunk(torch.zeros(2, 4, 3, dtype=torch.float64), torch.tensor([0, 5]))
    with pytest.raises(HMMDimensionError, match=r"lengths must be \(B,\) with B == 2"):
        proc.process_chunk(torch.zeros(2, 4, 3, dtype=torch.float64), torch.tensor([1]))
    proc.flush()  # a new batch size after flush is fine
    assert proc.process_chunk(torch.zeros(3, 1, 3, dtype=torch.float64)).frames_seen.tolist() == [1, 1, 1]
    model = _gaussian_hmm()
    with pytest.raises(HMMDimensionError, match=r"chunk must be \(B, t, D\) features; got shape \(5, 2\)"):
        StreamingHMMProcessor(model).process_chunk(torch.zeros(5, 2, dtype=torch.float64))


def test_extreme_but_finite_scores():
    """Scores of +-1e300 (float64) and -3e38 (float32) decide like offline Viterbi, without NaN."""
    for dtype, big in ((torch.float64, 1e300), (torch.float32, 3e38)):
        e = torch.zeros(1, 8, 3, dtype=dtype)
        e[0, ::2, 0] = -big
        e[0, 1::2, 1] = -big
        tr = Dense(torch.log(torch.full((3, 3), 1 / 3, dtype=dtype)))
        init = torch.full((3,), -math.log(3), dtype=dtype)
        for mode, kw in (("viterbi", {}), ("filter", {}), ("fixed_lag", {"lag": 2})):
            states, post, _, _, _ = run_stream(StreamingHMMProcessor((tr, init), mode, **kw), e, [3])
            assert (states == kernel.viterbi(e, tr, init)[0]).all() or mode != "viterbi"
            assert (states >= 0).all()
            if post is not None:
                assert torch.isfinite(post).all()
