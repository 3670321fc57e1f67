"""Gaussian emissions with diagonal, full, spherical or tied covariances.

Parameters are stored unconstrained, so gradient training needs no projection:

* ``loc`` ``(K, D)``: the means;
* ``"diag"``: ``log_var`` ``(K, D)``; ``"spherical"``: ``log_var`` ``(K,)``;
* ``"full"``: ``scale_tril_raw`` ``(K, D, D)``; ``"tied"``: ``scale_tril_raw`` ``(D, D)``: the
  Cholesky factor ``L`` of the covariance (``Sigma = L L^T``) with its diagonal stored as
  ``log L_ii``; entries above the diagonal are ignored.

The covariance shapes of :attr:`Gaussian.covars` follow hmmlearn: diag ``(K, D)``, full
``(K, D, D)``, spherical ``(K,)``, tied ``(D, D)``.

The module-level density and covariance helpers are shared with
:mod:`pytorch_hmm.emissions.mixture`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from ..errors import HMMDeviceError, HMMDimensionError, HMMDtypeError, HMMValueError
from .base import Emission, Stats
from .kmeans import kmeans

COVARIANCE_TYPES = ("diag", "full", "spherical", "tied")
_LOG_2PI = math.log(2.0 * math.pi)
_FLOAT_DTYPES = (torch.float32, torch.float64)


# ----------------------------------------------------------------------------- densities


def diag_log_density(x: torch.Tensor, means: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` log N(x_n; mu_c, diag(exp(log_var_c))) for ``x`` ``(N, D)``, ``means``/``log_var`` ``(C, D)``.

    Quadratic expansion ``sum_d (x_d^2 - 2 x_d mu_d + mu_d^2) / var_d`` as two matrix products,
    so no ``(N, C, D)`` intermediate; ``x`` and the means are first shifted by the mean of the
    means (a constant) to limit cancellation.
    """
    ref = means.detach().mean(0)
    xc = x - ref
    mc = means - ref
    prec = torch.exp(-log_var)
    quad = (xc * xc) @ prec.T - 2.0 * (xc @ (mc * prec).T) + (mc * mc * prec).sum(-1)
    return -0.5 * (x.shape[-1] * _LOG_2PI + log_var.sum(-1) + quad.clamp_min(0.0))


def full_log_density(x: torch.Tensor, means: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` log N(x_n; mu_c, L_c L_c^T) for ``means`` ``(C, D)``, lower-triangular ``scale_tril`` ``(C, D, D)``.

    Mahalanobis terms by one batched triangular solve ``L_c z = x_n - mu_c``; log-determinant
    ``2 sum_i log L_ii``.
    """
    diff = (x[None, :, :] - means[:, None, :]).transpose(1, 2)  # (C, D, N)
    z = torch.linalg.solve_triangular(scale_tril, diff, upper=False)
    maha = (z * z).sum(1)  # (C, N)
    logdet = 2.0 * torch.log(torch.diagonal(scale_tril, dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * (x.shape[-1] * _LOG_2PI + logdet[:, None] + maha).T


def tied_log_density(x: torch.Tensor, means: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` log-densities with one shared covariance ``L L^T`` (``scale_tril`` ``(D, D)``).

    Solves ``L z = x`` and ``L w = mu`` once each and expands ``|z_n - w_c|^2``, so no
    ``(N, C, D)`` intermediate.
    """
    ref = means.detach().mean(0)
    zx = torch.linalg.solve_triangular(scale_tril, (x - ref).T, upper=False)  # (D, N)
    zm = torch.linalg.solve_triangular(scale_tril, (means - ref).T, upper=False)  # (D, C)
    maha = (zx * zx).sum(0)[:, None] - 2.0 * (zx.T @ zm) + (zm * zm).sum(0)[None, :]
    logdet = 2.0 * torch.log(torch.diagonal(scale_tril)).sum()
    return -0.5 * (x.shape[-1] * _LOG_2PI + logdet + maha.clamp_min(0.0))


# ------------------------------------------------------------------ covariance conversions


def scale_tril_from_raw(raw: torch.Tensor) -> torch.Tensor:
    """Cholesky factor from its unconstrained form (strict lower part as is, diagonal ``exp``)."""
    return torch.tril(raw, -1) + torch.diag_embed(torch.exp(torch.diagonal(raw, dim1=-2, dim2=-1)))


def raw_from_covariance(cov: torch.Tensor, name: str = "covars") -> torch.Tensor:
    """Unconstrained form of the Cholesky factor of symmetric positive-definite ``cov`` ``(..., D, D)``."""
    chol, info = torch.linalg.cholesky_ex(cov)
    if bool((info > 0).any()):
        raise HMMValueError(f"{name} must be symmetric positive-definite; {_which(info > 0)} is not positive-definite")
    return torch.tril(chol, -1) + torch.diag_embed(torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)))


def _which(bad: torch.Tensor) -> str:
    """Name the first True entry of a per-matrix flag tensor, e.g. ``"matrix [1, 0]"``."""
    if bad.ndim == 0:
        return "the matrix"
    return f"matrix {torch.nonzero(bad)[0].tolist()}"


def check_covariance_matrices(cov: torch.Tensor, name: str) -> None:
    """Raise unless every ``(D, D)`` matrix in ``cov`` is finite, symmetric and positive-definite."""
    if not bool(torch.isfinite(cov).all()):
        raise HMMValueError(f"{name} must be finite; got NaN or infinite values")
    scale = cov.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(cov.dtype).tiny)
    asym = ((cov - cov.transpose(-1, -2)).abs() / scale).amax(dim=(-2, -1))
    if bool((asym > 1e-5).any()):
        raise HMMValueError(f"{name} must be symmetric positive-definite; {_which(asym > 1e-5)} is not symmetric")
    raw_from_covariance(cov, name)


def floor_covariance(cov: torch.Tensor, min_covar: float) -> torch.Tensor:
    """Symmetrise ``cov`` ``(..., D, D)`` and raise every eigenvalue below ``min_covar`` to it.

    Matrices whose eigenvalues are all at least ``min_covar`` are returned unchanged (apart from
    the symmetrisation), so the floor is a no-op wherever it is not needed.
    """
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    if min_covar <= 0:
        return cov
    evals, evecs = torch.linalg.eigh(cov)
    low = evals.amin(-1) < min_covar
    if not bool(low.any()):
        return cov
    floored = (evecs * evals.clamp_min(min_covar)[..., None, :]) @ evecs.transpose(-1, -2)
    return torch.where(low[..., None, None], floored, cov)


def weighted_outer_sum(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(C, D, D)`` ``sum_n w[n, c] x_n x_n^T`` for ``w`` ``(N, C)``, ``x`` ``(N, D)``.

    One matrix product per block of frames against the flattened outer products, so memory
    stays bounded (about 4M elements per block) whatever ``C`` and ``N``.
    """
    n, d = x.shape
    out = w.new_zeros(w.shape[1], d * d)
    step = max(1, (1 << 22) // (d * d))
    for s in range(0, n, step):
        xs = x[s : s + step]
        out += w[s : s + step].T @ (xs[:, :, None] * xs[:, None, :]).reshape(-1, d * d)
    return out.reshape(-1, d, d)


def data_covariance(points: torch.Tensor, min_covar: float) -> torch.Tensor:
    """``(D, D)`` sample covariance of ``points`` ``(N, D)`` (unbiased when N > 1) plus ``min_covar * I``."""
    n, d = points.shape
    centred = points - points.mean(0)
    cov = centred.T @ centred / max(n - 1, 1)
    return cov + min_covar * torch.eye(d, dtype=points.dtype, device=points.device)


# ------------------------------------------------------------------------ input checking


def as_tensor(value, name: str, dtype: torch.dtype, device) -> torch.Tensor:
    """``value`` (tensor, array or number) as a tensor of ``dtype`` on ``device``."""
    try:
        return torch.as_tensor(value, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise HMMValueError(f"{name} must be a tensor or array of numbers; got {type(value).__name__}") from err


def check_shape(t: torch.Tensor, shape: Sequence[int], name: str, what: str) -> None:
    """Raise :class:`HMMDimensionError` unless ``t.shape == shape``; ``what`` names the dims, e.g. ``"(K, D)"``."""
    if tuple(t.shape) != tuple(shape):
        raise HMMDimensionError(
            f"{name} must be {what} == {tuple(shape)}; got {tuple(t.shape)}", expected_shape=shape, actual_shape=t.shape
        )


def broadcast_prior(value, shape: Sequence[int], name: str, dtype: torch.dtype, device) -> torch.Tensor:
    """A prior hyper-parameter broadcast (numpy rules) to ``shape``; per-state values as ``(K, 1, ...)``."""
    t = as_tensor(value, name, dtype, device)
    try:
        return torch.broadcast_to(t, tuple(shape)).clone()
    except RuntimeError as err:
        raise HMMDimensionError(
            f"{name} must broadcast to {tuple(shape)}; got {tuple(t.shape)}", expected_shape=shape, actual_shape=t.shape
        ) from err


def check_observations(
    x: torch.Tensor, dim: int, ref: torch.Tensor, mask: Optional[torch.Tensor] = None
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Validate ``x`` ``(B, T, D)`` (and ``mask`` ``(B, T)`` bool) against parameters like ``ref``.

    Returns ``x`` with padded frames (mask False) set to 0, and the mask. NaN or inf is an
    error at valid frames only, so padding may hold anything.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (B, T, D); got {type(x).__name__}")
    if x.ndim != 3 or x.shape[-1] != dim:
        raise HMMDimensionError(
            f"x must be (B, T, D) with D == {dim}; got {tuple(x.shape)}",
            expected_shape=("B", "T", dim),
            actual_shape=x.shape,
            suggestion="for a single sequence use x.unsqueeze(0)" if x.ndim == 2 and x.shape[-1] == dim else None,
        )
    if x.dtype != ref.dtype:
        raise HMMDtypeError(
            f"x must have the dtype of the emission parameters ({ref.dtype}); got {x.dtype}. "
            f"Convert x with x.to({ref.dtype}) or the emission with .to({x.dtype})"
        )
    if x.device != ref.device:
        raise HMMDeviceError(f"x must be on the device of the emission parameters ({ref.device}); got {x.device}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise HMMDtypeError(f"mask must be a bool tensor (True at valid frames); got {got}")
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise HMMDimensionError(
                f"mask must be (B, T) == {tuple(x.shape[:2])} to match x; got {tuple(mask.shape)}",
                expected_shape=tuple(x.shape[:2]),
                actual_shape=mask.shape,
            )
        if mask.device != x.device:
            raise HMMDeviceError(f"mask must be on the device of x ({x.device}); got {mask.device}")
        finite = torch.isfinite(x).all(-1) | ~mask
        x = torch.where(mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    else:
        finite = torch.isfinite(x).all(-1)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise HMMValueError(f"x must be finite at valid frames; got NaN or inf in {bad} frame(s)")
    return x, mask


def zero_padding(out: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``out`` ``(B, T, K)`` with the frames where ``mask`` is False set to 0."""
    if mask is None:
        return out
    return torch.where(mask[..., None], out, torch.zeros((), dtype=out.dtype, device=out.device))


def check_posteriors(
    posteriors: torch.Tensor, x: torch.Tensor, num_states: int, mask: Optional[torch.Tensor]
) -> torch.Tensor:
    """Validate state posteriors ``(B, T, K)``; returns them with padded frames set to 0."""
    if not isinstance(posteriors, torch.Tensor):
        raise TypeError(f"posteriors must be a torch.Tensor of shape (B, T, K); got {type(posteriors).__name__}")
    shape = tuple(x.shape[:2]) + (num_states,)
    if tuple(posteriors.shape) != shape:
        raise HMMDimensionError(
            f"posteriors must be (B, T, K) == {shape} to match x; got {tuple(posteriors.shape)}",
            expected_shape=shape,
            actual_shape=posteriors.shape,
        )
    if posteriors.dtype != x.dtype or posteriors.device != x.device:
        raise HMMDtypeError(
            f"posteriors must have the dtype and device of x ({x.dtype}, {x.device}); "
            f"got {posteriors.dtype}, {posteriors.device}"
        )
    ok = (torch.isfinite(posteriors) & (posteriors >= 0)).all(-1)
    if mask is not None:
        ok = ok | ~mask
    if not bool(ok.all()):
        raise HMMValueError("posteriors must be finite and non-negative at valid frames; got NaN, inf or negative values")
    return zero_padding(posteriors, mask)


def check_stats(stats: Stats, keys: Sequence[str], owner: str) -> None:
    missing = [k for k in keys if k not in stats]
    if missing:
        raise HMMValueError(f"stats must come from {owner}.init_stats(); missing {missing}")


def check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HMMValueError(f"{name} must be a positive int; got {value!r}")
    return value


def check_float_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in _FLOAT_DTYPES:
        raise HMMDtypeError(f"dtype must be torch.float32 or torch.float64; got {dtype}")
    return dtype


def valid_points(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``(N, D)`` frames of ``x`` where ``mask`` is True (all frames if ``mask`` is None)."""
    return x.reshape(-1, x.shape[-1]) if mask is None else x[mask]


def draw_normal(shape: Sequence[int], ref: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    """Standard normal draws like ``ref`` (dtype, device), taken on the generator's device."""
    device = ref.device if generator is None else generator.device
    return torch.randn(tuple(shape), generator=generator, dtype=ref.dtype, device=device).to(ref.device)


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
        min_covar: added to the diagonal of the data covariance in :meth:`initialize` (as
            hmmlearn), and a floor on the variance along any direction after
            :meth:`m_step` (hmmlearn documents this floor but does not apply it in its
            M-step; here the floor is a no-op unless a variance would fall below it).
        means_prior, means_weight: Normal prior on the means (mean ``mu_0`` broadcast to
            ``(K, D)``, precision weight ``lambda`` broadcast to ``(K,)``).
        covars_prior, covars_weight: prior on the covariances (inverse gamma for diag and
            spherical, inverse Wishart for full and tied), hmmlearn's parameterisation:
            ``covars_prior`` broadcast to ``(K, D)`` (diag, spherical), ``(K, D, D)``
            (full) or ``(D, D)`` (tied), so a scalar is added to every matrix entry as in
            hmmlearn; ``covars_weight`` broadcast to ``(K,)`` (a scalar for tied).
        dtype, device: of the parameters.

    ``log_prob(x, mask=None)`` is differentiable in every parameter; EM statistics are the
    weighted moments ``post`` ``(K,)``, ``obs`` ``(K, D)`` and ``obs_sq`` ``(K, D)`` (diag,
    spherical) or ``obs_outer`` ``(K, D, D)`` (full, tied).

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
        min_covar: float = 1e-3,
        means_prior=0.0,
        means_weight=0.0,
        covars_prior=1e-2,
        covars_weight=1.0,
        dtype: torch.dtype = torch.float32,
        device=None,
    ) -> None:
        super().__init__()
        k = check_count(num_states, "num_states")
        d = check_count(dim, "dim")
        if covariance_type not in COVARIANCE_TYPES:
            raise HMMValueError(
                f"covariance_type must be one of {', '.join(repr(c) for c in COVARIANCE_TYPES)}; got {covariance_type!r}"
            )
        check_float_dtype(dtype)
        if not isinstance(min_covar, (int, float)) or isinstance(min_covar, bool) or min_covar < 0:
            raise HMMValueError(f"min_covar must be a non-negative number; got {min_covar!r}")
        self.num_states, self.dim, self.covariance_type, self.min_covar = k, d, covariance_type, float(min_covar)
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
        self.register_buffer("means_weight", broadcast_prior(means_weight, (k,), "means_weight", **fk))
        self.register_buffer("covars_prior", broadcast_prior(covars_prior, cp_shape, "covars_prior", **fk))
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
        return f"num_states={self.num_states}, dim={self.dim}, covariance_type={self.covariance_type!r}"

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self.needs_init = False  # loaded parameters are not the placeholder defaults

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
        outputs are 0.
        """
        x, mask = check_observations(x, self.dim, self.loc, mask)
        b, t, _ = x.shape
        return zero_padding(self._log_density(x.reshape(-1, self.dim)).reshape(b, t, self.num_states), mask)

    def _log_density(self, x: torch.Tensor) -> torch.Tensor:
        ct = self.covariance_type
        if ct == "diag":
            return diag_log_density(x, self.loc, self.log_var)
        if ct == "spherical":
            return diag_log_density(x, self.loc, self.log_var[:, None].expand(-1, self.dim))
        lower = scale_tril_from_raw(self.scale_tril_raw)
        return full_log_density(x, self.loc, lower) if ct == "full" else tied_log_density(x, self.loc, lower)

    def sample(self, states: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Draw one observation per entry of the int64 tensor ``states`` (any shape ``S``) -> ``(*S, D)``."""
        states = torch.as_tensor(states, device=self.loc.device)
        with torch.no_grad():
            eps = draw_normal(tuple(states.shape) + (self.dim,), self.loc, generator)
            return self.loc[states] + (self.scale_tril[states] @ eps[..., None])[..., 0]

    # ----------------------------------------------------------------------------- EM

    def _stat_keys(self) -> Tuple[str, ...]:
        second = "obs_sq" if self.covariance_type in ("diag", "spherical") else "obs_outer"
        return ("post", "obs", second)

    def init_stats(self) -> Stats:
        """Zero statistics: ``post`` ``(K,)``, ``obs`` ``(K, D)``, ``obs_sq`` ``(K, D)`` or ``obs_outer`` ``(K, D, D)``."""
        k, d = self.num_states, self.dim
        z = dict(dtype=self.loc.dtype, device=self.loc.device)
        stats = {"post": torch.zeros(k, **z), "obs": torch.zeros(k, d, **z)}
        if self.covariance_type in ("diag", "spherical"):
            stats["obs_sq"] = torch.zeros(k, d, **z)
        else:
            stats["obs_outer"] = torch.zeros(k, d, d, **z)
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
        """
        check_stats(stats, self._stat_keys(), type(self).__name__)
        x, mask = check_observations(x, self.dim, self.loc, mask)
        g = check_posteriors(posteriors, x, self.num_states, mask).detach()
        with torch.no_grad():
            xf = x.detach().reshape(-1, self.dim) - self.stats_offset
            gf = g.reshape(-1, self.num_states)
            stats["post"] += gf.sum(0)
            stats["obs"] += gf.T @ xf
            if "obs_sq" in stats:
                stats["obs_sq"] += gf.T @ (xf * xf)
            else:
                stats["obs_outer"] += weighted_outer_sum(gf, xf)

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
        * finally every variance (eigenvalue, for full/tied) is floored at ``min_covar``.
        """
        check_stats(stats, self._stat_keys(), type(self).__name__)
        ct, d = self.covariance_type, self.dim
        n = stats["post"].to(self.loc)
        s1 = stats["obs"].to(self.loc)
        c = self.stats_offset
        lam, mu0 = self.means_weight, self.means_prior - c
        with torch.no_grad():
            denom = lam + n
            safe = torch.where(denom > 0, denom, torch.ones_like(denom))
            mu = torch.where((denom > 0)[:, None], (lam[:, None] * mu0 + s1) / safe[:, None], self.loc - c)
            diff0 = mu - mu0
            if ct in ("diag", "spherical"):
                q = stats["obs_sq"].to(self.loc)
                c_n = lam[:, None] * diff0**2 + q - 2.0 * mu * s1 + mu**2 * n[:, None]
                c_d = (self.covars_weight - 1.0).clamp_min(0.0)[:, None] + n[:, None]
                var = (self.covars_prior + c_n) / c_d.clamp_min(1e-5)
                if ct == "spherical":
                    var = var.mean(1)
                self.log_var.copy_(torch.log(var.clamp_min(max(self.min_covar, torch.finfo(var.dtype).tiny))))
            else:
                q = stats["obs_outer"].to(self.loc)
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
                cov = floor_covariance(cov, self.min_covar)
                self.scale_tril_raw.copy_(raw_from_covariance(cov, "covariance after m_step"))
            self.loc.copy_(mu + c)

    def initialize(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None) -> None:
        """Means by k-means (k-means++ seeded with ``generator``) on the valid frames; covariances
        as hmmlearn's ``_init``: the covariance of all valid frames plus ``min_covar * I``, the
        same for every state (diag: its diagonal; spherical: the mean of its diagonal)."""
        x, mask = check_observations(x, self.dim, self.loc, mask)
        points = valid_points(x, mask).detach()
        if points.shape[0] < self.num_states:
            raise HMMValueError(
                f"initialize needs at least K == {self.num_states} valid frames; got {points.shape[0]}"
            )
        centroids, _ = kmeans(points, self.num_states, generator=generator)
        cv = data_covariance(points, self.min_covar)
        k = self.num_states
        covars = {
            "diag": torch.diagonal(cv).expand(k, -1),
            "spherical": torch.diagonal(cv).mean().expand(k),
            "full": cv.expand(k, -1, -1),
            "tied": cv,
        }[self.covariance_type]
        self.means = centroids
        self.covars = covars


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
