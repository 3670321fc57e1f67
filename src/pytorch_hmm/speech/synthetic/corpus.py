"""Synthetic corpora: :func:`build_corpus` writes the LibriSpeech, KSS or folder layout plus reference alignments."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

from ...alignment.segments import PhoneInterval, write_phone_intervals
from ...errors import HMMValueError
from ..audio import check_sample_rate
from ..lexicon import Lexicon
from .engine import _resolve_engine, synthesize
from .synthesis import _check_text, _is_korean

PathLike = Union[str, Path]
LAYOUTS = ("folder", "librispeech", "kss")


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
