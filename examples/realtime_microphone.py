"""Live speech / silence decoding from the microphone (or a wav file) with a streaming HMM.

Run::

    python examples/realtime_microphone.py                    # microphone, live plot (Ctrl-C stops)
    python examples/realtime_microphone.py --seconds 20 --headless --out live_out
    python examples/realtime_microphone.py --wav speech.wav --headless --out wav_out
    python examples/realtime_microphone.py --wav speech.wav --realtime --target-latency-ms 100

What it does:

1. **Model**: a 2-state :class:`pytorch_hmm.MixtureGaussianHMM` (state 0 silence, state 1
   speech, self-loops ``--self-loop``), trained at start-up (about a second) on the bundled flite
   sample corpus with the true phone timings of ``reference/<voice>/*.TextGrid`` as labels
   ("sil"/"pau"/gaps = silence). flite's pauses are (nearly) digital silence, so the utterances
   are chained into sessions with 0.2-4 s pauses and low-level noise is added (10-50 dB below the
   speech, a seeded mix of white and low-pass noise), so that a microphone's noise floor is
   silence. The emissions
   are fitted from the labelled frames with the EM statistics protocol (one-hot state
   posteriors; the mixture components by splitting and EM inside each state).
2. **Front end**: 13 MFCCs (no deltas, no ``top_db``) computed block by block with
   :class:`~pytorch_hmm.speech.StreamingFeatures`, then running mean normalisation with
   :class:`~pytorch_hmm.speech.OnlineCMVN` (3 s window). Training runs every session through
   the same extractor and a fresh ``OnlineCMVN``, so training and streaming features match.
3. **Decoder**: :class:`~pytorch_hmm.streaming.StreamingHMMProcessor` (exact online Viterbi with
   ``--max-delay``, or ``--mode filter`` / ``fixed_lag --lag N``); with
   ``--target-latency-ms`` an :class:`~pytorch_hmm.streaming.AdaptiveLatencyController` picks the
   chunk size and the look-ahead from the measured compute times.
4. **Output**: a live matplotlib view (waveform, MFCC c0, decided speech / silence) when a
   display is available, else (or with ``--headless``) ``OUT/realtime.png`` and
   ``OUT/realtime.log``; the summary (compute latency per chunk p50/p95/p99, decision delay,
   speech fraction, speech segments) is printed either way.

The microphone needs ``pip install sounddevice`` and the PortAudio library (Debian/Ubuntu:
``apt-get install libportaudio2``); without them use ``--wav FILE``.
"""

from __future__ import annotations

import argparse
import math
import os
import queue
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from pytorch_hmm import MixtureGaussianHMM
from pytorch_hmm.alignment import read_textgrid
from pytorch_hmm.data import sample_corpus
from pytorch_hmm.errors import HMMValueError
from pytorch_hmm.speech import FeatureExtractor, OnlineCMVN, load_audio
from pytorch_hmm.streaming import AdaptiveLatencyController, StreamingHMMProcessor

RATE = 16000
SILENCE_LABELS = {"sil", "pau", "sp", ""}
CMVN_WINDOW = 300  # frames of running statistics (3 s)
STATES = ("silence", "speech")


def feature_extractor() -> FeatureExtractor:
    """The front end shared by training and streaming: 13 MFCCs every 10 ms, streamable."""
    return FeatureExtractor(kind="mfcc", sample_rate=RATE, deltas=False, top_db=None)


def new_cmvn() -> OnlineCMVN:
    return OnlineCMVN(feature_extractor().feature_dim, window=CMVN_WINDOW)


# ---- training ---------------------------------------------------------------------------


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise: white plus a random share of low-pass (one-pole) noise, like a microphone's floor."""
    from scipy.signal import lfilter

    white = rng.standard_normal(n)
    low = lfilter([1.0], [1.0, -0.98], rng.standard_normal(n))
    low /= max(float(np.sqrt(np.mean(np.square(low)))), 1e-12)
    mix = rng.uniform(0.0, 0.8)
    out = np.sqrt(1 - mix) * white + np.sqrt(mix) * low
    return out / max(float(np.sqrt(np.mean(np.square(out)))), 1e-12)


@dataclass
class TrainingData:
    features: torch.Tensor  # (N, D) after OnlineCMVN, all utterances
    labels: torch.Tensor  # (N,) 0 silence / 1 speech
    utterances: int
    seconds: float


def _speech_labels(tiers, centres: np.ndarray) -> np.ndarray:
    """1 for the frame centres (seconds) inside a phone that is not a silence, else 0."""
    speech = np.zeros(len(centres), dtype=np.int64)
    for seg in tiers.tiers["phones"]:
        if str(seg.unit).lower() not in SILENCE_LABELS:
            speech[(centres >= seg.start) & (centres < seg.end)] = 1
    return speech


def training_data(extractor: FeatureExtractor, holdout: Sequence[str], seed: int, copies: int = 2,
                  per_session: int = 4, snr_db: Tuple[float, float] = (10.0, 50.0)) -> TrainingData:
    """Labelled, noise-augmented frames of the sample corpus.

    The utterances (less ``holdout``) are chained, ``per_session`` at a time in a random order,
    into sessions like a live stream: 0.2-4 s of silence before each and at the end, and
    stationary noise over the whole session (:func:`_noise`) at a signal-to-noise ratio drawn
    from ``snr_db`` stratified over the sessions; ``copies`` passes over the corpus, each with
    other orders, pauses and noise. Each session runs through the streaming front end's
    extractor and a fresh :class:`OnlineCMVN`, so the model sees the running statistics at the
    start of a stream and after long pauses as the live decoder does.
    """
    rng = np.random.default_rng(seed)
    root = sample_corpus()
    grids = [g for g in sorted((root / "reference").glob("*/*.TextGrid")) if g.stem not in holdout]
    if not grids:
        raise HMMValueError(f"holdout must leave some of the sample utterances for training; got {list(holdout)}")
    audio = {g: load_audio(root / g.parent.name / f"{g.stem}.flac", RATE)[0].astype(np.float64) for g in grids}
    tiers = {g: read_textgrid(g) for g in grids}
    sessions = [[grids[i] for i in order[k:k + per_session]]
                for order in (rng.permutation(len(grids)) for _ in range(copies))
                for k in range(0, len(grids), per_session)]
    strata = (rng.permutation(len(sessions)) + rng.uniform(size=len(sessions))) / len(sessions)
    snrs = snr_db[0] + (snr_db[1] - snr_db[0]) * strata
    feats, labels, seconds = [], [], 0.0
    for session, snr in zip(sessions, snrs):
        pieces, spans, at = [], [], 0
        for grid in session:
            gap = int(rng.uniform(0.2, 4.0) * RATE)
            pieces += [np.zeros(gap), audio[grid]]
            spans.append((tiers[grid], (at + gap) / RATE))
            at += gap + len(audio[grid])
        pieces.append(np.zeros(int(rng.uniform(0.2, 4.0) * RATE)))
        y = np.concatenate(pieces)
        speech_rms = float(np.sqrt(np.mean(np.square(np.concatenate([audio[g] for g in session])))))
        y = (y + speech_rms * 10 ** (-snr / 20) * _noise(len(y), rng)).astype(np.float32)
        x = new_cmvn()(extractor(y))
        centres = extractor.frame_to_time(np.arange(x.shape[0]))
        speech = np.zeros(x.shape[0], dtype=np.int64)
        for grid_tiers, offset in spans:
            speech |= _speech_labels(grid_tiers, centres - offset)
        feats.append(x)
        labels.append(torch.from_numpy(speech))
        seconds += len(y) / RATE
    return TrainingData(torch.cat(feats), torch.cat(labels), len(grids), seconds)


def train_model(data: TrainingData, mixtures: int, self_loop: float, seed: int) -> MixtureGaussianHMM:
    """Supervised GMM-HMM: one Gaussian per state from the labelled frames, then split / EM up to
    ``mixtures`` components per state (EM statistics with one-hot state posteriors)."""
    x, lab = data.features[None], data.labels
    d = x.shape[-1]
    stay = torch.tensor([[self_loop, 1 - self_loop], [1 - self_loop, self_loop]])
    model = MixtureGaussianHMM(2, 1, d, "diag", transitions=stay, init_probs=torch.tensor([0.5, 0.5]))
    em = model.emission
    post = torch.nn.functional.one_hot(lab, 2).to(x.dtype)[None]
    with torch.no_grad():
        em.means = torch.stack([data.features[lab == k].mean(0) for k in range(2)])[:, None]
    generator = torch.Generator().manual_seed(seed)

    def em_steps(n: int) -> None:
        for _ in range(n):
            stats = em.init_stats()
            em.accumulate(stats, x, post)
            em.m_step(stats)

    em_steps(1)  # exact ML single Gaussians (the means above are the E-step means)
    while em.num_mixtures < mixtures:
        em.split(generator=generator)
        em_steps(4)
    return model.eval()


# ---- audio sources ----------------------------------------------------------------------


class InputUnavailable(RuntimeError):
    """No microphone: PortAudio or sounddevice missing, or no input device."""


def wav_blocks(path: str, block: int, realtime: bool) -> Tuple[Iterator[np.ndarray], float]:
    """Blocks of ``block`` samples of ``path`` resampled to 16 kHz (paced in real time with ``realtime``)."""
    y, _ = load_audio(path, RATE)

    def gen() -> Iterator[np.ndarray]:
        start = time.perf_counter()
        for i in range(0, len(y), block):
            if realtime:
                delay = start + min(i + block, len(y)) / RATE - time.perf_counter()  # when it is recorded
                if delay > 0:
                    time.sleep(delay)
            yield y[i:i + block]

    return gen(), len(y) / RATE


def check_microphone(device: Optional[str]):
    """The ``sounddevice`` module and the input device to use; :class:`InputUnavailable` if there is none."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as err:
        raise InputUnavailable(f"no microphone input: sounddevice/PortAudio unavailable ({err}); install PortAudio "
                               "(apt-get install libportaudio2) and `pip install sounddevice`, or replay a file "
                               "with --wav FILE") from None
    dev = int(device) if device is not None and device.isdigit() else device
    try:
        sd.query_devices(dev, kind="input")
    except (ValueError, sd.PortAudioError) as err:
        raise InputUnavailable(f"no microphone input: no input device ({err}); replay a file with --wav FILE") from None
    return sd, dev


def microphone_blocks(sd, device, block: int, seconds: Optional[float]) -> Iterator[np.ndarray]:
    """Blocks from the input ``device`` at 16 kHz mono until ``seconds`` (or Ctrl-C)."""
    blocks: "queue.Queue[np.ndarray]" = queue.Queue()

    def callback(indata, frames, time_info, status) -> None:  # PortAudio's thread: copy and return
        blocks.put(indata[:, 0].astype(np.float32) / 32768.0)

    try:  # 16-bit PCM, what sound cards deliver (and what ALSA's file plugin replays exactly)
        stream = sd.InputStream(samplerate=RATE, channels=1, dtype="int16", blocksize=block, device=device,
                                callback=callback)
    except sd.PortAudioError as err:
        raise InputUnavailable(f"no microphone input: cannot open the input device ({err}); "
                               "replay a file with --wav FILE") from None
    limit = None if seconds is None else int(seconds * RATE)
    got = 0
    with stream:
        while limit is None or got < limit:
            try:
                data = blocks.get(timeout=2.0)
            except queue.Empty:
                raise InputUnavailable("no microphone input: the input device delivers no audio; "
                                       "replay a file with --wav FILE") from None
            if limit is not None:
                data = data[: limit - got]
            got += len(data)
            yield data


# ---- decoding ---------------------------------------------------------------------------


@dataclass
class Run:
    """Everything the decoder produced: per-frame decisions and per-chunk timings."""

    audio: List[np.ndarray] = field(default_factory=list)
    c0: List[np.ndarray] = field(default_factory=list)  # raw MFCC c0 per frame
    states: dict = field(default_factory=dict)  # frame -> state
    delays: dict = field(default_factory=dict)  # frame -> frames between it and the newest frame seen
    forced: int = 0
    chunk_ms: List[float] = field(default_factory=list)  # front end + decoder per chunk
    chunk_log: List[str] = field(default_factory=list)


class Pipeline:
    """Audio blocks -> StreamingFeatures -> OnlineCMVN -> StreamingHMMProcessor, chunk by chunk."""

    def __init__(self, model: MixtureGaussianHMM, args: argparse.Namespace) -> None:
        self.features = feature_extractor().stream()
        self.cmvn = new_cmvn()
        self.controller: Optional[AdaptiveLatencyController] = None
        lag = args.lag if args.mode == "fixed_lag" else None
        max_delay = args.max_delay if args.mode == "viterbi" else None
        if args.target_latency_ms is not None:
            self.controller = AdaptiveLatencyController(args.target_latency_ms, frame_ms=self.frame_ms,
                                                        chunk_frames=(1, 10), lag_frames=(0, 50))
            lag = self.controller.lag_frames if args.mode == "fixed_lag" else None
            max_delay = self.controller.lag_frames if args.mode == "viterbi" else None
        self.decoder = StreamingHMMProcessor(model, mode=args.mode, lag=lag, max_delay=max_delay)
        self._warm_up(model, args.mode, lag, max_delay)
        self.chunk_frames = args.chunk_frames
        self.run = Run()
        self._pending: List[torch.Tensor] = []
        self._pending_ms = 0.0

    def _warm_up(self, model: MixtureGaussianHMM, mode: str, lag: Optional[int], max_delay: Optional[int]) -> None:
        """Run throwaway copies once, so that one-time costs (compiling the decoder's loops, librosa's
        first FFT) are paid before the stream and not in its first chunk's latency."""
        probe = feature_extractor().stream()
        frames = torch.cat([probe.push(np.zeros(2048, np.float32)), probe.flush()])
        decoder = StreamingHMMProcessor(model, mode=mode, lag=lag, max_delay=max_delay)
        for _ in range(2):
            decoder.process_chunk(new_cmvn()(frames)[None])
        decoder.flush()

    @property
    def frame_ms(self) -> float:
        return 1000.0 * feature_extractor().frame_shift

    def push(self, block: np.ndarray) -> None:
        """Feed one audio block; decodes a chunk when enough frames are waiting."""
        started = time.perf_counter()
        self.run.audio.append(block)
        frames = self.features.push(block)
        self._add(frames, started)

    def finish(self) -> None:
        """End of input: the last frames, then the decoder's flush."""
        started = time.perf_counter()
        self._add(self.features.flush(), started, final=True)
        started = time.perf_counter()
        if self.run.c0:  # the decoder has seen frames
            self._record(self.decoder.flush(), (time.perf_counter() - started) * 1000.0, "flush")

    def _add(self, frames: torch.Tensor, started: float, final: bool = False) -> None:
        if frames.shape[0]:
            self.run.c0.append(frames[:, 0].numpy().copy())
            self._pending.append(self.cmvn(frames))
        self._pending_ms += (time.perf_counter() - started) * 1000.0
        waiting = sum(p.shape[0] for p in self._pending)
        want = self.controller.chunk_frames if self.controller is not None else self.chunk_frames
        if waiting and (waiting >= want or final):
            chunk = torch.cat(self._pending)[None]
            self._pending = []
            started = time.perf_counter()
            result = self.decoder.process_chunk(chunk)
            ms = self._pending_ms + (time.perf_counter() - started) * 1000.0
            self._pending_ms = 0.0
            self._record(result, ms, f"chunk of {chunk.shape[1]} frames")
            if self.controller is not None:
                self.controller.update(ms)
                self.controller.apply(self.decoder)

    def _record(self, result, ms: float, what: str) -> None:
        n = int(result.num_decided[0])
        frames = result.frame_indices[0, :n].tolist()
        states = result.states[0, :n].tolist()
        delays = result.delays[0, :n].tolist()
        for f, s, d in zip(frames, states, delays):
            self.run.states[f] = s
            self.run.delays[f] = d
        self.run.forced += int(result.forced[0, :n].sum())
        self.run.chunk_ms.append(ms)
        look = ""
        if self.controller is not None:
            look = f" chunk_frames={self.controller.chunk_frames} lag={self.controller.lag_frames}"
        self.run.chunk_log.append(f"{what}: {ms:.3f} ms, decided {n} frames (seen {int(result.frames_seen[0])}){look}")


# ---- report -----------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not len(values):
        return 0.0
    ordered = sorted(values)
    return float(ordered[max(math.ceil(q / 100 * len(ordered)) - 1, 0)])


def decided_path(run: Run) -> np.ndarray:
    """``(T,)`` decided state per frame (-1 where none)."""
    total = sum(len(c) for c in run.c0)
    path = np.full(total, -1, dtype=np.int64)
    for f, s in run.states.items():
        path[f] = s
    return path


def speech_segments(path: np.ndarray, frame_shift: float) -> List[Tuple[float, float]]:
    """Runs of speech frames as ``(start, end)`` seconds; frame t stands for ``[(t - ½), (t + ½)) * shift``."""
    speech = np.concatenate([[False], path == 1, [False]])
    edges = np.flatnonzero(np.diff(speech.astype(np.int8)))
    return [(max(0.0, (s - 0.5) * frame_shift), (e - 0.5) * frame_shift) for s, e in zip(edges[::2], edges[1::2])]


def summary(run: Run, extractor: FeatureExtractor, source: str, model_line: str, decoder: str) -> List[str]:
    shift = extractor.frame_shift
    frame_ms = 1000.0 * shift
    path = decided_path(run)
    audio_s = sum(len(a) for a in run.audio) / RATE
    delays = np.array([run.delays[f] for f in sorted(run.delays)], dtype=np.float64)
    total_ms = float(np.sum(run.chunk_ms))
    lookahead_ms = 1000.0 * (extractor.fft_size // 2) / RATE
    lines = [
        model_line,
        f"input: {source}, {audio_s:.2f} s, {len(path)} frames of {frame_ms:g} ms; decoder: {decoder}",
        f"compute latency per chunk (front end + decoder): p50 {percentile(run.chunk_ms, 50):.3f} ms, "
        f"p95 {percentile(run.chunk_ms, 95):.3f} ms, p99 {percentile(run.chunk_ms, 99):.3f} ms over "
        f"{len(run.chunk_ms)} chunks (real-time factor {total_ms / 1000.0 / max(audio_s, 1e-9):.4f})",
    ]
    if len(delays):
        lines.append(f"decision delay: mean {delays.mean():.2f} frames ({delays.mean() * frame_ms:.1f} ms), "
                     f"p95 {percentile(delays, 95):.0f} frames ({percentile(delays, 95) * frame_ms:.0f} ms), "
                     f"max {delays.max():.0f} frames; forced {run.forced} frames; "
                     f"plus {lookahead_ms:g} ms front-end look-ahead")
    decided = path[path >= 0]
    fraction = float(np.mean(decided == 1)) if len(decided) else 0.0
    lines.append(f"speech fraction: {100 * fraction:.1f}% of {len(decided)} decided frames")
    segments = speech_segments(path, shift)
    lines.append(f"speech segments: {len(segments)}")
    lines += [f"  speech {s:.3f}-{e:.3f} s" for s, e in segments]
    return lines


def save_plot(run: Run, extractor: FeatureExtractor, path: Path) -> None:
    """PNG: waveform with decided speech shaded, MFCC c0, decided speech/silence over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.concatenate(run.audio) if run.audio else np.zeros(1, np.float32)
    c0 = np.concatenate(run.c0) if run.c0 else np.zeros(0)
    states = decided_path(run)
    t_audio = np.arange(len(y)) / RATE
    t_frames = extractor.frame_to_time(np.arange(len(c0)))
    fig, axes = plt.subplots(3, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [2, 2, 1]})
    axes[0].plot(t_audio, y, lw=0.4, color="0.25")
    for s, e in speech_segments(states, extractor.frame_shift):
        axes[0].axvspan(s, e, color="tab:orange", alpha=0.25, lw=0)
    axes[0].set_ylabel("waveform")
    axes[0].set_title("decided speech (shaded) — streaming GMM-HMM")
    axes[1].plot(t_frames, c0, lw=0.8, color="tab:blue")
    axes[1].set_ylabel("MFCC c0")
    axes[2].step(t_frames, np.where(states >= 0, states, np.nan), where="mid", color="tab:orange")
    axes[2].set_yticks([0, 1], STATES)
    axes[2].set_ylim(-0.3, 1.3)
    axes[2].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class LiveView:
    """A scrolling matplotlib window: the last ``span`` seconds of waveform, c0 and decisions."""

    def __init__(self, extractor: FeatureExtractor, span: float = 6.0) -> None:
        import matplotlib.pyplot as plt

        self.plt, self.extractor, self.span = plt, extractor, span
        plt.ion()
        self.fig, (self.ax_wave, self.ax_c0, self.ax_state) = plt.subplots(3, 1, figsize=(10, 6), sharex=True)
        (self.wave,) = self.ax_wave.plot([], [], lw=0.4, color="0.25")
        (self.c0,) = self.ax_c0.plot([], [], lw=0.8, color="tab:blue")
        (self.state,) = self.ax_state.step([], [], where="mid", color="tab:orange")
        self.ax_wave.set_ylim(-1, 1)
        self.ax_state.set_ylim(-0.3, 1.3)
        self.ax_state.set_yticks([0, 1], STATES)
        self.ax_wave.set_title("live speech / silence decoding (close the window to stop)")
        self._last = 0.0

    @property
    def open(self) -> bool:
        return bool(self.plt.fignum_exists(self.fig.number))

    def update(self, run: Run, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        n_audio = int(self.span * RATE)
        y = np.concatenate(run.audio[-(n_audio // 160 + 2):]) if run.audio else np.zeros(0)
        total = sum(len(a) for a in run.audio)
        y = y[-n_audio:]
        t_end = total / RATE
        self.wave.set_data(t_end - len(y) / RATE + np.arange(len(y)) / RATE, y)
        c0 = np.concatenate(run.c0) if run.c0 else np.zeros(0)
        frames = np.arange(len(c0))
        keep = self.extractor.frame_to_time(frames) >= t_end - self.span
        self.c0.set_data(self.extractor.frame_to_time(frames[keep]), c0[keep])
        path = decided_path(run)[keep] if len(c0) else np.zeros(0)
        self.state.set_data(self.extractor.frame_to_time(frames[keep]), np.where(path >= 0, path, np.nan))
        for ax in (self.ax_wave, self.ax_c0, self.ax_state):
            ax.set_xlim(max(0.0, t_end - self.span), max(self.span, t_end))
        if keep.any():
            self.ax_c0.set_ylim(float(c0[keep].min()) - 5, float(c0[keep].max()) + 5)
        self.fig.canvas.draw_idle()
        self.fig.canvas.flush_events()


def display_available() -> bool:
    """A GUI backend can open a window (X11/Wayland on Linux; assumed on macOS and Windows)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import matplotlib

    return matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo", "template")


# ---- main -------------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("input")
    src.add_argument("--wav", metavar="FILE", help="replay an audio file (any rate; resampled to 16 kHz) instead of the microphone")
    src.add_argument("--realtime", action="store_true", help="with --wav: feed blocks at real-time pace (default: as fast as possible)")
    src.add_argument("--seconds", type=float, default=None, help="stop the microphone after N seconds (default: Ctrl-C)")
    src.add_argument("--block-ms", type=float, default=10.0, help="audio block size in ms (default 10, one frame shift)")
    src.add_argument("--device", default=None, help="sounddevice input device (index or name; default: the system's)")
    dec = p.add_argument_group("decoder")
    dec.add_argument("--mode", choices=("viterbi", "filter", "fixed_lag"), default="viterbi")
    dec.add_argument("--max-delay", type=int, default=50, help="viterbi: force decisions on frames this old (default 50 = 0.5 s; -1: exact, unbounded)")
    dec.add_argument("--lag", type=int, default=10, help="fixed_lag: frames of look-ahead (default 10)")
    dec.add_argument("--chunk-frames", type=int, default=1, help="frames per decoder call (default 1)")
    dec.add_argument("--target-latency-ms", type=float, default=None,
                     help="adapt chunk size and max-delay/lag to this latency (AdaptiveLatencyController)")
    mod = p.add_argument_group("model")
    mod.add_argument("--mixtures", type=int, default=8, help="Gaussians per state (a power of two; default 8)")
    mod.add_argument("--self-loop", type=float, default=0.99, help="self-loop probability of both states (default 0.99)")
    mod.add_argument("--seed", type=int, default=0, help="seed of the noise augmentation and mixture splitting")
    mod.add_argument("--holdout", action="append", default=[], metavar="ID", help="leave a sample utterance (e.g. slt_0003) out of training")
    mod.add_argument("--save-model", metavar="PATH", help="save the trained model (pytorch_hmm.load reads it)")
    mod.add_argument("--load-model", metavar="PATH", help="use a model saved with --save-model instead of training")
    out = p.add_argument_group("output")
    out.add_argument("--headless", action="store_true", help="no window: write OUT/realtime.png and OUT/realtime.log")
    out.add_argument("--out", default="realtime_out", help="output folder for --headless (default realtime_out)")
    args = p.parse_args(argv)
    if args.block_ms <= 0:
        p.error(f"--block-ms must be positive; got {args.block_ms}")
    if args.chunk_frames < 1:
        p.error(f"--chunk-frames must be >= 1; got {args.chunk_frames}")
    if args.mixtures < 1 or args.mixtures & (args.mixtures - 1):
        p.error(f"--mixtures must be a power of two; got {args.mixtures}")
    if not 0 < args.self_loop < 1:
        p.error(f"--self-loop must be in (0, 1); got {args.self_loop}")
    if args.lag < 0:
        p.error(f"--lag must be >= 0; got {args.lag}")
    args.max_delay = None if args.max_delay < 0 else args.max_delay
    return args


def describe_decoder(args: argparse.Namespace, controller: Optional[AdaptiveLatencyController]) -> str:
    """One line: the mode and its look-ahead, the chunking."""
    if controller is not None:
        look = "max_delay" if args.mode == "viterbi" else "lag"
        return (f"{args.mode}, adaptive to {args.target_latency_ms:g} ms (at the end: {controller.chunk_frames} "
                f"frame(s) per chunk, {look}={controller.lag_frames})")
    look = {"viterbi": f", max_delay={'exact' if args.max_delay is None else args.max_delay}",
            "fixed_lag": f", lag={args.lag}", "filter": ""}[args.mode]
    return f"{args.mode}{look}, {args.chunk_frames} frame(s) per chunk"


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    extractor = feature_extractor()
    block = max(1, int(round(args.block_ms * RATE / 1000)))
    if args.wav is not None:  # check the input before spending time on training
        try:
            blocks, _ = wav_blocks(args.wav, block, args.realtime)
        except HMMValueError as err:
            return fail(f"--wav: {err}")
        source = f"{args.wav} (blocks of {args.block_ms:g} ms{', real-time pace' if args.realtime else ''})"
    else:
        try:
            sd, device = check_microphone(args.device)
        except InputUnavailable as err:
            return fail(str(err))
        source = f"microphone (blocks of {args.block_ms:g} ms)"

    started = time.perf_counter()
    if args.load_model:
        import pytorch_hmm

        model = pytorch_hmm.load(args.load_model).eval()
        model_line = f"model: loaded {args.load_model}"
    else:
        data = training_data(extractor, args.holdout, args.seed)
        model = train_model(data, args.mixtures, args.self_loop, args.seed)
        model_line = (f"model: 2-state GMM-HMM ({', '.join(STATES)}), {model.num_mixtures} Gaussians per state, "
                      f"trained on {data.utterances} utterances ({data.seconds:.1f} s with pauses and noise) "
                      f"in {time.perf_counter() - started:.2f} s")
    print(model_line, flush=True)
    if args.save_model:
        model.save(args.save_model)
        print(f"saved the model to {args.save_model}")

    headless = args.headless or not display_available()
    if not args.headless and headless:
        print(f"no display: writing the plot and log to {args.out}/ instead of a live view", file=sys.stderr)
    view = None if headless else LiveView(extractor)
    pipeline = Pipeline(model, args)
    if args.wav is None:
        blocks = microphone_blocks(sd, device, block, args.seconds)
        print("listening (Ctrl-C stops)" + (f" for {args.seconds:g} s" if args.seconds else ""), flush=True)
    try:
        for data_block in blocks:
            pipeline.push(np.asarray(data_block, dtype=np.float32))
            if view is not None:
                view.update(pipeline.run)
                if not view.open:
                    break
    except InputUnavailable as err:
        return fail(str(err))
    except KeyboardInterrupt:
        pass
    pipeline.finish()

    lines = summary(pipeline.run, extractor, source, model_line, describe_decoder(args, pipeline.controller))
    print("\n".join(lines[1:]))
    if headless:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        save_plot(pipeline.run, extractor, out / "realtime.png")
        (out / "realtime.log").write_text("\n".join(lines + ["", "per chunk:"] + pipeline.run.chunk_log) + "\n")
        print(f"plot: {out / 'realtime.png'}\nlog: {out / 'realtime.log'}")
    elif view is not None and view.open:
        view.update(pipeline.run, force=True)
        view.plt.ioff()
        view.plt.show()
    return 0


if __name__ == "__main__":
    sys.exit(main())
