"""Online chain recursions over a stream of chunks: the forward filter and exact online Viterbi.

Both keep their state between chunks (on the inputs' device) and run the same step tables as
the whole-sequence loops (:func:`~.steps.step_table`). :mod:`pytorch_hmm.streaming` builds its
processor on them.

Exact online Viterbi (Šrámek, Brejová and Vinař, 2007): after each frame every state ``j``
keeps the best path that ends in it; a frame's state is known for good as soon as every
surviving path (every state with a finite score) passes through the same state there, since
the best complete path extends one of them. :class:`OnlineViterbi` keeps, for each state, its
path's states at the frames not yet decided (``ancestors``, right-aligned so that streams of a
batch may have different numbers of them), updates it with one gather per frame and decides
the longest agreed prefix after each chunk. Deciding therefore waits as long as the paths
disagree, and a path that can never win but stays possible (a left-to-right chain lingering
in its first state) holds every decision back. Two approximations bound the wait:

* ``beam``: after each frame, states scoring more than ``beam`` below the best are dropped
  (a decoder's beam). The paths then coalesce quickly; the output is a path the model allows,
  and exact whenever the best path never falls out of the beam.
* ``max_delay``: after each frame, the frame ``max_delay`` back is decided as the best path's
  state there, if the paths still disagree on it (fixed-lag Viterbi). No state is dropped, so
  later frames may follow another path: the output may then hold a move the model does not
  allow. Both are per frame, so the output does not depend on how the stream is cut into chunks.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch

from ..errors import HMMValueError
from ..semiring import LogSemiring, MaxSemiring
from . import torch_loops
from .chain import _loops, _state_marginals, filtered_from, forward_filter
from .inputs import ChainProblem, prepare
from .steps import step_table
from .torch_loops import backpointer_dtype

__all__ = ["OnlineFilter", "OnlineViterbi", "ViterbiDecisions"]

# chunks of at most this many frames run the PyTorch loop over the kept step table; longer ones
# the whole-sequence routine (compiled loops on CPU), whose per-call set-up then pays for itself
SHORT_CHUNK = 8


class OnlineFilter:
    """The forward filter over ``B`` streams, chunk by chunk: :func:`~.chain.forward_filter` started
    from the predictive prior of the last filtered frame (one :func:`~.steps.step_table` step).

    State: ``log_filtered`` ``(B, K)`` of the last frame seen, ``log_evidence`` ``(B,)`` float64
    ``log p(x_{1:t})`` and ``seen`` ``(B,)``. Arguments as :class:`OnlineViterbi`.
    """

    def __init__(self, transitions, log_init: torch.Tensor, batch_size: int) -> None:
        self._structure = transitions
        self._table = step_table(transitions, LogSemiring)
        self._backward = None  # built on the first call of smooth
        self.log_init = log_init
        dev = log_init.device
        self.log_filtered = torch.full((batch_size, log_init.shape[-1]), float("-inf"), dtype=log_init.dtype, device=dev)
        self.log_evidence = torch.zeros(batch_size, dtype=torch.float64, device=dev)
        self.seen = torch.zeros(batch_size, dtype=torch.long, device=dev)

    def predict(self, log_filtered: torch.Tensor) -> torch.Tensor:
        """``(..., K)`` predictive log prior ``log p(z_{t+1} | x_{1:t})`` of filtered rows ``(..., K)``."""
        k = log_filtered.shape[-1]
        return self._table.step(log_filtered.reshape(-1, k), 0).view(log_filtered.shape)

    def advance(self, log_emissions: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Filter the next frames (the first ``lengths[b]`` of ``log_emissions`` ``(B, t, K)`` for stream ``b``).

        Returns ``(log_filtered (B, t, K), log_evidence (B, t) float64)``, ``-inf`` past
        ``lengths``; the evidence counts every frame since the start.
        """
        b, t, k = log_emissions.shape
        start = torch.where((self.seen > 0)[:, None], self.predict(self.log_filtered), self.log_init)
        if t <= SHORT_CHUNK:  # the PyTorch loop on the kept step table: no per-call set-up
            p = ChainProblem(log_emissions, None, None, start.expand(b, k), None, lengths.clamp(min=1), False)
            filtered, evidence = filtered_from(p, *torch_loops._forward(p, self._table))
        else:
            filtered, evidence = forward_filter(log_emissions, self._structure, start, lengths.clamp(min=1))
        valid = torch.arange(t, device=lengths.device) < lengths[:, None]
        filtered = filtered.masked_fill(~valid[:, :, None], float("-inf"))
        evidence = torch.where(valid, evidence.double() + self.log_evidence[:, None], float("-inf"))
        last = (lengths - 1).clamp(min=0)[:, None]
        moved = lengths > 0
        self.log_filtered = torch.where(moved[:, None], filtered.gather(1, last[:, :, None].expand(-1, 1, k)).squeeze(1),
                                        self.log_filtered)
        self.log_evidence = torch.where(moved, evidence.gather(1, last).squeeze(1), self.log_evidence)
        self.seen = self.seen + lengths
        return filtered, evidence

    def smooth(self, log_filtered: torch.Tensor, log_emissions: torch.Tensor, log_norm: torch.Tensor,
               lengths: Optional[torch.Tensor] = None, log_final: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Posteriors ``(N, S, K)`` of ``N`` stretches of ``S`` frames given the filter up to their first frame:
        the filtered ``log_filtered`` ``(N, S, K)`` times a backward pass over ``log_emissions``
        ``(N, S, K)`` (scaled by ``log_norm`` ``(N, S)``, any per-frame constants: the filter's
        per-frame evidence keeps it O(1)), from ``log_final`` (or 1) at each stretch's last frame.
        Frame 0 of a stretch of ``lag + 1`` frames is the fixed-lag smoother's posterior."""
        n, span, k = log_emissions.shape
        lengths = torch.full((n,), span, dtype=torch.long, device=log_emissions.device) if lengths is None else lengths
        if span > SHORT_CHUNK:  # the whole-sequence routine's loops (compiled on CPU)
            p = prepare(log_emissions, self._structure, log_filtered[:, 0], lengths, log_final)
            beta = _loops(p, "auto").backward(p.detached(), log_norm)
        else:
            if self._backward is None:
                self._backward = step_table(self._structure, LogSemiring, backward=True)
            final = torch.zeros((n, k), dtype=log_emissions.dtype, device=log_emissions.device) if log_final is None \
                else log_final.expand(n, k)
            p = ChainProblem(log_emissions, None, None, log_filtered[:, 0], final, lengths, False)
            beta = torch_loops._backward(p, log_norm, self._backward)
        return _state_marginals(p, log_filtered, beta)[0]


class ViterbiDecisions(NamedTuple):
    """Frames decided by one call of :meth:`OnlineViterbi.decide`.

    ``states`` ``(B, N)`` int64 (``-1`` past ``counts[b]``, and for frames of a stream no path
    reaches), ``first_frame`` ``(B,)`` the frame index of ``states[b, 0]``, ``counts`` ``(B,)``,
    ``forced`` ``(B, N)`` bool: decided by ``max_delay`` rather than by agreement.
    """

    states: torch.Tensor
    first_frame: torch.Tensor
    counts: torch.Tensor
    forced: torch.Tensor


class OnlineViterbi:
    """Online Viterbi over ``B`` streams of a chain with static transitions (exact by default).

    Args:
        transitions: a checked static structure (``Dense``, ``Banded`` or ``Sparse``, unbatched or
            with ``B`` rows).
        log_init: ``(K,)`` or ``(B, K)`` log initial probabilities.
        batch_size: ``B``.

    State (all on the device of ``log_init``): ``delta`` ``(B, K)`` the best path score ending in
    each state, shifted so its maximum is 0 (``offset`` ``(B,)`` float64 holds the shift);
    ``ancestors`` ``(B, K, U)``; ``forced`` ``(B, U)`` the state ``max_delay`` decided for a
    pending frame (``-1``: none); ``pending`` ``(B,)`` frames seen but not decided; ``seen``
    ``(B,)`` frames seen.
    """

    def __init__(self, transitions, log_init: torch.Tensor, batch_size: int) -> None:
        self._table = step_table(transitions, MaxSemiring)
        self.log_init = log_init
        k = log_init.shape[-1]
        dev = log_init.device
        self._states = torch.arange(k, device=dev)
        self._ancestor_dtype = backpointer_dtype(k)
        self.delta = torch.full((batch_size, k), float("-inf"), dtype=log_init.dtype, device=dev)
        self.offset = torch.zeros(batch_size, dtype=torch.float64, device=dev)
        self.ancestors = torch.zeros((batch_size, k, 0), dtype=self._ancestor_dtype, device=dev)
        self.forced = torch.zeros((batch_size, 0), dtype=self._ancestor_dtype, device=dev)
        self.pending = torch.zeros(batch_size, dtype=torch.long, device=dev)
        self.seen = torch.zeros(batch_size, dtype=torch.long, device=dev)

    def advance(self, log_emissions: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                max_delay: Optional[int] = None, beam: Optional[float] = None) -> None:
        """Take the next frames: ``log_emissions`` ``(B, t, K)`` of which the first ``lengths[b]`` are
        stream ``b``'s (``None``: all ``t``).

        ``beam``: after each frame, drop the states more than ``beam`` below the best.
        ``max_delay``: after each frame, decide the frame ``max_delay`` back as the best path's
        state there if the paths still disagree on it (see the module docstring).
        """
        if max_delay is not None and max_delay < 0:
            raise HMMValueError(f"max_delay must be None or an int >= 0; got {max_delay}")
        if beam is not None and not beam > 0:
            raise HMMValueError(f"beam must be None or a positive number; got {beam}")
        b, t, k = log_emissions.shape
        dev = log_emissions.device
        identity = self._states.to(self._ancestor_dtype).expand(b, k).unsqueeze(-1)
        filler = torch.zeros((b, k, 1), dtype=self._ancestor_dtype, device=dev)
        none = torch.full((b, 1), -1, dtype=self._ancestor_dtype, device=dev)
        delta, ancestors, forced, pending = self.delta, self.ancestors, self.forced, self.pending
        every = lengths is None  # every stream takes every frame: no per-stream selection
        lengths = torch.full((b,), t, dtype=torch.long, device=dev) if every else lengths
        track = max_delay is not None or not every  # per-frame bookkeeping of forced frames and pending counts
        width = ancestors.shape[-1]
        if max_delay is not None and width > max_delay:  # every older pending frame (max_delay may have shrunk)
            older = torch.arange(width - max_delay, device=dev) >= width - pending[:, None]
            forced = self._force(delta, ancestors, forced, older, 0, width - max_delay)
        for i in range(t):
            best, source = self._table.step_with_argmax(delta, 0)
            if i == 0:  # a stream starts at the first frame of a chunk
                best = torch.where((self.seen > 0)[:, None], best, self.log_init)
            best = best + log_emissions[:, i]
            if beam is not None:
                best = best.masked_fill(best < best.amax(-1, keepdim=True) - beam, float("-inf"))
            on_path = ancestors.gather(1, source.long().unsqueeze(-1).expand(-1, -1, ancestors.shape[-1]))
            if every:
                delta, ancestors = best, torch.cat([on_path, identity], -1)
                valid = None
            else:
                valid = lengths > i
                delta = torch.where(valid[:, None], best, delta)
                ancestors = torch.where(valid[:, None, None], torch.cat([on_path, identity], -1),
                                        torch.cat([filler, ancestors], -1))
            if track:
                forced = torch.cat([forced, none], -1) if every else \
                    torch.where(valid[:, None], torch.cat([forced, none], -1), torch.cat([none, forced], -1))
                pending = pending + 1 if every else pending + valid
            width = ancestors.shape[-1]
            if max_delay is not None and width > max_delay:  # the frame max_delay back
                due = pending > max_delay if every else valid & (pending > max_delay)
                forced = self._force(delta, ancestors, forced, due[:, None], width - 1 - max_delay, width - max_delay)
        if not track:
            forced = torch.cat([forced, none.expand(b, t)], -1)
            pending = pending + t
        # keep scores O(1): the argmax of every later step is unchanged by a per-stream shift
        top = torch.nan_to_num(delta.amax(-1, keepdim=True), neginf=0.0)
        self.delta, self.offset = delta - top, self.offset + top.squeeze(-1).double()
        self.ancestors, self.forced = ancestors, forced
        self.seen = self.seen + lengths
        self.pending = pending

    @staticmethod
    def _force(delta, ancestors, forced, due, lo: int, hi: int) -> torch.Tensor:
        """Decide the pending frames of columns ``lo .. hi - 1`` that ``due`` ``(B, hi - lo)`` marks and
        on which the paths disagree: the best path's state there, kept in ``forced``."""
        k = delta.shape[-1]
        block = ancestors[:, :, lo:hi]  # (B, K, C) each path's state at those frames
        alive = torch.isfinite(delta)
        chosen = block.gather(1, delta.argmax(-1).view(-1, 1, 1).expand(-1, 1, hi - lo)).squeeze(1)
        agreed = torch.where(alive[:, :, None], block, -1).amax(1) == torch.where(alive[:, :, None], block, k).amin(1)
        fix = due & ~agreed & alive.any(-1, keepdim=True) & (forced[:, lo:hi] < 0)
        return torch.cat([forced[:, :lo], torch.where(fix, chosen, forced[:, lo:hi]), forced[:, hi:]], -1)

    def best_score(self, log_final: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B,)`` float64 log-score of the best path so far (ending anywhere, or weighted by ``log_final``)."""
        scores = self.delta if log_final is None else self.delta + log_final
        return scores.amax(-1).double() + self.offset

    def decide(self, log_final: Optional[torch.Tensor] = None, flush: bool = False) -> ViterbiDecisions:
        """Decide the oldest pending frames that every surviving path agrees on or that ``max_delay``
        decided; with ``flush`` every pending frame, from the best path's end state (weighted by
        ``log_final``). Decided frames leave the state."""
        bsz, k, width = self.ancestors.shape
        dev = self.delta.device
        alive = torch.isfinite(self.delta)
        cols = torch.arange(width, device=dev)
        # column of the i-th pending frame of stream b (oldest first): width - pending + i
        order = (width - self.pending[:, None] + cols).clamp(0, max(width - 1, 0))
        is_pending = cols < self.pending[:, None]
        forced = self.forced.gather(1, order) if width else self.forced  # (B, U) in pending order
        if width == 0:
            ready = torch.zeros(bsz, dtype=torch.long, device=dev)
        else:
            hi = torch.where(alive[:, :, None], self.ancestors, -1).amax(1)
            lo = torch.where(alive[:, :, None], self.ancestors, k).amin(1)
            ok = ((hi == lo).gather(1, order) | (forced >= 0)) & is_pending
            ready = ok.long().cumprod(1).sum(1)
        dead = ~alive.any(-1)
        if flush:
            final_scores = self.delta if log_final is None else self.delta + log_final
            end_state = final_scores.argmax(-1)
            dead = dead | torch.isneginf(final_scores.amax(-1))
            decide = self.pending
        else:
            end_state = self.delta.argmax(-1)
            decide = ready
        decide = torch.where(dead, self.pending, decide)  # no path goes on: nothing left to wait for
        best_path = self.ancestors.gather(1, end_state.view(bsz, 1, 1).expand(-1, 1, width)).squeeze(1)
        left = self.pending - decide
        n, keep = torch.stack([decide.max(), left.max()]).tolist() if bsz else (0, 0)  # one host sync for both
        take = order[:, :n]
        forced = forced[:, :n]
        states = best_path.gather(1, take) if width else torch.zeros((bsz, n), dtype=self._ancestor_dtype, device=dev)
        states = torch.where(forced >= 0, forced, states).long()
        is_decided = cols[:n] < decide[:, None]
        states = torch.where(is_decided & ~dead[:, None], states, -1)
        was_forced = (forced >= 0) & is_decided & ~dead[:, None]
        first = self.seen - self.pending
        self.pending = left
        self.ancestors = self.ancestors[:, :, width - keep:]
        self.forced = self.forced[:, width - keep:]
        return ViterbiDecisions(states, first, decide, was_forced)
