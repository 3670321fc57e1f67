"""Synthetic corpora: the numpy synthesiser's exact timings, flite / espeak-ng phone timings,
the three corpus layouts read back by the loaders, reference alignment files, errors."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from pytorch_hmm.errors import HMMValueError
from pytorch_hmm.speech import synthetic
from pytorch_hmm.speech.lexicon import Lexicon
from pytorch_hmm.speech.synthetic import (
    PhoneInterval,
    build_corpus,
    phone_durations,
    read_phone_intervals,
    synthesize,
    synthesize_espeak,
    synthesize_flite,
    synthesize_phones,
    write_phone_intervals,
)

needs_flite = pytest.mark.skipif(not synthetic.flite_available(), reason="flite is not installed")
needs_espeak = pytest.mark.skipif(not synthetic.espeak_available(), reason="libespeak-ng cannot be loaded")

TINY = Lexicon({
    "hello": [["HH", "AH", "L", "OW"]], "world": [["W", "ER", "L", "D"]],
    "she": [["SH", "IY"]], "sells": [["S", "EH", "L", "Z"]], "big": [["B", "IH", "G"]],
    "dogs": [["D", "AO", "G", "Z"]],
})
ENGLISH = ["Hello world.", "She sells big dogs!", "Hello, big world"]
KOREAN = ["안녕하세요.", "학교에 갑니다"]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def check_tiling(intervals, num_samples: int, rate: int) -> None:
    """Contiguous from 0, positive lengths, last end == the audio length (within one sample)."""
    assert intervals and all(iv.phone for iv in intervals)
    assert intervals[0].start == 0.0
    for a, b in zip(intervals, intervals[1:]):
        assert a.end == b.start
    assert all(iv.end > iv.start >= 0 for iv in intervals)
    assert abs(intervals[-1].end - num_samples / rate) <= 1.0 / rate


def assert_same_intervals(got, expected, tol: float = 1e-6) -> None:
    """Equal phones and times within the 6 decimals the TSV files keep."""
    assert [iv.phone for iv in got] == [iv.phone for iv in expected]
    np.testing.assert_allclose([(iv.start, iv.end) for iv in got], [(iv.start, iv.end) for iv in expected], atol=tol)


def conjoining_jamo(text: str) -> str:
    """Hangul syllables -> conjoining jamo by the Unicode arithmetic (independent of unicodedata)."""
    out = []
    for ch in text:
        c = ord(ch) - 0xAC00
        if 0 <= c < 11172:
            out += [chr(0x1100 + c // 588), chr(0x1161 + c % 588 // 28)] + ([chr(0x11A7 + c % 28)] if c % 28 else [])
        else:
            out.append(ch)
    return "".join(out)


def interior(audio: np.ndarray, rate: int, iv: PhoneInterval, margin: float = 0.01) -> np.ndarray:
    return audio[int((iv.start + margin) * rate): int((iv.end - margin) * rate)]


# ----------------------------------------------------------------------------- numpy synthesiser


def test_numpy_boundaries_are_the_requested_durations() -> None:
    phones = ["sil", "HH", "AH", "L", "OW", "sil"]
    durations = [0.2, 0.06, 0.09, 0.07, 0.15, 0.1]
    syn = synthesize_phones(phones, durations, sample_rate=16000, seed=0)
    assert syn.sample_rate == 16000 and syn.audio.dtype == np.float32
    assert len(syn.audio) == round(sum(durations) * 16000)
    assert list(syn.phones) == phones
    assert [iv.end for iv in syn.intervals] == pytest.approx(np.cumsum(durations), abs=1e-12)
    check_tiling(syn.intervals, len(syn.audio), 16000)
    assert np.isfinite(syn.audio).all() and np.abs(syn.audio).max() < 1.0


@settings(max_examples=15)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=6), st.sampled_from([8000, 16000, 22050]))
def test_numpy_boundaries_fall_on_the_rounded_cumulative_samples(frames, rate) -> None:
    durations = np.array(frames) * 0.005
    phones = ["AA", "S", "sil", "T", "zz", "M"][: len(frames)]
    syn = synthesize_phones(phones, durations, sample_rate=rate, seed=1)
    ends = np.round(np.cumsum(durations) * rate)
    assert len(syn.audio) == ends[-1]
    assert [iv.end * rate for iv in syn.intervals] == pytest.approx(ends, abs=1e-6)
    check_tiling(syn.intervals, len(syn.audio), rate)


def test_numpy_energy_changes_at_the_boundaries() -> None:
    """Silence is quiet right up to a vowel's start and again right after its end."""
    syn = synthesize_phones(["sil", "AA", "sil", "IY", "sil"], [0.2, 0.2, 0.2, 0.2, 0.2], seed=2)
    x, rate = syn.audio, syn.sample_rate
    for iv in syn.intervals:
        inside = rms(interior(x, rate, iv, margin=0.006))
        if iv.phone == "sil":
            assert inside < 0.01
        else:
            assert inside > 0.05


def test_numpy_is_deterministic_with_a_seed() -> None:
    args = (["sil", "S", "IY", "K", "a", "sil"], [0.1, 0.08, 0.12, 0.07, 0.1, 0.1])
    a = synthesize_phones(*args, seed=5)
    b = synthesize_phones(*args, seed=5)
    c = synthesize_phones(*args, seed=6)
    d = synthesize_phones(*args, seed=5, speaker="other")
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.intervals == b.intervals == c.intervals
    assert not np.allclose(a.audio, c.audio) and not np.allclose(a.audio, d.audio)


def mfcc_by_phone(syn, margin: float = 0.03) -> dict[str, np.ndarray]:
    import librosa

    feats = librosa.feature.mfcc(y=syn.audio, sr=syn.sample_rate, n_mfcc=13, n_fft=400, hop_length=160).T
    centres = np.arange(len(feats)) * 160 / syn.sample_rate
    out: dict[str, list] = {}
    for iv in syn.intervals:
        keep = (centres >= iv.start + margin) & (centres <= iv.end - margin)
        out.setdefault(iv.phone, []).append(feats[keep])
    return {p: np.concatenate(f) for p, f in out.items()}


def test_numpy_phone_classes_are_separable_in_mfcc_space() -> None:
    phones = ["sil"] + ["IY", "AA", "S", "M", "ga", "eo"] * 3 + ["sil"]
    syn = synthesize_phones(phones, [0.15] * len(phones), seed=4)
    frames = mfcc_by_phone(syn)
    means = {p: f.mean(axis=0) for p, f in frames.items()}
    spread = max(np.sqrt(((f - means[p]) ** 2).sum(axis=1).mean()) for p, f in frames.items())
    names = sorted(means)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.linalg.norm(means[a] - means[b]) > 2 * spread, (a, b)


def test_numpy_unknown_phones_get_a_fixed_pattern() -> None:
    """Any inventory works; a name sounds the same in every utterance and every process."""
    a = synthesize_phones(["eo", "kk", "eo"], [0.15, 0.1, 0.15], seed=0)
    b = synthesize_phones(["kk", "eo"], [0.1, 0.15], seed=9)
    fa, fb = mfcc_by_phone(a), mfcc_by_phone(b)
    assert np.linalg.norm(fa["eo"].mean(0) - fb["eo"].mean(0)) < 0.5 * np.linalg.norm(
        fa["eo"].mean(0) - fa["kk"].mean(0))
    assert synthetic._describe("eo").kind == "vowel"
    # the pattern comes from the name alone, not from Python's per-process string hashing
    code = "from pytorch_hmm.speech.synthetic import _describe; print(repr(_describe('eo')), repr(_describe('kk')))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout.strip()
    assert other == f"{synthetic._describe('eo')!r} {synthetic._describe('kk')!r}"


def test_phone_durations_are_whole_frames_by_class() -> None:
    phones = ["sil", "AA", "T", "AY", "S"] * 20
    d = phone_durations(phones, seed=3)
    frames = d / 0.01
    np.testing.assert_allclose(frames, np.round(frames), atol=1e-9)
    assert frames.min() >= 3
    np.testing.assert_array_equal(d, phone_durations(phones, seed=3))
    by = {p: d[[i for i, q in enumerate(phones) if q == p]].mean() for p in set(phones)}
    assert by["sil"] > by["AY"] > by["AA"] > by["T"]
    assert phone_durations(["AA"] * 5, seed=0, frame_shift=0.02, min_frames=6).min() >= 0.12


def test_synthesize_numpy_text_uses_the_lexicon_and_resamples() -> None:
    syn = synthesize("Hello, world!", engine="numpy", lexicon=TINY, sample_rate=8000, seed=1)
    assert syn.sample_rate == 8000
    assert syn.phones == ("sil", "HH", "AH", "L", "OW", "W", "ER", "L", "D", "sil")
    check_tiling(syn.intervals, len(syn.audio), 8000)
    oov = synthesize("hello zyzzyva", engine="numpy", lexicon=TINY)
    assert "spn" in oov.phones and "zyzzyva" in TINY.oov_report


def test_synthesize_numpy_korean_uses_the_korean_g2p() -> None:
    syn = synthesize("안녕하세요", engine="numpy")
    expected = Lexicon.korean().transcribe("안녕하세요").phones
    assert syn.phones == ("sil",) + expected + ("sil",)


# ----------------------------------------------------------------------------- flite and espeak-ng


@needs_flite
def test_flite_timings_tile_the_audio_with_cmudict_phones() -> None:
    syn = synthesize_flite("Hello world. She sells big dogs.")
    assert syn.sample_rate == 16000
    check_tiling(syn.intervals, len(syn.audio), 16000)
    words = Lexicon.from_cmudict(stress="fold")
    expected = [p for w in ("hello", "world", "she", "sells", "big", "dogs") for p in words[w][0].phones]
    assert [p for p in syn.phones if p != "sil"] == expected
    x = syn.audio
    quiet = [rms(interior(x, 16000, iv)) for iv in syn.intervals if iv.phone == "sil" and iv.duration > 0.05]
    loud = [rms(interior(x, 16000, iv, 0.0)) for iv in syn.intervals if iv.phone in ("OW", "ER", "IY", "EH", "IH", "AO")]
    assert quiet and max(quiet) < 0.1 * np.median(loud)


@needs_flite
def test_flite_kal_voice_is_8_khz_and_unknown_voices_fail() -> None:
    syn = synthesize_flite("Hello world.", voice="kal")
    assert syn.sample_rate == 8000
    check_tiling(syn.intervals, len(syn.audio), 8000)
    with pytest.raises(HMMValueError, match="voice must be one of flite's voices"):
        synthesize_flite("Hello", voice="nobody")
    with pytest.raises(HMMValueError, match="engine 'flite' speaks English only"):
        synthesize_flite("안녕하세요")


@needs_espeak
@pytest.mark.parametrize("text, voice", [("Hello world, she sells big dogs.", None), ("안녕하세요. 학교에 갑니다.", None),
                                         ("Hello world, big dogs.", "en")])
def test_espeak_timings_tile_the_audio(text: str, voice) -> None:
    syn = synthesize_espeak(text, voice)
    assert syn.sample_rate == 22050
    check_tiling(syn.intervals, len(syn.audio), 22050)
    assert len([p for p in syn.phones if p != "sil"]) >= 8
    assert not any(p.startswith(("'", ",")) for p in syn.phones)
    pauses = [rms(interior(syn.audio, 22050, iv)) for iv in syn.intervals[1:-1] if iv.phone == "sil" and iv.duration > 0.05]
    assert pauses and max(pauses) < 0.1 * rms(syn.audio)  # the clause pause is where the audio is silent


def espeak_translation(text: str, voice: str) -> list[str]:
    """The phonemes espeak-ng's text translation gives (``espeak_TextToPhonemes``, no synthesis)."""
    with synthetic._ESPEAK_LOCK:
        lib = synthetic._espeak().lib
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        assert lib.espeak_SetVoiceByName(voice.encode()) == 0
        text_ptr = ctypes.c_char_p(text.encode() + b"\0")
        out = []
        while text_ptr.value:  # one clause per call; bits 8-23: the separator between phonemes
            out += lib.espeak_TextToPhonemes(ctypes.byref(text_ptr), 1, ord(" ") << 8).decode().split()
    return [p.lstrip("',%=") for p in out]


@needs_espeak
@pytest.mark.parametrize("text, voice", [("Hello world, she sells big dogs.", "en-us"), ("안녕하세요. 학교에 갑니다.", "ko")])
def test_espeak_event_phones_follow_the_translation(text: str, voice: str) -> None:
    """Phoneme events, in order, are the translated phonemes less the few with no samples."""
    syn = synthesize_espeak(text, voice)
    expected = espeak_translation(text, voice)
    got = [p for p in syn.phones if p != "sil"]
    rest = iter(expected)
    assert all(p in rest for p in got)  # a subsequence
    assert len(got) >= len(expected) - 2


@needs_espeak
def test_espeak_unknown_voice() -> None:
    with pytest.raises(HMMValueError, match="voice must be an espeak-ng voice name"):
        synthesize_espeak("hello", voice="no-such-voice")


@pytest.mark.skipif(not (synthetic.flite_available() or synthetic.espeak_available()), reason="no external engine")
def test_auto_engine_prefers_the_installed_tools() -> None:
    syn = synthesize("Hello world.", engine="auto", sample_rate=16000)
    assert syn.sample_rate == 16000 and syn.phones[0] == "sil"
    check_tiling(syn.intervals, len(syn.audio), 16000)


def test_auto_engine_falls_back_to_numpy(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(synthetic.engine, "flite_available", lambda: False)
    monkeypatch.setattr(synthetic.engine, "espeak_available", lambda: False)
    corpus = build_corpus(tmp_path, ENGLISH[:1], lexicon=TINY)
    assert corpus.engine == "numpy" and corpus.sample_rate == 16000


# ----------------------------------------------------------------------------- corpora


def test_build_folder_layout_and_read_it_back(tmp_path: Path) -> None:
    from pytorch_hmm.speech import AudioTextFolder

    corpus = build_corpus(tmp_path, ENGLISH, layout="folder", engine="numpy", lexicon=TINY,
                          speaker=["anna", "bob", "anna"], seed=3)
    assert corpus.layout == "folder" and len(corpus) == 3
    names = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert names == sorted([
        "anna/anna_0000.wav", "anna/anna_0000.lab", "bob/bob_0001.wav", "bob/bob_0001.lab",
        "anna/anna_0002.wav", "anna/anna_0002.lab",
        "alignments/anna_0000.tsv", "alignments/bob_0001.tsv", "alignments/anna_0002.tsv"])
    assert (tmp_path / "bob" / "bob_0001.lab").read_text() == "She sells big dogs!\n"
    loaded = AudioTextFolder(tmp_path).utterances()
    assert [(u.id, u.speaker, u.text) for u in loaded] == [
        ("anna_0000", "anna", "Hello world."), ("anna_0002", "anna", "Hello, big world"),
        ("bob_0001", "bob", "She sells big dogs!")]
    for utt in corpus:
        audio, rate = sf.read(utt.audio_path)
        assert rate == 16000 and abs(len(audio) / rate - utt.intervals[-1].end) < 1e-9
        assert_same_intervals(read_phone_intervals(utt.alignment_path), utt.intervals)
    a, b = (corpus.utterances[i].intervals for i in (0, 2))
    assert a[1].phone == b[1].phone == "HH"


def test_build_mixed_language_corpus_picks_the_lexicon_per_text(tmp_path: Path, caplog) -> None:
    from pytorch_hmm.speech import korean

    corpus = build_corpus(tmp_path, ["hello world", "안녕하세요", "hello zzyzxq"], engine="numpy")
    english, hangul, oov = (tuple(iv.phone for iv in u.intervals) for u in corpus)
    assert english == ("sil", "HH", "AH", "L", "OW", "W", "ER", "L", "D", "sil")
    assert hangul == ("sil", *korean.g2p("안녕하세요"), "sil")
    assert oov == ("sil", "HH", "AH", "L", "OW", "spn", "sil")
    assert "spk1_0002: no pronunciation for zzyzxq; synthesised as 'spn'" in caplog.text


def test_build_librispeech_layout_and_read_it_back(tmp_path: Path) -> None:
    from pytorch_hmm.speech import LibriSpeech

    corpus = build_corpus(tmp_path, ENGLISH, layout="librispeech", engine="numpy", lexicon=TINY,
                          speaker="84", subset="dev-clean", chapter="121123", sample_rate=8000)
    chapter = tmp_path / "dev-clean" / "84" / "121123"
    assert sorted(p.name for p in chapter.iterdir()) == [
        "84-121123-0000.flac", "84-121123-0001.flac", "84-121123-0002.flac", "84-121123.trans.txt"]
    assert (chapter / "84-121123.trans.txt").read_text() == (
        "84-121123-0000 HELLO WORLD\n84-121123-0001 SHE SELLS BIG DOGS\n84-121123-0002 HELLO BIG WORLD\n")
    assert sorted(p.name for p in (tmp_path / "alignments").iterdir()) == [
        "84-121123-0000.tsv", "84-121123-0001.tsv", "84-121123-0002.tsv"]
    assert sf.info(str(chapter / "84-121123-0001.flac")).format == "FLAC"
    loaded = LibriSpeech(tmp_path, "dev-clean").utterances()
    assert [(u.id, u.speaker, u.text) for u in loaded] == [
        ("84-121123-0000", "84", "HELLO WORLD"), ("84-121123-0001", "84", "SHE SELLS BIG DOGS"),
        ("84-121123-0002", "84", "HELLO BIG WORLD")]
    assert corpus.sample_rate == 8000
    for utt, got in zip(corpus, loaded):
        assert len(got.load_audio(None)) / 8000 == pytest.approx(utt.intervals[-1].end, abs=1e-9)


def test_build_kss_layout_and_read_it_back(tmp_path: Path) -> None:
    from pytorch_hmm.speech import KSS

    corpus = build_corpus(tmp_path, KOREAN, layout="kss", engine="numpy", seed=1)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "alignments/1_0000.tsv", "alignments/1_0001.tsv", "kss/1/1_0000.wav", "kss/1/1_0001.wav",
        "transcript.v.1.4.txt"]
    lines = (tmp_path / "transcript.v.1.4.txt").read_text(encoding="utf-8").splitlines()
    columns = [line.split("|") for line in lines]
    assert all(len(c) == 6 for c in columns)
    assert [c[0] for c in columns] == ["1/1_0000.wav", "1/1_0001.wav"]
    assert [c[1] for c in columns] == [c[2] for c in columns] == KOREAN
    assert [c[3] for c in columns] == [conjoining_jamo(t) for t in KOREAN]
    assert columns[0][3][:3] == "\u110b\u1161\u11ab"  # 안 = ㅇ ㅏ ㄴ
    assert [float(c[4]) for c in columns] == pytest.approx([u.duration for u in corpus], abs=0.005)
    assert [c[5] for c in columns] == ["", ""]
    loaded = KSS(tmp_path).utterances()
    assert [(u.id, u.speaker, u.text) for u in loaded] == [("1_0000", "kss", KOREAN[0]), ("1_0001", "kss", KOREAN[1])]
    assert [u.duration for u in loaded] == [float(c[4]) for c in columns]
    decomposed = KSS(tmp_path, text="decomposed").utterances()
    assert decomposed[0].text == columns[0][3]
    phones = corpus.alignments["1_0000"]
    assert [iv.phone for iv in phones] == ["sil", *Lexicon.korean().transcribe(KOREAN[0]).phones, "sil"]


@needs_espeak
def test_build_kss_with_espeak(tmp_path: Path) -> None:
    corpus = build_corpus(tmp_path, KOREAN[:1], layout="kss", engine="espeak")
    utt = corpus.utterances[0]
    info = sf.info(str(utt.audio_path))
    assert corpus.engine == "espeak" and info.samplerate == 22050
    check_tiling(utt.intervals, info.frames, 22050)


@needs_flite
def test_build_folder_with_flite(tmp_path: Path) -> None:
    corpus = build_corpus(tmp_path, ENGLISH[:2], engine="flite")
    for utt in corpus:
        info = sf.info(str(utt.audio_path))
        check_tiling(read_phone_intervals(utt.alignment_path), info.frames, info.samplerate)


def test_build_corpus_progress_bar(tmp_path: Path, capsys) -> None:
    build_corpus(tmp_path, ENGLISH[:2], engine="numpy", lexicon=TINY, progress=True)
    assert "synthesising (numpy)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- reference files


def test_phone_interval_tsv_round_trip(tmp_path: Path) -> None:
    intervals = [PhoneInterval("sil", 0.0, 0.125), PhoneInterval("HH", 0.125, 0.2), PhoneInterval("a#", 0.2, 1.5)]
    path = tmp_path / "ref.tsv"
    write_phone_intervals(path, intervals)
    assert path.read_text() == "0.000000\t0.125000\tsil\n0.125000\t0.200000\tHH\n0.200000\t1.500000\ta#\n"
    assert read_phone_intervals(path) == intervals
    assert PhoneInterval("x", 1, 2).duration == 1.0


@pytest.mark.parametrize("content, message", [
    ("0.0\t0.1\n", "line 1: expected start<TAB>end<TAB>phone .*3 tab-separated columns, got 2"),
    ("0.0\t0.1\tsil\nzero\t0.2\tAA\n", "line 2: expected start<TAB>end<TAB>phone"),
    ("0.3\t0.2\tAA\n", "line 1: .*0 <= start <= end"),
])
def test_read_phone_intervals_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(HMMValueError, match=message):
        read_phone_intervals(path)
    with pytest.raises(HMMValueError, match="cannot be read"):
        read_phone_intervals(tmp_path / "missing.tsv")


def test_interval_and_writer_errors(tmp_path: Path) -> None:
    with pytest.raises(HMMValueError, match="phone must be a non-empty name without whitespace"):
        PhoneInterval("a b", 0, 1)
    with pytest.raises(HMMValueError, match=r"finite 0 <= start <= end seconds; got nan"):
        PhoneInterval("a", float("nan"), 1)
    with pytest.raises(HMMValueError, match=r"intervals\[0\] must be a PhoneInterval; got tuple"):
        write_phone_intervals(tmp_path / "x.tsv", [("a", 0, 1)])


def test_old_import_paths_keep_working() -> None:
    """The split into one module per engine keeps every public name (and the private ones tests use)."""
    from pytorch_hmm import speech
    from pytorch_hmm.alignment import segments

    for name in synthetic.__all__ + ["_describe", "_espeak", "_espeak_libraries", "_ESPEAK_LOCK", "ESPEAK_VOICES"]:
        assert hasattr(synthetic, name), name
    assert synthetic.PhoneInterval is speech.PhoneInterval is segments.PhoneInterval
    assert issubclass(PhoneInterval, segments.Segment) and PhoneInterval("a", 0, 1).phone == "a"
    assert synthetic.read_phone_intervals is segments.read_phone_intervals


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("phones, durations, message", [
    ("AA", [0.1], "phones must be a non-empty sequence of phone names"),
    ([], [], "phones must be a non-empty sequence of phone names"),
    (["AA", ""], [0.1, 0.1], r"phones\[1\] must be a non-empty name without whitespace"),
    (["AA", "S"], [0.1], "durations must be a sequence of 2 seconds, one per phone; got shape"),
    (["AA", "S"], [0.1, float("nan")], "durations must be finite and > 0 seconds"),
    (["AA", "S"], [0.1, 0.0], "durations must be finite and > 0 seconds"),
    (["AA", "S"], [0.1, 1e-5], r"durations\[1\] = 1e-05 s is shorter than one sample at 16000 Hz"),
])
def test_synthesize_phones_errors(phones, durations, message: str) -> None:
    with pytest.raises(HMMValueError, match=message):
        synthesize_phones(phones, durations)


def test_synthesis_argument_errors() -> None:
    with pytest.raises(HMMValueError, match="sample_rate must be a positive integer number of Hz; got 0"):
        synthesize_phones(["AA"], [0.1], sample_rate=0)
    with pytest.raises(HMMValueError, match="frame_shift must be a positive number of seconds"):
        phone_durations(["AA"], frame_shift=0)
    with pytest.raises(HMMValueError, match="min_frames must be an integer >= 1"):
        phone_durations(["AA"], min_frames=0)
    with pytest.raises(HMMValueError, match="text must contain at least one word; got '...'"):
        synthesize(" ... ", engine="numpy", lexicon=TINY)
    with pytest.raises(HMMValueError, match="text must be a str; got int"):
        synthesize(3, engine="numpy")
    with pytest.raises(HMMValueError, match=r"engine must be one of \('auto', 'flite', 'espeak', 'numpy'\); got 'sapi'"):
        synthesize("hello", engine="sapi")


@pytest.mark.parametrize("kwargs, message", [
    (dict(layout="timit"), r"layout must be one of \('folder', 'librispeech', 'kss'\); got 'timit'"),
    (dict(engine="festival"), r"engine must be one of .*; got 'festival'"),
    (dict(texts=[]), "texts must be a non-empty sequence of strings"),
    (dict(texts="hello world"), r"texts must be a non-empty sequence of strings \(not one string\)"),
    (dict(texts=["hello", "  "]), r"texts\[1\] must contain at least one word; got ''"),
    (dict(texts=["hello", 5]), r"texts\[1\] must be a str; got int"),
    (dict(layout="kss", texts=["a|b"]), r"texts\[0\] must not contain '\|'"),
    (dict(layout="kss", speaker="x"), "speaker must be None for layout='kss'"),
    (dict(speaker=["a"]), r"speaker must be one name or one per text \(2\); got 1 names"),
    (dict(speaker="a/b"), "speaker must be a folder name of .* for layout='folder'; got 'a/b'"),
    (dict(layout="librispeech", speaker="84-1"), "for layout='librispeech'; got '84-1'"),
    (dict(layout="librispeech", chapter="1 2"), "chapter must be a plain folder name; got '1 2'"),
    (dict(sample_rate=-1), "sample_rate must be a positive integer number of Hz; got -1"),
    (dict(engine="flite", texts=["hello", "안녕"]), r"engine 'flite' speaks English only; texts\[1\] is Korean"),
])
def test_build_corpus_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    kwargs = {"texts": ["hello", "world"], "engine": "numpy", "lexicon": TINY, **kwargs}
    with pytest.raises(HMMValueError, match=message):
        build_corpus(tmp_path, **kwargs)
    assert not (tmp_path / "alignments").exists()  # nothing written before the arguments are checked


def test_forced_engines_report_missing_tools(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(HMMValueError, match=re.escape("engine 'flite' needs the flite program on PATH")):
        build_corpus(tmp_path, ["hello"], engine="flite")
    monkeypatch.setattr(synthetic.espeak, "_ESPEAK", None)
    monkeypatch.setattr(synthetic.espeak, "_espeak_libraries", lambda: [])
    assert not synthetic.espeak_available()
    with pytest.raises(HMMValueError, match=re.escape("engine 'espeak' needs libespeak-ng (pip install espeakng-loader")):
        build_corpus(tmp_path, ["hello"], engine="espeak")
    monkeypatch.setattr(synthetic.espeak, "_espeak_libraries", lambda: [("/nonexistent/libespeak-ng.so", None)])
    with pytest.raises(HMMValueError, match="not found: /nonexistent/libespeak-ng.so"):
        synthesize_espeak("hello")
