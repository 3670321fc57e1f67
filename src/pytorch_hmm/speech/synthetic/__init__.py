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

Modules, one per engine: :mod:`.flite`, :mod:`.espeak`, :mod:`.formant` (numpy), with
:mod:`.synthesis` (the :class:`Synthesis` result), :mod:`.engine` (:func:`synthesize`) and
:mod:`.corpus` (:func:`build_corpus`). :class:`PhoneInterval` and its file I/O live in
:mod:`pytorch_hmm.alignment.segments`.
"""

from ...alignment.segments import PhoneInterval, read_phone_intervals, write_phone_intervals
from .corpus import LAYOUTS, SyntheticCorpus, SyntheticUtterance, build_corpus
from .engine import ENGINES, synthesize
from .espeak import ESPEAK_VOICES, _ESPEAK_LOCK, _espeak, _espeak_libraries, espeak_available, synthesize_espeak
from .flite import flite_available, synthesize_flite
from .formant import _describe, phone_durations, synthesize_phones
from .synthesis import SILENCE, Synthesis

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
