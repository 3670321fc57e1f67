"""Duration distributions for semi-Markov models: p(d | state) on ``min_duration..max_duration``.

Every distribution is an ``nn.Module`` with

* ``log_probs(context=None) -> (K, D)``: ``[k, d-1]`` = log p(d | k) for ``d = 1..D``
  (``D = max_duration``), normalised over the support and ``-inf`` below ``min_duration``;
* EM statistics: ``init_stats() -> (K, D)``, ``accumulate(stats, counts)`` with expected
  segment counts ``(B, K, D)`` or ``(K, D)`` from the kernel, and ``m_step(stats)``;
* ``mean(context=None) -> (K,)``: expected duration in frames;
* ``sample(num_samples, generator=None, state=None) -> (num_samples, K)`` integer durations drawn
  from exactly the normalised ``exp(log_probs())`` the kernel uses;
* ``fit(durations, states=None, weights=None)``: parameters from observed integer durations, by
  the same ``init_stats`` / ``accumulate`` / ``m_step`` path as EM (``duration_counts`` turns the
  observations into the ``(K, D)`` counts the M-step takes).

``Poisson``, ``Gaussian`` and ``Gamma`` are exponential families restricted to the finite
support (probabilities proportional to the pmf or density at each integer ``d``). Constructors take
``dtype`` (default float32); :class:`~pytorch_hmm.HSMM` casts its durations to the emission's dtype. Their M-step
is the exact maximum-likelihood fit of the truncated family: the expected log-likelihood is
concave in the natural parameters and is maximised by damped Newton steps that never lower it
(so EM stays monotone). ``Categorical`` is non-parametric (closed-form counts); ``Neural`` maps a
context vector per state to a distribution and is trained by gradient descent.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from .errors import HMMDimensionError, HMMDtypeError, HMMValueError
from .semiring import log_normalise
from .validation import as_tensor, check_count, check_number

__all__ = ["Duration", "Poisson", "Gaussian", "Gamma", "Categorical", "Neural"]

Param = Union[float, torch.Tensor]


class Duration(nn.Module):
    """Base class: support bookkeeping and the additive EM statistics."""

    has_m_step = True

    def __init__(self, num_states: Optional[int], max_duration: int, min_duration: int = 1) -> None:
        super().__init__()
        _check_support(num_states, max_duration, min_duration)
        self.num_states = None if num_states is None else int(num_states)
        self.max_duration = int(max_duration)
        self.min_duration = int(min_duration)

    def grid(self, dtype=torch.float64, device=None) -> torch.Tensor:
        """``(D,)`` the durations ``1..D`` as floats."""
        return torch.arange(1, self.max_duration + 1, dtype=dtype, device=device)

    def support(self, device=None) -> torch.Tensor:
        """``(D,)`` bool, True on ``min_duration..max_duration``."""
        return torch.arange(1, self.max_duration + 1, device=device) >= self.min_duration

    def log_probs(self, context: Optional[torch.Tensor] = None) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.log_probs(context)

    def probs(self, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.log_probs(context).exp()

    def mean(self, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(K,)`` (or ``(B, K)``) expected duration in frames."""
        p = self.probs(context)
        return p @ self.grid(p.dtype, p.device)

    def init_stats(self) -> torch.Tensor:
        return torch.zeros((self.num_states, self.max_duration), dtype=torch.float64, device=self._device())

    def accumulate(self, stats: torch.Tensor, counts: torch.Tensor) -> None:
        """Add expected segment counts ``(B, K, D)`` or ``(K, D)`` (from the kernel) in place."""
        counts = counts.detach().double()
        if counts.shape[-2:] != stats.shape:
            raise HMMDimensionError(
                f"counts must be (B, K, D) or (K, D) with (K, D) == {tuple(stats.shape)}; got {tuple(counts.shape)}",
                expected_shape=tuple(stats.shape), actual_shape=counts.shape,
            )
        stats += counts.reshape((-1,) + tuple(stats.shape)).sum(0)

    def m_step(self, stats: torch.Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, num_samples: int, generator: Optional[torch.Generator] = None, state: Optional[int] = None, *,
               context: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Draw integer durations (int64, in ``min_duration..max_duration``) from each state's distribution.

        The draws follow exactly ``exp(log_probs(context))``, the normalised table the kernel uses.

        Args:
            num_samples: draws per state.
            generator: a ``torch.Generator`` on the parameters' device, for reproducible draws.
            state: one state ``k`` in ``[0, K)``; default all states.
            context: only for :class:`Neural` (``(K, C)`` or ``(B, K, C)``).

        Returns:
            ``(num_samples, K)`` (``(num_samples, B, K)`` with a batched context); without the
            ``K`` axis when ``state`` is given.
        """
        n = check_count(num_samples, "num_samples")
        logp = self.log_probs(context).detach()
        k = logp.shape[-2]
        if state is not None:
            if isinstance(state, (bool, np.bool_)) or not isinstance(state, numbers.Integral) or not 0 <= state < k:
                raise HMMValueError(f"state must be an int in [0, K) = [0, {k}); got {state!r}")
            logp = logp[..., int(state), :]
        rows = logp.reshape(-1, logp.shape[-1]).double().exp()  # (R, D)
        draws = torch.multinomial(rows, n, replacement=True, generator=generator)  # (R, n) indices d - 1
        return (draws + 1).T.reshape((n,) + tuple(logp.shape[:-1]))

    def duration_counts(self, durations, states=None, weights=None) -> torch.Tensor:
        """``(K, D)`` float64 (weighted) counts of observed durations: the statistics :meth:`m_step` takes.

        Args:
            durations: integer durations in ``min_duration..max_duration``: ``(N, K)``, column
                ``k`` observed in state ``k`` (as :meth:`sample` returns them), or ``(N,)`` with
                ``states``. Integer or integer-valued float tensors, arrays or lists.
            states: ``(N,)`` integer state of each duration in ``[0, K)`` (e.g. from an alignment).
            weights: non-negative, durations' shape, or ``(N,)`` per row of ``(N, K)`` durations;
                default 1 (a weight of 2 counts a duration twice, 0 leaves it out).

        Counts are additive: the counts of two halves of the data sum to those of the whole.
        """
        k, d_max, d_min, dev = self.num_states, self.max_duration, self.min_duration, self._device()
        d = _integers(durations, "durations", torch.float64, dev)
        if states is None:
            if d.ndim != 2 or d.shape[1] != k:
                raise HMMDimensionError(
                    f"durations must be (N, K) with K == {k} (one column per state), or (N,) with states (N,); "
                    f"got shape {tuple(d.shape)}", expected_shape=("N", k), actual_shape=d.shape,
                )
            s = torch.arange(k, device=dev).expand(d.shape)
        else:
            s = _integers(states, "states", torch.long, dev)
            if d.ndim != 1 or s.shape != d.shape:
                raise HMMDimensionError(
                    f"durations and states must both be (N,) with one N; got durations {tuple(d.shape)} and states {tuple(s.shape)}",
                    expected_shape=("N",), actual_shape=d.shape,
                )
            if s.numel() and (int(s.min()) < 0 or int(s.max()) >= k):
                raise HMMValueError(f"states must be in [0, K) = [0, {k}); got values in [{int(s.min())}, {int(s.max())}]")
        outside = (d < d_min) | (d > d_max)
        if bool(outside.any()):
            i = tuple(int(v) for v in outside.nonzero()[0])
            raise HMMValueError(
                f"durations must lie in the support [min_duration, max_duration] = [{d_min}, {d_max}]; "
                f"got {int(d[i])} (state {int(s[i])})"
            )
        if weights is None:
            w = torch.ones_like(d)
        else:
            w = as_tensor(weights, "weights", torch.float64, dev)
            if w.shape == d.shape[:1] and d.ndim == 2:
                w = w[:, None].expand(d.shape)
            if w.shape != d.shape:
                raise HMMDimensionError(
                    f"weights must have the durations' shape {tuple(d.shape)}" + (" or (N,)" if d.ndim == 2 else "")
                    + f"; got {tuple(w.shape)}", expected_shape=tuple(d.shape), actual_shape=w.shape,
                )
            if w.numel() and not (torch.isfinite(w).all() and (w >= 0).all()):
                bad = w[~torch.isfinite(w) | (w < 0)][0]
                raise HMMValueError(f"weights must be finite and >= 0; got {float(bad)}")
        counts = torch.zeros(k * d_max, dtype=torch.float64, device=dev)
        counts.index_add_(0, (s * d_max + d.long() - 1).reshape(-1), w.reshape(-1))
        return counts.reshape(k, d_max)

    def fit(self, durations, states=None, weights=None) -> "Duration":
        """Set the parameters from observed durations (see :meth:`duration_counts` for the arguments).

        This is the EM M-step on observed instead of expected counts (``init_stats``,
        ``accumulate``, ``m_step``): the maximum-likelihood fit of the distribution *truncated to
        its support* ``min_duration..max_duration`` (for ``Categorical``, with its
        ``pseudo_count``). States without observations keep their parameters. Data at a single
        duration drives a parametric family towards a point mass (large but finite parameters).
        Returns ``self``.
        """
        stats = self.init_stats()
        self.accumulate(stats, self.duration_counts(durations, states, weights))
        self.m_step(stats)
        return self

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _no_context(self, context: Optional[torch.Tensor]) -> None:
        if context is not None:
            raise HMMValueError(f"{type(self).__name__} durations take no context; got a tensor of shape {tuple(context.shape)}")

    def extra_repr(self) -> str:
        return f"num_states={self.num_states}, min_duration={self.min_duration}, max_duration={self.max_duration}"


def _integers(value, name: str, dtype: torch.dtype, device) -> torch.Tensor:
    """``value`` (tensor, array or list of integer-valued numbers) as ``dtype`` on ``device``; else an error naming ``name``."""
    if isinstance(value, torch.Tensor) and (value.dtype == torch.bool or value.dtype.is_complex):
        raise HMMDtypeError(f"{name} must hold integers (an integer or integer-valued float tensor); got {value.dtype}")
    v = as_tensor(value, name, torch.float64, device)
    whole = torch.isfinite(v) & (v == v.round())
    if not bool(whole.all()):
        raise HMMValueError(f"{name} must be finite integers; got {float(v[~whole][0])}")
    return v.to(dtype)


def _check_support(num_states: Optional[int], max_duration: int, min_duration: int) -> None:
    if num_states is not None:
        check_count(num_states, "num_states")
    check_count(max_duration, "max_duration")
    if isinstance(min_duration, bool) or not isinstance(min_duration, numbers.Integral) or not 1 <= min_duration <= max_duration:
        raise HMMValueError(f"min_duration must be an int in [1, max_duration] = [1, {max_duration}]; got {min_duration!r}")


def _per_state(value: Param, k: int, name: str, positive: bool = True) -> torch.Tensor:
    v = torch.as_tensor(value, dtype=torch.float64, device="cpu")  # checked on the host (also under torch.device("meta"))
    if v.ndim == 0:
        v = v.expand(k)
    if v.shape != (k,):
        raise HMMDimensionError(f"{name} must be a scalar or (K,) with K == {k}; got shape {tuple(v.shape)}",
                                expected_shape=(k,), actual_shape=v.shape)
    if not torch.isfinite(v).all() or (positive and (v <= 0).any()):
        raise HMMValueError(f"{name} must be finite{' and > 0' if positive else ''}; got {v.tolist()}")
    return v.clone()


class _ExponentialFamily(Duration):
    """``log p(d) = eta . T(d) + h(d) - A(eta)`` over the support; parameter ``natural (K, P)``."""

    def __init__(self, natural: torch.Tensor, max_duration: int, min_duration: int) -> None:
        super().__init__(natural.shape[0], max_duration, min_duration)
        self.natural = nn.Parameter(natural)

    def statistics(self, d: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``(D, P)`` sufficient statistics at durations ``d``."""
        raise NotImplementedError

    def log_base(self, d: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(d)

    def _scores(self, natural: torch.Tensor) -> torch.Tensor:
        d = self.grid(natural.dtype, natural.device)
        s = natural @ self.statistics(d).T + self.log_base(d)
        return s.masked_fill(~self.support(natural.device), -math.inf)

    def log_probs(self, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        self._no_context(context)
        return torch.log_softmax(self._scores(self.natural), -1)

    @torch.no_grad()
    def m_step(self, stats: torch.Tensor, max_iter: int = 50) -> None:
        """Exact truncated maximum likelihood by damped Newton steps on the natural parameters.

        Each step is halved until the expected log-likelihood does not decrease; states without
        counts keep their parameters.
        """
        counts = stats.double().to(self.natural.device)
        n = counts.sum(-1)
        feats = self.statistics(self.grid(torch.float64, counts.device))
        target = counts @ feats  # (K, P)
        eta = self.natural.double()

        def objective(e: torch.Tensor) -> torch.Tensor:  # (..., K, P) -> (..., K), up to a constant
            return (e * target).sum(-1) - n * torch.logsumexp(self._scores(e), -1)

        current = objective(eta)
        halvings = 0.5 ** torch.arange(31, dtype=torch.float64, device=eta.device)
        states = torch.arange(eta.shape[0], device=eta.device)
        for _ in range(max_iter):
            p = torch.softmax(self._scores(eta), -1)
            mean = p @ feats  # (K, P) expected statistics
            centred = feats - mean[:, None, :]  # (K, D, P)
            grad = target - n[:, None] * mean
            hess = n[:, None, None] * torch.einsum("kd,kdp,kdq->kpq", p, centred, centred)
            hess = hess + 1e-9 * (n[:, None, None] + 1) * torch.eye(feats.shape[1], dtype=torch.float64, device=eta.device)
            step = torch.linalg.solve(hess, grad.unsqueeze(-1)).squeeze(-1)
            trials = eta + halvings[:, None, None] * step  # (31, K, P)
            values = objective(trials)
            better = (values >= current) & torch.isfinite(values)
            first = better.double().argmax(0)  # the longest step that does not lower Q (0 if none)
            ok = better.any(0) & (n > 0)
            eta = torch.where(ok[:, None], trials[first, states], eta)
            gain = torch.where(ok, values[first, states] - current, 0.0)
            current = torch.where(ok, values[first, states], current)
            if bool((gain <= 1e-12 * (n.abs() + 1)).all()):
                break
        self.natural.copy_(eta.to(self.natural.dtype))


class Poisson(_ExponentialFamily):
    """Shifted Poisson: ``d - min_duration ~ Poisson(rate)``, truncated at ``max_duration``.

    Args:
        num_states, max_duration, min_duration: support ``min_duration..max_duration`` per state.
        rate: scalar or ``(K,)``; default puts the mean near ``max_duration / 3``.
    """

    def __init__(self, num_states: int, max_duration: int, rate: Optional[Param] = None, min_duration: int = 1,
                 dtype: torch.dtype = torch.float32) -> None:
        _check_support(num_states, max_duration, min_duration)
        rate = max(max_duration / 3 - min_duration, 0.5) if rate is None else rate
        super().__init__(torch.log(_per_state(rate, num_states, "rate")).unsqueeze(-1).to(dtype), max_duration, min_duration)

    @property
    def rate(self) -> torch.Tensor:
        return self.natural[:, 0].exp()

    def statistics(self, d: torch.Tensor) -> torch.Tensor:
        return (d - self.min_duration).clamp(min=0).unsqueeze(-1)

    def log_base(self, d: torch.Tensor) -> torch.Tensor:
        return -torch.lgamma((d - self.min_duration).clamp(min=0) + 1)


class Gaussian(_ExponentialFamily):
    """Discretised Gaussian: p(d) proportional to ``N(d; mean, std^2)`` on the support.

    ``mean`` and ``std`` (scalars or ``(K,)``) are those of the underlying Gaussian; the
    truncated distribution's own mean is :meth:`mean`. On a finite support the maximum-likelihood
    fit may be U-shaped (natural parameter ``natural[:, 1] >= 0``, e.g. counts only at both ends);
    it is still a valid distribution, but :attr:`location` and :attr:`std` are then undefined
    (``std`` is NaN).
    """

    def __init__(self, num_states: int, max_duration: int, mean: Optional[Param] = None, std: Optional[Param] = None,
                 min_duration: int = 1, dtype: torch.dtype = torch.float32) -> None:
        _check_support(num_states, max_duration, min_duration)
        mu = _per_state((min_duration + max_duration) / 2 if mean is None else mean, num_states, "mean", positive=False)
        sigma = _per_state(max(max_duration - min_duration, 1) / 4 if std is None else std, num_states, "std")
        # the natural parameters grow as 1 / std^2: below this the log-probabilities of nearby
        # durations differ by less than their rounding error in `dtype` (or overflow to NaN)
        narrowest = max_duration * math.sqrt(torch.finfo(dtype).eps / 2)
        if bool((sigma < narrowest).any()):
            raise HMMValueError(
                f"std must be at least {narrowest:.3g} frames in {dtype} with max_duration {max_duration} (narrower "
                f"Gaussians lose the duration to rounding; for a fixed duration use Categorical); got {sigma.tolist()}"
            )
        natural = torch.stack([mu / sigma ** 2, -0.5 / sigma ** 2], -1)
        super().__init__(natural.to(dtype), max_duration, min_duration)

    @property
    def location(self) -> torch.Tensor:
        """``(K,)`` mean of the underlying Gaussian."""
        return -self.natural[:, 0] / (2 * self.natural[:, 1])

    @property
    def std(self) -> torch.Tensor:
        """``(K,)`` standard deviation of the underlying Gaussian."""
        return torch.sqrt(-0.5 / self.natural[:, 1])

    def statistics(self, d: torch.Tensor) -> torch.Tensor:
        return torch.stack([d, d * d], -1)


class Gamma(_ExponentialFamily):
    """Discretised Gamma: p(d) proportional to ``d^(shape-1) exp(-d / scale)`` on the support."""

    def __init__(self, num_states: int, max_duration: int, shape: Optional[Param] = None, scale: Optional[Param] = None,
                 min_duration: int = 1, dtype: torch.dtype = torch.float32) -> None:
        _check_support(num_states, max_duration, min_duration)
        a = _per_state(2.0 if shape is None else shape, num_states, "shape")
        theta = _per_state(max(max_duration / 6, 0.5) if scale is None else scale, num_states, "scale")
        super().__init__(torch.stack([a - 1, -1 / theta], -1).to(dtype), max_duration, min_duration)

    @property
    def shape(self) -> torch.Tensor:
        return self.natural[:, 0] + 1

    @property
    def scale(self) -> torch.Tensor:
        return -1 / self.natural[:, 1]

    def statistics(self, d: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.log(d), d], -1)


class Categorical(Duration):
    """Non-parametric durations: one free probability per duration and state.

    Args:
        probs: ``(K, D)`` probabilities (zero below ``min_duration``); default uniform on the support.
        pseudo_count: added to every supported duration's count in the M-step (a Dirichlet
            prior; 0 gives the maximum-likelihood estimate).
    """

    def __init__(self, num_states: int, max_duration: int, probs: Optional[torch.Tensor] = None, min_duration: int = 1,
                 pseudo_count: float = 0.0, dtype: torch.dtype = torch.float32) -> None:
        super().__init__(num_states, max_duration, min_duration)
        if probs is None:
            logits = torch.zeros((num_states, max_duration), dtype=dtype)
        else:
            probs = torch.as_tensor(probs, dtype=torch.float64, device="cpu")
            if probs.shape != (num_states, max_duration):
                raise HMMDimensionError(f"probs must be (K, D) == ({num_states}, {max_duration}); got {tuple(probs.shape)}",
                                        expected_shape=(num_states, max_duration), actual_shape=probs.shape)
            if torch.isnan(probs).any() or (probs < 0).any() or ((probs.sum(-1) - 1).abs() > 1e-4).any():
                raise HMMValueError("probs must be non-negative with rows summing to 1; got NaN, negative values or other sums")
            empty = (probs * self.support()).sum(-1) == 0
            if empty.any():
                raise HMMValueError(
                    f"probs must put mass on durations {self.min_duration}..{max_duration} (min_duration..max_duration) "
                    f"in every row; row {int(empty.nonzero()[0])} has none"
                )
            logits = torch.log(probs).to(dtype)
        self.pseudo_count = check_number(pseudo_count, "pseudo_count", minimum=0.0)
        self.logits = nn.Parameter(logits)

    def log_probs(self, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        self._no_context(context)
        return log_normalise(self.logits.masked_fill(~self.support(self.logits.device), -math.inf))

    @torch.no_grad()
    def m_step(self, stats: torch.Tensor) -> None:
        counts = (stats.double().to(self.logits.device) + self.pseudo_count) * self.support(self.logits.device)
        totals = counts.sum(-1, keepdim=True)
        new = torch.log(counts / totals.clamp(min=1e-300))
        self.logits.copy_(torch.where(totals > 0, new, self.log_probs().double()).to(self.logits.dtype))


class Neural(Duration):
    """A network from a context vector (one per state, e.g. a phone embedding) to durations.

    ``log_probs(context)`` takes ``(K, C)`` or ``(B, K, C)`` and returns ``(K, D)`` /
    ``(B, K, D)``. No closed-form M-step: train by gradient descent on the model's
    negative log-likelihood (the kernel is differentiable w.r.t. the duration table).
    ``sample`` needs the ``context`` (``sample(n, context=c)``); ``fit`` and ``duration_counts``
    are not available (no M-step): for observed durations ``d`` of states ``k``, minimise
    ``-log_probs(context)[k, d - 1].sum()`` by gradient descent instead.
    """

    has_m_step = False

    def __init__(self, context_dim: int, max_duration: int, hidden: int = 64, min_duration: int = 1) -> None:
        super().__init__(None, max_duration, min_duration)
        self.context_dim = check_count(context_dim, "context_dim")
        hidden = check_count(hidden, "hidden")
        self.net = nn.Sequential(nn.Linear(self.context_dim, hidden), nn.Tanh(), nn.Linear(hidden, max_duration))

    def log_probs(self, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        if context is None or context.ndim not in (2, 3) or context.shape[-1] != self.context_dim:
            shape = None if context is None else tuple(context.shape)
            raise HMMDimensionError(f"Neural durations need a context of shape (K, C) or (B, K, C) with C == {self.context_dim}; got {shape}",
                                    expected_shape=("K", self.context_dim), actual_shape=shape)
        logits = self.net(context)
        return log_normalise(logits.masked_fill(~self.support(logits.device), -math.inf))

    def init_stats(self) -> torch.Tensor:
        raise HMMValueError(_NO_M_STEP)

    def m_step(self, stats: torch.Tensor) -> None:
        raise HMMValueError(_NO_M_STEP)

    def duration_counts(self, durations, states=None, weights=None) -> torch.Tensor:
        raise HMMValueError(_NO_FIT)

    def fit(self, durations, states=None, weights=None) -> "Neural":
        raise HMMValueError(_NO_FIT)


_NO_M_STEP = ("Neural durations have no closed-form M-step; train them by gradient descent on "
              "-model(x, duration_context=...).mean(), or keep them fixed with fit(frozen=('durations',))")
_NO_FIT = ("Neural durations cannot be fitted from observed durations in closed form; minimise "
           "-log_probs(context)[states, durations - 1].sum() by gradient descent instead")
