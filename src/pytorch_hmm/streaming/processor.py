"""``StreamingHMMProcessor``: decode a stream chunk by chunk with bounded, measured latency.

Three modes, all on the kernel's online recursions (:mod:`pytorch_hmm.kernel.online`):

* ``"viterbi"``: exact online Viterbi. A frame is decided as soon as every surviving best path
  agrees on its state, so the decided states equal offline :func:`~pytorch_hmm.kernel.viterbi`
  however the stream is cut into chunks (for streams the model can explain: frames decided
  before a stream turns out impossible keep their states, where offline Viterbi gives ``-1``). Two approximations bound the wait (see
  :mod:`pytorch_hmm.kernel.online`): ``beam`` drops the states that fall more than ``beam``
  below the best after each frame, so the paths coalesce sooner; ``max_delay=n`` decides every
  frame ``n`` frames later at the latest, as the best path's state then (``forced`` reports
  where it fired).
* ``"filter"``: every frame decided at once with its filtered posterior ``p(z_t | x_{1:t})``
  (the normalised forward variable).
* ``"fixed_lag"``: frame ``t`` decided when frame ``t + lag`` arrives, with the fixed-lag
  smoothed posterior ``p(z_t | x_{1:t+lag})`` (a forward-backward pass over the ``lag + 1``
  frames, started from the filter's predictive prior). ``lag`` at least the stream's length
  gives the offline smoother.

``flush()`` decides the frames still waiting, using the model's end constraint (``log_final``)
as the offline routines do, and starts a new stream.
"""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import torch

from ..errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from ..kernel.inputs import as_structure, check_state_vector
from ..kernel.online import OnlineFilter, OnlineViterbi
from ..transitions import Sparse
from ..threads import torch_threads_for
from ..validation import check_finite_or_neginf, check_frame_scores, check_lengths, check_number, check_tensor

__all__ = ["StreamingHMMProcessor", "StreamingResult", "MODES"]

MODES = ("viterbi", "filter", "fixed_lag")
# Viterbi and fixed-lag chunks are processed STEP_FRAMES frames at a time, deciding after each step
STEP_FRAMES = 64


def _compact(frames: torch.Tensor, *others: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Move each row's decided entries (``frames >= 0``) to its front, in order, and drop the padding
    columns: ``frames`` ``(B, N)`` and ``others`` ``(B, N)`` / ``(B, N, K)`` of several steps laid side by side."""
    valid = frames >= 0
    order = torch.argsort((~valid).to(torch.uint8), dim=1, stable=True)[:, :int(valid.sum(1).max()) if frames.numel() else 0]
    take = lambda x: x.gather(1, order if x.ndim == 2 else order[:, :, None].expand(-1, -1, x.shape[-1]))  # noqa: E731
    return (take(frames),) + tuple(take(x) for x in others)


@dataclass
class StreamingResult:
    """The frames one call of :meth:`StreamingHMMProcessor.process_chunk` (or ``flush``) decided.

    Attributes:
        frame_indices: ``(B, N)`` int64 stream frame index of each decided frame (0 = the
            stream's first frame), ``-1`` past ``num_decided[b]``.
        states: ``(B, N)`` int64 decided states; ``-1`` past ``num_decided[b]`` and for frames of
            a stream no path of the model can explain.
        posteriors: ``(B, N, K)`` filtered (``"filter"``) or fixed-lag smoothed (``"fixed_lag"``)
            state probabilities of the decided frames (0 rows for padding); ``None`` for Viterbi.
        num_decided: ``(B,)`` int64.
        forced: ``(B, N)`` bool, True where ``max_delay`` decided the frame before the paths agreed.
        log_score: ``(B,)`` float64: ``log p(x_{1:t})`` of the frames seen (filter, fixed lag),
            the best path's log score so far (Viterbi); after ``flush`` with the end weights,
            i.e. the offline ``log_partition`` / Viterbi score; 0 for a stream with no frames yet.
        frames_seen: ``(B,)`` int64 frames of each stream processed so far.
        compute_ms: wall time of the call, in milliseconds (CUDA work included).
    """

    frame_indices: torch.Tensor
    states: torch.Tensor
    posteriors: Optional[torch.Tensor]
    num_decided: torch.Tensor
    forced: torch.Tensor
    log_score: torch.Tensor
    frames_seen: torch.Tensor
    compute_ms: float

    @property
    def delays(self) -> torch.Tensor:
        """``(B, N)`` int64 frames between each decided frame and the newest frame seen when it was decided (``-1`` padding)."""
        delay = self.frames_seen[:, None] - 1 - self.frame_indices
        return torch.where(self.frame_indices >= 0, delay, -1)


def _check_count_or_none(value, name: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool):
        raise HMMTypeError(f"{name} must be None or an int >= 0; got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise HMMTypeError(f"{name} must be None or an int >= 0; got {type(value).__name__}") from None
    if value < 0:
        raise HMMValueError(f"{name} must be None or an int >= 0; got {value}")
    return value


class StreamingHMMProcessor:
    """Online decoding of ``B`` streams that advance together, chunk by chunk.

    Args:
        source: an :class:`~pytorch_hmm.HMM` (or ``MixtureGaussianHMM``): chunks are features
            ``(B, t, D)`` scored by its emission; an :class:`~pytorch_hmm.HMMLayer`: chunks are
            its ``(B, t, K)`` scores; or ``(transitions, log_init)`` /
            ``(transitions, log_init, log_final)``: chunks are log-emissions ``(B, t, K)``.
            Transitions must be static and shared by the streams (``Dense`` ``(K, K)``,
            ``Banded`` ``(K, W)``, ``Sparse`` ``(K, P)``, or a ``(K, K)`` log-probability tensor).
            A model's parameters are read when the processor is built and at :meth:`reset`.
        mode: ``"viterbi"``, ``"filter"`` or ``"fixed_lag"``.
        lag: frames of look-ahead in ``"fixed_lag"`` mode (required there, an int >= 0).
        max_delay: ``"viterbi"`` only: decide every frame at the latest this many frames later,
            as the best path's state then (``None``: exact, unbounded wait). The output may then
            hold a move the model does not allow where a forced frame meets a later decision.
        beam: ``"viterbi"`` only: drop the states scoring more than ``beam`` (log-probability)
            below the best after each frame (``None``: keep every state). Exact unless the best
            path falls out of the beam; on left-to-right chains it is what lets the paths agree
            before the end of the stream.

    ``process_chunk(chunk, lengths=None)`` takes the next ``t`` frames of every stream
    (``lengths`` ``(B,)``: stream ``b`` has only its first ``lengths[b]``, 0 allowed) and
    returns a :class:`StreamingResult`; ``flush()`` decides the rest and resets; ``reset()``
    starts new streams. Everything stays on the model's device.
    """

    def __init__(self, source, mode: str = "viterbi", lag: Optional[int] = None, max_delay: Optional[int] = None,
                 beam: Optional[float] = None) -> None:
        if mode not in MODES:
            raise HMMValueError(f"mode must be one of {MODES}; got {mode!r}")
        self.mode = mode
        if mode == "fixed_lag" and lag is None:
            raise HMMValueError("mode='fixed_lag' needs lag (an int >= 0: frames of look-ahead)")
        if mode != "fixed_lag" and lag is not None:
            raise HMMValueError(f"lag is for mode='fixed_lag'; got lag={lag!r} with mode={mode!r}")
        if mode != "viterbi" and max_delay is not None:
            raise HMMValueError(f"max_delay is for mode='viterbi'; got max_delay={max_delay!r} with mode={mode!r}")
        if mode != "viterbi" and beam is not None:
            raise HMMValueError(f"beam is for mode='viterbi'; got beam={beam!r} with mode={mode!r}")
        self.lag = lag
        self.max_delay = max_delay
        self.beam = None if beam is None else check_number(beam, "beam", positive=True)
        self._source = source
        self.reset()  # reads (and checks) the source

    # --- settings ---

    @property
    def lag(self) -> Optional[int]:
        """Frames of look-ahead of ``"fixed_lag"`` mode; may change between chunks."""
        return self._lag

    @lag.setter
    def lag(self, value: Optional[int]) -> None:
        value = _check_count_or_none(value, "lag")
        if self.mode == "fixed_lag" and value is None:
            raise HMMValueError("lag must be an int >= 0 in mode='fixed_lag'; got None")
        self._lag = value

    @property
    def max_delay(self) -> Optional[int]:
        """Viterbi mode's bound on the frames a decision may wait (``None``: exact); may change between chunks."""
        return self._max_delay

    @max_delay.setter
    def max_delay(self, value: Optional[int]) -> None:
        self._max_delay = _check_count_or_none(value, "max_delay")

    @property
    def num_states(self) -> int:
        return self._log_init.shape[-1]

    # --- the model ---

    def _read_source(self) -> None:
        from ..models import HMM, HMMLayer  # (models import the kernel; streaming sits above both)

        src = self._source
        self._score = None
        if isinstance(src, HMM):
            with torch.no_grad():
                transitions, log_init, log_final = src._chain(), src.log_init, src.log_final
            self._score = src.log_emissions
        elif isinstance(src, HMMLayer):
            with torch.no_grad():
                transitions, log_init, log_final = src.transitions, src.initial.log_probs, None
        elif isinstance(src, (tuple, list)) and len(src) in (2, 3):
            transitions, log_init = src[0], src[1]
            log_final = src[2] if len(src) == 3 else None
        elif isinstance(src, torch.nn.Module):
            raise HMMTypeError(f"source must be an HMM, MixtureGaussianHMM or HMMLayer (first-order chains); got "
                               f"{type(src).__name__} (streaming of semi-Markov models is not supported)")
        else:
            raise HMMTypeError("source must be an HMM / MixtureGaussianHMM / HMMLayer or a tuple (transitions, log_init"
                               f"[, log_final]); got {type(src).__name__}")
        structure = as_structure(transitions)
        if structure.time_varying:
            raise HMMValueError("streaming needs static transitions (the same at every frame); got time-varying "
                                f"{type(structure).__name__} log_probs of shape {tuple(structure.log_probs.shape)}")
        if structure.batch_size is not None:
            raise HMMDimensionError(
                f"streaming needs transitions shared by the streams; got batched {type(structure).__name__} log_probs "
                f"of shape {tuple(structure.log_probs.shape)}", expected_shape=tuple(structure.log_probs.shape[1:]),
                actual_shape=structure.log_probs.shape, suggestion="run one processor per transition matrix")
        k = structure.num_states
        like = torch.empty((1, 1, k), dtype=structure.dtype, device=structure.device)
        log_init = check_state_vector(torch.as_tensor(log_init) if not isinstance(log_init, torch.Tensor) else log_init,
                                      "log_init", like)[0]
        if log_final is not None:
            log_final = check_state_vector(log_final, "log_final", like)[0]
        check_finite_or_neginf(structure.log_probs, "transitions.log_probs", None)
        check_finite_or_neginf(log_init, "log_init", None)
        if log_final is not None:
            check_finite_or_neginf(log_final, "log_final", None)
        lp = structure.log_probs.detach()  # a snapshot: the processor never trains the model
        self._structure = Sparse(structure.predecessors, lp) if isinstance(structure, Sparse) else type(structure)(lp)
        self._log_init, self._log_final = log_init.detach(), None if log_final is None else log_final.detach()

    def reset(self) -> None:
        """Forget the streams (a new batch may start; the model's parameters are read again)."""
        self._read_source()
        self._batch = None
        self._filter = self._viterbi = None
        self._frames = None
        self._decided = None
        self._num_forced = None

    @property
    def num_forced(self) -> Optional[torch.Tensor]:
        """``(B,)`` int64 frames ``max_delay`` decided since the streams started (``None`` before the first chunk)."""
        return self._num_forced

    # --- chunks ---

    def _start(self, b: int) -> None:
        self._batch = b
        dev = self._log_init.device
        if self.mode == "viterbi":
            self._viterbi = OnlineViterbi(self._structure, self._log_init, b)
        else:
            self._filter = OnlineFilter(self._structure, self._log_init, b)
            # pending frames of the fixed-lag smoother: [log-emissions | log-filtered | log p(x_t | x_<t)]
            self._frames = torch.zeros((b, 0, 2 * self.num_states + 1), dtype=self._log_init.dtype, device=dev)
            self._decided = torch.zeros(b, dtype=torch.long, device=dev)
        self._num_forced = torch.zeros(b, dtype=torch.long, device=dev)

    def _log_emissions(self, chunk: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
        if self._score is not None:
            check_tensor(chunk, "chunk", "(B, t, D) features")
            if chunk.ndim != 3:
                raise HMMDimensionError(f"chunk must be (B, t, D) features; got shape {tuple(chunk.shape)}",
                                        expected_shape=("B", "t", "D"), actual_shape=chunk.shape,
                                        suggestion="add a batch axis (chunk[None]) for one stream")
            e = self._score(chunk) if lengths is None else self._score(chunk, lengths.clamp(min=1))
        else:
            e = chunk
        e = check_frame_scores(e, "chunk" if self._score is None else "log_emissions of chunk", "K", "state")
        if e.shape[-1] != self.num_states:
            raise HMMDimensionError(f"chunk log-emissions must be (B, t, K) with K == {self.num_states}; got {tuple(e.shape)}",
                                    expected_shape=("B", "t", self.num_states), actual_shape=e.shape)
        if e.dtype != self._log_init.dtype:
            raise HMMDtypeError(f"chunk log-emissions must have the model's dtype ({self._log_init.dtype}); got {e.dtype}")
        if e.device != self._log_init.device:
            raise HMMDeviceError(f"chunk must be on the model's device ({self._log_init.device}); got {e.device}")
        return e.detach()

    def _check_lengths(self, lengths, b: int, t: int) -> torch.Tensor:
        return check_lengths(lengths, "lengths", b, t, self._log_init.device, low=0, limit_name="t")

    def _work(self, frames: int) -> float:
        """Inner-loop operations of ``frames`` frames of every stream (a dense chain's bound), for the thread rule."""
        k = self.num_states
        return frames * k * k * (self.lag + 1 if self.mode == "fixed_lag" else 1)

    def process_chunk(self, chunk: torch.Tensor, lengths=None) -> StreamingResult:
        """Take the next frames of every stream and return the frames this decided.

        Args:
            chunk: ``(B, t, D)`` features (with a model) or ``(B, t, K)`` log-emissions.
            lengths: ``(B,)`` frames of ``chunk`` that belong to each stream (``None``: all ``t``).

        Small chunks run their torch ops on one thread (``pytorch_hmm.threads``: a second thread
        costs more than it gives there, and much more beside busy processes); the caller's thread
        count is left as it was.
        """
        clock = time.perf_counter()
        frames = chunk.shape[0] * chunk.shape[1] if isinstance(chunk, torch.Tensor) and chunk.ndim >= 2 else 0
        with torch.no_grad(), torch_threads_for(self._work(frames)):
            return self._process_chunk(chunk, lengths, clock)

    def _process_chunk(self, chunk, lengths, clock: float) -> StreamingResult:
        if isinstance(chunk, torch.Tensor) and chunk.ndim == 3 and chunk.shape[1] == 0:
            raise HMMValueError(f"chunk must have at least one frame; got shape {tuple(chunk.shape)}")
        if isinstance(chunk, torch.Tensor) and chunk.ndim >= 1 and self._batch is not None and chunk.shape[0] != self._batch:
            raise HMMDimensionError(
                f"chunk must keep the batch size of the streams, B == {self._batch}; got shape {tuple(chunk.shape)}",
                expected_shape=(self._batch, "t", "..."), actual_shape=chunk.shape,
                suggestion="call reset() (or flush()) to start streams of another batch size")
        b_guess = chunk.shape[0] if isinstance(chunk, torch.Tensor) and chunk.ndim >= 1 else 0
        t_guess = chunk.shape[1] if isinstance(chunk, torch.Tensor) and chunk.ndim >= 2 else 0
        lens = None if lengths is None else self._check_lengths(lengths, b_guess, t_guess)
        e = self._log_emissions(chunk, lens)
        b, t, _ = e.shape
        given = lens
        lens = torch.full((b,), t, dtype=torch.long, device=e.device) if lens is None else lens
        valid = (torch.arange(t, device=e.device) < lens[:, None])[:, :, None]
        check_finite_or_neginf(e, "chunk log-emissions", valid)
        e = e.masked_fill(~valid, 0.0)  # frames past lengths are never read; keep NaN padding out of the kernel's checks
        if self._batch is None:
            self._start(b)
        if self.mode == "filter":
            return self._smoothed_result(*self._filter_chunk(e, lens), clock=clock)
        # long chunks in steps of STEP_FRAMES frames, deciding after each: the pending buffers stay
        # small (their cost per frame grows with their length), and nothing else changes
        parts = []
        for lo in range(0, t, STEP_FRAMES):
            piece = e[:, lo:lo + STEP_FRAMES]
            piece_lens = None if given is None else (given - lo).clamp(0, piece.shape[1])
            if self.mode == "viterbi":
                self._viterbi.advance(piece, piece_lens, self.max_delay, self.beam)
                parts.append(self._viterbi_frames(self._viterbi.decide()))
            else:
                full = torch.full((b,), piece.shape[1], dtype=torch.long, device=e.device)
                parts.append(self._filter_chunk(piece, full if piece_lens is None else piece_lens))
        decided = _compact(*[torch.cat(column, 1) for column in zip(*parts)]) if len(parts) > 1 else parts[0]
        if self.mode == "viterbi":
            return self._viterbi_result(*decided, clock)
        return self._smoothed_result(*decided, clock=clock)

    def flush(self) -> StreamingResult:
        """Decide every frame still waiting (with the end weights ``log_final``) and reset the processor.

        The states then equal offline Viterbi / the posteriors the offline smoother's when nothing
        was forced; ``log_score`` is the offline Viterbi score / ``log_partition``.
        """
        clock = time.perf_counter()
        if self._batch is None:
            raise HMMValueError("flush() needs a stream: call process_chunk first")
        pending = self._frames.shape[1] if self._frames is not None else 0
        with torch.no_grad(), torch_threads_for(self._work(self._batch * max(pending, 1))):
            return self._flush(clock)

    def _flush(self, clock: float) -> StreamingResult:
        if self.mode == "viterbi":
            result = self._viterbi_result(*self._viterbi_frames(self._viterbi.decide(log_final=self._log_final, flush=True)),
                                          clock, log_final=self._log_final)
        elif self.mode == "filter":
            b = self._batch
            empty = torch.zeros((b, 0), dtype=torch.long, device=self._log_init.device)
            result = self._smoothed_result(empty, empty, torch.zeros((b, 0, self.num_states), dtype=self._log_init.dtype,
                                           device=self._log_init.device), clock=clock, final=True)
        else:
            result = self._smoothed_result(*self._fixed_lag_flush(), clock=clock, final=True)
        self.reset()
        return result

    # --- filter and fixed lag ---

    def _filter_chunk(self, e: torch.Tensor, lens: torch.Tensor):
        """Run the filter over the chunk; returns ``(frame_indices, states, posteriors)`` decided now."""
        first = self._filter.seen.clone()
        before = self._filter.log_evidence.clone()
        filtered, evidence = self._filter.advance(e, lens)
        t = e.shape[1]
        valid = torch.arange(t, device=e.device) < lens[:, None]
        if self.mode == "filter":
            frames = torch.where(valid, first[:, None] + torch.arange(t, device=e.device), -1)
            return frames, *self._states_of(filtered.exp(), valid)
        # each frame's own evidence log p(x_t | x_<t): the backward passes' scaling constants
        norm = evidence - torch.cat([before[:, None], evidence[:, :-1]], 1)
        norm = torch.nan_to_num(norm, nan=0.0, posinf=0.0, neginf=0.0).to(e.dtype)
        self._append(torch.cat([e, filtered, norm[:, :, None]], -1), lens)
        return self._fixed_lag_windows()

    def _append(self, frames: torch.Tensor, lens: torch.Tensor) -> None:
        """Add each stream's valid new ``frames`` ``(B, t, 2K + 1)`` to the right of its pending frames
        (right-aligned: every stream's newest frame in the last column; 0 fills the left)."""
        t = frames.shape[1]
        width = self._frames.shape[1]
        cols = torch.arange(width + t, device=frames.device)
        new_start = width + t - lens[:, None]  # column of each stream's first new frame
        # columns of cat([buffer, chunk]): a new frame from the chunk part, an older one moved right by t - lens
        index = torch.where(cols >= new_start, cols - new_start + width, cols - t + lens[:, None])
        ok = (index >= 0)[:, :, None]
        index = index.clamp(min=0)[:, :, None].expand(-1, -1, frames.shape[-1])
        self._frames = torch.where(ok, torch.cat([self._frames, frames], 1).gather(1, index), 0.0)

    def _pending(self) -> torch.Tensor:
        return self._filter.seen - self._decided

    def _windows(self, count: torch.Tensor, span: int):
        """The ``span`` buffered frames from each stream's next ``count[b]`` undecided frames on, as
        ``(filtered, emissions, norm)`` of shapes ``(B * C, span, K)``, ``(B * C, span)``, and ``C = max count``."""
        width = self._frames.shape[1]
        c = int(count.max()) if count.numel() else 0
        dev = self._frames.device
        start = width - self._pending()  # column of the first undecided frame
        offs = torch.arange(c, device=dev)
        cols = (start[:, None, None] + offs[None, :, None] + torch.arange(span, device=dev)).clamp(0, max(width - 1, 0))
        b, k = self._batch, self.num_states
        w = self._frames.gather(1, cols.reshape(b, -1, 1).expand(-1, -1, 2 * k + 1)).view(b * c, span, 2 * k + 1)
        return w[..., k:2 * k], w[..., :k], w[..., 2 * k], c

    def _fixed_lag_windows(self):
        lag = self.lag
        ready = (self._filter.seen - lag - self._decided).clamp(min=0)  # frames s with s + lag seen
        filtered, emissions, norm, c = self._windows(ready, lag + 1)
        b, k = self._batch, self.num_states
        dev = self._frames.device
        if c:
            post = self._filter.smooth(filtered, emissions, norm).view(b, c, lag + 1, k)[:, :, 0]
        else:
            post = torch.zeros((b, 0, k), dtype=self._frames.dtype, device=dev)
        valid = torch.arange(c, device=dev) < ready[:, None]
        frames = torch.where(valid, self._decided[:, None] + torch.arange(c, device=dev), -1)
        self._decided = self._decided + ready
        keep = int(self._pending().max()) if self._batch else 0
        self._frames = self._frames[:, self._frames.shape[1] - keep:]
        return frames, *self._states_of(post, valid)

    def _fixed_lag_flush(self):
        pending = self._pending()
        span = int(pending.max())
        b, k = self._batch, self.num_states
        dev = self._frames.device
        if span == 0:
            empty = torch.zeros((b, 0), dtype=torch.long, device=dev)
            return empty, empty, torch.zeros((b, 0, k), dtype=self._frames.dtype, device=dev)
        filtered, emissions, norm, _ = self._windows(torch.ones(b, dtype=torch.long, device=dev), span)
        post = self._filter.smooth(filtered, emissions, norm, pending.clamp(min=1), self._log_final)
        valid = torch.arange(span, device=dev) < pending[:, None]
        frames = torch.where(valid, self._decided[:, None] + torch.arange(span, device=dev), -1)
        self._decided = self._decided + pending
        return frames, *self._states_of(post, valid)

    @staticmethod
    def _states_of(post: torch.Tensor, valid: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(states, posteriors)``: the most probable state of each valid frame (``-1`` where padded or
        where no state has any probability), posteriors 0 at padded frames."""
        post = torch.where(valid[:, :, None], post, 0.0)
        states = torch.where(valid & (post.amax(-1) > 0), post.argmax(-1), -1)
        return states, post

    # --- results ---

    def _elapsed(self, clock: float) -> float:
        if self._log_init.device.type == "cuda":
            torch.cuda.synchronize(self._log_init.device)
        return (time.perf_counter() - clock) * 1000.0

    def _smoothed_result(self, frames, states, post, clock: float, final: bool = False) -> StreamingResult:
        score = self._filter.log_evidence.clone()
        if final and self._log_final is not None:
            end = torch.logsumexp(self._filter.log_filtered + self._log_final, -1).double()
            score = torch.where(self._filter.seen > 0, score + end, score)  # no frames: the empty sequence, 0
        counts = (frames >= 0).sum(1)
        return StreamingResult(frames, states, post, counts, torch.zeros_like(frames, dtype=torch.bool), score,
                               self._filter.seen.clone(), self._elapsed(clock))

    @staticmethod
    def _viterbi_frames(d) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(frame_indices, states, forced)`` of online Viterbi's decisions ``d``."""
        cols = torch.arange(d.states.shape[1], device=d.states.device)
        return torch.where(cols < d.counts[:, None], d.first_frame[:, None] + cols, -1), d.states, d.forced

    def _viterbi_result(self, frames, states, forced, clock: float, log_final: Optional[torch.Tensor] = None) -> StreamingResult:
        self._num_forced = self._num_forced + forced.sum(1)
        seen = self._viterbi.seen.clone()
        score = torch.where(seen > 0, self._viterbi.best_score(log_final), 0.0)  # no frames: the empty path, 0
        return StreamingResult(frames, states, None, (frames >= 0).sum(1), forced, score, seen, self._elapsed(clock))

    def __repr__(self) -> str:
        extra = f", lag={self.lag}" if self.mode == "fixed_lag" else (
            f", max_delay={self.max_delay}, beam={self.beam}" if self.mode == "viterbi" else "")
        return f"StreamingHMMProcessor(num_states={self.num_states}, mode={self.mode!r}{extra})"
