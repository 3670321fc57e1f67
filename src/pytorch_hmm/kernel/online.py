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
disagree; ``max_delay`` bounds the look-ahead: after each frame, the frame ``max_delay`` back
is fixed to the best path's state if the paths still disagree there (an approximation; the
states whose paths contradict it are dropped, so the output stays one path the model allows,
and it does not depend on how the stream is cut into chunks).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ..errors import HMMValueError
from ..semiring import LogSemiring, MaxSemiring
from .chain import forward_filter
from .steps import step_table
from .torch_loops import backpointer_dtype

__all__ = ["OnlineFilter", "OnlineViterbi", "ViterbiDecisions"]


class OnlineFilter:
    """The forward filter over ``B`` streams, chunk by chunk: :func:`~.chain.forward_filter` started
    from the predictive prior of the last filtered frame (one :func:`~.steps.step_table` step).

    State: ``log_filtered`` ``(B, K)`` of the last frame seen, ``log_evidence`` ``(B,)`` float64
    ``log p(x_{1:t})`` and ``seen`` ``(B,)``. Arguments as :class:`OnlineViterbi`.
    """

    def __init__(self, transitions, log_init: torch.Tensor, batch_size: int) -> None:
        self._structure = transitions
        self._table = step_table(transitions, LogSemiring)
        self.log_init = log_init
        dev = log_init.device
        self.log_filtered = torch.full((batch_size, log_init.shape[-1]), float("-inf"), dtype=log_init.dtype, device=dev)
        self.log_evidence = torch.zeros(batch_size, dtype=torch.float64, device=dev)
        self.seen = torch.zeros(batch_size, dtype=torch.long, device=dev)

    def predict(self, log_filtered: torch.Tensor) -> torch.Tensor:
        """``(..., K)`` predictive log prior ``log p(z_{t+1} | x_{1:t})`` of filtered rows ``(..., K)``."""
        k = log_filtered.shape[-1]
        return self._table.step(log_filtered.reshape(-1, k), 0).view(log_filtered.shape)

    def advance(self, log_emissions: torch.Tensor, lengths: torch.Tensor, with_priors: bool = False):
        """Filter the next frames (the first ``lengths[b]`` of ``log_emissions`` ``(B, t, K)`` for stream ``b``).

        Returns ``(log_filtered (B, t, K), log_evidence (B, t) float64, priors)``: the evidence
        counts every frame since the start; ``priors`` ``(B, t, K)`` (with ``with_priors``, else
        ``None``) is each frame's predictive prior, ``log p(z_t | x_{1:t-1})``.
        """
        b, t, k = log_emissions.shape
        start = torch.where((self.seen > 0)[:, None], self.predict(self.log_filtered), self.log_init)
        filtered, evidence = forward_filter(log_emissions, self._structure, start, lengths.clamp(min=1))
        valid = torch.arange(t, device=lengths.device) < lengths[:, None]
        filtered = filtered.masked_fill(~valid[:, :, None], float("-inf"))
        evidence = torch.where(valid, evidence.double() + self.log_evidence[:, None], float("-inf"))
        priors = None
        if with_priors:
            priors = torch.cat([start[:, None], self.predict(filtered[:, :-1])], 1) if t > 1 else start[:, None]
        last = (lengths - 1).clamp(min=0)[:, None]
        moved = lengths > 0
        self.log_filtered = torch.where(moved[:, None], filtered.gather(1, last[:, :, None].expand(-1, 1, k)).squeeze(1),
                                        self.log_filtered)
        self.log_evidence = torch.where(moved, evidence.gather(1, last).squeeze(1), self.log_evidence)
        self.seen = self.seen + lengths
        return filtered, evidence, priors


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
    """Exact online Viterbi over ``B`` streams of a chain with static transitions.

    Args:
        transitions: a checked static structure (``Dense``, ``Banded`` or ``Sparse``, unbatched or
            with ``B`` rows).
        log_init: ``(K,)`` or ``(B, K)`` log initial probabilities.
        batch_size: ``B``.

    State (all on the device of ``log_init``): ``delta`` ``(B, K)`` the best path score ending in
    each state, shifted so its maximum is 0 (``offset`` ``(B,)`` float64 holds the shift);
    ``ancestors`` ``(B, K, U)``; ``forced`` ``(B, U)`` pending frames fixed by ``max_delay``;
    ``pending`` ``(B,)`` frames seen but not decided;
    ``seen`` ``(B,)`` frames seen.
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
        self.forced = torch.zeros((batch_size, 0), dtype=torch.bool, device=dev)
        self.pending = torch.zeros(batch_size, dtype=torch.long, device=dev)
        self.seen = torch.zeros(batch_size, dtype=torch.long, device=dev)

    def advance(self, log_emissions: torch.Tensor, lengths: Optional[torch.Tensor] = None,
                max_delay: Optional[int] = None) -> None:
        """Take the next frames: ``log_emissions`` ``(B, t, K)`` of which the first ``lengths[b]`` are
        stream ``b``'s (``None``: all ``t``).

        With ``max_delay``, after each frame the frame ``max_delay`` frames back is fixed to the
        best path's state there if the paths still disagree on it, and the states whose paths
        contradict it are dropped: every frame is then decided with at most ``max_delay`` frames
        of look-ahead, whatever the chunking.
        """
        if max_delay is not None and max_delay < 0:
            raise HMMValueError(f"max_delay must be None or an int >= 0; got {max_delay}")
        b, t, k = log_emissions.shape
        dev = log_emissions.device
        identity = self._states.to(self._ancestor_dtype).expand(b, k).unsqueeze(-1)
        filler = torch.zeros((b, k, 1), dtype=self._ancestor_dtype, device=dev)
        no = torch.zeros((b, 1), dtype=torch.bool, device=dev)
        delta, ancestors, forced, pending = self.delta, self.ancestors, self.forced, self.pending
        every = lengths is None  # every stream takes every frame: no per-stream selection
        lengths = torch.full((b,), t, dtype=torch.long, device=dev) if every else lengths
        track = max_delay is not None or not every  # per-frame bookkeeping of forced frames and pending counts
        for i in range(t):
            best, source = self._table.step_with_argmax(delta, 0)
            if i == 0:  # a stream starts at the first frame of a chunk
                best = torch.where((self.seen > 0)[:, None], best, self.log_init)
            best = best + log_emissions[:, i]
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
                forced = torch.cat([forced, no], -1) if every else \
                    torch.where(valid[:, None], torch.cat([forced, no], -1), torch.cat([no, forced], -1))
                pending = pending + 1 if every else pending + valid
            if max_delay is not None and ancestors.shape[-1] > max_delay:
                due = pending > max_delay if every else valid & (pending > max_delay)
                delta, forced = self._force(delta, ancestors, forced, due, max_delay)
        if not track:
            forced = torch.cat([forced, no.expand(b, t)], -1)
            pending = pending + t
        # keep scores O(1): the argmax of every later step is unchanged by a per-stream shift
        top = torch.nan_to_num(delta.amax(-1, keepdim=True), neginf=0.0)
        self.delta, self.offset = delta - top, self.offset + top.squeeze(-1).double()
        self.ancestors, self.forced = ancestors, forced
        self.seen = self.seen + lengths
        self.pending = pending

    @staticmethod
    def _force(delta, ancestors, forced, due, max_delay: int):
        """Fix the frame ``max_delay`` back (column ``-1 - max_delay``) of the ``due`` streams to the
        best path's state; drop the states whose paths pass elsewhere there."""
        k = delta.shape[-1]
        column = ancestors[:, :, -1 - max_delay].long()  # (B, K) each path's state at that frame
        alive = torch.isfinite(delta)
        chosen = column.gather(1, delta.argmax(-1, keepdim=True))  # (B, 1)
        agreed = torch.where(alive, column, -1).amax(-1) == torch.where(alive, column, k).amin(-1)
        delta = delta.masked_fill(due[:, None] & (column != chosen), float("-inf"))
        mark = (due & ~agreed & alive.any(-1))[:, None]  # fixed here, not by agreement
        forced = forced.clone()
        forced[:, -1 - max_delay] |= mark[:, 0]
        return delta, forced

    def best_score(self, log_final: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B,)`` float64 log-score of the best path so far (ending anywhere, or weighted by ``log_final``)."""
        scores = self.delta if log_final is None else self.delta + log_final
        return scores.amax(-1).double() + self.offset

    def decide(self, log_final: Optional[torch.Tensor] = None, flush: bool = False) -> ViterbiDecisions:
        """Decide every frame all surviving paths agree on (frames :meth:`advance` forced included); with
        ``flush`` every pending frame, from the best path's end state (weighted by ``log_final``).
        Decided frames leave the state."""
        bsz, k, width = self.ancestors.shape
        dev = self.delta.device
        alive = torch.isfinite(self.delta)
        cols = torch.arange(width, device=dev)
        # column of the i-th pending frame of stream b (oldest first): width - pending + i
        order = (width - self.pending[:, None] + cols).clamp(0, max(width - 1, 0))
        is_pending = cols < self.pending[:, None]
        if width == 0:
            agreed = torch.zeros(bsz, dtype=torch.long, device=dev)
        else:
            hi = torch.where(alive[:, :, None], self.ancestors.long(), -1).amax(1)
            lo = torch.where(alive[:, :, None], self.ancestors.long(), k).amin(1)
            agree = (hi == lo).gather(1, order) & is_pending
            agreed = agree.long().cumprod(1).sum(1)
        dead = ~alive.any(-1)
        if flush:
            final_scores = self.delta if log_final is None else self.delta + log_final
            end_state = final_scores.argmax(-1)
            dead = dead | torch.isneginf(final_scores.amax(-1))
            decide = self.pending.clone()
        else:
            end_state = self.delta.argmax(-1)
            decide = agreed
        decide = torch.where(dead, self.pending, decide)  # no path goes on: nothing left to wait for
        best_path = self.ancestors.gather(1, end_state.view(bsz, 1, 1).expand(-1, 1, width)).squeeze(1).long()
        left = self.pending - decide
        n, keep = torch.stack([decide.max(), left.max()]).tolist() if bsz else (0, 0)  # the one host sync
        take = order[:, :n]
        states = best_path.gather(1, take) if width else torch.zeros((bsz, n), dtype=torch.long, device=dev)
        is_decided = cols[:n] < decide[:, None]
        states = torch.where(is_decided & ~dead[:, None], states, -1)
        forced = (self.forced.gather(1, take) if width else torch.zeros((bsz, n), dtype=torch.bool, device=dev))
        forced = forced & is_decided & ~dead[:, None]
        first = self.seen - self.pending
        self.pending = left
        self.ancestors = self.ancestors[:, :, width - keep:]
        self.forced = self.forced[:, width - keep:]
        return ViterbiDecisions(states, first, decide, forced)
