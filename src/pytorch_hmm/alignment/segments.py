"""Segments: one unit (phone, word, token) over a time span, the common output of every aligner.

Frame convention. Frame ``t`` of a front end with hop ``frame_shift`` seconds covers
``[t * frame_shift, (t + 1) * frame_shift)`` plus ``offset`` seconds (Kaldi / MFA). A frame
segment ``[s, e)`` therefore spans ``[s * shift + offset, e * shift + offset)`` seconds
(:func:`frames_to_seconds`); a time goes back to the nearest frame boundary, ties to the
earlier one, so that a start clipped to 0 comes back as frame 0 (:func:`seconds_to_frames`). A start before 0 is clipped to 0 and, when the audio
``duration`` is given, the last end is clipped to it. The centred frames of
:class:`~pytorch_hmm.speech.FeatureExtractor` (frame ``t`` centred at ``t * hop``, standing for
``[(t - 1/2) hop, (t + 1/2) hop)``) are ``offset=-frame_shift / 2``.

Files (times in seconds, written to ``precision`` decimals and read back exactly):

- Praat TextGrid (long or short format, through ``praatio``), MFA's conventions: interval
  tiers (``words``, ``phones``) from ``xmin = 0`` to ``xmax = duration``, gaps written as
  intervals with an empty label and dropped on reading;
- CTM, Kaldi style: ``utt channel start duration label [confidence]`` per line;
- JSON, MFA style: ``{"start", "end", "tiers": {name: {"type": "interval", "entries":
  [[start, end, label], ...]}}}``;
- reference alignments (``start<TAB>end<TAB>phone``) of :class:`PhoneInterval`.

Adjacent segments with the same label stay two segments. Scores are kept by CTM only.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, NamedTuple, Optional, Sequence, Union

from ..errors import HMMTypeError, HMMValueError

__all__ = [
    "Segment",
    "PhoneInterval",
    "Tiers",
    "TIERS",
    "check_segments",
    "frames_to_seconds",
    "seconds_to_frames",
    "write_textgrid",
    "read_textgrid",
    "write_ctm",
    "read_ctm",
    "write_json",
    "read_json",
    "write_phone_intervals",
    "read_phone_intervals",
]

Unit = Union[str, int]
PathLike = Union[str, Path]
TIERS = ("words", "phones")  # MFA's tier names


@dataclass(frozen=True)
class Segment:
    """``unit`` over ``start <= t < end``: frames (ints) or seconds (floats), as the producer states.

    ``score`` is an optional confidence (for aligners: the mean per-frame probability in
    ``[0, 1]``), ``None`` where unknown.
    """

    unit: Unit
    start: Union[int, float]
    end: Union[int, float]
    score: Optional[float] = None

    @property
    def duration(self) -> Union[int, float]:
        return self.end - self.start


def _is_name(label: object) -> bool:
    """A non-empty str without whitespace (a phone, a CTM label)."""
    return isinstance(label, str) and bool(label) and not any(c.isspace() for c in label)


@dataclass(frozen=True)
class PhoneInterval(Segment):
    """One phone from ``start`` to ``end`` seconds (a validated :class:`Segment`; ``phone`` is ``unit``)."""

    def __post_init__(self) -> None:
        if not _is_name(self.unit):
            raise HMMValueError(f"phone must be a non-empty name without whitespace; got {self.unit!r}")
        start, end = float(self.start), float(self.end)
        if not (math.isfinite(start) and math.isfinite(end) and 0.0 <= start <= end):
            raise HMMValueError(f"interval must have finite 0 <= start <= end seconds; got {start!r}..{end!r}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    @property
    def phone(self) -> str:
        return self.unit


class Tiers(NamedTuple):
    """Interval tiers of one utterance: tier name -> segments in seconds (gaps omitted), over ``[0, duration]``."""

    tiers: dict[str, tuple[Segment, ...]]
    duration: float


# ----------------------------------------------------------------------------- checks
def _is_number(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _number(value: object, name: str, *, positive: bool = False) -> float:
    if not _is_number(value) or not math.isfinite(value) or (positive and value <= 0):
        kind = "a positive" if positive else "a finite"
        raise HMMValueError(f"{name} must be {kind} number of seconds; got {value!r}")
    return float(value)


def _check_precision(precision: object) -> None:
    if not isinstance(precision, int) or isinstance(precision, bool) or not 0 <= precision <= 12:
        raise HMMValueError(f"precision must be an integer number of decimals in 0..12; got {precision!r}")


def check_segments(
    segments: Sequence[Segment], name: str = "segments", *, duration: Optional[float] = None, frames: bool = False
) -> tuple[Segment, ...]:
    """``segments`` as a tuple after checking: each a :class:`Segment` with finite
    ``0 <= start < end`` (integers when ``frames``), sorted and non-overlapping, ends ``<= duration``."""
    if isinstance(segments, (str, bytes)) or not isinstance(segments, Sequence):
        raise HMMTypeError(f"{name} must be a sequence of Segment; got {type(segments).__name__}")
    prev_end = None
    kind = numbers.Integral if frames else numbers.Real
    plain = (int,) if frames else (int, float)  # the common types, checked without the ABCs
    for i, seg in enumerate(segments):
        if not isinstance(seg, Segment):
            raise HMMTypeError(f"{name}[{i}] must be a Segment; got {type(seg).__name__}")
        start, end = seg.start, seg.end
        if not (type(start) in plain and type(end) in plain) and not all(
            isinstance(x, kind) and not isinstance(x, bool) for x in (start, end)
        ):
            what = "integer frame indices" if frames else "numeric times"
            raise HMMTypeError(f"{name}[{i}] must have {what}; got start={start!r}, end={end!r}")
        if not (math.isfinite(start) and math.isfinite(end)):
            raise HMMValueError(f"{name}[{i}] must have finite times; got start={start!r}, end={end!r}")
        if start < 0:
            raise HMMValueError(f"{name}[{i}].start must be >= 0; got {start!r}")
        if end <= start:
            raise HMMValueError(f"{name}[{i}] must have start < end; got start={start!r}, end={end!r}")
        if prev_end is not None and start < prev_end:
            raise HMMValueError(f"{name}[{i}] must not start before {name}[{i - 1}] ends (sorted, "
                                f"non-overlapping); got start={start!r} < end={prev_end!r}")
        if duration is not None and end > duration:
            raise HMMValueError(f"{name}[{i}].end must be <= duration={duration!r} s; got {end!r}")
        prev_end = end
    return tuple(segments)


# ----------------------------------------------------------------------------- frames <-> seconds
def frames_to_seconds(
    segments: Sequence[Segment], frame_shift: float, *, offset: float = 0.0, duration: Optional[float] = None
) -> list[Segment]:
    """Frame segments ``[s, e)`` -> ``[s * frame_shift + offset, e * frame_shift + offset)`` seconds.

    Times are rounded to the nanosecond (``3 * 0.01`` is ``0.03``); a start before 0 becomes 0;
    the last end is clipped to ``duration`` (seconds of audio) when given.
    """
    shift = _number(frame_shift, "frame_shift", positive=True)
    offset = _number(offset, "offset")
    if duration is not None:
        duration = _number(duration, "duration", positive=True)
    segments = check_segments(segments, frames=True)
    out = []
    for i, seg in enumerate(segments):
        start = max(0.0, round(seg.start * shift + offset, 9))
        end = round(seg.end * shift + offset, 9)
        if duration is not None and i == len(segments) - 1:
            if start >= duration:
                raise HMMValueError(f"segments[{i}] starts at frame {seg.start} = {start!r} s, at or after "
                                    f"the end of the audio (duration={duration!r} s)")
            end = min(end, duration)
        out.append(Segment(seg.unit, start, end, seg.score))
    return list(check_segments(out, duration=duration))


def _boundary(seconds: float, shift: float, offset: float) -> int:
    """The nearest frame boundary to ``seconds`` (ties to the earlier one), at least 0."""
    return max(0, math.ceil((seconds - offset) / shift - 0.5))


def seconds_to_frames(
    segments: Sequence[Segment], frame_shift: float, *, offset: float = 0.0, num_frames: Optional[int] = None
) -> list[Segment]:
    """Segments in seconds -> frame segments, each time rounded to the nearest frame boundary
    (the inverse of :func:`frames_to_seconds`); ends beyond ``num_frames`` are clipped to it."""
    shift = _number(frame_shift, "frame_shift", positive=True)
    offset = _number(offset, "offset")
    if num_frames is not None and (not isinstance(num_frames, numbers.Integral) or num_frames < 1):
        raise HMMValueError(f"num_frames must be a positive integer; got {num_frames!r}")
    out = []
    for i, seg in enumerate(check_segments(segments)):
        start, end = _boundary(seg.start, shift, offset), _boundary(seg.end, shift, offset)
        if num_frames is not None:
            start, end = min(start, num_frames), min(end, num_frames)
        if end <= start:
            raise HMMValueError(f"segments[{i}] ({seg.unit!r}, {seg.start!r}..{seg.end!r} s) rounds to the empty "
                                f"frame span [{start}, {end}) at frame_shift={shift!r} s; it is shorter than half a frame")
        out.append(Segment(seg.unit, start, end, seg.score))
    return out


# ----------------------------------------------------------------------------- tiers
def _check_tiers(tiers: Mapping[str, Sequence[Segment]], duration: float, precision: int) -> dict[str, list]:
    """Tier name -> ``[(start, end, label), ...]`` rounded to ``precision``, after checking."""
    duration = _number(duration, "duration", positive=True)
    _check_precision(precision)
    if not isinstance(tiers, Mapping):
        raise HMMTypeError(f"tiers must be a mapping of tier name -> segments; got {type(tiers).__name__}")
    out = {}
    for name, segments in tiers.items():
        if not isinstance(name, str) or not name.strip() or '"' in name:
            raise HMMValueError(f"tier names must be non-empty strings without '\"'; got {name!r}")
        where = f"tiers[{name!r}]"
        rows = []
        for i, seg in enumerate(check_segments(segments, where, duration=duration)):
            if not isinstance(seg.unit, str) or not seg.unit.strip():
                raise HMMValueError(f"{where}[{i}].unit must be a non-empty str label (gaps are "
                                    f"left out, not labelled ''); got {seg.unit!r}")
            rows.append((*_rounded(seg, precision, f"{where}[{i}]", duration), seg.unit))
        out[name] = rows
    return out


def _rounded(seg: Segment, precision: int, where: str, duration: Optional[float] = None) -> tuple[float, float]:
    """``seg``'s times rounded to ``precision`` decimals (at most ``duration``), still ``start < end``."""
    start, end = (round(float(t), precision) for t in (seg.start, seg.end))
    if duration is not None:
        start, end = min(start, duration), min(end, duration)
    if end <= start:
        raise HMMValueError(f"{where} ({seg.start!r}..{seg.end!r} s) is empty when written with "
                            f"precision={precision} decimals")
    return start, end


def _tier_segments(entries, where: str, duration: float) -> tuple[Segment, ...]:
    """Read ``(start, end, label)`` rows (label ``''`` = a gap, dropped) into checked segments."""
    segs = tuple(Segment(label, float(start), float(end)) for start, end, label in entries if label.strip())
    return check_segments(segs, where, duration=duration)


def _file_error(kind: str, path: Path, detail: str) -> HMMValueError:
    return HMMValueError(f"{kind} file {str(path)!r}: {detail}")


def write_textgrid(
    path: PathLike, tiers: Mapping[str, Sequence[Segment]], duration: float, *, short: bool = False, precision: int = 6
) -> None:
    """Write interval tiers (e.g. ``{"words": [...], "phones": [...]}``, seconds) as a Praat TextGrid
    from 0 to ``duration`` seconds, gaps as empty intervals (long format; ``short=True``: short)."""
    from praatio import textgrid

    rows = _check_tiers(tiers, duration, precision)
    grid = textgrid.Textgrid(0.0, float(duration))
    for name, entries in rows.items():
        grid.addTier(textgrid.IntervalTier(name, entries, 0.0, float(duration)))
    grid.save(str(path), format="short_textgrid" if short else "long_textgrid", includeBlankSpaces=True,
              minimumIntervalLength=None, reportingMode="error")


def read_textgrid(path: PathLike) -> Tiers:
    """Read the interval tiers of a TextGrid (long or short format, UTF-8 or UTF-16); empty
    intervals are gaps and left out."""
    from praatio import textgrid
    from praatio.utilities.errors import PraatioException, TextgridException

    path = Path(path)
    if not path.is_file():
        raise _file_error("TextGrid", path, "cannot be read: no such file")
    try:
        grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=True, reportingMode="error")
    except (PraatioException, ValueError, IndexError, KeyError, AttributeError, UnicodeError) as err:
        where = _textgrid_problem(path) or (
            "a field is missing or the file ends early " if not isinstance(err, TextgridException) else "")
        raise _file_error("TextGrid", path, f"is not a valid Praat TextGrid: {where}"
                                            f"({type(err).__name__}: {err})") from None
    if grid.minTimestamp != 0:
        raise _file_error("TextGrid", path, f"xmin must be 0 (MFA convention); got {grid.minTimestamp!r}")
    _check_declared_counts(path, grid)
    duration = float(grid.maxTimestamp)
    tiers = {}
    for tier in grid.tiers:
        if not isinstance(tier, textgrid.IntervalTier):
            raise _file_error("TextGrid", path, f"tier {tier.name!r} must be an interval tier; got a point tier")
        try:
            tiers[tier.name] = _tier_segments(tier.entries, f"tier {tier.name!r} interval", duration)
        except HMMValueError as err:
            raise _file_error("TextGrid", path, str(err)) from None
    return Tiers(tiers, duration)


def _textgrid_lines(path: Path) -> Optional[list]:
    """The file's lines decoded as praatio reads it (UTF-16 with a byte order mark, else UTF-8), or ``None``."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig").splitlines()
    except UnicodeError:
        return None


def _declared_counts(lines: list) -> Optional[tuple]:
    """``(tiers, [intervals per tier])`` as the file declares them, or ``None`` where it cannot tell."""
    stripped = [line.strip() for line in lines]
    if any(line.startswith("xmin =") for line in stripped):  # long format: key = value
        sizes = [line for line in stripped if line.startswith("size =")]
        intervals = []
        for line in stripped:
            if line.startswith("intervals: size"):
                value = line.rsplit("=", 1)[1].strip() if "=" in line else ""
                if not value.isdigit():  # cut inside the count: this tier declares nothing
                    break
                intervals.append(int(value))
        return (int(sizes[0].split("=", 1)[1]), intervals) if sizes else None
    values = [line for line in stripped[2:] if line]  # short format: one value per line
    i = values.index("<exists>") + 1
    tiers, intervals, i = int(values[i]), [], i + 1
    while i + 4 < len(values):  # class, name, xmin, xmax, count, then 3 (interval) or 2 (point) lines each
        count, per = int(values[i + 4]), 3 if values[i] == '"IntervalTier"' else 2
        if per == 3:
            intervals.append(count)
        i += 5 + per * count
    return tiers, intervals


def _check_declared_counts(path: Path, grid) -> None:
    """praatio reads a file that ends after a tier or interval header as fewer tiers or intervals: compare with the declared counts."""
    lines = _textgrid_lines(path)
    try:
        declared = None if lines is None else _declared_counts(lines)
    except (ValueError, IndexError):
        declared = None
    if declared is None:
        return
    tiers, intervals = declared
    if tiers != len(grid.tiers):
        raise _file_error("TextGrid", path, f"declares {tiers} tiers but holds {len(grid.tiers)}: the file ends early")
    interval_tiers = [t for t in grid.tiers if isinstance(t, _praat().IntervalTier)]
    for i, tier in enumerate(interval_tiers):
        if i >= len(intervals):
            raise _file_error("TextGrid", path, f"tier {tier.name!r} ends before its intervals: the file ends early")
        count = intervals[i]
        if len(tier.entries) != count:
            raise _file_error("TextGrid", path, f"tier {tier.name!r} declares {count} intervals but holds "
                                                f"{len(tier.entries)}: the file ends early")


def _praat():
    from praatio import textgrid

    return textgrid


def _textgrid_problem(path: Path) -> str:
    """Where a TextGrid that praatio rejected goes wrong: the header, the first non-numeric value, or ''."""
    lines = _textgrid_lines(path)
    if lines is None:
        return "neither UTF-8 nor UTF-16 "
    if not lines or lines[0].replace(" ", "") != 'Filetype="ooTextFile"':
        return f"line 1: expected 'File type = \"ooTextFile\"', got {(lines or [''])[0]!r} "
    for number, line in enumerate(lines[2:], start=3):
        value = line.split("=", 1)[1].strip() if "=" in line else line.strip()  # long: key = value; short: value
        if not value or value[0] in '"<' or value[-1] in '":>':
            continue
        try:
            float(value)
        except ValueError:
            return f"line {number}: expected a number, got {line.strip()!r} "
    return ""


def write_json(path: PathLike, tiers: Mapping[str, Sequence[Segment]], duration: float, *, precision: int = 6) -> None:
    """Write interval tiers as MFA's JSON (UTF-8): ``{"start": 0, "end": duration, "tiers": {...}}``."""
    rows = _check_tiers(tiers, duration, precision)
    data = {"start": 0.0, "end": float(duration),
            "tiers": {name: {"type": "interval", "entries": [list(r) for r in entries]} for name, entries in rows.items()}}
    Path(path).write_text(json.dumps(data, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: PathLike) -> Tiers:
    """Read a file written by :func:`write_json` (or by MFA with ``--output_format json``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as err:
        raise _file_error("JSON", path, f"cannot be read: {err}") from None
    except UnicodeDecodeError as err:
        raise _file_error("JSON", path, f"is not UTF-8: {err}") from None
    except json.JSONDecodeError as err:
        raise _file_error("JSON", path, f"line {err.lineno}, column {err.colno}: {err.msg}") from None
    try:
        if not isinstance(data, dict) or not isinstance(data.get("tiers"), dict):
            raise HMMValueError('expected an object with "start", "end" and "tiers"')
        if data.get("start", 0) != 0:
            raise HMMValueError(f'"start" must be 0 (MFA convention); got {data["start"]!r}')
        duration = _number(data.get("end"), '"end"', positive=True)
        tiers = {}
        for name, tier in data["tiers"].items():
            where = f'tiers[{name!r}]'
            if not isinstance(tier, dict) or tier.get("type") != "interval" or not isinstance(tier.get("entries"), list):
                raise HMMValueError(f'{where} must be {{"type": "interval", "entries": [...]}}; got {tier!r:.80}')
            for i, entry in enumerate(tier["entries"]):
                if not (isinstance(entry, list) and len(entry) == 3 and _is_number(entry[0])
                        and _is_number(entry[1]) and isinstance(entry[2], str)):
                    raise HMMValueError(f"{where} entry {i} must be [start, end, label]; got {entry!r:.80}")
            tiers[name] = _tier_segments(tier["entries"], f"{where} entry", duration)
    except HMMValueError as err:
        raise _file_error("JSON", path, str(err)) from None
    return Tiers(tiers, duration)


# ----------------------------------------------------------------------------- CTM
def write_ctm(
    path: PathLike, utterances: Mapping[str, Sequence[Segment]], *, channel: str = "1", precision: int = 3
) -> None:
    """Write ``utt channel start duration label [confidence]`` lines (Kaldi CTM; seconds,
    ``precision`` decimals; the confidence is a segment's ``score`` where it has one)."""
    if not isinstance(utterances, Mapping):
        raise HMMTypeError(f"utterances must be a mapping of utterance id -> segments; got {type(utterances).__name__}")
    if not _is_name(channel):
        raise HMMValueError(f"channel must be a non-empty name without whitespace; got {channel!r}")
    _check_precision(precision)
    lines = []
    for utt, segments in utterances.items():
        if not _is_name(utt):
            raise HMMValueError(f"utterance ids must be non-empty names without whitespace; got {utt!r}")
        for i, seg in enumerate(check_segments(segments, f"utterances[{utt!r}]")):
            if not _is_name(seg.unit):
                raise HMMValueError(f"utterances[{utt!r}][{i}].unit must be a non-empty label without "
                                    f"whitespace; got {seg.unit!r}")
            start, end = _rounded(seg, precision, f"utterances[{utt!r}][{i}]")
            line = f"{utt} {channel} {start:.{precision}f} {end - start:.{precision}f} {seg.unit}"
            if seg.score is not None:
                if not _is_number(seg.score) or not math.isfinite(seg.score):
                    raise HMMValueError(f"utterances[{utt!r}][{i}].score must be a finite number or None; "
                                        f"got {seg.score!r}")
                line += f" {seg.score:.{precision}f}"
            lines.append(line + "\n")
    Path(path).write_text("".join(lines), encoding="utf-8")


def read_ctm(path: PathLike) -> dict[str, list[Segment]]:
    """Read a CTM file: utterance id -> segments in seconds (``score`` = the confidence column
    or ``None``); blank lines and ``;;`` comments are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise _file_error("CTM", path, f"cannot be read: {err}") from None
    except UnicodeDecodeError as err:
        raise _file_error("CTM", path, f"is not UTF-8: {err}") from None
    out: dict[str, list[Segment]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith(";;"):
            continue
        try:
            if len(fields) not in (5, 6):
                raise HMMValueError(f"expected 5 or 6 columns, got {len(fields)}")
            utt, _, start, dur, label = fields[:5]
            start, dur = float(start), float(dur)
            if not (math.isfinite(start) and math.isfinite(dur) and start >= 0 and dur > 0):
                raise HMMValueError(f"start must be >= 0 and duration > 0 seconds; got {start!r}, {dur!r}")
            segments = out.setdefault(utt, [])
            if segments and start < segments[-1].end:
                raise HMMValueError(f"utterance {utt!r} must be in time order without overlaps; this segment "
                                    f"starts at {start!r} s, before the previous one ends at {segments[-1].end!r} s")
            score = float(fields[5]) if len(fields) == 6 else None
            if score is not None and not math.isfinite(score):
                raise HMMValueError(f"the confidence must be a finite number; got {fields[5]}")
            decimals = max(_decimals(fields[2]), _decimals(fields[3]))
            seg = Segment(label, start, round(start + dur, decimals), score)
        except (HMMValueError, ValueError) as err:
            raise _file_error("CTM", path, f"line {number}: expected 'utt channel start duration label "
                                           f"[confidence]' ({err}); got {line!r}") from None
        segments.append(seg)
    return out


def _decimals(number: str) -> int:
    """Decimals written in ``number`` (``"0.250"`` -> 3)."""
    return len(number.partition(".")[2]) if "e" not in number.lower() else 12


# ----------------------------------------------------------------------------- reference alignments
def write_phone_intervals(path: PathLike, intervals: Sequence[PhoneInterval]) -> None:
    """Write ``start<TAB>end<TAB>phone`` lines (seconds, 6 decimals), one per interval."""
    lines = []
    for i, iv in enumerate(intervals):
        if not isinstance(iv, PhoneInterval):
            raise HMMTypeError(f"intervals[{i}] must be a PhoneInterval; got {type(iv).__name__}")
        lines.append(f"{iv.start:.6f}\t{iv.end:.6f}\t{iv.phone}\n")
    Path(path).write_text("".join(lines), encoding="utf-8")


def read_phone_intervals(path: PathLike) -> list[PhoneInterval]:
    """Read a file written by :func:`write_phone_intervals` (blank lines are skipped)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise HMMValueError(f"reference alignment {str(path)!r} cannot be read: {err}") from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().split("\t")
        try:
            if len(fields) != 3:
                raise HMMValueError(f"expected 3 tab-separated columns, got {len(fields)}")
            out.append(PhoneInterval(fields[2], float(fields[0]), float(fields[1])))
        except (HMMValueError, ValueError) as err:
            raise HMMValueError(
                f"reference alignment {str(path)!r}, line {number}: expected start<TAB>end<TAB>phone "
                f"({err}); got {line!r}"
            ) from None
    return out
