"""F0 metrics: RMSE (Hz or cents), voicing decision error, gross pitch error, F0 frame error.

F0 tracks are ``(T,)`` or padded batches ``(B, T)`` in Hz (torch or numpy), ``0`` marking an
unvoiced frame; negative, NaN or infinite values at valid frames are errors. ``ref_f0`` and
``syn_f0`` are compared frame by frame, so each pair must have the same length (frames past
``ref_lengths``/``syn_lengths`` are ignored; nothing is truncated silently). With ``N`` valid
frames, ``V`` the frames voiced in both tracks, ``r_t``/``s_t`` the reference/synthesised F0::

    f0_rmse (unit="hz")    = sqrt(mean_{t in V} (s_t - r_t)^2)
    f0_rmse (unit="cents") = sqrt(mean_{t in V} (1200 log2(s_t / r_t))^2)   (100 cents = 1 semitone)
    vuv_error_rate         = #{t : voiced(r_t) != voiced(s_t)} / N
    gross_pitch_error      = #{t in V : |s_t / r_t - 1| > threshold} / |V|   (threshold 0.2 = 20 %)
    f0_frame_error         = (#voicing errors + #gross pitch errors) / N    (Chu & Alwan, 2009)

An item with no frame voiced in both tracks (``V`` empty) gets NaN from ``f0_rmse`` and
``gross_pitch_error``. Results are float64: ``(B,)`` for batches, 0-d for one pair.
:func:`estimate_f0` extracts F0 with librosa's pYIN in this convention.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch

from ..errors import HMMValueError
from ..validation import LengthsLike, check_finite, frame_mask
from ._inputs import as_batch, paired_frames

__all__ = ["f0_rmse", "vuv_error_rate", "gross_pitch_error", "f0_frame_error", "estimate_f0"]

_NAMES = ("ref_f0", "syn_f0")


def _tracks(ref_f0, syn_f0, ref_lengths, syn_lengths):
    """``(ref (B, T), syn (B, T), valid (B, T) bool, lengths (B,), batched)``, validated."""
    r, s, lengths, batched = paired_frames(ref_f0, syn_f0, ref_lengths, syn_lengths, _NAMES, False)
    valid = frame_mask(lengths, r.shape[1], r.device)
    for name, x in zip(_NAMES, (r, s)):
        check_finite(x, valid, name)
        if bool((x < 0).any()):  # padding is zeroed by paired_frames
            raise HMMValueError(
                f"{name} must be >= 0 Hz (0 = unvoiced) at valid frames; found {float(x.min())}"
            )
    return r, s, valid, lengths, batched


def _finish(out: torch.Tensor, batched: bool) -> torch.Tensor:
    return out if batched else out[0]


def _nan_where_empty(num: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``num / count``, NaN where ``count == 0`` (no 0/0 warning, no host sync)."""
    nan = torch.full_like(num, math.nan)
    return torch.where(count > 0, num / count.clamp_min(1), nan)


def f0_rmse(
    ref_f0, syn_f0, ref_lengths: LengthsLike = None, syn_lengths: LengthsLike = None, unit: str = "hz"
) -> torch.Tensor:
    """Root-mean-square F0 error on frames voiced in both tracks, in Hz or cents (module docstring).

    >>> ref = [100.0, 200.0, 0.0, 220.0]
    >>> round(float(f0_rmse(ref, [110.0, 210.0, 150.0, 0.0])), 6)   # frames 0 and 1 count
    10.0
    >>> round(float(f0_rmse([220.0, 440.0], [233.08188, 466.16376], unit="cents")), 3)  # a semitone up
    100.0
    """
    if unit not in ("hz", "cents"):
        raise HMMValueError(f"unit must be 'hz' or 'cents'; got {unit!r}")
    r, s, valid, _, batched = _tracks(ref_f0, syn_f0, ref_lengths, syn_lengths)
    both = valid & (r > 0) & (s > 0)
    one = torch.ones((), dtype=r.dtype, device=r.device)
    if unit == "hz":
        err = s - r
    else:
        err = 1200.0 * torch.log2(torch.where(both, s, one) / torch.where(both, r, one))
    sq = torch.where(both, err, torch.zeros_like(err)).square().sum(1)
    return _finish(_nan_where_empty(sq, both.sum(1).to(r.dtype)).sqrt(), batched)


def vuv_error_rate(
    ref_f0, syn_f0, ref_lengths: LengthsLike = None, syn_lengths: LengthsLike = None
) -> torch.Tensor:
    """Voicing decision error: the fraction of valid frames whose voiced/unvoiced decisions differ.

    >>> float(vuv_error_rate([0.0, 100.0, 100.0, 0.0], [0.0, 0.0, 120.0, 90.0]))
    0.5
    """
    r, s, valid, lengths, batched = _tracks(ref_f0, syn_f0, ref_lengths, syn_lengths)
    return _finish(_voicing_errors(r, s, valid).sum(1) / lengths.to(r.dtype), batched)


def gross_pitch_error(
    ref_f0, syn_f0, ref_lengths: LengthsLike = None, syn_lengths: LengthsLike = None, threshold: float = 0.2
) -> torch.Tensor:
    """Fraction of frames voiced in both tracks whose F0 is off by more than ``threshold`` (relative).

    >>> float(gross_pitch_error([100.0, 100.0, 100.0, 0.0], [119.0, 125.0, 0.0, 0.0]))
    0.5
    """
    r, s, valid, _, batched = _tracks(ref_f0, syn_f0, ref_lengths, syn_lengths)
    gross, both = _gross_errors(r, s, valid, threshold)
    return _finish(_nan_where_empty(gross.sum(1).to(r.dtype), both.sum(1).to(r.dtype)), batched)


def f0_frame_error(
    ref_f0, syn_f0, ref_lengths: LengthsLike = None, syn_lengths: LengthsLike = None, threshold: float = 0.2
) -> torch.Tensor:
    """F0 frame error (FFE): voicing errors plus gross pitch errors, over all valid frames.

    >>> float(f0_frame_error([100.0, 100.0, 100.0, 0.0], [119.0, 125.0, 0.0, 0.0]))
    0.5
    """
    r, s, valid, lengths, batched = _tracks(ref_f0, syn_f0, ref_lengths, syn_lengths)
    gross, _ = _gross_errors(r, s, valid, threshold)
    errors = (_voicing_errors(r, s, valid) | gross).sum(1)
    return _finish(errors / lengths.to(r.dtype), batched)


def _voicing_errors(r: torch.Tensor, s: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return valid & ((r > 0) != (s > 0))


def _gross_errors(r: torch.Tensor, s: torch.Tensor, valid: torch.Tensor, threshold: float):
    if not (isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and threshold > 0):
        raise HMMValueError(f"threshold must be a positive number (relative F0 deviation); got {threshold!r}")
    both = valid & (r > 0) & (s > 0)
    safe_r = torch.where(both, r, torch.ones((), dtype=r.dtype, device=r.device))
    return both & ((s - r).abs() > threshold * safe_r), both


def estimate_f0(
    wave,
    sample_rate: float,
    fmin: float = 50.0,
    fmax: float = 600.0,
    frame_length: Optional[int] = None,
    hop_length: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """F0 track by probabilistic YIN (``librosa.pyin``; Mauch & Dixon, 2014), 0 at unvoiced frames.

    Args:
        wave: ``(N,)`` or ``(B, N)`` samples (torch or numpy).
        sample_rate: in Hz.
        fmin, fmax: search range in Hz.
        frame_length: analysis window in samples (default: 4 periods of ``fmin``, at least 64,
            rounded up to a power of two); hop_length: default 5 ms.

    Returns:
        ``(f0, voiced_prob)``, float64 ``(frames,)`` (or ``(B, frames)``): F0 in Hz with 0 where
        pYIN's Viterbi decoding says unvoiced, and its voicing probability per frame. Frames
        are centred (frame ``k`` at sample ``k * hop_length``).

    Needs librosa (an optional dependency, ``pip install librosa``).

    >>> import numpy as np
    >>> t = np.arange(8000) / 16000
    >>> f0, prob = estimate_f0(np.sin(2 * np.pi * 220.0 * t), 16000, fmin=100, fmax=400)
    >>> f0.shape, abs(float(f0[f0 > 0].median()) / 220.0 - 1) < 0.01
    (torch.Size([101]), True)
    """
    try:
        import librosa
    except ImportError as err:  # pragma: no cover - librosa is installed with the dev extras
        raise ImportError("estimate_f0 needs librosa: pip install librosa") from err
    if not (isinstance(sample_rate, (int, float)) and math.isfinite(sample_rate) and sample_rate > 0):
        raise HMMValueError(f"sample_rate must be a positive number of Hz; got {sample_rate!r}")
    if not (0 < fmin < fmax <= sample_rate / 2):
        raise HMMValueError(f"fmin and fmax must satisfy 0 < fmin < fmax <= sample_rate / 2; got {fmin}, {fmax}")
    x, batched = as_batch(wave, "wave", False)
    check_finite(x, torch.ones((), dtype=torch.bool, device=x.device), "wave")
    if frame_length is None:
        frame_length = 1 << max(6, math.ceil(math.log2(4 * sample_rate / fmin)))
    hop = hop_length if hop_length is not None else max(1, round(0.005 * sample_rate))
    if x.shape[1] < frame_length:
        raise HMMValueError(f"wave must have at least frame_length = {frame_length} samples; got {x.shape[1]}")
    f0, voiced, prob = librosa.pyin(
        x.detach().cpu().numpy(), fmin=fmin, fmax=fmax, sr=sample_rate, frame_length=frame_length, hop_length=hop
    )
    f0 = np.where(voiced & np.isfinite(f0), f0, 0.0)
    f0_t = torch.from_numpy(np.ascontiguousarray(f0, dtype=np.float64)).to(x.device)
    prob_t = torch.from_numpy(np.ascontiguousarray(prob, dtype=np.float64)).to(x.device)
    return (f0_t, prob_t) if batched else (f0_t[0], prob_t[0])
