"""The committed corpora under tests/fixtures (real LibriVox speech, espeak-ng Korean, flite
English) through the loaders, lexicons and features, as a user's pipeline would see them."""

from __future__ import annotations

import difflib
import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from pytorch_hmm.errors import AudioError
from pytorch_hmm.speech import (
    KSS,
    AudioTextFolder,
    FeatureExtractor,
    Lexicon,
    LibriSpeech,
    load_audio,
    num_frames,
    read_phone_intervals,
    speaker_cmvn,
)
from pytorch_hmm.speech.synthetic import espeak_available, flite_available

FIXTURES = Path(__file__).parent / "fixtures"
SCRIPT = Path(__file__).parents[1] / "scripts" / "make_fixtures.py"
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")

# the first and last words of each LibriVox transcript and its length in samples, read off
# pocketsphinx's own `transcription` file and the wav headers
LIBRI = {
    "9001-1-0000": ("AND MISTER JOHN DASHWOOD", "TO DO FOR THEM", 113600),
    "9001-1-0001": ("HE WAS NOT", "YOUNG MAN", 47840),
    "9001-1-0002": ("UNLESS TO BE", "ILL DISPOSED", 84800),
    "9001-1-0003": ("HAD HE MARRIED", "THAN HE WAS", 96800),
    "9001-1-0004": ("HE MIGHT EVEN", "AMIABLE HIMSELF", 52640),
}


@pytest.fixture(scope="module")
def cmudict() -> Lexicon:
    return Lexicon.from_cmudict(stress="fold")


# ------------------------------------------------------------------------------ LibriSpeech


def test_librispeech_fixture_is_real_librivox_speech(cmudict: Lexicon) -> None:
    corpus = LibriSpeech(FIXTURES, "test-clean")
    utts = corpus.utterances()
    assert corpus.problems == []
    assert [u.id for u in utts] == list(LIBRI)
    assert {u.speaker for u in utts} == {"9001"}
    for u in utts:
        first, last, samples = LIBRI[u.id]
        assert u.text.startswith(first) and u.text.endswith(last)
        assert u.audio_path.suffix == ".flac"
        audio = u.load_audio(16000)
        assert audio.shape == (samples,) and audio.dtype == np.float32
        assert 0.02 < np.sqrt(np.mean(audio.astype(np.float64) ** 2)) < 0.5  # speech, not silence
        transcription = cmudict.transcribe(u.text, u.id)
        assert transcription.oov == ()
    assert sum(LIBRI[u.id][2] for u in utts) / 16000 == pytest.approx(24.7, abs=0.05)
    assert not cmudict.oov_report


def test_librispeech_features_batch_and_per_speaker_cmvn() -> None:
    utts = LibriSpeech(FIXTURES, "test-clean").utterances()
    extractor = FeatureExtractor()
    feats, lengths = extractor.batch([u.audio_path for u in utts])
    expected = [num_frames(LIBRI[u.id][2], extractor.hop_length) for u in utts]
    assert lengths.tolist() == expected == [1 + n // 160 for _, _, n in LIBRI.values()]
    assert feats.shape == (5, max(expected), 39) and torch.isfinite(feats).all()
    assert (feats[1, lengths[1]:] == 0).all()
    # per-speaker CMVN pools all five utterances of speaker 9001
    items = [feats[b, : lengths[b]] for b in range(5)]
    normed = torch.cat(speaker_cmvn(items, [u.speaker for u in utts]))
    torch.testing.assert_close(normed.mean(0), torch.zeros(39), atol=1e-4, rtol=0)
    torch.testing.assert_close(normed.std(0, unbiased=False), torch.ones(39), atol=1e-4, rtol=0)


def test_librispeech_copy_with_broken_files_keeps_the_rest(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "LibriSpeech", tmp_path / "LibriSpeech")
    chapter = tmp_path / "LibriSpeech" / "test-clean" / "9001" / "1"
    (chapter / "9001-1-0001.flac").write_bytes(b"fLaC but not really a flac file")
    (chapter / "9001-1-0002.flac").unlink()
    with open(chapter / "9001-1-0003.flac", "r+b") as f:  # header kept, frames cut off
        f.truncate(200)
    corpus = LibriSpeech(tmp_path, "test-clean")
    utts = {u.id: u for u in corpus}
    problems = {p.item: p.reason for p in corpus.problems}
    assert list(problems) == ["9001-1-0001", "9001-1-0002"]
    assert problems["9001-1-0001"].startswith("unreadable audio") and "missing audio" in problems["9001-1-0002"]
    # the header check passes a file cut after its header; loading it names the file
    assert list(utts) == ["9001-1-0000", "9001-1-0003", "9001-1-0004"]
    with pytest.raises(AudioError, match="9001-1-0003.flac"):
        utts["9001-1-0003"].load_audio()
    for utt_id in ("9001-1-0000", "9001-1-0004"):
        assert utts[utt_id].load_audio().shape == (LIBRI[utt_id][2],)


# ------------------------------------------------------------------------------ KSS


def test_kss_fixture_columns_and_korean_g2p() -> None:
    expanded = KSS(FIXTURES / "KSS").utterances()
    original = KSS(FIXTURES / "KSS", text="original").utterances()
    assert [u.id for u in expanded] == ["1_0000", "1_0001", "1_0002", "1_0003"]
    assert {u.speaker for u in expanded} == {"kss"}
    assert expanded[2].text == "사과 세 개를 샀어요." and original[2].text == "사과 3개를 샀어요."
    korean = Lexicon.korean()
    for u in expanded:
        assert korean.transcribe(u.text, u.id).oov == ()
    assert korean.transcribe(original[2].text, original[2].id).oov == ("3개를",)
    report = korean.oov_report
    assert [(w.word, w.count, w.utterance_ids) for w in report] == [("3개를", 1, ("1_0002",))]


def test_kss_fixture_audio_and_alignments_agree() -> None:
    for u in KSS(FIXTURES / "KSS"):
        info = sf.info(str(u.audio_path))
        assert info.samplerate == 22050
        assert u.duration == pytest.approx(info.frames / 22050, abs=0.005)
        intervals = read_phone_intervals(FIXTURES / "KSS" / "alignments" / f"{u.id}.tsv")
        assert intervals[0].start == 0.0 and intervals[-1].end == pytest.approx(info.frames / 22050, abs=1e-6)
        assert all(a.end == b.start for a, b in zip(intervals, intervals[1:]))
        resampled, rate = load_audio(u.audio_path, 16000)
        assert rate == 16000 and abs(len(resampled) - info.frames * 16000 / 22050) <= 1


# ------------------------------------------------------------------------------ folder (flite)


def speech_rms(audio: np.ndarray, rate: int, start: float, end: float) -> float:
    x = audio[int(start * rate): int(end * rate)].astype(np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def test_folder_fixture_alignments_match_audio_and_cmudict(cmudict: Lexicon) -> None:
    corpus = AudioTextFolder(FIXTURES / "folder")
    utts = corpus.utterances()
    assert corpus.problems == []
    assert [(u.speaker, u.id) for u in utts] == [
        ("awb", "awb_0000"), ("awb", "awb_0001"), ("slt", "slt_0000"), ("slt", "slt_0001")]
    for u in utts:
        audio, rate = load_audio(u.audio_path, None)
        assert rate == 16000
        intervals = read_phone_intervals(FIXTURES / "folder" / "alignments" / f"{u.id}.tsv")
        assert intervals[-1].end == pytest.approx(len(audio) / rate, abs=1e-6)
        phones = [iv.phone for iv in intervals]
        assert phones[0] == phones[-1] == "sil"
        assert set(phones) - {"sil"} <= set(cmudict.phones)
        # flite's lexicon is CMUdict-derived: its phone string is close to our transcription
        ours = list(cmudict.transcribe(u.text, u.id).phones)
        flite = [p for p in phones if p != "sil"]
        assert difflib.SequenceMatcher(None, ours, flite).ratio() > 0.85, (ours, flite)
        # speech where the alignment says phones, near silence in the leading pause
        lead = intervals[0]
        spoken = speech_rms(audio, rate, intervals[1].start, intervals[-1].start)
        assert speech_rms(audio, rate, lead.start, lead.end - 0.01) < 0.1 * spoken


# ------------------------------------------------------------------------------ regeneration


@pytest.mark.skipif(
    not (flite_available() and espeak_available() and (LIBRIVOX / "transcription").is_file()),
    reason="make_fixtures.py needs flite, libespeak-ng and pocketsphinx-testdata",
)
def test_make_fixtures_regenerates_the_committed_files(tmp_path: Path) -> None:
    # a fresh process: espeak-ng's output depends on what it synthesised before in a process
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], check=True, capture_output=True)
    committed = sorted(p.relative_to(FIXTURES) for p in FIXTURES.rglob("*") if p.is_file() and p.name != "LICENSES.md")
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert written == committed
    for path in written:
        if path.suffix in (".txt", ".lab", ".tsv"):
            assert (tmp_path / path).read_text(encoding="utf-8") == (FIXTURES / path).read_text(encoding="utf-8"), path
        else:  # audio: the same samples (the encoders may differ in container bytes)
            a, ra = sf.read(str(tmp_path / path), dtype="int16")
            b, rb = sf.read(str(FIXTURES / path), dtype="int16")
            assert ra == rb and np.array_equal(a, b), path
    assert not filecmp.dircmp(tmp_path, FIXTURES).left_only
