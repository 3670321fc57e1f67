"""Mel-cepstral distortion (MCD) and a mel-cepstrum front end.

Mel-cepstral distortion (Kubichek, 1993; in the form of Kominek & Black, 2008) between a
reference mel-cepstrum ``c`` and a synthesised one ``ĉ``, per frame, in dB::

    MCD_t = (10 / ln 10) * sqrt(2 * sum_{d=1}^{D} (c_{t,d} - ĉ_{t,d})^2)

``c_0`` (the energy/gain term) is excluded by default. The utterance value is the mean of
``MCD_t`` over the aligned frames: frame ``t`` with frame ``t`` (``align="none"``, equal lengths
required), or over the cells ``(i, j)`` of the exact DTW path between the two sequences
(``align="dtw"``). Note that the factor ``(10 / ln 10) * sqrt(2) ≈ 6.14`` turns a Euclidean
distance between natural-log mel-cepstra into dB.

:func:`mel_cepstrum` computes the coefficients from a waveform (see its docstring for the
method, an approximation of SPTK's ``mcep``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..errors import HMMValueError
from ..validation import LengthsLike, check_count, check_finite, check_number, frame_mask
from ._inputs import as_batch, check_same_batch, lengths_or_full, paired_frames

__all__ = ["mel_cepstral_distortion", "mel_cepstrum", "all_pass_alpha"]

MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)  # dB per unit of Euclidean distance

# Frequency-warping constants that best match the mel scale (the values tabulated in the
# SPTK documentation and widely reused), keyed by sample rate in Hz.
_ALPHA_TABLE = {
    8000: 0.31, 10000: 0.35, 12000: 0.37, 16000: 0.42, 22050: 0.455,
    24000: 0.46, 32000: 0.50, 44100: 0.544, 48000: 0.554,
}


def all_pass_alpha(sample_rate: float) -> float:
    """All-pass constant ``alpha`` approximating the mel scale at ``sample_rate`` Hz.

    The table entry for the nearest tabulated rate (nearest on a log scale; table: 8 kHz 0.31,
    10 kHz 0.35, 12 kHz 0.37, 16 kHz 0.42, 22.05 kHz 0.455, 24 kHz 0.46, 32 kHz 0.50,
    44.1 kHz 0.544, 48 kHz 0.554).

    >>> all_pass_alpha(16000), all_pass_alpha(22050), all_pass_alpha(16500)
    (0.42, 0.455, 0.42)
    """
    if not (isinstance(sample_rate, (int, float)) and math.isfinite(sample_rate) and sample_rate > 0):
        raise HMMValueError(f"sample_rate must be a positive number of Hz; got {sample_rate!r}")
    rate = min(_ALPHA_TABLE, key=lambda r: abs(math.log(r / sample_rate)))
    return _ALPHA_TABLE[rate]


def mel_cepstral_distortion(
    ref,
    syn,
    ref_lengths: LengthsLike = None,
    syn_lengths: LengthsLike = None,
    exclude_c0: bool = True,
    align: str = "none",
) -> torch.Tensor:
    """Mel-cepstral distortion in dB between ``ref`` and ``syn`` (formula in the module docstring).

    Args:
        ref, syn: mel-cepstra ``(T, D+1)`` or padded batches ``(B, T, D+1)`` (torch or numpy),
            column 0 being ``c_0``; ``syn`` may have a different ``T`` when ``align="dtw"``.
        ref_lengths, syn_lengths: ``(B,)`` frame counts (default: all ``T``); frames past them are ignored.
        exclude_c0: drop column 0 (the energy term) before comparing; ``False`` uses every column.
        align: ``"none"``: frame ``t`` against frame ``t`` (each pair must have equal lengths,
            otherwise :class:`~pytorch_hmm.errors.HMMValueError`; never truncated);
            ``"dtw"``: exact DTW (:func:`pytorch_hmm.alignment.dtw`, Euclidean local cost on the
            compared coefficients, symmetric1 steps) and the mean of ``MCD_t`` over the path's cells.

    Returns:
        float64 tensor: ``(B,)`` for batched input, 0-d for one pair (on the input's device).

    >>> import torch
    >>> ref = torch.zeros(4, 3)
    >>> syn = ref.clone(); syn[:, 1] += 0.1          # constant offset 0.1 in c1
    >>> round(float(mel_cepstral_distortion(ref, syn)), 4)   # (10 / ln 10) * sqrt(2) * 0.1
    0.6142
    >>> stretched = ref.repeat_interleave(2, dim=0)   # every frame twice
    >>> float(mel_cepstral_distortion(ref, stretched, align="dtw"))
    0.0
    """
    if align not in ("none", "dtw"):
        raise HMMValueError(f"align must be 'none' or 'dtw'; got {align!r}")
    if align == "none":
        r, s, lengths, batched = paired_frames(ref, syn, ref_lengths, syn_lengths, ("ref", "syn"), True)
        keep = frame_mask(lengths, r.shape[1], r.device)
        r, s = _coefficients(r, keep, "ref", exclude_c0), _coefficients(s, keep, "syn", exclude_c0)
        per_frame = MCD_SCALE * torch.linalg.vector_norm(r - s, dim=-1)
        out = (per_frame * keep).sum(1) / lengths.to(per_frame.dtype)
    else:
        from ..alignment.dtw import dtw  # metrics sit on top of alignment

        r, r_batched = as_batch(ref, "ref", True)
        s, s_batched = as_batch(syn, "syn", True)
        check_same_batch(r, s, r_batched, s_batched, ("ref", "syn"), True)
        s, batched = s.to(r.device), r_batched
        rl, sl = lengths_or_full(ref_lengths, "ref_lengths", r), lengths_or_full(syn_lengths, "syn_lengths", s)
        r = _coefficients(r, frame_mask(rl, r.shape[1], r.device), "ref", exclude_c0)
        s = _coefficients(s, frame_mask(sl, s.shape[1], s.device), "syn", exclude_c0)
        paths = dtw(r, s, rl, sl, distance="euclidean").paths
        out = torch.stack([
            MCD_SCALE * torch.linalg.vector_norm(r[b, p[:, 0]] - s[b, p[:, 1]], dim=-1).mean()
            for b, p in enumerate(paths)  # one vector op per pair, none per frame
        ])
    return out if batched else out[0]


def _coefficients(x: torch.Tensor, keep: torch.Tensor, name: str, exclude_c0: bool) -> torch.Tensor:
    """Validated ``x`` ``(B, T, D)``: finite at valid frames, padding zeroed, ``c_0`` dropped if asked."""
    check_finite(x, keep[:, :, None], name)
    if exclude_c0:
        if x.shape[2] < 2:
            raise HMMValueError(
                f"{name} has only c0 (shape {tuple(x.shape)}); with exclude_c0=True at least 2 coefficients are needed"
            )
        x = x[:, :, 1:]
    return torch.where(keep[:, :, None], x, torch.zeros((), dtype=x.dtype, device=x.device))


def mel_cepstrum(
    wave,
    sample_rate: float,
    order: int = 24,
    alpha: Optional[float] = None,
    frame_length: Optional[int] = None,
    hop_length: Optional[int] = None,
    floor_db: float = -100.0,
) -> torch.Tensor:
    """Mel-cepstrum ``(frames, order + 1)`` (or ``(B, frames, order + 1)``) of a waveform.

    Method (deterministic, float64, pure torch):

    1. frames of ``frame_length`` samples (default: 25 ms rounded up to a power of two) every
       ``hop_length`` samples (default: 5 ms), centred (reflect padding), Hann window, power
       spectrum ``P(ω)`` on ``frame_length // 2 + 1`` bins;
    2. ``P`` floored at ``floor_db`` dB below the frame's maximum (a relative floor, so a gain
       change only shifts the log spectrum), then ``L(ω) = ½ ln P(ω)`` (log amplitude);
    3. frequency warping by the first-order all-pass ``z̃⁻¹ = (z⁻¹ - α) / (1 - α z⁻¹)``, whose
       phase maps ``ω`` to ``β(ω) = ω + 2 atan(α sin ω / (1 - α cos ω))``: ``L`` is linearly
       interpolated at ``ω_k = β⁻¹(θ_k)`` (the all-pass with ``-α``) for a uniform grid
       ``θ_k = π k / (F - 1)``;
    4. cosine transform (real cepstrum of the warped log amplitude via ``irfft``), kept
       minimum-phase, so that ``L(ω) ≈ Σ_{m=0}^{order} c̃_m cos(m β(ω))``: ``c̃_0 = c_0`` and
       ``c̃_m = 2 c_m`` for ``m ≥ 1``, truncated at ``order``.

    This is a *warped real cepstrum*, an approximation of SPTK's ``mcep`` (which fits the
    mel-generalised model by an iterative unbiased log-spectrum estimate): the coefficients
    have the same meaning and scale (natural log, ``c_0`` = log gain) but not the same values,
    especially on voiced frames where harmonics leak into high quefrencies. Compare MCDs
    computed with this function with each other, not with published numbers from SPTK/pysptk.
    A gain ``g`` on the waveform changes only ``c_0`` (by ``ln g``).

    Args:
        wave: ``(N,)`` or ``(B, N)`` samples (torch or numpy).
        sample_rate: in Hz; picks ``alpha`` when it is ``None`` (:func:`all_pass_alpha`).
        order: highest coefficient index (``order + 1`` coefficients).
        alpha: all-pass constant in ``(-1, 1)``; ``0`` gives the plain real cepstrum.

    >>> import torch
    >>> t = torch.arange(16000, dtype=torch.float64) / 16000
    >>> noise = torch.randn(16000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    >>> mc = mel_cepstrum(noise, 16000, order=24)          # alpha = 0.42, 512-sample frames, 80-sample hop
    >>> mc.shape
    torch.Size([201, 25])
    >>> louder = mel_cepstrum(3 * noise, 16000, order=24)
    >>> round(float((louder[:, 0] - mc[:, 0]).mean()), 6), round(float((louder[:, 1:] - mc[:, 1:]).abs().max()), 6)
    (1.098612, 0.0)
    """
    if not (isinstance(sample_rate, (int, float)) and math.isfinite(sample_rate) and sample_rate > 0):
        raise HMMValueError(f"sample_rate must be a positive number of Hz; got {sample_rate!r}")
    alpha = all_pass_alpha(sample_rate) if alpha is None else alpha
    if not (isinstance(alpha, (int, float)) and -1.0 < alpha < 1.0):
        raise HMMValueError(f"alpha must be a number in (-1, 1); got {alpha!r}")
    floor_db = check_number(floor_db, "floor_db", below=0.0, unit="dB")
    if frame_length is None and 0.025 * sample_rate < 8:
        raise HMMValueError(
            f"sample_rate must be in Hz: a 25 ms frame at {sample_rate!r} Hz has fewer than 8 samples "
            f"(a rate in kHz? 16 kHz is sample_rate=16000); pass frame_length to override"
        )
    n_fft = frame_length if frame_length is not None else 1 << math.ceil(math.log2(0.025 * sample_rate))
    hop = hop_length if hop_length is not None else max(1, round(0.005 * sample_rate))
    for name, v in (("frame_length", n_fft), ("hop_length", hop)):
        check_count(v, name)
    x, batched = as_batch(wave, "wave", False)
    if not isinstance(order, int) or isinstance(order, bool) or not 0 <= order < n_fft // 2:
        raise HMMValueError(f"order must be an int in [0, frame_length // 2) = [0, {n_fft // 2}); got {order!r}")
    if x.shape[1] <= n_fft // 2:
        raise HMMValueError(f"wave must have more than frame_length // 2 = {n_fft // 2} samples; got {x.shape[1]}")
    check_finite(x, torch.ones((), dtype=torch.bool, device=x.device), "wave")

    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    spec = torch.stft(x, n_fft, hop, window=window, center=True, pad_mode="reflect", return_complex=True)
    power = spec.abs().square().transpose(1, 2)  # (B, frames, F)
    floor = power.amax(-1, keepdim=True) * 10.0 ** (floor_db / 10.0)
    floor = floor.clamp_min(torch.finfo(x.dtype).tiny)  # silent frames
    log_amp = 0.5 * torch.log(torch.maximum(power, floor))

    bins = log_amp.shape[-1]
    theta = torch.linspace(0.0, math.pi, bins, dtype=x.dtype, device=x.device)
    omega = theta - 2.0 * torch.atan(alpha * torch.sin(theta) / (1.0 + alpha * torch.cos(theta)))  # β⁻¹(θ)
    pos = (omega / math.pi * (bins - 1)).clamp(0.0, bins - 1)
    lo = pos.floor().long().clamp_max(bins - 2) if bins > 1 else pos.floor().long()
    frac = pos - lo
    warped = log_amp[..., lo] * (1.0 - frac) + log_amp[..., (lo + 1).clamp_max(bins - 1)] * frac
    ceps = torch.fft.irfft(warped, n=2 * (bins - 1), dim=-1)[..., : order + 1]
    ceps = torch.cat([ceps[..., :1], 2.0 * ceps[..., 1:]], dim=-1)
    return ceps if batched else ceps[0]
