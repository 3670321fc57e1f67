"""``torch.compile`` and exported decoding: what compiling costs and gains, and how fast an
exported Viterbi program runs.

Under ``torch.compile`` the kernel's entry points run eagerly (``threads.sized_by_scores``
marks them with ``torch.compiler.disable``), so compiling can only speed up what is around the
kernel. Workloads (float32, CPU unless CUDA is present):

* a training step of a small network ending in an ``HMMLayer``: ``Linear(D, H) -> Tanh ->
  Linear(H, K) -> HMMLayer(K, "left_to_right")``, its loss's backward and an SGD step;
* ``HMM`` (diagonal Gaussian, dense): the log-likelihood ``model(x, lengths)`` without gradient,
  the same with its backward (gradient training), and ``model.viterbi``.

Each is timed eagerly and as ``torch.compile(...)`` (default inductor backend): the first call
(which compiles; inductor's on-disk caches are disabled, so every run compiles cold) and the
median of the calls after it, timed in alternation with the eager calls (a change in the
machine's load hits both alike). The ratio is eager / compiled: above 1, compiling pays.

Exported decoding: ``export_viterbi`` of the same HMM, loaded with
``torch.export.load(...).module()`` and run with the caller's torch thread count and with one
thread, beside ``model.viterbi`` (numba loops) and ``kernel.viterbi(..., backend="torch")``.

Usage::

    python benchmarks/bench_compile.py [--quick] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch._inductor.config as inductor_config
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit_report, one_thread, other_cpu_load, parse_run_args, report_header, time_call  # noqa: E402

import pytorch_hmm as ph  # noqa: E402
from pytorch_hmm import kernel  # noqa: E402
from pytorch_hmm.emissions import Gaussian  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def network_step(args, device: str) -> Callable[[nn.Module], Callable[[], None]]:
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, args.net_frames, args.dim, generator=g).to(device)
    target = torch.randint(0, args.net_states, (args.batch, args.net_frames), generator=g).to(device)
    net = nn.Sequential(nn.Linear(args.dim, args.hidden), nn.Tanh(), nn.Linear(args.hidden, args.net_states),
                        ph.HMMLayer(args.net_states, "left_to_right")).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)

    def make(module: nn.Module) -> Callable[[], None]:
        def step() -> None:
            posteriors = module(x)
            loss = -(posteriors.clamp_min(1e-6).log().gather(-1, target[..., None])).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sync(device)

        return step

    return net, make


def gaussian_hmm(args, device: str):
    g = torch.Generator().manual_seed(args.seed)
    k, d = args.hmm_states, args.dim_hmm
    model = ph.HMM(Gaussian(k, d, means=torch.randn(k, d, generator=g) * 2, covars=torch.rand(k, d, generator=g) + 0.5),
                   transitions=torch.softmax(torch.randn(k, k, generator=g), -1)).to(device)
    x = torch.randn(args.batch, args.frames, d, generator=g).to(device)
    lengths = torch.randint(args.frames // 2, args.frames + 1, (args.batch,), generator=g).to(device)
    lengths[0] = args.frames
    return model, x, lengths


def interleaved(calls: list[Callable[[], None]], rounds: int, budget_s: float) -> list[float]:
    """Median ms of each call, timed in alternation (one call of each per round, up to ``rounds``
    rounds or ``budget_s`` seconds), so a change in the machine's load hits them alike."""
    times: list[list[float]] = [[] for _ in calls]
    start = time.perf_counter()
    for _ in range(rounds):
        for fn, out in zip(calls, times):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() - start > budget_s:
            break
    return [statistics.median(t) for t in times]


def eager_and_compiled(name: str, make: Callable, target, args, device: str) -> list[str]:
    """``make(fn)`` -> a zero-argument call running ``fn``; ``target`` is what gets compiled."""
    eager = make(target)
    eager()  # warm-up
    torch._dynamo.reset()
    try:
        call = make(torch.compile(target))
        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
        eager_ms, compiled_ms = interleaved([eager, call], args.repeats, 2 * args.budget)
        row = [name, f"{eager_ms:.2f}", f"{compiled_ms:.2f}", f"{first:.1f}", f"{eager_ms / compiled_ms:.2f}"]
    except Exception as exc:  # no C++ compiler, unsupported platform: reported, not fatal
        eager_ms = time_call(eager, args.repeats, args.budget).median_ms
        row = [name, f"{eager_ms:.2f}", f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}", "", ""]
    print("  " + " | ".join(row), flush=True)
    return row


def compile_rows(args, device: str) -> list[list[str]]:
    rows = []
    net, make_step = network_step(args, device)
    rows.append(eager_and_compiled(f"network + HMMLayer training step (B={args.batch}, T={args.net_frames}, "
                                   f"D={args.dim}, H={args.hidden}, K={args.net_states})", make_step, net, args, device))
    model, x, lengths = gaussian_hmm(args, device)
    shape = f"B={args.batch}, T={args.frames}, D={args.dim_hmm}, K={args.hmm_states}"

    def scoring(fn):
        def call():
            with torch.no_grad():
                fn(x, lengths)
            sync(device)
        return call

    def training(fn):
        def call():
            (-fn(x, lengths).mean()).backward()
            model.zero_grad()
            sync(device)
        return call

    def decoding(fn):
        def call():
            fn(x, lengths)
            sync(device)
        return call

    rows.append(eager_and_compiled(f"HMM log-likelihood, no grad ({shape})", scoring, model, args, device))
    rows.append(eager_and_compiled(f"HMM log-likelihood + backward ({shape})", training, model, args, device))
    rows.append(eager_and_compiled(f"HMM viterbi ({shape})", decoding, model.viterbi, args, device))
    return rows


def export_rows(args, device: str) -> tuple[list[list[str]], dict]:
    model, x, lengths = gaussian_hmm(args, device)
    info = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "decoder.pt2"
        t0 = time.perf_counter()
        ph.export_viterbi(model, path)
        info["export_s"] = time.perf_counter() - t0
        info["size_kib"] = path.stat().st_size / 1024
        t0 = time.perf_counter()
        program = torch.export.load(path).module()
        info["load_s"] = time.perf_counter() - t0
    want = model.viterbi(x, lengths)
    emissions = model.log_emissions(x, lengths)
    single = lambda: one_thread(lambda: program(x, lengths))  # noqa: E731
    decoders = [("model.viterbi (numba loops)", torch.get_num_threads(), lambda: model.viterbi(x, lengths)),
                ('kernel.viterbi(backend="torch") on the model\'s potentials (emissions precomputed)', torch.get_num_threads(),
                 lambda: kernel.viterbi(emissions, model.transitions, model.log_init, lengths, backend="torch")),
                ("exported program", torch.get_num_threads(), lambda: program(x, lengths)),
                ("exported program under torch.set_num_threads(1)", 1, single)]
    firsts, same = [], []
    for _, _, fn in decoders:
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        firsts.append(time.perf_counter() - t0)
        same.append(torch.equal(out[0], want[0]) and torch.allclose(out[1], want[1], rtol=1e-5, atol=0))
    medians = interleaved([lambda fn=fn: (fn(), sync(device)) for _, _, fn in decoders], args.repeats, 2 * args.budget)
    rows = []
    for (name, threads, _), first, ms, ok in zip(decoders, firsts, medians, same):
        rows.append([name, str(threads), f"{first * 1e3:.1f}", f"{ms:.2f}", f"{ms * 1e3 / args.frames:.1f}", "yes" if ok else "NO"])
        print("  " + " | ".join(rows[-1]), flush=True)
    return rows, info



def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = parse_run_args(parser, argv, repeats=(9, 3), budget=(10.0, 2.0))
    if args.quick:
        args.batch, args.net_frames, args.dim, args.hidden, args.net_states = 4, 50, 16, 32, 8
        args.frames, args.dim_hmm, args.hmm_states = 100, 13, 8
    else:
        args.batch, args.net_frames, args.dim, args.hidden, args.net_states = 16, 200, 40, 256, 32
        args.frames, args.dim_hmm, args.hmm_states = 1000, 13, 8
    start, load = time.perf_counter(), other_cpu_load()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    inductor_config.force_disable_caches = True  # cold compiles: what a first run pays (no on-disk cache hits)
    print("torch.compile rows:", flush=True)
    rows = compile_rows(args, device)
    print("exported decoding rows:", flush=True)
    export, info = export_rows(args, device)
    out = report_header(f"## torch.compile and exported decoding ({device}, float32)", start, omit=("hmmlearn", "pomegranate"))
    out += [f"- share of all cores used by other processes in the 1 s before the run: {load:.0%}", "",
            "### torch.compile (default inductor backend; the kernel runs eagerly inside)", "",
            "| workload | eager ms | compiled ms | first compiled call (compiles), s | eager / compiled |",
            "|---|---:|---:|---:|---:|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += ["", f"### Exported Viterbi (`export_viterbi`, B={args.batch}, T={args.frames}, D={args.dim_hmm}, "
            f"K={args.hmm_states})", "",
            f"Export {info['export_s']:.1f} s, file {info['size_kib']:.0f} KiB, `torch.export.load(...).module()` "
            f"{info['load_s']:.2f} s.", "",
            "| decoder | torch threads | first call ms | ms per call | µs per frame | same as model.viterbi |",
            "|---|---:|---:|---:|---:|---|"]
    out += ["| " + " | ".join(r) + " |" for r in export]
    emit_report("\n".join(out) + "\n", args.markdown)


if __name__ == "__main__":
    main()
