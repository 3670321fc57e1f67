"""Metric-specific input conversion shared by the frame-level metrics (spectral and pitch).

Metrics accept torch tensors or numpy arrays (or nested lists), one sequence or a padded batch:

* ``feature_dim=True``:  ``(T, D)`` or ``(B, T, D)`` (e.g. mel-cepstra);
* ``feature_dim=False``: ``(T,)`` or ``(B, T)`` (e.g. F0 tracks).

:func:`as_batch` returns a float64 torch tensor with the batch axis (on the input tensor's
device; numpy input lands on the CPU) and whether the input had one, so a metric can return a
0-d result for one sequence and ``(B,)`` for a batch. Lengths are validated by
:func:`pytorch_hmm.validation.check_lengths`; NaN/inf checks are
:func:`pytorch_hmm.validation.check_finite`.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from ..errors import HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from ..validation import LengthsLike, check_lengths, frame_mask

__all__ = ["as_batch", "lengths_or_full", "paired_frames", "check_same_batch"]


def as_batch(x, name: str, feature_dim: bool) -> Tuple[torch.Tensor, bool]:
    """``x`` as a float64 tensor ``(B, T, D)`` (``feature_dim``) or ``(B, T)``, and whether it was batched."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.from_numpy(np.asarray(x))
        except (TypeError, ValueError, RuntimeError) as err:
            raise HMMTypeError(f"{name} must be a torch.Tensor or a numpy array; got {type(x).__name__}") from err
    if x.dtype == torch.bool or x.dtype.is_complex:
        raise HMMDtypeError(f"{name} must have a real (float or integer) dtype; got {x.dtype}")
    shapes = (("T", "D"), ("B", "T", "D")) if feature_dim else (("T",), ("B", "T"))
    ranks = tuple(len(s) for s in shapes)
    if x.ndim not in ranks:
        wanted = " or ".join(str(s).replace("'", "") for s in shapes)
        raise HMMDimensionError(
            f"{name} must be {wanted}; got shape {tuple(x.shape)}", expected_shape=shapes[1], actual_shape=x.shape
        )
    batched = x.ndim == ranks[1]
    x = (x if batched else x.unsqueeze(0)).to(torch.float64)
    if 0 in x.shape:
        raise HMMDimensionError(
            f"{name} must have at least one sequence, frame{' and coefficient' if feature_dim else ''}; "
            f"got shape {tuple(x.shape)}",
            expected_shape=tuple(f"{s}>0" for s in shapes[1]), actual_shape=x.shape,
        )
    return x, batched


def lengths_or_full(lengths: LengthsLike, name: str, x: torch.Tensor) -> torch.Tensor:
    """``(B,)`` int64 lengths of ``x`` ``(B, T, ...)`` in ``[1, T]`` (all ``T`` when ``None``)."""
    return check_lengths(lengths, name, x.shape[0], x.shape[1], x.device, limit_name="T")


def paired_frames(
    ref, syn, ref_lengths: LengthsLike, syn_lengths: LengthsLike, names: Tuple[str, str], feature_dim: bool
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """Frame-by-frame pairs: ``(ref, syn, lengths, batched)`` with ``ref``/``syn`` cut to a common ``T``.

    Both inputs must be batched alike, with the same ``B`` (and ``D``), and equal lengths per
    pair (never truncated silently). Frames past ``lengths`` are zeroed.
    """
    (rn, sn) = names
    r, r_batched = as_batch(ref, rn, feature_dim)
    s, s_batched = as_batch(syn, sn, feature_dim)
    check_same_batch(r, s, r_batched, s_batched, names, feature_dim)
    if s.device != r.device:
        s = s.to(r.device)
    rl = lengths_or_full(ref_lengths, f"{rn}_lengths", r)
    sl = lengths_or_full(syn_lengths, f"{sn}_lengths", s)
    bad = torch.nonzero(rl != sl).flatten()
    if bad.numel():
        i = int(bad[0])
        where = f" at batch index {i}" if r_batched else ""
        raise HMMValueError(
            f"{rn} and {sn} must have the same number of frames{where}; got {int(rl[i])} and {int(sl[i])} "
            "(align them first, e.g. align='dtw' for mel_cepstral_distortion; inputs are never truncated)"
        )
    t = min(r.shape[1], s.shape[1])  # every length is <= both T
    keep = frame_mask(rl, t, r.device)
    keep = keep[:, :, None] if feature_dim else keep
    zero = torch.zeros((), dtype=r.dtype, device=r.device)
    return torch.where(keep, r[:, :t], zero), torch.where(keep, s[:, :t], zero), rl, r_batched


def check_same_batch(
    r: torch.Tensor, s: torch.Tensor, r_batched: bool, s_batched: bool, names: Tuple[str, str], feature_dim: bool
) -> None:
    """Raise unless ``r`` and ``s`` (from :func:`as_batch`) are batched alike with equal ``B`` (and ``D``)."""
    rn, sn = names
    if r_batched != s_batched:
        raise HMMDimensionError(
            f"{rn} and {sn} must both be batched or both unbatched; got {rn} {'batched' if r_batched else 'unbatched'} "
            f"{tuple(r.shape if r_batched else r.shape[1:])} and {sn} {tuple(s.shape if s_batched else s.shape[1:])}",
            expected_shape=r.shape if r_batched else r.shape[1:], actual_shape=s.shape if s_batched else s.shape[1:],
        )
    if s.shape[0] != r.shape[0] or (feature_dim and s.shape[2] != r.shape[2]):
        what = "B and D" if feature_dim else "B"
        raise HMMDimensionError(
            f"{sn} must have the same {what} as {rn} {tuple(r.shape)}; got shape {tuple(s.shape)}",
            expected_shape=(r.shape[0], "T") + ((r.shape[2],) if feature_dim else ()), actual_shape=s.shape,
        )
