"""Gaussian-mixture emissions (GMM per state) with diagonal, full, spherical or tied covariances.

``p(x | z = k) = sum_m w_km N(x; mu_km, Sigma_km)``. Parameters, stored unconstrained:

* ``logits`` ``(K, M)``: mixture weights ``w = softmax(logits)`` per state;
* ``loc`` ``(K, M, D)``: component means;
* ``"diag"``: ``log_var`` ``(K, M, D)``; ``"spherical"``: ``log_var`` ``(K, M)`` (one variance
  per component); ``"full"``: ``scale_tril_raw`` ``(K, M, D, D)``; ``"tied"``:
  ``scale_tril_raw`` ``(K, D, D)``, one full covariance per *state* shared by its components
  (as hmmlearn's ``GMMHMM``, not one for the whole model as ``Gaussian``'s tied). Cholesky
  factors store their diagonal as its log (see :mod:`pytorch_hmm.emissions.gaussian`).

Shapes of :attr:`GaussianMixture.weights`, ``means`` and ``covars`` follow hmmlearn's
``GMMHMM``: ``(K, M)``, ``(K, M, D)`` and diag ``(K, M, D)``, full ``(K, M, D, D)``, spherical
``(K, M)``, tied ``(K, D, D)``.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from ..errors import HMMValueError
from ..semiring import log_normalise, logsumexp_
from .base import Emission, Stats
from ..validation import as_tensor, check_count, check_float_dtype, check_number, check_shape
from .checks import (
    sampling_states,
    broadcast_prior,
    check_observations,
    check_posteriors,
    check_stats,
    draw_normal,
    valid_points,
    zero_padding,
)
from .covariance import (
    check_covariance_matrices,
    data_covariance,
    diag_log_density,
    floor_covariance,
    full_log_density,
    grouped_tied_log_density,
    raw_from_covariance,
    scale_tril_from_raw,
    stats_variance_floor,
    variance_floor,
    weighted_outer_sum,
)
from .kmeans import kmeans

MIXTURE_COVARIANCE_TYPES = ("diag", "full", "spherical", "tied")
_COVARS_SHAPES = {"diag": "(K, M, D)", "full": "(K, M, D, D)", "spherical": "(K, M)", "tied": "(K, D, D)"}


class GaussianMixture(Emission):
    """Gaussian mixture emission: ``M`` components per state, ``K`` states, ``D`` dimensions.

    Args:
        num_states, num_mixtures, dim: ``K``, ``M``, ``D``.
        covariance_type: ``"diag"``, ``"full"``, ``"spherical"`` (one variance per component)
            or ``"tied"`` (the components of a state share one full covariance).
        weights: ``(K, M)`` non-negative, each row summing to 1; default uniform.
        means: ``(K, M, D)``; default zeros (call :meth:`initialize` or set them).
        covars: diag ``(K, M, D)``, full ``(K, M, D, D)``, spherical ``(K, M)``, tied
            ``(K, D, D)`` (hmmlearn's ``GMMHMM`` shapes); default identity.
        min_covar, var_floor: the variance floor ``F``, as for
            :class:`~pytorch_hmm.emissions.Gaussian`: by default (``min_covar=None``)
            ``var_floor`` (1e-3) times the variance of the training frames in each dimension;
            an explicit float is an absolute floor. ``F`` is added to the diagonal of the data
            covariance in :meth:`initialize` and bounds the covariances from below after
            :meth:`m_step` (a no-op unless a variance would fall below it; hmmlearn's GMMHMM
            applies no floor in its M-step).
        weights_prior: Dirichlet parameters ``alpha`` broadcast to ``(K, M)`` (1 = none).
        means_prior, means_weight: Normal prior mean ``mu0`` (broadcast to ``(K, M, D)``)
            and precision weight ``lambda`` (broadcast to ``(K, M)``).
        covars_prior, covars_weight: hmmlearn ``GMMHMM``'s parameterisation. diag: inverse
            gamma with ``alpha = covars_prior`` and ``beta = covars_weight`` (both broadcast to
            ``(K, M, D)``; defaults -1.5 and 0, i.e. no prior); full: inverse Wishart with scale
            ``Psi = covars_prior`` (broadcast to ``(K, M, D, D)``, default 0) and degrees of
            freedom ``nu = covars_weight`` (broadcast to ``(K, M)``, default ``-(D + 2)``);
            spherical: inverse gamma, ``alpha``, ``beta`` broadcast to ``(K, M)``, defaults
            ``-(D + 2) / 2`` and 0, i.e. no prior (hmmlearn 0.3's default ``alpha`` is
            ``-(M + 2) / 2``, the same only when ``M == D``); tied: inverse Wishart, ``Psi``
            broadcast to ``(K, D, D)`` (default 0), ``nu`` to ``(K,)`` (default ``-(M + D + 1)``,
            no prior).
        dtype, device: of the parameters.

    Attributes:
        needs_init: True while the means are the placeholder zeros (no ``means`` given, not
            initialised, nothing loaded); EM's fit calls :meth:`initialize` then.
        stats_offset: ``(D,)`` buffer, the point the EM statistics are taken about.
    """

    def __init__(
        self,
        num_states: int,
        num_mixtures: int,
        dim: int,
        covariance_type: str = "diag",
        weights=None,
        means=None,
        covars=None,
        min_covar: Optional[float] = None,
        var_floor: float = 1e-3,
        weights_prior=1.0,
        means_prior=0.0,
        means_weight=0.0,
        covars_prior=None,
        covars_weight=None,
        dtype: torch.dtype = torch.float32,
        device=None,
    ) -> None:
        super().__init__()
        k = check_count(num_states, "num_states")
        m = check_count(num_mixtures, "num_mixtures")
        d = check_count(dim, "dim")
        if covariance_type not in MIXTURE_COVARIANCE_TYPES:
            raise HMMValueError("covariance_type must be 'diag', 'full', 'spherical' or 'tied' for GaussianMixture; "
                                f"got {covariance_type!r}")
        check_float_dtype(dtype)
        min_covar = None if min_covar is None else check_number(min_covar, "min_covar", minimum=0.0)
        self.var_floor = check_number(var_floor, "var_floor", minimum=0.0, below=1.0)
        self.num_states, self.num_mixtures, self.dim = k, m, d
        self.covariance_type, self.min_covar = covariance_type, min_covar
        fk = dict(dtype=dtype, device=device)
        self.logits = nn.Parameter(torch.zeros(k, m, **fk))
        self.loc = nn.Parameter(torch.zeros(k, m, d, **fk))
        if covariance_type == "diag":
            self.log_var = nn.Parameter(torch.zeros(k, m, d, **fk))
            cp_default, cw_default, cp_shape, cw_shape = -1.5, 0.0, (k, m, d), (k, m, d)
        elif covariance_type == "spherical":
            self.log_var = nn.Parameter(torch.zeros(k, m, **fk))
            cp_default, cw_default, cp_shape, cw_shape = -(d + 2.0) / 2.0, 0.0, (k, m), (k, m)
        elif covariance_type == "full":
            self.scale_tril_raw = nn.Parameter(torch.zeros(k, m, d, d, **fk))
            cp_default, cw_default, cp_shape, cw_shape = 0.0, -(d + 2.0), (k, m, d, d), (k, m)
        else:
            self.scale_tril_raw = nn.Parameter(torch.zeros(k, d, d, **fk))
            cp_default, cw_default, cp_shape, cw_shape = 0.0, -(m + d + 1.0), (k, d, d), (k,)
        covars_prior = cp_default if covars_prior is None else covars_prior
        covars_weight = cw_default if covars_weight is None else covars_weight
        self.register_buffer("weights_prior", broadcast_prior(weights_prior, (k, m), "weights_prior", **fk, minimum=0.0))
        self.register_buffer("stats_offset", torch.zeros(d, **fk))
        self.register_buffer("means_prior", broadcast_prior(means_prior, (k, m, d), "means_prior", **fk))
        self.register_buffer("means_weight", broadcast_prior(means_weight, (k, m), "means_weight", **fk, minimum=0.0))
        self.register_buffer("covars_prior", broadcast_prior(covars_prior, cp_shape, "covars_prior", **fk))
        self.register_buffer("covars_weight", broadcast_prior(covars_weight, cw_shape, "covars_weight", **fk))
        if weights is not None:
            self.weights = weights
        self.needs_init = means is None
        if means is not None:
            self.means = means
        if covars is not None:
            self.covars = covars

    def __setattr__(self, name, value):
        if name in ("weights", "means", "covars"):  # properties, even for nn.Parameter values
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def extra_repr(self) -> str:
        return (
            f"num_states={self.num_states}, num_mixtures={self.num_mixtures}, dim={self.dim}, "
            f"covariance_type={self.covariance_type!r}"
        )

    # -------------------------------------------------------------------- parameters

    @property
    def weights(self) -> torch.Tensor:
        """``(K, M)`` mixture weights (softmax of ``logits``)."""
        return torch.softmax(self.logits, -1)

    @weights.setter
    def weights(self, value) -> None:
        k, m = self.num_states, self.num_mixtures
        t = as_tensor(value, "weights", self.loc.dtype, self.loc.device)
        check_shape(t, (k, m), "weights", "(K, M)")
        if not bool((torch.isfinite(t) & (t >= 0)).all()):
            raise HMMValueError("weights must be finite and non-negative")
        sums = t.sum(-1)
        tol = 1e-4 if t.dtype == torch.float32 else 1e-8
        if not bool(((sums - 1).abs() <= tol).all()):
            bad = int(torch.nonzero((sums - 1).abs() > tol)[0])
            raise HMMValueError(f"weights must sum to 1 over the mixtures of each state; state {bad} sums to {float(sums[bad]):g}")
        with torch.no_grad():
            self.logits.copy_(torch.log(t))

    @property
    def means(self) -> torch.Tensor:
        """``(K, M, D)`` component means (the ``loc`` parameter itself)."""
        return self.loc

    @means.setter
    def means(self, value) -> None:
        t = as_tensor(value, "means", self.loc.dtype, self.loc.device)
        check_shape(t, (self.num_states, self.num_mixtures, self.dim), "means", "(K, M, D)")
        if not bool(torch.isfinite(t).all()):
            raise HMMValueError("means must be finite; got NaN or infinite values")
        with torch.no_grad():
            self.loc.copy_(t)
            self.stats_offset.copy_(t.reshape(-1, self.dim).mean(0))
        self.needs_init = False

    @property
    def covars(self) -> torch.Tensor:
        """hmmlearn's ``GMMHMM`` shapes: variances diag ``(K, M, D)`` or spherical ``(K, M)``;
        covariance matrices full ``(K, M, D, D)`` or tied ``(K, D, D)`` (one per state)."""
        if self.covariance_type in ("diag", "spherical"):
            return torch.exp(self.log_var)
        lower = scale_tril_from_raw(self.scale_tril_raw)
        return lower @ lower.transpose(-1, -2)

    @covars.setter
    def covars(self, value) -> None:
        k, m, d, ct = self.num_states, self.num_mixtures, self.dim, self.covariance_type
        t = as_tensor(value, "covars", self.loc.dtype, self.loc.device)
        shape = {"diag": (k, m, d), "full": (k, m, d, d), "spherical": (k, m), "tied": (k, d, d)}[ct]
        check_shape(t, shape, f"covars for covariance_type={ct!r}", _COVARS_SHAPES[ct])
        if ct in ("diag", "spherical"):
            if not bool(torch.isfinite(t).all()):
                raise HMMValueError("covars must be finite; got NaN or infinite values")
            if not bool((t > 0).all()):
                raise HMMValueError(f"covars must be positive for covariance_type={ct!r}; got minimum {float(t.min()):g}")
            with torch.no_grad():
                self.log_var.copy_(torch.log(t))
        else:
            check_covariance_matrices(t, f"covars for covariance_type={ct!r}")
            with torch.no_grad():
                self.scale_tril_raw.copy_(raw_from_covariance(0.5 * (t + t.transpose(-1, -2))))

    @property
    def scale_tril(self) -> torch.Tensor:
        """``(K, M, D, D)`` lower Cholesky factors of the component covariances (all types)."""
        ct, k, m, d = self.covariance_type, self.num_states, self.num_mixtures, self.dim
        if ct == "diag":
            return torch.diag_embed(torch.exp(0.5 * self.log_var))
        if ct == "spherical":
            eye = torch.eye(d, dtype=self.loc.dtype, device=self.loc.device)
            return torch.exp(0.5 * self.log_var)[..., None, None] * eye
        lower = scale_tril_from_raw(self.scale_tril_raw)
        return lower if ct == "full" else lower[:, None].expand(k, m, d, d)

    # ------------------------------------------------------------------------ density

    def component_log_prob(self, x2d: torch.Tensor) -> torch.Tensor:
        """``(N, K, M)`` ``log w_km + log N(x_n; mu_km, Sigma_km)`` for frames ``x2d`` ``(N, D)``."""
        return self._joint(x2d, mixture_major=False)

    def _joint(self, x2d: torch.Tensor, mixture_major: bool) -> torch.Tensor:
        """:meth:`component_log_prob`, as ``(N, M, K)`` when ``mixture_major`` (the layout whose
        reduction over components is a sum of ``M`` contiguous ``(N, K)`` slices)."""
        k, m, d = self.num_states, self.num_mixtures, self.dim
        order = (lambda t: t.transpose(0, 1)) if mixture_major else (lambda t: t)  # noqa: E731
        ct = self.covariance_type
        means = order(self.loc).reshape(k * m, d)
        if ct == "tied":  # (K, N, M): one solve per state
            dens = grouped_tied_log_density(x2d, self.loc, scale_tril_from_raw(self.scale_tril_raw))
            dens = (dens.permute(1, 2, 0) if mixture_major else dens.permute(1, 0, 2)).contiguous()
        else:
            if ct == "diag":
                dens = diag_log_density(x2d, means, order(self.log_var).reshape(k * m, d))
            elif ct == "spherical":
                dens = diag_log_density(x2d, means, order(self.log_var).reshape(k * m, 1).expand(k * m, d))
            else:
                tril = order(scale_tril_from_raw(self.scale_tril_raw)).reshape(k * m, d, d)
                dens = full_log_density(x2d, means, tril)
            dens = dens.reshape(-1, m, k) if mixture_major else dens.reshape(-1, k, m)
        log_w = order(log_normalise(self.logits))
        return dens + log_w if dens.requires_grad else dens.add_(log_w)

    def log_prob(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, T, K)`` ``log sum_m w_km N(x_bt; mu_km, Sigma_km)`` for ``x`` ``(B, T, D)``.

        With ``mask`` ``(B, T)`` bool, padded frames may hold anything (even NaN); their
        outputs are 0.
        """
        x, mask = check_observations(x, self.dim, self.loc, mask)
        b, t, _ = x.shape
        joint = self._joint(x.reshape(-1, self.dim), mixture_major=True)
        return zero_padding(logsumexp_(joint, 1).reshape(b, t, self.num_states), mask)

    def sample(self, states: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Draw one observation per entry of the int64 tensor ``states`` (any shape ``S``) -> ``(*S, D)``;
        padding states (``-1``) give NaN rows."""
        states, padding = sampling_states(states, self.num_states, self.loc.device)
        with torch.no_grad():
            flat = states.reshape(-1)
            w = self.weights[flat]
            if generator is not None:
                w = w.to(generator.device)
            comp = torch.multinomial(w, 1, generator=generator)[:, 0].to(self.loc.device)
            eps = draw_normal((flat.numel(), self.dim), self.loc, generator)
            out = self.loc[flat, comp] + (self.scale_tril[flat, comp] @ eps[..., None])[..., 0]
            return out.reshape(tuple(states.shape) + (self.dim,)).masked_fill(padding[..., None], float("nan"))

    # ----------------------------------------------------------------------------- EM

    def _stat_keys(self) -> Tuple[str, ...]:
        return ("post", "post_mix", "obs", "obs_sq" if self.covariance_type in ("diag", "spherical") else "obs_outer")

    def _second_shape(self) -> Tuple[int, ...]:
        k, m, d = self.num_states, self.num_mixtures, self.dim
        return {"diag": (k, m, d), "spherical": (k, m, d), "full": (k, m, d, d), "tied": (k, d, d)}[self.covariance_type]

    def _check_stats(self, stats: Stats) -> None:
        check_stats(stats, self._stat_keys(), type(self).__name__)
        key, want = self._stat_keys()[-1], self._second_shape()
        if tuple(stats[key].shape) != want or tuple(stats["obs"].shape) != (self.num_states, self.num_mixtures, self.dim):
            got = {name: tuple(stats[name].shape) for name in ("obs", key)}
            raise HMMValueError(f"stats must come from this GaussianMixture's init_stats() (covariance_type="
                                f"{self.covariance_type!r}: {key} {want}); got shapes {got}")

    def init_stats(self) -> Stats:
        """Zero statistics: ``post`` ``(K,)``, ``post_mix`` ``(K, M)``, ``obs`` ``(K, M, D)`` and
        ``obs_sq`` ``(K, M, D)`` (diag, spherical) or ``obs_outer`` ``(K, M, D, D)`` (full) /
        ``(K, D, D)`` (tied: summed over the components of a state)."""
        k, m, d = self.num_states, self.num_mixtures, self.dim
        z = dict(dtype=torch.float64, device=self.loc.device)  # sums in float64: see accumulate
        stats = {"post": torch.zeros(k, **z), "post_mix": torch.zeros(k, m, **z), "obs": torch.zeros(k, m, d, **z)}
        stats[self._stat_keys()[-1]] = torch.zeros(self._second_shape(), **z)
        return stats

    def accumulate(
        self, stats: Stats, x: torch.Tensor, posteriors: torch.Tensor, mask: Optional[torch.Tensor] = None
    ) -> None:
        """Add the weighted moments of the valid frames under ``g_tkm = g_tk r_tkm``.

        Frames where ``mask`` is False are ignored, whatever ``x`` and ``posteriors`` hold there;
        ``mask=None`` means every frame is valid.

        ``r_tkm = w_km N(x_t; mu_km, Sigma_km) / sum_m' (...)`` are the component
        responsibilities under the current parameters. Sums: ``post = sum_t g_tk``,
        ``post_mix = sum_t g_tkm``, ``obs = sum_t g_tkm x_t``, ``obs_sq = sum_t g_tkm x_t^2``
        (diag, spherical), ``obs_outer = sum_t g_tkm x_t x_t^T`` (full) or
        ``obs_outer = sum_t g_tk x_t x_t^T`` (tied), with ``x_t`` shifted by the
        ``stats_offset`` buffer (the mean of the means when they were last set or initialised;
        keeps float32 statistics accurate). They depend on the current parameters only through
        ``r``, as in any EM; :meth:`m_step` must run before the parameters change, since it
        centres the covariance statistics on the current means.
        """
        self._check_stats(stats)
        x, mask = check_observations(x, self.dim, self.loc, mask)
        g = check_posteriors(posteriors, x, self.num_states, mask).detach()
        k, m, d = self.num_states, self.num_mixtures, self.dim
        with torch.no_grad():
            xf = x.detach().reshape(-1, d)
            resp = torch.softmax(self.component_log_prob(xf), -1).nan_to_num_(0.0)  # (N, K, M)
            # float64 sums (see Gaussian.accumulate)
            xf = xf.double() - self.stats_offset.double()
            gkm = (g.reshape(-1, k)[:, :, None] * resp).reshape(-1, k * m).double()
            stats["post"] += g.reshape(-1, k).sum(0).double()
            stats["post_mix"] += gkm.sum(0).reshape(k, m)
            stats["obs"] += (gkm.T @ xf).reshape(k, m, d)
            if self.covariance_type in ("diag", "spherical"):
                stats["obs_sq"] += (gkm.T @ (xf * xf)).reshape(k, m, d)
            elif self.covariance_type == "full":
                stats["obs_outer"] += weighted_outer_sum(gkm, xf).reshape(k, m, d, d)
            else:
                stats["obs_outer"] += weighted_outer_sum(g.reshape(-1, k).double(), xf)

    def m_step(self, stats: Stats) -> None:
        r"""Set weights, means and covariances as hmmlearn's ``GMMHMM._do_mstep``.

        With ``N_k = post``, ``N_km = post_mix``, ``S_km = obs`` and the current (E-step)
        means ``mu'_km`` (the formulas are translation invariant and are evaluated with ``x``,
        ``mu'``, ``mu`` and ``mu0`` shifted by ``stats_offset``, as the statistics are):

        * ``w_km = (N_km + alpha_km - 1) / (N_k + sum_m (alpha_km - 1))`` (negative values,
          possible with ``alpha < 1``, are clipped at 0 and the row renormalised; a state
          with a zero denominator keeps its weights);
        * ``mu_km = (lambda_km mu0_km + S_km) / (N_km + lambda_km)`` (kept where the
          denominator is 0);
        * the scatter about the E-step means, from the raw moments:
          ``C_km = obs_sq - 2 mu' S + mu'^2 N_km`` (diag; spherical sums it over ``d``) or
          ``C_km = obs_outer - S mu'^T - mu' S^T + N_km mu' mu'^T`` (full; tied:
          ``C_k = obs_outer_k - sum_m (S mu'^T + mu' S^T - N_km mu' mu'^T)``) -- hmmlearn centres
          its covariance statistics on the E-step means, not the new ones;
        * diag: ``var = (lambda (mu - mu0)^2 + 2 beta + C) / (N_km + 1 + 2 (alpha + 1))``
          with ``alpha = covars_prior``, ``beta = covars_weight``; spherical:
          ``var = (lambda |mu - mu0|^2 + 2 beta + C) / (D (N_km + 1) + 2 (alpha + 1))``;
          full: ``Sigma = (Psi^T + lambda (mu - mu0)(mu - mu0)^T + C) / (N_km + 1 + nu + D + 1)``
          with ``Psi = covars_prior``, ``nu = covars_weight``; tied:
          ``Sigma_k = (Psi_k^T + sum_m lambda_km (mu - mu0)(mu - mu0)^T + C_k) / (N_k + M + nu_k + D + 1)``;
          a non-positive denominator keeps the old covariance;
        * the covariances are floored at ``F`` (see ``min_covar``): every variance (diag), the
          variance at the mean of ``F`` (spherical) or ``Sigma >= F`` (full, tied).
        """
        self._check_stats(stats)
        d, ct = self.dim, self.covariance_type
        n_k = stats["post"].to(self.loc.device)
        n_km = stats["post_mix"].to(self.loc.device)
        s1 = stats["obs"].to(self.loc.device)
        c = self.stats_offset
        lam, mu0 = self.means_weight, self.means_prior - c  # everything shifted by c
        second = stats["obs_sq"] if "obs_sq" in stats else torch.diagonal(stats["obs_outer"], dim1=-2, dim2=-1)
        floor = stats_variance_floor(self.min_covar, self.var_floor, n_k.sum(), s1.reshape(-1, d).sum(0),
                                     second.to(n_k.device).reshape(-1, d).sum(0), c, self.loc.dtype)
        with torch.no_grad():
            # weights
            am1 = self.weights_prior - 1.0
            w_n = n_km + am1
            w_d = n_k + am1.sum(-1)
            w = (w_n / torch.where(w_d > 0, w_d, torch.ones_like(w_d))[:, None]).clamp_min(0.0)
            w_sum = w.sum(-1, keepdim=True)
            ok = (w_d > 0)[:, None] & (w_sum > 0)
            w = torch.where(ok, w / torch.where(w_sum > 0, w_sum, torch.ones_like(w_sum)), self.weights)
            # means
            m_d = n_km + lam
            safe = torch.where(m_d > 0, m_d, torch.ones_like(m_d))
            old_mu = self.loc.detach() - c
            mu = torch.where((m_d > 0)[..., None], (lam[..., None] * mu0 + s1) / safe[..., None], old_mu)
            cm = mu - mu0
            # covariances
            if ct in ("diag", "spherical"):
                scatter = stats["obs_sq"].to(self.loc.device) - 2.0 * old_mu * s1 + old_mu**2 * n_km[..., None]
                if ct == "diag":
                    c_n = lam[..., None] * cm**2 + 2.0 * self.covars_weight + scatter
                    c_d = n_km[..., None] + 1.0 + 2.0 * (self.covars_prior + 1.0)
                else:
                    c_n = lam * (cm**2).sum(-1) + 2.0 * self.covars_weight + scatter.sum(-1)
                    c_d = d * (n_km + 1.0) + 2.0 * (self.covars_prior + 1.0)
                    floor = floor.mean()
                var = torch.where(c_d > 0, c_n / torch.where(c_d > 0, c_d, torch.ones_like(c_d)), self.covars)
                self.log_var.copy_(torch.log(torch.maximum(var, floor.clamp_min(torch.finfo(var.dtype).tiny))))
            elif ct == "tied":
                so = (s1[..., :, None] * old_mu[..., None, :]).sum(1)
                scatter = (
                    stats["obs_outer"].to(self.loc.device) - so - so.transpose(-1, -2)
                    + (n_km[..., None, None] * old_mu[..., :, None] * old_mu[..., None, :]).sum(1)
                )
                prior = (lam[..., None, None] * cm[..., :, None] * cm[..., None, :]).sum(1)
                c_n = self.covars_prior.transpose(-1, -2) + prior + scatter
                c_d = (n_k + self.num_mixtures + self.covars_weight + d + 1.0)[:, None, None]
                cov = torch.where(c_d > 0, c_n / torch.where(c_d > 0, c_d, torch.ones_like(c_d)), self.covars)
                cov = floor_covariance(cov, floor)
                self.scale_tril_raw.copy_(raw_from_covariance(cov, "covariance after m_step"))
            else:
                so = s1[..., :, None] * old_mu[..., None, :]
                scatter = (
                    stats["obs_outer"].to(self.loc.device) - so - so.transpose(-1, -2)
                    + n_km[..., None, None] * old_mu[..., :, None] * old_mu[..., None, :]
                )
                c_n = self.covars_prior.transpose(-1, -2) + lam[..., None, None] * cm[..., :, None] * cm[..., None, :] + scatter
                c_d = (n_km + 1.0 + self.covars_weight + d + 1.0)[..., None, None]
                cov = torch.where(c_d > 0, c_n / torch.where(c_d > 0, c_d, torch.ones_like(c_d)), self.covars)
                cov = floor_covariance(cov, floor)
                self.scale_tril_raw.copy_(raw_from_covariance(cov, "covariance after m_step"))
            self.logits.copy_(torch.log(w))
            self.loc.copy_(mu + c)

    # ----------------------------------------------------------------- initialisation

    def initialize(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None) -> None:
        """Data-driven parameters, as hmmlearn's ``GMMHMM._init`` with our k-means.

        k-means with ``K`` clusters over the valid frames, then k-means with ``M`` clusters
        inside each cluster for that state's component means (a cluster with fewer than ``M``
        frames gets means drawn from ``N(mean of the K centroids, C)``); weights uniform; every
        component's covariance ``C`` = covariance of all valid frames + the variance floor
        (``min_covar * I``, or ``diag(var_floor * data variance)``; diag: its diagonal;
        spherical: the mean of its diagonal, where hmmlearn takes the mean of all its entries;
        tied: the same matrix for every state). All randomness comes from ``generator``.
        """
        x, mask = check_observations(x, self.dim, self.loc, mask)
        points = valid_points(x, mask).detach()
        k, m, d = self.num_states, self.num_mixtures, self.dim
        if points.shape[0] < k:
            raise HMMValueError(f"initialize needs at least K == {k} valid frames; got {points.shape[0]}")
        centroids, labels = kmeans(points, k, generator=generator)
        cv = data_covariance(points, variance_floor(self.min_covar, self.var_floor, points.mean(0),
                                                    points.var(0, unbiased=False)))
        chol = torch.linalg.cholesky(cv)
        means = []
        for state in range(k):
            cluster = points[labels == state]
            if cluster.shape[0] >= m:
                means.append(kmeans(cluster, m, generator=generator)[0])
            else:
                eps = draw_normal((m, d), points, generator)
                means.append(centroids.mean(0) + eps @ chol.T)
        self.weights = torch.full((k, m), 1.0 / m, dtype=self.loc.dtype, device=self.loc.device)
        self.means = torch.stack(means)
        self.covars = {
            "diag": lambda: torch.diagonal(cv).expand(k, m, d),
            "spherical": lambda: torch.diagonal(cv).mean().expand(k, m),
            "full": lambda: cv.expand(k, m, d, d),
            "tied": lambda: cv.expand(k, d, d),
        }[self.covariance_type]()

    def split(self, generator: Optional[torch.Generator] = None) -> "GaussianMixture":
        """Double ``num_mixtures``: each component becomes two, ``mu +/- 0.2 sqrt(lambda) v``.

        ``v`` is the direction of largest variance (for diag the dimension with the largest
        variance, for full and tied the leading eigenvector of the component's (state's)
        covariance, ``lambda`` its variance; spherical: every dimension ties). The two halves
        keep the covariance (tied: the state's one matrix, now shared by ``2M`` components) and
        get half the weight; they sit next to each other (component ``m`` becomes ``2m`` and
        ``2m + 1``). Directions whose variance ties the largest (within a relative 1e-6, common
        right after :meth:`initialize` on variance-normalised features) are chosen between at
        random with ``generator``, or the first one when ``generator`` is None. Per-component
        prior hyper-parameters are duplicated the same way; tied keeps ``covars_prior`` and
        lowers ``covars_weight`` by ``M``, so its M-step denominator ``N_k + M + nu + D + 1``
        is unchanged (the default, ``-(M + D + 1)``, stays the default).

        The parameters are replaced by new ``nn.Parameter`` objects: rebuild optimizers.
        Returns ``self``.
        """
        k, m, d = self.num_states, self.num_mixtures, self.dim
        ct = self.covariance_type
        with torch.no_grad():
            if ct in ("diag", "spherical"):
                var = torch.exp(self.log_var) if ct == "diag" else torch.exp(self.log_var)[..., None].expand(k, m, d)
                idx = _pick_largest(var, generator)
                scale = torch.sqrt(var.gather(-1, idx[..., None]))[..., 0]
                direction = nn.functional.one_hot(idx, d).to(var)
            else:
                covs = self.covars if ct == "full" else self.covars[:, None].expand(k, m, d, d)
                evals, evecs = torch.linalg.eigh(covs)
                idx = _pick_largest(evals, generator)
                scale = torch.sqrt(evals.gather(-1, idx[..., None]))[..., 0]
                direction = evecs.gather(-1, idx[..., None, None].expand(k, m, d, 1))[..., 0]
            offset = 0.2 * scale[..., None] * direction
            new_loc = torch.stack([self.loc + offset, self.loc - offset], dim=2).reshape(k, 2 * m, d)
            new_logits = self.logits.repeat_interleave(2, dim=1) + math.log(0.5)
            cov_name = "log_var" if ct in ("diag", "spherical") else "scale_tril_raw"
            cov = getattr(self, cov_name).detach()
            new_cov = cov.clone() if ct == "tied" else cov.repeat_interleave(2, dim=1)
            self.loc = nn.Parameter(new_loc)
            self.logits = nn.Parameter(new_logits)
            setattr(self, cov_name, nn.Parameter(new_cov))
            per_component = ("weights_prior", "means_prior", "means_weight")
            if ct == "tied":
                self.covars_weight = self.covars_weight - m
            else:
                per_component += ("covars_prior", "covars_weight")
            for name in per_component:
                setattr(self, name, getattr(self, name).repeat_interleave(2, dim=1))
        self.num_mixtures = 2 * m
        return self


def _pick_largest(values: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Index of the largest entry along the last dim; near-ties (relative 1e-6) broken with ``generator``."""
    top = values.amax(-1, keepdim=True)
    tied = values >= top - 1e-6 * top.abs()
    if generator is None:
        return tied.to(torch.int64).argmax(-1)
    u = torch.rand(values.shape, generator=generator, dtype=values.dtype, device=generator.device).to(values.device)
    return torch.where(tied, u + 1.0, torch.zeros_like(u)).argmax(-1)


__all__ = ["GaussianMixture", "MIXTURE_COVARIANCE_TYPES"]
