"""KSS (Korean Single Speaker) layout: ``transcript.v.1.x.txt`` plus folders of wav files.

Each transcript line is ``path|original|expanded|decomposed|duration|english``, e.g.
``1/1_0000.wav|그는 괜찮은 척하려고 애쓰는 것 같았다.|...|3.5|He seemed ...``; the wav
paths are relative to ``<root>/kss/`` (the distributed layout) or to ``<root>`` itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Union

from ..errors import HMMValueError
from .corpus import Corpus, CorpusProblem, Entry, Utterance, read_lines

TEXT_COLUMNS = ("original", "expanded", "decomposed")


class KSS(Corpus):
    """The utterances listed in a KSS transcript (one speaker, ``"kss"``).

    Args:
        root: the folder holding ``transcript.v.1.x.txt`` (the newest version is used).
        text: which transcript column becomes ``Utterance.text``: ``"expanded"`` (numbers and
            symbols written out in Hangul, the default and what a G2P wants), ``"original"`` or
            ``"decomposed"`` (conjoining jamo).
        transcript: an explicit transcript file instead of the newest under ``root``.
        check_audio: read each audio file's header and skip unreadable ones.

    Skipped and reported: lines that are not UTF-8 or have fewer than four ``|`` columns,
    missing or unreadable wav files, empty text. Every other line is kept.
    """

    speaker = "kss"

    def __init__(
        self,
        root: Union[str, Path],
        *,
        text: str = "expanded",
        transcript: Optional[Union[str, Path]] = None,
        check_audio: bool = True,
    ) -> None:
        super().__init__(root, check_audio=check_audio)
        if text not in TEXT_COLUMNS:
            raise HMMValueError(f"text must be one of {TEXT_COLUMNS}; got {text!r}")
        self.text_column = TEXT_COLUMNS.index(text) + 1
        if transcript is None:
            found = sorted(self.root.glob("transcript.v.*.txt"), key=_version)
            if not found:
                raise HMMValueError(
                    f"root must hold a KSS transcript transcript.v.1.x.txt; none in {str(self.root)!r}"
                )
            transcript = found[-1]
        self.transcript = Path(transcript)
        if not self.transcript.is_file():
            raise HMMValueError(f"transcript must be an existing file; got {str(self.transcript)!r}")
        self.audio_dir = self.root / "kss" if (self.root / "kss").is_dir() else self.root

    def _entries(self) -> Iterator[Entry]:
        for item in read_lines(self.transcript):
            if isinstance(item, CorpusProblem):
                yield item
                continue
            number, line = item
            if not line.strip():
                continue
            columns = line.split("|")
            if len(columns) < 4:
                yield CorpusProblem(
                    f"{self.transcript.name}:{number}",
                    f"expected path|original|expanded|decomposed|duration|english; got {line[:60]!r}",
                )
                continue
            path = Path(columns[0].strip())
            yield Utterance(
                path.stem,
                self.speaker,
                self.audio_dir / path,
                columns[self.text_column].strip(),
                _float_or_none(columns[4]) if len(columns) > 4 else None,
            )


def _version(path: Path) -> tuple[int, ...]:
    """``transcript.v.1.4.txt`` -> (1, 4), so 1.10 sorts after 1.9."""
    parts = path.name[len("transcript.v.") : -len(".txt")].split(".")
    return tuple(int(p) if p.isdigit() else -1 for p in parts)


def _float_or_none(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None
