"""Categorical (discrete) emissions over integer symbols ``0 .. S-1``.

``probs[k, s] = p(x_t = s | z_t = k)``, shape ``(K, S)`` as hmmlearn's ``emissionprob_``. The
parameter is stored as logits (``nn.Parameter`` ``(K, S)``) and normalised with ``log_softmax``,
so the same module trains by EM (:meth:`Categorical.m_step`) and by gradient descent.

EM statistics are the expected symbol counts ``counts[k, s] = sum_t gamma_t(k) [x_t == s]``
over valid frames; the M-step normalises ``max(counts + pseudocount, 0)`` per state, which is
the MAP estimate under a Dirichlet prior with concentration ``pseudocount + 1`` (hmmlearn's
``emissionprob_prior - 1``).
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from ..semiring import log_normalise
from ..validation import check_count, check_float_dtype
from .base import Emission, Stats

__all__ = ["Categorical"]

_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


class Categorical(Emission):
    """Discrete emissions: ``log_prob(x)[b, t, k] = log probs[k, x[b, t]]``.

    Args:
        num_states: ``K``.
        num_symbols: ``S``; symbols are the integers ``0 .. S-1``.
        probs: ``(K, S)`` emission probabilities, rows non-negative and summing to 1. ``None``
            draws near-uniform random rows from the global RNG (``U(0.5, 1.5)`` normalised, so
            states differ and EM / gradient descent can break the symmetry); call
            :meth:`initialize` for a data-driven start.
        pseudocount: added to the expected counts in :meth:`m_step` (Dirichlet concentration
            minus 1, as hmmlearn's ``emissionprob_prior - 1``). A float or a tensor broadcastable
            to ``(K, S)``; negative values are allowed (the result is clipped at 0).
        dtype: float32 or float64, the dtype of the parameters.
        device: device of the parameters.

    Attributes:
        needs_init: True while the parameters are the random default (``probs=None``); EM
            (``HMM.fit``) then calls :meth:`initialize` first. Cleared by setting :attr:`probs`,
            :meth:`initialize` and :meth:`m_step`.
        logits: ``nn.Parameter`` ``(K, S)``; ``log_softmax(logits, -1)`` are the log-probabilities
            (zero probabilities are ``-inf`` logits).
        pseudocount: buffer ``(K, S)``.
    """

    def __init__(
        self,
        num_states: int,
        num_symbols: int,
        probs: Optional[torch.Tensor] = None,
        pseudocount: Union[float, torch.Tensor] = 0.0,
        dtype: torch.dtype = torch.float32,
        device: Union[str, torch.device, None] = None,
    ) -> None:
        super().__init__()
        check_count(num_states, "num_states")
        check_count(num_symbols, "num_symbols")
        check_float_dtype(dtype, "Categorical dtype")
        self.num_states = num_states
        self.num_symbols = num_symbols
        shape = (num_states, num_symbols)
        self.logits = nn.Parameter(torch.zeros(shape, dtype=dtype, device=device))
        pc = torch.as_tensor(pseudocount, dtype=dtype, device="cpu")  # checked on the host, then moved
        if not bool(torch.isfinite(pc).all()) or bool((pc < -1).any()):
            raise HMMValueError(f"pseudocount must be finite and >= -1 (a Dirichlet concentration pseudocount + 1 >= 0); "
                                f"got {pseudocount!r}")
        pc = pc.to(self.logits.device)
        try:
            pc = pc.expand(shape).clone()
        except RuntimeError:
            raise HMMDimensionError(
                f"pseudocount must be a float or broadcastable to (K, S) = {shape}; got shape {tuple(pc.shape)}",
                expected_shape=shape,
                actual_shape=pc.shape,
            ) from None
        self.register_buffer("pseudocount", pc)
        needs_init = probs is None
        if probs is None:
            init = torch.empty(shape, dtype=dtype, device=device).uniform_(0.5, 1.5)
            probs = init / init.sum(-1, keepdim=True)
        self.probs = probs
        self.needs_init = needs_init

    # ------------------------------------------------------------------ parameters
    @property
    def log_probs(self) -> torch.Tensor:
        """``(K, S)`` log emission probabilities (differentiable w.r.t. :attr:`logits`)."""
        return log_normalise(self.logits)

    @property
    def probs(self) -> torch.Tensor:
        """``(K, S)`` emission probabilities (hmmlearn's ``emissionprob_``)."""
        return torch.softmax(self.logits, dim=-1)

    @probs.setter
    def probs(self, value: torch.Tensor) -> None:
        p = self._check_probs(value)
        with torch.no_grad():
            self.logits.copy_(torch.log(p.to(self.logits.dtype)))
        self.needs_init = False

    def _check_probs(self, value: torch.Tensor) -> torch.Tensor:
        k, s = self.num_states, self.num_symbols
        if not isinstance(value, torch.Tensor):
            raise HMMTypeError(f"probs must be a float torch.Tensor (K, S) = ({k}, {s}); got {type(value).__name__}")
        if not value.is_floating_point():
            raise HMMDtypeError(f"probs must be a floating-point tensor; got {value.dtype}")
        if tuple(value.shape) != (k, s):
            raise HMMDimensionError(
                f"probs must be (K, S) = ({k}, {s}) (states x symbols); got {tuple(value.shape)}",
                expected_shape=(k, s),
                actual_shape=value.shape,
            )
        value = value.detach().to(self.logits.device)
        if value.is_meta:  # deferred initialisation: no values to check
            return value
        if torch.isnan(value).any():
            raise HMMValueError("probs must not contain NaN")
        if (value < 0).any():
            bad = value[value < 0].min().item()
            raise HMMValueError(f"probs must be non-negative; found an entry {bad:.6g}")
        sums = value.to(torch.float64).sum(-1)
        tol = 1e-4 if value.dtype != torch.float64 else 1e-8
        off = (sums - 1).abs() > tol
        if off.any():
            row = int(off.nonzero()[0, 0])
            raise HMMValueError(
                f"each row of probs must sum to 1 (within {tol:g}); row {row} sums to {sums[row].item():.6g}"
            )
        return value

    # ------------------------------------------------------------------ likelihood
    def log_prob(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, T, K)`` log p(x_t | z_t = k) for integer symbols ``x`` ``(B, T)``.

        Args:
            x: ``(B, T)`` integer symbols in ``[0, S)``.
            mask: optional ``(B, T)`` bool, True at valid frames. Padded frames (False) may hold
                any value (e.g. ``-1``); they are not indexed and their output is ``0.0``.
                Without a mask every frame must hold a valid symbol.
        """
        mask = self._check_x(x, mask)
        log_p = self.log_probs  # (K, S)
        if mask is None:
            return F.embedding(x.long(), log_p.t())
        safe = torch.where(mask, x.long(), torch.zeros((), dtype=torch.long, device=x.device))
        out = F.embedding(safe, log_p.t())
        return out.masked_fill(~mask[..., None], 0.0)

    # ------------------------------------------------------------------ EM statistics
    def init_stats(self) -> Stats:
        """``{"counts": zeros (K, S)}`` in the parameters' dtype and device."""
        return {"counts": torch.zeros_like(self.logits, requires_grad=False)}

    def accumulate(
        self, stats: Stats, x: torch.Tensor, posteriors: torch.Tensor, mask: Optional[torch.Tensor] = None
    ) -> None:
        """Add ``counts[k, s] += sum over valid (b, t) with x[b, t] == s of posteriors[b, t, k]``.

        Padded frames (``mask`` False) are neither indexed nor counted, whatever ``x`` and
        ``posteriors`` hold there. ``mask=None`` means every frame is valid.
        """
        mask = self._check_x(x, mask)
        counts = _check_counts(stats, self.num_states, self.num_symbols)
        k = self.num_states
        b, t = x.shape
        if not isinstance(posteriors, torch.Tensor) or not posteriors.is_floating_point():
            raise HMMDtypeError(
                f"posteriors must be a floating-point tensor; got {getattr(posteriors, 'dtype', type(posteriors).__name__)}"
            )
        if tuple(posteriors.shape) != (b, t, k):
            raise HMMDimensionError(
                f"posteriors must be (B, T, K) = ({b}, {t}, {k}) to match x; got {tuple(posteriors.shape)}",
                expected_shape=(b, t, k),
                actual_shape=posteriors.shape,
            )
        with torch.no_grad():
            w = posteriors.detach().to(counts.dtype)
            idx = x.long()
            if mask is not None:
                w = torch.where(mask[..., None], w, torch.zeros((), dtype=w.dtype, device=w.device))
                idx = torch.where(mask, idx, torch.zeros((), dtype=torch.long, device=idx.device))
            if not bool((torch.isfinite(w) & (w >= 0)).all()):  # as Gaussian's check_posteriors
                raise HMMValueError("posteriors must be finite and non-negative at valid frames; got NaN, inf or negative values")
            delta = torch.zeros((self.num_symbols, k), dtype=counts.dtype, device=counts.device)
            delta.index_add_(0, idx.reshape(-1), w.reshape(-1, k))
            counts += delta.t()

    def m_step(self, stats: Stats) -> None:
        """Set ``probs[k] = normalise(max(counts[k] + pseudocount[k], 0))``.

        Same formula as hmmlearn's ``CategoricalHMM._do_mstep`` with
        ``emissionprob_prior = pseudocount + 1``. A state whose row is all zero (no
        posterior mass and no positive pseudocount) keeps its current probabilities (hmmlearn
        would leave an all-zero row, making the state impossible).
        """
        counts = _check_counts(stats, self.num_states, self.num_symbols)
        with torch.no_grad():
            counts = counts.to(self.logits.dtype)
            if torch.isnan(counts).any():
                raise HMMValueError("stats['counts'] must not contain NaN")
            new = torch.clamp(counts + self.pseudocount, min=0.0)
            sums = new.sum(-1, keepdim=True)
            empty = sums <= 0
            log_new = torch.log(new) - torch.log(torch.where(empty, torch.ones_like(sums), sums))
            self.logits.copy_(torch.where(empty, self.log_probs, log_new))
        self.needs_init = False

    def initialize(
        self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None
    ) -> None:
        """Data-driven start: every state gets the data's symbol frequencies, perturbed.

        ``probs[k] ∝ f * exp(0.25 * eps[k])`` with ``f = (n_s + 1) / sum(n + 1)`` the add-one
        smoothed frequencies of the symbols over valid frames (so symbols unseen in ``x``
        keep a non-zero probability) and ``eps ~ N(0, 1)`` drawn from ``generator`` (the
        global RNG when ``None``), so the states differ and EM can break the symmetry.
        """
        mask = self._check_x(x, mask)
        with torch.no_grad():
            idx = x.long() if mask is None else x.long()[mask]
            n = torch.bincount(idx.reshape(-1), minlength=self.num_symbols).to(self.logits)
            log_f = torch.log(n + 1.0)
            eps = torch.randn(
                self.logits.shape, generator=generator, dtype=self.logits.dtype,
                device=generator.device if generator is not None else self.logits.device,
            ).to(self.logits.device)
            self.logits.copy_(torch.log_softmax(log_f + 0.25 * eps, dim=-1))
        self.needs_init = False

    # ------------------------------------------------------------------ sampling
    def sample(self, states: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Draw one symbol per entry of the integer tensor ``states`` (any shape), int64.

        Entries of ``states`` that are negative (e.g. ``-1`` padding) give ``-1``.
        """
        if not isinstance(states, torch.Tensor) or states.dtype not in _INT_DTYPES:
            raise HMMDtypeError(
                f"states must be an integer tensor; got {getattr(states, 'dtype', type(states).__name__)}"
            )
        if states.numel() and int(states.max()) >= self.num_states:
            raise HMMValueError(
                f"states must hold state indices in [0, {self.num_states}); got {int(states.max())}"
            )
        valid = states >= 0
        with torch.no_grad():
            idx = torch.where(valid, states.long(), 0).reshape(-1).to(self.logits.device)
            p = self.probs.to(torch.float64)[idx]
            if p.shape[0] == 0:
                return torch.full_like(states, -1, dtype=torch.long)
            if generator is not None:
                p = p.to(generator.device)
            draws = torch.multinomial(p, 1, generator=generator).reshape(states.shape).to(states.device)
        return torch.where(valid, draws, torch.full_like(draws, -1))

    # ------------------------------------------------------------------ validation
    def _check_x(self, x: torch.Tensor, mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        if not isinstance(x, torch.Tensor):
            raise HMMTypeError(f"x must be an integer torch.Tensor (B, T) of symbols; got {type(x).__name__}")
        if x.dtype not in _INT_DTYPES:
            raise HMMDtypeError(
                f"x must be an integer tensor (B, T) of symbols in [0, {self.num_symbols}); got dtype {x.dtype}"
            )
        if x.ndim != 2:
            raise HMMDimensionError(
                f"x must be (B, T) integer symbols; got {tuple(x.shape)}",
                expected_shape=("B", "T"),
                actual_shape=x.shape,
                suggestion="add a batch dimension with x.unsqueeze(0)" if x.ndim == 1 else None,
            )
        if x.device != self.logits.device:
            raise HMMDeviceError(f"x is on {x.device} but the Categorical parameters are on {self.logits.device}")
        if mask is not None:
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
                raise HMMDtypeError(f"mask must be a bool tensor (B, T); got {getattr(mask, 'dtype', type(mask).__name__)}")
            if mask.shape != x.shape:
                raise HMMDimensionError(
                    f"mask must be (B, T) = {tuple(x.shape)} like x; got {tuple(mask.shape)}",
                    expected_shape=tuple(x.shape),
                    actual_shape=mask.shape,
                )
            mask = mask.to(x.device)
        bad = (x < 0) | (x >= self.num_symbols)
        if mask is not None:
            bad = bad & mask
        if bad.any():
            v = x[bad]
            raise HMMValueError(
                f"x must hold symbols in [0, {self.num_symbols}) at valid frames; got values from "
                f"{int(v.min())} to {int(v.max())} outside that range"
                + ("" if mask is not None else " (pass mask= to mark padded frames)")
            )
        return mask

    def extra_repr(self) -> str:
        return f"num_states={self.num_states}, num_symbols={self.num_symbols}, dtype={self.logits.dtype}"


def _check_counts(stats: Stats, k: int, s: int) -> torch.Tensor:
    if not isinstance(stats, dict) or "counts" not in stats:
        raise HMMValueError("stats must be the dict returned by Categorical.init_stats() with key 'counts'")
    counts = stats["counts"]
    if not isinstance(counts, torch.Tensor) or tuple(counts.shape) != (k, s):
        raise HMMDimensionError(
            f"stats['counts'] must be (K, S) = ({k}, {s}); got {tuple(getattr(counts, 'shape', ()))}",
            expected_shape=(k, s),
            actual_shape=getattr(counts, "shape", None),
        )
    return counts
