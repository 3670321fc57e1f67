"""KaldiDataDir on tiny Kaldi data directories: wav.scp, text, utt2spk and segments, good and
bad entries mixed; every skipped entry is checked by id and reason."""

from __future__ import annotations

from pathlib import Path
import numpy as np
import pytest
import soundfile as sf

from pytorch_hmm.errors import HMMValueError
from pytorch_hmm.speech import KaldiDataDir, Utterance

RATE = 8000


def ramp(seconds: float, rate: int = RATE, channels: int = 1) -> np.ndarray:
    """Distinct samples (a rising ramp), so a slice is recognisable exactly."""
    n = int(round(seconds * rate))
    audio = (np.arange(n) / n - 0.5).astype(np.float32)
    return audio if channels == 1 else np.stack([audio, -audio], axis=1)


def write_wav(path: Path, seconds: float = 1.0, rate: int = RATE, **kwargs) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = ramp(seconds, rate, kwargs.pop("channels", 1))
    sf.write(path, audio, rate, subtype=kwargs.pop("subtype", "FLOAT"), **kwargs)
    return audio


def write_data(root: Path, **files: object) -> Path:
    """One data file per keyword (``wav_scp`` is ``wav.scp``): a list of lines, or raw bytes."""
    root.mkdir(parents=True, exist_ok=True)
    for key, content in files.items():
        path = root / key.replace("_", ".")
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text("".join(f"{line}\n" for line in content), encoding="utf-8")
    return root


def reasons(corpus: KaldiDataDir) -> dict:
    got = {}
    for p in corpus.problems:
        assert p.item not in got, f"two problems for {p.item}: {got[p.item]!r} and {p.reason!r}"
        got[p.item] = p.reason
    return got


def ids(corpus: KaldiDataDir) -> list:
    return [u.id for u in corpus]


# ---------------------------------------------------------------- whole recordings


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    audio = tmp_path / "audio"
    for name in ("a1", "a2", "b1"):
        write_wav(audio / f"{name}.wav", seconds=0.5)
    return write_data(
        tmp_path / "data" / "train",
        wav_scp=[f"a1 {audio / 'a1.wav'}", f"a2 {audio / 'a2.wav'}", f"b1 {audio / 'b1.wav'}"],
        text=["b1 THIRD   ONE", "a1 HELLO WORLD", "a2 Second, one."],  # not sorted: the corpus sorts
        utt2spk=["a1 alice", "a2 alice", "b1 bob"],
    )


def test_plain_data_dir_yields_whole_recordings_sorted(plain: Path) -> None:
    corpus = KaldiDataDir(plain)
    utts = corpus.utterances()
    audio = plain.parent.parent / "audio"
    assert utts == [
        Utterance("a1", "alice", audio / "a1.wav", "HELLO WORLD"),
        Utterance("a2", "alice", audio / "a2.wav", "Second, one."),
        Utterance("b1", "bob", audio / "b1.wav", "THIRD ONE"),
    ]
    assert corpus.problems == [] and corpus.report() == ""
    np.testing.assert_array_equal(utts[2].load_audio(None), ramp(0.5))


def test_without_utt2spk_each_utterance_is_its_own_speaker(plain: Path) -> None:
    (plain / "utt2spk").unlink()
    corpus = KaldiDataDir(plain)
    assert [(u.id, u.speaker) for u in corpus] == [("a1", "a1"), ("a2", "a2"), ("b1", "b1")]
    assert corpus.problems == []


def test_an_utterance_missing_from_utt2spk_is_reported(plain: Path) -> None:
    write_data(plain, utt2spk=["a1 alice", "b1 bob", "zz nobody"])
    corpus = KaldiDataDir(plain)
    assert ids(corpus) == ["a1", "b1"]
    assert reasons(corpus) == {"a2": "no utt2spk entry", "zz": "listed in utt2spk but not in text"}
    write_data(plain, text=["a1 HELLO"])
    corpus = KaldiDataDir(plain)
    assert ids(corpus) == ["a1"]
    assert reasons(corpus) == {  # one problem per id: without segments a recording id is an utterance id
        "a2": "listed in wav.scp but not in text",
        "b1": "listed in wav.scp and utt2spk but not in text",
        "zz": "listed in utt2spk but not in text",
    }


def test_relative_paths_resolve_against_the_cwd_first_then_the_data_dir(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data"
    write_wav(data / "wav" / "in_data.wav", seconds=0.25)
    write_wav(data / "wav" / "both.wav", seconds=0.25)
    recipe = tmp_path / "recipe"
    write_wav(recipe / "wav" / "both.wav", seconds=0.5)  # the cwd's copy wins
    write_data(
        data,
        wav_scp=["both wav/both.wav", "in_data wav/in_data.wav", "nowhere wav/nowhere.wav"],
        text=["both a", "in_data b", "nowhere c"],
    )
    monkeypatch.chdir(recipe)
    corpus = KaldiDataDir("../data")
    utts = {u.id: u.audio_path for u in corpus}
    assert utts == {"both": recipe / "wav" / "both.wav", "in_data": (recipe / "../data").absolute() / "wav" / "in_data.wav"}
    assert utts["in_data"].resolve() == data / "wav" / "in_data.wav"
    assert reasons(corpus) == {
        "nowhere": f"missing audio {str(recipe / 'wav' / 'nowhere.wav')!r} "
        "(looked for in the current directory, then in the data directory)"
    }


# ---------------------------------------------------------------- segments


@pytest.fixture
def segmented(tmp_path: Path) -> Path:
    write_wav(tmp_path / "rec1.wav", seconds=2.0)
    write_wav(tmp_path / "rec2.wav", seconds=1.0, rate=16000)
    return write_data(
        tmp_path / "data",
        wav_scp=[f"rec1 {tmp_path / 'rec1.wav'}", f"rec2 {tmp_path / 'rec2.wav'}"],
        text=["s1-a first part", "s1-b second part", "s2-a whole rest", "s2-b clipped end"],
        utt2spk=["s1-a s1", "s1-b s1", "s2-a s2", "s2-b s2"],
        segments=["s1-a rec1 0.5 1.25", "s1-b rec1 1.25 -1", "s2-a rec2 0 -1", "s2-b rec2 0.5 1.005"],
    )


def test_segments_slice_their_recordings(segmented: Path) -> None:
    corpus = KaldiDataDir(segmented)
    utts = {u.id: u for u in corpus}
    assert corpus.problems == []
    rec1, rec2 = segmented.parent / "rec1.wav", segmented.parent / "rec2.wav"
    assert utts == {
        "s1-a": Utterance("s1-a", "s1", rec1, "first part", segment=(0.5, 1.25)),
        "s1-b": Utterance("s1-b", "s1", rec1, "second part", segment=(1.25, 2.0)),  # -1: the recording's end
        "s2-a": Utterance("s2-a", "s2", rec2, "whole rest", segment=(0.0, 1.0)),
        "s2-b": Utterance("s2-b", "s2", rec2, "clipped end", segment=(0.5, 1.0)),  # 5 ms overshoot clipped
    }
    whole = ramp(2.0)
    np.testing.assert_array_equal(utts["s1-a"].load_audio(None), whole[4000:10000])
    np.testing.assert_array_equal(utts["s1-b"].load_audio(None), whole[10000:])
    np.testing.assert_array_equal(utts["s2-b"].load_audio(None), ramp(1.0, 16000)[8000:])


def test_segment_end_minus_one_is_resolved_even_without_audio_check(segmented: Path) -> None:
    utts = {u.id: u.segment for u in KaldiDataDir(segmented, check_audio=False)}
    assert utts == {"s1-a": (0.5, 1.25), "s1-b": (1.25, 2.0), "s2-a": (0.0, 1.0), "s2-b": (0.5, 1.005)}  # unchecked


def test_out_of_range_segments_are_reported(segmented: Path) -> None:
    write_data(
        segmented,
        text=[f"u{n} words" for n in range(1, 9)],
        segments=[
            "u1 rec1 -0.5 1.0",
            "u2 rec1 1.0 1.0",
            "u3 rec1 nan 1.0",
            "u4 rec1 2.0 -1",  # starts at the end of the 2 s recording
            "u5 rec1 2.5 3.0",
            "u6 rec1 1.5 2.02",  # 20 ms past the end
            "u7 rec1 1.5 2.01",  # 10 ms: clipped
            "u8 rec1 1.0 -2",
        ],
        utt2spk=[f"u{n} s" for n in range(1, 9)],
    )
    corpus = KaldiDataDir(segmented)
    assert [(u.id, u.segment) for u in corpus] == [("u7", (1.5, 2.0))]
    assert reasons(corpus) == {
        "u1": "segment start must be >= 0 s; got -0.5 (segments:1)",
        "u2": "segment end must be after its start 1.0 s, or -1 for the end of the recording; got 1.0 (segments:2)",
        "u3": "segment times must be finite numbers of seconds; got nan to 1.0 (segments:3)",
        "u4": "segment starts at 2.0 s, at or after the end of recording rec1 (2.000 s) (segments:4)",
        "u5": "segment starts at 2.5 s, at or after the end of recording rec1 (2.000 s) (segments:5)",
        "u6": "segment ends at 2.02 s, more than 10 ms after the end of recording rec1 (2.000 s) (segments:6)",
        "u8": "segment end must be after its start 1.0 s, or -1 for the end of the recording; got -2.0 (segments:8)",
        "rec2": "recording in wav.scp is used by no utterance",
    }
    unchecked = KaldiDataDir(segmented, check_audio=False)
    assert [(u.id, u.segment) for u in unchecked] == [("u5", (2.5, 3.0)), ("u6", (1.5, 2.02)), ("u7", (1.5, 2.01))]
    assert sorted(reasons(unchecked)) == ["rec2", "u1", "u2", "u3", "u4", "u8"]  # u4 ends at -1: its length was read


def test_segments_of_unreadable_or_unknown_recordings(segmented: Path) -> None:
    (segmented.parent / "rec2.wav").write_bytes(b"not audio at all" * 10)
    write_data(
        segmented,
        text=["s1-a x", "s2-a y", "s2-b z", "s3 w", "s4 v"],
        utt2spk=["s1-a s1", "s2-a s2", "s2-b s2", "s3 s3", "s4 s4"],
        segments=["s1-a rec1 0 1", "s2-a rec2 0 -1", "s2-b rec2 0.1 0.2", "s3 rec3 0 1"],
    )
    for check in (True, False):
        corpus = KaldiDataDir(segmented, check_audio=check)
        assert ids(corpus) == (["s1-a"] if check else ["s1-a", "s2-b"])
        got = reasons(corpus)
        assert got.pop("s2-a").startswith("unreadable audio: ")  # end -1 needs the header, checked or not
        if check:
            assert got.pop("s2-b").startswith("unreadable audio: ")
        assert got == {"s3": "recording rec3 (segments:4) has no wav.scp entry", "s4": "no segments entry"}


# ---------------------------------------------------------------- commands in wav.scp


def test_sph2pipe_and_cat_read_the_file_directly(tmp_path: Path) -> None:
    if "NIST" not in sf.available_formats():
        pytest.skip("this libsndfile cannot write NIST SPHERE")
    sph = write_wav(tmp_path / "sw01.sph", seconds=1.0, format="NIST", subtype="PCM_16")
    write_wav(tmp_path / "stereo.sph", seconds=0.5, format="NIST", subtype="PCM_16", channels=2)
    write_wav(tmp_path / "plain.wav", seconds=0.5)
    data = write_data(
        tmp_path / "data",
        wav_scp=[
            f"sw01 /opt/kaldi/tools/sph2pipe_v2.5/sph2pipe -f wav -p -c 1 {tmp_path / 'sw01.sph'} |",
            f"sw02 sph2pipe {tmp_path / 'sw01.sph'}|",
            f"st-A sph2pipe -f wav -p -c 1 {tmp_path / 'stereo.sph'} |",
            f"cat1 cat '{tmp_path / 'plain.wav'}' |",
        ],
        text=["sw01-a one", "sw01-b two", "sw02 three", "st-A four", "cat1 five"],
        segments=["sw01-a sw01 0 0.5", "sw01-b sw01 0.5 -1", "sw02 sw02 0 -1", "st-A st-A 0 -1", "cat1 cat1 0 -1"],
    )
    corpus = KaldiDataDir(data)
    utts = {u.id: u for u in corpus}
    assert sorted(utts) == ["cat1", "sw01-a", "sw01-b", "sw02"]
    assert utts["sw01-b"].audio_path == tmp_path / "sw01.sph" and utts["sw01-b"].segment == (0.5, 1.0)
    assert utts["cat1"].audio_path == tmp_path / "plain.wav"
    pcm16 = np.round(sph * 32767) / 32768  # what 16-bit PCM keeps of the ramp
    np.testing.assert_allclose(utts["sw01-b"].load_audio(None), pcm16[4000:], atol=1 / 32768)
    assert reasons(corpus) == {
        "st-A": "wav.scp entry for st-A selects channel 1 of a 2-channel file (sph2pipe -c); channel selection is not supported",
    }


def test_other_commands_are_reported_for_each_utterance(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # every file these commands name exists: only the command is at fault
    write_wav(tmp_path / "a.wav")
    long_name = "x" * 80 + ".wav"
    write_wav(tmp_path / long_name)
    commands = {
        "r1": "sox a.wav -t wav - |",
        "r2": "sph2pipe -f wav -t 0:1 a.wav |",  # a time range: not read
        "r3": "cat a.wav | sox -t wav - -t wav - |",  # a pipeline
        "r4": "cat $DATA/a.wav |",  # a shell variable
        "r5": "sph2pipe -c 1 a.wav 2>/dev/null |",  # a redirection
        "r6": "cat -u a.wav |",  # an option
        "r7": "flac -c -d -s 'a.wav |",  # unbalanced quote
    }
    data = write_data(
        tmp_path / "data",
        wav_scp=[f"{rec} {cmd}" for rec, cmd in commands.items()]
        + ["r8 a.wav", "r9 -", f"r10 sox {long_name} -t wav - |", "r11 cat a.wav |"],
        text=["r1-x one", "r1-y two"] + [f"r{n} words" for n in range(2, 12)],
        segments=["r1-x r1 0 0.5", "r1-y r1 0.5 -1"] + [f"r{n} r{n} 0 -1" for n in range(2, 12)],
    )
    corpus = KaldiDataDir(data)
    assert [(u.id, u.audio_path) for u in corpus] == [("r11", tmp_path / "a.wav"), ("r8", tmp_path / "a.wav")]
    expected = {
        utt: f"wav.scp entry for {rec} is a command ({commands[rec]}); only audio file paths are supported"
        for utt, rec in [("r1-x", "r1"), ("r1-y", "r1")] + [(f"r{n}", f"r{n}") for n in range(2, 8)]
    }
    expected["r9"] = "wav.scp entry for r9 is standard input (-); only audio file paths are supported"
    expected["r10"] = (f"wav.scp entry for r10 is a command (sox {'x' * 66} ... |); "  # long commands are cut
                       "only audio file paths are supported")
    assert reasons(corpus) == expected


def test_an_archive_offset_is_reported(tmp_path: Path) -> None:
    (tmp_path / "wav.ark").write_bytes(b"x" * 100)
    data = write_data(tmp_path / "data", wav_scp=[f"r1 {tmp_path / 'wav.ark'}:42"], text=["r1 words"])
    corpus = KaldiDataDir(data)
    assert ids(corpus) == []
    assert reasons(corpus) == {
        "r1": f"wav.scp entry for r1 is an offset into an archive ({tmp_path / 'wav.ark'}:42); only audio file paths are supported"
    }


# ---------------------------------------------------------------- bad lines and missing pieces


def test_malformed_lines_are_reported_by_file_and_line(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        write_wav(tmp_path / f"{name}.wav")
    data = write_data(
        tmp_path / "data",
        wav_scp=[f"a {tmp_path / 'a.wav'}", "b", f"c {tmp_path / 'c.wav'}"],
        text=["a-1 one", "a-2 two", "a-3 three", "b-1 four", "c-1 five", "c-2"],
        utt2spk=["a-1 s1", "a-2 s1 extra", "a-3 s1", "b-1 s2", "c-1 s3", "c-2 s3"],
        segments=["a-1 a 0 0.5", "a-2 a 0.5 -1", "a-3 a 0.1", "b-1 b 0 -1", "c-1 c zero 0.5", "", "c-2 c 0 0.5"],
    )
    corpus = KaldiDataDir(data)
    assert ids(corpus) == ["a-1"]
    assert reasons(corpus) == {
        "wav.scp:2": "expected '<recording-id> <audio path>'; got 'b'",
        "utt2spk:2": "expected '<utterance-id> <speaker-id>'; got 'a-2 s1 extra'",
        "segments:3": "expected '<utterance-id> <recording-id> <start-seconds> <end-seconds>'; got 'a-3 a 0.1'",
        "segments:5": "segment start and end must be numbers of seconds; got 'c-1 c zero 0.5'",
        "a-2": "the utt2spk entry is malformed (utt2spk:2)",
        "a-3": "the segments entry is malformed (segments:3)",
        "b-1": "the wav.scp entry for b is malformed (wav.scp:2)",
        "c-1": "the segments entry is malformed (segments:5)",
        "c-2": "empty transcript",
    }


def test_missing_audio_and_unused_recordings(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav")
    write_wav(tmp_path / "unused.wav")
    (tmp_path / "bad.wav").write_bytes(b"garbage" * 20)
    data = write_data(
        tmp_path / "data",
        wav_scp=[f"a {tmp_path / 'a.wav'}", f"bad {tmp_path / 'bad.wav'}", f"gone {tmp_path / 'gone.wav'}",
                 f"unused {tmp_path / 'unused.wav'}"],
        text=["a one", "bad two", "gone three", "noaudio four"],
    )
    corpus = KaldiDataDir(data)
    assert ids(corpus) == ["a"]
    got = reasons(corpus)
    assert got.pop("bad").startswith("unreadable audio: ")
    assert got == {
        "gone": f"missing audio {str(tmp_path / 'gone.wav')!r}",
        "noaudio": "no wav.scp entry (without a segments file the utterance id is the recording id)",
        "unused": "listed in wav.scp but not in text",
    }
    assert ids(KaldiDataDir(data, check_audio=False)) == ["a", "bad"]  # headers not read
    assert "skipped 4 entries" in corpus.report()


def test_non_utf8_lines_lose_only_their_entry(plain: Path) -> None:
    text = (plain / "text").read_bytes().splitlines()
    text[1] = b"a1 HELLO \xff\xfe WORLD"  # a1's line
    (plain / "text").write_bytes(b"\r\n".join(text) + b"\r\n")
    (plain / "utt2spk").write_bytes(b"\xef\xbb\xbfa1 alice\na2 \xe9lise\nb1 bob\n")  # a BOM, then a Latin-1 name
    corpus = KaldiDataDir(plain)
    assert [(u.id, u.speaker, u.text) for u in corpus] == [("b1", "bob", "THIRD ONE")]
    got = reasons(corpus)
    assert got.pop("text:2").startswith("line is not UTF-8 (invalid start byte at byte 9)")
    assert got.pop("utt2spk:2").startswith("line is not UTF-8 (invalid continuation byte at byte 3)")
    assert got == {
        "a2": "no utt2spk entry",
        "a1": "listed in wav.scp and utt2spk but not in text",  # its text line was lost: the id is still named
    }


def test_duplicated_ids_keep_the_first(segmented: Path) -> None:
    rec1 = segmented.parent / "rec1.wav"
    write_data(
        segmented,
        wav_scp=[f"rec1 {rec1}", f"rec2 {segmented.parent / 'rec2.wav'}", f"rec1 {segmented.parent / 'other.wav'}"],
        text=["s1-a first", "s1-a again", "s2-a rest"],
        utt2spk=["s1-a s1", "s2-a s2", "s2-a s9"],
        segments=["s1-a rec1 0.5 1.25", "s2-a rec2 0 -1", "s1-a rec1 0 2"],
    )
    corpus = KaldiDataDir(segmented)
    assert corpus.utterances() == [
        Utterance("s1-a", "s1", rec1, "first", segment=(0.5, 1.25)),
        Utterance("s2-a", "s2", segmented.parent / "rec2.wav", "rest", segment=(0.0, 1.0)),
    ]
    assert reasons(corpus) == {
        "wav.scp:3": "duplicate recording id 'rec1' (the first, on line 1, is kept)",
        "text:2": "duplicate utterance id 's1-a' (the first, on line 1, is kept)",
        "utt2spk:3": "duplicate utterance id 's2-a' (the first, on line 2, is kept)",
        "segments:3": "duplicate utterance id 's1-a' (the first, on line 1, is kept)",
    }


def test_problems_restart_with_each_iteration(plain: Path) -> None:
    write_data(plain, text=["a1 x", "zz y"])
    corpus = KaldiDataDir(plain)
    for _ in range(2):
        assert ids(corpus) == ["a1"]
        assert sorted(reasons(corpus)) == ["a2", "b1", "zz"]


def test_required_files(tmp_path: Path) -> None:
    data = write_data(tmp_path / "data", utt2spk=["a s"])
    with pytest.raises(HMMValueError, match=r"root must be a Kaldi data directory holding wav.scp and text; '.*data' has no wav.scp and no text$"):
        KaldiDataDir(data)
    write_data(data, wav_scp=["a a.wav"])
    with pytest.raises(HMMValueError, match=r"holding wav.scp and text; '.*data' has no text$"):
        KaldiDataDir(data)
    (data / "wav.scp").unlink()
    write_data(data, text=["a x"])
    with pytest.raises(HMMValueError, match=r"holding wav.scp and text; '.*data' has no wav.scp$"):
        KaldiDataDir(data)
    (data / "text").unlink()
    (data / "text").mkdir()  # a folder is not the file
    write_data(data, wav_scp=["a a.wav"])
    with pytest.raises(HMMValueError, match=r"has no text$"):
        KaldiDataDir(data)
    with pytest.raises(HMMValueError, match=r"root must be an existing folder; got '.*nowhere'"):
        KaldiDataDir(tmp_path / "nowhere")


def test_empty_files_make_an_empty_corpus(tmp_path: Path) -> None:
    data = write_data(tmp_path / "data", wav_scp=[], text=[], segments=[])
    corpus = KaldiDataDir(data)
    assert corpus.utterances() == [] and corpus.problems == []


def test_nan_end_is_reported_not_compared(segmented: Path) -> None:
    write_data(segmented, text=["u1 x"], utt2spk=["u1 s"], segments=["u1 rec1 0.5 nan"], wav_scp=[f"rec1 {segmented.parent / 'rec1.wav'}"])
    corpus = KaldiDataDir(segmented)
    assert ids(corpus) == []
    assert reasons(corpus) == {"u1": "segment times must be finite numbers of seconds; got 0.5 to nan (segments:1)"}
