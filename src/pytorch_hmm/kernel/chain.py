"""Public chain routines: log-partition, posteriors, expected transitions and Viterbi.

All take ``(log_emissions (B, T, K), transitions, log_init, lengths=None, log_final=None)``
(see :mod:`pytorch_hmm.kernel.inputs` for the contract) and a keyword ``backend``:

* ``"torch"``: pure PyTorch loops (the reference; any device);
* ``"numba"``: compiled CPU loops (CPU tensors only);
* ``"auto"`` (default): numba on CPU when it is installed, else torch.

``log_partition`` is a custom autograd Function: its backward runs the backward algorithm,
so memory stays ``O(B T K)`` and the gradient w.r.t. the emissions is the state posterior.

Transitions may be ``Dense``, ``Banded`` or ``Sparse`` (predecessor lists); what differs
between them (canonical form, steps, edge counts, compiled loops) lives in one
:class:`~.storages.StorageOps` per storage, picked once in :func:`~.inputs.prepare`.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import torch

from ..transitions import TransitionStructure
from . import torch_loops
from ..errors import HMMValueError
from ..threads import sized_by_scores
from ..validation import check_first_order
from .inputs import ChainProblem, LengthsLike, prepare

try:  # numba is a declared dependency, but keep the kernel usable without it
    from . import numba_loops
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba_loops = None  # type: ignore[assignment]

Transitions = Union[TransitionStructure, torch.Tensor]
BACKENDS = ("auto", "torch", "numba")

__all__ = ["log_partition", "posteriors", "expected_transitions", "forward_backward", "marginals", "viterbi", "forward_filter"]


def pick_loops(backend: str, device: torch.device, compiled, reference):
    """The loops module ``backend`` selects for tensors on ``device``: ``compiled`` (numba; ``None`` when
    numba is missing) or ``reference`` (PyTorch). Shared by the chain and semi-Markov kernels."""
    if backend not in BACKENDS:
        raise HMMValueError(f"backend must be one of {BACKENDS}; got {backend!r}")
    on_cpu = device.type == "cpu"
    if backend == "numba":
        if compiled is None:
            raise ImportError("backend='numba' needs the numba package: pip install numba")
        if not on_cpu:
            raise HMMValueError(f"backend='numba' runs on CPU tensors only; got device {device}")
        return compiled
    if backend == "auto" and on_cpu and compiled is not None:
        return compiled
    return reference


def _loops(p: ChainProblem, backend: str):
    return pick_loops(backend, p.emissions.device, numba_loops, torch_loops)


def _log_z(p: ChainProblem, alpha: torch.Tensor, log_norm: torch.Tensor, float64: bool = False) -> torch.Tensor:
    """``(B,)`` log Z from the scaled forward pass (in float64 with ``float64``, else in alpha's dtype).

    ``log Z = logsumexp(alpha_hat_{L-1} + final) + sum_{t < L} log_norm_t``, the sum in float64.
    """
    last = (p.lengths - 1)[:, None, None].expand(-1, 1, alpha.shape[2])
    rest = torch.logsumexp(alpha.gather(1, last).squeeze(1) + p.final, -1)
    norm_sum = torch.where(p.mask, log_norm.double(), torch.zeros((), dtype=torch.float64, device=alpha.device)).sum(1)
    return rest.double() + norm_sum if float64 else (rest.double() + norm_sum).to(alpha.dtype)


def _state_marginals(p: ChainProblem, alpha: torch.Tensor, beta: torch.Tensor, loops=torch_loops) -> Tuple[torch.Tensor, torch.Tensor]:
    """Posteriors ``(B, T, K)`` and frame totals ``(B, T)`` from the scaled passes (``loops``:
    the backend's module, whose ``state_marginals`` does the work; see :func:`torch_loops.state_marginals`)."""
    return loops.state_marginals(p, alpha, beta)


def _edge_marginals(
    p: ChainProblem, alpha: torch.Tensor, beta: torch.Tensor, log_norm: torch.Tensor, totals: torch.Tensor, loops=torch_loops
) -> torch.Tensor:
    """Expected transition counts ``(B, S', K, X)``: ``S' = T - 1`` if time-varying, else 1.

    ``xi_t(i, j) = exp(alpha_hat_t(i) + A_ij + e_{t+1}(j) + beta_hat_{t+1}(j) - log_norm_{t+1} - totals_{t+1})``
    (summing ``xi_t`` over ``i`` gives the posterior at ``t + 1``, so each step sums to 1),
    laid out in the storage's own shape by its :class:`~.storages.StorageOps` (banded storage on
    the numba backend: one compiled pass, :func:`numba_loops.banded_edges`).
    """
    bsz, t_max, k = p.shape
    dtype = alpha.dtype
    if t_max == 1:
        return torch.zeros((bsz, 1 if not p.time_varying else 0) + p.trans.shape[2:], dtype=dtype, device=alpha.device)
    if loops is numba_loops and p.ops.name == "banded":
        return numba_loops.banded_edges(p, alpha, beta, log_norm, totals)
    # a step t -> t + 1 is used iff t + 1 < length; infeasible sequences get no counts
    step_totals = totals[:, 1:]
    step_ok = torch.isfinite(step_totals)
    a = alpha[:, :-1]
    c = (p.emissions + beta - log_norm.unsqueeze(-1))[:, 1:]
    lz = step_totals[:, :, None, None]
    return p.ops.edge_marginals(p, a, c, lz, step_totals, step_ok)


class _LogPartition(torch.autograd.Function):
    """log Z with the backward algorithm as its gradient."""

    @staticmethod
    def forward(ctx, emissions, trans, init, final, problem: ChainProblem, loops):  # type: ignore[override]
        p = problem.replace(emissions=emissions, trans=trans, init=init, final=final)
        alpha, log_norm = loops.forward(p)
        log_z = _log_z(p, alpha, log_norm)
        ctx.save_for_backward(emissions, trans, init, final, alpha, log_norm, log_z)
        ctx.meta = (problem, loops)
        return log_z

    @staticmethod
    def backward(ctx, grad_log_z):  # type: ignore[override]
        check_first_order("kernel.log_partition", "for second derivatives (e.g. Hessian-vector products through "
                          "HMMLayer) use kernel.posteriors(..., differentiable=True), which runs on the PyTorch loops")
        emissions, trans, init, final, alpha, log_norm, log_z = ctx.saved_tensors
        problem, loops = ctx.meta
        lengths = problem.lengths
        p = problem.replace(emissions=emissions, trans=trans, init=init, final=final)
        beta = loops.backward(p, log_norm)
        g = torch.where(torch.isfinite(log_z), grad_log_z, torch.zeros_like(grad_log_z))
        gamma, totals = _state_marginals(p, alpha, beta, loops)
        unit = bool((g == 1).all())  # (one host synchronisation) e.g. a summed loss: gamma is the gradient as it is
        grad_e = (gamma if unit else gamma * g[:, None, None]) if ctx.needs_input_grad[0] else None
        grad_init = gamma[:, 0] * g[:, None] if ctx.needs_input_grad[2] else None
        grad_final = None
        if ctx.needs_input_grad[3]:
            last = (lengths - 1)[:, None, None].expand(-1, 1, gamma.shape[2])
            grad_final = gamma.gather(1, last).squeeze(1) * g[:, None]
        grad_trans = None
        if ctx.needs_input_grad[1]:
            xi = _edge_marginals(p, alpha, beta, log_norm, totals, loops)
            xi = xi if unit else xi * g[:, None, None, None]
            grad_trans = xi.sum(0, keepdim=True) if trans.shape[0] == 1 and xi.shape[0] != 1 else xi
        return grad_e, grad_trans, grad_init, grad_final, None, None


@sized_by_scores
def log_partition(
    log_emissions: torch.Tensor,
    transitions: Transitions,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
    *,
    backend: str = "auto",
    checkpoint: Optional[int] = None,
) -> torch.Tensor:
    """``(B,)`` log p(x_{1:L_b}) summed over all state paths; ``-inf`` where no path exists.

    Differentiable w.r.t. ``log_emissions``, ``transitions.log_probs``, ``log_init`` and
    ``log_final``; the gradients are the posterior marginals (see :func:`posteriors`).

    ``checkpoint``: a chunk length in frames for very long sequences (:mod:`.checkpoint`): the
    forward pass keeps ``alpha`` only every ``checkpoint`` frames and the backward pass recomputes
    it chunk by chunk, so it needs ``O(B K (T / C + C))`` memory besides the ``(B, T, K)``
    gradient it returns (``None``: keep every frame, ``O(B T K)``).
    """
    p = prepare(log_emissions, transitions, log_init, lengths, log_final)
    loops = _loops(p, backend)
    if checkpoint is not None:
        from . import checkpoint as checkpointed  # (imports this module)

        return checkpointed.log_partition(p, loops, checkpoint)
    return _LogPartition.apply(p.emissions, p.trans, p.init, p.final, p, loops)


def _forward_backward(p: ChainProblem, backend: str):
    """Scaled ``(alpha_hat, beta_hat, log_norm, log Z)`` without autograd."""
    loops = _loops(p, backend)
    with torch.no_grad():
        q = p.detached()
        alpha, log_norm = loops.forward(q)
        log_z = _log_z(q, alpha, log_norm)
        beta = loops.backward(q, log_norm)
    return alpha, beta, log_norm, log_z


@sized_by_scores
def forward_backward(
    log_emissions: torch.Tensor,
    transitions: Transitions,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
    *,
    backend: str = "auto",
    checkpoint: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(log Z (B,), posteriors (B, T, K))`` from one forward and one backward pass (no grad).

    ``checkpoint``: a chunk length in frames (see :func:`log_partition`); only the returned
    posteriors are then ``(B, T, K)``. :func:`~.checkpoint.posterior_chunks` does without them.
    """
    p = prepare(log_emissions, transitions, log_init, lengths, log_final)
    if checkpoint is not None:
        from . import checkpoint as checkpointed  # (imports this module)

        return checkpointed.marginals(p, _loops(p, backend), checkpoint, edges=False)[:2]
    alpha, beta, _, log_z = _forward_backward(p, backend)
    with torch.no_grad():
        return log_z, _state_marginals(p, alpha, beta, _loops(p, backend))[0]


@sized_by_scores
def forward_filter(
    log_emissions: torch.Tensor,
    transitions: Transitions,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    *,
    backend: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The forward filter (no grad): ``(log_filtered (B, T, K), log_evidence (B, T))``.

    ``log_filtered[b, t] = log p(z_t | x_{1:t})`` (each valid row log-normalised) and
    ``log_evidence[b, t] = log p(x_{1:t})``, its per-frame normalisers summed in float64. No end
    constraint: the filter looks at no frame after ``t``. Both are ``-inf`` at padded frames and
    from the first frame no path reaches on (infeasible prefixes). Streaming runs it chunk by
    chunk with ``log_init`` the predictive prior :func:`forward_step` gives from the last
    filtered frame (:mod:`pytorch_hmm.streaming`).
    """
    p = prepare(log_emissions, transitions, log_init, lengths)
    loops = _loops(p, backend)
    with torch.no_grad():
        q = p.detached()
        return filtered_from(q, *loops.forward(q))


def filtered_from(p: ChainProblem, alpha: torch.Tensor, log_norm: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`forward_filter`'s outputs from a scaled forward pass ``(alpha_hat, log_norm)`` of ``p``."""
    frame_total = torch.logsumexp(alpha, -1)  # alpha_hat has max 0: only -inf when no state is reachable
    mask = p.mask
    ok = mask & torch.isfinite(frame_total)
    ok = ok & (ok.long().cumprod(1) > 0)  # once unreachable, every later frame is too
    neg_inf = torch.full((), -math.inf, dtype=alpha.dtype, device=alpha.device)
    filtered = torch.where(ok[:, :, None], alpha - frame_total.unsqueeze(-1), neg_inf)
    norms = torch.where(mask, log_norm.double(), torch.zeros((), dtype=torch.float64, device=alpha.device))
    evidence = torch.where(ok, norms.cumsum(1) + frame_total.double(), -math.inf).to(alpha.dtype)
    return filtered, evidence


@sized_by_scores
def marginals(
    log_emissions: torch.Tensor,
    transitions: Transitions,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
    *,
    backend: str = "auto",
    checkpoint: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EM statistics from one forward-backward pass (no grad).

    Returns:
        log_z: ``(B,)``; posteriors: ``(B, T, K)``; expected transition counts shaped as in
        :func:`expected_transitions`.

    ``checkpoint``: a chunk length in frames (see :func:`log_partition`).
    """
    p = prepare(log_emissions, transitions, log_init, lengths, log_final)
    if checkpoint is not None:
        from . import checkpoint as checkpointed  # (imports this module)

        return checkpointed.marginals(p, _loops(p, backend), checkpoint)
    alpha, beta, log_norm, log_z = _forward_backward(p, backend)
    with torch.no_grad():
        q = p.detached()
        gamma, totals = _state_marginals(q, alpha, beta, _loops(p, backend))
        xi = _edge_marginals(q, alpha, beta, log_norm, totals, _loops(p, backend))
    return log_z, gamma, xi if p.time_varying else xi.squeeze(1)


@sized_by_scores
def posteriors(
    log_emissions: torch.Tensor,
    transitions: Transitions,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
    *,
    backend: str = "auto",
    differentiable: bool = False,
    checkpoint: Optional[int] = None,
) -> torch.Tensor:
    """``(B, T, K)`` p(z_t = k | x); 0 at padded frames and for infeasible sequences.

    With ``differentiable=True`` the posteriors are computed as the gradient of ``log Z``
    through the PyTorch loops with ``create_graph=True``, so they can be backpropagated to
    every input (e.g. :class:`~pytorch_hmm.models.HMMLayer`). That path needs a finite
    ``log Z`` (feasible sequences) and keeps the autograd graph of the forward pass
    (memory ``O(B T K)`` plus the transition storage).

    ``checkpoint``: a chunk length in frames (see :func:`log_partition`; not with ``differentiable``).
    """
    if not differentiable:
        return forward_backward(log_emissions, transitions, log_init, lengths, log_final, backend=backend,
                                checkpoint=checkpoint)[1]
    if checkpoint is not None:
        raise HMMValueError("checkpoint cannot be combined with differentiable=True (differentiable posteriors keep "
                            "the autograd graph of every frame); pass checkpoint=None")
    p = prepare(log_emissions, transitions, log_init, lengths, log_final)
    with torch.enable_grad():
        e = p.emissions if p.emissions.requires_grad else p.emissions.detach().requires_grad_(True)
        q = p.replace(emissions=e)
        alpha, log_norm = torch_loops.forward(q)
        log_z = _log_z(q, alpha, log_norm)
        (gamma,) = torch.autograd.grad(log_z.sum(), e, create_graph=True)
    return gamma.masked_fill(~p.mask.unsqueeze(-1), 0.0)


@sized_by_scores
def expected_transitions(
    log_emissions: torch.Tensor,
    transitions: Transitions,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
    *,
    backend: str = "auto",
    checkpoint: Optional[int] = None,
) -> torch.Tensor:
    """Expected transition counts in the structure's storage (no grad).

    ``(B, K, K)`` dense, ``(B, K, W)`` banded or ``(B, K, P)`` sparse (per predecessor slot;
    parallel edges each get their own share), summed over time; time-varying structures keep
    the time axis: ``(B, T-1, K, X)``. Moves that do not exist (banded ``i + w >= K``, unused
    sparse slots, padded steps, infeasible sequences) count 0.

    ``checkpoint``: a chunk length in frames (see :func:`log_partition`); no ``(B, T, K)``
    tensor is then made.
    """
    if checkpoint is not None:
        p = prepare(log_emissions, transitions, log_init, lengths, log_final)
        from . import checkpoint as checkpointed  # (imports this module)

        return checkpointed.marginals(p, _loops(p, backend), checkpoint, states=False)[2]
    return marginals(log_emissions, transitions, log_init, lengths, log_final, backend=backend)[2]


@sized_by_scores
def viterbi(
    log_emissions: torch.Tensor,
    transitions: Transitions,
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
    *,
    backend: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Best state path per sequence.

    Returns:
        paths: ``(B, T)`` int64 state indices, ``-1`` at padded frames and for infeasible sequences.
        scores: ``(B,)`` log-score of the best path (``-inf`` when no path exists).
    """
    p = prepare(log_emissions, transitions, log_init, lengths, log_final)
    loops = _loops(p, backend)
    with torch.no_grad():
        return loops.viterbi(p.detached())
