"""Speech corpora: utterances read lazily from a folder layout; bad entries reported, never fatal.

A corpus is an iterable of :class:`Utterance` (id, speaker, audio path, text). Reading one
walks the folders and transcript files as it goes, so the first utterance of a large corpus
comes at once. An entry that cannot be used (missing or unreadable audio, empty text, no
transcript) is skipped: it is appended to ``corpus.problems`` as a :class:`CorpusProblem`
and logged as a warning on the ``pytorch_hmm.speech`` logger, and the walk goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple, Union

import numpy as np

from ..errors import AudioError, HMMValueError

logger = logging.getLogger("pytorch_hmm.speech")

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class Utterance:
    """One recording and its transcript.

    Attributes:
        id: the corpus's own utterance id (e.g. ``"84-121123-0000"``).
        speaker: speaker id (a folder name, or the corpus's single speaker).
        audio_path: the audio file.
        text: the transcript as the corpus writes it (case and punctuation kept).
        duration: seconds, where the corpus lists it (KSS); else ``None``.
        segment: ``(start, end)`` seconds of the utterance within ``audio_path`` where it is
            part of a longer recording (a Kaldi ``segments`` entry); ``None``: the whole file.
    """

    id: str
    speaker: str
    audio_path: Path
    text: str
    duration: Optional[float] = None
    segment: Optional[Tuple[float, float]] = None

    def load_audio(self, sample_rate: Optional[int] = 16000) -> np.ndarray:
        """The utterance (its :attr:`segment` of the file) as float32 ``(N,)`` mono at
        ``sample_rate`` (``None``: the file's own rate)."""
        return self.read_audio(sample_rate)[0]

    def read_audio(self, sample_rate: Optional[int] = 16000) -> Tuple[np.ndarray, int]:
        """``(audio, rate)`` of :meth:`load_audio`; raises :class:`~pytorch_hmm.errors.AudioError`."""
        from .audio import load_audio

        if self.segment is None:
            return load_audio(self.audio_path, sample_rate)
        start, end = self.segment
        return load_audio(self.audio_path, sample_rate, offset=start, duration=end - start)


@dataclass(frozen=True)
class CorpusProblem:
    """A skipped entry: ``item`` is the utterance id (or a path where there is none)."""

    item: str
    reason: str

    def __str__(self) -> str:
        return f"{self.item}: {self.reason}"


Entry = Union[Utterance, CorpusProblem]


class Corpus:
    """Base class: subclasses yield candidate entries from :meth:`_entries`.

    Iterating checks each candidate (non-empty text; audio present and readable when
    ``check_audio``) and yields the good ones; each iteration starts a fresh ``problems`` list.
    """

    def __init__(self, root: Union[str, Path], *, check_audio: bool = True) -> None:
        root = Path(root)
        if not root.is_dir():
            raise HMMValueError(f"root must be an existing folder; got {str(root)!r}")
        self.root = root
        self.check_audio = check_audio
        self.problems: list[CorpusProblem] = []

    def _entries(self) -> Iterator[Entry]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self) -> Iterator[Utterance]:
        self.problems = []
        first: dict[str, Path] = {}  # id -> audio of the utterance that was yielded under it
        for entry in self._entries():
            if isinstance(entry, Utterance):
                entry = self._check(entry)
            if isinstance(entry, Utterance):
                if entry.id in first:
                    entry = CorpusProblem(entry.id, f"duplicate utterance id (kept the first, {str(first[entry.id])!r})")
                else:
                    first[entry.id] = entry.audio_path
            if isinstance(entry, CorpusProblem):
                self.problems.append(entry)
                logger.warning("skipped %s", entry)
                continue
            yield entry

    def _check(self, utt: Utterance) -> Entry:
        if not utt.text.strip():
            return CorpusProblem(utt.id, "empty transcript")
        if not any(ch.isalnum() for ch in utt.text):
            return CorpusProblem(utt.id, f"transcript has no words, only punctuation or symbols: {utt.text[:40]!r}")
        if not utt.audio_path.is_file():
            return CorpusProblem(utt.id, f"missing audio {str(utt.audio_path)!r}")
        if self.check_audio:
            from .audio import audio_info

            try:
                audio_info(utt.audio_path)
            except AudioError as err:
                return CorpusProblem(utt.id, f"unreadable audio: {err.reason}")
        return utt

    def utterances(self) -> list[Utterance]:
        """All good utterances as a list (``problems`` then lists the skipped ones)."""
        return list(self)

    def report(self) -> str:
        """The skipped entries of the last iteration, one per line (empty when none)."""
        if not self.problems:
            return ""
        lines = [f"{type(self).__name__} at {self.root}: skipped {len(self.problems)} entries"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"


def read_lines(path: Path) -> Iterator[Union[Tuple[int, str], CorpusProblem]]:
    """A transcript's ``(line number, text)`` pairs, decoded line by line as UTF-8 (a leading BOM
    dropped): a line that is not UTF-8 is reported as ``<file>:<line>`` and the others are kept;
    a file that cannot be read is one problem."""
    if not path.is_file():  # a named pipe or device would block the read
        yield CorpusProblem(str(path), "transcript is not a regular file")
        return
    try:
        data = path.read_bytes()
    except OSError as err:
        yield CorpusProblem(str(path), f"unreadable transcript: {err.strerror or err}")
        return
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as err:
            yield CorpusProblem(f"{path.name}:{number}", f"line is not UTF-8 ({err.reason} at byte {err.start}): {raw[:40]!r}")


def read_text(path: Path) -> Union[str, CorpusProblem]:
    """A transcript file's text, or a problem when it is not a regular file or not UTF-8."""
    if not path.is_file():  # a named pipe or device would block the read
        return CorpusProblem(str(path), "transcript is not a regular file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        return CorpusProblem(str(path), f"unreadable transcript: {err}")
