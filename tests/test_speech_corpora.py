"""Corpus loaders on tiny corpora written in each real layout, good and bad entries mixed."""

from __future__ import annotations

import logging
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pytorch_hmm.errors import HMMValueError
from pytorch_hmm.speech import KSS, AudioTextFolder, CorpusProblem, LibriSpeech, Utterance

RATE = 16000


def write_audio(path: Path, seconds: float = 0.25, rate: int = RATE) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    sf.write(path, audio, rate)
    return audio


def write_garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not audio" * 10)


def reasons(corpus) -> dict[str, str]:
    return {p.item: p.reason for p in corpus.problems}


# ---------------------------------------------------------------- LibriSpeech


@pytest.fixture
def librispeech(tmp_path: Path) -> Path:
    root = tmp_path / "LibriSpeech"
    chapter = root / "dev-clean" / "84" / "121123"
    for n in range(3):
        write_audio(chapter / f"84-121123-{n:04d}.flac")
    write_garbage(chapter / "84-121123-0003.flac")  # corrupt audio
    write_audio(chapter / "84-121123-0005.flac")  # audio no line names
    (chapter / "84-121123.trans.txt").write_text(
        "84-121123-0000 GO DO YOU HEAR\n"
        "84-121123-0001 BUT IN LESS THAN FIVE MINUTES\n"
        "84-121123-0002\n"  # empty text
        "84-121123-0003 CORRUPT AUDIO HERE\n"
        "84-121123-0004 NO AUDIO FOR THIS LINE\n"
        "garbage line\n"
    )
    other = root / "dev-clean" / "174" / "50561"  # chapter without a transcript
    write_audio(other / "174-50561-0000.flac")
    second = root / "dev-clean" / "1272" / "128104"
    write_audio(second / "1272-128104-0000.flac")
    (second / "1272-128104.trans.txt").write_text("1272-128104-0000 MISTER QUILTER IS THE APOSTLE\n")
    (root / "test-clean").mkdir()
    return tmp_path


def test_librispeech_yields_good_utterances_in_order(librispeech: Path) -> None:
    corpus = LibriSpeech(librispeech, "dev-clean")  # the parent of LibriSpeech/ works
    utts = corpus.utterances()
    assert [u.id for u in utts] == ["1272-128104-0000", "84-121123-0000", "84-121123-0001"]
    first = utts[1]
    assert first == Utterance(
        "84-121123-0000",
        "84",
        librispeech / "LibriSpeech" / "dev-clean" / "84" / "121123" / "84-121123-0000.flac",
        "GO DO YOU HEAR",
    )
    assert first.load_audio().shape == (4000,)


def test_librispeech_reports_every_bad_entry(librispeech: Path, caplog) -> None:
    corpus = LibriSpeech(librispeech / "LibriSpeech", "dev-clean")
    with caplog.at_level(logging.WARNING, logger="pytorch_hmm.speech"):
        list(corpus)
    got = reasons(corpus)
    chapter = librispeech / "LibriSpeech" / "dev-clean" / "84" / "121123"
    assert got["84-121123-0002"] == "empty transcript"
    assert got["84-121123-0003"].startswith("unreadable audio")
    assert got["84-121123-0004"].startswith("missing audio")
    assert got["84-121123-0005"] == "no transcript line in 84-121123.trans.txt"
    assert got["174-50561-0000"] == "no transcript line"
    assert "no transcript file 174-50561.trans.txt" in got.values()
    assert "84-121123.trans.txt:6" in got  # a line is named file:line, as for KSS
    assert len(corpus.problems) == 7
    assert len(caplog.records) == 7
    assert "skipped 7 entries" in corpus.report()


def test_librispeech_without_audio_check_defers_to_loading(librispeech: Path) -> None:
    corpus = LibriSpeech(librispeech, "dev-clean", check_audio=False)
    ids = [u.id for u in corpus]
    assert "84-121123-0003" in ids  # the corrupt file's header was not read
    assert "84-121123-0004" not in ids  # a missing file is still caught


def test_librispeech_problems_restart_with_each_iteration(librispeech: Path) -> None:
    corpus = LibriSpeech(librispeech, "dev-clean")
    list(corpus)
    list(corpus)
    assert len(corpus.problems) == 7


def test_librispeech_empty_subset_is_not_an_error(librispeech: Path) -> None:
    corpus = LibriSpeech(librispeech, "test-clean")
    assert corpus.utterances() == [] and corpus.problems == [] and corpus.report() == ""


def test_librispeech_unknown_subset(librispeech: Path) -> None:
    with pytest.raises(HMMValueError, match=r"subset must be a folder under root .*got 'train-clean-100' \(folders there: \['dev-clean', 'test-clean'\]\)"):
        LibriSpeech(librispeech / "LibriSpeech", "train-clean-100")


def test_corpus_root_must_exist(tmp_path: Path) -> None:
    with pytest.raises(HMMValueError, match="root must be an existing folder; got '.*nowhere'"):
        LibriSpeech(tmp_path / "nowhere", "dev-clean")


# ---------------------------------------------------------------- KSS


def kss_line(path: str, text: str, duration: str = "0.25", english: str = "") -> str:
    decomposed = unicodedata.normalize("NFD", text)
    return f"{path}|{text}|{text}|{decomposed}|{duration}|{english}"


@pytest.fixture
def kss(tmp_path: Path) -> Path:
    root = tmp_path / "kss_root"
    write_audio(root / "kss" / "1" / "1_0000.wav", rate=22050)
    write_audio(root / "kss" / "1" / "1_0001.wav", rate=22050)
    write_garbage(root / "kss" / "2" / "2_0000.wav")
    write_audio(root / "kss" / "2" / "2_0001.wav", rate=22050)
    lines = [
        kss_line("1/1_0000.wav", "그는 괜찮은 척하려고 애쓰는 것 같았다.", english="He seemed to pretend."),
        "1/1_0001.wav|세 시|세 시|" + unicodedata.normalize("NFD", "세 시") + "|1.5|three o'clock",
        kss_line("1/1_0002.wav", "없는 파일"),
        kss_line("2/2_0000.wav", "깨진 파일"),
        "2/2_0001.wav|||||",
        "1/1_0003.wav|too few columns",
    ]
    (root / "transcript.v.1.3.txt").write_text("old|version|file|x|1|y\n", encoding="utf-8")
    (root / "transcript.v.1.4.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_kss_reads_newest_transcript_and_expanded_text(kss: Path) -> None:
    corpus = KSS(kss)
    utts = corpus.utterances()
    assert corpus.transcript.name == "transcript.v.1.4.txt"
    assert [u.id for u in utts] == ["1_0000", "1_0001"]
    assert utts[0].speaker == "kss" and utts[0].audio_path == kss / "kss" / "1" / "1_0000.wav"
    assert utts[0].text == "그는 괜찮은 척하려고 애쓰는 것 같았다."
    assert utts[1].duration == 1.5
    assert utts[1].load_audio(sample_rate=None).shape == (int(0.25 * 22050),)


def test_kss_reports_bad_lines(kss: Path) -> None:
    corpus = KSS(kss)
    list(corpus)
    got = reasons(corpus)
    assert got["1_0002"].startswith("missing audio")
    assert got["2_0000"].startswith("unreadable audio")
    assert got["2_0001"] == "empty transcript"
    assert got["transcript.v.1.4.txt:6"].startswith("expected path|original|expanded|decomposed|duration|english")
    assert len(got) == 4


def test_kss_decomposed_column_and_flat_layout(kss: Path) -> None:
    flat = kss.parent / "flat"
    (kss / "kss").rename(flat)
    (kss / "transcript.v.1.4.txt").rename(flat / "transcript.v.1.4.txt")
    utts = KSS(flat, text="decomposed").utterances()
    assert utts[1].text == unicodedata.normalize("NFD", "세 시")
    assert utts[1].audio_path == flat / "1" / "1_0001.wav"


def test_kss_transcript_versions_sort_numerically(tmp_path: Path) -> None:
    for version in ("1.9", "1.10"):
        (tmp_path / f"transcript.v.{version}.txt").write_text("")
    assert KSS(tmp_path).transcript.name == "transcript.v.1.10.txt"


def test_kss_errors(tmp_path: Path, kss: Path) -> None:
    with pytest.raises(HMMValueError, match="root must hold a KSS transcript transcript.v.1.x.txt; none in"):
        KSS(tmp_path / "kss_root" / "kss")
    with pytest.raises(HMMValueError, match=r"text must be one of \('original', 'expanded', 'decomposed'\); got 'english'"):
        KSS(kss, text="english")
    with pytest.raises(HMMValueError, match="transcript must be an existing file; got '.*nope.txt'"):
        KSS(kss, transcript=kss / "nope.txt")


# ---------------------------------------------------------------- MFA-style folders


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    write_audio(root / "alice" / "a1.wav")
    (root / "alice" / "a1.lab").write_text("hello   world\n")
    write_audio(root / "alice" / "a2.flac")
    (root / "alice" / "a2.txt").write_text("second one")
    (root / "alice" / "a2.lab").write_text("lab wins")
    write_audio(root / "alice" / "a3.wav")  # no transcript
    (root / "alice" / "notes.txt").write_text("a transcript without audio")
    write_audio(root / "bob" / "session1" / "b1.ogg")
    (root / "bob" / "session1" / "b1.lab").write_text("nested folders keep the first as speaker")
    write_audio(root / "bob" / "a1.wav")
    (root / "bob" / "a1.lab").write_text("same name as alice's")
    write_audio(root / "bob" / "b2.wav")
    (root / "bob" / "b2.lab").write_bytes(b"\xff\xfe\xfa bad utf-8")
    write_audio(root / "top.wav")
    (root / "top.lab").write_text("in the root")
    return root


def test_folder_yields_speakers_from_first_subfolder(folder: Path) -> None:
    utts = {u.id: u for u in AudioTextFolder(folder)}
    assert sorted(utts) == ["a1", "a2", "b1", "top"]
    assert utts["a1"].text == "hello world" and utts["a1"].speaker == "alice"
    assert utts["a2"].text == "lab wins" and utts["a2"].audio_path.suffix == ".flac"
    assert utts["b1"].speaker == "bob" and utts["b1"].audio_path.suffix == ".ogg"
    assert utts["top"].speaker == "corpus"


def test_folder_reports_bad_entries(folder: Path) -> None:
    corpus = AudioTextFolder(folder)
    list(corpus)
    got = reasons(corpus)
    assert got["a3"] == "no transcript a3.lab or a3.txt beside a3.wav"
    assert got[str(folder / "alice" / "notes.txt")] == "transcript without audio"
    assert got["a1"].endswith(f"has the same name as {folder / 'alice' / 'a1.wav'}")
    assert got["b2"].startswith("unreadable transcript")
    assert len(got) == 4
    assert all(isinstance(p, CorpusProblem) for p in corpus.problems)


def test_folder_root_given_as_dot_names_the_speaker(folder: Path, monkeypatch) -> None:
    monkeypatch.chdir(folder)
    utts = {u.id: u for u in AudioTextFolder(".")}
    assert utts["top"].speaker == "corpus" and utts["a1"].speaker == "alice"


def refuse_listing(monkeypatch, refused: Path) -> None:
    """Make listing ``refused`` fail as an unreadable folder would (tests run as root here)."""
    import os

    real_scandir, real_iterdir = os.scandir, Path.iterdir

    def scandir(path="."):
        if Path(path) == refused:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    def iterdir(self):
        if self == refused:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(Path, "iterdir", iterdir)


def test_unlistable_folders_are_reported_and_the_rest_read(folder: Path, librispeech: Path, monkeypatch) -> None:
    refuse_listing(monkeypatch, folder / "bob")
    corpus = AudioTextFolder(folder)
    assert sorted(u.id for u in corpus) == ["a1", "a2", "top"]
    assert reasons(corpus)[str(folder / "bob")] == "folder cannot be listed: Permission denied"
    monkeypatch.undo()
    refuse_listing(monkeypatch, librispeech / "LibriSpeech" / "dev-clean" / "84")
    corpus = LibriSpeech(librispeech, "dev-clean")
    assert [u.id for u in corpus] == ["1272-128104-0000"]
    unlisted = str(librispeech / "LibriSpeech" / "dev-clean" / "84")
    assert reasons(corpus)[unlisted] == "folder cannot be listed: Permission denied"


def test_librispeech_upper_case_suffix(librispeech: Path) -> None:
    chapter = librispeech / "LibriSpeech" / "dev-clean" / "1272" / "128104"
    (chapter / "1272-128104-0000.flac").rename(chapter / "1272-128104-0000.FLAC")
    utts = {u.id: u for u in LibriSpeech(librispeech, "dev-clean")}
    assert utts["1272-128104-0000"].audio_path.name == "1272-128104-0000.FLAC"
    assert utts["1272-128104-0000"].load_audio().shape == (RATE // 4,)


# ---------------------------------------------------------------- one bad byte (issue "Reliability")


def test_kss_one_invalid_utf8_line_loses_only_that_line(kss: Path) -> None:
    transcript = kss / "transcript.v.1.4.txt"
    lines = transcript.read_bytes().splitlines()
    lines.insert(1, b"1/1_0009.wav|\xff\xfe bad|\xff|x|1.0|y")  # line 2 is not UTF-8
    transcript.write_bytes(b"\r\n".join(lines) + b"\r\n")  # and CRLF line ends
    corpus = KSS(kss)
    assert [u.id for u in corpus.utterances()] == ["1_0000", "1_0001"]  # both good lines kept
    got = reasons(corpus)
    assert got["transcript.v.1.4.txt:2"].startswith("line is not UTF-8")
    assert got["transcript.v.1.4.txt:7"].startswith("expected path|original")  # numbering unchanged
    assert len(got) == 5


def test_librispeech_one_invalid_utf8_line_loses_only_that_utterance(librispeech: Path) -> None:
    chapter = librispeech / "LibriSpeech" / "dev-clean" / "84" / "121123"
    transcript = chapter / "84-121123.trans.txt"
    transcript.write_bytes(transcript.read_bytes().replace(b"GO DO YOU HEAR", b"GO DO \xe9 HEAR"))
    corpus = LibriSpeech(librispeech, "dev-clean")
    assert [u.id for u in corpus.utterances()] == ["1272-128104-0000", "84-121123-0001"]
    got = reasons(corpus)
    assert got["84-121123.trans.txt:1"].startswith("line is not UTF-8")
    assert got["84-121123-0000"].startswith("no transcript line")  # its audio is reported, not lost silently


def test_a_named_pipe_transcript_is_reported_not_read(tmp_path: Path) -> None:
    import os
    import threading

    root = tmp_path / "corpus"
    write_audio(root / "alice" / "a1.wav")
    (root / "alice" / "a1.lab").write_text("hello world")
    write_audio(root / "alice" / "a2.wav")
    os.mkfifo(root / "alice" / "a2.lab")  # used to block the walk forever
    result = {}
    worker = threading.Thread(target=lambda: result.update(u=AudioTextFolder(root).utterances()))
    worker.daemon = True
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the folder walk blocked on a named pipe"
    assert [u.id for u in result["u"]] == ["a1"]
    corpus = AudioTextFolder(root)
    assert [u.id for u in corpus.utterances()] == ["a1"]
    assert reasons(corpus)["a2"] == "transcript is not a regular file"


def test_duplicate_ids_are_yielded_once_and_reported(kss: Path) -> None:
    transcript = kss / "transcript.v.1.4.txt"
    text = transcript.read_text(encoding="utf-8")
    transcript.write_text(text + kss_line("1/1_0000.wav", "같은 아이디") + "\n", encoding="utf-8")
    corpus = KSS(kss)
    utts = corpus.utterances()
    assert [u.id for u in utts] == ["1_0000", "1_0001"]
    assert utts[0].text == "그는 괜찮은 척하려고 애쓰는 것 같았다."  # the first is kept
    assert [p.reason for p in corpus.problems if p.item == "1_0000"][0].startswith("duplicate utterance id")


def test_a_punctuation_only_transcript_is_reported(librispeech: Path) -> None:
    chapter = librispeech / "LibriSpeech" / "dev-clean" / "1272" / "128104"
    (chapter / "1272-128104.trans.txt").write_text("1272-128104-0000 ... ?! --\n")
    corpus = LibriSpeech(librispeech, "dev-clean")
    assert "1272-128104-0000" not in [u.id for u in corpus.utterances()]
    assert reasons(corpus)["1272-128104-0000"].startswith("transcript has no words")


def test_symlinked_speaker_folders_are_read_and_loops_reported(tmp_path: Path) -> None:
    import os

    store = tmp_path / "store" / "carol"
    write_audio(store / "c1.wav")
    (store / "c1.lab").write_text("good morning")
    root = tmp_path / "corpus"
    write_audio(root / "alice" / "a1.wav")
    (root / "alice" / "a1.lab").write_text("hello world")
    os.symlink(store, root / "carol")  # used to be ignored without a report
    os.symlink(root / "alice", root / "alice" / "loop")  # a loop back into the corpus
    corpus = AudioTextFolder(root)
    utts = {u.id: u.speaker for u in corpus.utterances()}
    assert utts == {"a1": "alice", "c1": "carol"}
    assert any("is a link to" in p.reason for p in corpus.problems)


def test_a_truncated_wav_is_an_audio_error(tmp_path: Path) -> None:
    from pytorch_hmm.errors import AudioError
    from pytorch_hmm.speech import audio_info, load_audio

    path = tmp_path / "cut.wav"
    write_audio(path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # half the samples gone; the header still lists them all
    for read in (audio_info, load_audio):  # load_audio used to return the half silently
        with pytest.raises(AudioError, match=r"is truncated: its header declares \d+ bytes of samples, the file holds \d+"):
            read(path)
    good = tmp_path / "good.wav"
    write_audio(good)
    assert audio_info(good).num_samples == load_audio(good, None)[0].shape[0] > 0  # an intact file passes


def test_a_wav_whose_name_is_not_utf8_is_read(tmp_path: Path) -> None:
    import os

    from pytorch_hmm.speech import audio_info, load_audio

    root = tmp_path / "corpus"
    (root / "dave").mkdir(parents=True)
    write_audio(root / "dave" / "tmp.wav")
    raw = os.fsencode(root / "dave") + b"/caf\xe9.wav"  # Latin-1 bytes in a Linux file name
    os.rename(os.fsencode(root / "dave" / "tmp.wav"), raw)
    with open(os.fsencode(root / "dave") + b"/caf\xe9.lab", "wb") as fh:
        fh.write(b"good evening")
    path = Path(os.fsdecode(raw))
    assert audio_info(path).num_samples == load_audio(path, None)[0].shape[0] > 0  # was "corrupt"
    corpus = AudioTextFolder(root)
    assert [u.text for u in corpus.utterances()] == ["good evening"]
    assert corpus.problems == []


def test_utterance_segment_reads_its_slice_of_the_recording(tmp_path):
    """A ``segment`` (Kaldi ``segments``) reads exactly its samples: offset and duration in
    seconds, resampled like a whole file; a segment past the end of the audio is an AudioError."""
    from pytorch_hmm.errors import AudioError
    from pytorch_hmm.speech import load_audio

    rate = 8000
    ramp = (np.arange(rate * 2) / (rate * 2)).astype(np.float32) - 0.5  # 2 s, each sample distinct
    path = tmp_path / "rec.wav"
    sf.write(path, ramp, rate, subtype="FLOAT")
    utt = Utterance("u1", "s", path, "a b", segment=(0.5, 1.25))
    got = utt.load_audio(None)
    np.testing.assert_array_equal(got, ramp[4000:10000])
    audio, got_rate = utt.read_audio(16000)
    assert got_rate == 16000 and audio.shape == (12000,)
    tail, _ = load_audio(path, None, offset=1.5)  # to the end
    np.testing.assert_array_equal(tail, ramp[12000:])
    clipped, _ = load_audio(path, None, offset=1.5, duration=9.0)
    assert clipped.shape == (4000,)
    with pytest.raises(AudioError, match=r"has 2\.000 s of audio; the segment starts at offset=2\.5 s"):
        Utterance("u2", "s", path, "a", segment=(2.5, 3.0)).load_audio(None)
    with pytest.raises(HMMValueError, match=r"offset must be a finite number of seconds >= 0; got -1"):
        load_audio(path, None, offset=-1)
    with pytest.raises(HMMValueError, match=r"duration must be a positive finite number of seconds; got 0"):
        load_audio(path, None, duration=0)
