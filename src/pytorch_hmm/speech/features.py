"""Acoustic features with librosa: MFCC + Δ + ΔΔ, log-mel, CMVN and padded batches.

Framing (Kaldi/MFA defaults): a 25 ms Hann window every 10 ms, ``n_fft`` the next power of
two of the window (400 samples -> 512 at 16 kHz). Frames follow librosa's ``center=True``
convention: the signal is zero-padded by ``n_fft // 2`` at both ends, so an ``N``-sample
signal has ``1 + N // hop`` frames and **frame t is centred at t · hop samples** (time
``t · hop / sample_rate`` s, :func:`frame_to_time`). :func:`time_to_frame` returns the frame
whose centre is nearest; frame ``t`` therefore stands for ``[(t - ½)·hop, (t + ½)·hop)``.
(Kaldi's ``snip_edges=true`` frames instead start at ``t · hop``, centred half a window later.)

Values equal librosa's own functions with the same parameters:

* :func:`log_mel`: ``librosa.power_to_db(librosa.feature.melspectrogram(...), top_db=top_db)``
  (power spectrum, Slaney mel filters), ``(T, n_mels)`` in dB;
* :func:`mfcc`: ``librosa.feature.mfcc`` (DCT-II, orthonormal, of the dB mel spectrum) with
  ``librosa.feature.delta`` Δ and ΔΔ appended (``width`` frames, savgol ``mode="interp"``;
  utterances shorter than ``width`` frames use ``mode="nearest"``), ``(T, 3 · n_mfcc)``.

One STFT and one cached mel filter bank per call. Features are CPU torch tensors
(float32 unless ``dtype`` says otherwise); :func:`cmvn`, :func:`speaker_cmvn` and
:func:`pad_batch` are pure torch and run on any device.
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..errors import HMMDimensionError, HMMDtypeError, HMMTypeError, HMMValueError
from ..validation import FLOAT_DTYPES, LengthsLike, check_count, check_float_dtype, check_lengths, check_number, frame_mask
from .audio import check_sample_rate, load_audio, resample

MAX_WINDOW_MS = 10_000.0  # window_ms / hop_ms limit: one FFT of this length is allocated per frame

__all__ = [
    "FeatureExtractor",
    "mfcc",
    "log_mel",
    "add_deltas",
    "cmvn",
    "speaker_cmvn",
    "pad_batch",
    "frame_to_time",
    "time_to_frame",
    "num_frames",
]

_KINDS = ("mfcc", "log_mel")
_CMVN = ("none", "utterance")
_EPS = 1e-8  # floor of the standard deviation in CMVN
AudioLike = Union[np.ndarray, torch.Tensor]


@dataclass(frozen=True)
class FeatureExtractor:
    """Feature configuration; call it on audio (an array or a file path) to get ``(T, D)``.

    Attributes:
        kind: ``"mfcc"`` (``n_mfcc`` cepstra, plus Δ and ΔΔ when ``deltas``) or ``"log_mel"``.
        sample_rate: rate (Hz) of the audio the features are computed at; files and arrays
            at another rate are resampled to it.
        window_ms, hop_ms: window length and frame shift in milliseconds (rounded to samples).
        n_fft: FFT size; ``None``: the next power of two of the window length.
        n_mels: mel bands; ``None``: 40 for MFCC, 80 for log-mel.
        n_mfcc: cepstral coefficients (``c0`` included) for ``"mfcc"``.
        deltas: append Δ and ΔΔ (``"mfcc"`` only; see :func:`add_deltas` for log-mel).
        delta_width: frames in the Δ regression window (odd, >= 3; 5 = Kaldi/HTK window 2).
        fmin, fmax: mel filter bank range in Hz (``fmax=None``: Nyquist).
        top_db: floor of the dB spectrum below its maximum (librosa's ``power_to_db``);
            ``None``: only the absolute floor of -100 dB.
        cmvn: ``"none"`` or ``"utterance"`` (per-utterance mean and variance normalisation).
        dtype: torch dtype of the features.
    """

    kind: str = "mfcc"
    sample_rate: int = 16000
    window_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: Optional[int] = None
    n_mels: Optional[int] = None
    n_mfcc: int = 13
    deltas: bool = True
    delta_width: int = 5
    fmin: float = 20.0
    fmax: Optional[float] = None
    top_db: Optional[float] = 80.0
    cmvn: str = "none"
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise HMMValueError(f"kind must be one of {_KINDS}; got {self.kind!r}")
        if self.cmvn not in _CMVN:
            raise HMMValueError(f"cmvn must be one of {_CMVN}; got {self.cmvn!r}")
        check_sample_rate(self.sample_rate)
        for name in ("window_ms", "hop_ms"):  # below 10 s: the window is one FFT, allocated per frame
            check_number(getattr(self, name), name, positive=True, below=MAX_WINDOW_MS, unit="milliseconds")
        win = self.win_length
        if self.n_fft is not None:
            check_count(self.n_fft, "n_fft")
            if self.n_fft % 2:  # center=True pads n_fft // 2 per side: T = 1 + N // hop needs it even
                raise HMMValueError(f"n_fft must be an even number of samples; got {self.n_fft}")
            if self.n_fft < win:
                raise HMMValueError(
                    f"n_fft must be >= the window length ({win} samples = {self.window_ms} ms at "
                    f"{self.sample_rate} Hz); got {self.n_fft}"
                )
        n_mels = check_count(self.resolved_n_mels, "n_mels")
        n_mfcc = self.n_mfcc
        if self.kind == "mfcc" and (isinstance(n_mfcc, bool) or not (isinstance(n_mfcc, int) and 1 <= n_mfcc <= n_mels)):
            raise HMMValueError(f"n_mfcc must be an integer in [1, n_mels] = [1, {n_mels}]; got {self.n_mfcc!r}")
        _check_delta_width(self.delta_width, "delta_width")
        nyquist = self.sample_rate / 2
        fmax = nyquist if self.fmax is None else self.fmax
        numbers = isinstance(self.fmin, (int, float)) and isinstance(fmax, (int, float))
        if not (numbers and 0 <= self.fmin < fmax <= nyquist):
            raise HMMValueError(
                f"fmin and fmax must satisfy 0 <= fmin < fmax <= sample_rate / 2 = {nyquist:g} Hz; "
                f"got fmin={self.fmin!r}, fmax={self.fmax!r}"
            )
        if self.top_db is not None:
            check_number(self.top_db, "top_db", positive=True)
        check_float_dtype(self.dtype)

    # ---- framing -----------------------------------------------------------------
    @property
    def win_length(self) -> int:
        """Window length in samples."""
        return max(1, int(self.sample_rate * self.window_ms / 1000 + 0.5))

    @property
    def hop_length(self) -> int:
        """Frame shift in samples."""
        return max(1, int(self.sample_rate * self.hop_ms / 1000 + 0.5))

    @property
    def fft_size(self) -> int:
        """``n_fft``, or the next power of two of the window length."""
        return self.n_fft if self.n_fft is not None else 1 << (self.win_length - 1).bit_length()

    @property
    def resolved_n_mels(self) -> int:
        return self.n_mels if self.n_mels is not None else (40 if self.kind == "mfcc" else 80)

    @property
    def feature_dim(self) -> int:
        """``D`` of the features."""
        if self.kind == "log_mel":
            return self.resolved_n_mels
        return self.n_mfcc * (3 if self.deltas else 1)

    @property
    def frame_shift(self) -> float:
        """Seconds between frame centres (``hop_length / sample_rate``)."""
        return self.hop_length / self.sample_rate

    def num_frames(self, num_samples):
        """Frames of a signal of ``num_samples`` samples at ``sample_rate``."""
        return num_frames(num_samples, self.hop_length)

    def frame_to_time(self, frames):
        """Time (s) of the centre of frame(s) ``frames``."""
        return frame_to_time(frames, self.sample_rate, self.hop_length)

    def time_to_frame(self, seconds):
        """Frame whose centre is nearest to ``seconds``."""
        return time_to_frame(seconds, self.sample_rate, self.hop_length)

    def stream(self) -> "StreamingFeatures":
        """A :class:`~pytorch_hmm.speech.StreamingFeatures` that computes these features block by
        block; raises :class:`HMMValueError` for settings that need the whole signal."""
        from .online import StreamingFeatures

        return StreamingFeatures(self)

    # ---- extraction --------------------------------------------------------------
    def __call__(self, audio: Union[AudioLike, str, Path], sample_rate: Optional[int] = None) -> torch.Tensor:
        """Features ``(T, D)`` of a file path or of a mono ``(N,)`` signal.

        An array is taken to be at ``sample_rate`` (default: the extractor's own rate) and
        resampled to the extractor's rate where those differ; a file is read at its own rate
        and resampled likewise (``sample_rate`` is ignored for paths).
        """
        return torch.from_numpy(self._features(audio, sample_rate).T).to(self.dtype)

    def batch(
        self, items: Sequence[Union[AudioLike, str, Path]], sample_rate: Optional[int] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Features of several utterances (arrays and/or paths), zero-padded: ``((B, T, D), lengths (B,) long)``."""
        if isinstance(items, (str, Path, np.ndarray, torch.Tensor)) or len(items) == 0:
            raise HMMValueError("items must be a non-empty sequence of audio arrays or file paths")
        # Pad in numpy and convert once: torch ops between the utterances would wake torch's
        # OpenMP threads, which then compete with the BLAS threads of the next mel projection.
        feats = [self._features(item, sample_rate) for item in items]  # (D, T_i)
        lengths = [f.shape[1] for f in feats]
        padded = np.zeros((len(feats), max(lengths), self.feature_dim), dtype=feats[0].dtype)
        for b, f in enumerate(feats):
            padded[b, : f.shape[1]] = f.T
        return torch.from_numpy(padded).to(self.dtype), torch.tensor(lengths, dtype=torch.long)

    def _features(self, audio: Union[AudioLike, str, Path], sample_rate: Optional[int]) -> np.ndarray:
        """``(D, T)`` numpy features of one item, after CMVN when configured."""
        if isinstance(audio, (str, Path)):
            y, _ = load_audio(audio, self.sample_rate)
        else:
            y = _as_signal(audio)
            if sample_rate is not None and check_sample_rate(sample_rate) != self.sample_rate:
                y = resample(y, sample_rate, self.sample_rate)
        feats = self._compute(y)
        if self.cmvn == "utterance":  # in numpy, for the same reason as in batch()
            feats = feats - feats.mean(axis=1, keepdims=True)
            feats /= np.maximum(np.sqrt(np.square(feats).mean(axis=1, keepdims=True)), _EPS)
        return feats

    def _compute(self, y: np.ndarray) -> np.ndarray:
        """librosa-layout features ``(D, T)`` as numpy."""
        import librosa

        n_fft = self.fft_size
        with warnings.catch_warnings():  # shorter than n_fft: the centre padding makes it fine
            warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large for input signal", category=UserWarning)
            spec = librosa.stft(
                y, n_fft=n_fft, hop_length=self.hop_length, win_length=self.win_length,
                window="hann", center=True, pad_mode="constant",
            )
        return self._from_power(np.square(spec.real) + np.square(spec.imag))  # |X|^2

    def _from_power(self, power: np.ndarray) -> np.ndarray:
        """Power spectra ``(1 + n_fft // 2, T)`` -> librosa-layout features ``(D, T)`` (mel, dB,
        DCT and deltas; shared by the offline path and :class:`~pytorch_hmm.speech.StreamingFeatures`)."""
        import librosa

        basis = _mel_basis(self.sample_rate, self.fft_size, self.resolved_n_mels, float(self.fmin),
                           None if self.fmax is None else float(self.fmax))
        db = librosa.power_to_db(basis @ power, ref=1.0, amin=1e-10, top_db=self.top_db)
        if self.kind == "log_mel":
            return db
        import scipy.fft

        ceps = scipy.fft.dct(db, axis=0, type=2, norm="ortho")[: self.n_mfcc]
        return _with_deltas(ceps, self.delta_width, 2) if self.deltas else ceps


# ---- functional API --------------------------------------------------------------------


def mfcc(
    audio: AudioLike, sample_rate: int, *, n_mfcc: int = 13, deltas: bool = True, **options
) -> torch.Tensor:
    """MFCC (+ Δ + ΔΔ) of a mono signal: ``(T, 3 · n_mfcc)`` (``(T, n_mfcc)`` without deltas).

    ``audio`` ``(N,)`` float at ``sample_rate`` Hz; ``options`` are the other
    :class:`FeatureExtractor` fields (``window_ms``, ``hop_ms``, ``n_mels``, ``fmin``, ...).
    """
    return FeatureExtractor("mfcc", sample_rate, n_mfcc=n_mfcc, deltas=deltas, **options)(audio)


def log_mel(audio: AudioLike, sample_rate: int, *, n_mels: int = 80, **options) -> torch.Tensor:
    """Log-mel power spectrogram in dB of a mono signal: ``(T, n_mels)``.

    ``options`` are the other :class:`FeatureExtractor` fields (``window_ms``, ``hop_ms``,
    ``fmin``, ``fmax``, ``top_db``, ``cmvn``, ``dtype``, ...).
    """
    return FeatureExtractor("log_mel", sample_rate, n_mels=n_mels, **options)(audio)


def add_deltas(features, *, width: int = 5, order: int = 2) -> torch.Tensor:
    """Append Δ (and ΔΔ, ... up to ``order``) of ``(T, D)`` features: ``(T, D · (order + 1))``.

    Each is ``librosa.feature.delta(..., width=width, order=k)`` along time (``mode="nearest"``
    when ``T < width``).
    """
    x, batched = _as_features(features, "features")
    if batched:
        raise HMMDimensionError(
            f"features must be (T, D); got shape {tuple(x.shape)}", expected_shape=("T", "D"),
            actual_shape=x.shape, suggestion="call add_deltas on each utterance before pad_batch",
        )
    _check_delta_width(width, "width")
    order = check_count(order, "order")
    _check_finite(x[0], "features")
    out = _with_deltas(x[0].detach().cpu().numpy().T, width, order)
    return torch.from_numpy(np.ascontiguousarray(out.T)).to(device=x.device, dtype=x.dtype)


def cmvn(features, lengths: LengthsLike = None, *, variance: bool = True, eps: float = _EPS) -> torch.Tensor:
    """Per-utterance cepstral mean (and variance) normalisation.

    Args:
        features: ``(T, D)`` or a padded batch ``(B, T, D)`` (float tensor or numpy array).
        lengths: ``(B,)`` valid frames per utterance for a batch (default: all ``T``).
        variance: also divide by the standard deviation (population, floored at ``eps``).

    Returns:
        Same shape and dtype: each utterance minus its mean over its valid frames (divided by
        their standard deviation); padded frames are 0.
    """
    x, batched = _as_features(features, "features")
    if lengths is not None and not batched:
        raise HMMValueError(f"lengths is only for a padded batch (B, T, D); got features of shape {tuple(x.shape[1:])}")
    lens = check_lengths(lengths, "lengths", x.shape[0], x.shape[1], x.device, limit_name="T")
    mask = frame_mask(lens, x.shape[1], x.device)[:, :, None]
    _check_finite(torch.where(mask, x, torch.zeros((), dtype=x.dtype, device=x.device)), "features")
    out = _normalise(x, mask, lens.to(x.dtype)[:, None, None], variance, check_number(eps, "eps", positive=True))
    return out if batched else out[0]


def speaker_cmvn(
    features: Sequence, speakers: Sequence[str], *, variance: bool = True, eps: float = _EPS,
    reduce: Optional[Callable[[Dict[object, torch.Tensor]], Dict[object, torch.Tensor]]] = None,
) -> List[torch.Tensor]:
    """CMVN with statistics pooled over all frames of each speaker's utterances.

    Args:
        features: ``(T_i, D)`` per utterance.
        speakers: the speaker of each utterance (same length as ``features``).
        reduce: pools the per-speaker sums with other processes' (corpus sharded across
            ``torch.distributed`` ranks): maps ``{speaker: sums}`` to the sums over every
            process, for every process's speakers (:func:`pytorch_hmm.distributed.sum_by_key`).

    Returns:
        ``(T_i, D)`` per utterance, in order, normalised with its speaker's mean (and std): both
        from float64 sums in two passes (the mean, then the squared deviations from it). With
        ``reduce``, ``features`` may be empty (a process without utterances still joins the sums).
    """
    if reduce is not None and not isinstance(features, (np.ndarray, torch.Tensor)) and len(features) == 0:
        reduce({})  # take part in the other processes' sums
        if variance:
            reduce({})
        return []
    items = _feature_list(features)
    eps = check_number(eps, "eps", positive=True)
    if isinstance(speakers, str) or len(speakers) != len(items):
        got = "a str" if isinstance(speakers, str) else f"{len(speakers)} entries"
        raise HMMValueError(f"speakers must be a sequence with one entry per utterance ({len(items)}); got {got}")
    for i, x in enumerate(items):
        _check_finite(x, f"features[{i}]")
    reduce = reduce or dict

    def pooled(per_item: Callable[[int], torch.Tensor]) -> Dict[object, torch.Tensor]:
        sums: Dict[object, torch.Tensor] = {}
        for i, spk in enumerate(speakers):
            part = per_item(i)
            sums[spk] = sums[spk] + part if spk in sums else part
        return reduce(sums)

    # (count, sum over frames) per speaker, then the squared deviations from the pooled mean
    firsts = pooled(lambda i: torch.cat([items[i].new_full((1,), items[i].shape[0]).double(), items[i].double().sum(0)]))
    means = {spk: s[1:] / s[0] for spk, s in firsts.items()}
    out = [x - means[spk].to(x) for x, spk in zip(items, speakers)]
    if variance:
        squares = pooled(lambda i: out[i].double().square().sum(0))
        stds = {spk: (squares[spk] / firsts[spk][0]).sqrt().clamp_min(eps) for spk in squares}
        out = [x / stds[spk].to(x) for x, spk in zip(out, speakers)]
    return out


def pad_batch(features: Sequence, padding_value: float = 0.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(T_i, D)`` features into ``(B, max T_i, D)`` plus ``lengths`` ``(B,)`` long."""
    items = _feature_list(features)
    lengths = torch.tensor([x.shape[0] for x in items], dtype=torch.long, device=items[0].device)
    if not isinstance(padding_value, numbers.Real) or isinstance(padding_value, bool):
        raise HMMTypeError(f"padding_value must be a real number; got {type(padding_value).__name__}")
    if math.isfinite(padding_value) and abs(padding_value) > torch.finfo(items[0].dtype).max:
        raise HMMValueError(f"padding_value must fit in the features' dtype ({items[0].dtype}); got {padding_value!r}")
    padded = torch.nn.utils.rnn.pad_sequence(items, batch_first=True, padding_value=padding_value)
    return padded, lengths


# ---- frames and time ---------------------------------------------------------------------


def num_frames(num_samples, hop_length: int):
    """Frames of a ``num_samples``-sample signal with ``center=True`` framing: ``1 + N // hop``."""
    return 1 + num_samples // hop_length


def frame_to_time(frames, sample_rate: int, hop_length: int):
    """Centre time in seconds of frame(s) ``frames`` (``frames · hop / sample_rate``).

    Accepts an int/float, a numpy array or a torch tensor (fractional frames allowed, e.g.
    ``t - 0.5`` for the boundary before frame ``t``).
    """
    if isinstance(frames, (list, tuple)):
        frames = np.asarray(frames)
    return frames * (hop_length / sample_rate)


def time_to_frame(seconds, sample_rate: int, hop_length: int):
    """Index of the frame whose centre is nearest to ``seconds`` (``floor(s · sr / hop + ½)``).

    Note: ``librosa.time_to_frames`` floors instead (the frame *starting* before ``s``).
    """
    if isinstance(seconds, torch.Tensor):
        return torch.floor(seconds * (sample_rate / hop_length) + 0.5).long()
    if isinstance(seconds, (list, tuple, np.ndarray)):
        return np.floor(np.asarray(seconds) * (sample_rate / hop_length) + 0.5).astype(np.int64)
    return int(math.floor(seconds * sample_rate / hop_length + 0.5))


# ---- internals ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: Optional[float]) -> np.ndarray:
    """librosa's Slaney mel filter bank ``(n_mels, 1 + n_fft // 2)`` float32 (read-only, cached)."""
    import librosa

    basis = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    basis.setflags(write=False)
    return basis


def _with_deltas(feats: np.ndarray, width: int, order: int) -> np.ndarray:
    """``(D, T)`` -> ``(D · (order + 1), T)`` with librosa deltas along the last axis."""
    import librosa

    mode = "interp" if feats.shape[-1] >= width else "nearest"
    # in float64: float32 Savitzky-Golay rounding turns a constant track (c0 of digital
    # silence) into ~1e-4 noise that CMVN would blow up to unit variance
    wide = feats.astype(np.float64)
    deltas = [librosa.feature.delta(wide, width=width, order=k, mode=mode) for k in range(1, order + 1)]
    return np.concatenate([feats] + [d.astype(feats.dtype) for d in deltas], axis=0)


def _normalise(x: torch.Tensor, mask: torch.Tensor, count: torch.Tensor, variance: bool, eps: float) -> torch.Tensor:
    """``x`` (B, T, D) minus its masked mean over T (divided by the masked std); 0 where masked."""
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    mean = torch.where(mask, x, zero).sum(dim=1, keepdim=True) / count
    centred = torch.where(mask, x - mean, zero)
    if not variance:
        return centred
    std = (centred.square().sum(dim=1, keepdim=True) / count).sqrt().clamp_min(eps)
    return centred / std


def _as_signal(audio: AudioLike) -> np.ndarray:
    """A finite, non-empty float ``(N,)`` numpy signal (torch tensors are copied to the CPU)."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    if not isinstance(audio, np.ndarray):
        raise HMMTypeError(f"audio must be a numpy array, a torch.Tensor or a file path; got {type(audio).__name__}")
    if audio.dtype not in (np.float32, np.float64):
        raise HMMDtypeError(f"audio must be float32 or float64 samples; got {audio.dtype}")
    if audio.ndim != 1 or audio.shape[0] == 0:
        raise HMMDimensionError(
            f"audio must be a non-empty mono signal (N,); got shape {audio.shape}",
            expected_shape=("N",), actual_shape=audio.shape,
            suggestion="mix channels down first, e.g. audio.mean(axis=0)" if audio.ndim == 2 else None,
        )
    if not np.isfinite(audio).all():
        raise HMMValueError("audio must be finite; got NaN or infinite samples")
    return audio


def _as_features(x, name: str) -> Tuple[torch.Tensor, bool]:
    """``x`` as a float tensor ``(B, T, D)`` and whether it was batched (``(T, D)`` -> B = 1)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise HMMTypeError(f"{name} must be a torch.Tensor or a numpy array; got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise HMMDtypeError(f"{name} must be float32 or float64; got {x.dtype}")
    if x.ndim not in (2, 3) or 0 in x.shape:
        raise HMMDimensionError(
            f"{name} must be (T, D) or (B, T, D) with no empty axis; got shape {tuple(x.shape)}",
            expected_shape=("B", "T", "D"), actual_shape=x.shape,
        )
    return (x, True) if x.ndim == 3 else (x[None], False)


def _feature_list(features: Sequence) -> List[torch.Tensor]:
    """Validate a non-empty sequence of ``(T_i, D)`` float tensors of one D, dtype and device."""
    if isinstance(features, (np.ndarray, torch.Tensor)) or len(features) == 0:
        raise HMMValueError("features must be a non-empty sequence of (T_i, D) tensors")
    items = []
    for i, f in enumerate(features):
        x, batched = _as_features(f, f"features[{i}]")
        if batched:
            raise HMMDimensionError(
                f"features[{i}] must be (T, D); got shape {tuple(x.shape)}",
                expected_shape=("T", "D"), actual_shape=x.shape,
            )
        x = x[0]
        if items:
            first = items[0]
            if x.shape[1] != first.shape[1] or x.dtype != first.dtype or x.device != first.device:
                raise HMMValueError(
                    f"features[{i}] must match features[0] in D, dtype and device "
                    f"({first.shape[1]}, {first.dtype}, {first.device}); "
                    f"got ({x.shape[1]}, {x.dtype}, {x.device})"
                )
        items.append(x)
    return items


def _check_finite(x: torch.Tensor, name: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise HMMValueError(f"{name} must be finite; got NaN or infinite values")


def _check_delta_width(width, name: str) -> None:
    if isinstance(width, bool) or not (isinstance(width, int) and width >= 3 and width % 2 == 1):
        raise HMMValueError(f"{name} must be an odd integer >= 3; got {width!r}")


