"""Kaldi data directories (https://kaldi-asr.org/doc/data_prep.html)::

    data/train/
      wav.scp    <recording-id> <audio path>      (or ``sph2pipe [-f wav] [-p] [-c 1] FILE |``, ``cat FILE |``)
      text       <utterance-id> <transcript words ...>
      utt2spk    <utterance-id> <speaker-id>      optional; without it each utterance is its own speaker
      segments   <utterance-id> <recording-id> <start-seconds> <end-seconds>
                                                  optional; end -1: to the end of the recording
"""

from __future__ import annotations

import math
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Generator, Iterator, Optional, Tuple, Union

from ..errors import AudioError, HMMValueError
from .audio import AudioInfo
from .corpus import Corpus, CorpusProblem, Entry, Utterance, read_lines

REQUIRED_FILES = ("wav.scp", "text")
MAX_OVERSHOOT = 0.01  # seconds a segment may end past its recording; such an end is clipped to it

_OPERATOR_CHARS = frozenset("();<>|&")


class KaldiDataDir(Corpus):
    """The utterances of a Kaldi data directory, sorted by utterance id.

    Args:
        root: the data directory; it must hold ``wav.scp`` and ``text``, and may hold
            ``utt2spk`` and ``segments`` (other files, ``spk2utt`` and ``feats.scp`` among
            them, are not read).
        check_audio: read each recording's header: unreadable audio is skipped, and segments
            are checked against the recording's length. Without it headers are read only to
            resolve a segment end of ``-1`` and to check a ``sph2pipe -c`` channel.

    Without ``segments`` each utterance id is a recording id of ``wav.scp`` and the utterance
    is the whole file; with it each utterance is the slice ``Utterance.segment = (start, end)``
    seconds of its recording. A segment must start at ``>= 0`` s and end after its start; one
    starting at or after the end of the recording, or ending more than 10 ms past it, is
    skipped (a smaller overshoot is clipped to the recording's length).

    A relative path in ``wav.scp`` is looked up in the current directory first (where Kaldi
    recipes run), then in the data directory. Commands (``... |``) are not run: the common
    ``sph2pipe [-f FMT] [-p] [-c N] FILE |`` and ``cat FILE |`` read ``FILE`` directly
    (libsndfile reads NIST SPHERE; shorten-compressed SPHERE is reported as unreadable audio,
    and ``-c N`` only on a one-channel file); any other command is reported.

    Skipped and reported: malformed, duplicated (the first is kept) and undecodable lines as
    ``<file>:<line>``; under its id, each utterance that is not yielded (no ``wav.scp``,
    ``utt2spk`` or ``segments`` entry, a malformed one, a command, missing or unreadable
    audio, an out-of-range segment, empty text) and each id listed in ``utt2spk`` or
    ``segments`` (or, without ``segments``, in ``wav.scp``) but not in ``text``; under its
    recording id, a recording no segment uses.
    """

    def __init__(self, root: Union[str, Path], *, check_audio: bool = True) -> None:
        super().__init__(root, check_audio=check_audio)
        missing = [name for name in REQUIRED_FILES if not (self.root / name).is_file()]
        if missing:
            raise HMMValueError(
                f"root must be a Kaldi data directory holding wav.scp and text; "
                f"{str(self.root)!r} has no {' and no '.join(missing)}"
            )

    def _entries(self) -> Iterator[Entry]:
        self._audio: Dict[Path, Union[AudioInfo, AudioError]] = {}
        self._recordings: Dict[str, Union[Path, str]] = {}
        wav = yield from self._table("wav.scp", "recording", _parse_wav)
        text = yield from self._table("text", "utterance", _parse_text)
        utt2spk = segments = None
        if (self.root / "utt2spk").exists():
            utt2spk = yield from self._table("utt2spk", "utterance", _parse_utt2spk)
        if (self.root / "segments").exists():
            segments = yield from self._table("segments", "utterance", _parse_segment)
        for utt in sorted(text.entries):
            yield self._utterance(utt, text, wav, utt2spk, segments)
        if segments is not None:  # without segments a recording id is an utterance id: an orphan below
            used = {rec for _, (rec, _, _) in segments.entries.values()}
            for rec in sorted(wav.entries.keys() - used):
                yield CorpusProblem(rec, "recording in wav.scp is used by no utterance")
        orphans: Dict[str, list] = {}
        for table in (t for t in (None if segments else wav, utt2spk, segments) if t is not None):
            for utt in sorted((table.entries.keys() | table.malformed.keys()) - text.entries.keys()):
                orphans.setdefault(utt, []).append(table.name)
        for utt in sorted(orphans):
            yield CorpusProblem(utt, f"listed in {' and '.join(orphans[utt])} but not in text")

    def _table(self, name: str, kind: str, parse: Callable[[str], object]) -> Generator[CorpusProblem, None, "_Table"]:
        """Read one data file: ``id -> (line, value)``; bad lines are yielded as problems."""
        table = _Table(name)
        for item in read_lines(self.root / name):
            if isinstance(item, CorpusProblem):
                yield item
                continue
            number, line = item
            line = line.strip()
            if not line:
                continue
            key = line.split(None, 1)[0]
            first = table.entries[key][0] if key in table.entries else table.malformed.get(key)
            if first is not None:
                yield CorpusProblem(f"{name}:{number}", f"duplicate {kind} id {key!r} (the first, on line {first}, is kept)")
                continue
            try:
                table.entries[key] = (number, parse(line))
            except _Malformed as err:
                table.malformed[key] = number
                yield CorpusProblem(f"{name}:{number}", f"{err}; got {line[:60]!r}")
        return table

    def _utterance(
        self, utt: str, text: "_Table", wav: "_Table", utt2spk: Optional["_Table"], segments: Optional["_Table"]
    ) -> Entry:
        words = text.entries[utt][1]
        speaker = utt
        if utt2spk is not None:
            if utt not in utt2spk.entries:
                return CorpusProblem(utt, utt2spk.missing(utt))
            speaker = utt2spk.entries[utt][1]
        if segments is None:
            rec, segment = utt, None
        else:
            if utt not in segments.entries:
                return CorpusProblem(utt, segments.missing(utt))
            number, (rec, start, end) = segments.entries[utt]
            segment = (number, start, end)
        if rec not in wav.entries:
            if rec in wav.malformed:
                return CorpusProblem(utt, f"the wav.scp entry for {rec} is malformed (wav.scp:{wav.malformed[rec]})")
            if segment is None:
                return CorpusProblem(utt, "no wav.scp entry (without a segments file the utterance id is the recording id)")
            return CorpusProblem(utt, f"recording {rec} (segments:{segment[0]}) has no wav.scp entry")
        path = self._recording(rec, wav.entries[rec][1])
        if isinstance(path, str):
            return CorpusProblem(utt, path)
        if segment is None:
            return Utterance(utt, speaker, path, words)
        span = self._segment(rec, path, *segment)
        if isinstance(span, str):
            return CorpusProblem(utt, span)
        return Utterance(utt, speaker, path, words, segment=span)

    def _segment(self, rec: str, path: Path, number: int, start: float, end: float) -> Union[Tuple[float, float], str]:
        """``(start, end)`` seconds, the end resolved (``-1``) or clipped; or why the segment is unusable."""
        where = f"segments:{number}"
        if not (math.isfinite(start) and math.isfinite(end)):
            return f"segment times must be finite numbers of seconds; got {start!r} to {end!r} ({where})"
        if start < 0:
            return f"segment start must be >= 0 s; got {start!r} ({where})"
        if end != -1 and end <= start:
            return f"segment end must be after its start {start!r} s, or -1 for the end of the recording; got {end!r} ({where})"
        if not (self.check_audio or end == -1):
            return start, end
        info = self._info(path)
        if isinstance(info, AudioError):
            return f"unreadable audio: {info.reason}"
        length = info.duration
        if start >= length:
            return f"segment starts at {start!r} s, at or after the end of recording {rec} ({length:.3f} s) ({where})"
        if end == -1:
            return start, length
        if end > length + MAX_OVERSHOOT:
            return (f"segment ends at {end!r} s, more than {MAX_OVERSHOOT * 1000:g} ms after the end of "
                    f"recording {rec} ({length:.3f} s) ({where})")
        return start, min(end, length)

    def _recording(self, rec: str, target: str) -> Union[Path, str]:
        """The audio file of a ``wav.scp`` entry, or why it cannot be used (cached per iteration)."""
        if rec not in self._recordings:
            self._recordings[rec] = self._resolve_recording(rec, target)
        return self._recordings[rec]

    def _resolve_recording(self, rec: str, target: str) -> Union[Path, str]:
        channel = None
        name = target
        if target == "-":
            return f"wav.scp entry for {rec} is standard input (-); only audio file paths are supported"
        if target.endswith("|"):
            piped = _piped_file(target[:-1])
            if piped is None:
                shown = target if len(target) <= 80 else target[:70] + " ... |"
                return f"wav.scp entry for {rec} is a command ({shown}); only audio file paths are supported"
            name, channel = os.path.expanduser(piped[0]), piped[1]  # the shell would expand ~
        path = self._locate(name)
        if not path.exists():
            archive = re.fullmatch(r"(.+):(\d+)", name)
            if archive and self._locate(archive.group(1)).is_file():
                return f"wav.scp entry for {rec} is an offset into an archive ({name}); only audio file paths are supported"
            where = "" if Path(name).is_absolute() else " (looked for in the current directory, then in the data directory)"
            return f"missing audio {str(path)!r}{where}"
        if channel is not None:
            info = self._info(path)
            if isinstance(info, AudioInfo) and not channel == info.channels == 1:
                return (f"wav.scp entry for {rec} selects channel {channel} of a {info.channels}-channel file "
                        "(sph2pipe -c); channel selection is not supported")
        return path

    def _locate(self, name: str) -> Path:
        """``name`` as written when absolute; else under the current directory, then under the
        data directory; the current directory's when in neither."""
        path = Path(name)
        if path.is_absolute():
            return path
        here = Path.cwd() / path
        if here.exists():
            return here
        there = self.root.absolute() / path
        return there if there.exists() else here

    def _info(self, path: Path) -> Union[AudioInfo, AudioError]:
        if path not in self._audio:
            from .audio import audio_info

            try:
                self._audio[path] = audio_info(path)
            except AudioError as err:
                self._audio[path] = err
        return self._audio[path]


@dataclass
class _Table:
    """One data file: ``entries`` id -> (line number, value); ``malformed`` id -> line number."""

    name: str
    entries: Dict[str, Tuple[int, object]] = field(default_factory=dict)
    malformed: Dict[str, int] = field(default_factory=dict)

    def missing(self, key: str) -> str:
        """Why ``key`` has no usable entry here."""
        if key in self.malformed:
            return f"the {self.name} entry is malformed ({self.name}:{self.malformed[key]})"
        return f"no {self.name} entry"


class _Malformed(Exception):
    """A data file line that does not have the file's fields; the message says what was expected."""


def _parse_wav(line: str) -> str:
    parts = line.split(None, 1)
    if len(parts) < 2:
        raise _Malformed("expected '<recording-id> <audio path>'")
    return parts[1].strip()


def _parse_text(line: str) -> str:
    return " ".join(line.split()[1:])


def _parse_utt2spk(line: str) -> str:
    parts = line.split()
    if len(parts) != 2:
        raise _Malformed("expected '<utterance-id> <speaker-id>'")
    return parts[1]


def _parse_segment(line: str) -> Tuple[str, float, float]:
    parts = line.split()
    if len(parts) != 4:
        raise _Malformed("expected '<utterance-id> <recording-id> <start-seconds> <end-seconds>'")
    try:
        return parts[1], float(parts[2]), float(parts[3])
    except ValueError:
        raise _Malformed("segment start and end must be numbers of seconds") from None


def _piped_file(command: str) -> Optional[Tuple[str, Optional[int]]]:
    """``(FILE, channel or None)`` of ``sph2pipe [-f FMT] [-p] [-c N] FILE`` or ``cat FILE``;
    ``None`` for any other command (pipelines, redirections, shell variables, other options)."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes
        return None
    if not tokens or any(set(t) <= _OPERATOR_CHARS or "$" in t or "`" in t for t in tokens):
        return None
    program, args = os.path.basename(tokens[0]), tokens[1:]
    if program == "cat":
        return (args[0], None) if len(args) == 1 and not args[0].startswith("-") else None
    if program != "sph2pipe":
        return None
    channel, i = None, 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] == "-p":
            i += 1
            continue
        if args[i] not in ("-f", "-c") or i + 1 >= len(args) or args[i + 1].startswith("-"):
            return None
        if args[i] == "-c":
            if not args[i + 1].isdigit() or int(args[i + 1]) < 1:
                return None
            channel = int(args[i + 1])
        i += 2
    return (args[i], channel) if len(args) == i + 1 else None
