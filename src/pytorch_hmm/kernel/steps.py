"""One step of the chain recursion, for every storage and semiring.

A step maps scores ``v`` ``(B, K)`` at frame ``t`` to ``next_j = (+)_x v[source(j, x)] + A[j, x]``
at frame ``t + 1`` (or, run backwards, ``beta_i`` from ``emission + beta`` at ``t + 1``). The
semiring (:mod:`pytorch_hmm.semiring`) decides ``(+)``: ``LogSemiring`` gives the forward and
backward algorithms, ``MaxSemiring`` Viterbi. A *step table* holds one direction of one storage,
precomputed once per call:

* :class:`MatrixSteps` (dense): the semiring's vector-matrix product (max-shifted GEMM for
  ``LogSemiring``);
* :class:`WindowSteps` (banded): ``W`` shifted adds, ``source(j, w) = j - w`` (forward) or
  ``j + w`` (backward);
* :class:`GatherSteps` (sparse, forward): a gather over the ``X`` listed sources of each state;
* :class:`ScatterSteps` (sparse, backward): each listed edge ``source -> j`` sends
  ``v[j] + A[j, x]`` back to its source, combined by a scatter (cost ``O(K P)``, whatever the
  out-degree of a state).

The PyTorch time loops (:mod:`.torch_loops`) and the public single-step functions below
(:func:`forward_step`, :func:`viterbi_step`, for streaming) run the same tables.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import operator

import torch

from ..errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from ..semiring import LogSemiring, MaxSemiring, underflow_threshold
from ..transitions import TransitionStructure
from ..validation import FLOAT_DTYPES, check_tensor
from .factors import exp_flushed_, shift_windows

__all__ = ["forward_step", "viterbi_step", "chain_step", "step_table", "MatrixSteps", "WindowSteps", "GatherSteps", "ScatterSteps"]


class _Steps:
    """Step tables that are exact by construction (everything but the dense GEMM)."""

    def lost_mass(self, used: torch.Tensor) -> bool:
        """Whether a step so far may have lost mass to underflow (then rerun with :meth:`exact`);
        ``used`` ``(B, N)`` bool marks, for the ``N`` steps taken, the sequences they matter for."""
        return False

    def exact(self) -> "_Steps":
        return self


class MatrixSteps(_Steps):
    """Dense steps: ``trans`` ``(B', S, K, K)`` indexed ``[source, destination]``.

    In the log semiring each step is a max-shifted GEMM whose exp-space column sums are kept
    (no host synchronisation); :meth:`lost_mass` checks them against
    :func:`~pytorch_hmm.semiring.underflow_threshold` once, at the end, and the caller then
    reruns the recursion with :meth:`exact` tables (``logsumexp`` over ``(B, K, K)``), so no
    feasible path's mass is lost however far below the best state it lies. ``exact=True``
    builds those directly.
    """

    def __init__(self, trans: torch.Tensor, semiring, reverse: bool = False, exact: bool = False) -> None:
        self.semiring, self.reverse = semiring, reverse
        self._trans = trans
        self._exact = exact and semiring is LogSemiring
        if self._exact:
            self.factors = trans.transpose(-1, -2) if reverse else trans
        else:
            self.factors = semiring.matrix_factors(trans, reverse)
        self._sums: list = []

    def step(self, v: torch.Tensor, s: int, normalised: bool = False) -> torch.Tensor:
        if self.semiring is not LogSemiring:
            return self.semiring.vecmat(v, self.factors, s)
        if self._exact:
            return LogSemiring.vecmat_exact(v, self.factors, s)
        out, sums = LogSemiring.vecmat_checked(v, self.factors, s, normalised)
        self._sums.append(sums)
        return out

    def step_with_argmax(self, v: torch.Tensor, s: int) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.semiring.vecmat_with_argmax(v, self.factors, s)

    def lost_mass(self, used: torch.Tensor) -> bool:
        if not self._sums:
            return False
        sums = torch.stack(self._sums, 1).detach()  # (B, N, K)
        low = (sums < underflow_threshold(sums.dtype, sums.shape[-1])) & used[:, :, None]
        return bool(low.any())  # one host synchronisation

    def exact(self) -> "MatrixSteps":
        return MatrixSteps(self._trans, self.semiring, self.reverse, exact=True)


class WindowSteps(_Steps):
    """Banded steps: ``table`` ``(B', S, K, W)``, ``[j, w]`` the move from ``j - w`` (or ``j + w`` if ``ahead``) to ``j``."""

    def __init__(self, table: torch.Tensor, semiring, ahead: bool) -> None:
        self.semiring, self.table, self.ahead = semiring, table, ahead
        self.width = table.shape[-1]
        self._states = torch.arange(table.shape[-2], device=table.device)  # (made here: a step mutates nothing, so scan can trace it)

    def _scores(self, v: torch.Tensor, s: int) -> torch.Tensor:
        return shift_windows(v, self.width, ahead=self.ahead) + self.table[:, s]

    def step(self, v: torch.Tensor, s: int, normalised: bool = False) -> torch.Tensor:
        return self.semiring.sum(self._scores(v, s), -1)

    def step_with_argmax(self, v: torch.Tensor, s: int) -> Tuple[torch.Tensor, torch.Tensor]:
        values, move = self.semiring.sum_with_argmax(self._scores(v, s), -1)
        return values, self._states + move if self.ahead else self._states - move


class GatherSteps(_Steps):
    """Sparse steps: ``table`` ``(B', S, K, X)`` and ``index`` ``(B'', K, X)`` source states (``-1`` unused)."""

    def __init__(self, table: torch.Tensor, index: torch.Tensor, semiring) -> None:
        self.semiring, self.table = semiring, table  # -inf at unused slots (canonical form)
        self.index = index.clamp(min=0)
        self._flat = index.clamp(min=0).reshape(index.shape[0], -1)  # (not a view of self.index: scan traces no aliases)

    def _scores(self, v: torch.Tensor, s: int) -> torch.Tensor:
        b, k = v.shape
        gathered = v.gather(-1, self._flat.expand(b, -1)).view(b, k, -1)
        return gathered + self.table[:, s]

    def step(self, v: torch.Tensor, s: int, normalised: bool = False) -> torch.Tensor:
        return self.semiring.sum(self._scores(v, s), -1)

    def step_with_argmax(self, v: torch.Tensor, s: int) -> Tuple[torch.Tensor, torch.Tensor]:
        values, slot = self.semiring.sum_with_argmax(self._scores(v, s), -1)
        source = self.index.expand(v.shape[0], -1, -1).gather(-1, slot.unsqueeze(-1)).squeeze(-1)
        return values, source


class ScatterSteps(_Steps):
    """Sparse backward steps (log semiring) over the predecessor lists themselves.

    ``table`` ``(B', S, K, P)`` and ``index`` ``(B'', K, P)`` as for :class:`GatherSteps`; a step
    maps ``c`` ``(B, K)`` (emission + beta at ``t + 1``) to ``beta_i = logsumexp`` over the edges
    ``i -> j`` of ``c[j] + A[j, p]``: a max and a sum scattered onto the sources.
    """

    def __init__(self, table: torch.Tensor, index: torch.Tensor) -> None:
        self.table = table  # -inf at unused slots (canonical form)
        self._flat = index.clamp(min=0).reshape(index.shape[0], -1)

    def step(self, c: torch.Tensor, s: int) -> torch.Tensor:
        b, k = c.shape
        scores = (c.unsqueeze(-1) + self.table[:, s]).reshape(b, -1)  # (B, K * P), by destination
        src = self._flat.expand(b, -1)
        top = torch.full_like(c, float("-inf")).scatter_reduce_(1, src, scores, "amax")
        top = torch.nan_to_num(top, neginf=0.0)  # states without a finite edge: their sum stays 0
        mass = torch.zeros_like(c).scatter_add_(1, src, exp_flushed_(scores - top.gather(1, src)))
        return torch.log(mass) + top


# ---------------------------------------------------------------------------------------
# public single steps (streaming)
# ---------------------------------------------------------------------------------------


def _check_step_inputs(scores, transitions, log_emissions_t, step, name):
    from .inputs import as_structure  # (inputs and storages import this module: import late)
    from .storages import ops_for

    check_tensor(scores, name, "(B, K)")
    if scores.ndim != 2:
        raise HMMDimensionError(f"{name} must be (B, K); got shape {tuple(scores.shape)}",
                                expected_shape=("B", "K"), actual_shape=scores.shape)
    if scores.dtype not in FLOAT_DTYPES:
        raise HMMDtypeError(f"{name} must be float32 or float64; got {scores.dtype}")
    b, k = scores.shape
    s = as_structure(transitions)
    if s.num_states != k:
        raise HMMDimensionError(
            f"transitions must describe K == {k} states to match {name} {tuple(scores.shape)}; "
            f"got {type(s).__name__} log_probs of shape {tuple(s.log_probs.shape)} ({s.num_states} states)",
            expected_shape=(k, "X"), actual_shape=s.log_probs.shape,
        )
    if s.batch_size is not None and s.batch_size != b:
        raise HMMDimensionError(
            f"batched transitions must have B == {b} (the batch size of {name}); got shape {tuple(s.log_probs.shape)}",
            expected_shape=(b,) + tuple(s.log_probs.shape[1:]), actual_shape=s.log_probs.shape,
        )
    if s.dtype != scores.dtype:
        raise HMMDtypeError(f"transitions.log_probs must have the dtype of {name} ({scores.dtype}); got {s.dtype}")
    if s.device != scores.device:
        raise HMMDeviceError(f"transitions.log_probs must be on the device of {name} ({scores.device}); got {s.device}")
    if isinstance(step, bool):
        raise HMMValueError("step must be an int; got bool")
    try:
        step = operator.index(step)
    except TypeError:
        raise HMMTypeError(f"step must be an int; got {type(step).__name__}") from None
    if s.time_varying and not 0 <= step < s.log_probs.shape[1]:
        raise HMMValueError(
            f"step must index the T-1 == {s.log_probs.shape[1]} steps of time-varying transitions, "
            f"in [0, {s.log_probs.shape[1]}); got {step}"
        )
    if log_emissions_t is not None:
        check_tensor(log_emissions_t, "log_emissions_t", "(B, K)")
        if tuple(log_emissions_t.shape) != (b, k):
            raise HMMDimensionError(
                f"log_emissions_t must be (B, K) == {(b, k)} like {name}; got shape {tuple(log_emissions_t.shape)}",
                expected_shape=(b, k), actual_shape=log_emissions_t.shape,
            )
        if log_emissions_t.dtype != scores.dtype:
            raise HMMDtypeError(f"log_emissions_t must have the dtype of {name} ({scores.dtype}); got {log_emissions_t.dtype}")
        if log_emissions_t.device != scores.device:
            raise HMMDeviceError(f"log_emissions_t must be on the device of {name} ({scores.device}); got {log_emissions_t.device}")
    return s, ops_for(s), step


def step_table(structure, semiring, step: Optional[int] = None, backward: bool = False) -> _Steps:
    """The forward step table of a checked structure in ``semiring`` (with ``backward``: the
    log-semiring backward table), for repeated single steps.

    Static storages give a table of their one step; a time-varying one, of step ``step`` alone
    (only that slice is put in canonical form: ``O(K X)``). Its steps never synchronise with
    the host (dense log-semiring steps are exact ``logsumexp``), so a caller may keep it and
    call ``table.step(v, 0)`` / ``table.step_with_argmax(v, 0)`` frame after frame.
    """
    from .storages import ops_for  # (storages imports this module: import late)

    ops = ops_for(structure)
    trans, index = ops.canonical(structure, step if structure.time_varying else None)
    if not structure.time_varying:
        trans = trans.unsqueeze(-3)  # add S = 1
        if structure.batch_size is None:
            trans = trans.unsqueeze(0)  # B' = 1
    if backward:  # exact tables (dense: logsumexp, not the checked GEMM): nothing to check afterwards
        return ops.backward_steps(trans, index).exact()
    return ops.forward_steps(trans, index, semiring, sync=False)


def chain_step(
    scores: torch.Tensor,
    transitions: Union[TransitionStructure, torch.Tensor],
    log_emissions_t: Optional[torch.Tensor] = None,
    *,
    step: int = 0,
    semiring=LogSemiring,
):
    """One step of the chain recursion in ``semiring``: ``(B, K)`` scores at frame ``t`` -> frame ``t + 1``.

    ``LogSemiring`` returns ``next (B, K)``; ``MaxSemiring`` returns ``(next, backpointers)``
    with ``backpointers`` ``(B, K)`` int64 the best source state of each state.
    """
    return _chain_step(scores, transitions, log_emissions_t, step, semiring, "scores")


def _chain_step(scores, transitions, log_emissions_t, step, semiring, name):
    if semiring not in (LogSemiring, MaxSemiring):
        raise HMMValueError(f"semiring must be pytorch_hmm.LogSemiring or pytorch_hmm.MaxSemiring; got {semiring!r}")
    s, ops, step = _check_step_inputs(scores, transitions, log_emissions_t, step, name)
    table = step_table(s, semiring, step if s.time_varying else None)
    if semiring is MaxSemiring:
        values, source = table.step_with_argmax(scores, 0)
        source = source.long()
    else:
        values, source = table.step(scores, 0), None
    if log_emissions_t is not None:
        values = values + log_emissions_t
    return values if source is None else (values, source)


def forward_step(
    log_alpha: torch.Tensor,
    transitions: Union[TransitionStructure, torch.Tensor],
    log_emissions_t: Optional[torch.Tensor] = None,
    *,
    step: int = 0,
) -> torch.Tensor:
    """One forward step: ``(B, K)`` ``log alpha_t`` -> ``log alpha_{t+1}``.

    ``log alpha_{t+1}(j) = logsumexp_i(log alpha_t(i) + A_t[i -> j]) + log_emissions_t(j)``
    (no emission added when ``log_emissions_t`` is ``None``); ``step`` selects the step of a
    time-varying storage (ignored for static ones). Any storage (``Dense``, ``Banded``,
    ``Sparse`` or a ``(K, K)`` tensor); only shapes, dtypes and devices are checked (no host
    synchronisation). Differentiable. Iterating it from ``log_init + log_emissions[:, 0]``
    and finishing with ``logsumexp(alpha + log_final)`` gives :func:`log_partition`.
    """
    return _chain_step(log_alpha, transitions, log_emissions_t, step, LogSemiring, "log_alpha")


def viterbi_step(
    delta: torch.Tensor,
    transitions: Union[TransitionStructure, torch.Tensor],
    log_emissions_t: Optional[torch.Tensor] = None,
    *,
    step: int = 0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One Viterbi step: ``(B, K)`` best scores at frame ``t`` -> ``(delta_next (B, K), backpointers (B, K) int64)``.

    ``delta_next(j) = max_i(delta(i) + A_t[i -> j]) + log_emissions_t(j)`` and
    ``backpointers[b, j]`` is the maximising source state ``i`` (the first on ties; arbitrary
    where ``delta_next`` is ``-inf``). Same checks and arguments as :func:`forward_step`.
    """
    return _chain_step(delta, transitions, log_emissions_t, step, MaxSemiring, "delta")
