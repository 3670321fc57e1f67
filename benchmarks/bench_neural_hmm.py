"""NeuralHMM training step: time of the HMM part against the networks, and peak memory against T.

Workload (the issue's): B = 16 utterances of T = 800 frames, 100 tokens x 2 states (K = 200),
80-dimensional features, ``hidden_dim=128``, autoregressive, float32, random tokens and features
(the time does not depend on their values). One training step is ``-model(...).mean()``, its
backward and an Adam step. The HMM part is the kernel alone: ``kernel.log_partition`` over the
step's potentials (``(B, T, K)`` log-emissions and the ``(B, T-1, K, 2)`` time-varying banded
transitions, detached leaves) and its backward; the networks' part is the rest of the step.
Medians of ``--repeat`` runs after one warm-up.

Peak memory against T: each T runs one training step (forward and backward) in a fresh
subprocess, which resets its peak resident memory (``/proc/self/clear_refs``) before the step and
reports the peak less the memory before it; the slope between the smallest and largest T is the
memory per frame. ``--plot FILE`` draws it.

Target: the HMM part <= 100 ms per step on 2 cores and never the largest share of a step; peak
memory linear in T.

Run: ``python benchmarks/bench_neural_hmm.py [--quick] [--markdown PATH] [--plot PNG]`` (about a
minute on 2 cores; ``--quick``: B = 4, T = 200, 20 tokens).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit_report, machine_info, other_cpu_load  # noqa: E402

try:
    import pytorch_hmm  # noqa: F401
except ImportError:  # not installed yet: fall back to the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pytorch_hmm import Banded, NeuralHMM, kernel  # noqa: E402


def setup(batch: int, frames: int, tokens: int, dim: int, hidden: int, seed: int = 0):
    torch.manual_seed(seed)
    model = NeuralHMM(50, dim, states_per_token=2, hidden_dim=hidden, autoregressive=True)
    ids = torch.randint(0, 50, (batch, tokens))
    x = torch.randn(batch, frames, dim)
    return model, (ids, torch.full((batch,), tokens), x, torch.full((batch,), frames))


def step_times(model, inputs, repeat: int) -> dict:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    whole, hmm = [], []
    for i in range(repeat + 1):
        start = time.perf_counter()
        opt.zero_grad()
        loss = -model(*inputs).mean()
        loss.backward()
        opt.step()
        elapsed = time.perf_counter() - start
        with torch.no_grad():
            e, trans, init, final, lens = model.potentials(*inputs)
        e = e.detach().requires_grad_(True)
        lp = trans.log_probs.detach().requires_grad_(True)
        start = time.perf_counter()
        kernel.log_partition(e, Banded(lp), init, lens, final).sum().backward()
        kernel_s = time.perf_counter() - start
        if i:  # the first run warms up
            whole.append(elapsed)
            hmm.append(kernel_s)
    step, part = statistics.median(whole), statistics.median(hmm)
    return {"step_ms": 1000 * step, "hmm_ms": 1000 * part, "networks_ms": 1000 * (step - part),
            "hmm_share": part / step}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def child(frames: int, batch: int, tokens: int, dim: int, hidden: int) -> None:
    """One training step at ``frames``; prints the peak RSS over it less the RSS before it (MiB) as JSON."""
    model, inputs = setup(batch, frames, tokens, dim, hidden)
    try:  # reset the peak (VmHWM) to the current RSS (Linux)
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        before = _status_kib("VmRSS")
        (-model(*inputs).mean()).backward()
        peak = _status_kib("VmHWM")
    except OSError:  # elsewhere: the growth of the high-water mark
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        (-model(*inputs).mean()).backward()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"frames": frames, "peak_mib": (peak - before) / 1024}))


def memory_curve(frame_counts, batch: int, tokens: int, dim: int, hidden: int) -> list:
    out = []
    for frames in frame_counts:
        res = subprocess.run([sys.executable, __file__, "--child", str(frames), "--batch", str(batch), "--tokens", str(tokens),
                              "--dim", str(dim), "--hidden", str(hidden)], capture_output=True, text=True, check=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B = 4, T = 200, 20 tokens, 2 repeats (a smoke test)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=800)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--dim", type=int, default=80)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="write the memory-against-T plot (PNG) here")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.frames, args.tokens, args.repeat = 4, 200, 20, 2
    if args.child is not None:
        child(args.child, args.batch, args.tokens, args.dim, args.hidden)
        return
    load = other_cpu_load()
    model, inputs = setup(args.batch, args.frames, args.tokens, args.dim, args.hidden)
    times = step_times(model, inputs, args.repeat)
    frame_counts = [args.frames // 4, args.frames // 2, args.frames, 2 * args.frames]
    curve = memory_curve(frame_counts, args.batch, args.tokens, args.dim, args.hidden)
    xs, ys = [c["frames"] for c in curve], [c["peak_mib"] for c in curve]
    slope = (ys[-1] - ys[0]) / (xs[-1] - xs[0])
    k = 2 * args.tokens
    lines = [f"# bench_neural_hmm ({'quick' if args.quick else 'full'})", "",
             f"`python benchmarks/bench_neural_hmm.py{' --quick' if args.quick else ''}`", "",
             f"- B = {args.batch}, T = {args.frames}, {args.tokens} tokens x 2 states (K = {k}), D = {args.dim}, "
             f"hidden {args.hidden}, autoregressive, float32; median of {args.repeat} steps after a warm-up",
             f"- other processes' CPU use in the second before the run: {load:.0%}", "", "### Machine", ""]
    lines += [f"- {key}: {value}" for key, value in machine_info().items()]
    lines += ["", "| training step (ms) | HMM part: kernel forward + backward (ms) | networks and optimiser (ms) | HMM share |",
              "|---:|---:|---:|---:|",
              f"| {times['step_ms']:.1f} | {times['hmm_ms']:.1f} | {times['networks_ms']:.1f} | {times['hmm_share']:.0%} |",
              "", "| T | peak memory growth over one step (MiB) | per frame (MiB) |", "|---:|---:|---:|"]
    lines += [f"| {x} | {y:.0f} | {y / x:.3f} |" for x, y in zip(xs, ys)]
    lines += ["", f"Between T = {xs[0]} and T = {xs[-1]}: {slope:.3f} MiB per frame "
              f"({slope / (args.batch * k) * 2 ** 20:.0f} bytes per frame, state and utterance)."]
    ok_time = times["hmm_ms"] <= 100 and times["hmm_share"] < 0.5
    lines += [f"Target (HMM part <= 100 ms and not the largest share): {'met' if ok_time else 'missed'}."]
    emit_report("\n".join(lines), args.markdown)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(xs, ys, "o-")
        ax.set_xlabel("frames T")
        ax.set_ylabel("peak memory growth (MiB)")
        ax.set_title(f"NeuralHMM training step, B={args.batch}, K={k}, D={args.dim}")
        ax.set_xlim(0, None)
        ax.set_ylim(0, None)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
