"""Montreal-Forced-Aligner-style folders: ``<speaker>/<name>.wav|flac|ogg`` + ``<name>.lab|txt``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from .corpus import AUDIO_SUFFIXES, Corpus, CorpusProblem, Entry, Utterance, read_text

TRANSCRIPT_SUFFIXES = (".lab", ".txt")


class AudioTextFolder(Corpus):
    """Audio files with a transcript file of the same name beside them, in any folder depth.

    The speaker is the first folder under ``root`` (files directly in ``root`` take the name
    of ``root`` itself); the utterance id is the file name without its suffix, which must be
    unique in the corpus. Where several audio or transcript files share a name, ``.wav`` is
    taken before ``.flac`` and ``.ogg``, and ``.lab`` before ``.txt``.

    Symbolic links to folders are followed (a folder reached twice is read once and reported).
    Skipped and reported: audio without a transcript, transcripts without audio, empty or
    undecodable transcripts, unreadable audio, names already used by another file.
    """

    def _entries(self) -> Iterator[Entry]:
        seen: dict[str, Path] = {}
        unlistable: list[OSError] = []
        visited: dict[str, Path] = {}  # real path -> the folder first walked there (links are followed)
        for folder, subfolders, files in os.walk(self.root, onerror=unlistable.append, followlinks=True):
            yield from _unlistable(unlistable)
            folder = Path(folder)
            real = os.path.realpath(folder)
            if real in visited:  # a link back into the corpus (or a loop): walked once, reported here
                yield CorpusProblem(str(folder), f"folder is a link to {str(visited[real])!r}, already read")
                subfolders.clear()
                continue
            visited[real] = folder
            subfolders.sort()
            relative = folder.relative_to(self.root).parts
            speaker = relative[0] if relative else self.root.resolve().name
            by_stem: dict[str, dict[str, Path]] = {}
            for name in sorted(files):
                path = folder / name
                by_stem.setdefault(path.stem, {})[path.suffix.lower()] = path
            for stem, paths in by_stem.items():
                audio = next((paths[s] for s in AUDIO_SUFFIXES if s in paths), None)
                text_path = next((paths[s] for s in TRANSCRIPT_SUFFIXES if s in paths), None)
                if audio is None and text_path is None:
                    continue
                if audio is None:
                    yield CorpusProblem(str(text_path), "transcript without audio")
                    continue
                if text_path is None:
                    yield CorpusProblem(stem, f"no transcript {stem}.lab or {stem}.txt beside {audio.name}")
                    continue
                if stem in seen:
                    yield CorpusProblem(stem, f"{audio} has the same name as {seen[stem]}")
                    continue
                seen[stem] = audio
                text = read_text(text_path)
                if isinstance(text, CorpusProblem):
                    yield CorpusProblem(stem, text.reason)
                    continue
                yield Utterance(stem, speaker, audio, " ".join(text.split()))
        yield from _unlistable(unlistable)


def _unlistable(errors: list[OSError]) -> Iterator[CorpusProblem]:
    """Report (and forget) the folders ``os.walk`` could not list."""
    while errors:
        err = errors.pop(0)
        yield CorpusProblem(str(err.filename), f"folder cannot be listed: {err.strerror or err}")
