"""Benchmark pytorch_hmm.speech feature extraction throughput (× real time) against direct librosa calls.

Workload: 60 s of 16 kHz audio (``--quick``: 15 s) in utterances of 3–7 s. Real speech: the five
LibriVox clips of the committed fixture ``tests/fixtures/LibriSpeech`` (FLAC), cycled; a
synthetic voiced signal with noise only if that folder is missing. What each row computes,
per utterance, from float32 samples:

* MFCC+Δ+ΔΔ:  ``FeatureExtractor("mfcc")``: 13 MFCC from 40 mel bands (25 ms Hann window,
              10 ms hop, n_fft 512) + Δ + ΔΔ (width 5) -> (T, 39) float32 torch tensor;
* log-mel:    ``FeatureExtractor("log_mel")``: 80-band log-mel in dB -> (T, 80);
* + CMVN:     the same with per-utterance mean/variance normalisation (``cmvn="utterance"``);
* batch:      ``FeatureExtractor.batch(utterances)``: all utterances, padded to (B, T, D);
* from files: ``FeatureExtractor(...)(path)`` on 16 kHz WAV files (decoding included);
* librosa:    the same features by direct calls (``librosa.feature.mfcc`` + 2 ×
              ``librosa.feature.delta``; ``power_to_db(melspectrogram)``), numpy out.

× real time = seconds of audio / median wall seconds for the whole set. Target (issue 7):
ours ≥ 500× real time for MFCC+Δ+ΔΔ and log-mel (with and without CMVN).

Usage::

    python benchmarks/bench_features.py [--quick] [--repeats 15] [--budget 5] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Timing, cpu_snapshot, emit_report, machine_info, other_cpu_load, other_cpu_share, parse_run_args, time_call,
)

if importlib.util.find_spec("pytorch_hmm") is None:  # not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pytorch_hmm.speech.features import FeatureExtractor  # noqa: E402

RATE = 16000
SPEECH_DIR = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "LibriSpeech"
TARGET_X_REALTIME = 500.0
TARGET_ROWS = ("MFCC+Δ+ΔΔ", "MFCC+Δ+ΔΔ + CMVN", "log-mel", "log-mel + CMVN")
CPU_LOAD_WARN = 0.10


@dataclass
class Workload:
    utterances: list[np.ndarray]  # float32 (N_i,) at RATE
    source: str
    paths: list[Path]

    @property
    def seconds(self) -> float:
        return sum(u.size for u in self.utterances) / RATE


def make_workload(total_s: float, seed: int, folder: Path) -> Workload:
    """Utterances of 3–7 s adding up to ``total_s`` seconds, also written as WAV files to ``folder``."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    clips = [sf.read(p, dtype="float32")[0] for p in sorted(SPEECH_DIR.rglob("*.flac"))] if SPEECH_DIR.is_dir() else []
    if clips:
        source = f"real speech: {len(clips)} LibriVox clips from tests/fixtures/LibriSpeech, cycled"
        stream = np.concatenate(clips)
    else:
        source = "synthetic: harmonic tone (f0 100–160 Hz, amplitude-modulated) + white noise"
        t = np.arange(int(total_s * RATE)) / RATE
        phase = 2 * np.pi * np.cumsum(130 + 30 * np.sin(2 * np.pi * 0.7 * t)) / RATE
        voiced = sum(np.sin(k * phase) / k for k in range(1, 25)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
        stream = (0.1 * voiced + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    need = int(total_s * RATE)
    stream = np.resize(stream, need)  # cycles the clips
    bounds = [0]
    while bounds[-1] < need:
        bounds.append(min(need, bounds[-1] + int(rng.uniform(3.0, 7.0) * RATE)))
    utterances = [stream[a:b].copy() for a, b in zip(bounds[:-1], bounds[1:])]
    paths = []
    for i, u in enumerate(utterances):
        paths.append(folder / f"utt{i:03d}.wav")
        sf.write(paths[-1], u, RATE, subtype="PCM_16")
    return Workload(utterances, source, paths)


@dataclass
class Case:
    name: str
    impl: str
    make: Callable[[Workload], Callable[[], Any]]


@dataclass
class Row:
    case: Case
    timing: Optional[Timing] = None
    error: str = ""


def ours(name: str, kind: str, cmvn: str, mode: str = "items") -> Case:
    ex = FeatureExtractor(kind, cmvn=cmvn)

    def make(w: Workload):
        if mode == "batch":
            return lambda: ex.batch(w.utterances)
        items = w.paths if mode == "files" else w.utterances
        return lambda: [ex(u) for u in items]

    label = {"items": "ours", "batch": "ours, batch (B, T, D)", "files": "ours, from WAV files"}[mode]
    return Case(name, label, make)


def librosa_cases() -> list[Case]:
    import librosa

    frame = dict(sr=RATE, n_fft=512, win_length=400, hop_length=160, fmin=20.0)

    def mfcc(u):
        m = librosa.feature.mfcc(y=u, n_mfcc=13, n_mels=40, **frame)
        return np.concatenate([m, librosa.feature.delta(m, width=5), librosa.feature.delta(m, width=5, order=2)])

    def log_mel(u):
        return librosa.power_to_db(librosa.feature.melspectrogram(y=u, n_mels=80, **frame))

    return [
        Case("MFCC+Δ+ΔΔ", "librosa (direct calls)", lambda w: lambda: [mfcc(u) for u in w.utterances]),
        Case("log-mel", "librosa (direct calls)", lambda w: lambda: [log_mel(u) for u in w.utterances]),
    ]


def all_cases() -> list[Case]:
    cases = [
        ours("MFCC+Δ+ΔΔ", "mfcc", "none"),
        ours("MFCC+Δ+ΔΔ + CMVN", "mfcc", "utterance"),
        ours("MFCC+Δ+ΔΔ + CMVN", "mfcc", "utterance", "batch"),
        ours("MFCC+Δ+ΔΔ + CMVN", "mfcc", "utterance", "files"),
        ours("log-mel", "log_mel", "none"),
        ours("log-mel + CMVN", "log_mel", "utterance"),
        ours("log-mel + CMVN", "log_mel", "utterance", "batch"),
    ]
    try:
        cases += librosa_cases()
    except ImportError:  # pragma: no cover - librosa is a dependency of the features
        pass
    order = ["MFCC+Δ+ΔΔ", "MFCC+Δ+ΔΔ + CMVN", "log-mel", "log-mel + CMVN"]
    return sorted(cases, key=lambda c: order.index(c.name))


def run_case(case: Case, w: Workload, args: argparse.Namespace) -> Row:
    row = Row(case)
    try:
        row.timing = time_call(case.make(w), args.repeats, args.budget, min_repeats=3 if not args.quick else 1)
    except Exception as exc:  # one failing row must not lose the others
        row.error = f"{type(exc).__name__}: {exc}"
    status = f"{row.timing.median_ms:9.1f} ms" if row.timing else f"error {row.error}"
    print(f"  {case.name:<20} {case.impl:<26} {status}", flush=True)
    return row


def results_table(rows: list[Row], w: Workload) -> list[str]:
    lines = ["| features | implementation | median ms | runs | × real time | ms per audio s | vs librosa | target | status |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.timing is None:
            lines.append(f"| {r.case.name} | {r.case.impl} | error: {r.error} | | | | | | |")
            continue
        xrt = w.seconds / (r.timing.median_ms / 1e3)
        base = r.case.name.replace(" + CMVN", "")
        ref = next((q for q in rows if q.case.name == base and q.case.impl.startswith("librosa") and q.timing), None)
        speedup = f"{ref.timing.median_ms / r.timing.median_ms:.2f}×" if ref and r is not ref else ""
        targeted = r.case.impl == "ours" and r.case.name in TARGET_ROWS
        target = f"≥ {TARGET_X_REALTIME:.0f}×" if targeted else ""
        status = ("PASS" if xrt >= TARGET_X_REALTIME else "MISS") if targeted else ""
        lines.append(f"| {r.case.name} | {r.case.impl} | {r.timing.median_ms:.1f} | {len(r.timing.times_ms)} | "
                     f"{xrt:.0f}× | {r.timing.median_ms / w.seconds:.2f} | {speedup} | {target} | {status} |")
    return lines


def agreement_lines(w: Workload) -> list[str]:
    """Largest difference between ours and librosa on the first utterance."""
    import librosa

    u = w.utterances[0]
    frame = dict(sr=RATE, n_fft=512, win_length=400, hop_length=160, fmin=20.0)
    m = librosa.feature.mfcc(y=u, n_mfcc=13, n_mels=40, **frame)
    ref_mfcc = np.concatenate([m, librosa.feature.delta(m, width=5), librosa.feature.delta(m, width=5, order=2)]).T
    ref_mel = librosa.power_to_db(librosa.feature.melspectrogram(y=u, n_mels=80, **frame)).T
    out = ["| features | max abs diff ours − librosa (float32) | max abs value |", "|---|---:|---:|"]
    for name, kind, ref in (("MFCC+Δ+ΔΔ", "mfcc", ref_mfcc), ("log-mel", "log_mel", ref_mel)):
        mine = FeatureExtractor(kind)(u).numpy()
        out.append(f"| {name} | {np.abs(mine - ref).max():.2e} | {np.abs(ref).max():.1f} |")
    return out


def build_report(rows: list[Row], w: Workload, runtime_s: float, load: tuple[float, float]) -> str:
    import librosa
    import soundfile

    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    out = [f"## Feature extraction benchmark: {w.seconds:.0f} s of 16 kHz audio in {len(w.utterances)} utterances", "",
           f"Command: `{command}`  ", f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}  ",
           f"Audio: {w.source}  ", f"Total runtime: {runtime_s:.1f} s", "", "### Machine", ""]
    out += [f"- {k}: {v}" for k, v in machine_info().items()]
    out += [f"- librosa: {librosa.__version__}", f"- soundfile: {soundfile.__version__} (libsndfile "
            f"{soundfile.__libsndfile_version__})"]
    out.append(f"- share of all cores used by other processes: {load[0]:.0%} before the run, {load[1]:.0%} during it")
    if max(load) > CPU_LOAD_WARN:
        out += ["", "**WARNING: other processes were using the CPU; timings are inflated. Re-run on an idle machine.**"]
    out += ["", "### Timings", "",
            "Median wall time for the whole set after one warm-up call. × real time = audio seconds / wall "
            "seconds; vs librosa = librosa's time / this row's time for the same features (without CMVN).", ""]
    out += results_table(rows, w)
    out += ["", "### Agreement with librosa (first utterance)", ""] + agreement_lines(w)
    return "\n".join(out) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=None, help="seconds of audio (default 60; 15 with --quick)")
    args = parse_run_args(p, argv)
    args.seconds = args.seconds or (15.0 if args.quick else 60.0)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    load_before = other_cpu_load()
    snap = cpu_snapshot()
    with tempfile.TemporaryDirectory() as tmp:
        w = make_workload(args.seconds, args.seed, Path(tmp))
        print(f"{w.seconds:.0f} s in {len(w.utterances)} utterances ({w.source}); "
              f"other processes' CPU use {load_before:.0%}", flush=True)
        rows = [run_case(c, w, args) for c in all_cases()]
        load = (load_before, other_cpu_share(snap, cpu_snapshot()))
        report = build_report(rows, w, time.perf_counter() - start, load)
    emit_report(report, args.markdown)


if __name__ == "__main__":
    main()
