"""The example scripts run end to end on the committed fixtures: exit 0, TextGrids and plots
written, statistics printed and plausible (the thresholds are what the fixtures measure, with
margin)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytorch_hmm.alignment import read_textgrid
from pytorch_hmm.speech import KSS, Lexicon

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FIXTURES = ROOT / "tests" / "fixtures"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECONDS = 180  # each takes about 10 s on 2 cores; this only catches a runaway


def _run(script: str, out: Path) -> str:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), "--out", str(out)], capture_output=True,
                          text=True, timeout=2 * SECONDS, cwd=out.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.perf_counter() - started < SECONDS
    assert f"output: {out}" in proc.stdout.splitlines()
    assert proc.stdout.rstrip().endswith(f"to {out}")
    return proc.stdout


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text, flags=re.M)
    assert match, f"no line matching {pattern!r} in:\n{text}"
    return float(match.group(1))


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000, path


@pytest.fixture(scope="module")
def librispeech(tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("librispeech") / "out"
    return out, _run("librispeech_alignment.py", out)


@pytest.fixture(scope="module")
def kss(tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("kss") / "out"
    return out, _run("korean_kss_demo.py", out)


def test_librispeech_example_writes_textgrids_and_plots(librispeech) -> None:
    out, _ = librispeech
    transcripts = dict(line.split(" ", 1) for line in
                       (FIXTURES / "LibriSpeech/test-clean/9001/1/9001-1.trans.txt").read_text().splitlines())
    grids = sorted((out / "9001").glob("*.TextGrid"))
    assert [g.stem for g in grids] == sorted(transcripts)
    for grid in grids:
        tiers = read_textgrid(grid).tiers
        assert [w.unit for w in tiers["words"]] == transcripts[grid.stem].lower().split()
    _assert_png(out / "9001-1-0000.png")
    _assert_png(out / "phone_durations.png")


def test_librispeech_example_statistics(librispeech) -> None:
    _, stdout = librispeech
    assert "utterances: 5 aligned, 0 skipped" in stdout
    assert re.search(r"^aligned 5 utterances, skipped 0; 24\.7 s of audio", stdout, flags=re.M)  # the RunReport
    rate = _number(r"^speaking rate: ([\d.]+) phones/s", stdout)  # measured 10.5
    assert 7 <= rate <= 16
    means = {m.group(1): float(m.group(2)) for m in re.finditer(r"^  (\w[\w ()]*?)\s+\d+ phones  mean\s+([\d.]+) ms", stdout, re.M)}
    assert {"vowel", "stop", "fricative", "nasal"} <= set(means), means
    assert all(30 <= ms <= 400 for ms in means.values()), means  # 3 states of 10 ms at least
    assert 60 <= means["vowel"] <= 150  # measured 96 ms


def test_kss_example_writes_textgrids_and_plots(kss) -> None:
    out, _ = kss
    utterances = KSS(FIXTURES / "KSS").utterances()
    grids = sorted((out / "kss").glob("*.TextGrid"))
    assert [g.stem for g in grids] == [u.id for u in utterances]
    for grid, utt in zip(grids, utterances):
        words = [w.unit for w in read_textgrid(grid).tiers["words"]]
        assert words == [w.strip(".") for w in utt.text.split()]
    _assert_png(out / "1_0003.png")
    _assert_png(out / "duration_models.png")


def test_kss_example_duration_statistics_and_models(kss) -> None:
    _, stdout = kss
    lexicon = Lexicon.korean()
    phones = sum(len(lexicon.transcribe(u.text, u.id).phones) for u in KSS(FIXTURES / "KSS"))
    assert f"phone durations ({phones} phones," in stdout
    assert f"4-fold cross-validation over utterances ({phones} held-out phones)" in stdout
    table = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in
             re.finditer(r"^  (\w[\w ()]*?)\s+([\d.]+)\s+([\d.]+)\s+(?:-|-[\d.]+)$", stdout, re.M)}
    assert set(table) == {"global mean (baseline)", "global median (baseline)", "Poisson", "Gamma", "Gaussian"}
    for mae, accuracy in table.values():
        assert 5 < mae < 80 and 0 <= accuracy <= 1
    # per-phone models beat one duration for every phone (measured: 28-30 ms against 32 ms)
    assert min(table[f][0] for f in ("Poisson", "Gamma", "Gaussian")) < table["global mean (baseline)"][0]
    logliks = [float(x) for x in re.findall(r"^  (?:Poisson|Gamma|Gaussian)\s.*\s(-[\d.]+)$", stdout, re.M)]
    assert len(logliks) == 3 and all(-6 < x < -1 for x in logliks)


def test_kss_example_boundary_accuracy_against_the_reference_timings(kss) -> None:
    _, stdout = kss
    assert "boundary accuracy vs reference timings (4 utterances, matched by time)" in stdout
    accuracy = [_number(rf"^  within {ms} ms: ([\d.]+)$", stdout) for ms in (10, 20, 50)]
    assert all(0 <= a <= 1 for a in accuracy) and accuracy == sorted(accuracy)
    assert accuracy[1] >= 0.35 and accuracy[2] >= 0.6  # measured 0.46 and 0.76


def test_neural_hmm_tts_example(tmp_path):
    """A few training steps of the neural HMM example: durations scored, two speaking rates, both plots."""
    out = tmp_path / "nhmm"
    proc = subprocess.run([sys.executable, str(EXAMPLES / "neural_hmm_tts.py"), "--steps", "4", "--hidden", "16",
                           "--out", str(out)], capture_output=True, text=True, timeout=2 * SECONDS, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "21 training and 3 held-out utterances" in proc.stdout
    assert _number(r"^held out: 3 utterances, phone duration MAE ([\d.]+) frames", proc.stdout) >= 0
    fast = _number(r"at duration threshold 0\.7: (\d+) frames", proc.stdout)
    slow = _number(r"at duration threshold 0\.3: (\d+) frames", proc.stdout)
    assert slow > fast  # a lower threshold keeps each state longer
    for name in ("alignment.png", "generated.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
