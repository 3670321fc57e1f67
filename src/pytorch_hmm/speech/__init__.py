"""Speech front end: audio, features, lexicons and corpora (filled in as the modules land)."""

from .corpus import Corpus, CorpusProblem, Utterance
from .folder import AudioTextFolder
from .kss import KSS
from .librispeech import LibriSpeech

__all__ = ["Corpus", "CorpusProblem", "Utterance", "LibriSpeech", "KSS", "AudioTextFolder"]
