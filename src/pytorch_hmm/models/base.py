"""What every state-sequence model shares: an emission, initial probabilities, EM counts."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..emissions.base import Emission
from ..errors import HMMDimensionError, HMMValueError
from ..kernel.inputs import frame_mask


class EmissionModel(nn.Module):
    """Base of :class:`~pytorch_hmm.HMM` and :class:`~pytorch_hmm.HSMM`.

    Holds ``emission`` and the ``init_logits`` parameter (set by the subclass through
    :meth:`_set_init`), takes the emission's dtype (``self._dtype``), and gives the shared
    properties, emission scores and the initial-state M-step.
    """

    def __init__(self, emission: Emission) -> None:
        super().__init__()
        if not isinstance(emission, Emission):
            raise TypeError(f"emission must be a pytorch_hmm.emissions Emission; got {type(emission).__name__}")
        self.emission = emission
        reference = next((t for t in list(emission.parameters()) + list(emission.buffers()) if t.is_floating_point()), None)
        self._dtype = reference.dtype if reference is not None else torch.float32
        self._device = reference.device if reference is not None else None

    def _set_init(self, init_probs: torch.Tensor) -> None:
        """Register ``init_logits`` from ``(K,)`` probabilities, then move to the emission's device."""
        self.init_logits = nn.Parameter(torch.log(check_probs(init_probs, "init_probs", (self.num_states,))).to(self._dtype))
        if self._device is not None:  # live where the emission lives
            self.to(self._device)

    @property
    def num_states(self) -> int:
        return self.emission.num_states

    @property
    def log_init(self) -> torch.Tensor:
        """``(K,)`` log initial probabilities."""
        return torch.log_softmax(self.init_logits, -1)

    @property
    def init_probs(self) -> torch.Tensor:
        return self.log_init.exp()

    def log_emissions(self, x: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, T, K)`` emission log-likelihoods; padded frames (past ``lengths``) are not read."""
        if lengths is None:
            return self.emission.log_prob(x)
        lengths = torch.as_tensor(lengths, device=x.device)
        if lengths.ndim != 1 or lengths.shape[0] != x.shape[0]:
            raise HMMDimensionError(
                f"lengths must be (B,) with B == {x.shape[0]}; got shape {tuple(lengths.shape)}",
                expected_shape=(x.shape[0],),
                actual_shape=lengths.shape,
            )
        return self.emission.log_prob(x, frame_mask(lengths, x.shape[1], x.device))

    @torch.no_grad()
    def _m_step_init(self, counts: torch.Tensor) -> None:
        self.init_logits.copy_(torch.log(counts / counts.sum()))


def row_log_probs(counts: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """Row-normalised log counts; rows without counts keep ``current``."""
    totals = counts.sum(-1, keepdim=True)
    new = torch.log(counts / totals.clamp(min=torch.finfo(counts.dtype).tiny))
    return torch.where(totals > 0, new, current)


def check_probs(p: torch.Tensor, name: str, shape: tuple) -> torch.Tensor:
    """``p`` as a float tensor of ``shape`` with non-negative rows summing to 1."""
    p = torch.as_tensor(p)
    if tuple(p.shape) != shape:
        raise HMMDimensionError(f"{name} must have shape {shape}; got {tuple(p.shape)}", expected_shape=shape, actual_shape=p.shape)
    if not p.dtype.is_floating_point:
        p = p.double()
    if torch.isnan(p).any() or (p < 0).any():
        raise HMMValueError(f"{name} must hold non-negative probabilities; got NaN or negative values")
    sums = p.sum(-1)
    if ((sums - 1).abs() > 1e-4).any():
        bad = sums.flatten()[((sums - 1).abs() > 1e-4).flatten()][0].item()
        raise HMMValueError(f"{name} must sum to 1 along its last axis; got a sum of {bad:.6g}")
    return p
