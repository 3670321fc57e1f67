"""Speech front end: audio, features, lexicons, Korean G2P, corpora and synthetic speech.

- :mod:`~pytorch_hmm.speech.audio`: :func:`load_audio` (wav / flac / ogg, mono, resampled),
  :func:`audio_info`, :func:`resample`.
- :mod:`~pytorch_hmm.speech.features`: :class:`FeatureExtractor`, :func:`mfcc` (13 + Δ + ΔΔ),
  :func:`log_mel`, :func:`cmvn`, :func:`speaker_cmvn`, :func:`pad_batch` (``(B, T, D)`` plus
  lengths), frame <-> time helpers; 25 ms windows every 10 ms by default.
- :mod:`~pytorch_hmm.speech.online`: :class:`StreamingFeatures` (block-by-block features equal
  to the offline ones) and :class:`OnlineCMVN` (running mean / variance normalisation).
- :mod:`~pytorch_hmm.speech.lexicon`: :class:`Lexicon` (CMUdict, MFA dictionaries, Korean G2P),
  :class:`Transcription`, :class:`OOVReport`.
- :mod:`~pytorch_hmm.speech.korean`: Hangul decomposition and rule-based pronunciation.
- Corpora yielding :class:`Utterance` lazily: :class:`LibriSpeech`, :class:`KSS`,
  :class:`AudioTextFolder`; bad entries land in ``corpus.problems``.
- :mod:`~pytorch_hmm.speech.synthetic`: flite / espeak-ng / numpy synthesis (one module per
  engine) with true phone intervals and :func:`build_corpus`; :class:`PhoneInterval` is the
  seconds flavour of :class:`pytorch_hmm.alignment.Segment`.

librosa, soundfile and scipy are imported inside the functions that need them, so
``import pytorch_hmm`` stays fast.
"""

from . import audio, features, korean, lexicon, synthetic
from .audio import AudioInfo, audio_info, load_audio, resample
from .corpus import Corpus, CorpusProblem, Utterance
from .features import (
    FeatureExtractor,
    add_deltas,
    cmvn,
    frame_to_time,
    log_mel,
    mfcc,
    num_frames,
    pad_batch,
    speaker_cmvn,
    time_to_frame,
)
from .folder import AudioTextFolder
from .kaldi import KaldiDataDir
from .kss import KSS
from .lexicon import Lexicon, OOVReport, OOVWord, Pronunciation, Transcription
from .librispeech import LibriSpeech
from .online import OnlineCMVN, StreamingFeatures
from .synthetic import PhoneInterval, build_corpus, read_phone_intervals, synthesize, write_phone_intervals

__all__ = [
    "audio",
    "features",
    "korean",
    "lexicon",
    "synthetic",
    "AudioInfo",
    "audio_info",
    "load_audio",
    "resample",
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
    "StreamingFeatures",
    "OnlineCMVN",
    "Lexicon",
    "Pronunciation",
    "Transcription",
    "OOVReport",
    "OOVWord",
    "Corpus",
    "CorpusProblem",
    "Utterance",
    "LibriSpeech",
    "KSS",
    "AudioTextFolder",
    "KaldiDataDir",
    "PhoneInterval",
    "read_phone_intervals",
    "write_phone_intervals",
    "synthesize",
    "build_corpus",
]
