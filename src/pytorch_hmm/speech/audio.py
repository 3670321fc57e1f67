"""Audio files: a cheap header read and loading as float32, mixed down and resampled.

Files are read with soundfile (libsndfile): WAV, FLAC and OGG (Vorbis/Opus) always; other
formats the installed libsndfile decodes (AIFF, MP3 with libsndfile >= 1.1, ...) work too.
Resampling uses ``librosa.resample`` with the soxr high-quality filter (``res_type="soxr_hq"``).
Every problem with a file (missing, not a file, empty, unrecognised format, corrupt data, no
samples, NaN samples) raises :class:`pytorch_hmm.errors.AudioError`, whose ``reason`` says
which; corpus readers catch it to skip and report the file.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import NamedTuple, Optional, Tuple, Union

import numpy as np

from ..errors import AudioError, HMMTypeError, HMMValueError
from ..validation import check_number

__all__ = ["AudioInfo", "audio_info", "load_audio", "resample", "RESAMPLE_TYPE"]

PathLike = Union[str, "os.PathLike[str]"]

RESAMPLE_TYPE = "soxr_hq"  # librosa.resample's filter (soxr, high quality)
_SF_UNRECOGNISED_FORMAT = 1  # libsndfile's SF_ERR_UNRECOGNISED_FORMAT


class AudioInfo(NamedTuple):
    """Header of an audio file (unpacks as ``sample_rate, num_samples, channels``).

    Attributes:
        sample_rate: samples per second (Hz).
        num_samples: samples per channel.
        channels: number of channels.
        format: libsndfile's container name (``"WAV"``, ``"FLAC"``, ``"OGG"``, ...).
    """

    sample_rate: int
    num_samples: int
    channels: int
    format: str = ""

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate


def audio_info(path: PathLike) -> AudioInfo:
    """Read only the header of ``path``; raises :class:`AudioError` if it is unusable.

    An existing file with a valid header but no samples is an error too ("contains no audio
    samples"), so a corpus check with this function catches it without decoding.
    """
    path = _check_file(path)
    import soundfile as sf

    try:
        with _opened(path) as source:
            info = sf.info(source)
    except Exception as err:  # libsndfile's errors and OSError alike
        raise _read_error(path, err) from err
    if info.frames <= 0:
        raise AudioError(path, "contains no audio samples")
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels), str(info.format))


def load_audio(
    path: PathLike, sample_rate: Optional[int] = 16000, *, mono: bool = True, offset: float = 0.0,
    duration: Optional[float] = None,
) -> Tuple[np.ndarray, int]:
    """Decode ``path`` as float32 in [-1, 1] and resample it to ``sample_rate``.

    Args:
        path: the audio file.
        sample_rate: target rate in Hz; ``None`` keeps the file's own rate.
        mono: mix the channels down to one by averaging them.
        offset, duration: read only ``duration`` seconds from ``offset`` seconds on (librosa's
            names; a Kaldi ``segments`` entry); ``None`` reads to the end.

    Returns:
        ``(audio, rate)``: ``audio`` float32 ``(N,)`` when ``mono`` else ``(C, N)``, and its
        sample rate (``sample_rate``, or the file's when that is ``None``).
    """
    if sample_rate is not None:
        sample_rate = check_sample_rate(sample_rate)
    offset = check_number(offset, "offset", minimum=0.0, unit="seconds")
    if duration is not None:
        duration = check_number(duration, "duration", positive=True, unit="seconds")
    path = _check_file(path)
    import soundfile as sf

    try:
        with _opened(path) as source, sf.SoundFile(source) as f:
            file_rate, total = f.samplerate, f.frames
            start = int(round(offset * file_rate))
            stop = total if duration is None else min(total, start + int(round(duration * file_rate)))
            if start > 0:
                if start >= total:
                    raise AudioError(path, f"has {total / file_rate:.3f} s of audio; the segment starts at offset={offset!r} s")
                f.seek(start)
            data = f.read(max(stop - start, 0), dtype="float32", always_2d=True)  # (N, C)
    except AudioError:
        raise
    except Exception as err:
        raise _read_error(path, err) from err
    if data.shape[0] == 0:
        raise AudioError(path, "contains no audio samples")
    if not np.isfinite(data).all():
        raise AudioError(path, "contains NaN or infinite samples")
    audio = data.mean(axis=1, dtype=np.float32) if mono else np.ascontiguousarray(data.T)
    if sample_rate is None or sample_rate == file_rate:
        return audio, int(file_rate)
    return resample(audio, int(file_rate), sample_rate), sample_rate


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """``librosa.resample`` along the last axis with the soxr HQ filter, float32 out."""
    import librosa

    out = librosa.resample(audio, orig_sr=orig_rate, target_sr=target_rate, res_type=RESAMPLE_TYPE)
    return out.astype(np.float32, copy=False)


def check_sample_rate(sample_rate, name: str = "sample_rate") -> int:
    """A positive integer number of Hz (``int`` or an integral numpy integer)."""
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise HMMValueError(f"{name} must be a positive integer number of Hz; got {sample_rate!r}")
    return int(sample_rate)


@contextlib.contextmanager
def _opened(path: Path):
    """What soundfile should open: the path itself, or an open binary file where the name is
    not valid UTF-8 (bytes a Linux file name may hold; libsndfile cannot take them as text)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        with open(path, "rb") as fh:
            yield fh
        return
    yield str(path)


def _check_file(path: PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise HMMTypeError(f"path must be a str or os.PathLike; got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "does not exist")
    if not path.is_file():
        raise AudioError(path, "is not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(path, "is empty (0 bytes)")
    _check_wav_length(path, size)
    return path


def _check_wav_length(path: Path, size: int) -> None:
    """A RIFF/WAVE file whose ``data`` chunk declares more bytes than the file holds is truncated
    (libsndfile would read the part that is there without a word). Sizes ``0`` and ``0xFFFFFFFF``
    mean "unknown" (streamed writers) and are not checked; other formats are left to libsndfile."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return
            offset = 12
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return  # no data chunk: libsndfile reports that
                declared = int.from_bytes(chunk[4:], "little")
                offset += 8
                if chunk[:4] == b"data":
                    break
                offset += declared + (declared & 1)  # chunks are padded to an even size
                fh.seek(offset)
    except OSError as err:
        raise _read_error(path, err) from err
    if declared not in (0, 0xFFFFFFFF) and offset + declared > size:
        raise AudioError(
            path, f"is truncated: its header declares {declared} bytes of samples, the file holds {max(size - offset, 0)}"
        )


def _read_error(path: Path, err: Exception) -> AudioError:
    """Translate a soundfile/OS error into an :class:`AudioError` with a short reason."""
    if getattr(err, "code", None) == _SF_UNRECOGNISED_FORMAT:
        return AudioError(
            path,
            f"unsupported or unrecognised audio format (suffix {path.suffix!r}); "
            "readable formats include WAV, FLAC and OGG",
        )
    detail = getattr(err, "error_string", None) or str(err) or type(err).__name__
    return AudioError(path, f"cannot be read (corrupt or truncated?): {detail}")
