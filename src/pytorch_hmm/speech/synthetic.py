"""Synthetic speech corpora with exact phone timings, for testing aligners against the truth.

Three engines turn text into audio plus the phone intervals the audio was made from:

- ``"flite"``: the ``flite`` program (``apt-get install flite``), run as
  ``flite -voice slt -psdur -t TEXT -o out.wav``; it prints ``phone:end_time`` tokens.
  Phones become upper-case ARPAbet as in CMUdict without stress (``ax`` -> ``AH``,
  ``axr`` -> ``ER``, ``pau`` -> ``sil``; the rare flap ``dx`` -> ``T``, syllabic
  ``el em en`` -> ``L M N``). English only. Voices: ``slt`` (default, female, 16 kHz),
  ``rms``, ``awb``, ``kal16`` (16 kHz) and ``kal`` (an 8 kHz diphone voice).
- ``"espeak"``: the espeak-ng C library through ctypes, from the pip package
  ``espeakng-loader`` (``pip install pytorch-hmm[synth]``) or the system's
  ``libespeak-ng`` (``apt-get install espeak-ng``). Phoneme events give each phone's first
  sample; phones are espeak-ng mnemonics with the stress marks removed (``h @ l oU``), pauses
  ``sil``. English (``en-us``) and Korean (``ko``) at 22.05 kHz. The library keeps state
  between calls: the same text can come out a few samples longer or shorter depending on
  what was synthesised before in the process (the intervals always match the audio
  returned). A fresh process that makes the same calls in the same order gives the same bytes.
- ``"numpy"``: :func:`synthesize_phones`, a small formant synthesiser needing nothing but
  numpy and scipy. Text goes through a :class:`~pytorch_hmm.speech.lexicon.Lexicon` and
  :func:`phone_durations`; phone boundaries are exactly the requested durations.

:func:`build_corpus` writes a corpus in the LibriSpeech, KSS or folder (MFA) layout with one
reference alignment per utterance, ``<root>/alignments/<utterance id>.tsv``, lines
``start<TAB>end<TAB>phone`` in seconds (:func:`write_phone_intervals`,
:func:`read_phone_intervals`). Intervals always tile ``[0, audio length]``: contiguous,
positive length, the last one ending at the last sample.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import logging
import math
import re
import shutil
import subprocess
import tempfile
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np

from ..errors import HMMValueError
from .audio import check_sample_rate, resample
from .lexicon import Lexicon, is_phone_name

__all__ = [
    "PhoneInterval",
    "Synthesis",
    "SyntheticUtterance",
    "SyntheticCorpus",
    "read_phone_intervals",
    "write_phone_intervals",
    "synthesize",
    "synthesize_flite",
    "synthesize_espeak",
    "synthesize_phones",
    "phone_durations",
    "flite_available",
    "espeak_available",
    "build_corpus",
]

PathLike = Union[str, Path]
SILENCE = "sil"
_log = logging.getLogger("pytorch_hmm.speech")
LAYOUTS = ("folder", "librispeech", "kss")
ENGINES = ("auto", "flite", "espeak", "numpy")
_HANGUL = re.compile("[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")


# ----------------------------------------------------------------------------- intervals
@dataclass(frozen=True)
class PhoneInterval:
    """One phone from ``start`` to ``end`` seconds."""

    phone: str
    start: float
    end: float

    def __post_init__(self) -> None:
        if not is_phone_name(self.phone):
            raise HMMValueError(f"phone must be a non-empty name without whitespace; got {self.phone!r}")
        start, end = float(self.start), float(self.end)
        if not (math.isfinite(start) and math.isfinite(end) and 0.0 <= start <= end):
            raise HMMValueError(f"interval must have finite 0 <= start <= end seconds; got {start!r}..{end!r}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    @property
    def duration(self) -> float:
        return self.end - self.start


def write_phone_intervals(path: PathLike, intervals: Sequence[PhoneInterval]) -> None:
    """Write ``start<TAB>end<TAB>phone`` lines (seconds, 6 decimals), one per interval."""
    lines = []
    for i, iv in enumerate(intervals):
        if not isinstance(iv, PhoneInterval):
            raise HMMValueError(f"intervals[{i}] must be a PhoneInterval; got {type(iv).__name__}")
        lines.append(f"{iv.start:.6f}\t{iv.end:.6f}\t{iv.phone}\n")
    Path(path).write_text("".join(lines), encoding="utf-8")


def read_phone_intervals(path: PathLike) -> list[PhoneInterval]:
    """Read a file written by :func:`write_phone_intervals` (blank lines are skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise HMMValueError(f"reference alignment {str(path)!r} cannot be read: {err}") from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().split("\t")
        try:
            if len(fields) != 3:
                raise HMMValueError(f"expected 3 tab-separated columns, got {len(fields)}")
            out.append(PhoneInterval(fields[2], float(fields[0]), float(fields[1])))
        except (HMMValueError, ValueError) as err:
            raise HMMValueError(
                f"reference alignment {str(path)!r}, line {number}: expected start<TAB>end<TAB>phone "
                f"({err}); got {line!r}"
            ) from None
    return out


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
        raise HMMValueError(f"{name} must be a str; got {type(text).__name__}")
    text = " ".join(text.split())
    if not any(c.isalnum() for c in text):
        raise HMMValueError(f"{name} must contain at least one word; got {text!r}")
    return text


def _is_korean(text: str) -> bool:
    return _HANGUL.search(text) is not None


# ----------------------------------------------------------------------------- flite
_FLITE_PHONES = {"pau": SILENCE, "h#": SILENCE, "ax": "AH", "axr": "ER", "dx": "T",
                 "el": "L", "em": "M", "en": "N", "nx": "N", "hv": "HH"}


_FLITE_MISSING = "engine 'flite' needs the flite program on PATH (apt-get install flite); not found"


def flite_available() -> bool:
    """True when the ``flite`` program is on ``PATH``."""
    return shutil.which("flite") is not None


@functools.lru_cache(maxsize=4)
def _flite_voices(executable: str) -> tuple[str, ...]:
    out = subprocess.run([executable, "-lv"], capture_output=True, text=True, timeout=30).stdout
    return tuple(out.partition(":")[2].split())


def synthesize_flite(text: str, voice: str = "slt") -> Synthesis:
    """English text -> flite audio (16 kHz; 8 kHz for ``kal``) and its ARPAbet phone intervals."""
    text = _check_text(text)
    if _is_korean(text):
        raise HMMValueError(f"engine 'flite' speaks English only; text is Korean: {text[:40]!r} "
                            "(use engine='espeak' or 'numpy')")
    exe = shutil.which("flite")
    if exe is None:
        raise HMMValueError(_FLITE_MISSING)
    voices = _flite_voices(exe)
    if voice not in voices and not Path(voice).is_file():
        raise HMMValueError(f"voice must be one of flite's voices {voices} or a .flitevox file; got {voice!r}")
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="pytorch_hmm_flite_") as tmp:
        wav = Path(tmp) / "out.wav"
        proc = subprocess.run([exe, "-voice", voice, "-psdur", "-t", text, "-o", str(wav)],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0 or not wav.is_file():
            raise HMMValueError(f"flite failed (exit status {proc.returncode}) on {text[:40]!r}: {proc.stderr.strip()[:200]}")
        audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1, dtype=np.float32)
    phones, ends = [], []
    for token in proc.stdout.split():
        name, sep, time = token.rpartition(":")
        try:
            end = float(time)
        except ValueError:
            continue
        if sep and name:
            phones.append(_FLITE_PHONES.get(name, name.upper()))
            ends.append(round(end * rate))
    if not phones or len(audio) == 0:
        raise HMMValueError(f"flite gave no phone timings for {text[:40]!r}; output was {proc.stdout[:200]!r}")
    return Synthesis(audio, int(rate), _tile(phones, ends, len(audio), int(rate)))


# ----------------------------------------------------------------------------- espeak-ng
_EVENT_LIST_TERMINATED, _EVENT_PHONEME = 0, 7
_AUDIO_OUTPUT_SYNCHRONOUS, _POS_CHARACTER, _CHARS_UTF8 = 2, 1, 1
_INIT_PHONEME_EVENTS, _INIT_DONT_EXIT = 0x0001, 0x8000
ESPEAK_VOICES = {"en": "en-us", "ko": "ko"}  # default voice per language


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` of speak_lib.h (40 bytes on 64-bit: the pointer and union start at 24, 32)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Espeak:
    """The initialised library (one per process: it has global state; calls hold ``_ESPEAK_LOCK``)."""

    def __init__(self, lib: ctypes.CDLL, data_path: Optional[str]) -> None:
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        path = None if data_path is None else data_path.encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, path, _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT)
        if rate <= 0:
            raise OSError(f"espeak_Initialize failed (data path {data_path!r})")
        self.lib, self.sample_rate = lib, int(rate)
        lib.espeak_Info.restype = ctypes.c_char_p
        self.version = (lib.espeak_Info(None) or b"").decode()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, bytes]] = []
        self._callback = _SynthCallback(self._collect)  # kept alive as long as the library
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, num_samples: int, events) -> int:
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_PHONEME:
                self._events.append((events[i].sample, events[i].id.string))
            i += 1
        return 0

    def synthesize(self, text: str, voice: str) -> tuple[np.ndarray, list[tuple[int, bytes]]]:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise HMMValueError(f"voice must be an espeak-ng voice name such as 'en-us' or 'ko'; got {voice!r}")
        self._chunks, self._events = [], []
        data = text.encode("utf-8") + b"\0"
        status = self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if status != 0:
            raise HMMValueError(f"espeak-ng failed (status {status}) on {text[:40]!r}")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return audio, self._events


_ESPEAK: Optional[_Espeak] = None
_ESPEAK_LOCK = threading.Lock()


def _espeak_libraries() -> list[tuple[str, Optional[str]]]:
    """(library, data path) candidates: the ``espeakng_loader`` wheel first, then the system's."""
    found = []
    try:
        import espeakng_loader

        found.append((espeakng_loader.get_library_path(), espeakng_loader.get_data_path()))
    except (ImportError, OSError, AttributeError):
        pass
    system = ctypes.util.find_library("espeak-ng")
    if system:
        found.append((system, None))
    return found


def _espeak() -> _Espeak:
    """The process's espeak-ng, loaded and initialised on first use (call with the lock held)."""
    global _ESPEAK
    if _ESPEAK is None:
        errors = []
        for library, data in _espeak_libraries():
            try:
                _ESPEAK = _Espeak(ctypes.CDLL(library), data)
                break
            except (OSError, AttributeError) as err:
                errors.append(f"{library}: {err}")
        else:
            raise HMMValueError(
                "engine 'espeak' needs libespeak-ng (pip install espeakng-loader, or apt-get install "
                f"espeak-ng); not found{': ' + '; '.join(errors) if errors else ''}"
            )
    return _ESPEAK


def espeak_available() -> bool:
    """True when libespeak-ng can be loaded and initialised."""
    with _ESPEAK_LOCK:
        try:
            _espeak()
        except HMMValueError:
            return False
    return True


def _espeak_phone(raw: bytes) -> str:
    name = raw.decode("utf-8", errors="replace").lstrip("',%=")
    return SILENCE if not name or name.startswith("_") else name


def synthesize_espeak(text: str, voice: Optional[str] = None) -> Synthesis:
    """Text -> espeak-ng audio (22.05 kHz) and phone intervals (``voice``: ``"en-us"``, or ``"ko"``
    for Korean text when ``None``)."""
    text = _check_text(text)
    voice = voice or ESPEAK_VOICES["ko" if _is_korean(text) else "en"]
    with _ESPEAK_LOCK:
        engine = _espeak()
        samples, events = engine.synthesize(text, voice)
        rate = engine.sample_rate
    if len(samples) == 0 or not events:
        raise HMMValueError(f"espeak-ng gave no audio or no phoneme events for {text[:40]!r}")
    audio = (samples.astype(np.float32) / 32768.0).astype(np.float32)
    # a phone lasts from its event's sample to the next event's; silence before the first one
    phones = [SILENCE] + [_espeak_phone(name) for _, name in events]
    ends = [sample for sample, _ in events] + [len(audio)]
    return Synthesis(audio, rate, _tile(phones, ends, len(audio), rate))


# ----------------------------------------------------------------------------- numpy synthesiser
class _Phone(NamedTuple):
    kind: str  # vowel, nasal, approximant, fricative, stop, affricate, silence
    formants: tuple[float, ...] = (500.0, 1500.0, 2500.0)
    target: Optional[tuple[float, ...]] = None  # diphthong end formants
    noise: float = 0.0  # centre (Hz) of frication / burst noise
    voiced: bool = True


_VOWEL_FORMANTS = {  # (F1, F2, F3) Hz, adult male averages
    "IY": (270, 2290, 3010), "IH": (390, 1990, 2550), "EH": (530, 1840, 2480), "AE": (660, 1720, 2410),
    "AH": (520, 1190, 2390), "AA": (730, 1090, 2440), "AO": (570, 840, 2410), "UH": (440, 1020, 2240),
    "UW": (300, 870, 2240), "ER": (490, 1350, 1690),
}
_DIPHTHONGS = {"AW": ("AA", "UH"), "AY": ("AA", "IH"), "EY": ("EH", "IY"), "OW": ("AO", "UH"), "OY": ("AO", "IY")}
_TABLE: dict[str, _Phone] = {p: _Phone("vowel", f) for p, f in _VOWEL_FORMANTS.items()}
_TABLE.update({p: _Phone("vowel", _VOWEL_FORMANTS[a], _VOWEL_FORMANTS[b]) for p, (a, b) in _DIPHTHONGS.items()})
_TABLE.update({p: _Phone("nasal", f) for p, f in
               {"M": (250, 1000, 2200), "N": (250, 1500, 2500), "NG": (250, 2000, 2700)}.items()})
_TABLE.update({p: _Phone("approximant", f) for p, f in {"L": (360, 1300, 2700), "R": (300, 1060, 1380),
                                                          "W": (300, 610, 2200), "Y": (260, 2070, 3020)}.items()})
_TABLE.update({p: _Phone("fricative", noise=c, voiced=v) for p, (c, v) in {
    "S": (5500, False), "Z": (5500, True), "SH": (2800, False), "ZH": (2800, True), "F": (4500, False),
    "V": (4500, True), "TH": (3500, False), "DH": (3500, True), "HH": (1500, False)}.items()})
_TABLE.update({p: _Phone("stop", noise=c, voiced=v) for p, (c, v) in {
    "P": (900, False), "B": (900, True), "T": (4000, False), "D": (4000, True), "K": (2000, False),
    "G": (2000, True)}.items()})
_TABLE.update({"CH": _Phone("affricate", noise=3000, voiced=False), "JH": _Phone("affricate", noise=3000)})
_SILENCES = {"sil", "sp", "pau", "h#", "<eps>", ""}

# mean duration in 10 ms frames and RMS level of each kind
_MEAN_FRAMES = {"vowel": 9, "diphthong": 13, "nasal": 6, "approximant": 6, "fricative": 9, "stop": 7,
                "affricate": 9, "silence": 20}
_LEVEL = {"vowel": 0.1, "nasal": 0.04, "approximant": 0.06, "fricative": 0.03, "weak": 0.012,
          "burst": 0.05, "closure": 0.004, "silence": 0.001}


def _digest(name: str) -> bytes:
    return hashlib.md5(name.encode("utf-8")).digest()


@functools.lru_cache(maxsize=4096)
def _describe(phone: str) -> _Phone:
    """ARPAbet (any case, stress digits ignored) from the table; any other name gets a pattern
    drawn from a hash of the name: a vowel when it has a vowel letter, else a consonant class."""
    if phone.lower() in _SILENCES:
        return _Phone("silence")
    key = phone.rstrip("012")
    if key.upper() in _TABLE and (key.isupper() or key.islower()):
        return _TABLE[key.upper()]
    h = np.frombuffer(_digest(phone), dtype=np.uint8) / 255.0
    formants = (250 + 600 * h[1], 800 + 1600 * h[2], 2300 + 800 * h[3])
    if any(c in "aeiouAEIOU@3" for c in phone):
        return _Phone("vowel", formants)
    kind = ("nasal", "approximant", "fricative", "stop")[int(h[0] * 255) % 4]
    return _Phone(kind, formants, noise=1500 + 4500 * h[4], voiced=bool(int(h[5] * 255) % 2))


def _kind(phone: str) -> str:
    d = _describe(phone)
    return "diphthong" if d.target is not None else d.kind


def phone_durations(
    phones: Sequence[str], *, seed: int = 0, frame_shift: float = 0.01, min_frames: int = 3
) -> np.ndarray:
    """Seconds per phone: a per-class mean (vowel 90 ms, diphthong 130, stop 70, silence 200, ...)
    times a seeded log-normal jitter (sigma 0.25), rounded to whole frames, at least ``min_frames``."""
    phones = _check_phones(phones)
    if not (isinstance(frame_shift, (int, float)) and math.isfinite(frame_shift) and frame_shift > 0):
        raise HMMValueError(f"frame_shift must be a positive number of seconds; got {frame_shift!r}")
    if not isinstance(min_frames, int) or min_frames < 1:
        raise HMMValueError(f"min_frames must be an integer >= 1; got {min_frames!r}")
    rng = np.random.default_rng(seed)
    means = np.array([_MEAN_FRAMES[_kind(p)] for p in phones], dtype=np.float64)
    frames = np.maximum(min_frames, np.round(means * np.exp(0.25 * rng.standard_normal(len(phones)))))
    return frames * frame_shift


def _check_phones(phones: Sequence[str]) -> tuple[str, ...]:
    if isinstance(phones, str) or not isinstance(phones, Sequence) or not phones:
        raise HMMValueError(f"phones must be a non-empty sequence of phone names; got {phones!r}")
    for i, p in enumerate(phones):
        if not is_phone_name(p):
            raise HMMValueError(f"phones[{i}] must be a non-empty name without whitespace; got {p!r}")
    return tuple(phones)


class _Part(NamedTuple):
    """A stretch of samples ``[start, end)`` made by filtering one source."""

    start: int
    end: int
    source: str  # "voice", "noise" or "silence"
    formants: tuple[float, ...]
    bandwidths: tuple[float, ...]
    level: float
    voicing: float = 0.0  # noise parts: add a low voice bar at this fraction of the level
    decay: float = 0.0  # seconds; bursts fade exponentially from their start


def _parts(phone: _Phone, a: int, b: int, scale: float, jitter: np.ndarray) -> list[_Part]:
    """The parts of one phone over samples ``[a, b)`` (``scale``: the speaker's formant factor)."""
    f = tuple(x * scale * j for x, j in zip(phone.formants, jitter)) + (3500.0 * scale,)  # + a fixed F4
    if phone.kind == "silence":
        return [_Part(a, b, "silence", (), (), _LEVEL["silence"])]
    if phone.kind == "vowel":
        bw = (80.0, 100.0, 150.0, 250.0)
        if phone.target is None:
            return [_Part(a, b, "voice", f, bw, _LEVEL["vowel"])]
        mid = a + (b - a) // 2
        g = tuple(x * scale * j for x, j in zip(phone.target, jitter)) + f[3:]
        return [_Part(a, mid, "voice", f, bw, _LEVEL["vowel"]), _Part(mid, b, "voice", g, bw, _LEVEL["vowel"])]
    if phone.kind in ("nasal", "approximant"):
        return [_Part(a, b, "voice", f, (150.0, 300.0, 400.0, 400.0), _LEVEL[phone.kind])]
    centre = (phone.noise * scale * jitter[0],)
    wide = (centre[0] * (1.2 if phone.noise in (4500, 3500, 1500) else 0.6),)  # weak fricatives are flat
    if phone.kind == "fricative":
        level = _LEVEL["fricative" if phone.noise in (5500, 2800, 3000) else "weak"]
        return [_Part(a, b, "noise", centre, wide, level, voicing=0.5 * phone.voiced)]
    # stops and affricates: a closure (silent, or a voice bar when voiced), then a burst / frication
    cut = a + max(1, int(round((0.55 if phone.kind == "stop" else 0.4) * (b - a))))
    cut = min(cut, b - 1) if b - a > 1 else b
    closure = (_Part(a, cut, "voice", (200.0,), (100.0,), 3 * _LEVEL["closure"]) if phone.voiced
               else _Part(a, cut, "silence", (), (), _LEVEL["closure"]))
    if cut >= b:
        return [closure]
    if phone.kind == "stop":
        release = _Part(cut, b, "noise", centre, wide, _LEVEL["burst"], voicing=0.3 * phone.voiced, decay=0.015)
    else:
        release = _Part(cut, b, "noise", centre, wide, _LEVEL["fricative"], voicing=0.3 * phone.voiced)
    return [closure, release]


def _band_sos(centre: float, width: float, rate: int) -> np.ndarray:
    """A 4th-order Butterworth band-pass around ``centre`` (frication and burst noise)."""
    from scipy.signal import butter

    lo = min(max(centre - width / 2, 50.0), 0.4 * rate)
    hi = min(max(centre + width / 2, 1.2 * lo), 0.49 * rate)
    return butter(2, [lo, hi], btype="bandpass", output="sos", fs=rate)


def _resonator_sos(formants: Sequence[float], bandwidths: Sequence[float], rate: int) -> np.ndarray:
    """Cascade of two-pole resonators (Klatt's form, unity gain at 0 Hz) as second-order sections."""
    sos = []
    for f, bw in zip(formants, bandwidths):
        f = min(f, 0.45 * rate)
        r = math.exp(-math.pi * bw / rate)
        b1, c = 2 * r * math.cos(2 * math.pi * f / rate), -r * r
        sos.append([1.0 - b1 - c, 0.0, 0.0, 1.0, -b1, -c])
    return np.asarray(sos)


def _voice_source(n: int, rate: int, f0: float, rng: np.random.Generator) -> np.ndarray:
    """A harmonic source (-3 dB/octave) with a falling, wavering F0 contour, plus breath noise."""
    t = np.arange(n) / rate
    total = max(t[-1], 1e-3)
    wobble = 0.04 * np.sin(2 * np.pi * (0.6 + 0.4 * rng.random()) * t + 2 * np.pi * rng.random())
    contour = f0 * (1.1 - 0.25 * t / total) * (1.0 + wobble)
    phase = 2 * np.pi * np.cumsum(contour) / rate
    source = np.zeros(n)
    for k in range(1, max(1, int(0.45 * rate / contour.max())) + 1):
        source += np.sin(k * phase) / math.sqrt(k)
    return source + 0.05 * rng.standard_normal(n)


def synthesize_phones(
    phones: Sequence[str],
    durations: Sequence[float],
    sample_rate: int = 16000,
    seed: int = 0,
    *,
    speaker: Optional[str] = None,
    ramp: float = 0.004,
) -> Synthesis:
    """Formant-synthesised audio whose phone ``i`` covers exactly ``durations[i]`` seconds.

    Vowels: a harmonic source with a falling F0 through three formant resonators (diphthongs
    glide between two targets); nasals and approximants: low formants, wider bandwidths;
    fricatives: noise around a place-specific frequency (plus a voice bar when voiced); stops
    and affricates: closure then burst or frication; silence: faint noise. Phones outside the
    small ARPAbet table (any inventory, e.g. Korean) get a pattern drawn from a hash of the
    name. Neighbouring phones cross-fade over ``ramp`` seconds around each boundary.

    Args:
        phones: phone names (ARPAbet stress digits ignored); ``sil``/``sp`` are silence.
        durations: seconds per phone; boundaries fall at ``round(cumsum(durations) * rate)``
            samples and each phone must get at least one sample.
        sample_rate: Hz.
        seed: seeds the noise, the F0 contour and small formant variations.
        speaker: a name whose hash sets the pitch (90-220 Hz) and vocal tract length
            (formants x 0.88-1.15); ``None``: 120 Hz, unscaled.
    """
    from scipy.signal import sosfilt

    phones = _check_phones(phones)
    rate = check_sample_rate(sample_rate)
    durations = np.asarray(durations, dtype=np.float64)
    if durations.shape != (len(phones),):
        raise HMMValueError(f"durations must be a sequence of {len(phones)} seconds, one per phone; "
                            f"got shape {durations.shape}")
    if not np.isfinite(durations).all() or (durations <= 0).any():
        raise HMMValueError(f"durations must be finite and > 0 seconds; got {durations.tolist()}")
    ends = np.round(np.cumsum(durations) * rate).astype(np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    if (ends <= starts).any():
        i = int(np.argmax(ends <= starts))
        raise HMMValueError(f"durations[{i}] = {float(durations[i])!r} s is shorter than one sample at {rate} Hz")
    if speaker is None:
        f0, scale = 120.0, 1.0
    else:
        h = np.frombuffer(_digest(f"speaker:{speaker}"), dtype=np.uint8) / 255.0
        f0, scale = 90.0 + 130.0 * h[0], 0.88 + 0.27 * h[1]
    rng = np.random.default_rng(seed)
    n = int(ends[-1])
    sources = {"voice": _voice_source(n, rate, f0, rng), "noise": rng.standard_normal(n)}
    parts = [part for p, a, b in zip(phones, starts, ends)
             for part in _parts(_describe(p), int(a), int(b), scale, 1.0 + 0.03 * rng.standard_normal(3))]
    # half-width of the cross-fade at each boundary: at most half of either neighbour
    edges = [min(ramp * rate, (p.end - p.start) / 2, (q.end - q.start) / 2) for p, q in zip(parts, parts[1:])]
    halves = [0.0] + edges + [0.0]
    warm = int(0.01 * rate)  # resonator settling time, rendered and discarded
    audio = np.zeros(n)
    for i, part in enumerate(parts):
        lo, hi = part.start - int(math.ceil(halves[i])), part.end + int(math.ceil(halves[i + 1]))
        t = np.arange(lo, hi)
        if part.source == "silence":
            y = sources["noise"][lo:hi]
        else:
            start = max(0, lo - warm)
            sos = (_band_sos(part.formants[0], part.bandwidths[0], rate) if part.source == "noise"
                   else _resonator_sos(part.formants, part.bandwidths, rate))
            y = sosfilt(sos, sources[part.source][start:hi])[lo - start:]
        core = y[part.start - lo: part.end - lo]
        y = y * (part.level / (np.sqrt(np.mean(core * core)) + 1e-12))
        if part.voicing:
            bar = sosfilt(_resonator_sos((250.0,), (150.0,), rate), sources["voice"][lo:hi])
            y = y + bar * (part.voicing * part.level / (np.sqrt(np.mean(bar * bar)) + 1e-12))
        if part.decay:
            y = y * np.exp(-np.maximum(t - part.start, 0) / (part.decay * rate))
        rise = np.clip((t - (part.start - halves[i]) + 0.5) / (2 * halves[i]), 0, 1) if halves[i] else 1.0
        fall = np.clip(((part.end + halves[i + 1]) - t - 0.5) / (2 * halves[i + 1]), 0, 1) if halves[i + 1] else 1.0
        audio[lo:hi] += y * rise * fall
    audio = np.clip(audio, -0.99, 0.99).astype(np.float32)
    intervals = tuple(PhoneInterval(p, a / rate, b / rate) for p, a, b in zip(phones, starts, ends))
    return Synthesis(audio, rate, intervals)


@functools.lru_cache(maxsize=2)
def _default_lexicon(korean: bool) -> Lexicon:
    """The numpy engine's lexicon, made once per process: Korean G2P, or CMUdict without stress."""
    return Lexicon.korean() if korean else Lexicon.from_cmudict(stress="fold")


def synthesize(
    text: str,
    *,
    engine: str = "auto",
    voice: Optional[str] = None,
    lexicon: Optional[Lexicon] = None,
    sample_rate: Optional[int] = None,
    seed: int = 0,
    utterance_id: Optional[str] = None,
) -> Synthesis:
    """One utterance with any engine (see the module docstring); ``sample_rate=None`` keeps the
    engine's own rate (flite 16 kHz, espeak-ng 22.05 kHz, numpy 16 kHz).

    The numpy engine transcribes ``text`` with ``lexicon`` (default: CMUdict without stress
    for English, :meth:`Lexicon.korean` for Hangul, chosen per text); out-of-vocabulary words
    become the lexicon's OOV phone and are logged (logger ``pytorch_hmm.speech``), and are
    counted in ``lexicon.oov_report``. It puts ``sil`` at both ends, draws
    :func:`phone_durations` with ``seed``, and uses ``voice`` as the synthetic speaker's name.
    """
    text = _check_text(text)
    if sample_rate is not None:
        sample_rate = check_sample_rate(sample_rate)
    engine = _resolve_engine(engine, _is_korean(text))
    if engine == "flite":
        return _retime(synthesize_flite(text, voice or "slt"), sample_rate)
    if engine == "espeak":
        return _retime(synthesize_espeak(text, voice), sample_rate)
    lexicon = lexicon if lexicon is not None else _default_lexicon(_is_korean(text))
    transcription = lexicon.transcribe(text, utterance_id)
    if transcription.oov:
        _log.warning("%s: no pronunciation for %s; synthesised as %r",
                     utterance_id or repr(text[:40]), ", ".join(transcription.oov), lexicon.oov_phone)
    phones = (SILENCE,) + transcription.phones + (SILENCE,)
    durations = phone_durations(phones, seed=seed)
    return synthesize_phones(phones, durations, sample_rate or 16000, seed, speaker=voice)


def _resolve_engine(engine: str, korean: bool) -> str:
    """The engine to use; a named external engine that is missing raises here, before any work."""
    if engine not in ENGINES:
        raise HMMValueError(f"engine must be one of {ENGINES}; got {engine!r}")
    if engine == "flite" and not korean and not flite_available():
        raise HMMValueError(_FLITE_MISSING)
    if engine == "espeak":
        with _ESPEAK_LOCK:
            _espeak()
    if engine != "auto":
        return engine
    if not korean and flite_available():
        return "flite"
    return "espeak" if espeak_available() else "numpy"


# ----------------------------------------------------------------------------- corpora
@dataclass(frozen=True)
class SyntheticUtterance:
    """One written utterance: its files and the true phone intervals of its audio."""

    id: str
    speaker: str
    text: str
    audio_path: Path
    alignment_path: Path
    intervals: tuple[PhoneInterval, ...]
    duration: float


@dataclass(frozen=True)
class SyntheticCorpus:
    """What :func:`build_corpus` wrote (iterate for the utterances)."""

    root: Path
    layout: str
    engine: str
    sample_rate: int
    utterances: tuple[SyntheticUtterance, ...]

    def __len__(self) -> int:
        return len(self.utterances)

    def __iter__(self) -> Iterator[SyntheticUtterance]:
        return iter(self.utterances)

    @property
    def alignments(self) -> dict[str, tuple[PhoneInterval, ...]]:
        """Utterance id -> phone intervals."""
        return {u.id: u.intervals for u in self.utterances}


_DEFAULT_SPEAKER = {"folder": "spk1", "librispeech": "1", "kss": "kss"}
_SAFE_NAME = {"librispeech": re.compile(r"[A-Za-z0-9]+$"), "folder": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*$")}
_LIBRI_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def _speakers(speaker, layout: str, n: int) -> list[str]:
    if speaker is None:
        return [_DEFAULT_SPEAKER[layout]] * n
    if layout == "kss":
        raise HMMValueError(f"speaker must be None for layout='kss' (KSS has one speaker, 'kss'); got {speaker!r}")
    names = [speaker] * n if isinstance(speaker, str) else list(speaker)
    if len(names) != n:
        raise HMMValueError(f"speaker must be one name or one per text ({n}); got {len(names)} names")
    for name in names:
        if not isinstance(name, str) or not _SAFE_NAME[layout].match(name):
            raise HMMValueError(f"speaker must be a folder name of {_SAFE_NAME[layout].pattern} for "
                                f"layout={layout!r}; got {name!r}")
    return names


def build_corpus(
    root: PathLike,
    texts: Sequence[str],
    *,
    layout: str = "folder",
    engine: str = "auto",
    lexicon: Optional[Lexicon] = None,
    voice: Optional[str] = None,
    speaker: Union[str, Sequence[str], None] = None,
    sample_rate: Optional[int] = None,
    seed: int = 0,
    subset: str = "synthetic",
    chapter: str = "1",
    progress: Optional[bool] = None,
) -> SyntheticCorpus:
    """Synthesise ``texts`` into a corpus under ``root`` with true phone alignments.

    Layouts (what the loaders :class:`~pytorch_hmm.speech.LibriSpeech`,
    :class:`~pytorch_hmm.speech.KSS` and :class:`~pytorch_hmm.speech.AudioTextFolder` read):

    - ``"folder"``: ``<root>/<speaker>/<speaker>_<n:04d>.wav`` + ``.lab`` (the text).
    - ``"librispeech"``: ``<root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<n:04d>.flac`` and
      ``<speaker>-<chapter>.trans.txt`` lines ``<id> UPPER CASE WORDS`` (punctuation dropped).
    - ``"kss"``: ``<root>/kss/1/1_<n:04d>.wav`` and ``<root>/transcript.v.1.4.txt`` lines
      ``1/1_0000.wav|original|expanded|decomposed|seconds|english``: the text twice (no
      number expansion), its NFD (conjoining jamo) form, the duration, and an empty English.

    Every utterance also gets ``<root>/alignments/<id>.tsv`` (:func:`write_phone_intervals`).
    Audio is 16-bit PCM at the engine's rate or ``sample_rate``.

    Args:
        engine: ``"auto"`` takes flite for English when installed, else espeak-ng when the
            library loads, else numpy; a named engine that is missing is an error.
        lexicon: text -> phones for the numpy engine (default: CMUdict for English texts, the
            Korean G2P for Hangul texts).
        voice: the engine's voice (flite ``"slt"``; espeak-ng ``"en-us"`` / ``"ko"``; numpy: a
            speaker name setting pitch and formants, default each utterance's speaker).
        speaker: one name, or one per text (``folder`` and ``librispeech``).
        seed: utterance ``n`` of the numpy engine uses ``seed + n``.
        progress: a tqdm progress bar; ``None``: when there are 20 texts or more.

    Returns:
        a :class:`SyntheticCorpus` listing each utterance's id, files and intervals.
    """
    if layout not in LAYOUTS:
        raise HMMValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    if isinstance(texts, str) or not isinstance(texts, Sequence) or len(texts) == 0:
        raise HMMValueError(f"texts must be a non-empty sequence of strings (not one string); got {texts!r:.60}")
    texts = [_check_text(t, f"texts[{i}]") for i, t in enumerate(texts)]
    if layout == "kss" and any("|" in t for t in texts):
        i = next(i for i, t in enumerate(texts) if "|" in t)
        raise HMMValueError(f"texts[{i}] must not contain '|' (the KSS column separator); got {texts[i]!r}")
    if layout == "librispeech":
        for i, t in enumerate(texts):
            if not _LIBRI_WORD.search(t):
                raise HMMValueError(f"texts[{i}] must contain a word for a LibriSpeech transcript; got {t!r}")
        for name, value in (("subset", subset), ("chapter", chapter)):
            if not isinstance(value, str) or not _SAFE_NAME["librispeech" if name == "chapter" else "folder"].match(value):
                raise HMMValueError(f"{name} must be a plain folder name; got {value!r}")
    speakers = _speakers(speaker, layout, len(texts))
    if sample_rate is not None:
        sample_rate = check_sample_rate(sample_rate)
    korean = any(_is_korean(t) for t in texts)
    engine = _resolve_engine(engine, korean)
    if engine == "flite" and korean:
        i = next(i for i, t in enumerate(texts) if _is_korean(t))
        raise HMMValueError(f"engine 'flite' speaks English only; texts[{i}] is Korean: {texts[i][:40]!r} "
                            "(use engine='espeak' or 'numpy')")

    import soundfile as sf
    from tqdm.auto import tqdm

    root = Path(root)
    (root / "alignments").mkdir(parents=True, exist_ok=True)
    utterances, transcripts = [], {}
    bar = tqdm(total=len(texts), desc=f"synthesising ({engine})", unit="utt",
               disable=not (len(texts) >= 20 if progress is None else progress))
    rate = sample_rate
    for n, (text, spk) in enumerate(zip(texts, speakers)):
        utt_id, audio_path, transcript = _place(root, layout, spk, n, subset, chapter)
        syn = synthesize(text, engine=engine, voice=voice or (spk if engine == "numpy" else None),
                         lexicon=lexicon, sample_rate=rate, seed=seed + n, utterance_id=utt_id)
        rate = syn.sample_rate  # every utterance at the first one's rate
        audio_path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(audio_path), syn.audio, syn.sample_rate, subtype="PCM_16")
        alignment = root / "alignments" / f"{utt_id}.tsv"
        write_phone_intervals(alignment, syn.intervals)
        transcripts.setdefault(transcript, []).append(_transcript_line(layout, utt_id, text, syn.duration))
        utterances.append(SyntheticUtterance(utt_id, spk, text, audio_path, alignment, syn.intervals, syn.duration))
        bar.update()
    bar.close()
    for path, lines in transcripts.items():
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return SyntheticCorpus(root, layout, engine, int(rate), tuple(utterances))


def _place(root: Path, layout: str, speaker: str, n: int, subset: str, chapter: str) -> tuple[str, Path, Path]:
    """(utterance id, audio path, transcript file) of utterance ``n``."""
    if layout == "librispeech":
        utt_id = f"{speaker}-{chapter}-{n:04d}"
        folder = root / subset / speaker / chapter
        return utt_id, folder / f"{utt_id}.flac", folder / f"{speaker}-{chapter}.trans.txt"
    if layout == "kss":
        utt_id = f"1_{n:04d}"
        return utt_id, root / "kss" / "1" / f"{utt_id}.wav", root / "transcript.v.1.4.txt"
    utt_id = f"{speaker}_{n:04d}"
    return utt_id, root / speaker / f"{utt_id}.wav", root / speaker / f"{utt_id}.lab"


def _transcript_line(layout: str, utt_id: str, text: str, duration: float) -> str:
    if layout == "librispeech":
        return f"{utt_id} {' '.join(_LIBRI_WORD.findall(text)).upper()}"
    if layout == "kss":
        return f"1/{utt_id}.wav|{text}|{text}|{unicodedata.normalize('NFD', text)}|{duration:.2f}|"
    return text
