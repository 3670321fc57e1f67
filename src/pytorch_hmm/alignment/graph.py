"""State graphs over shared units: the seam between a model's unit scores and the chain kernel.

A :class:`StateGraph` is a batch of ``B`` graphs of ``K`` states each. State ``k`` of item
``b`` emits with the scores of the shared unit ``units[b, k]`` (a phone state, a CTC token);
its moves are any kernel transition storage (:class:`~pytorch_hmm.transitions.Banded` for
the CTC chain, :class:`~pytorch_hmm.transitions.Sparse` for forced-alignment graphs with
optional silences and pronunciation variants, :class:`~pytorch_hmm.transitions.Dense`), and
``log_init`` / ``log_final`` ``(B, K)`` say where a path may start and end.

* ``units == -1`` marks a padding state (an item with fewer than ``K`` states): it reads an
  appended ``-inf`` column, so one gather of the ``(B, T, U)`` unit scores gives the
  ``(B, T, K)`` emissions and padding states are unreachable without a second pass.
* ``edge_ids`` ``(B, K, X)`` (optional, ``X`` the storage's last axis) ties each transition
  slot to a shared transition parameter in ``[0, E)`` (e.g. "unit u self-loop", "unit u
  exit"); ``-1`` = untied or no edge.
* ``positions`` ``(B, K)`` groups states into graph positions (e.g. the 3 states of one
  phone occurrence); a Viterbi path becomes one :class:`~pytorch_hmm.alignment.segments.Segment`
  per run of frames in one position, so two equal adjacent phones stay two segments.
  ``-1`` = not reported (CTC blanks, padding). Default: every real state is its own position.

:meth:`StateGraph.gather` and :meth:`StateGraph.scatter` are adjoint: the gradient of
``log Z`` w.r.t. the unit scores is the scatter of the state posteriors onto the units, what a
GMM-HMM trainer accumulates per frame; :meth:`StateGraph.scatter_edges` does the same for
the kernel's expected transition counts onto the tied edges (the flat-start M-step).
:meth:`StateGraph.stack` pads per-utterance graphs of different sizes into one batch.

Typical use (one graph per utterance, ``U`` units, ``unit_scores`` ``(B, T, U)``)::

    g = StateGraph.stack([StateGraph.from_edges(units, src, dst, lp, init, final, edge_ids, positions)
                          for units, src, dst, lp, init, final, edge_ids, positions in utterances])
    log_z = g.log_partition(unit_scores, lengths)                  # (B,), differentiable
    _, post, counts = g.marginals(unit_scores, lengths)            # EM statistics
    per_unit = g.scatter(post, U)                                  # (B, T, U) for the emissions
    per_edge = g.scatter_edges(counts)                             # (E,) for the tied transitions
    paths, _ = g.viterbi(unit_scores, lengths)
    segments = g.segments(paths, g.path_scores(unit_scores, paths), phone_names_per_position)
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ..errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from ..kernel import log_partition, marginals, posteriors, viterbi
from ..transitions import Banded, Dense, Sparse, TransitionStructure
from ..validation import LengthsLike, check_count, check_frame_scores, check_tensor
from .segments import Segment
from .spans import path_segments

__all__ = ["StateGraph"]

_NEG_INF = float("-inf")


class StateGraph:
    """A batch of state graphs over shared units (see the module docstring).

    Args:
        units: ``(B, K)`` (or ``(K,)`` for one item) int unit id per state, ``-1`` = padding.
        transitions: a kernel storage over the ``K`` states, shared or batched with ``B``.
        log_init: ``(K,)`` or ``(B, K)`` float, log-potential of starting in each state.
        log_final: ``(K,)`` or ``(B, K)``, of ending in each state; default 0 (anywhere).
        edge_ids: ``(K, X)`` or ``(B, K, X)`` int shared transition id per storage slot, ``-1`` untied.
        positions: ``(K,)`` or ``(B, K)`` int graph position per state, ``-1`` = not reported.

    All tensors are on one device; ``log_init``/``log_final`` have the transitions' dtype.
    Construction costs one host synchronisation (the range checks of the ids).
    """

    def __init__(
        self,
        units: torch.Tensor,
        transitions: TransitionStructure,
        log_init: torch.Tensor,
        log_final: Optional[torch.Tensor] = None,
        edge_ids: Optional[torch.Tensor] = None,
        positions: Optional[torch.Tensor] = None,
    ) -> None:
        units = _ids(units, "units", "(B, K)", None)
        if units.ndim == 1:
            units = units[None]
        if units.ndim != 2:
            raise HMMDimensionError(
                f"units must be (B, K) or (K,); got shape {tuple(units.shape)}",
                expected_shape=("B", "K"),
                actual_shape=units.shape,
            )
        bsz, k = units.shape
        if not isinstance(transitions, TransitionStructure):
            raise HMMTypeError(
                "transitions must be a pytorch_hmm.transitions.Dense, Banded or Sparse structure; "
                f"got {type(transitions).__name__}"
            )
        if transitions.num_states != k or transitions.batch_size not in (None, bsz):
            raise HMMDimensionError(
                f"transitions must describe K == {k} states (shared or batched with B == {bsz}) to match units "
                f"{tuple(units.shape)}; got {transitions!r}",
                expected_shape=(bsz, k, "X"),
                actual_shape=transitions.log_probs.shape,
            )
        if transitions.device != units.device:
            raise HMMDeviceError(f"transitions must be on the device of units ({units.device}); got {transitions.device}")
        self.units = units
        self.transitions = transitions
        self.log_init = self._state_vector(log_init, "log_init")
        zeros = torch.zeros((bsz, k), dtype=transitions.dtype, device=units.device)
        self.log_final = zeros if log_final is None else self._state_vector(log_final, "log_final")
        self.edge_ids = None
        if edge_ids is not None:
            edge_ids = _ids(edge_ids, "edge_ids", "(B, K, X)", units.device)
            x = transitions.width
            if edge_ids.shape not in ((k, x), (bsz, k, x)):
                raise HMMDimensionError(
                    f"edge_ids must be (K, X) or (B, K, X) with B == {bsz}, K == {k}, X == {x} (the transition "
                    f"storage's slots); got shape {tuple(edge_ids.shape)}",
                    expected_shape=(bsz, k, x),
                    actual_shape=edge_ids.shape,
                )
            self.edge_ids = edge_ids.expand(bsz, k, x)
        if positions is None:
            positions = torch.arange(k, device=units.device).expand(bsz, k).masked_fill(units < 0, -1)
        else:
            positions = self._state_vector(_ids(positions, "positions", "(B, K)", units.device), "positions", False)
        self.positions = positions
        self._check_id_ranges()

    # -- construction helpers ------------------------------------------------------------

    def _state_vector(self, x: torch.Tensor, name: str, floating: bool = True) -> torch.Tensor:
        """``x`` ``(K,)`` or ``(B, K)`` expanded to ``(B, K)`` (``floating``: of the transitions' dtype)."""
        bsz, k = self.units.shape
        check_tensor(x, name, "(K,) or (B, K)")
        if x.shape not in ((k,), (bsz, k)):
            raise HMMDimensionError(
                f"{name} must be (K,) or (B, K) with B == {bsz}, K == {k}; got shape {tuple(x.shape)}",
                expected_shape=(bsz, k),
                actual_shape=x.shape,
            )
        if x.device != self.units.device:
            raise HMMDeviceError(f"{name} must be on the device of units ({self.units.device}); got {x.device}")
        if floating and x.dtype != self.transitions.dtype:
            raise HMMDtypeError(f"{name} must have the dtype of the transitions ({self.transitions.dtype}); got {x.dtype}")
        return x.expand(bsz, k)

    def _check_id_ranges(self) -> None:
        """``units``, ``positions``, ``edge_ids`` >= -1 (one host sync); caches the largest unit and edge id."""
        tensors = [self.units, self.positions] + ([] if self.edge_ids is None else [self.edge_ids])
        empty = self.units.new_full((1,), -1)
        lows_highs = torch.stack(
            [torch.cat([t.reshape(-1), empty]).min() for t in tensors]
            + [torch.cat([t.reshape(-1), empty]).max() for t in tensors]
        ).tolist()
        n = len(tensors)
        for name, low in zip(("units", "positions", "edge_ids"), lows_highs[:n]):
            if low < -1:
                raise HMMValueError(f"{name} must be ids >= 0 or -1 (none); got {low}")
        self.max_unit = int(lows_highs[n])
        self.max_edge = int(lows_highs[2 * n - 1]) if self.edge_ids is not None else -1

    # -- shape -------------------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        return int(self.units.shape[0])

    @property
    def num_states(self) -> int:
        return int(self.units.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.transitions.dtype

    @property
    def device(self) -> torch.device:
        return self.units.device

    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "StateGraph":
        """The graph on ``device`` with float tensors of ``dtype`` (ids stay int64)."""
        units = self.units.to(device)
        trans = self.transitions.to(device=units.device, dtype=dtype or self.dtype)
        f = lambda x: x.to(device=units.device, dtype=trans.dtype)  # noqa: E731
        edges = None if self.edge_ids is None else self.edge_ids.to(units.device)
        return StateGraph(units, trans, f(self.log_init), f(self.log_final), edges, self.positions.to(units.device))

    def __repr__(self) -> str:
        tied = "" if self.edge_ids is None else f", edges={self.max_edge + 1}"
        return f"StateGraph(B={self.batch_size}, K={self.num_states}, transitions={self.transitions!r}{tied})"

    # -- units <-> states --------------------------------------------------------------

    def gather(self, unit_scores: torch.Tensor) -> torch.Tensor:
        """``(B, T, U)`` unit scores -> ``(B, T, K)`` state emissions (``-inf`` at padding states)."""
        scores = self._check_frames(unit_scores, "unit_scores", "U", "unit")
        bsz, t_max, u = scores.shape
        if u <= self.max_unit:
            raise HMMValueError(
                f"unit_scores must have U > {self.max_unit} units (the largest unit id of the graph); got U == {u}"
            )
        with_impossible = torch.cat([scores, scores.new_full((bsz, t_max, 1), _NEG_INF)], -1)
        index = self.units.masked_fill(self.units < 0, u)
        return with_impossible.gather(2, index[:, None, :].expand(bsz, t_max, self.num_states))

    def scatter(self, state_values: torch.Tensor, num_units: int) -> torch.Tensor:
        """``(B, T, K)`` per-state values (posteriors) summed onto their units -> ``(B, T, U)``.

        The adjoint of :meth:`gather`: per-unit posteriors per frame, what a GMM-HMM trainer
        accumulates emission statistics with. Padding states are dropped.
        """
        values = self._check_states(state_values, num_units)
        bsz, t_max, k = values.shape
        index = self.units.masked_fill(self.units < 0, num_units)[:, None, :].expand(bsz, t_max, k)
        return values.new_zeros((bsz, t_max, num_units + 1)).scatter_add(2, index, values)[..., :num_units]

    def occupancy(self, state_values: torch.Tensor, num_units: int) -> torch.Tensor:
        """``(U,)`` per-unit sum over batch and frames of ``(B, T, K)`` state values (expected frame counts)."""
        values = self._check_states(state_values, num_units).sum(1)  # (B, K)
        index = self.units.masked_fill(self.units < 0, num_units).reshape(-1)
        return values.new_zeros(num_units + 1).index_add(0, index, values.reshape(-1))[:num_units]

    def _check_states(self, state_values: torch.Tensor, num_units: int) -> torch.Tensor:
        values = self._check_frames(state_values, "state_values", "K", "state")
        if values.shape[2] != self.num_states:
            raise HMMDimensionError(
                f"state_values must be (B, T, K) with K == {self.num_states} states; got shape {tuple(values.shape)}",
                expected_shape=(self.batch_size, "T", self.num_states),
                actual_shape=values.shape,
            )
        check_count(num_units, "num_units")
        if num_units <= self.max_unit:
            raise HMMValueError(f"num_units must be > {self.max_unit} (the largest unit id of the graph); got {num_units}")
        return values

    def _check_frames(self, x: torch.Tensor, name: str, last: str, unit: str) -> torch.Tensor:
        check_frame_scores(x, name, last, unit)
        if x.shape[0] != self.batch_size:
            raise HMMDimensionError(
                f"{name} must be (B, T, {last}) with B == {self.batch_size} (the graph's batch); got shape {tuple(x.shape)}",
                expected_shape=(self.batch_size, "T", last),
                actual_shape=x.shape,
            )
        if x.device != self.device:
            raise HMMDeviceError(f"{name} must be on the device of the graph ({self.device}); got {x.device}")
        return x

    # -- tied edges --------------------------------------------------------------------

    def scatter_edges(self, counts: torch.Tensor, num_edges: Optional[int] = None) -> torch.Tensor:
        """Expected transition counts in storage shape ``(B, K, X)`` (or ``(B, T-1, K, X)``) -> ``(E,)`` per shared edge.

        ``num_edges`` defaults to the largest edge id + 1. Untied slots (``edge_ids == -1``) are dropped.
        """
        ids = self._tied()
        e = self.max_edge + 1 if num_edges is None else check_count(num_edges, "num_edges")
        if e <= self.max_edge:
            raise HMMValueError(f"num_edges must be > {self.max_edge} (the largest edge id of the graph); got {e}")
        check_tensor(counts, "counts", "(B, K, X)")
        shape = tuple(ids.shape)
        if counts.ndim == 4 and counts.shape[:1] + counts.shape[2:] == ids.shape:
            counts = counts.sum(1)
        if tuple(counts.shape) != shape or not counts.dtype.is_floating_point:
            raise HMMDimensionError(
                f"counts must be float (B, K, X) == {shape} or (B, T-1, K, X) in the transition storage's shape; "
                f"got {tuple(counts.shape)} {counts.dtype}",
                expected_shape=shape,
                actual_shape=counts.shape,
            )
        index = ids.masked_fill(ids < 0, e).reshape(-1).to(counts.device)
        return counts.new_zeros(e + 1).index_add(0, index, counts.reshape(-1))[:e]

    def with_edges(self, edge_log_probs: torch.Tensor) -> "StateGraph":
        """The graph with every tied slot's log-prob read from ``edge_log_probs`` ``(E,)`` (untied slots kept).

        The adjoint of :meth:`scatter_edges`: gradients w.r.t. ``edge_log_probs`` of ``log Z``
        of the new graph are the scattered expected counts.
        """
        ids = self._tied()
        check_tensor(edge_log_probs, "edge_log_probs", "(E,)")
        if edge_log_probs.ndim != 1 or edge_log_probs.shape[0] <= self.max_edge:
            raise HMMDimensionError(
                f"edge_log_probs must be (E,) with E > {self.max_edge} (the largest edge id); got shape {tuple(edge_log_probs.shape)}",
                expected_shape=(self.max_edge + 1,),
                actual_shape=edge_log_probs.shape,
            )
        old = self.transitions.log_probs
        if old.dtype != edge_log_probs.dtype:
            raise HMMDtypeError(f"edge_log_probs must have the dtype of the transitions ({old.dtype}); got {edge_log_probs.dtype}")
        if self.transitions.time_varying:
            ids = ids[:, None]
        tied = edge_log_probs[ids.clamp(min=0)]
        new = torch.where(ids >= 0, tied, old)
        return StateGraph(self.units, _like(self.transitions, new), self.log_init, self.log_final, self.edge_ids, self.positions)

    def _tied(self) -> torch.Tensor:
        if self.edge_ids is None:
            raise HMMValueError("this StateGraph has no edge_ids: build it with edge_ids to tie its transitions")
        return self.edge_ids

    # -- kernel calls ------------------------------------------------------------------

    def _kernel_args(self, unit_scores: torch.Tensor):
        return self.gather(unit_scores), self.transitions, self.log_init

    def log_partition(self, unit_scores: torch.Tensor, lengths: LengthsLike = None, *, backend: str = "auto") -> torch.Tensor:
        """``(B,)`` log-likelihood of the unit scores under the graph (differentiable; :func:`~pytorch_hmm.kernel.log_partition`)."""
        return log_partition(*self._kernel_args(unit_scores), lengths, self.log_final, backend=backend)

    def posteriors(self, unit_scores: torch.Tensor, lengths: LengthsLike = None, *, backend: str = "auto") -> torch.Tensor:
        """``(B, T, K)`` state posteriors (no grad; :meth:`scatter` puts them on the units)."""
        return posteriors(*self._kernel_args(unit_scores), lengths, self.log_final, backend=backend)

    def marginals(
        self, unit_scores: torch.Tensor, lengths: LengthsLike = None, *, backend: str = "auto"
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(log Z (B,), state posteriors (B, T, K), expected counts in storage shape)`` in one pass (no grad)."""
        return marginals(*self._kernel_args(unit_scores), lengths, self.log_final, backend=backend)

    def viterbi(self, unit_scores: torch.Tensor, lengths: LengthsLike = None, *, backend: str = "auto") -> Tuple[torch.Tensor, torch.Tensor]:
        """``(paths (B, T) states, -1 padded; scores (B,))`` (:func:`~pytorch_hmm.kernel.viterbi`)."""
        return viterbi(*self._kernel_args(unit_scores), lengths, self.log_final, backend=backend)

    # -- paths -------------------------------------------------------------------------

    def path_units(self, paths: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` unit id of each frame's state on a path of graph states, ``-1`` at padded frames."""
        paths = self._check_paths(paths)
        return self.units.gather(1, paths.clamp(min=0)).masked_fill(paths < 0, -1)

    def path_scores(self, unit_scores: torch.Tensor, paths: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` unit score of each frame's state (0 at padded frames); ``sum(1)`` is the path's emission score."""
        units = self.path_units(paths)
        scores = self._check_frames(unit_scores, "unit_scores", "U", "unit")
        if scores.shape[1] != paths.shape[1] or scores.shape[2] <= self.max_unit:
            raise HMMDimensionError(
                f"unit_scores must be (B, T, U) with T == {paths.shape[1]} (the paths' frames) and U > {self.max_unit}; "
                f"got shape {tuple(scores.shape)}",
                expected_shape=(self.batch_size, paths.shape[1], self.max_unit + 1),
                actual_shape=scores.shape,
            )
        picked = scores.gather(2, units.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return picked.masked_fill(units < 0, 0.0)

    def segments(
        self, paths: torch.Tensor, scores: torch.Tensor, labels: Optional[Sequence[Sequence[Union[str, int]]]] = None
    ) -> List[List[Segment]]:
        """One list of frame :class:`Segment` per item: runs of frames in one graph position.

        Args:
            paths: ``(B, T)`` graph states (from :meth:`viterbi`), ``-1`` at padded frames.
            scores: ``(B, T)`` per-frame log-score (e.g. :meth:`path_scores`); a segment's score is
                the mean of ``exp(scores)`` over its frames, in ``[0, 1]``.
            labels: optional per item, the unit to report for each position id (e.g. phone
                names); default the unit id of the segment's first state.

        Positions ``-1`` (blanks, padding) give no segment.
        """
        paths = self._check_paths(paths)
        return path_segments(paths, self.positions, self.units, scores, labels)

    def _check_paths(self, paths: torch.Tensor) -> torch.Tensor:
        check_tensor(paths, "paths", "(B, T)")
        if paths.ndim != 2 or paths.shape[0] != self.batch_size:
            raise HMMDimensionError(
                f"paths must be (B, T) with B == {self.batch_size} (the graph's batch); got shape {tuple(paths.shape)}",
                expected_shape=(self.batch_size, "T"),
                actual_shape=paths.shape,
            )
        if paths.dtype.is_floating_point or paths.dtype.is_complex or paths.dtype == torch.bool:
            raise HMMDtypeError(f"paths must have an integer dtype; got {paths.dtype}")
        paths = paths.to(device=self.device, dtype=torch.long)
        if paths.numel():  # one host sync; an out-of-range state would fail inside gather (a device assert on CUDA)
            low, high = torch.stack([paths.min(), paths.max()]).tolist()
            if low < -1 or high >= self.num_states:
                raise HMMValueError(f"paths must hold graph states in [0, K) = [0, {self.num_states}) or -1 (padding); "
                                    f"got values in [{low}, {high}]")
        return paths

    # -- construction from edges and batching -----------------------------------------

    @classmethod
    def from_edges(
        cls,
        units: torch.Tensor,
        sources: torch.Tensor,
        destinations: torch.Tensor,
        log_probs: torch.Tensor,
        log_init: torch.Tensor,
        log_final: Optional[torch.Tensor] = None,
        edge_ids: Optional[torch.Tensor] = None,
        positions: Optional[torch.Tensor] = None,
    ) -> "StateGraph":
        """One item's graph (``B = 1``) with :class:`~pytorch_hmm.transitions.Sparse` storage from an edge list.

        Args:
            units: ``(K,)`` unit per state; ``log_init``, ``log_final``, ``positions``: ``(K,)``.
            sources, destinations: ``(N,)`` int states of each edge ``src -> dst``.
            log_probs: ``(N,)`` float log-potential of each edge; ``edge_ids``: ``(N,)`` tied id or ``-1``.

        Edges into one state fill its predecessor slots in the order given; ``P`` is the largest
        in-degree. Use :meth:`stack` to batch several items.
        """
        units = _ids(units, "units", "(K,)", None)
        k = int(units.shape[-1]) if units.ndim == 1 else -1
        src = _ids(sources, "sources", "(N,)", units.device)
        dst = _ids(destinations, "destinations", "(N,)", units.device)
        check_tensor(log_probs, "log_probs", "(N,)")
        if not log_probs.dtype.is_floating_point or log_probs.dtype not in (torch.float32, torch.float64):
            raise HMMDtypeError(f"log_probs must be float32 or float64; got {log_probs.dtype}")
        n = int(src.shape[0]) if src.ndim == 1 else -1
        ids = None if edge_ids is None else _ids(edge_ids, "edge_ids", "(N,)", units.device)
        shapes = [units.ndim == 1, src.shape == (n,), dst.shape == (n,), log_probs.shape == (n,), ids is None or ids.shape == (n,)]
        if not all(shapes):
            raise HMMDimensionError(
                f"from_edges needs units (K,) and sources, destinations, log_probs, edge_ids (N,); got units "
                f"{tuple(units.shape)}, sources {tuple(src.shape)}, destinations {tuple(dst.shape)}, log_probs "
                f"{tuple(log_probs.shape)}" + ("" if ids is None else f", edge_ids {tuple(ids.shape)}"),
                expected_shape=("N",),
                actual_shape=log_probs.shape,
            )
        bounds = torch.stack([torch.cat([src, dst, src.new_zeros(1)]).min(), torch.cat([src, dst, src.new_zeros(1)]).max()]).tolist()
        if n and (bounds[0] < 0 or bounds[1] >= k):
            raise HMMValueError(f"sources and destinations must be states in [0, K) = [0, {k}); got values in [{bounds[0]}, {bounds[1]}]")
        order = torch.sort(dst, stable=True).indices
        degree = torch.bincount(dst, minlength=k)
        width = max(int(degree.max()) if n else 1, 1)
        first = torch.cumsum(degree, 0) - degree  # first sorted edge into each state
        slot = torch.arange(n, device=units.device) - first[dst[order]]
        pred = src.new_full((k, width), -1).index_put((dst[order], slot), src[order])
        lp = log_probs.new_full((k, width), _NEG_INF).index_put((dst[order], slot), log_probs[order])
        tied = None if ids is None else src.new_full((k, width), -1).index_put((dst[order], slot), ids[order])
        return cls(units, Sparse(pred, lp), log_init, log_final, tied, positions)

    # -- batching ----------------------------------------------------------------------

    @classmethod
    def stack(cls, graphs: Sequence["StateGraph"]) -> "StateGraph":
        """One batch from per-item graphs of different sizes, each padded to ``K_max`` states.

        Padding states have unit ``-1``, no edges, ``-inf`` init/final and position ``-1``, so
        every result equals the item's own. All graphs must share a storage kind, dtype and
        device (and for time-varying storage the number of steps).
        """
        graphs = list(graphs) if not isinstance(graphs, StateGraph) else None
        if not graphs or not all(isinstance(g, StateGraph) for g in graphs):
            raise HMMTypeError("graphs must be a non-empty sequence of StateGraph")
        first = graphs[0].transitions
        layout = lambda s: (type(s), s.time_varying, s.log_probs.shape[1] if s.time_varying else None)  # noqa: E731
        for g in graphs[1:]:
            s = g.transitions
            if layout(s) != layout(first) or s.dtype != first.dtype or g.device != graphs[0].device:
                raise HMMValueError(
                    f"graphs must share one transition storage, dtype and device; got {first!r} on {graphs[0].device} "
                    f"and {s!r} on {g.device}"
                )
        k = max(g.num_states for g in graphs)
        x = max(g.transitions.width for g in graphs) if not isinstance(first, Dense) else k

        def pad(t: torch.Tensor, value, dims: int) -> torch.Tensor:
            sizes = (x - t.shape[-1], k - t.shape[-2]) if dims == 2 else (k - t.shape[-1],)
            return F.pad(t, [p for s in sizes for p in (0, s)], value=value)

        log_probs, preds, edges = [], [], []
        for g in graphs:
            s = g.transitions
            lp = s.log_probs
            if isinstance(s, Banded):
                lp = lp.masked_fill(~s.valid_mask(), _NEG_INF)  # moves past the item's last state
            if s.batch_size is None:
                lp = lp.expand((g.batch_size,) + lp.shape)
            log_probs.append(pad(lp, _NEG_INF, 2))
            if isinstance(s, Sparse):
                preds.append(pad(s.predecessors.expand((g.batch_size,) + s.predecessors.shape[-2:]), -1, 2))
            ids = g.edge_ids if g.edge_ids is not None else g.units.new_full((g.batch_size,) + s.log_probs.shape[-2:], -1)
            edges.append(pad(ids, -1, 2))
        lp = torch.cat(log_probs)
        transitions = Sparse(torch.cat(preds), lp) if isinstance(first, Sparse) else type(first)(lp)
        tied = any(g.edge_ids is not None for g in graphs)
        return cls(
            torch.cat([pad(g.units, -1, 1) for g in graphs]),
            transitions,
            torch.cat([pad(g.log_init, _NEG_INF, 1) for g in graphs]),
            torch.cat([pad(g.log_final, _NEG_INF, 1) for g in graphs]),
            torch.cat(edges) if tied else None,
            torch.cat([pad(g.positions, -1, 1) for g in graphs]),
        )


def _ids(x, name: str, what: str, device) -> torch.Tensor:
    """An integer id tensor as int64 (on ``device`` when given)."""
    check_tensor(x, name, what)
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise HMMDtypeError(f"{name} must have an integer dtype; got {x.dtype}")
    if device is not None and x.device != device:
        raise HMMDeviceError(f"{name} must be on the device of units ({device}); got {x.device}")
    return x.long()


def _like(structure: TransitionStructure, log_probs: torch.Tensor) -> TransitionStructure:
    """A structure of ``structure``'s storage holding ``log_probs``."""
    if isinstance(structure, Sparse):
        return Sparse(structure.predecessors, log_probs)
    return type(structure)(log_probs)
