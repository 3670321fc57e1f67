"""Sampling state paths: from the chain itself (ancestral sampling, used by models' ``sample``)
and from the posterior given observations (forward filtering, backward sampling)."""

from __future__ import annotations

from typing import Optional, Union

import torch

from ..errors import HMMValueError
from ..threads import sized_by_scores
from ..transitions import TransitionStructure
from ..validation import check_count
from .inputs import ChainProblem, LengthsLike, as_structure, prepare
from .storages import as_steps, ops_for


def sample_paths(
    transitions: Union[TransitionStructure, torch.Tensor],
    log_init: torch.Tensor,
    num_sequences: int,
    length: int,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Draw ``(num_sequences, length)`` int64 state paths.

    Each row of transition log-probabilities is normalised before sampling, so unnormalised
    potentials give the locally normalised chain.

    Args:
        transitions: ``Dense``, ``Banded`` or ``Sparse``, static ``(K, X)`` / ``(N, K, X)``
            or time-varying ``(N, length-1, K, X)``. Sparse graphs draw among each state's
            outgoing edges (parallel edges: their probabilities add).
        log_init: ``(K,)`` or ``(N, K)`` initial log-probabilities.
    """
    s = as_structure(transitions)
    ops = ops_for(s)
    k = s.num_states
    check_count(num_sequences, "num_sequences")
    check_count(length, "length")
    if s.batch_size not in (None, num_sequences):
        raise HMMValueError(f"batched transitions must have B == num_sequences == {num_sequences}; got {s.batch_size}")
    if s.time_varying and s.log_probs.shape[1] != length - 1:
        raise HMMValueError(f"time-varying transitions must have length-1 == {length - 1} steps; got {s.log_probs.shape[1]}")
    if log_init.shape not in ((k,), (num_sequences, k)):
        raise HMMValueError(f"log_init must be (K,) or (N, K) with K == {k}, N == {num_sequences}; got {tuple(log_init.shape)}")
    trans, index = ops.canonical(s)
    table, dest = ops.outgoing(as_steps(trans, s), index)  # (B', S, K, Y), (B'', K, Y): move y of state i goes to dest[i, y]
    table = table.expand((num_sequences,) + table.shape[-3:])
    dest = dest.expand((num_sequences,) + dest.shape[-2:])
    rows = torch.arange(num_sequences, device=table.device)

    state = _draw(generator, log_init.expand(num_sequences, k), lambda n: f"log_init (sequence {n})")
    path = [state]
    for t in range(1, length):
        move = _draw(generator, table[rows, t - 1 if s.time_varying else 0, state],
                     lambda n, t=t, state=state: f"the moves out of state {int(state[n])} (sequence {n}, step {t - 1} -> {t})")
        state = dest[rows, state, move]
        path.append(state)
    return torch.stack(path, dim=1)


@sized_by_scores
def sample_posterior(
    log_emissions: torch.Tensor,
    transitions: Union[TransitionStructure, torch.Tensor],
    log_init: torch.Tensor,
    num_samples: int,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
    generator: Optional[torch.Generator] = None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Draw ``(num_samples, B, T)`` int64 state paths from p(path | x) of each sequence.

    Forward filtering, backward sampling: the scaled forward messages of the chosen backend's
    forward pass, then one PyTorch loop back over time drawing ``z_{L-1}`` from
    ``alpha_{L-1} + final`` and ``z_t`` from ``alpha_t(i) + A_t[i -> z_{t+1}]`` (Gumbel-max:
    moves of probability 0 are never drawn; sparse parallel edges add). ``-1`` at padded frames
    and for infeasible sequences (no path with a finite score).
    """
    from .chain import _log_z, _loops  # (chain imports the storages this module shares: import late)

    check_count(num_samples, "num_samples")
    p = prepare(log_emissions, transitions, log_init, lengths, log_final)
    loops = _loops(p, backend)
    with torch.no_grad():
        q = p.detached()
        alpha, log_norm = loops.forward(q)
        feasible = torch.isfinite(_log_z(q, alpha, log_norm))
        return _backward_sample(q, alpha, feasible, num_samples, generator)


def _gumbel_argmax(logits: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """One category per row of unnormalised ``logits`` (``-inf``: never drawn), by the Gumbel-max trick."""
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    return (logits - torch.log(-torch.log(u))).argmax(-1)  # u == 0 gives -inf noise, never +inf


def _backward_sample(p: ChainProblem, alpha: torch.Tensor, feasible: torch.Tensor, n: int,
                     generator: Optional[torch.Generator]) -> torch.Tensor:
    """``(n, B, T)`` paths from the scaled forward scores ``alpha`` ``(B, T, K)``: the backward sampling loop."""
    bsz, t_max, k = p.shape
    table, source = p.ops.incoming(p.trans, p.index)  # (B', S, K, X), (B'', K, X): j's x-th move comes from source[j, x]
    width = table.shape[-1]
    source = source.expand(bsz, k, width)
    item = torch.arange(bsz, device=alpha.device).expand(n, bsz)
    last = p.lengths - 1
    state = torch.zeros((n, bsz), dtype=torch.long, device=alpha.device)
    paths = torch.full((n, bsz, t_max), -1, dtype=torch.long, device=alpha.device)
    for t in range(t_max - 1, -1, -1):
        first = _gumbel_argmax((alpha[:, t] + p.final).expand(n, bsz, k), generator)
        if t < t_max - 1:  # z_t given z_{t+1} = state, through the step t -> t + 1
            moves = table[:, t if p.time_varying else 0].expand(bsz, k, width)[item, state]  # (n, B, X)
            sources = source[item, state]
            scores = alpha[:, t][item.unsqueeze(-1), sources.clamp(min=0)] + moves
            scores = scores.masked_fill(sources < 0, float("-inf"))
            back = sources.gather(-1, _gumbel_argmax(scores, generator).unsqueeze(-1)).squeeze(-1)
            state = torch.where(t < last, back, state)
        state = torch.where(t == last, first, state)
        paths[:, :, t] = torch.where(t <= last, state, -1)
    return paths.masked_fill(~feasible[None, :, None], -1)


def sample_segments(
    log_transitions: torch.Tensor,
    log_durations: torch.Tensor,
    log_init: torch.Tensor,
    num_sequences: int,
    length: int,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Draw ``(num_sequences, length)`` int64 state paths from a semi-Markov chain.

    Segments are drawn one after another (state, then duration from ``log_durations[state]``,
    then the next state from ``log_transitions[state]``) and the last one is cut at ``length``.
    Rows are normalised before sampling; a state without outgoing transitions repeats.

    Args:
        log_transitions: ``(K, K)`` with a ``-inf`` diagonal; log_durations: ``(K, D)``;
        log_init: ``(K,)``.
    """
    k = log_init.shape[-1]
    check_count(num_sequences, "num_sequences")
    check_count(length, "length")
    if log_init.shape != (k,) or log_transitions.shape != (k, k) or log_durations.ndim != 2 or log_durations.shape[0] != k:
        raise HMMValueError(
            f"expected log_init (K,), log_transitions (K, K) and log_durations (K, D) with one K; got "
            f"{tuple(log_init.shape)}, {tuple(log_transitions.shape)} and {tuple(log_durations.shape)}"
        )
    stuck = torch.isneginf(log_transitions).all(-1)
    trans = torch.where(stuck[:, None] & torch.eye(k, dtype=torch.bool, device=stuck.device), 0.0, log_transitions)

    state = _draw(generator, log_init.expand(num_sequences, k), lambda n: f"log_init (sequence {n})")
    states, durations = [], []
    covered = torch.zeros(num_sequences, dtype=torch.long, device=log_init.device)
    for _ in range(length):  # every segment covers at least one frame
        d = _draw(generator, log_durations[state], lambda n, state=state: f"log_durations of state {int(state[n])}") + 1
        states.append(state)
        durations.append((covered + d).clamp(max=length) - covered)
        covered = covered + durations[-1]
        if bool((covered >= length).all()):
            break
        state = _draw(generator, trans[state], lambda n, state=state: f"log_transitions out of state {int(state[n])}")
    flat = torch.repeat_interleave(torch.stack(states, 1).flatten(), torch.stack(durations, 1).flatten())
    return flat.reshape(num_sequences, length)


def _draw(generator: Optional[torch.Generator], logits: torch.Tensor, what=None) -> torch.Tensor:
    """One category per row of ``logits`` (normalised here). A row with NaN or ``+inf``, or with
    no finite entry (nothing to draw: a dead end), raises :class:`HMMValueError` naming
    ``what(row)``. One host synchronisation."""
    bad = torch.isnan(logits).any(-1) | torch.isposinf(logits).any(-1) | ~torch.isfinite(logits).any(-1)
    if bool(bad.any()):
        n = int(bad.nonzero()[0, 0])
        row = logits[n]
        if torch.isnan(row).any() or torch.isposinf(row).any():
            problem = "NaN or +inf log-probabilities"
        else:
            problem = "no finite log-probability (every move is -inf: a dead end)"
        raise HMMValueError(f"cannot sample: {what(n) if what else 'a row'} has {problem}")
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
