"""Gaussian emissions with diagonal, full, spherical or tied covariances.

Parameters are stored unconstrained, so gradient training needs no projection:

* ``loc`` ``(K, D)``: the means;
* ``"diag"``: ``log_var`` ``(K, D)``; ``"spherical"``: ``log_var`` ``(K,)``;
* ``"full"``: ``scale_tril_raw`` ``(K, D, D)``; ``"tied"``: ``scale_tril_raw`` ``(D, D)``: the
  Cholesky factor ``L`` of the covariance (``Sigma = L L^T``) with its diagonal stored as
  ``log L_ii``; entries above the diagonal are ignored.

The covariance shapes of :attr:`Gaussian.covars` follow hmmlearn: diag ``(K, D)``, full
``(K, D, D)``, spherical ``(K,)``, tied ``(D, D)``.

Densities and covariance helpers live in :mod:`.covariance`, input checks in :mod:`.checks`.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from ..errors import HMMValueError
from .base import Emission, Stats
from ..validation import as_tensor, check_count, check_float_dtype, check_number, check_shape
from .checks import (
    sampling_states,
    broadcast_prior,
    check_observations,
    zero_padding,
    check_posteriors,
    check_stats,
    valid_points,
    draw_normal,
)
from .covariance import (
    diag_log_density,
    full_log_density,
    tied_log_density,
    scale_tril_from_raw,
    raw_from_covariance,
    check_covariance_matrices,
    floor_covariance,
    weighted_outer_sum,
    data_covariance,
    variance_floor,
    stats_variance_floor,
)
from .kmeans import canonical_order, kmeans

COVARIANCE_TYPES = ("diag", "full", "spherical", "tied")
MISSING_MODES = ("error", "marginalize")
_LOG_2PI = math.log(2.0 * math.pi)


# ------------------------------------------------------------------------ missing values


def masked_diag_log_density(x: torch.Tensor, observed: torch.Tensor, means: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` log-density of the observed entries of ``x`` ``(N, D)`` under diagonal Gaussians
    (``means``/``log_var`` ``(C, D)``): ``sum_{d observed} log N(x_d; mu_cd, exp(log_var_cd))``.

    The quadratic form is expanded into matrix products (no ``(N, C, D)`` intermediate) about
    the mean of the means, in float64; the result has the dtype of ``x``. Entries of ``x``
    where ``observed`` is False are ignored (they may hold anything finite).
    """
    o = observed.to(torch.float64)
    mu, lv = means.double(), log_var.double()
    ref = mu.detach().mean(0)
    xc = torch.where(observed, x.double() - ref, torch.zeros((), dtype=torch.float64, device=x.device))
    mc, prec = mu - ref, torch.exp(-lv)
    quad = (xc * xc) @ prec.T - 2.0 * (xc @ (mc * prec).T) + o @ (mc * mc * prec).T
    out = -0.5 * (o @ (_LOG_2PI + lv).T + quad.clamp_min(0.0))
    return out.to(x.dtype)


def _per_dim_floor(min_covar, var_floor, n, obs, sq, offset, dtype) -> torch.Tensor:
    """``stats_variance_floor`` with a ``(D,)`` posterior mass ``n`` (each dimension's observed frames)."""
    safe = n.clamp_min(torch.finfo(n.dtype).tiny)
    mean = torch.where(n > 0, obs / safe, torch.zeros_like(obs))
    var = torch.where(n > 0, (sq / safe - mean * mean).clamp_min(0.0), torch.zeros_like(obs))
    return variance_floor(min_covar, var_floor, (mean + offset.to(mean)).to(dtype), var.to(dtype))


# -------------------------------------------------------------------------------- module


class Gaussian(Emission):
    """Gaussian emission ``p(x | z = k) = N(x; mu_k, Sigma_k)`` over ``K`` states in ``D`` dimensions.

    Args:
        num_states: ``K``.
        dim: ``D``.
        covariance_type: ``"diag"``, ``"full"``, ``"spherical"`` or ``"tied"`` (all states
            share one full covariance).
        means: ``(K, D)``; default zeros (call :meth:`initialize` or set them).
        covars: hmmlearn shapes: diag ``(K, D)``, full ``(K, D, D)``, spherical ``(K,)``,
            tied ``(D, D)``; default identity.
        min_covar: ``None`` (default): a variance floor relative to the data, ``var_floor``
            times the variance of the training frames in each dimension (HTK's convention),
            so features of any scale keep their fitted variances. A float: an absolute floor,
            the same in every dimension. Either floor ``F`` is added to the diagonal of the
            data covariance in :meth:`initialize` (hmmlearn adds ``min_covar * I`` there) and
            is a lower bound on the covariance after :meth:`m_step` (variances, or
            ``F^-1/2 Sigma F^-1/2 >= I`` for full/tied; hmmlearn documents a floor but does
            not apply one in its M-step), a no-op unless a variance would fall below it. In
            :meth:`m_step` the data variance comes from the statistics themselves (summed over
            states), so it needs no :meth:`initialize`.
        var_floor: the fraction of the data variance used when ``min_covar`` is None
            (default 1e-3); 0 disables the floor (apart from a guard at ``eps`` of the dtype).
        means_prior, means_weight: Normal prior on the means (mean ``mu_0`` broadcast to
            ``(K, D)``, precision weight ``lambda`` broadcast to ``(K,)``).
        covars_prior, covars_weight: prior on the covariances (inverse gamma for diag and
            spherical, inverse Wishart for full and tied), hmmlearn's parameterisation:
            ``covars_prior`` broadcast to ``(K, D)`` (diag, spherical), ``(K, D, D)``
            (full) or ``(D, D)`` (tied), so a scalar is added to every matrix entry as in
            hmmlearn; ``covars_weight`` broadcast to ``(K,)`` (a scalar for tied).
        dtype, device: of the parameters.
        missing: what NaN entries of valid frames mean. ``"error"`` (default): they are an
            error, as inf is. ``"marginalize"``: they are missing values, as in pomegranate's
            distributions. A frame scores the marginal density of its observed dimensions
            (diag/spherical: the terms of the missing dimensions are dropped; full/tied: the
            Gaussian of the observed sub-vector, ``N(x_O; mu_O, Sigma_OO)``). A frame with
            every dimension missing scores 0. In EM, diag/spherical take each dimension's
            statistics from the frames where it is observed; full/tied treat the missing
            entries as hidden variables (see :meth:`accumulate`). Padded frames (``mask``
            False) are excluded either way, whatever they hold.

    ``log_prob(x, mask=None)`` is differentiable in every parameter; EM statistics are the
    weighted moments ``post`` ``(K,)``, ``obs`` ``(K, D)`` and ``obs_sq`` ``(K, D)`` (diag,
    spherical) or ``obs_outer`` ``(K, D, D)`` (full, tied), and with ``missing="marginalize"``
    (diag, spherical) the per-dimension posterior mass ``obs_count`` ``(K, D)`` of the frames
    where each dimension is observed.

    Attributes:
        needs_init: True while the means are the placeholder zeros (no ``means`` given, not
            initialised, nothing loaded); EM's fit calls :meth:`initialize` then.
        stats_offset: ``(D,)`` buffer, the point the EM statistics are taken about (the mean
            of the means when they were last set or initialised).
    """

    def __init__(
        self,
        num_states: int,
        dim: int,
        covariance_type: str = "diag",
        means=None,
        covars=None,
        min_covar: Optional[float] = None,
        var_floor: float = 1e-3,
        means_prior=0.0,
        means_weight=0.0,
        covars_prior=1e-2,
        covars_weight=1.0,
        dtype: torch.dtype = torch.float32,
        device=None,
        missing: str = "error",
    ) -> None:
        super().__init__()
        k = check_count(num_states, "num_states")
        d = check_count(dim, "dim")
        if covariance_type not in COVARIANCE_TYPES:
            raise HMMValueError(
                f"covariance_type must be one of {', '.join(repr(c) for c in COVARIANCE_TYPES)}; got {covariance_type!r}"
            )
        if not isinstance(missing, str) or missing not in MISSING_MODES:
            raise HMMValueError(f"missing must be one of {', '.join(repr(m) for m in MISSING_MODES)}; got {missing!r}")
        self.missing = missing
        check_float_dtype(dtype)
        min_covar = None if min_covar is None else check_number(min_covar, "min_covar", minimum=0.0)
        self.var_floor = check_number(var_floor, "var_floor", minimum=0.0, below=1.0)
        self.num_states, self.dim, self.covariance_type, self.min_covar = k, d, covariance_type, min_covar
        fk = dict(dtype=dtype, device=device)
        self.loc = nn.Parameter(torch.zeros(k, d, **fk))
        if covariance_type == "diag":
            self.log_var = nn.Parameter(torch.zeros(k, d, **fk))
        elif covariance_type == "spherical":
            self.log_var = nn.Parameter(torch.zeros(k, **fk))
        elif covariance_type == "full":
            self.scale_tril_raw = nn.Parameter(torch.zeros(k, d, d, **fk))
        else:
            self.scale_tril_raw = nn.Parameter(torch.zeros(d, d, **fk))
        cp_shape = {"diag": (k, d), "spherical": (k, d), "full": (k, d, d), "tied": (d, d)}[covariance_type]
        self.register_buffer("stats_offset", torch.zeros(d, **fk))
        self.register_buffer("means_prior", broadcast_prior(means_prior, (k, d), "means_prior", **fk))
        self.register_buffer("means_weight", broadcast_prior(means_weight, (k,), "means_weight", **fk, minimum=0.0))
        cp_min = 0.0 if covariance_type in ("diag", "spherical") else None  # full / tied: a matrix Psi
        self.register_buffer("covars_prior", broadcast_prior(covars_prior, cp_shape, "covars_prior", **fk, minimum=cp_min))
        cw_shape = () if covariance_type == "tied" else (k,)
        self.register_buffer("covars_weight", broadcast_prior(covars_weight, cw_shape, "covars_weight", **fk))
        self.needs_init = means is None
        if means is not None:
            self.means = means
        if covars is not None:
            self.covars = covars

    def __setattr__(self, name, value):
        if name in ("means", "covars"):  # properties, even for nn.Parameter values
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def extra_repr(self) -> str:
        extra = "" if self.missing == "error" else f", missing={self.missing!r}"
        return f"num_states={self.num_states}, dim={self.dim}, covariance_type={self.covariance_type!r}{extra}"

    # -------------------------------------------------------------------- parameters

    @property
    def means(self) -> torch.Tensor:
        """``(K, D)`` state means (the ``loc`` parameter itself)."""
        return self.loc

    @means.setter
    def means(self, value) -> None:
        t = as_tensor(value, "means", self.loc.dtype, self.loc.device)
        check_shape(t, (self.num_states, self.dim), "means", "(K, D)")
        if not bool(torch.isfinite(t).all()):
            raise HMMValueError("means must be finite; got NaN or infinite values")
        with torch.no_grad():
            self.loc.copy_(t)
            self.stats_offset.copy_(t.mean(0))
        self.needs_init = False

    @property
    def covars(self) -> torch.Tensor:
        """Covariances in hmmlearn's shapes: diag ``(K, D)``, full ``(K, D, D)``, spherical ``(K,)``, tied ``(D, D)``."""
        if self.covariance_type in ("diag", "spherical"):
            return torch.exp(self.log_var)
        lower = scale_tril_from_raw(self.scale_tril_raw)
        return lower @ lower.transpose(-1, -2)

    @covars.setter
    def covars(self, value) -> None:
        ct, k, d = self.covariance_type, self.num_states, self.dim
        t = as_tensor(value, "covars", self.loc.dtype, self.loc.device)
        shape, what = {
            "diag": ((k, d), "(K, D)"),
            "spherical": ((k,), "(K,)"),
            "full": ((k, d, d), "(K, D, D)"),
            "tied": ((d, d), "(D, D)"),
        }[ct]
        check_shape(t, shape, f"covars for covariance_type={ct!r}", what)
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
        """``(K, D, D)`` lower Cholesky factors of every state's covariance (all types)."""
        ct, k = self.covariance_type, self.num_states
        if ct == "diag":
            return torch.diag_embed(torch.exp(0.5 * self.log_var))
        if ct == "spherical":
            eye = torch.eye(self.dim, dtype=self.loc.dtype, device=self.loc.device)
            return torch.exp(0.5 * self.log_var)[:, None, None] * eye
        lower = scale_tril_from_raw(self.scale_tril_raw)
        return lower if ct == "full" else lower.expand(k, -1, -1)

    @property
    def covariance_matrices(self) -> torch.Tensor:
        """``(K, D, D)`` full covariance matrix of every state (all types)."""
        lower = self.scale_tril
        return lower @ lower.transpose(-1, -2)

    # ------------------------------------------------------------------------ density

    def log_prob(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(B, T, K)`` log N(x_bt; mu_k, Sigma_k) for ``x`` ``(B, T, D)``.

        With ``mask`` ``(B, T)`` bool, padded frames may hold anything (even NaN); their
        outputs are 0. With ``missing="marginalize"``, NaN entries of valid frames are missing
        values: such a frame scores the marginal density of its observed dimensions (0 when
        none is observed).
        """
        x, mask, observed = self._observations(x, mask)
        b, t, _ = x.shape
        flat = x.reshape(-1, self.dim)
        out = self._log_density(flat) if observed is None else self._marginal_log_density(flat, observed.reshape(-1, self.dim))
        return zero_padding(out.reshape(b, t, self.num_states), mask)

    def _observations(self, x, mask) -> Tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Checked ``(x, mask, observed)``: ``observed`` ``(B, T, D)`` bool is False at the NaN
        entries of valid frames (which ``x`` then holds as 0), or None where there are none
        (always with ``missing="error"``, where NaN stays an error)."""
        if self.missing == "error" or not isinstance(x, torch.Tensor) or not x.is_floating_point():
            x, mask = check_observations(x, self.dim, self.loc, mask)
            return x, mask, None
        nan = torch.isnan(x)
        checked, mask = check_observations(x.masked_fill(nan, 0.0), self.dim, self.loc, mask)
        if mask is not None:
            nan = nan & mask[..., None]
        if not bool(nan.any()):
            return checked, mask, None
        return checked, mask, ~nan

    def _marginal_log_density(self, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """``(N, K)`` log-densities of the observed entries of ``x`` ``(N, D)`` (``observed`` ``(N, D)`` bool)."""
        ct, n = self.covariance_type, x.shape[0]
        complete, some = observed.all(1), observed.any(1)
        parts = [(torch.nonzero(complete).squeeze(1), None)]
        if ct in ("diag", "spherical"):
            parts.append((torch.nonzero(some & ~complete).squeeze(1), None))
        else:  # one marginal Gaussian per missingness pattern
            rows = torch.nonzero(some & ~complete).squeeze(1)
            patterns, which = torch.unique(observed[rows], dim=0, return_inverse=True)
            parts += [(rows[which == p], patterns[p]) for p in range(patterns.shape[0])]
        out = x.new_zeros(n, self.num_states)
        for i, (rows, pattern) in enumerate(parts):
            if rows.numel() == 0:
                continue
            xr = x[rows]
            if i == 0:
                val = self._log_density(xr)
            elif ct in ("diag", "spherical"):
                log_var = self.log_var if ct == "diag" else self.log_var[:, None].expand(-1, self.dim)
                val = masked_diag_log_density(xr, observed[rows], self.loc, log_var)
            else:
                dims = torch.nonzero(pattern).squeeze(1)
                cov = self.covariance_matrices if ct == "full" else self.covariance_matrices[:1]
                lower = torch.linalg.cholesky(cov[:, dims][:, :, dims])
                xo, mo = xr[:, dims], self.loc[:, dims]
                val = full_log_density(xo, mo, lower) if ct == "full" else tied_log_density(xo, mo, lower[0])
            out = out.index_copy(0, rows, val.to(out.dtype))
        return out

    def _log_density(self, x: torch.Tensor) -> torch.Tensor:
        ct = self.covariance_type
        if ct == "diag":
            return diag_log_density(x, self.loc, self.log_var)
        if ct == "spherical":
            return diag_log_density(x, self.loc, self.log_var[:, None].expand(-1, self.dim))
        lower = scale_tril_from_raw(self.scale_tril_raw)
        return full_log_density(x, self.loc, lower) if ct == "full" else tied_log_density(x, self.loc, lower)

    def sample(self, states: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Draw one observation per entry of the int64 tensor ``states`` (any shape ``S``) -> ``(*S, D)``;
        padding states (``-1``) give NaN rows."""
        states, padding = sampling_states(states, self.num_states, self.loc.device)
        with torch.no_grad():
            eps = draw_normal(tuple(states.shape) + (self.dim,), self.loc, generator)
            out = self.loc[states] + (self.scale_tril[states] @ eps[..., None])[..., 0]
            return out.masked_fill(padding[..., None], float("nan"))

    # ----------------------------------------------------------------------------- EM

    def _stat_keys(self) -> Tuple[str, ...]:
        second = "obs_sq" if self.covariance_type in ("diag", "spherical") else "obs_outer"
        return ("post", "obs", second) + (("obs_count",) if self._counts_per_dim() else ())

    def _counts_per_dim(self) -> bool:
        return self.missing == "marginalize" and self.covariance_type in ("diag", "spherical")

    def init_stats(self) -> Stats:
        """Zero statistics: ``post`` ``(K,)``, ``obs`` ``(K, D)``, ``obs_sq`` ``(K, D)`` or ``obs_outer`` ``(K, D, D)``,
        and ``obs_count`` ``(K, D)`` with ``missing="marginalize"`` (diag, spherical)."""
        k, d = self.num_states, self.dim
        z = dict(dtype=torch.float64, device=self.loc.device)  # sums in float64: see accumulate
        stats = {"post": torch.zeros(k, **z), "obs": torch.zeros(k, d, **z)}
        if self.covariance_type in ("diag", "spherical"):
            stats["obs_sq"] = torch.zeros(k, d, **z)
        else:
            stats["obs_outer"] = torch.zeros(k, d, d, **z)
        if self._counts_per_dim():
            stats["obs_count"] = torch.zeros(k, d, **z)
        return stats

    def accumulate(
        self, stats: Stats, x: torch.Tensor, posteriors: torch.Tensor, mask: Optional[torch.Tensor] = None
    ) -> None:
        """Add ``sum_t g_tk``, ``sum_t g_tk x_t`` and ``sum_t g_tk x_t^2`` (or ``x_t x_t^T``) over valid frames.

        Frames where ``mask`` is False are ignored, whatever ``x`` and ``posteriors`` hold there;
        ``mask=None`` means every frame is valid.

        The moments are taken about ``stats_offset`` ``c`` (``x_t - c`` in place of ``x_t``), a
        buffer set to the mean of the means whenever they are set or initialised (never by
        :meth:`m_step`), which keeps float32 statistics accurate for features far from 0. The
        statistics do not depend on the current parameters, so they can be summed across
        batches, streams and processes, and across EM iterations.

        With ``missing="marginalize"``, missing entries (NaN at valid frames) are handled so
        that the M-step maximises the marginal likelihood of the observed entries:

        * diag, spherical: they add nothing to ``obs`` and ``obs_sq``, and ``obs_count``
          ``(K, D)`` adds ``sum_t g_tk`` over the frames where dimension ``d`` is observed (the
          same as ``post`` for a batch without missing entries), as pomegranate's ``Normal``;
        * full, tied: the missing entries are hidden variables (EM for incomplete data,
          Ghahramani and Jordan 1994). A frame of state ``k`` adds the conditional moments
          given its observed entries under the current parameters: ``x_M`` is replaced by
          ``mu_M + Sigma_MO Sigma_OO^-1 (x_O - mu_O)`` and ``x_M x_M^T`` gains
          ``Sigma_MM - Sigma_MO Sigma_OO^-1 Sigma_OM``. These statistics depend on the
          parameters, so accumulate them anew in every EM iteration (as EM does).
        """
        check_stats(stats, self._stat_keys(), type(self).__name__)
        x, mask, observed = self._observations(x, mask)
        g = check_posteriors(posteriors, x, self.num_states, mask).detach()
        if observed is not None and not self._counts_per_dim():
            self._accumulate_hidden(stats, x, g, observed)
            return
        with torch.no_grad():
            # float64 sums: with float32 data, raw moments of a state far from the offset
            # cancel catastrophically in the M-step's Q - 2 mu S + mu^2 N
            xf = x.detach().reshape(-1, self.dim).double() - self.stats_offset.double()
            gf = g.reshape(-1, self.num_states).double()
            post = gf.sum(0)
            stats["post"] += post
            if observed is not None:
                seen = observed.reshape(-1, self.dim)
                xf = torch.where(seen, xf, torch.zeros((), dtype=xf.dtype, device=xf.device))
                stats["obs_count"] += gf.T @ seen.double()
            elif "obs_count" in stats:
                stats["obs_count"] += post[:, None]  # bitwise post's increment: see m_step
            stats["obs"] += gf.T @ xf
            if "obs_sq" in stats:
                stats["obs_sq"] += gf.T @ (xf * xf)
            else:
                stats["obs_outer"] += weighted_outer_sum(gf, xf)

    def _accumulate_hidden(self, stats: Stats, x: torch.Tensor, g: torch.Tensor, observed: torch.Tensor) -> None:
        """Full/tied statistics with the missing entries as hidden variables (see :meth:`accumulate`)."""
        k, d = self.num_states, self.dim
        with torch.no_grad():
            xf = x.detach().reshape(-1, d).double() - self.stats_offset.double()
            gf = g.reshape(-1, k).double()
            seen = observed.reshape(-1, d)
            stats["post"] += gf.sum(0)
            complete = torch.nonzero(seen.all(1)).squeeze(1)
            stats["obs"] += gf[complete].T @ xf[complete]
            stats["obs_outer"] += weighted_outer_sum(gf[complete], xf[complete])
            rows = torch.nonzero(~seen.all(1)).squeeze(1)
            if rows.numel() == 0:
                return
            cov = self.covariance_matrices.double()  # (K, D, D) for tied too
            mu = self.loc.double() - self.stats_offset.double()
            patterns, which = torch.unique(seen[rows], dim=0, return_inverse=True)
            for p in range(patterns.shape[0]):
                r = rows[which == p]
                o, m = torch.nonzero(patterns[p]).squeeze(1), torch.nonzero(~patterns[p]).squeeze(1)
                gp = gf[r]  # (n, K)
                s_mm = cov[:, m][:, :, m]
                if o.numel() > 0:
                    gain = torch.linalg.solve(cov[:, o][:, :, o], cov[:, o][:, :, m])  # (K, |O|, |M|): Sigma_OO^-1 Sigma_OM
                    fill = mu[None, :, m] + ((xf[r][:, None, o] - mu[None, :, o])[:, :, None, :] @ gain[None])[:, :, 0]
                    cond = s_mm - cov[:, m][:, :, o] @ gain
                else:
                    fill, cond = mu[None, :, m].expand(r.numel(), -1, -1), s_mm
                full = xf[r][:, None, :].repeat(1, k, 1)  # (n, K, D): each state's completed frame
                full[:, :, m] = fill
                weighted = gp[:, :, None] * full
                stats["obs"] += weighted.sum(0)
                stats["obs_outer"] += torch.einsum("nki,nkj->kij", weighted, full)
                extra = torch.zeros(k, d, d, dtype=torch.float64, device=xf.device)
                extra[:, m[:, None], m[None, :]] = gp.sum(0)[:, None, None] * cond
                stats["obs_outer"] += extra

    def m_step(self, stats: Stats) -> None:
        r"""Set means and covariances from the statistics, as hmmlearn's ``GaussianHMM._do_mstep``.

        With ``N_k = post``, ``S_k = obs``, prior mean ``mu0`` and weight ``lambda`` (all
        formulas are translation invariant; they are evaluated with ``x``, ``mu`` and ``mu0``
        shifted by ``stats_offset``, which the statistics already are):

        * ``mu_k = (lambda_k mu0_k + S_k) / (lambda_k + N_k)`` (a state with
          ``lambda_k + N_k == 0`` keeps its mean, where hmmlearn gives NaN);
        * diag/spherical, with ``Q_k = obs_sq``:
          ``c_k = lambda_k (mu_k - mu0_k)^2 + Q_k - 2 mu_k S_k + mu_k^2 N_k``,
          ``var_k = (covars_prior_k + c_k) / max(max(covars_weight_k - 1, 0) + N_k, 1e-5)``;
          spherical then averages ``var_k`` over the ``D`` dimensions;
        * full/tied, with ``Q_k = obs_outer``:
          ``C_k = lambda_k (mu_k - mu0_k)(mu_k - mu0_k)^T + Q_k - S_k mu_k^T - mu_k S_k^T + N_k mu_k mu_k^T``,
          full: ``Sigma_k = (covars_prior_k + C_k) / (max(covars_weight_k - D, 0) + N_k)``,
          tied: ``Sigma = (covars_prior + sum_k C_k) / (max(covars_weight - D, 0) + sum_k N_k)``
          (a zero denominator keeps the old covariance, where hmmlearn divides by zero);
        * finally the covariances are floored at ``F`` (see ``min_covar``): every variance
          (diag), the variance (spherical, at the mean of ``F``) or ``Sigma >= F`` (full/tied).

        With missing values (``obs_count`` differs from ``post``), diag and spherical use the
        per-dimension mass ``N_kd = obs_count`` in place of ``N_k`` in every formula (the mean
        and variance of each dimension from the frames where it is observed, as pomegranate's
        ``Normal``), and the relative floor uses each dimension's observed frames. Spherical
        then pools the dimensions, ``var_k = sum_d (covars_prior_kd + c_kd) / sum_d c_d,kd``
        (the maximiser of the marginal likelihood, where pomegranate averages the per-dimension
        variances; the same when no value is missing).
        """
        check_stats(stats, self._stat_keys(), type(self).__name__)
        ct, d = self.covariance_type, self.dim
        n = stats["post"].to(self.loc.device)
        s1 = stats["obs"].to(self.loc.device)
        c = self.stats_offset
        lam, mu0 = self.means_weight, self.means_prior - c
        second = stats["obs_sq"] if ct in ("diag", "spherical") else torch.diagonal(stats["obs_outer"], dim1=-2, dim2=-1)
        per_dim = "obs_count" in stats and not torch.equal(stats["obs_count"], stats["post"][:, None].expand(-1, d))
        if per_dim:
            n_col = stats["obs_count"].to(self.loc.device)  # (K, D) per-dimension mass
            floor = _per_dim_floor(self.min_covar, self.var_floor, n_col.sum(0), s1.sum(0),
                                   second.to(n.device).sum(0), c, self.loc.dtype)
        else:
            n_col = n[:, None]
            floor = stats_variance_floor(self.min_covar, self.var_floor, n.sum(), s1.sum(0), second.to(n.device).sum(0),
                                         c, self.loc.dtype)
        with torch.no_grad():
            if per_dim:
                denom = lam[:, None] + n_col
                safe = torch.where(denom > 0, denom, torch.ones_like(denom))
                mu = torch.where(denom > 0, (lam[:, None] * mu0 + s1) / safe, self.loc - c)
            else:
                denom = lam + n
                safe = torch.where(denom > 0, denom, torch.ones_like(denom))
                mu = torch.where((denom > 0)[:, None], (lam[:, None] * mu0 + s1) / safe[:, None], self.loc - c)
            diff0 = mu - mu0
            if ct in ("diag", "spherical"):
                q = stats["obs_sq"].to(self.loc.device)
                c_n = lam[:, None] * diff0**2 + q - 2.0 * mu * s1 + mu**2 * n_col
                c_d = (self.covars_weight - 1.0).clamp_min(0.0)[:, None] + n_col
                var = (self.covars_prior + c_n) / c_d.clamp_min(1e-5)
                if ct == "spherical" and per_dim:  # one variance for dimensions of unequal mass
                    var, floor = (self.covars_prior + c_n).sum(1) / c_d.sum(1).clamp_min(1e-5), floor.mean()
                elif ct == "spherical":
                    var, floor = var.mean(1), floor.mean()
                self.log_var.copy_(torch.log(torch.maximum(var, floor.clamp_min(torch.finfo(var.dtype).tiny))))
            else:
                q = stats["obs_outer"].to(self.loc.device)
                sm = s1[:, :, None] * mu[:, None, :]
                c_n = (
                    lam[:, None, None] * diff0[:, :, None] * diff0[:, None, :]
                    + q - sm - sm.transpose(1, 2)
                    + n[:, None, None] * mu[:, :, None] * mu[:, None, :]
                )
                cvw = (self.covars_weight - d).clamp_min(0.0)
                old = self.covariance_matrices if ct == "full" else self.covariance_matrices[0]
                if ct == "full":
                    c_d = cvw + n
                    cov = (self.covars_prior + c_n) / torch.where(c_d > 0, c_d, torch.ones_like(c_d))[:, None, None]
                    cov = torch.where((c_d > 0)[:, None, None], cov, old)
                else:
                    c_d = cvw + n.sum()
                    cov = (self.covars_prior + c_n.sum(0)) / torch.where(c_d > 0, c_d, torch.ones_like(c_d))
                    cov = torch.where(c_d > 0, cov, old)
                cov = floor_covariance(cov, floor)
                self.scale_tril_raw.copy_(raw_from_covariance(cov, "covariance after m_step"))
            self.loc.copy_(mu + c)

    def initialize(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None) -> None:
        """Means by k-means (:func:`.kmeans`: k-means++ seeded with ``generator``, the best of
        its default 10 restarts as hmmlearn's ``_init``) on the valid frames; covariances as
        hmmlearn's ``_init``: the covariance of all valid frames plus the variance floor
        (``min_covar * I`` as hmmlearn, or ``diag(var_floor * data variance)``), the same for
        every state (diag: its diagonal; spherical: the mean of its diagonal).

        The frames are taken in a canonical order (:func:`.canonical_order`), so the result
        is bitwise the same whatever the order of the sequences and frames.

        With missing values (``missing="marginalize"``), k-means runs on the frames with each
        missing entry replaced by the mean of its dimension's observed values, and each mean is
        then the mean of its cluster's observed values in each dimension; each variance
        (and the floor) comes from the dimension's observed values, and full/tied covariances
        take their correlations from the completed frames."""
        x, mask, observed = self._observations(x, mask)
        points = valid_points(x, mask).detach()
        if observed is None:
            points = points[canonical_order(points)] + 0.0  # + 0.0: -0.0 as 0.0
        if points.shape[0] < self.num_states:
            raise HMMValueError(
                f"initialize needs at least K == {self.num_states} valid frames; got {points.shape[0]}"
            )
        if observed is None:
            centroids, _ = kmeans(points, self.num_states, generator=generator)
            floor = variance_floor(self.min_covar, self.var_floor, points.mean(0), points.var(0, unbiased=False))
            cv = data_covariance(points, floor)
        else:
            centroids, cv = self._initialize_missing(points, valid_points(observed, mask), generator)
        k = self.num_states
        covars = {
            "diag": torch.diagonal(cv).expand(k, -1),
            "spherical": torch.diagonal(cv).mean().expand(k),
            "full": cv.expand(k, -1, -1),
            "tied": cv,
        }[self.covariance_type]
        self.means = centroids
        self.covars = covars

    def _initialize_missing(self, points: torch.Tensor, seen: torch.Tensor, generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """k-means centroids ``(K, D)`` and the data covariance ``(D, D)`` (floor included) of
        ``points`` ``(N, D)`` whose entries are observed where ``seen`` ``(N, D)`` is True."""
        count = seen.sum(0)
        if not bool((count > 0).all()):
            gone = torch.nonzero(count == 0).squeeze(1).tolist()
            raise HMMValueError(
                f"initialize needs an observed value in every dimension; dimension(s) {gone} are missing in every valid frame"
            )
        order = canonical_order(torch.cat([seen.to(points.dtype), points], 1))
        points, seen = points[order] + 0.0, seen[order]
        zero = torch.zeros((), dtype=points.dtype, device=points.device)
        cnt = count.to(points.dtype)
        mean = torch.where(seen, points, zero).sum(0) / cnt
        filled = torch.where(seen, points, mean)
        centroids, labels = kmeans(filled, self.num_states, generator=generator)
        # each centroid from its cluster's observed values (the completed ones pull it to the mean)
        n_kd = torch.zeros_like(centroids).index_add_(0, labels, seen.to(points.dtype))
        s_kd = torch.zeros_like(centroids).index_add_(0, labels, torch.where(seen, points, zero))
        centroids = torch.where(n_kd > 0, s_kd / n_kd.clamp_min(1.0), centroids)
        dev2 = torch.where(seen, points - mean, zero) ** 2
        floor = variance_floor(self.min_covar, self.var_floor, mean, dev2.sum(0) / cnt)
        var = dev2.sum(0) / (cnt - 1.0).clamp_min(1.0)
        corr = data_covariance(filled, 0.0)
        sd = torch.sqrt(torch.diagonal(corr))
        inv = torch.where(sd > 0, 1.0 / torch.where(sd > 0, sd, torch.ones_like(sd)), zero)
        corr = corr * inv[:, None] * inv[None, :]
        corr.diagonal().fill_(1.0)
        root = torch.sqrt(var)
        return centroids, corr * root[:, None] * root[None, :] + torch.diag_embed(floor)


__all__ = [
    "COVARIANCE_TYPES",
    "Gaussian",
    "diag_log_density",
    "full_log_density",
    "tied_log_density",
    "scale_tril_from_raw",
    "raw_from_covariance",
    "floor_covariance",
    "weighted_outer_sum",
]
