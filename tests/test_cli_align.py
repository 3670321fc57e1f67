"""The corpus aligner (pytorch_hmm.aligner) and the ``pytorch-hmm`` command, run as users run them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bad_corpus import corpus_with_bad_items
from pytorch_hmm.alignment import read_ctm, read_json, read_textgrid

FIXTURES = Path(__file__).parent / "fixtures" / "folder"


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytorch_hmm.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """The four fixture utterances plus one bad item of every kind."""
    root = corpus_with_bad_items(tmp_path / "corpus")
    # an OOV word inside a good utterance: aligned as spn, counted
    (root / "slt" / "slt_0001.lab").write_text("Glue the sheet to the dark blue zzyzxq background.")
    return root


def test_align_with_train_writes_textgrids_and_reports_every_bad_item(corpus: Path, tmp_path: Path):
    out = tmp_path / "out"
    proc = _run("align", str(corpus), str(out), "--train", "--output-format", "textgrid,json,ctm", "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout
    assert "aligned 4 utterances, skipped 4" in summary
    assert "skipped corrupt: unreadable audio" in summary
    assert "skipped silent: silent audio" in summary
    assert "skipped empty: empty transcript" in summary
    assert "skipped short: no alignment" in summary and "too few" in summary
    assert "OOV word tokens aligned as the OOV phone: zzyzxq (1)" in summary
    assert "x real time" in summary
    for speaker, utt in [("slt", "slt_0000"), ("slt", "slt_0001"), ("awb", "awb_0000"), ("awb", "awb_0001")]:
        grid = read_textgrid(out / speaker / f"{utt}.TextGrid")
        words = [s.unit for s in grid.tiers["words"]]
        assert words and all(w == w.lower() for w in words)
        assert read_json(out / speaker / f"{utt}.json").tiers["phones"] == grid.tiers["phones"]
    assert "zzyzxq" in [s.unit for s in read_textgrid(out / "slt" / "slt_0001.TextGrid").tiers["words"]]
    assert "spn" in [s.unit for s in read_textgrid(out / "slt" / "slt_0001.TextGrid").tiers["phones"]]
    assert not (out / "bad").exists()
    ctm = read_ctm(out / "words.ctm")
    assert sorted(ctm) == ["awb_0000", "awb_0001", "slt_0000", "slt_0001"]


def test_train_then_align_with_the_saved_model(corpus: Path, tmp_path: Path):
    model = tmp_path / "model.pt"
    proc = _run("train", str(corpus), str(model), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert f"model written to {model}" in proc.stdout and model.is_file()
    out = tmp_path / "out"
    proc = _run("align", str(corpus), str(out), "--model", str(model), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "aligned 4 utterances" in proc.stdout
    assert (out / "awb" / "awb_0000.TextGrid").is_file()


def test_command_line_errors(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "x.pt").write_bytes(b"nope")
    out = str(tmp_path / "out")
    calls = [  # (arguments, exit code, what stderr must say); independent: run two at a time
        (("align", str(tmp_path / "missing"), out, "--train"), 1, None),
        (("align", str(tmp_path), out), 2, "one of the arguments --train --model is required"),
        (("align", str(tmp_path / "empty"), out, "--train", "--quiet"), 1, "no usable utterance"),
        (("align", str(FIXTURES), out, "--model", str(tmp_path / "x.pt"), "--quiet"), 1,
         "is not a pytorch_hmm acoustic model file"),
        (("align", str(FIXTURES), out, "--train", "--output-format", "praat", "--quiet"), 1,
         "--format must be a comma-separated list of textgrid, json, ctm; got 'praat'"),
        (("align", str(FIXTURES), out, "--train", "--jobs", "0"), 2, "--jobs: expected a positive integer; got '0'"),
        (("align", str(FIXTURES), out, "--train", "--corpus-format", "timit"), 2, "invalid choice: 'timit'"),
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = list(pool.map(lambda call: _run(*call[0]), calls))
    for (args, code, message), proc in zip(calls, procs):
        assert proc.returncode == code, (args, proc.stderr)
        assert message is None or message in proc.stderr, (args, proc.stderr)
    missing = procs[0].stderr.strip()
    assert missing == f"pytorch-hmm: error: corpus must be an existing folder; got {str(tmp_path / 'missing')!r}"


def test_the_installed_command_runs():
    exe = shutil.which("pytorch-hmm")
    if exe is None:
        pytest.skip("the package is not installed with its console script")
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("pytorch-hmm ")


def test_a_flat_folder_is_a_corpus_of_one_speaker(tmp_path: Path):
    """No speaker folders: the corpus folder's name is the speaker (as MFA does)."""
    flat = tmp_path / "flat"
    flat.mkdir()
    for speaker in ("slt", "awb"):
        for f in (FIXTURES / speaker).iterdir():
            shutil.copy(f, flat / f.name)
    out = tmp_path / "out"
    proc = _run("align", str(flat), str(out), "--train", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "aligned 4 utterances, skipped 0" in proc.stdout
    assert sorted(p.name for p in (out / "flat").iterdir()) == [f"{u}.TextGrid" for u in
                                                                ("awb_0000", "awb_0001", "slt_0000", "slt_0001")]


def test_prepare_skips_audio_with_nan_samples(tmp_path: Path):
    """A float WAV holding NaN is reported and skipped like any other bad file, inside the rank's own
    work (so it never stops the other ranks of a distributed run); the rest is prepared."""
    import numpy as np
    import soundfile as sf

    from pytorch_hmm import aligner

    root = tmp_path / "corpus"
    shutil.copytree(FIXTURES / "slt", root / "slt")
    bad = root / "bad"
    bad.mkdir()
    samples = 0.1 * np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    samples[100] = np.nan
    sf.write(bad / "nan.wav", samples, 16000, subtype="FLOAT")
    (bad / "nan.lab").write_text("hello world")
    report = aligner.RunReport()
    prepared = aligner.prepare(aligner.open_corpus(root), aligner.lexicon_from(None), aligner.default_extractor(),
                               report, progress=False)
    assert sorted(p.utterance.id for p in prepared) == ["slt_0000", "slt_0001"]
    assert report.skipped == [("nan", "unreadable audio: contains NaN or infinite samples")]
