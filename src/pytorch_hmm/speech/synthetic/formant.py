"""The ``numpy`` engine: a small formant synthesiser with exactly the requested phone durations."""

from __future__ import annotations

import functools
import hashlib
import math
from typing import NamedTuple, Optional, Sequence

import numpy as np

from ...alignment.segments import PhoneInterval
from ...errors import HMMValueError
from ...validation import check_number
from ..audio import check_sample_rate
from ..lexicon import is_phone_name
from .synthesis import Synthesis

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
    ramp = check_number(ramp, "ramp", minimum=0.0, unit="seconds")
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
