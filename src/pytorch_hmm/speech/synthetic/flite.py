"""The ``flite`` engine: the flite program's audio and ``-psdur`` phone timings (English)."""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ...errors import HMMValueError
from .synthesis import SILENCE, Synthesis, _check_text, _is_korean, _tile

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
