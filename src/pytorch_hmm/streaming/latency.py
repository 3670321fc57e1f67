"""``AdaptiveLatencyController``: chunk size and look-ahead chosen from measured compute times.

A frame decoded in a stream waits for three things: its chunk to fill (up to ``chunk - 1``
frames), the decoder's look-ahead (``lag`` frames: fixed-lag smoothing, or Viterbi's
``max_delay``) and the computation of its chunk. The controller keeps the worst of these,

    latency = (chunk - 1) * frame_ms + lag * frame_ms + compute_ms (95th percentile of recent chunks),

at or under ``target_latency_ms`` and the decoder faster than real time (``compute_ms <=
headroom * chunk * frame_ms``). After each measured chunk it makes one move:

1. falling behind real time: double the chunk (fewer calls, less overhead per frame), or at the
   largest chunk shorten the look-ahead by one frame;
2. over the target: shorten the look-ahead by the frames it is over, else shrink the chunk;
3. at least one frame under the target: lengthen the look-ahead by one frame (more context,
   more accurate decisions);
4. otherwise keep both.

After a change of chunk size the old measurements no longer apply and are dropped. Decisions
depend only on the measured times, so a fake clock makes them reproducible in tests.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Tuple

from ..errors import HMMTypeError, HMMValueError
from ..validation import check_number

__all__ = ["AdaptiveLatencyController", "LatencyDecision"]


@dataclass(frozen=True)
class LatencyDecision:
    """One step of :class:`AdaptiveLatencyController`: the settings for the next chunk and why."""

    chunk_frames: int
    lag_frames: int
    latency_ms: float
    compute_ms: float
    reason: str  # "behind real time", "over target", "under target", "steady"


def _bounds(value, name: str) -> Tuple[int, int]:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise HMMTypeError(f"{name} must be a (min, max) pair of ints; got {value!r}") from None
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, int):
            raise HMMTypeError(f"{name} must be a (min, max) pair of ints; got {value!r}")
    if lo > hi:
        raise HMMValueError(f"{name} must have min <= max; got {value!r}")
    return lo, hi


class AdaptiveLatencyController:
    """Adapts chunk size and look-ahead of a streaming decoder to a latency target.

    Args:
        target_latency_ms: the worst frame's latency to aim for (see the module docstring).
        frame_ms: the frame shift (10 ms for 16 kHz audio with hop 160).
        chunk_frames: ``(min, max)`` chunk sizes, min >= 1.
        lag_frames: ``(min, max)`` look-ahead, min >= 0.
        initial_chunk, initial_lag: starting values (default: the smallest chunk, the smallest lag).
        headroom: the share of real time the decoder may use (``0 < headroom <= 1``).
        window: how many recent chunks the compute percentile looks at.
        clock: a function returning seconds (``time.perf_counter``); :meth:`timed` uses it.

    Use ``with controller.timed(): processor.process_chunk(x)``, or pass measured times to
    :meth:`update` (e.g. ``result.compute_ms``); then read ``chunk_frames`` / ``lag_frames``, or
    :meth:`apply` them to a :class:`~pytorch_hmm.streaming.StreamingHMMProcessor`.
    """

    def __init__(self, target_latency_ms: float, *, frame_ms: float = 10.0, chunk_frames: Tuple[int, int] = (1, 10),
                 lag_frames: Tuple[int, int] = (0, 50), initial_chunk: Optional[int] = None,
                 initial_lag: Optional[int] = None, headroom: float = 0.8, window: int = 20,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.target_latency_ms = check_number(target_latency_ms, "target_latency_ms", positive=True)
        self.frame_ms = check_number(frame_ms, "frame_ms", positive=True)
        self.chunk_bounds = _bounds(chunk_frames, "chunk_frames")
        self.lag_bounds = _bounds(lag_frames, "lag_frames")
        if self.chunk_bounds[0] < 1:
            raise HMMValueError(f"chunk_frames must have min >= 1; got {chunk_frames!r}")
        if self.lag_bounds[0] < 0:
            raise HMMValueError(f"lag_frames must have min >= 0; got {lag_frames!r}")
        self.headroom = check_number(headroom, "headroom", positive=True)
        if self.headroom > 1:
            raise HMMValueError(f"headroom must be in (0, 1]; got {headroom}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise HMMValueError(f"window must be an int >= 1; got {window!r}")
        if not callable(clock):
            raise HMMTypeError(f"clock must be a function returning seconds; got {type(clock).__name__}")
        self.window, self.clock = window, clock
        self.chunk_frames = self._within(initial_chunk, self.chunk_bounds, "initial_chunk")
        self.lag_frames = self._within(initial_lag, self.lag_bounds, "initial_lag")
        self._recent: List[float] = []
        self.history: List[LatencyDecision] = []

    @staticmethod
    def _within(value, bounds, name: str) -> int:
        if value is None:
            return bounds[0]
        if isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
            raise HMMValueError(f"{name} must be an int in [{bounds[0]}, {bounds[1]}]; got {value!r}")
        return value

    def compute_ms(self) -> float:
        """95th percentile (nearest rank) of the recent chunks' compute times; 0 before any."""
        if not self._recent:
            return 0.0
        ordered = sorted(self._recent)
        return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]

    def latency_ms(self) -> float:
        """The worst frame's latency with the current settings and measurements."""
        return (self.chunk_frames - 1 + self.lag_frames) * self.frame_ms + self.compute_ms()

    @contextmanager
    def timed(self) -> Iterator[None]:
        """Time the block with ``clock`` and :meth:`update` with it."""
        start = self.clock()
        yield
        self.update((self.clock() - start) * 1000.0)

    def update(self, compute_ms: float) -> LatencyDecision:
        """Record one chunk's compute time (ms, at the current chunk size) and choose the next settings."""
        compute_ms = check_number(compute_ms, "compute_ms", minimum=0.0)
        self._recent = (self._recent + [compute_ms])[-self.window:]
        compute = self.compute_ms()
        chunk, lag = self.chunk_frames, self.lag_frames
        over = self.latency_ms() - self.target_latency_ms
        behind = compute > self.headroom * chunk * self.frame_ms
        if behind and chunk < self.chunk_bounds[1]:
            reason, chunk = "behind real time", min(2 * chunk, self.chunk_bounds[1])
        elif behind:  # the chunk is at its largest: less look-ahead is less work (fixed lag), never more
            reason, lag = "behind real time", max(lag - 1, self.lag_bounds[0])
        elif over > 0 and lag > self.lag_bounds[0]:
            reason, lag = "over target", max(lag - math.ceil(over / self.frame_ms), self.lag_bounds[0])
        elif over > 0 and chunk > self.chunk_bounds[0]:
            reason, chunk = "over target", chunk - 1
        elif over <= -self.frame_ms and lag < self.lag_bounds[1]:
            reason, lag = "under target", lag + 1
        else:
            reason = "steady"
        latency = (chunk - 1 + lag) * self.frame_ms + compute  # the new settings, with the last measurements
        if chunk != self.chunk_frames:
            self._recent = []  # measured at another chunk size
        self.chunk_frames, self.lag_frames = chunk, lag
        decision = LatencyDecision(chunk, lag, latency, compute, reason)
        self.history.append(decision)
        return decision

    def apply(self, processor) -> None:
        """Give ``processor`` the current look-ahead: ``lag`` in ``"fixed_lag"`` mode, ``max_delay`` in
        ``"viterbi"`` mode (then an approximation, see the processor); the filter has none."""
        if processor.mode == "fixed_lag":
            processor.lag = self.lag_frames
        elif processor.mode == "viterbi":
            processor.max_delay = self.lag_frames

    def __repr__(self) -> str:
        return (f"AdaptiveLatencyController(target_latency_ms={self.target_latency_ms}, chunk_frames={self.chunk_frames}, "
                f"lag_frames={self.lag_frames})")
