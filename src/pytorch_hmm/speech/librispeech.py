"""LibriSpeech layout: ``<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac``.

Each chapter folder holds one ``<speaker>-<chapter>.trans.txt`` with a line per utterance,
``<speaker>-<chapter>-<utt> UPPER CASE TEXT``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Generator, Iterator, Union

from ..errors import HMMValueError
from .corpus import Corpus, CorpusProblem, Entry, Utterance, read_lines


class LibriSpeech(Corpus):
    """Utterances of one LibriSpeech subset (``"train-clean-100"``, ``"test-clean"``, ...).

    Args:
        root: the folder holding the subset folders; the folder that holds ``LibriSpeech/``
            also works.
        subset: the subset's folder name.
        check_audio: read each audio file's header and skip unreadable ones.

    Skipped and reported: chapters without a transcript file, transcript lines without
    audio or without text, malformed lines, audio files no transcript line names.
    """

    def __init__(self, root: Union[str, Path], subset: str, *, check_audio: bool = True) -> None:
        super().__init__(root, check_audio=check_audio)
        if not (self.root / subset).is_dir() and (self.root / "LibriSpeech" / subset).is_dir():
            self.root = self.root / "LibriSpeech"
        self.subset = subset
        self.subset_dir = self.root / subset
        if not self.subset_dir.is_dir():
            found = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            raise HMMValueError(
                f"subset must be a folder under root {str(self.root)!r}; got {subset!r} "
                f"(folders there: {found})"
            )

    def _entries(self) -> Iterator[Entry]:
        speakers = yield from _listing(self.subset_dir)
        for speaker_dir in (p for p in speakers if p.is_dir()):
            chapters = yield from _listing(speaker_dir)
            for chapter_dir in (p for p in chapters if p.is_dir()):
                yield from self._chapter(speaker_dir.name, chapter_dir)

    def _chapter(self, speaker: str, folder: Path) -> Iterator[Entry]:
        files = yield from _listing(folder)
        audio = {p.stem: p for p in files if p.suffix.lower() == ".flac"}  # .FLAC too
        transcript = folder / f"{speaker}-{folder.name}.trans.txt"
        if not transcript.is_file():
            yield CorpusProblem(str(folder), f"no transcript file {transcript.name}")
            for stem in audio:
                yield CorpusProblem(stem, "no transcript line")
            return
        listed = set()
        for item in read_lines(transcript):
            if isinstance(item, CorpusProblem):
                yield item
                continue
            number, line = item
            if not line.strip():
                continue
            utt_id, _, words = line.strip().partition(" ")
            if not utt_id.startswith(f"{speaker}-{folder.name}-"):
                yield CorpusProblem(
                    f"{transcript.name}:{number}",  # as read_lines names a line
                    f"line does not start with an id {speaker}-{folder.name}-NNNN: {line.strip()[:40]!r}",
                )
                continue
            listed.add(utt_id)
            yield Utterance(utt_id, speaker, audio.get(utt_id, folder / f"{utt_id}.flac"), words.strip())
        for stem in sorted(audio.keys() - listed):
            yield CorpusProblem(stem, f"no transcript line in {transcript.name}")


def _listing(folder: Path) -> Generator[CorpusProblem, None, list[Path]]:
    """The sorted entries of ``folder``; one that cannot be listed is reported and counts as empty."""
    try:
        return sorted(folder.iterdir())
    except OSError as err:
        yield CorpusProblem(str(folder), f"folder cannot be listed: {err.strerror or err}")
        return []
