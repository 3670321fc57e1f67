"""What every engine returns: :class:`Synthesis`, and the helpers that tile phone intervals over the audio."""

from __future__ import annotations

import re
from typing import NamedTuple, Optional, Sequence

import numpy as np

from ...alignment.segments import PhoneInterval
from ...errors import HMMTypeError, HMMValueError
from ..audio import resample

SILENCE = "sil"
_HANGUL = re.compile("[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")


class Synthesis(NamedTuple):
    """Synthesised audio (float32 ``(N,)``), its rate, and the phone intervals tiling it."""

    audio: np.ndarray
    sample_rate: int
    intervals: tuple[PhoneInterval, ...]

    @property
    def phones(self) -> tuple[str, ...]:
        return tuple(iv.phone for iv in self.intervals)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate


def _tile(phones: Sequence[str], ends: Sequence[int], num_samples: int, sample_rate: int) -> tuple[PhoneInterval, ...]:
    """Intervals from end samples: clipped to the audio, zero-length ones dropped, adjacent
    silences merged, and the tail up to ``num_samples`` covered (by silence if need be)."""
    out: list[list] = []  # [phone, start sample, end sample]
    prev = 0
    for phone, end in zip(phones, ends):
        end = min(int(end), num_samples)
        if end <= prev:
            continue
        if phone == SILENCE and out and out[-1][0] == SILENCE:
            out[-1][2] = end
        else:
            out.append([phone, prev, end])
        prev = end
    if prev < num_samples:
        if out and out[-1][0] == SILENCE:
            out[-1][2] = num_samples
        else:
            out.append([SILENCE, prev, num_samples])
    return tuple(PhoneInterval(p, s / sample_rate, e / sample_rate) for p, s, e in out)


def _retime(syn: Synthesis, sample_rate: Optional[int]) -> Synthesis:
    """Resample to ``sample_rate`` (``None``: unchanged), snapping boundaries to the new samples."""
    if sample_rate is None or sample_rate == syn.sample_rate:
        return syn
    audio = resample(syn.audio, syn.sample_rate, sample_rate)
    ends = [round(iv.end * sample_rate) for iv in syn.intervals]
    return Synthesis(audio, sample_rate, _tile(syn.phones, ends, len(audio), sample_rate))


def _check_text(text: object, name: str = "text") -> str:
    if not isinstance(text, str):
        raise HMMTypeError(f"{name} must be a str; got {type(text).__name__}")
    text = " ".join(text.split())
    if not any(c.isalnum() for c in text):
        raise HMMValueError(f"{name} must contain at least one word; got {text!r}")
    return text


def _is_korean(text: str) -> bool:
    return _HANGUL.search(text) is not None
