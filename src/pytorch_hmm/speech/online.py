"""Streaming front end: :class:`StreamingFeatures` (block-by-block features equal to the
offline :class:`~pytorch_hmm.speech.FeatureExtractor`) and :class:`OnlineCMVN` (Kaldi-style
running cepstral mean / variance normalisation).

Framing is the offline one (librosa ``center=True``): the signal is preceded by ``n_fft // 2``
zeros, so frame ``t`` covers samples ``[t·hop - n_fft//2, t·hop + n_fft//2)`` and is complete
once ``t·hop + n_fft//2`` samples have been pushed (a look-ahead of ``n_fft // 2`` samples,
16 ms at 16 kHz with the default 512-point FFT). :meth:`StreamingFeatures.flush` appends the
``n_fft // 2`` zeros of the end padding and emits the remaining frames, ``1 + N // hop`` frames
in all, as the offline extractor gives for the whole ``N``-sample signal.

Settings that need the whole signal cannot stream exactly and are refused: ``top_db`` (the
floor is relative to the utterance's maximum), Δ/ΔΔ (``deltas=True`` with MFCC: a centred
regression over future frames) and ``cmvn="utterance"`` (use :class:`OnlineCMVN`).
"""

from __future__ import annotations

import numbers
from typing import Optional, Union

import numpy as np
import torch

from ..errors import HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from ..validation import FLOAT_DTYPES, check_count, check_number
from .features import FeatureExtractor, _check_finite

__all__ = ["StreamingFeatures", "OnlineCMVN"]

ArrayLike = Union[np.ndarray, torch.Tensor]


class StreamingFeatures:
    """Features of a signal that arrives in blocks, frame-for-frame equal to ``extractor(signal)``.

    Args:
        extractor: the configuration; it must not need the whole signal (``top_db=None``;
            ``deltas=False`` for MFCC; ``cmvn="none"``), else :class:`HMMValueError`.

    ``push(samples)`` takes the next block of mono float samples ``(n,)`` at
    ``extractor.sample_rate`` (any ``n``, 0 included) and returns the ``(m, D)`` frames it
    completed; ``flush()`` returns the rest (end padding included) and starts a new signal.
    Counters: ``samples_seen`` and ``frames_emitted`` of the current signal.
    """

    def __init__(self, extractor: FeatureExtractor) -> None:
        if not isinstance(extractor, FeatureExtractor):
            raise HMMTypeError(f"extractor must be a FeatureExtractor; got {type(extractor).__name__}")
        if extractor.top_db is not None:
            raise HMMValueError(f"streaming features need top_db=None (top_db floors the spectrum relative to the "
                                f"whole signal's maximum); got top_db={extractor.top_db!r}")
        if extractor.kind == "mfcc" and extractor.deltas:
            raise HMMValueError("streaming features need deltas=False for kind='mfcc' (deltas are a centred "
                                "regression over future frames); got deltas=True")
        if extractor.cmvn != "none":
            raise HMMValueError(f"streaming features need cmvn='none' (utterance CMVN uses the whole signal; normalise "
                                f"the stream with OnlineCMVN); got cmvn={extractor.cmvn!r}")
        self.extractor = extractor
        self._n_fft = extractor.fft_size
        self._hop = extractor.hop_length
        self.reset()

    @property
    def lookahead_samples(self) -> int:
        """Samples after a frame's centre that it needs (``n_fft // 2``)."""
        return self._n_fft // 2

    @property
    def feature_dim(self) -> int:
        """``D`` of the frames."""
        return self.extractor.feature_dim

    def reset(self) -> None:
        """Forget the current signal (the next push starts a new one)."""
        # padded samples from padded index self._start on; the left padding of center=True first
        self._buffer = np.zeros(self._n_fft // 2, dtype=np.float32)
        self._start = 0
        self.samples_seen = 0
        self.frames_emitted = 0

    def push(self, samples: ArrayLike) -> torch.Tensor:
        """Append ``samples`` ``(n,)`` (numpy or torch, float32/float64) and return the frames they completed, ``(m, D)``."""
        block = _as_block(samples)
        if block.size:
            self._buffer = np.concatenate([self._buffer, block])
            self.samples_seen += block.size
        padded_end = self._n_fft // 2 + self.samples_seen
        ready = (padded_end - self._n_fft) // self._hop + 1 if padded_end >= self._n_fft else 0
        return self._emit(ready)

    def flush(self) -> torch.Tensor:
        """The remaining frames ``(m, D)`` with the end padding (``1 + N // hop`` frames in all for ``N``
        samples; none when nothing was pushed), then :meth:`reset`."""
        if self.samples_seen == 0:
            self.reset()
            return self._empty()
        self._buffer = np.concatenate([self._buffer, np.zeros(self._n_fft // 2, dtype=self._buffer.dtype)])
        frames = self._emit(1 + self.samples_seen // self._hop)
        self.reset()
        return frames

    def _emit(self, ready: int) -> torch.Tensor:
        """Frames ``frames_emitted .. ready - 1`` from the buffer; drops the samples no later frame needs."""
        count = ready - self.frames_emitted
        if count <= 0:
            return self._empty()
        import librosa

        first = self.frames_emitted * self._hop - self._start
        segment = self._buffer[first: first + (count - 1) * self._hop + self._n_fft]
        ex = self.extractor
        spec = librosa.stft(segment, n_fft=self._n_fft, hop_length=self._hop, win_length=ex.win_length,
                            window="hann", center=False)
        feats = ex._from_power(np.square(spec.real) + np.square(spec.imag))  # (D, count)
        self.frames_emitted = ready
        padded_end = self._start + self._buffer.size
        keep_from = min(ready * self._hop, padded_end)  # the next frame's first sample (hop > n_fft: later)
        self._buffer = self._buffer[keep_from - self._start:]
        self._start = keep_from
        return torch.from_numpy(np.ascontiguousarray(feats.T)).to(ex.dtype)

    def _empty(self) -> torch.Tensor:
        return torch.zeros((0, self.feature_dim), dtype=self.extractor.dtype)

    def __repr__(self) -> str:
        return (f"StreamingFeatures(kind={self.extractor.kind!r}, D={self.feature_dim}, samples_seen={self.samples_seen}, "
                f"frames_emitted={self.frames_emitted})")


class OnlineCMVN:
    r"""Running cepstral mean (and variance) normalisation, as Kaldi's online CMVN.

    Frame ``t`` (0-based, counted from the last :meth:`reset`) is normalised with the
    statistics of the ``n_t = min(t + 1, window)`` most recent frames, itself included, plus
    ``w_t = min(prior_frames, window - n_t)`` frames of the prior (0 without one; so the prior
    fills the window while it is not full, and fades out as it fills)::

        mean_t = (sum_s x_s + w_t * prior_mean) / (n_t + w_t)
        var_t  = (sum_s x_s^2 + w_t * (prior_var + prior_mean^2)) / (n_t + w_t) - mean_t^2
        y_t    = x_t - mean_t                                     (variance=False)
        y_t    = (x_t - mean_t) / max(sqrt(max(var_t, 0)), eps)   (variance=True)

    with ``s`` over the ``n_t`` frames. The very first frame without a prior is therefore 0.

    Args:
        dim: ``D``, the feature dimension.
        window: frames of history (Kaldi's ``cmn_window``, 600 = 6 s at 10 ms); at least 2
            with ``variance``.
        variance: also divide by the running standard deviation.
        prior_mean, prior_var: ``(D,)`` prior statistics (e.g. of a training corpus);
            ``prior_var`` (positive) is needed with ``variance=True``.
        prior_frames: how many frames the prior counts for (Kaldi's ``global_frames``).
        eps: floor of the standard deviation.

    ``cmvn(frames)`` takes the next ``(t, D)`` frames (torch or numpy; ``t = 0`` allowed) and
    returns them normalised as a tensor of the same dtype, on the same device; the statistics
    are computed in float64.
    """

    def __init__(self, dim: int, window: int = 600, variance: bool = False, prior_mean: Optional[ArrayLike] = None,
                 prior_var: Optional[ArrayLike] = None, prior_frames: int = 0, eps: float = 1e-8) -> None:
        self.dim = check_count(dim, "dim")
        self.window = check_count(window, "window")
        if not isinstance(variance, (bool, np.bool_)):
            raise HMMTypeError(f"variance must be a bool; got {type(variance).__name__}")
        self.variance = bool(variance)
        if self.variance and self.window < 2:
            raise HMMValueError("window must be >= 2 frames with variance=True (one frame has no variance); got window=1")
        self.prior_frames = check_count(prior_frames, "prior_frames", minimum=0)
        self.eps = check_number(eps, "eps", positive=True)
        self.prior_mean = None if prior_mean is None else _prior_vector(prior_mean, "prior_mean", self.dim)
        self.prior_var = None if prior_var is None else _prior_vector(prior_var, "prior_var", self.dim)
        if self.prior_var is not None and not bool((self.prior_var > 0).all()):
            raise HMMValueError(f"prior_var must be positive; got minimum {float(self.prior_var.min()):g}")
        if self.prior_var is not None and self.prior_mean is None:
            raise HMMValueError("prior_var needs prior_mean; got prior_var without prior_mean")
        if self.prior_frames > 0 and self.prior_mean is None:
            raise HMMValueError(f"prior_frames > 0 needs prior_mean; got prior_frames={self.prior_frames} without a prior")
        if self.variance and self.prior_mean is not None and self.prior_var is None:
            raise HMMValueError("variance=True with a prior needs prior_var (the prior's variance); got prior_mean only")
        self.reset()

    def reset(self) -> None:
        """Forget the statistics (a new stream or speaker)."""
        self._tail: Optional[torch.Tensor] = None  # the last min(window - 1, frames_seen) frames, float64
        self.frames_seen = 0

    def __call__(self, frames: ArrayLike) -> torch.Tensor:
        """Normalise the next frames ``(t, D)``; returns ``(t, D)``."""
        x = _as_frames(frames, self.dim)
        t = x.shape[0]
        if t == 0:
            return x.clone()
        z = x.double()
        tail = (z[:0] if self._tail is None else self._tail.to(z.device))
        h = tail.shape[0]
        z = torch.cat([tail, z])  # (h + t, D)
        shift = z.mean(0)  # cancels in the result; keeps the cumulative sums (and their rounding) small
        centred = z - shift
        zero = torch.zeros((1, self.dim), dtype=torch.float64, device=z.device)
        c1 = torch.cat([zero, centred.cumsum(0)])
        pos = torch.arange(h, h + t, device=z.device)  # rows of the new frames in z
        begin = (pos + 1 - self.window).clamp(min=0)
        n = (pos + 1 - begin).double()[:, None]
        s1 = c1[pos + 1] - c1[begin]
        # n = min(t + 1, window): the tail holds min(window - 1, frames_seen) frames
        w = (self.window - n).clamp(min=0, max=self.prior_frames)  # prior_frames is 0 without a prior
        prior = torch.zeros(self.dim, dtype=torch.float64, device=z.device)  # the prior's mean, shifted
        if self.prior_mean is not None:
            prior = self.prior_mean.to(z.device) - shift
        mean = (s1 + w * prior) / (n + w)
        out = centred[h:] - mean
        if self.variance:
            c2 = torch.cat([zero, centred.square().cumsum(0)])
            s2 = c2[pos + 1] - c2[begin]
            if self.prior_var is not None:  # the prior's second moment about the shift
                s2 = s2 + w * (self.prior_var.to(z.device) + prior.square())
            var = s2 / (n + w) - mean.square()
            out = out / var.clamp(min=0).sqrt().clamp(min=self.eps)
        keep = min(self.window - 1, z.shape[0])
        self._tail = z[z.shape[0] - keep:].clone() if keep else z[:0].clone()
        self.frames_seen += t
        return out.to(x.dtype)

    def __repr__(self) -> str:
        prior = f", prior_frames={self.prior_frames}" if self.prior_mean is not None else ""
        return f"OnlineCMVN(dim={self.dim}, window={self.window}, variance={self.variance}{prior})"


# ---- input checks ------------------------------------------------------------------------


def _as_block(samples) -> np.ndarray:
    """A finite float32/float64 ``(n,)`` numpy block (torch tensors are copied to the CPU)."""
    if isinstance(samples, torch.Tensor):
        if samples.dtype not in FLOAT_DTYPES:
            raise HMMDtypeError(f"samples must be float32 or float64; got {samples.dtype}")
        samples = samples.detach().cpu().numpy()
    if not isinstance(samples, np.ndarray):
        raise HMMTypeError(f"samples must be a numpy array or a torch.Tensor of shape (n,); got {type(samples).__name__}")
    if samples.dtype not in (np.float32, np.float64):
        raise HMMDtypeError(f"samples must be float32 or float64 in [-1, 1]; got {samples.dtype}"
                            + (" (divide int16 PCM by 32768)" if samples.dtype == np.int16 else ""))
    if samples.ndim != 1:
        raise HMMDimensionError(
            f"samples must be a mono block (n,); got shape {samples.shape}", expected_shape=("n",),
            actual_shape=samples.shape,
            suggestion="mix channels down first, e.g. block.mean(axis=1) for (frames, channels)" if samples.ndim == 2 else None,
        )
    if not np.isfinite(samples).all():
        raise HMMValueError("samples must be finite; got NaN or infinite samples")
    return samples


def _as_frames(frames, dim: int) -> torch.Tensor:
    """A finite float ``(t, dim)`` tensor."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if not isinstance(frames, torch.Tensor):
        raise HMMTypeError(f"frames must be a torch.Tensor or a numpy array of shape (t, D); got {type(frames).__name__}")
    if frames.dtype not in FLOAT_DTYPES:
        raise HMMDtypeError(f"frames must be float32 or float64; got {frames.dtype}")
    if frames.ndim != 2 or frames.shape[1] != dim:
        raise HMMDimensionError(f"frames must be (t, D) with D == {dim}; got shape {tuple(frames.shape)}",
                                expected_shape=("t", dim), actual_shape=frames.shape,
                                suggestion="feed one stream's (t, D) frames (no batch axis)" if frames.ndim == 3 else None)
    _check_finite(frames, "frames")
    return frames


def _prior_vector(value, name: str, dim: int) -> torch.Tensor:
    """``(dim,)`` finite float64 tensor."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    elif isinstance(value, (list, tuple)) and all(isinstance(v, numbers.Real) for v in value):
        value = torch.tensor(value, dtype=torch.float64)
    if not isinstance(value, torch.Tensor) or value.dtype.is_complex or value.dtype == torch.bool:
        raise HMMTypeError(f"{name} must be a (D,) tensor or array; got {type(value).__name__}")
    if tuple(value.shape) != (dim,):
        raise HMMDimensionError(f"{name} must have shape (D,) == ({dim},); got {tuple(value.shape)}",
                                expected_shape=(dim,), actual_shape=value.shape)
    value = value.detach().to(torch.float64).cpu()
    _check_finite(value, name)
    return value
