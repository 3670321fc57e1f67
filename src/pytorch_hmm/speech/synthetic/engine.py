"""One utterance with any engine: :func:`synthesize` picks flite, espeak-ng or the formant synthesiser."""

from __future__ import annotations

import functools
import logging
from typing import Optional

from ...errors import HMMValueError
from ..audio import check_sample_rate
from ..lexicon import Lexicon
from .espeak import _ESPEAK_LOCK, _espeak, espeak_available, synthesize_espeak
from .flite import _FLITE_MISSING, flite_available, synthesize_flite
from .formant import phone_durations, synthesize_phones
from .synthesis import SILENCE, Synthesis, _check_text, _is_korean, _retime

ENGINES = ("auto", "flite", "espeak", "numpy")
_log = logging.getLogger("pytorch_hmm.speech")


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
