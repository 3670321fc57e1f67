"""Ancestral sampling of state paths from a Markov chain (used by models' ``sample``)."""

from __future__ import annotations

from typing import Optional, Union

import torch

from ..errors import HMMValueError
from ..transitions import TransitionStructure
from ..validation import check_count
from .inputs import as_structure
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
