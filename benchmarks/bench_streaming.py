"""Streaming decoding: compute per chunk and decision latency of ``StreamingHMMProcessor``.

Workloads (from the issue; 10 ms frames, float32, fixed seeds). State sequences and
observations are sampled from the same HMM that decodes them, so the ambiguity is the
model's own:

* ``K=100 left-to-right``: an utterance-level chain of 100 states (``Banded``, W = 2, like
  ~33 phones x 3 states). State ``k`` stays with probability ``p_k ~ U(0.80, 0.90)`` (mean
  dwell ~6.7 frames), else moves to ``k + 1``; streams start in state 0 and must end in the last
  state (``log_final``). An utterance is sampled until it leaves the last state (~670 frames,
  ~6.7 s); a run is several utterances back to back, each its own stream (``flush()`` at its
  end), until ``--frames`` frames are reached.
* ``K=64 ergodic``: ``Dense``, self-loop 0.9, the other 0.1 spread evenly over the 63 other
  states, uniform start, no end constraint; one stream of ``--frames`` frames.

Emissions: 2-D Gaussians with identity covariance whose means lie on a square grid of spacing
``--separation`` (default 1.0, in standard deviations, so neighbouring means overlap heavily):
the ergodic states use the whole 8 x 8 grid, the left-to-right states draw their means from a
3 x 3 grid, each different from the previous state's. The log-densities ``(B, t, K)`` are
computed before the clock starts (in real use they are the acoustic model's output); the timed
part is ``process_chunk`` alone, as its own ``compute_ms`` reports it.

For each workload x mode (``viterbi`` exact, ``viterbi`` with ``max_delay=5``, ``viterbi`` with
``beam=10``, ``filter``, ``fixed_lag`` with ``lag=5``) x chunk size (1, 2, 5, 10 frames) the stream is fed chunk by
chunk after an untimed warm-up (the first 200 frames, then ``flush()``), and the script reports:

* compute per chunk, p50 / p99 (ms), and per 10 ms frame (``compute_ms`` / frames in the
  chunk); the real-time factor (all compute, flushes included, / audio duration);
* the decision delay in frames: ``StreamingResult.delays``, the frames between a decided frame
  and the newest frame seen when it was decided (mean, median, p99, max), over every frame,
  those that ``flush()`` decides at the end of an utterance included (they waited for the end
  of the utterance; the share of them is reported as "at flush");
* algorithmic latency (ms) = delay x 10 ms: the time from the end of frame ``t`` to the end of
  the chunk whose processing decides it, compute time excluded. Because ``delays`` counts from
  the newest frame of the chunk, it already includes the wait for the chunk to fill (on
  average (chunk - 1) / 2 frames for a frame decided at once), so nothing is added for it;
* the share of frames ``max_delay`` forced; the check that the exact online Viterbi path equals
  offline ``pytorch_hmm.kernel.viterbi`` on every utterance (``OK`` / ``MISMATCH``), and for
  the other modes the share of frames equal to offline Viterbi; frame accuracy against the
  sampled states.

Plus B = 8 streams in one processor for exact Viterbi (chunks of 1 and 10; 8x the frames, the
same models), and the chunk = 1 exact Viterbi rows again beside one busy process
(``common.with_busy``), with the default torch threads and with ``torch.set_num_threads(1)``.
Each row also gives the share of the CPUs other processes used while it ran ("others' CPU"); a
quiet-machine row during which they used more than 10% is measured again (``--retries``).

Not timed: the log-densities and building the processor; ``flush()`` is counted in the RTF only.

Targets: p99 compute <= 2 ms per 10 ms frame; median algorithmic latency <= 50 ms.

Run: ``python benchmarks/bench_streaming.py [--quick] [--frames 4000] [--markdown PATH]`` (about 2 minutes
on 2 cores; ``--quick``: about 15 s)
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_snapshot, emit_report, machine_info, other_cpu_load, one_thread, other_cpu_share, with_busy  # noqa: E402

try:
    import pytorch_hmm  # noqa: F401
except ImportError:  # not installed yet: fall back to the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pytorch_hmm import Banded, Dense, kernel  # noqa: E402
from pytorch_hmm.streaming import StreamingHMMProcessor  # noqa: E402

FRAME_MS = 10.0
DTYPE = torch.float32
TARGET_FRAME_MS = 2.0  # p99 compute per 10 ms frame
TARGET_LATENCY_MS = 50.0  # median algorithmic latency
NOISY = 0.10  # other processes' share of the CPUs above which a quiet-machine row is measured again
MODES = (  # (label, mode, keyword arguments)
    ("viterbi", "viterbi", {}),
    ("viterbi max_delay=5", "viterbi", {"max_delay": 5}),
    ("viterbi beam=10", "viterbi", {"beam": 10.0}),
    ("filter", "filter", {}),
    ("fixed_lag lag=5", "fixed_lag", {"lag": 5}),
)


# --------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------


@dataclass
class Workload:
    """A known HMM and streams sampled from it."""

    name: str
    transitions: object  # Banded or Dense
    log_init: torch.Tensor  # (K,)
    log_final: Optional[torch.Tensor]  # (K,) or None
    means: np.ndarray  # (K, D)
    utterances: list  # of (x (T, D) float64, z (T,) int64)

    @property
    def num_states(self) -> int:
        return self.log_init.shape[0]

    @property
    def source(self) -> tuple:
        if self.log_final is None:
            return (self.transitions, self.log_init)
        return (self.transitions, self.log_init, self.log_final)

    def log_emissions(self, x: np.ndarray) -> torch.Tensor:
        """``(T, K)`` float32 log N(x_t | mean_k, I)."""
        d = x.shape[1]
        sq = ((x[:, None, :] - self.means[None, :, :]) ** 2).sum(-1)
        return torch.as_tensor(-0.5 * sq - 0.5 * d * np.log(2 * np.pi), dtype=DTYPE)


def grid(n: int, spacing: float) -> np.ndarray:
    """``(n * n, 2)`` points of a square grid, centred on 0."""
    axis = (np.arange(n) - (n - 1) / 2) * spacing
    return np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)


def left_to_right(frames: int, separation: float, seed: int, k: int = 100) -> Workload:
    rng = np.random.default_rng(seed)
    stay = rng.uniform(0.80, 0.90, size=k)
    points = grid(3, separation)
    choice = [int(rng.integers(len(points)))]
    for _ in range(k - 1):  # each state's mean differs from the previous state's
        c = int(rng.integers(len(points) - 1))
        choice.append(c + (c >= choice[-1]))
    means = points[choice]
    probs = np.stack([stay, 1.0 - stay], 1)  # the last state's move on (past K) does not exist: it ends the utterance
    log_init = torch.full((k,), float("-inf"), dtype=DTYPE)
    log_init[0] = 0.0
    log_final = torch.full((k,), float("-inf"), dtype=DTYPE)
    log_final[-1] = float(np.log1p(-stay[-1]))
    utts, total = [], 0
    while total < frames:
        states = []
        for s in range(k):
            states += [s] * int(rng.geometric(1.0 - stay[s]))  # dwell ~ Geometric, >= 1 frame
        z = np.array(states, dtype=np.int64)
        x = means[z] + rng.standard_normal((len(z), 2))
        utts.append((x, z))
        total += len(z)
    trans = Banded(torch.as_tensor(np.log(probs), dtype=DTYPE))
    return Workload(f"K={k} left-to-right", trans, log_init, log_final, means, utts)


def ergodic(frames: int, separation: float, seed: int, k: int = 64, stay: float = 0.9) -> Workload:
    rng = np.random.default_rng(seed)
    side = int(round(k ** 0.5))
    means = grid(side, separation)[rng.permutation(k)]
    probs = np.full((k, k), (1.0 - stay) / (k - 1))
    np.fill_diagonal(probs, stay)
    z = np.empty(frames, dtype=np.int64)
    z[0] = rng.integers(k)
    for t in range(1, frames):
        z[t] = z[t - 1] if rng.random() < stay else rng.choice([j for j in range(k) if j != z[t - 1]])
    x = means[z] + rng.standard_normal((frames, 2))
    log_init = torch.full((k,), -float(np.log(k)), dtype=DTYPE)
    trans = Dense(torch.as_tensor(np.log(probs), dtype=DTYPE))
    return Workload(f"K={k} ergodic", trans, log_init, None, means, [(x, z)])


# --------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------


@dataclass
class RunStats:
    chunk_ms: np.ndarray  # compute of each process_chunk call
    frame_ms: np.ndarray  # the same per frame of the chunk
    total_ms: float  # all compute, flushes included
    delays: np.ndarray  # of every decided frame (flush() included)
    at_flush: int  # frames decided by flush() at the end of an utterance
    frames: int  # per stream
    forced: int
    decided: int  # frames decided in all (flushes included)
    viterbi_equal: int  # frames equal to offline Viterbi
    viterbi_utts_equal: int  # utterances (x streams) whose whole path equals offline Viterbi
    utts: int
    correct: int  # frames equal to the sampled state


def batches(w: Workload, streams: int):
    """``(log_emissions (B, T, K), lengths (B,), true states (B, T))`` per batch of utterances.

    ``streams == 1``: one utterance at a time. Otherwise every stream gets its own utterances:
    for the single long ergodic stream, ``streams`` consecutive slices of it; for the
    left-to-right utterances, groups of ``streams`` (padded, with per-stream lengths; a last,
    incomplete group is left out)."""
    utts = w.utterances
    if streams > 1 and len(utts) == 1:
        x, z = utts[0]
        n = len(z) // streams
        utts = [(x[i * n:(i + 1) * n], z[i * n:(i + 1) * n]) for i in range(streams)]
    out = []
    for g in range(0, len(utts) - len(utts) % streams if streams > 1 else len(utts), streams):  # full groups
        group = utts[g:g + streams]
        t = max(len(z) for _, z in group)
        e = torch.zeros((len(group), t, w.num_states), dtype=DTYPE)
        truth = torch.full((len(group), t), -1, dtype=torch.long)
        for b, (x, z) in enumerate(group):
            e[b, : len(z)] = w.log_emissions(x)
            truth[b, : len(z)] = torch.as_tensor(z)
        out.append((e, torch.tensor([len(z) for _, z in group]), truth))
    return out


def offline_paths(w: Workload, data) -> list:
    return [kernel.viterbi(e, w.transitions, w.log_init, lens, w.log_final)[0] for e, lens, _ in data]


def run(w: Workload, data, reference, mode: str, kwargs: dict, chunk: int, warmup: bool = True) -> RunStats:
    proc = StreamingHMMProcessor(w.source, mode=mode, **kwargs)
    if warmup:  # untimed: allocator and code paths warm (first 200 frames of the first batch)
        e, lens, _ = data[0]
        ragged = bool((lens < e.shape[1]).any())  # per-stream lengths only where the timed run passes them
        for s in range(0, min(200, e.shape[1]), chunk):
            piece = e[:, s:s + chunk]
            proc.process_chunk(piece, (lens - s).clamp(0, piece.shape[1]) if ragged else None)
        proc.flush()
    chunk_ms, frame_ms, delays = [], [], []
    total = 0.0
    forced = decided = equal = utts_equal = correct = frames = n_utts = at_flush = 0
    for (e, lens, truth), ref in zip(data, reference):
        b, t, _ = e.shape
        ragged = bool((lens < t).any())
        got = torch.full((b, t), -2, dtype=torch.long)
        for s in range(0, t, chunk):
            piece = e[:, s:s + chunk]
            r = proc.process_chunk(piece, (lens - s).clamp(0, piece.shape[1]) if ragged else None)
            chunk_ms.append(r.compute_ms)
            frame_ms.append(r.compute_ms / piece.shape[1])
            total += r.compute_ms
            ok = r.frame_indices >= 0
            delays.append(r.delays[ok])
            forced += int(r.forced[ok].sum())
            rows = torch.arange(b)[:, None].expand_as(ok)[ok]
            got[rows, r.frame_indices[ok]] = r.states[ok]
        r = proc.flush()
        total += r.compute_ms
        ok = r.frame_indices >= 0
        delays.append(r.delays[ok])
        at_flush += int(ok.sum())
        rows = torch.arange(b)[:, None].expand_as(ok)[ok]
        got[rows, r.frame_indices[ok]] = r.states[ok]
        valid = torch.arange(t) < lens[:, None]
        if bool((got[valid] == -2).any()):
            raise RuntimeError(f"{mode} chunk={chunk}: some frames were never decided")
        decided += int(valid.sum())
        same = (got == ref) & valid
        equal += int(same.sum())
        utts_equal += int((same | ~valid).all(1).sum())
        correct += int(((got == truth) & valid).sum())
        frames += int(lens.max())
        n_utts += b
    return RunStats(np.array(chunk_ms), np.array(frame_ms), total, torch.cat(delays).numpy(), at_flush, frames, forced, decided,
                    equal, utts_equal, n_utts, correct)


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

COLUMNS = ["workload", "B", "mode", "chunk", "p50 ms/chunk", "p99 ms/chunk", "p50 ms/frame", "p99 ms/frame", "RTF",
           "delay mean", "delay p50", "delay p99", "delay max", "latency p50 (ms)", "latency p99 (ms)", "at flush",
           "forced", "= offline Viterbi", "acc. vs truth", "others' CPU", "p99 ≤ 2 ms/frame", "p50 latency ≤ 50 ms"]
HEADER = "| " + " | ".join(COLUMNS) + " |"
ALIGN = "|---|---:|---|---:|" + "---:|" * (len(COLUMNS) - 6) + "---|---|"


def pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if len(a) else float("nan")


def row(workload: str, streams: int, label: str, chunk: int, st: RunStats, exact: bool, others: float) -> tuple[str, str]:
    """The markdown row and the line printed as it goes."""
    rtf = st.total_ms / (st.frames * FRAME_MS)
    d = st.delays
    lat50 = pct(d, 50) * FRAME_MS
    if exact:
        bad = st.utts - st.viterbi_utts_equal
        check = "OK" if not bad else f"MISMATCH ({bad}/{st.utts} streams, {1 - st.viterbi_equal / st.decided:.2%} of frames)"
    else:
        check = f"{st.viterbi_equal / st.decided:.1%}"
    forced = f"{st.forced / st.decided:.1%}" if "max_delay" in label else ""
    ok_frame = "PASS" if pct(st.frame_ms, 99) <= TARGET_FRAME_MS else "FAIL"
    ok_lat = "PASS" if lat50 <= TARGET_LATENCY_MS else "FAIL"
    cells = [workload, streams, label, chunk, f"{pct(st.chunk_ms, 50):.3f}", f"{pct(st.chunk_ms, 99):.3f}",
             f"{pct(st.frame_ms, 50):.3f}", f"{pct(st.frame_ms, 99):.3f}", f"{rtf:.3f}", f"{d.mean():.2f}",
             f"{pct(d, 50):.0f}", f"{pct(d, 99):.0f}", f"{d.max()}", f"{lat50:.0f}", f"{pct(d, 99) * FRAME_MS:.0f}",
             f"{st.at_flush / st.decided:.1%}", forced, check, f"{st.correct / st.decided:.1%}", f"{others:.0%}",
             ok_frame, ok_lat]
    short = (f"{workload:<22} B={streams} {label:<20} chunk={chunk:>2}  ms/chunk p50 {pct(st.chunk_ms, 50):6.3f} "
             f"p99 {pct(st.chunk_ms, 99):6.3f}  ms/frame p99 {pct(st.frame_ms, 99):6.3f}  RTF {rtf:.3f}  delay mean "
             f"{d.mean():6.2f} p50 {pct(d, 50):3.0f} p99 {pct(d, 99):4.0f} max {d.max():4d}  at flush "
             f"{st.at_flush / st.decided:5.1%}  {forced or '-':>5}  {check}  others {others:.0%}")
    return "| " + " | ".join(map(str, cells)) + " |", short


def failed_row(workload: str, streams: int, label: str, chunk: int, exc: Exception) -> tuple[str, str]:
    where = exc.__traceback__
    while where.tb_next is not None:
        where = where.tb_next
    msg = f"{type(exc).__name__}: {exc} ({Path(where.tb_frame.f_code.co_filename).name}:{where.tb_lineno})"
    return (f"| {workload} | {streams} | {label} | {chunk} | failed: {msg} |" + " |" * (len(COLUMNS) - 5),
            f"{workload:<22} B={streams} {label:<20} chunk={chunk:>2}  FAILED: {msg}")


def measure(rows: list, w: Workload, data, ref, streams: int, label: str, mode: str, kwargs: dict, chunk: int,
            wrap=None, name: Optional[str] = None, retries: int = 0) -> None:
    """Run one configuration (``wrap(fn)`` around it if given) and append its row to ``rows``.

    Without ``wrap``, a run during which other processes used more than :data:`NOISY` of the CPUs
    is repeated, up to ``retries`` times, each after waiting (up to 60 s) for a quiet second; the
    last run is kept and its share reported."""
    name = name or w.name

    def timed():
        start = cpu_snapshot()
        st = run(w, data, ref, mode, kwargs, chunk)
        return st, other_cpu_share(start, cpu_snapshot())  # before with_busy reaps its children

    try:
        st, others = wrap(timed) if wrap else timed()
        for _ in range(0 if wrap else retries):
            if others <= NOISY:
                break
            print(f"  (others used {others:.0%} of the CPUs: measuring again)", flush=True)
            for _ in range(60):
                if other_cpu_load(1.0) <= NOISY:
                    break
            st, others = timed()
    except Exception as exc:  # report the row as failed and go on with the others
        md, short = failed_row(name, streams, label, chunk, exc)
    else:
        md, short = row(name, streams, label, chunk, st, mode == "viterbi" and not kwargs, others)
    rows.append(md)
    print(short, flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test (< 20 s): K = 30 left-to-right and K = 16 ergodic, 200 frames, chunks 1 and 10, "
                             "one busy row")
    parser.add_argument("--frames", type=int, default=None, help="frames per run (default 4000; 200 with --quick)")
    parser.add_argument("--chunks", type=int, nargs="+", default=None, help="chunk sizes (default 1 2 5 10)")
    parser.add_argument("--separation", type=float, default=1.0, help="spacing of the Gaussian means' grid, in std devs")
    parser.add_argument("--retries", type=int, default=None,
                        help=f"measure a row again (after waiting for a quiet second) when other processes used more "
                             f"than {NOISY:.0%} of the CPUs during it, at most this many times (default 3; 0 with --quick)")
    parser.add_argument("--no-busy", action="store_true", help="skip the rows beside a busy process")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the report (markdown) to this file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    frames = args.frames or (200 if args.quick else 4000)
    if args.retries is None:
        args.retries = 0 if args.quick else 3
    chunks = args.chunks or ([1, 10] if args.quick else [1, 2, 5, 10])
    k_lr, k_erg = (30, 16) if args.quick else (100, 64)
    started = time.perf_counter()
    load = other_cpu_load()
    run_start = cpu_snapshot()

    workloads = [left_to_right(frames, args.separation, args.seed, k=k_lr),
                 ergodic(frames, args.separation, args.seed + 1, k=k_erg)]
    rows: list = []
    eight: list = []  # the B = 8 workloads
    for w in workloads:
        data = batches(w, 1)
        ref = offline_paths(w, data)
        for label, mode, kwargs in MODES:
            for chunk in chunks:
                measure(rows, w, data, ref, 1, label, mode, kwargs, chunk, retries=args.retries)
        if not args.quick:  # eight streams of the same model in one processor, each as long as the B = 1 run
            make = left_to_right if w is workloads[0] else ergodic
            w8 = make(8 * frames, args.separation, args.seed + (w is not workloads[0]), k=w.num_states)
            data8 = batches(w8, 8)
            ref8 = offline_paths(w8, data8)
            eight.append(w8)
            for chunk in (1, 10):
                measure(rows, w8, data8, ref8, 8, "viterbi", "viterbi", {}, chunk, retries=args.retries)
    if not args.no_busy:  # chunk = 1 exact Viterbi beside one process spinning on a core
        for w in workloads[:1] if args.quick else workloads:
            data = batches(w, 1)
            ref = offline_paths(w, data)
            measure(rows, w, data, ref, 1, "viterbi", "viterbi", {}, 1, lambda fn: with_busy(1, fn),
                    name=f"{w.name}, 1 busy process")
            if args.quick:
                continue
            measure(rows, w, data, ref, 1, "viterbi", "viterbi", {}, 1, lambda fn: with_busy(1, lambda: one_thread(fn)),
                    name=f"{w.name}, 1 busy process, torch.set_num_threads(1)")
    others = other_cpu_share(run_start, cpu_snapshot())

    command = "python benchmarks/bench_streaming.py" + (" --quick" if args.quick else "")
    lines = [f"# bench_streaming ({'quick' if args.quick else 'full'})", "", f"`{command}`", ""]
    for w in workloads:
        lengths = [len(z) for _, z in w.utterances]
        lines.append(f"- {w.name}: {len(lengths)} stream(s) of {', '.join(map(str, lengths))} frames "
                     f"({sum(lengths) * FRAME_MS / 1000:.1f} s of 10 ms frames)")
    for w in eight:
        lengths = [len(z) for _, z in w.utterances]
        used = lengths[: len(lengths) - len(lengths) % 8] if len(lengths) > 1 else lengths
        lines.append(f"- {w.name}, B = 8: " + (f"{len(used)} utterances ({sum(used)} frames) in batches of 8 streams "
                     "(padded to the longest, per-stream lengths)" if len(lengths) > 1 else
                     f"8 streams of {sum(used) // 8} frames"))
    lines += [f"- 2-D unit-variance Gaussians, means on a grid of spacing {args.separation:g} std devs; float32; "
              f"seed {args.seed}",
              f"- other processes' CPU use: {load:.0%} in the second before the run, {others:.0%} over the whole run "
              f"(the busy rows' own spinning process not counted); the run took {time.perf_counter() - started:.0f} s",
              "- latency = delay x 10 ms: from the end of a frame to the end of the chunk that decides it (chunk "
              "buffering included, compute excluded); frames decided by flush() at the end of an utterance count "
              "with the delay they got (\"at flush\": their share)",
              "- B = 8: eight streams in one processor; ms are per call for all eight, RTF is against one stream's audio",
              "- \"= offline Viterbi\": exact online Viterbi, OK if every stream's path equals kernel.viterbi's; "
              "other modes, the share of frames equal to it",
              "", "### Machine", ""]
    lines += [f"- {k}: {v}" for k, v in machine_info().items()]
    lines += ["", HEADER, ALIGN, *rows]
    emit_report("\n".join(lines), args.markdown)


if __name__ == "__main__":
    torch.manual_seed(0)
    np.random.seed(0)
    main()
