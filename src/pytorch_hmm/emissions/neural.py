"""Neural emissions: any ``nn.Module`` mapping features ``(B, T, D)`` to ``(B, T, K)`` scores.

Two modes:

* ``"log_likelihood"``: the module's output *is* ``log p(x_t | z_t = k)`` (or any log-potential)
  and is used as is;
* ``"hybrid"`` (hybrid NN/HMM, Bourlard & Morgan): the module outputs state logits or
  log-posteriors ``log p(k | x_t)`` (up to a per-frame constant); they become *scaled
  likelihoods* ``log p(x_t | k) - log p(x_t) = log_softmax(out)[k] - log p(k)`` with the state
  priors ``log p(k)`` held in the buffer :attr:`Neural.log_priors`.

There are no closed-form EM statistics: ``init_stats`` / ``accumulate`` / ``m_step`` raise
``NotImplementedError``; train the module by gradient descent on ``-log_partition``.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from ..errors import HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from ..validation import check_count
from .base import Emission

__all__ = ["Neural"]

_MODES = ("log_likelihood", "hybrid")


class Neural(Emission):
    """Emission scores from a neural network.

    Args:
        module: an ``nn.Module`` mapping ``x`` ``(B, T, ...)`` to ``(B, T, K)`` scores (its
            parameters are registered under ``module.``, so they train and move with this one).
        num_states: ``K``. ``None`` takes it from ``log_priors`` when given; otherwise the
            output's last dimension is not checked (pass ``num_states`` to have it checked).
        mode: ``"log_likelihood"`` (output used as is) or ``"hybrid"`` (scaled likelihoods
            ``log_softmax(out, -1) - log_priors``).
        log_priors: ``(K,)`` log state priors for ``"hybrid"`` mode, finite (they need not be
            normalised, so a prior scale may be folded in). Default: uniform ``-log K``, which
            makes the scaled likelihoods the log-posteriors plus the constant ``log K``. Only
            valid in ``"hybrid"`` mode.

    Attributes:
        log_priors: buffer ``(K,)`` (``None`` in ``"log_likelihood"`` mode); assigning a tensor
            to it is validated and cast to the module's buffer dtype/device. See also
            :meth:`set_priors_from_counts`.
    """

    def __init__(
        self,
        module: nn.Module,
        num_states: Optional[int] = None,
        mode: str = "log_likelihood",
        log_priors: Optional[torch.Tensor] = None,
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise HMMTypeError(f"module must be a torch.nn.Module; got {type(module).__name__}")
        if mode not in _MODES:
            raise HMMValueError(f"mode must be 'log_likelihood' or 'hybrid'; got {mode!r}")
        if num_states is not None:
            num_states = check_count(num_states, "num_states")
        self.module = module
        self.mode = mode
        if log_priors is not None:
            if mode != "hybrid":
                raise HMMValueError("log_priors only apply in mode='hybrid'; got mode='log_likelihood'")
            if num_states is None and isinstance(log_priors, torch.Tensor) and log_priors.ndim == 1:
                num_states = int(log_priors.shape[0])
        self.num_states = num_states  # type: ignore[assignment]
        if mode == "hybrid":
            if num_states is None:
                raise HMMValueError(
                    "mode='hybrid' needs num_states or log_priors (K,) to hold the state priors"
                )
            dtype, device = _module_float(module)
            if log_priors is None:
                log_priors = torch.full((num_states,), -math.log(num_states), dtype=dtype, device=device)
            log_priors = self._check_log_priors(log_priors).detach().to(device=device).clone()
            self.register_buffer("log_priors", log_priors)
        else:
            self.register_buffer("log_priors", None)

    # ------------------------------------------------------------------ priors
    def __setattr__(self, name, value) -> None:
        if name == "log_priors" and "_buffers" in self.__dict__ and "log_priors" in self._buffers:
            if value is not None or self.mode == "hybrid":
                value = self._check_log_priors(value)
                current = self._buffers["log_priors"]
                if current is not None:
                    value = value.detach().to(dtype=current.dtype, device=current.device).clone()
        super().__setattr__(name, value)

    def _check_log_priors(self, value: torch.Tensor) -> torch.Tensor:
        if self.mode != "hybrid":
            raise HMMValueError("log_priors only apply in mode='hybrid'; got mode='log_likelihood'")
        k = self.num_states
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise HMMDtypeError(
                f"log_priors must be a floating-point tensor (K,) = ({k},); "
                f"got {getattr(value, 'dtype', type(value).__name__)}"
            )
        if tuple(value.shape) != (k,):
            raise HMMDimensionError(
                f"log_priors must be (K,) = ({k},); got {tuple(value.shape)}",
                expected_shape=(k,),
                actual_shape=value.shape,
            )
        if not torch.isfinite(value).all():
            raise HMMValueError(
                "log_priors must be finite (a state with prior 0 would get an infinite scaled likelihood)"
            )
        return value

    def set_priors_from_counts(self, counts: torch.Tensor, pseudocount: float = 0.0) -> None:
        """Set ``log_priors = log((counts + pseudocount) / sum(counts + pseudocount))``.

        ``counts`` ``(K,)``: state occupancies, e.g. ``torch.bincount(alignment, minlength=K)``
        or posteriors summed over frames. Every state needs a positive count (or use
        ``pseudocount > 0``).
        """
        if self.mode != "hybrid":
            raise HMMValueError("log_priors only apply in mode='hybrid'; got mode='log_likelihood'")
        k = self.num_states
        if not isinstance(counts, torch.Tensor):
            raise HMMTypeError(f"counts must be a tensor (K,) = ({k},); got {type(counts).__name__}")
        if tuple(counts.shape) != (k,):
            raise HMMDimensionError(
                f"counts must be (K,) = ({k},); got {tuple(counts.shape)}",
                expected_shape=(k,),
                actual_shape=counts.shape,
            )
        c = counts.detach().to(torch.float64) + float(pseudocount)
        if torch.isnan(c).any() or (c < 0).any():
            raise HMMValueError("counts (plus pseudocount) must be non-negative and not NaN")
        if (c == 0).any():
            state = int((c == 0).nonzero()[0, 0])
            raise HMMValueError(
                f"counts must be positive for every state; state {state} has count 0 (use pseudocount > 0)"
            )
        self.log_priors = torch.log(c) - torch.log(c.sum())

    # ------------------------------------------------------------------ likelihood
    def log_prob(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, T, K)`` emission log-scores of ``x`` ``(B, T, ...)`` (0 at frames where ``mask`` is False).

        The module sees every frame (padding included), so padded frames must hold finite values.
        """
        if not isinstance(x, torch.Tensor):
            raise HMMTypeError(f"x must be a torch.Tensor (B, T, ...); got {type(x).__name__}")
        if x.ndim < 2:
            raise HMMDimensionError(
                f"x must be (B, T, ...) (batch first, then frames); got {tuple(x.shape)}",
                expected_shape=("B", "T", "..."),
                actual_shape=x.shape,
            )
        if x.is_floating_point() and torch.isnan(x).any():
            raise HMMValueError("x must not contain NaN")
        out = self.module(x)
        if not isinstance(out, torch.Tensor):
            raise HMMValueError(
                f"the wrapped module must return a tensor (B, T, K); got {type(out).__name__} "
                "(e.g. wrap nn.LSTM so that it returns only its output)"
            )
        b, t = x.shape[:2]
        k = self.num_states
        expected = (b, t, "K" if k is None else k)
        if out.ndim != 3 or out.shape[:2] != (b, t) or (k is not None and out.shape[2] != k):
            raise HMMDimensionError(
                f"the wrapped module must return (B, T, K) = ({b}, {t}, {'K' if k is None else k}) "
                f"scores for x {tuple(x.shape)}; got {tuple(out.shape)}",
                expected_shape=expected,
                actual_shape=out.shape,
                suggestion="check the module's output layer size and that it keeps the batch-first (B, T) axes",
            )
        if not out.is_floating_point():
            raise HMMDtypeError(f"the wrapped module must return floating-point scores; got {out.dtype}")
        if torch.isnan(out).any():
            raise HMMValueError("the wrapped module returned NaN scores")
        if self.mode == "hybrid":
            out = torch.log_softmax(out, dim=-1) - self.log_priors.to(out.dtype)
        return out if mask is None else out.masked_fill(~mask.unsqueeze(-1), 0.0)

    def extra_repr(self) -> str:
        return f"num_states={self.num_states}, mode={self.mode!r}"


def _module_float(module: nn.Module):
    """dtype and device of the module's first floating-point parameter (defaults otherwise)."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype, p.device
    return torch.get_default_dtype(), None
