"""Benchmark CTC forced alignment and the CTC loss against PyTorch (and torchaudio when installed).

Workload (from the issue): B = 32 utterances of T = 1000 frames, targets of S = 200 tokens,
C = 40 classes (blank = 0); random logits with a fixed seed, ``log_softmax``'d, float32, all
sequences full length. Everything runs side by side in one process:

* forced alignment: ``pytorch_hmm.alignment.ctc_forced_align`` on the whole batch, per backend
  (``numba`` = what ``backend="auto"`` picks on CPU, and ``torch``, the path that runs on CUDA);
  torchaudio's ``forced_align`` (batch size 1 only) looped over the utterances, if installed;
* CTC loss, forward + backward from the logits (``log_softmax`` -> loss -> ``backward``):
  ``pytorch_hmm.alignment.ctc_loss`` per backend vs ``torch.nn.functional.ctc_loss``
  (time-first input, so it gets ``log_probs.transpose(0, 1)``); and forward only.

Times are medians of repeated calls after one untimed warm-up call; per utterance = per batch / B.

Usage::

    python benchmarks/bench_ctc.py [--quick] [--repeats 7] [--budget 10] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Timing, cpu_snapshot, emit_report, machine_info, other_cpu_load, other_cpu_share, parse_run_args, time_call,
)

if importlib.util.find_spec("pytorch_hmm") is None:  # not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pytorch_hmm.alignment.ctc import ctc_forced_align, ctc_loss  # noqa: E402

BACKENDS = ("numba", "torch")
CPU_LOAD_WARN = 0.10
ALIGN, LOSS_FB, LOSS_F = "forced alignment", "loss forward+backward", "loss forward"


@dataclass
class Workload:
    logits: torch.Tensor  # (B, T, C) float32
    log_probs: torch.Tensor  # (B, T, C)
    targets: torch.Tensor  # (B, S) int64, no blanks
    input_lengths: torch.Tensor  # (B,)
    target_lengths: torch.Tensor  # (B,)


def build_workload(b: int, t: int, s: int, c: int, seed: int) -> Workload:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, c, generator=g)
    targets = torch.randint(1, c, (b, s), generator=g)
    return Workload(logits, logits.log_softmax(-1), targets, torch.full((b,), t), torch.full((b,), s))


@dataclass
class Row:
    task: str
    impl: str
    timing: Optional[Timing] = None
    error: Optional[str] = None
    ratio: Optional[float] = None  # to the reference of the task


def loss_fb(w: Workload, fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], Any]:
    """Zero-arg call: logits -> log_softmax -> loss (sum) -> backward; returns (loss, grad)."""

    def call():
        x = w.logits.detach().requires_grad_(True)
        loss = fn(x.log_softmax(-1))
        loss.backward()
        return loss.detach(), x.grad

    return call


def cases(w: Workload) -> list[tuple[str, str, Callable[[], Any]]]:
    out = []
    for backend in BACKENDS:
        out.append((ALIGN, f"ours ({backend})",
                    lambda backend=backend: ctc_forced_align(w.log_probs, w.targets, w.input_lengths, w.target_lengths,
                                                             backend=backend)))
    try:
        from torchaudio.functional import forced_align  # optional; batch size 1 only

        def torchaudio_loop():
            return [forced_align(w.log_probs[i : i + 1], w.targets[i : i + 1], w.input_lengths[i : i + 1],
                                 w.target_lengths[i : i + 1]) for i in range(w.targets.shape[0])]

        out.append((ALIGN, "torchaudio forced_align (loop over B)", torchaudio_loop))
    except Exception as exc:  # not installed (or broken): recorded as a skipped row
        out.append((ALIGN, "torchaudio forced_align (loop over B)", _skipped(exc)))

    def reference(lp):
        return F.ctc_loss(lp.transpose(0, 1), w.targets, w.input_lengths, w.target_lengths, reduction="sum")

    def ours(lp, backend):
        return ctc_loss(lp, w.targets, w.input_lengths, w.target_lengths, reduction="sum", backend=backend)

    impls = [(f"ours ({b})", lambda lp, b=b: ours(lp, b)) for b in BACKENDS] + [("torch F.ctc_loss", reference)]
    out += [(LOSS_FB, name, loss_fb(w, fn)) for name, fn in impls]
    out += [(LOSS_F, name, lambda fn=fn: _no_grad(lambda: fn(w.log_probs))) for name, fn in impls]
    return out


def _no_grad(fn):
    with torch.no_grad():
        return fn()


def _skipped(exc: Exception) -> Callable[[], Any]:
    def call():
        raise RuntimeError(f"skipped: {type(exc).__name__}: {exc}")

    return call


REFERENCES = {ALIGN: "ours (numba)", LOSS_FB: "torch F.ctc_loss", LOSS_F: "torch F.ctc_loss"}


def run(args: argparse.Namespace, w: Workload) -> tuple[list[Row], dict[str, Any]]:
    rows, results = [], {}
    for task, impl, fn in cases(w):
        row = Row(task, impl)
        try:
            row.timing = time_call(fn, args.repeats, args.budget, args.slow)
            results[(task, impl)] = row.timing.result
            row.timing.result = None
        except Exception as exc:
            row.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
        status = f"{row.timing.median_ms:10.1f} ms" if row.timing else row.error
        print(f"  {task:<22} {impl:<38} {status}", flush=True)
        rows.append(row)
    ref = {r.task: r.timing.median_ms for r in rows if r.impl == REFERENCES[r.task] and r.timing}
    for r in rows:
        if r.timing and r.task in ref:
            r.ratio = r.timing.median_ms / ref[r.task]
    return rows, results


def agreement(results: dict[Any, Any], w: Workload) -> list[str]:
    """Our backends against each other, and every loss against F.ctc_loss in float64.

    The float64 reference (loss and gradient w.r.t. the logits) is computed here, untimed.
    """
    lines = []
    a = results.get((ALIGN, "ours (numba)"))
    b = results.get((ALIGN, "ours (torch)"))
    if a is not None and b is not None:
        same = (a[0] == b[0]).double().mean().item()
        lines.append(f"- forced alignment, numba vs torch: {same:.4%} of frame labels equal; best-path score "
                     f"max abs diff {(a[1].double().sum(1) - b[1].double().sum(1)).abs().max().item():.2e}")
    w64 = Workload(w.logits.double(), w.log_probs.double(), w.targets, w.input_lengths, w.target_lengths)
    ref_loss, ref_grad = loss_fb(w64, lambda lp: F.ctc_loss(lp.transpose(0, 1), w.targets, w.input_lengths,
                                                             w.target_lengths, reduction="sum"))()
    for impl in [f"ours ({b})" for b in BACKENDS] + ["torch F.ctc_loss"]:
        res = results.get((LOSS_FB, impl))
        if res is None:
            continue
        rel = ((res[0].double() - ref_loss).abs() / ref_loss.abs()).item()
        grad = (res[1].double() - ref_grad).abs().max().item()
        lines.append(f"- loss, {impl} (float32) vs F.ctc_loss in float64: rel. diff of the loss {rel:.2e}; "
                     f"max abs diff of the gradient w.r.t. the logits {grad:.2e}")
    return lines


def table(rows: list[Row], batch: int) -> list[str]:
    lines = ["| task | implementation | ms per batch | ms per utterance | runs | ratio |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if r.timing is None:
            lines.append(f"| {r.task} | {r.impl} | {r.error} | | | |")
            continue
        ratio = f"{r.ratio:.2f}× {REFERENCES[r.task]}" if r.ratio is not None else ""
        lines.append(f"| {r.task} | {r.impl} | {r.timing.median_ms:.1f} | {r.timing.median_ms / batch:.2f} | "
                     f"{len(r.timing.times_ms)} | {ratio} |")
    return lines


def report(args, rows, results, w, runtime_s, load) -> str:
    b, t, c = w.logits.shape
    out = [
        f"## CTC benchmark: B={b}, T={t}, S={w.targets.shape[1]}, C={c} (float32)",
        "",
        f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`  ",
        f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}  ",
        f"Total runtime: {runtime_s:.1f} s",
        "",
        "### Machine",
        "",
    ]
    out += [f"- {k}: {v}" for k, v in machine_info().items() if k not in ("hmmlearn", "pomegranate")]
    out.append(f"- share of all cores used by other processes: {load[0]:.0%} in the 1 s before the run, "
               f"{load[1]:.0%} during it")
    if max(load) > CPU_LOAD_WARN:
        out += ["", "**WARNING: other processes were using the CPU; timings are inflated.**"]
    out += ["", "### Timings", "",
            f"Median of up to {args.repeats} timed calls after one warm-up call (fewer once a row used "
            f"{args.budget:g} s). Loss rows start from the logits: log_softmax -> loss (sum) [-> backward].", ""]
    out += table(rows, b)
    out += ["", "### Agreement", ""] + (agreement(results, w) or ["- (nothing to compare)"])
    return "\n".join(out) + "\n"


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=None, help="B (default 32; 8 with --quick)")
    p.add_argument("--frames", type=int, default=None, help="T (default 1000; 300 with --quick)")
    p.add_argument("--target", type=int, default=None, help="S (default 200; 60 with --quick)")
    p.add_argument("--classes", type=int, default=40, help="C (default 40)")
    p.add_argument("--slow", type=float, default=30.0, help="a row whose warm-up takes this long is not repeated")
    args = parse_run_args(p, argv, repeats=(7, 2), budget=(10.0, 1.0))
    defaults = dict(batch=(8, 32), frames=(300, 1000), target=(60, 200))
    for name, (quick, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    load_before = other_cpu_load()
    cpu_start = cpu_snapshot()
    w = build_workload(args.batch, args.frames, args.target, args.classes, args.seed)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; other processes' CPU use "
          f"{load_before:.0%}", flush=True)
    rows, results = run(args, w)
    load = (load_before, other_cpu_share(cpu_start, cpu_snapshot()))
    text = report(args, rows, results, w, time.perf_counter() - start, load)
    emit_report(text, args.markdown)


if __name__ == "__main__":
    main()
