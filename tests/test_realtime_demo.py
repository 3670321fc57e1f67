"""examples/realtime_microphone.py end to end, by subprocess and headless: a sample-corpus utterance
(held out of training) padded with low noise is decoded as speech where the reference TextGrid
has speech and as silence in the padding; missing inputs exit 1 with a clear message; an ALSA
file-plugin "microphone" replays the same file bit-exactly and gives the same decisions."""

from __future__ import annotations

import ctypes.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pytorch_hmm.alignment import read_textgrid
from pytorch_hmm.data import sample_corpus

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "realtime_microphone.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RATE, SHIFT, PAD = 16000, 0.01, 0.5
UTTERANCE = "slt_0003"
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
RUNAWAY = 300  # seconds: only stops a hung subprocess (a run takes a few seconds)


def _run(args, cwd: Path, env_extra=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, MPLBACKEND="Agg")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=RUNAWAY, cwd=cwd, env=env)


def _segments(stdout: str) -> list:
    return [(float(a), float(b)) for a, b in re.findall(r"^  speech ([\d.]+)-([\d.]+) s$", stdout, flags=re.M)]


def _frames(segments, n: int) -> np.ndarray:
    """1 for the frames (centres t * 10 ms) inside a speech segment."""
    centres = np.arange(n) * SHIFT
    out = np.zeros(n, dtype=np.int64)
    for s, e in segments:
        out[(centres >= s - 1e-9) & (centres < e - 1e-9)] = 1
    return out


def _reference(n: int) -> np.ndarray:
    """Speech frames of the padded utterance from its TextGrid ("sil"/"pau"/gaps are silence)."""
    tiers = read_textgrid(sample_corpus() / "reference" / "slt" / f"{UTTERANCE}.TextGrid")
    phones = [(p.start + PAD, p.end + PAD) for p in tiers.tiers["phones"] if p.unit.lower() not in ("sil", "pau", "sp", "")]
    return _frames(phones, n)


@pytest.fixture(scope="module")
def padded_wav(tmp_path_factory) -> Path:
    """The held-out utterance with 0.5 s of low noise (-60 dBFS) at both ends, as 16-bit PCM."""
    y, rate = sf.read(sample_corpus() / "slt" / f"{UTTERANCE}.flac", dtype="float64")
    assert rate == RATE
    pad = np.zeros(int(PAD * RATE))
    z = np.concatenate([pad, y, pad])
    z = z + 1e-3 * np.random.default_rng(7).standard_normal(len(z))
    path = tmp_path_factory.mktemp("wav") / f"{UTTERANCE}_padded.wav"
    sf.write(path, z, RATE, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def headless(padded_wav, tmp_path_factory):
    """One headless --wav run (trains without the utterance, saves the model for the other tests)."""
    work = tmp_path_factory.mktemp("run")
    proc = _run(["--wav", padded_wav, "--headless", "--out", work / "out", "--holdout", UTTERANCE,
                 "--save-model", work / "vad.pt"], work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return work, proc.stdout


def test_headless_run_writes_png_and_log(headless) -> None:
    work, stdout = headless
    png = (work / "out" / "realtime.png").read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 10_000
    log = (work / "out" / "realtime.log").read_text()
    for pattern in (r"^compute latency per chunk \(front end \+ decoder\): p50 [\d.]+ ms, p95 [\d.]+ ms, p99 [\d.]+ ms",
                    r"^decision delay: mean [\d.]+ frames \([\d.]+ ms\), p95 \d+ frames \(\d+ ms\)",
                    r"^speech fraction: [\d.]+% of 436 decided frames", r"^speech segments: \d+",
                    r"^chunk of 1 frames: [\d.]+ ms, decided \d+ frames"):
        assert re.search(pattern, log, flags=re.M), (pattern, log[:2000])
        if not pattern.startswith("^chunk"):
            assert re.search(pattern, stdout, flags=re.M), (pattern, stdout)
    assert "trained on 23 utterances" in stdout  # the held-out one is not among them


def test_detected_speech_matches_the_reference(headless, padded_wav) -> None:
    _, stdout = headless
    n = 1 + sf.info(padded_wav).frames // 160
    truth = _reference(n)
    got = _frames(_segments(stdout), n)
    assert (got == truth).mean() > 0.85  # measured 0.98
    first, last = np.flatnonzero(truth)[[0, -1]]
    assert got[first:last + 1].mean() > 0.9  # the utterance's speech region is speech
    pad = int(PAD / SHIFT)
    assert got[:pad].mean() < 0.1 and got[-pad:].mean() < 0.1  # the padded noise is silence


def test_adaptive_latency_with_fixed_lag(headless, padded_wav) -> None:
    work, stdout = headless
    proc = _run(["--wav", padded_wav, "--headless", "--out", work / "adaptive", "--load-model", work / "vad.pt",
                 "--mode", "fixed_lag", "--target-latency-ms", "80"], work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "decoder: fixed_lag, adaptive to 80 ms (at the end: " in proc.stdout
    log = (work / "adaptive" / "realtime.log").read_text()
    lags = [int(m) for m in re.findall(r" lag=(\d+)$", log, flags=re.M)]
    assert lags and max(lags) <= 8  # (chunk - 1 + lag) * 10 ms + compute <= 80 ms
    n = 1 + sf.info(padded_wav).frames // 160
    assert (_frames(_segments(proc.stdout), n) == _reference(n)).mean() > 0.85


def test_missing_wav_exits_1_with_a_clear_message(tmp_path) -> None:
    proc = _run(["--wav", tmp_path / "nope.wav", "--headless", "--out", tmp_path / "out"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: --wav: audio file '{tmp_path / 'nope.wav'}': does not exist"]
    assert not (tmp_path / "out").exists()


def _shim(tmp_path: Path, source: str) -> dict:
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sounddevice.py").write_text(source)
    return {"PYTHONPATH": os.pathsep.join([str(shim), *filter(None, [os.environ.get("PYTHONPATH")])])}


def test_missing_portaudio_exits_1_pointing_at_wav(tmp_path) -> None:
    env = _shim(tmp_path, 'raise OSError("PortAudio library not found")\n')
    proc = _run(["--headless", "--seconds", "1", "--out", tmp_path / "out"], tmp_path, env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: no microphone input: sounddevice/PortAudio unavailable (PortAudio library not found)")
    assert "--wav FILE" in lines[0] and "libportaudio2" in lines[0]


def test_no_input_device_exits_1_pointing_at_wav(tmp_path) -> None:
    env = _shim(tmp_path, "class PortAudioError(Exception):\n    pass\n\n"
                          "def query_devices(device=None, kind=None):\n"
                          "    raise PortAudioError('Error querying device -1')\n")
    proc = _run(["--headless", "--seconds", "1", "--out", tmp_path / "out"], tmp_path, env)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: no microphone input: no input device (Error querying device -1); replay a file with --wav FILE"]


def _portaudio_available() -> bool:
    try:
        import sounddevice  # noqa: F401
    except (ImportError, OSError):
        return False
    return ctypes.util.find_library("portaudio") is not None


@pytest.mark.skipif(not _portaudio_available(), reason="needs sounddevice and libportaudio2 (apt-get install libportaudio2)")
def test_alsa_file_plugin_microphone_gives_the_wav_decisions(headless, padded_wav, tmp_path) -> None:
    """ALSA's file plugin as the default capture device replays the wav's 16-bit samples exactly,
    so the microphone path (sounddevice -> PortAudio -> ALSA) decides as the --wav run did."""
    work, wav_stdout = headless
    samples, _ = sf.read(padded_wav, dtype="int16")
    raw = tmp_path / "in.raw"
    samples.tofile(raw)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text(
        f'pcm.filecap {{ type file slave.pcm "null" file "/dev/null" infile "{raw}" format "raw" }}\n'
        'pcm.!default { type asym playback.pcm "null"\n'
        '               capture.pcm { type plug slave { pcm "filecap" format S16_LE rate 16000 channels 1 } } }\n')
    seconds = len(samples) / RATE
    proc = _run(["--headless", "--seconds", seconds, "--out", tmp_path / "out", "--load-model", work / "vad.pt"],
                tmp_path, {"HOME": str(home)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"input: microphone (blocks of 10 ms), {seconds:.2f} s, 436 frames" in proc.stdout
    assert _segments(proc.stdout) == _segments(wav_stdout)
    assert (tmp_path / "out" / "realtime.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.skipif(not LIBRIVOX.is_dir(), reason="needs real speech: apt-get install pocketsphinx-testdata")
def test_real_speech_from_librivox(headless, tmp_path) -> None:
    """A LibriVox recording (read speech, real room noise): mostly speech, starting near its start."""
    work, _ = headless
    wav = LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0870.wav"
    proc = _run(["--wav", wav, "--headless", "--out", tmp_path / "out", "--load-model", work / "vad.pt"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fraction = float(re.search(r"^speech fraction: ([\d.]+)%", proc.stdout, flags=re.M).group(1))
    segments = _segments(proc.stdout)
    assert 70 <= fraction <= 97, proc.stdout  # measured 91 %: pauses between phrases are silence
    assert segments[0][0] < 0.3 and segments[-1][1] > 6.5, proc.stdout  # 7.1 s, speech from 0.1 to 6.8 s


def test_live_view_updates_without_a_window(monkeypatch) -> None:
    """The live view's drawing code, on matplotlib's Agg backend (no window is opened)."""
    import importlib.util

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = importlib.util.spec_from_file_location("realtime_microphone", SCRIPT)
    demo = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "realtime_microphone", demo)  # dataclasses look their module up
    spec.loader.exec_module(demo)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if sys.platform.startswith("linux"):
        assert not demo.display_available()
    run = demo.Run(audio=[np.zeros(160, np.float32)] * 700, c0=[np.full(10, -300.0)] * 70)
    run.states = {t: int(300 <= t < 500) for t in range(690)}
    view = demo.LiveView(demo.feature_extractor())
    try:
        view.update(run, force=True)
        assert view.open
        line_t, line_state = view.state.get_data()
        assert len(line_t) == 600 and np.nanmax(line_state) == 1  # frames of the last 6 s of 7 s
        assert view.ax_wave.get_xlim() == (1.0, 7.0)
    finally:
        plt.close(view.fig)
