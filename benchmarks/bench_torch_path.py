"""The PyTorch loops (``backend="torch"``, the CUDA path): operations per frame, time per frame,
and whether ``torch.compile`` of one step pays.

Workload: a dense chain, B = 16 sequences of T = 1000 frames, K in {8, 64}, float32, random
emissions and transitions, on every available device (CPU; CUDA when present).

* ops per frame: the ATen operations ``kernel.forward_backward(..., backend="torch")`` launches
  (counted with ``torch.profiler``), divided by ``2 T`` (a forward and a backward pass);
* ms per call and µs per frame of that call;
* one forward step (``step_table(Dense(A), LogSemiring).step`` plus the normalisation, what
  the forward loop runs per frame) eager and under ``torch.compile`` (default mode; with CUDA
  also ``mode="reduce-overhead"``, CUDA graphs), looped over the T frames: µs per frame and the
  one-off compile time. The library does not compile anything itself; this measures whether an
  opt-in would pay.

Usage::

    python benchmarks/bench_torch_path.py [--quick] [--markdown PATH] [--no-compile]
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit_report, other_cpu_load, parse_run_args, report_header, time_call  # noqa: E402

from pytorch_hmm import kernel  # noqa: E402
from pytorch_hmm.kernel.steps import step_table  # noqa: E402
from pytorch_hmm.semiring import LogSemiring  # noqa: E402
from pytorch_hmm.transitions import Dense  # noqa: E402


def problem(b: int, t: int, k: int, device: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    e = (torch.randn(b, t, k, generator=g) * 2).to(device)
    trans = torch.randn(k, k, generator=g).log_softmax(-1).to(device)
    init = torch.randn(k, generator=g).log_softmax(-1).to(device)
    return e, Dense(trans), init


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def ops_per_frame(e, structure, init) -> float:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        kernel.forward_backward(e, structure, init, backend="torch")
    launched = sum(evt.count for evt in prof.key_averages() if evt.key.startswith("aten::") and evt.cpu_parent is None)
    return launched / (2 * e.shape[1])


def step_loop(step, e, init):
    a = init.expand(e.shape[0], -1)
    for t in range(e.shape[1]):
        a = step(a, e[:, t])
    return a


def make_step(structure):
    table = step_table(structure, LogSemiring)

    # a library from before the normalised fast path (compare_revisions.sh) has no such argument
    kwargs = {"normalised": True} if "normalised" in inspect.signature(table.step).parameters else {}

    def step(a, e_t):
        out = table.step(a, 0, **kwargs) + e_t
        top = torch.nan_to_num(out.amax(-1, keepdim=True), neginf=0.0)
        return out - top

    return step


def run(args, device: str) -> list[list[str]]:
    rows = []
    for k in args.ks:
        e, structure, init = problem(args.batch, args.frames, k, device, args.seed)
        fb = time_call(lambda: (kernel.forward_backward(e, structure, init, backend="torch"), sync(device)),
                       args.repeats, args.budget)
        step = make_step(structure)
        eager = time_call(lambda: (step_loop(step, e, init), sync(device)), args.repeats, args.budget)
        row = [device, str(k), f"{fb.median_ms:.1f}", f"{fb.median_ms * 1e3 / (2 * args.frames):.1f}",
               f"{eager.median_ms * 1e3 / args.frames:.1f}"]
        modes = ["default"] + (["reduce-overhead"] if device.startswith("cuda") else [])
        for mode in modes:
            if args.no_compile:
                row.append("not run")
                continue
            try:
                compiled = torch.compile(step, mode=mode, dynamic=False)
                t0 = time.perf_counter()
                step_loop(compiled, e, init)
                sync(device)
                first = time.perf_counter() - t0
                timed = time_call(lambda: (step_loop(compiled, e, init), sync(device)), args.repeats, args.budget)
                row.append(f"{timed.median_ms * 1e3 / args.frames:.1f} ({mode}; first call {first:.1f} s)")
            except Exception as exc:  # no C++ compiler, unsupported platform: reported, not fatal
                row.append(f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
        row.insert(2, f"{ops_per_frame(e, structure, init):.1f}")  # last: the profiler slows what runs after it
        rows.append(row)
        print("  " + " | ".join(row), flush=True)
    return rows


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=None, help="state counts (default 8 64; 8 with --quick)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    args = parse_run_args(parser, argv, repeats=(7, 2), budget=(5.0, 1.0))
    args.batch, args.frames = (4, 100) if args.quick else (16, 1000)
    args.ks = args.ks or ([8] if args.quick else [8, 64])
    start, load = time.perf_counter(), other_cpu_load()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = [r for d in devices for r in run(args, d)]
    out = report_header(f"## PyTorch loops: dense chain, B={args.batch}, T={args.frames} (float32)", start,
                        omit=("hmmlearn", "pomegranate"))
    out += [f"- share of all cores used by other processes in the 1 s before the run: {load:.0%}", "",
            "| device | K | ATen ops per frame (fb) | fb ms per call | fb µs per frame and pass | "
            "one forward step eager, µs per frame | the step under torch.compile, µs per frame |",
            "|---|---:|---:|---:|---:|---:|---|"]
    out += ["| " + " | ".join(r[:6]) + " | " + "; ".join(r[6:]) + " |" for r in rows]
    emit_report("\n".join(out) + "\n", args.markdown)


if __name__ == "__main__":
    main()
