"""Gaussian log-densities and covariance helpers shared by :mod:`.gaussian` and :mod:`.mixture`."""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..errors import HMMValueError

_LOG_2PI = math.log(2.0 * math.pi)


def diag_log_density(x: torch.Tensor, means: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` log N(x_n; mu_c, diag(exp(log_var_c))) for ``x`` ``(N, D)``, ``means``/``log_var`` ``(C, D)``.

    Quadratic expansion ``sum_d (x_d^2 - 2 x_d mu_d + mu_d^2) / var_d`` as one matrix product
    ``[x^2, x] @ [1 / var, -2 mu / var]^T`` with the constant terms as its bias, so no
    ``(N, C, D)`` intermediate and one ``(N, C)`` result; ``x`` and the means are first shifted by
    the mean of the means (a constant) to limit cancellation. Components whose float32
    expansion could lose more than 1e-2 nats (:func:`_coarse_components`) are recomputed in
    float64.
    """
    ref = means.detach().mean(0)
    xc, mc = x - ref, means - ref
    prec = torch.exp(-log_var)
    coarse = _coarse_components(xc, mc, prec)
    if coarse is not None and bool(coarse.all()):
        return diag_log_density(x.double(), means.double(), log_var.double()).to(x.dtype)
    peak = -0.5 * (x.shape[-1] * _LOG_2PI + log_var.sum(-1))  # (C,) the density at its mean
    bias = peak - 0.5 * (mc * mc * prec).sum(-1)
    out = torch.addmm(bias, torch.cat([xc * xc, xc], -1), torch.cat([prec, -2.0 * mc * prec], -1).T, alpha=-0.5)
    grad = out.requires_grad
    out = torch.minimum(out, peak) if grad else torch.minimum(out, peak, out=out)  # rounding below quad = 0
    if coarse is not None and bool(coarse.any()):
        exact = diag_log_density(x.double(), means[coarse].double(), log_var[coarse].double()).to(x.dtype)
        which = coarse.nonzero().squeeze(1)
        out = out.index_copy(1, which, exact) if grad else out.index_copy_(1, which, exact)
    return out


def _coarse_components(xc: torch.Tensor, mc: torch.Tensor, prec: torch.Tensor):
    """``(C,)`` bool: components whose rounding error of ``sum_d (x^2 - 2 x mu + mu^2) prec``
    could exceed 1e-2 nats (``None`` in float64).

    The terms of component ``c`` are bounded by ``D (max|x|^2 + max|mu_c|^2) max(prec_c)``;
    their rounding error is that times the dtype's epsilon (one host synchronisation later).
    """
    if xc.dtype == torch.float64:
        return None
    top_x = xc.detach().abs().amax() ** 2
    bound = xc.shape[-1] * (top_x + mc.detach().abs().amax(-1) ** 2) * prec.detach().amax(-1)
    return bound * torch.finfo(xc.dtype).eps > 1e-2


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
    coarse = _coarse_components(zx.T, zm.T, torch.ones_like(zm.T))
    if coarse is not None and bool(coarse.any()):
        return tied_log_density(x.double(), means.double(), scale_tril.double()).to(x.dtype)
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


def floor_covariance(cov: torch.Tensor, min_covar) -> torch.Tensor:
    """Symmetrise ``cov`` ``(..., D, D)`` and raise it to at least the floor ``F``.

    ``min_covar`` is a float (``F = min_covar * I``: every eigenvalue below it is raised to it)
    or a ``(D,)`` tensor of per-dimension variance floors (``F = diag(min_covar)``: the
    eigenvalues of ``F^-1/2 cov F^-1/2`` below 1 are raised to 1, so the result is at least
    ``F`` in every direction). Matrices already at least ``F`` are returned unchanged (apart
    from the symmetrisation), so the floor is a no-op wherever it is not needed.
    """
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    if not isinstance(min_covar, torch.Tensor):
        if min_covar <= 0:
            return cov
        min_covar = torch.full(cov.shape[-1:], float(min_covar), dtype=cov.dtype, device=cov.device)
    root = torch.sqrt(min_covar.to(cov))
    if not bool((root > 0).all()):
        return cov
    scaled = cov / (root[:, None] * root[None, :])
    evals, evecs = torch.linalg.eigh(scaled)
    low = evals.amin(-1) < 1.0
    if not bool(low.any()):
        return cov
    floored = (evecs * evals.clamp_min(1.0)[..., None, :]) @ evecs.transpose(-1, -2)
    return torch.where(low[..., None, None], floored * (root[:, None] * root[None, :]), cov)


def variance_floor(min_covar: Optional[float], var_floor: float, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """``(D,)`` per-dimension variance floor of an emission, given the data's ``mean`` and ``var`` ``(D,)``.

    An explicit ``min_covar`` (a float) is the floor in every dimension. With ``min_covar=None``
    the floor is relative, as HTK's variance floor: ``var_floor`` times the variance of the
    training data in that dimension, where that variance is taken as at least
    ``eps * (1 + mean^2)`` (``eps`` of the dtype), so a constant feature still gets a positive
    floor.
    """
    if min_covar is not None:
        return torch.full_like(var, float(min_covar))
    guard = torch.finfo(var.dtype).eps * (1.0 + mean * mean)
    return var_floor * torch.maximum(var, guard)


def stats_variance_floor(
    min_covar: Optional[float], var_floor: float, n: torch.Tensor, obs: torch.Tensor, sq: torch.Tensor,
    offset: torch.Tensor, dtype: torch.dtype,
) -> torch.Tensor:
    """:func:`variance_floor` from EM statistics summed over states (and components).

    ``n`` is the total posterior mass, ``obs`` ``(D,)`` and ``sq`` ``(D,)`` the total first and
    second moments about ``offset``; as the state posteriors of a frame sum to 1, these are
    the moments of the training frames, whatever the model. Returns the floor in ``dtype``.
    """
    safe = n.clamp_min(torch.finfo(n.dtype).tiny)
    mean = obs / safe
    var = (sq / safe - mean * mean).clamp_min(0.0)
    if not bool(n > 0):
        mean, var = torch.zeros_like(mean), torch.zeros_like(var)
    return variance_floor(min_covar, var_floor, (mean + offset.to(mean)).to(dtype), var.to(dtype))


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


def data_covariance(points: torch.Tensor, min_covar) -> torch.Tensor:
    """``(D, D)`` sample covariance of ``points`` ``(N, D)`` (unbiased when N > 1) plus ``diag(min_covar)``
    (a float or a ``(D,)`` tensor)."""
    n, d = points.shape
    centred = points - points.mean(0)
    cov = centred.T @ centred / max(n - 1, 1)
    if isinstance(min_covar, torch.Tensor):
        return cov + torch.diag_embed(min_covar.to(cov))
    return cov + min_covar * torch.eye(d, dtype=points.dtype, device=points.device)


def grouped_tied_log_density(x: torch.Tensor, means: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """``(G, N, C)`` log N(x_n; mu_gc, L_g L_g^T): ``G`` groups of ``C`` means ``(G, C, D)``, each
    group sharing one covariance (lower-triangular ``scale_tril`` ``(G, D, D)``).

    :func:`tied_log_density` batched over the groups (a mixture with one covariance per state):
    ``L_g z = x`` and ``L_g w = mu`` are solved once per group and ``|z_n - w_c|^2`` expanded, so
    no ``(G, N, C, D)`` intermediate. float32 inputs whose expansion could lose more than 1e-2
    nats are recomputed in float64.
    """
    g, c, d = means.shape
    ref = means.detach().reshape(-1, d).mean(0)
    zx = torch.linalg.solve_triangular(scale_tril, (x - ref).T.expand(g, d, x.shape[0]), upper=False)  # (G, D, N)
    zm = torch.linalg.solve_triangular(scale_tril, (means - ref).transpose(1, 2), upper=False)  # (G, D, C)
    flat_x, flat_m = zx.transpose(1, 2).reshape(-1, d), zm.transpose(1, 2).reshape(-1, d)
    coarse = _coarse_components(flat_x, flat_m, torch.ones_like(flat_m))
    if coarse is not None and bool(coarse.any()):
        return grouped_tied_log_density(x.double(), means.double(), scale_tril.double()).to(x.dtype)
    maha = (zx * zx).sum(1)[:, :, None] - 2.0 * (zx.transpose(1, 2) @ zm) + (zm * zm).sum(1)[:, None, :]
    logdet = 2.0 * torch.log(torch.diagonal(scale_tril, dim1=-2, dim2=-1)).sum(-1)  # (G,)
    return -0.5 * (d * _LOG_2PI + logdet[:, None, None] + maha.clamp_min(0.0))
