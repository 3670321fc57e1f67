"""Segments: the frame convention (frames <-> seconds), TextGrid / CTM / JSON round trips (MFA and
Kaldi conventions, read back by praatio itself), repeated phones, Korean labels, one test per error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from praatio import textgrid as praat

from pytorch_hmm.alignment import (
    PhoneInterval,
    Segment,
    Tiers,
    check_segments,
    frames_to_seconds,
    read_ctm,
    read_json,
    read_textgrid,
    seconds_to_frames,
    write_ctm,
    write_json,
    write_textgrid,
)
from pytorch_hmm.errors import HMMTypeError, HMMValueError

S = Segment
WORDS = [S("안녕", 0.12, 0.5), S("hello", 0.5, 0.93), S("hello", 0.93, 1.25)]  # a repeated word
PHONES = [S("ㅇ", 0.12, 0.2), S("ㅏ", 0.2, 0.31), S("a", 0.31, 0.42), S("a", 0.42, 0.5),  # repeated adjacent phones
          S("HH", 0.5, 0.6), S("AH", 0.6, 0.93), S("L", 0.93, 1.1), S("OW", 1.1, 1.25)]
TIERS = {"words": WORDS, "phones": PHONES}
DURATION = 1.4


# ----------------------------------------------------------------------------- frames <-> seconds


def test_frame_segment_maps_to_its_frames_span() -> None:
    """Frame t covers [t * shift, (t + 1) * shift): frames [3, 7) at 10 ms are [0.03, 0.07) s."""
    (seg,) = frames_to_seconds([S("a", 3, 7, 0.5)], 0.01)
    assert seg == S("a", 0.03, 0.07, 0.5)
    assert seconds_to_frames([seg], 0.01) == [S("a", 3, 7, 0.5)]
    assert frames_to_seconds([S("a", 3, 7)], 0.01, offset=1.5) == [S("a", 1.53, 1.57)]


def test_last_end_is_clipped_to_the_duration_and_comes_back() -> None:
    segs = [S("sil", 0, 3), S("a", 3, 10)]
    out = frames_to_seconds(segs, 0.01, duration=0.0962)
    assert out == [S("sil", 0.0, 0.03), S("a", 0.03, 0.0962)]
    assert seconds_to_frames(out, 0.01) == segs
    assert seconds_to_frames(out, 0.01, num_frames=8) == [S("sil", 0, 3), S("a", 3, 8)]


def test_centred_frames_are_half_a_hop_earlier() -> None:
    """FeatureExtractor's frame t stands for [(t - 1/2) hop, (t + 1/2) hop): offset = -shift / 2."""
    segs = [S("sil", 0, 3), S("a", 3, 7)]
    out = frames_to_seconds(segs, 0.01, offset=-0.005)
    assert out == [S("sil", 0.0, 0.025), S("a", 0.025, 0.065)]  # the first start clipped to 0
    assert seconds_to_frames(out, 0.01, offset=-0.005) == segs


def test_seconds_round_to_the_nearest_boundary_ties_to_the_earlier() -> None:
    got = seconds_to_frames([S("a", 0.014, 0.046), S("b", 0.055, 0.0651)], 0.01)
    assert got == [S("a", 1, 5), S("b", 5, 7)]  # 0.055 is a tie: boundary 5, not 6


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 30)), min_size=1, max_size=8),
       st.sampled_from([0.01, 0.0125, 256 / 22050, 160 / 16000]), st.sampled_from([0.0, 0.25]))
def test_frames_seconds_round_trip(gaps_lengths, shift: float, offset: float) -> None:
    segs, t = [], 0
    for i, (gap, length) in enumerate(gaps_lengths):
        segs.append(S(f"p{i % 2}", t + gap, t + gap + length))
        t += gap + length
    seconds = frames_to_seconds(segs, shift, offset=offset)
    assert all(isinstance(s.start, float) for s in seconds)
    assert seconds_to_frames(seconds, shift, offset=offset) == segs


# ----------------------------------------------------------------------------- TextGrid


@pytest.mark.parametrize("short", [False, True])
def test_textgrid_round_trip(tmp_path: Path, short: bool) -> None:
    path = tmp_path / "utt.TextGrid"
    write_textgrid(path, {**TIERS, "notes": []}, DURATION, short=short)
    got = read_textgrid(path)
    assert got == Tiers({"words": tuple(WORDS), "phones": tuple(PHONES), "notes": ()}, DURATION)
    assert [s.unit for s in got.tiers["phones"]].count("a") == 2  # adjacent repeats stay two segments
    assert "안녕" in path.read_bytes().decode("utf-8")


def test_textgrid_follows_mfa_conventions_read_by_praatio(tmp_path: Path) -> None:
    path = tmp_path / "utt.TextGrid"
    write_textgrid(path, TIERS, DURATION)
    assert path.read_text(encoding="utf-8").startswith('File type = "ooTextFile"\nObject class = "TextGrid"')
    grid = praat.openTextgrid(str(path), includeEmptyIntervals=True)
    assert grid.tierNames == ("words", "phones")
    assert (grid.minTimestamp, grid.maxTimestamp) == (0.0, DURATION)
    for name, segs in TIERS.items():
        tier = grid.getTier(name)
        assert isinstance(tier, praat.IntervalTier) and (tier.minTimestamp, tier.maxTimestamp) == (0.0, DURATION)
        entries = [tuple(e) for e in tier.entries]
        assert entries[0] == (0.0, 0.12, "") and entries[-1] == (1.25, DURATION, "")  # gaps: empty labels
        assert [e for e in entries if e[2]] == [(s.start, s.end, s.unit) for s in segs]
        assert all(a[1] == b[0] for a, b in zip(entries, entries[1:]))  # the intervals tile [0, xmax]


@pytest.mark.parametrize("write, read", [(write_textgrid, read_textgrid), (write_json, read_json)])
def test_tier_precision(tmp_path: Path, write, read) -> None:
    path = tmp_path / "utt"
    duration = 1.23456789  # the audio's length, written in full; the last end rounds to it, not past it
    write(path, {"phones": [S("a", 0.1234567, 0.2), S("b", 0.2, duration)]}, duration, precision=3)
    assert read(path) == Tiers({"phones": (S("a", 0.123, 0.2), S("b", 0.2, duration))}, duration)
    with pytest.raises(HMMValueError, match=r"tiers\['phones'\]\[0\] \(0.1..0.1004 s\) is empty when written with precision=3"):
        write(path, {"phones": [S("a", 0.1, 0.1004)]}, 1.0, precision=3)


# ----------------------------------------------------------------------------- JSON and CTM


def test_json_round_trip_mfa_layout(tmp_path: Path) -> None:
    path = tmp_path / "utt.json"
    write_json(path, {**TIERS, "empty": []}, DURATION)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["start"] == 0 and data["end"] == DURATION
    assert data["tiers"]["words"] == {"type": "interval", "entries": [[s.start, s.end, s.unit] for s in WORDS]}
    assert data["tiers"]["empty"] == {"type": "interval", "entries": []}
    assert "ㅏ" in path.read_bytes().decode("utf-8")  # UTF-8, not \u escapes
    assert read_json(path) == Tiers({"words": tuple(WORDS), "phones": tuple(PHONES), "empty": ()}, DURATION)


def test_ctm_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "phones.ctm"
    utts = {"utt1": [S("ㅇ", 0.12, 0.2, 0.75), S("a", 0.2, 0.31, 1.0), S("a", 0.31, 0.42, 0.5)],
            "utt2": [S("HH", 0.0004, 0.0016), S("AH", 0.0016, 0.9)], "utt3": []}
    write_ctm(path, utts, channel="A")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["utt1 A 0.120 0.080 ㅇ 0.750", "utt1 A 0.200 0.110 a 1.000"]
    assert lines[3] == "utt2 A 0.000 0.002 HH"
    assert read_ctm(path) == {"utt1": utts["utt1"], "utt2": [S("HH", 0.0, 0.002), S("AH", 0.002, 0.9)]}
    path.write_text(";; comment\n\nu 1 0.5 0.25 w 0.9\n", encoding="utf-8")
    assert read_ctm(path) == {"u": [S("w", 0.5, 0.75, 0.9)]}


def test_phone_interval_is_the_seconds_segment() -> None:
    iv = PhoneInterval("sil", 0, 0.03)
    assert isinstance(iv, Segment) and iv.phone == iv.unit == "sil" and iv.start == 0.0 and iv.score is None
    assert seconds_to_frames([iv, PhoneInterval("a", 0.03, 0.07)], 0.01) == [S("sil", 0, 3), S("a", 3, 7)]


def test_writers_accept_phone_intervals(tmp_path: Path) -> None:
    ivs = [PhoneInterval("sil", 0.0, 0.125), PhoneInterval("HH", 0.125, 0.2)]
    write_textgrid(tmp_path / "a.TextGrid", {"phones": ivs}, 0.2)
    assert read_textgrid(tmp_path / "a.TextGrid").tiers["phones"] == (S("sil", 0.0, 0.125), S("HH", 0.125, 0.2))


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("segments, kwargs, error, message", [
    ("ab", {}, HMMTypeError, "segments must be a sequence of Segment; got str"),
    ([("a", 0, 1)], {}, HMMTypeError, r"segments\[0\] must be a Segment; got tuple"),
    ([S("a", 0.0, 1.0)], {"frames": True}, HMMTypeError, r"segments\[0\] must have integer frame indices"),
    ([S("a", "0", 1)], {}, HMMTypeError, r"segments\[0\] must have numeric times; got start='0'"),
    ([S("a", 0, float("inf"))], {}, HMMValueError, r"segments\[0\] must have finite times"),
    ([S("a", -0.1, 1)], {}, HMMValueError, r"segments\[0\].start must be >= 0; got -0.1"),
    ([S("a", 0.5, 0.5)], {}, HMMValueError, r"segments\[0\] must have start < end; got start=0.5, end=0.5"),
    ([S("a", 0, 1), S("b", 0.5, 2)], {}, HMMValueError,
     r"segments\[1\] must not start before segments\[0\] ends \(sorted, non-overlapping\); got start=0.5 < end=1"),
    ([S("a", 0, 1), S("b", 1, 2)], {"duration": 1.5}, HMMValueError, r"segments\[1\].end must be <= duration=1.5 s; got 2"),
])
def test_check_segments_errors(segments, kwargs, error, message: str) -> None:
    with pytest.raises(error, match=message):
        check_segments(segments, **kwargs)


def test_conversion_errors() -> None:
    with pytest.raises(HMMValueError, match="frame_shift must be a positive number of seconds; got 0"):
        frames_to_seconds([S("a", 0, 1)], 0)
    with pytest.raises(HMMValueError, match="offset must be a finite number of seconds; got nan"):
        frames_to_seconds([S("a", 0, 1)], 0.01, offset=float("nan"))
    with pytest.raises(HMMValueError, match="duration must be a positive number of seconds; got -1"):
        frames_to_seconds([S("a", 0, 1)], 0.01, duration=-1)
    with pytest.raises(HMMValueError, match=r"segments\[1\] starts at frame 10 = 0.1 s, at or after the end of the audio"):
        frames_to_seconds([S("a", 0, 10), S("b", 10, 12)], 0.01, duration=0.1)
    with pytest.raises(HMMValueError, match="num_frames must be a positive integer; got 0"):
        seconds_to_frames([S("a", 0.0, 0.1)], 0.01, num_frames=0)
    with pytest.raises(HMMValueError, match=r"segments\[0\] \('a', 0.0..0.004 s\) rounds to the empty frame span \[0, 0\)"):
        seconds_to_frames([S("a", 0.0, 0.004)], 0.01)


@pytest.mark.parametrize("write", [write_textgrid, write_json])
def test_tier_writer_errors(tmp_path: Path, write) -> None:
    path = tmp_path / "out"
    with pytest.raises(HMMValueError, match="duration must be a positive number of seconds; got 0"):
        write(path, TIERS, 0)
    with pytest.raises(HMMValueError, match="precision must be an integer number of decimals in 0..12; got 1.5"):
        write(path, TIERS, DURATION, precision=1.5)
    with pytest.raises(HMMTypeError, match="tiers must be a mapping of tier name -> segments; got list"):
        write(path, WORDS, DURATION)
    with pytest.raises(HMMValueError, match="tier names must be non-empty strings without '\"'; got ''"):
        write(path, {"": WORDS}, DURATION)
    with pytest.raises(HMMValueError, match=r"tiers\['words'\]\[0\].unit must be a non-empty str label .*; got 3"):
        write(path, {"words": [S(3, 0.0, 0.1)]}, DURATION)
    with pytest.raises(HMMValueError, match=r"tiers\['words'\]\[2\].end must be <= duration=1.0 s; got 1.25"):
        write(path, TIERS, 1.0)
    assert not path.exists()


def test_read_textgrid_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.TextGrid"
    with pytest.raises(HMMValueError, match=r"TextGrid file '.*bad.TextGrid': cannot be read: no such file"):
        read_textgrid(path)
    path.write_text('File type = "ooTextFile"\nObject class = "TextGrid"\n\nxmin = 0\nxmax = oops\n', encoding="utf-8")
    with pytest.raises(HMMValueError, match=r"TextGrid file '.*bad.TextGrid': is not a valid Praat TextGrid: "
                                            r"line 5: expected a number, got 'xmax = oops' \("):
        read_textgrid(path)
    write_textgrid(path, TIERS, DURATION, short=True)
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:16] + ["0.5x"] + lines[17:]), encoding="utf-8")
    with pytest.raises(HMMValueError, match=r"TextGrid: line 17: expected a number, got '0.5x' \(ValueError"):
        read_textgrid(path)
    path.write_text("\n".join(lines[:12]), encoding="utf-8")
    with pytest.raises(HMMValueError, match=r"TextGrid: a field is missing or the file ends early \("):
        read_textgrid(path)
    path.write_text("hello\nworld\n", encoding="utf-8")
    with pytest.raises(HMMValueError, match=r"TextGrid: line 1: expected 'File type = \"ooTextFile\"', got 'hello'"):
        read_textgrid(path)
    path.write_bytes(b"\xff\xfe\x00\xd8")
    with pytest.raises(HMMValueError, match=r"TextGrid: neither UTF-8 nor UTF-16"):
        read_textgrid(path)
    write_textgrid(path, TIERS, DURATION)
    path.write_text(path.read_text(encoding="utf-8").replace("xmin = 0.5 ", "xmin = 0.45 ", 1), encoding="utf-8")
    with pytest.raises(HMMValueError, match=r"TextGrid: \(TextgridStateError: Two intervals in the same tier overlap"):
        read_textgrid(path)
    grid = praat.Textgrid(0.5, 2.0)
    grid.addTier(praat.IntervalTier("words", [(0.5, 1.0, "a")], 0.5, 2.0))
    grid.save(str(path), format="long_textgrid", includeBlankSpaces=True)
    with pytest.raises(HMMValueError, match=r"TextGrid file '.*': xmin must be 0 \(MFA convention\); got 0.5"):
        read_textgrid(path)
    grid = praat.Textgrid(0.0, 1.0)
    grid.addTier(praat.PointTier("events", [(0.5, "x")], 0.0, 1.0))
    grid.save(str(path), format="short_textgrid", includeBlankSpaces=True)
    with pytest.raises(HMMValueError, match="tier 'events' must be an interval tier; got a point tier"):
        read_textgrid(path)


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe{", "is not UTF-8"),
    (b'{"start": 0,\n "end": 1,\n "tiers": {', r"line 3, column 12: Expecting property name"),
    (b"[1, 2]", 'expected an object with "start", "end" and "tiers"'),
    (b'{"start": 1, "end": 2, "tiers": {}}', '"start" must be 0 \\(MFA convention\\); got 1'),
    (b'{"start": 0, "end": "1", "tiers": {}}', '"end" must be a positive number of seconds; got \'1\''),
    (b'{"start": 0, "end": 1, "tiers": {"w": {"type": "point", "entries": []}}}',
     r"tiers\['w'\] must be \{\"type\": \"interval\", \"entries\": \[...\]\}"),
    (b'{"start": 0, "end": 1, "tiers": {"w": {"type": "interval", "entries": [[0, 1]]}}}',
     r"tiers\['w'\] entry 0 must be \[start, end, label\]; got \[0, 1\]"),
    (b'{"start": 0, "end": 1, "tiers": {"w": {"type": "interval", "entries": [[0, 0.6, "a"], [0.5, 1, "b"]]}}}',
     r"tiers\['w'\] entry\[1\] must not start before"),
    (b'{"start": 0, "end": 1, "tiers": {"w": {"type": "interval", "entries": [[0, 1.5, "a"]]}}}',
     r"tiers\['w'\] entry\[0\].end must be <= duration=1.0 s"),
])
def test_read_json_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(HMMValueError, match=r"JSON file '.*bad.json': " + message):
        read_json(path)


def test_read_json_missing_file(tmp_path: Path) -> None:
    with pytest.raises(HMMValueError, match=r"JSON file '.*missing.json': cannot be read"):
        read_json(tmp_path / "missing.json")


def test_write_ctm_errors(tmp_path: Path) -> None:
    path = tmp_path / "out.ctm"
    with pytest.raises(HMMTypeError, match="utterances must be a mapping of utterance id -> segments; got list"):
        write_ctm(path, PHONES)
    with pytest.raises(HMMValueError, match="channel must be a non-empty name without whitespace; got 'a b'"):
        write_ctm(path, {"u": PHONES}, channel="a b")
    with pytest.raises(HMMValueError, match="precision must be an integer number of decimals in 0..12; got -1"):
        write_ctm(path, {"u": PHONES}, precision=-1)
    with pytest.raises(HMMValueError, match="utterance ids must be non-empty names without whitespace; got 'u 1'"):
        write_ctm(path, {"u 1": PHONES})
    with pytest.raises(HMMValueError, match=r"utterances\['u'\]\[0\].unit must be a non-empty label without whitespace; got 'a b'"):
        write_ctm(path, {"u": [S("a b", 0.0, 1.0)]})
    with pytest.raises(HMMValueError, match=r"utterances\['u'\]\[0\].score must be a finite number or None; got nan"):
        write_ctm(path, {"u": [S("a", 0.0, 1.0, float("nan"))]})
    with pytest.raises(HMMValueError, match=r"utterances\['u'\]\[0\] \(0.0..0.0004 s\) is empty when written with precision=3"):
        write_ctm(path, {"u": [S("a", 0.0, 0.0004)]})
    with pytest.raises(HMMValueError, match=r"utterances\['u'\]\[1\] must not start before"):
        write_ctm(path, {"u": [S("a", 0.0, 1.0), S("b", 0.5, 1.5)]})
    assert not path.exists()


@pytest.mark.parametrize("content, message", [
    ("u 1 0.0 0.5 a\nu 1 0.5\n", r"line 2: expected 'utt channel start duration label \[confidence\]' \(expected 5 or 6 columns, got 3\)"),
    ("u 1 zero 0.5 a\n", r"line 1: .*could not convert string to float: 'zero'"),
    ("u 1 0.0 0.5 a\nu 1 0.4 0.5 b\n", r"line 2: .*\(utterance 'u' must be in time order without overlaps; "
                                      r"this segment starts at 0.4 s, before the previous one ends at 0.5 s\)"),
    ("u 1 -0.5 0.5 a\n", r"line 1: .*\(start must be >= 0 and duration > 0 seconds; got -0.5, 0.5\)"),
    ("u 1 0.5 0 a\n", r"line 1: .*\(start must be >= 0 and duration > 0 seconds; got 0.5, 0.0\)"),
    ("u 1 0.0 0.5 a nan\n", r"line 1: .*\(the confidence must be a finite number; got nan\)"),  # as write_ctm requires
    ("u 1 0.0 0.5 a inf\n", r"line 1: .*\(the confidence must be a finite number; got inf\)"),
])
def test_read_ctm_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.ctm"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(HMMValueError, match=r"CTM file '.*bad.ctm': " + message):
        read_ctm(path)


def test_read_ctm_unreadable(tmp_path: Path) -> None:
    with pytest.raises(HMMValueError, match=r"CTM file '.*missing.ctm': cannot be read"):
        read_ctm(tmp_path / "missing.ctm")
    (tmp_path / "latin1.ctm").write_bytes(b"u 1 0 1 caf\xe9\n")
    with pytest.raises(HMMValueError, match=r"CTM file '.*latin1.ctm': is not UTF-8"):
        read_ctm(tmp_path / "latin1.ctm")


@pytest.mark.parametrize("short", [False, True])
def test_a_truncated_textgrid_is_an_error_never_fewer_segments(tmp_path: Path, short: bool) -> None:
    """praatio reads a file cut after a tier or interval header as fewer tiers/intervals; the declared counts catch it."""
    path = tmp_path / "cut.TextGrid"
    write_textgrid(path, TIERS, DURATION, short=short)
    text = path.read_text(encoding="utf-8")
    full = read_textgrid(path)
    for n in range(len(text) // 3, len(text) - 1, 7):  # every 7th cut point past the header
        path.write_text(text[:n], encoding="utf-8")
        try:
            got = read_textgrid(path)
        except HMMValueError as err:
            assert "TextGrid" in str(err)
            continue
        assert got == full, f"cut at {n} characters read as {got}"
    lines = text.splitlines()
    if not short:
        path.write_text("\n".join(lines[:lines.index("item []: ") + 1]) + "\n", encoding="utf-8")
        with pytest.raises(HMMValueError, match=r"TextGrid file '.*cut.TextGrid': declares 2 tiers but holds 0: "
                                                r"the file ends early"):
            read_textgrid(path)
