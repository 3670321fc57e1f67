"""The ``pytorch-hmm`` subcommands run as users run them (subprocess): validate, g2p, JSON logs,
the corpus formats (LibriSpeech, KSS in Korean, Kaldi data directories), evaluate and demo."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pytorch_hmm.alignment import read_textgrid

FIXTURES = Path(__file__).parent / "fixtures"


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytorch_hmm.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    """The folder fixture plus a corrupt file, an empty transcript, a too-short utterance and an OOV word."""
    root = tmp_path / "messy"
    shutil.copytree(FIXTURES / "folder" / "slt", root / "slt")
    bad = root / "bad"
    bad.mkdir()
    (bad / "corrupt.wav").write_bytes(b"RIFF this is not audio at all" * 3)
    (bad / "corrupt.lab").write_text("hello world")
    sf.write(bad / "empty.wav", 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32), 16000)
    (bad / "empty.lab").write_text("   ")
    sf.write(bad / "short.wav", 0.1 * np.random.default_rng(1).standard_normal(1600).astype(np.float32), 16000)
    (bad / "short.lab").write_text("hello world")  # 0.1 s; sil-free minimum: 8 phones x 3 states x 10 ms
    (root / "slt" / "slt_0001.lab").write_text("Glue the sheet to the dark blue zzyzxq background.")
    return root


def test_validate_reports_what_alignment_would_skip(messy: Path):
    proc = _run("validate", str(messy), "--quiet")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("3 usable utterances, ")
    assert "2 skipped, 1 too short for their transcription" in out
    assert "skipped corrupt: unreadable audio" in out and "skipped empty: empty transcript" in out
    assert "too short short: 0.10 s of audio, its transcription needs at least 0.24 s" in out
    assert "sample rates: 16000 Hz (3)" in out
    assert "1 OOV words (1 tokens; aligned as the OOV phone): zzyzxq (1)" in out
    data = json.loads(_run("validate", str(messy), "--quiet", "--log-format", "json").stdout)
    assert data["utterances"] == 3 and data["oov"] == {"zzyzxq": 1}
    assert {p["item"] for p in data["problems"]} == {"corrupt", "empty"}
    assert data["too_short"] == [{"item": "short", "seconds": 0.1, "needed": pytest.approx(0.24)}]
    assert data["sample_rates"] == {"16000": 3}


def test_validate_of_a_corpus_without_usable_utterances_fails(tmp_path: Path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.lab").write_text("hello")  # no audio
    proc = _run("validate", str(tmp_path / "c"), "--quiet")
    assert proc.returncode == 1 and proc.stdout.startswith("0 usable utterances")


def test_g2p_prints_an_mfa_dictionary_and_counts_oovs(tmp_path: Path):
    proc = _run("g2p", "Hello, wonderful zzyzxq world")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "hello\tHH AH L OW" in lines and "hello\tHH EH L OW" in lines  # CMUdict's two, stress folded
    assert "world\tW ER L D" in lines and "zzyzxq\tspn" in lines
    assert lines[-1] == "# 1 words without a pronunciation (aligned as spn): zzyzxq"
    text = tmp_path / "words.txt"
    text.write_text("\ufeff학교에 갑니다\n", encoding="utf-8")
    data = json.loads(_run("transcribe", "--language", "ko", "--file", str(text), "--log-format", "json").stdout)
    assert data["pronunciations"] == {"학교에": ["h a k kk yo e"], "갑니다": ["g a m n i d a"]} and data["oov"] == []
    proc = _run("g2p")
    assert proc.returncode == 1 and "g2p needs words to look up" in proc.stderr
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    proc = _run("g2p", "--file", str(tmp_path / "bad.txt"))
    assert proc.returncode == 1 and "cannot be read as UTF-8 text" in proc.stderr


def test_json_logs_summary_on_stdout_warnings_as_json_lines(messy: Path, tmp_path: Path):
    proc = _run("align", str(messy), str(tmp_path / "out"), "--train", "--quiet", "--log-format", "json", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["command"] == "align" and data["aligned"] == 2
    assert {s["item"] for s in data["skipped"]} == {"corrupt", "empty", "short"}
    assert data["oov"] == {"zzyzxq": 1} and data["x_real_time"] > 0
    warnings = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert warnings and all(w["level"] == "warning" for w in warnings)
    assert any("corrupt" in w["message"] for w in warnings)


def test_librispeech_subset_folder_or_root_with_subset(tmp_path: Path):
    root = FIXTURES / "LibriSpeech"
    for args in ([str(root / "test-clean")], [str(root), "--subset", "test-clean"]):
        out = tmp_path / "out"
        shutil.rmtree(out, ignore_errors=True)
        proc = _run("align", *args, str(out), "--train", "--quiet")
        assert proc.returncode == 0, proc.stderr
        assert "aligned 5 utterances, skipped 0" in proc.stdout
        grid = read_textgrid(out / "9001" / "9001-1-0000.TextGrid")
        assert [w.unit for w in grid.tiers["words"]][:4] == ["and", "mister", "john", "dashwood"]
    two = tmp_path / "two"
    shutil.copytree(root / "test-clean", two / "test-clean")
    shutil.copytree(root / "test-clean", two / "dev-clean")
    proc = _run("align", str(two), str(tmp_path / "o2"), "--train", "--quiet")
    assert proc.returncode == 1 and "holds several LibriSpeech subsets (dev-clean, test-clean)" in proc.stderr


def test_kss_in_korean_end_to_end(tmp_path: Path):
    out = tmp_path / "out"
    proc = _run("align", str(FIXTURES / "KSS"), str(out), "--train", "--language", "ko", "--quiet", "--format", "textgrid,json")
    assert proc.returncode == 0, proc.stderr
    assert "aligned 4 utterances, skipped 0" in proc.stdout
    transcript = (FIXTURES / "KSS" / "transcript.v.1.4.txt").read_text(encoding="utf-8").splitlines()
    expanded = {line.split("|")[0].split("/")[-1][:-4]: line.split("|")[2] for line in transcript if line.strip()}
    from pytorch_hmm.speech import korean

    for utt, text in expanded.items():
        grid = read_textgrid(out / "kss" / f"{utt}.TextGrid")
        words = [w.unit for w in grid.tiers["words"]]
        assert words == [w.strip(".,?!") for w in text.split()]
        phones = {p.unit for p in grid.tiers["phones"]} - {"sil", "spn"}
        assert phones and phones <= set(korean.PHONES)
        assert (out / "kss" / f"{utt}.json").is_file()


def _kaldi_dir(tmp_path: Path) -> tuple:
    """The folder fixture as a Kaldi data directory: each speaker's two utterances in one
    recording (0.3 s of silence between them) cut apart by ``segments``; returns (dir, lengths)."""
    data, wavs = tmp_path / "data" / "train", tmp_path / "wav"
    data.mkdir(parents=True)
    wavs.mkdir()
    scp, text, utt2spk, segments, lengths = [], [], [], [], {}
    for speaker in ("awb", "slt"):
        first, rate = sf.read(FIXTURES / "folder" / speaker / f"{speaker}_0000.wav", dtype="float32")
        second, _ = sf.read(FIXTURES / "folder" / speaker / f"{speaker}_0001.wav", dtype="float32")
        gap = np.zeros(int(0.3 * rate), dtype=np.float32)
        sf.write(wavs / f"{speaker}.wav", np.concatenate([first, gap, second]), rate)
        scp.append(f"{speaker}_rec {wavs / f'{speaker}.wav'}")
        cut = (len(first) + len(gap) // 2) / rate
        for n, (start, end) in enumerate([(0.0, cut), (cut, -1)]):
            utt = f"{speaker}-{n}"
            words = (FIXTURES / "folder" / speaker / f"{speaker}_000{n}.lab").read_text().strip()
            text.append(f"{utt} {words}")
            utt2spk.append(f"{utt} {speaker}")
            segments.append(f"{utt} {speaker}_rec {start:.3f} {end if end < 0 else f'{end:.3f}'}")
            lengths[utt] = (cut if n == 0 else (len(first) + len(gap) + len(second)) / rate - cut, words)
    for name, lines in (("wav.scp", scp), ("text", text), ("utt2spk", utt2spk), ("segments", segments)):
        (data / name).write_text("\n".join(sorted(lines)) + "\n")
    return data, lengths


def test_kaldi_data_directory_with_segments(tmp_path: Path):
    data, lengths = _kaldi_dir(tmp_path)
    proc = _run("validate", str(data), "--quiet", "--log-format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["utterances"] == 4
    out = tmp_path / "out"
    proc = _run("align", str(data), str(out), "--train", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "aligned 4 utterances, skipped 0" in proc.stdout
    for utt, (seconds, words) in lengths.items():
        grid = read_textgrid(out / utt.split("-")[0] / f"{utt}.TextGrid")
        assert grid.duration == pytest.approx(seconds, abs=1e-3)  # times are relative to the segment
        assert [w.unit for w in grid.tiers["words"]] == [w.strip(".,").lower() for w in words.split()]
    proc = _run("align", str(data), str(tmp_path / "o2"), "--train", "--quiet", "--corpus-format", "kss")
    assert proc.returncode == 1 and "KSS transcript" in proc.stderr


def test_evaluate_scores_a_folder_against_references(tmp_path: Path):
    """References against themselves score 100 %; against copies shifted by 15 ms, 0 % within
    10 ms and 100 % within 20 ms; a missing hypothesis is listed; --json parses."""
    from pytorch_hmm.alignment import Segment, write_textgrid
    from pytorch_hmm.data import sample_corpus

    ref = sample_corpus() / "reference"
    proc = _run("evaluate", str(ref), str(ref))
    assert proc.returncode == 0, proc.stderr
    assert "| accuracy within 20 ms | 100.0 % |" in proc.stdout and "| MAE | 0.0 ms |" in proc.stdout
    hyp = tmp_path / "hyp"
    (hyp / "slt").mkdir(parents=True)
    for grid_path in sorted(ref.glob("slt/*.TextGrid"))[:-1]:  # one left out: missing
        grid = read_textgrid(grid_path)
        phones = grid.tiers["phones"]
        shifted = [Segment(p.unit, p.start if i == 0 else p.start + 0.015, p.end if i == len(phones) - 1 else p.end + 0.015)
                   for i, p in enumerate(phones)]
        write_textgrid(hyp / "slt" / grid_path.name, {"phones": shifted}, grid.duration)
    data = json.loads(_run("evaluate", str(ref), str(hyp), "--json").stdout)
    assert data["utterances"] == 7 and data["missing"] == sorted(
        [p.stem for p in ref.glob("*/*.TextGrid") if not (hyp / "slt" / p.name).is_file()])
    # every inner boundary moved by 15 ms; the first onset and the last offset stay put
    inner = data["reference_boundaries"] - 2 * 7
    assert data["accuracy"]["0.01"] == pytest.approx(14 / data["reference_boundaries"])
    assert data["accuracy"]["0.02"] == 1.0
    assert data["mae"] == pytest.approx(0.015 * inner / data["reference_boundaries"], abs=1e-9)
    proc = _run("evaluate", str(tmp_path / "nope"), str(hyp))
    assert proc.returncode == 1 and "reference_dir" in proc.stderr and "nope" in proc.stderr
