"""Validation and canonical form of the chain kernel's inputs.

Every public kernel routine calls :func:`prepare`, which checks the user's tensors at the
boundary (one host synchronisation, never inside the time loop) and returns a
:class:`ChainProblem` whose tensors have fixed ranks:

* ``emissions`` ``(B, T, K)``, padded frames set to 0;
* ``trans`` ``(B', S, K, X)`` with ``B'`` in ``{1, B}``, ``S`` = 1 (static) or ``T - 1``
  (time-varying, padded steps set to 0), ``X`` = ``K`` (dense), ``W`` (banded, moves past
  the last state set to ``-inf``) or ``P`` (sparse, unused slots set to ``-inf``);
* ``ops``: the storage's kernel operations (:mod:`.storages`), chosen here once;
* ``index``: sparse predecessor lists ``(B'', K, P)`` (``B''`` in ``{1, B}``), else ``None``;
* ``init``, ``final`` ``(B, K)``; ``lengths`` ``(B,)`` int64 on the emissions' device.

The canonicalisation uses differentiable ops only, so gradients reach the user's tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch

from ..errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMTypeError
from ..transitions import Dense, TransitionStructure
from ..validation import LengthsLike, check_finite_or_neginf, check_frame_scores, check_lengths, check_tensor, frame_mask
from .storages import StorageOps, as_steps, ops_for

__all__ = ["ChainProblem", "prepare", "as_structure", "check_emissions", "check_state_vector", "check_chain_lengths"]


@dataclass
class ChainProblem:
    """Canonical kernel inputs (see module docstring for shapes)."""

    emissions: torch.Tensor
    trans: torch.Tensor
    ops: StorageOps
    init: torch.Tensor
    final: torch.Tensor
    lengths: torch.Tensor
    time_varying: bool
    index: Optional[torch.Tensor] = None

    @property
    def kind(self) -> str:
        """The storage's name: ``"dense"``, ``"banded"`` or ``"sparse"``."""
        return self.ops.name

    @property
    def shape(self) -> torch.Size:
        return self.emissions.shape

    @property
    def mask(self) -> torch.Tensor:
        """``(B, T)`` bool, True at valid frames."""
        return frame_mask(self.lengths, self.emissions.shape[1], self.emissions.device)

    def detached(self) -> "ChainProblem":
        return ChainProblem(
            self.emissions.detach(), self.trans.detach(), self.ops,
            self.init.detach(), self.final.detach(), self.lengths, self.time_varying, self.index,
        )

    def replace(self, **changes) -> "ChainProblem":
        """A copy with some fields replaced (e.g. tensors that now require grad)."""
        fields = dict(self.__dict__)
        fields.update(changes)
        return ChainProblem(**fields)


def as_structure(transitions: Union[TransitionStructure, torch.Tensor]) -> TransitionStructure:
    """Accept a structure, or a plain tensor taken as ``Dense`` log-probabilities."""
    if isinstance(transitions, TransitionStructure):
        return transitions
    if isinstance(transitions, torch.Tensor):
        return Dense(transitions)
    raise HMMTypeError(
        "transitions must be a pytorch_hmm.transitions.Dense or Banded structure "
        f"(or Sparse, or a (K, K) log-probability tensor); got {type(transitions).__name__}"
    )


def prepare(
    log_emissions: torch.Tensor,
    transitions: Union[TransitionStructure, torch.Tensor],
    log_init: torch.Tensor,
    lengths: LengthsLike = None,
    log_final: Optional[torch.Tensor] = None,
) -> ChainProblem:
    """Validate the kernel's inputs and return their canonical form."""
    e = check_emissions(log_emissions)
    b, t, k = e.shape
    structure = as_structure(transitions)
    ops = ops_for(structure)
    _check_structure(structure, ops, e)
    init = check_state_vector(log_init, "log_init", e)
    final = (
        torch.zeros((b, k), dtype=e.dtype, device=e.device)
        if log_final is None
        else check_state_vector(log_final, "log_final", e)
    )
    lens = check_chain_lengths(lengths, e)
    mask = frame_mask(lens, t, e.device)

    padded = bool((lens < t).any())  # one host synchronisation; full-length batches skip the masking
    trans, index = ops.canonical(structure)
    if structure.time_varying:
        step_valid = mask[:, 1:]  # step t (frame t -> t+1) is used iff t + 1 < length
        check_finite_or_neginf(trans, "transitions.log_probs", step_valid[:, :, None, None] if padded else None)
        if padded:
            trans = torch.where(step_valid[:, :, None, None], trans, torch.zeros((), dtype=e.dtype, device=e.device))
    else:
        check_finite_or_neginf(trans, "transitions.log_probs", None)
    trans = as_steps(trans, structure)
    if padded:
        e = torch.where(mask[:, :, None], e, torch.zeros((), dtype=e.dtype, device=e.device))
    check_finite_or_neginf(e, "log_emissions", None, " (at valid frames)")
    check_finite_or_neginf(init, "log_init", None)
    check_finite_or_neginf(final, "log_final", None)
    return ChainProblem(e, trans, ops, init, final, lens, structure.time_varying, index)


def check_emissions(x: torch.Tensor) -> torch.Tensor:
    """``log_emissions`` ``(B, T, K)`` float32/float64, non-empty."""
    return check_frame_scores(x, "log_emissions", "K", "state")


def _check_structure(s: TransitionStructure, ops: StorageOps, e: torch.Tensor) -> None:
    b, t, k = e.shape
    shape = tuple(s.log_probs.shape)
    if s.num_states != k:
        raise HMMDimensionError(
            f"transitions must describe K == {k} states to match log_emissions {tuple(e.shape)}; "
            f"got {type(s).__name__} log_probs of shape {shape} ({s.num_states} states)",
            expected_shape=(k, ops.expected_last_dim(k)),
            actual_shape=shape,
        )
    if s.batch_size is not None and s.batch_size != b:
        raise HMMDimensionError(
            f"batched transitions must have B == {b} (the batch size of log_emissions); got shape {shape}",
            expected_shape=(b,) + shape[1:],
            actual_shape=shape,
            suggestion="pass an unbatched (K, ...) structure to share it across the batch",
        )
    if s.time_varying and shape[1] != t - 1:
        raise HMMDimensionError(
            f"time-varying transitions must have T-1 == {t - 1} steps for T == {t} frames; got shape {shape}",
            expected_shape=(b, t - 1) + shape[2:],
            actual_shape=shape,
        )
    if s.dtype != e.dtype:
        raise HMMDtypeError(
            f"transitions.log_probs must have the dtype of log_emissions ({e.dtype}); got {s.dtype}"
        )
    if s.device != e.device:
        raise HMMDeviceError(
            f"transitions.log_probs must be on the device of log_emissions ({e.device}); got {s.device}"
        )


def check_state_vector(x: torch.Tensor, name: str, e: torch.Tensor) -> torch.Tensor:
    """``x`` ``(K,)`` or ``(B, K)`` matching ``e`` ``(B, T, K)`` in dtype and device, expanded to ``(B, K)``."""
    b, _, k = e.shape
    check_tensor(x, name, "(K,) or (B, K)")
    if x.shape not in ((k,), (b, k)):
        raise HMMDimensionError(
            f"{name} must be (K,) or (B, K) with B == {b}, K == {k}; got shape {tuple(x.shape)}",
            expected_shape=(b, k),
            actual_shape=x.shape,
        )
    if x.dtype != e.dtype:
        raise HMMDtypeError(f"{name} must have the dtype of log_emissions ({e.dtype}); got {x.dtype}")
    if x.device != e.device:
        raise HMMDeviceError(f"{name} must be on the device of log_emissions ({e.device}); got {x.device}")
    return x.expand(b, k)


def check_chain_lengths(lengths: LengthsLike, e: torch.Tensor) -> torch.Tensor:
    """:func:`check_lengths` for the chain kernels: ``lengths`` of ``e`` ``(B, T, K)``, in ``[1, T]``."""
    b, t, _ = e.shape
    return check_lengths(lengths, "lengths", b, t, e.device, limit_name="T")

