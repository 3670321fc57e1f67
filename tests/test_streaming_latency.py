"""AdaptiveLatencyController: deterministic decisions from measured times (a fake clock), bounds, errors."""

from __future__ import annotations

import math

import pytest
import torch

from pytorch_hmm.errors import HMMTypeError, HMMValueError
from pytorch_hmm.streaming import AdaptiveLatencyController, StreamingHMMProcessor
from pytorch_hmm.transitions import left_to_right


class FakeClock:
    """Seconds that advance only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_rule_with_a_fake_clock():
    clock = FakeClock()
    c = AdaptiveLatencyController(50.0, frame_ms=10.0, chunk_frames=(1, 8), lag_frames=(0, 4), clock=clock)
    assert (c.chunk_frames, c.lag_frames) == (1, 0)
    # 12 ms of compute for a 10 ms chunk (headroom 0.8 -> 8 ms allowed): behind real time, chunk doubles
    with c.timed():
        clock.now += 0.012
    d = c.history[-1]
    assert (d.chunk_frames, d.lag_frames, d.reason) == (2, 0, "behind real time")
    assert d.compute_ms == pytest.approx(12.0)
    # at chunk 2 (20 ms, 16 ms allowed), 5 ms: latency (2-1+lag)*10 + 5 = 15, 25, 35 is a frame or more
    # under 50: the lag grows one frame per chunk; at 45 (lag 3) it is less than a frame under: steady
    for lag in (1, 2, 3):
        d = c.update(5.0)
        assert (d.chunk_frames, d.lag_frames, d.reason) == (2, lag, "under target")
    d = c.update(5.0)
    assert (d.chunk_frames, d.lag_frames, d.reason) == (2, 3, "steady")
    assert c.latency_ms() == pytest.approx((2 - 1 + 3) * 10 + 5)
    # a slower chunk (15.9 ms < 16 ms: still real time) lifts the 95th percentile: (1+3)*10 + 15.9 is
    # 5.9 ms over the target: the lag drops by ceil(5.9 / 10) = 1 frame
    d = c.update(15.9)
    assert (d.chunk_frames, d.lag_frames, d.reason) == (2, 2, "over target")
    assert d.latency_ms == pytest.approx((2 - 1 + 2) * 10 + 15.9)
    c = AdaptiveLatencyController(50.0, lag_frames=(0, 2), initial_lag=2)
    assert c.update(1.0).reason == "steady"  # 21 ms: under, but the lag is at its maximum


def test_over_target_without_lag_shrinks_the_chunk_and_respects_bounds():
    c = AdaptiveLatencyController(30.0, chunk_frames=(1, 10), lag_frames=(0, 0), initial_chunk=5, window=1)
    d = c.update(1.0)  # latency (5-1)*10 + 1 = 41 > 30, no lag to cut: chunk 4
    assert (d.chunk_frames, d.reason) == (4, "over target")
    assert c.update(1.0).chunk_frames == 3  # 31 > 30
    d = c.update(1.0)  # (3-1)*10 + 1 = 21 <= 30 and the lag bounded at 0: steady
    assert (d.chunk_frames, d.reason) == (3, "steady")
    c = AdaptiveLatencyController(30.0, chunk_frames=(1, 4), initial_chunk=4)
    d = c.update(1000.0)  # behind real time with the chunk at its maximum and no lag: nothing left to cut
    assert (d.chunk_frames, d.lag_frames, d.reason) == (4, 0, "behind real time")


def test_behind_real_time_at_the_largest_chunk_never_lengthens_the_look_ahead():
    c = AdaptiveLatencyController(1000.0, chunk_frames=(1, 4), lag_frames=(0, 20), initial_chunk=4, initial_lag=3)
    lags = [c.update(60.0).lag_frames for _ in range(5)]  # 60 ms of compute per 40 ms chunk
    assert lags == [2, 1, 0, 0, 0]
    assert all(d.reason == "behind real time" for d in c.history)
    d = c.update(1.0)  # caught up (the 95th percentile still 60 ms of the window): still behind
    assert d.reason == "behind real time"


def test_reported_latency_counts_the_last_compute_after_a_chunk_change():
    c = AdaptiveLatencyController(1000.0, chunk_frames=(1, 8))
    d = c.update(9.0)  # behind at chunk 1: chunk 2, latency estimate (2 - 1) * 10 + 9
    assert (d.chunk_frames, d.latency_ms) == (2, pytest.approx(19.0))


def test_decisions_are_deterministic_given_the_times():
    times = [3.0, 9.5, 2.0, 30.0, 4.0, 4.0, 1.0, 12.0, 0.5, 7.0] * 3
    runs = []
    for _ in range(2):
        c = AdaptiveLatencyController(60.0, chunk_frames=(1, 10), lag_frames=(0, 20), window=4)
        runs.append([(d.chunk_frames, d.lag_frames, d.reason) for d in map(c.update, times)])
    assert runs[0] == runs[1]
    assert all(1 <= ch <= 10 and 0 <= lag <= 20 for ch, lag, _ in runs[0])


def test_compute_percentile_and_window():
    c = AdaptiveLatencyController(1000.0, window=3, chunk_frames=(5, 5))
    assert c.compute_ms() == 0.0
    for ms in (1.0, 2.0, 3.0, 10.0):
        c.update(ms)
    assert c.compute_ms() == 10.0  # nearest-rank p95 of the last 3: [2, 3, 10]
    c.update(1.0)
    c.update(1.0)
    assert c.compute_ms() == 10.0
    c.update(1.0)
    assert c.compute_ms() == 1.0


def test_apply_sets_lag_or_max_delay():
    tr = left_to_right(3, dtype=torch.float64)
    init = torch.tensor([0.0, -math.inf, -math.inf], dtype=torch.float64)
    c = AdaptiveLatencyController(100.0, lag_frames=(2, 9), initial_lag=7)
    lagged = StreamingHMMProcessor((tr, init), "fixed_lag", lag=0)
    c.apply(lagged)
    assert lagged.lag == 7
    viterbi = StreamingHMMProcessor((tr, init))
    c.apply(viterbi)
    assert viterbi.max_delay == 7
    filt = StreamingHMMProcessor((tr, init), "filter")
    c.apply(filt)
    assert filt.lag is None and filt.max_delay is None
    assert "target_latency_ms=100.0" in repr(c)


def test_errors():
    with pytest.raises(HMMValueError, match=r"target_latency_ms must be a positive finite number; got 0"):
        AdaptiveLatencyController(0)
    with pytest.raises(HMMValueError, match=r"frame_ms must be a positive finite number; got nan"):
        AdaptiveLatencyController(10, frame_ms=float("nan"))
    with pytest.raises(HMMTypeError, match=r"chunk_frames must be a \(min, max\) pair of ints; got 3"):
        AdaptiveLatencyController(10, chunk_frames=3)
    with pytest.raises(HMMTypeError, match=r"lag_frames must be a \(min, max\) pair of ints; got \(0, 2.5\)"):
        AdaptiveLatencyController(10, lag_frames=(0, 2.5))
    with pytest.raises(HMMValueError, match=r"chunk_frames must have min <= max; got \(5, 2\)"):
        AdaptiveLatencyController(10, chunk_frames=(5, 2))
    with pytest.raises(HMMValueError, match=r"chunk_frames must have min >= 1; got \(0, 2\)"):
        AdaptiveLatencyController(10, chunk_frames=(0, 2))
    with pytest.raises(HMMValueError, match=r"lag_frames must have min >= 0; got \(-1, 2\)"):
        AdaptiveLatencyController(10, lag_frames=(-1, 2))
    with pytest.raises(HMMValueError, match=r"headroom must be in \(0, 1\]; got 1.5"):
        AdaptiveLatencyController(10, headroom=1.5)
    with pytest.raises(HMMValueError, match=r"window must be an int >= 1; got 0"):
        AdaptiveLatencyController(10, window=0)
    with pytest.raises(HMMTypeError, match=r"clock must be a function returning seconds; got float"):
        AdaptiveLatencyController(10, clock=1.0)
    with pytest.raises(HMMValueError, match=r"initial_chunk must be an int in \[1, 10\]; got 11"):
        AdaptiveLatencyController(10, initial_chunk=11)
    with pytest.raises(HMMValueError, match=r"initial_lag must be an int in \[0, 50\]; got -1"):
        AdaptiveLatencyController(10, initial_lag=-1)
    c = AdaptiveLatencyController(10)
    with pytest.raises(HMMValueError, match=r"compute_ms must be a finite number >= 0; got -1.0"):
        c.update(-1.0)
    with pytest.raises(HMMValueError, match=r"compute_ms must be a finite number >= 0; got inf"):
        c.update(float("inf"))
