"""The emission protocol shared by every emission model.

An emission is an ``nn.Module`` over ``K`` states with

* ``log_prob(x, mask=None) -> (B, T, K)``: log p(x_t | z_t = k) for observations ``x``
  ``(B, T, D)`` (``(B, T)`` integer symbols for :class:`Categorical`); padded frames
  (``mask`` False) may hold anything and give 0;
* EM statistics, where a closed form exists: ``init_stats()`` returns a dict of zero tensors,
  ``accumulate(stats, x, posteriors, mask)`` adds the sufficient statistics of a batch in
  place (``posteriors`` ``(B, T, K)`` state marginals, ``mask`` ``(B, T)`` bool, True at valid
  frames), ``m_step(stats)`` sets the parameters from them. Statistics are additive: the
  statistics of two halves of the data summed equal those of the whole, so EM over
  mini-batches, streams or several processes is the same code;
* ``initialize(x, mask=None, generator=None)``: data-driven initial parameters (k-means or
  similar) for emissions created without explicit parameters; ``needs_init`` is True until
  parameters are given, initialised or loaded;
* ``sample(states, generator=None)``: observations for a tensor of state indices.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn

Stats = Dict[str, torch.Tensor]


class Emission(nn.Module):
    """Base class: subclasses implement ``log_prob`` and, where EM applies, the statistics."""

    num_states: int
    needs_init: bool = False

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self.needs_init = False  # loaded parameters are not placeholder defaults: fit must keep them

    def log_prob(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:  # pragma: no cover
        """``(B, T, K)`` log p(x_t | k); with ``mask`` ``(B, T)`` padded frames are not read and give 0."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Alias of :meth:`log_prob`, so an emission can sit in ``nn.Sequential``."""
        return self.log_prob(x, mask)

    def init_stats(self) -> Stats:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no closed-form EM statistics; train it by gradient")

    def accumulate(self, stats: Stats, x: torch.Tensor, posteriors: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} has no closed-form EM statistics; train it by gradient")

    def m_step(self, stats: Stats) -> None:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} has no closed-form EM statistics; train it by gradient")

    def initialize(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None) -> None:
        """Data-driven initial parameters; the default keeps the current ones."""
