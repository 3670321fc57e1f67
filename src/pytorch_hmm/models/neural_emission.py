"""The emission of a :class:`~pytorch_hmm.NeuralHMM`: a density over frames whose parameters
come in two parts, one per frame (from the decoder) and one per state (from the text encoder).

Keeping the ``(B, T, K)`` log-densities a function of a ``(B, T, F)`` frame part and a
``(B, K, S)`` state part is what keeps the model's memory ``O(B T K)``. Any
:class:`FrameStateEmission` can replace the default :class:`FactorisedGaussian` (e.g. a
normalising flow in front of a Gaussian, as in OverFlow, Mehta et al. 2023): the model only
reads ``frame_dim`` and ``state_dim`` (how many raw outputs its networks must give) and calls
``log_density`` and ``sample``.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..validation import check_count, check_number

__all__ = ["FrameStateEmission", "FactorisedGaussian", "factorised_log_density"]

_LOG_2PI = math.log(2 * math.pi)


class FrameStateEmission(nn.Module):
    """Interface of a :class:`~pytorch_hmm.NeuralHMM` emission over ``feature_dim``-dimensional frames.

    Subclasses set ``feature_dim``, ``frame_dim`` (``F``: raw outputs per frame, read from the
    decoder) and ``state_dim`` (``S``: raw outputs per state, read from the encoder), and implement
    :meth:`log_density` and :meth:`sample`. ``frame=None`` means a model without the decoder
    (``autoregressive=False``): the density then depends on the state part alone.
    """

    feature_dim: int
    frame_dim: int
    state_dim: int

    def log_density(self, features: torch.Tensor, frame: Optional[torch.Tensor], state: torch.Tensor) -> torch.Tensor:
        """``(B, T, K)`` log-density of each frame ``features`` ``(B, T, D)`` under each state, from
        the raw outputs ``frame`` ``(B, T, F)`` (or ``None``) and ``state`` ``(B, K, S)``."""
        raise NotImplementedError

    def sample(self, frame: Optional[torch.Tensor], state: torch.Tensor, temperature: float,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """One frame ``(B, D)`` per item from the raw outputs ``frame`` ``(B, F)`` (or ``None``) and
        ``state`` ``(B, S)`` of its current state; ``temperature`` scales the noise (0: the mode)."""
        raise NotImplementedError


class FactorisedGaussian(FrameStateEmission):
    """Diagonal Gaussian with ``mean = m_t + n_k`` and ``std = g_t * s_k`` (the default emission).

    The raw frame outputs are ``[m, g']`` and the state outputs ``[n, s']`` (each ``2 D``):
    ``g = 1 + softplus(g') >= 1`` and ``s = std_floor + softplus(s') >= std_floor``. Without a
    frame part, ``m = 0`` and ``g = 1``.
    """

    def __init__(self, feature_dim: int, std_floor: float = 1e-2) -> None:
        super().__init__()
        self.feature_dim = check_count(feature_dim, "feature_dim")
        self.std_floor = check_number(std_floor, "std_floor", positive=True)
        self.frame_dim = self.state_dim = 2 * self.feature_dim

    def frame_params(self, frame: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(m, g)``, each ``(..., D)``, from raw frame outputs ``(..., 2 D)``."""
        d = self.feature_dim
        return frame[..., :d], 1.0 + F.softplus(frame[..., d:])

    def state_params(self, state: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(n, s)``, each ``(..., D)``, from raw state outputs ``(..., 2 D)``."""
        d = self.feature_dim
        return state[..., :d], self.std_floor + F.softplus(state[..., d:])

    def log_density(self, features, frame, state):
        n, s = self.state_params(state)
        if frame is None:
            m, g = torch.zeros_like(features), torch.ones_like(features)
        else:
            m, g = self.frame_params(frame)
        return factorised_log_density(features - m, g, n, s)

    def sample(self, frame, state, temperature, generator=None):
        mean, std = self.state_params(state)
        if frame is not None:
            m, g = self.frame_params(frame)
            mean, std = m + mean, g * std
        if not temperature:
            return mean
        noise = torch.randn(mean.shape, dtype=mean.dtype, device=mean.device, generator=generator)
        return mean + temperature * std * noise


def factorised_log_density(y: torch.Tensor, g: torch.Tensor, n: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """``(B, T, K)`` log N(y_t; n_k, diag((g_t * s_k)^2)) for ``y``, ``g`` ``(B, T, D)`` and ``n``, ``s`` ``(B, K, D)``.

    With ``P = 1 / g^2`` and ``Q = 1 / s^2`` the quadratic form is
    ``sum_d (y^2 P) Q - 2 (y P) (n Q) + P (n^2 Q)``: one batched product of ``[y^2 P, y P, P]``
    and ``[Q, -2 n Q, n^2 Q]``, after shifting ``y`` and ``n`` by the mean state mean (a
    constant) to limit cancellation.
    """
    ref = n.detach().mean(1, keepdim=True)
    y, n = y - ref, n - ref
    p, q = g.pow(-2), s.pow(-2)
    frame = torch.cat([y * y * p, y * p, p], -1)  # (B, T, 3D)
    state = torch.cat([q, -2.0 * n * q, n * n * q], -1)  # (B, K, 3D)
    quad = torch.bmm(frame, state.transpose(1, 2))
    d = y.shape[-1]
    return -0.5 * (quad + d * _LOG_2PI) - torch.log(g).sum(-1, keepdim=True) - torch.log(s).sum(-1)[:, None, :]
