"""Peak memory and time of the chain kernel on very long sequences, with and without checkpoints.

Three operations on float32 log-emissions ``(B, T, K)`` (``randn(...).log_softmax(-1)``) over an
ergodic ``Dense`` chain (self-loop 0.9, uniform start):

* ``fb``: ``kernel.forward_backward`` (log Z + the ``(B, T, K)`` posteriors, which it returns);
* ``grad``: ``kernel.log_partition`` and its backward w.r.t. the emissions (the ``(B, T, K)``
  gradient is returned);
* ``em``: the E-step statistics of EM: log Z, the posteriors summed over time and the expected
  transitions. Plain: ``kernel.marginals``; checkpointed: ``kernel.posterior_chunks(..., edges=True)``
  summed chunk by chunk (no ``(B, T, K)`` tensor is made).

each plain (``checkpoint=None``) and checkpointed (``checkpoint=C``), over ``T`` (1 000 .. 100 000,
``K = 64``, ``B = 1``), over ``K`` (8, 64, 256 at ``T = 100 000``), over ``C`` (at ``T = 100 000``,
``K = 64``), on the compiled loops and (shorter ``T``) the PyTorch loops, and at the roadmap's
point: ``B = 64``, ``T = 4000`` and ``8000``, ``K = 64``.

Memory: each configuration runs in a fresh subprocess, which builds its inputs, warms the
kernel up on a small problem, resets its peak resident memory (``/proc/self/clear_refs``, see
``common.peak_extra_rss_mb``) and reports the peak during one call less the memory before it;
what the call returns counts. Time: the median of up to ``--repeats`` further calls in the same
process. The plot (``--plot``) draws memory against ``T`` and ``K``.

Run: ``python benchmarks/bench_memory.py [--quick] [--markdown PATH] [--plot PNG]`` (about 10
minutes on 2 cores; ``--quick``: T up to 10 000, K = 64, a minute).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    cpu_snapshot,
    emit_report,
    machine_info,
    other_cpu_load,
    other_cpu_share,
    parse_run_args,
    peak_extra_rss_mb,
    time_call,
)

try:
    import pytorch_hmm  # noqa: F401
except ImportError:  # not installed yet: fall back to the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

OPS = ("fb", "grad", "em")
CHUNK = 1024  # the checkpointed rows' chunk length unless stated


# --------------------------------------------------------------------------
# the measured calls (run in the child process)
# --------------------------------------------------------------------------


def make_call(op: str, backend: str, e: torch.Tensor, trans, log_init: torch.Tensor, chunk: Optional[int]):
    """A no-argument callable running ``op`` once; returns what the caller would keep (log Z first)."""
    from pytorch_hmm import kernel

    kw = dict(backend=backend, checkpoint=chunk)
    if op == "fb":
        return lambda: kernel.forward_backward(e, trans, log_init, **kw)
    if op == "grad":
        leaf = e.detach().requires_grad_(True)

        def grad():
            log_z = kernel.log_partition(leaf, trans, log_init, **kw)
            return log_z.detach(), torch.autograd.grad(log_z.sum(), leaf)[0]

        return grad
    if op == "em":
        if chunk is None:
            def em():
                log_z, post, xi = kernel.marginals(e, trans, log_init, backend=backend)
                return log_z, post.sum(1), xi
            return em

        def em_chunked():
            chunks = kernel.posterior_chunks(e, trans, log_init, edges=True, **kw)
            occupancy = counts = 0
            for c in chunks:
                occupancy = occupancy + c.posteriors.sum(1)
                counts = counts + c.transitions
            return chunks.log_z, occupancy, counts

        return em_chunked
    raise ValueError(op)


def child(op: str, backend: str, batch: int, frames: int, states: int, chunk: int, repeats: int, budget: float) -> None:
    """One configuration (``chunk`` 0: plain); prints one JSON line."""
    from pytorch_hmm.transitions import ergodic

    chunk_or_none = chunk or None
    torch.manual_seed(0)
    e = torch.randn(batch, frames, states).log_softmax(-1)
    trans = ergodic(states, self_loop=0.9)
    log_init = torch.full((states,), 1.0 / states).log()
    small = e[:, : min(frames, 64)].clone()  # compile and warm up every loop on a small problem
    make_call(op, backend, small, trans, log_init, min(chunk_or_none, 16) if chunk_or_none else None)()
    call = make_call(op, backend, e, trans, log_init, chunk_or_none)
    extra = peak_extra_rss_mb(call)
    timing = time_call(call, repeats, budget, warmup=False)
    log_z = timing.result[0]
    print(json.dumps({"extra_mb": extra, "ms": timing.median_ms, "runs": len(timing.times_ms),
                      "log_z": float(log_z.double().sum()), "finite": bool(torch.isfinite(log_z).all())}))


# --------------------------------------------------------------------------
# the sweep (parent process)
# --------------------------------------------------------------------------


def configurations(quick: bool) -> list[dict]:
    """Every configuration to measure, plain and checkpointed rows side by side."""
    rows = []

    def add(group, op, backend, b, t, k, chunks):
        for c in chunks:
            rows.append(dict(group=group, op=op, backend=backend, batch=b, frames=t, states=k, chunk=c))

    frames = (1000, 3000, 10_000) if quick else (1000, 3000, 10_000, 30_000, 100_000)
    for t in frames:
        for op in OPS:
            add("T", op, "numba", 1, t, 64, (0, CHUNK))
    long_t = frames[-1]
    if not quick:
        for k in (8, 256):
            for op in OPS:
                add("K", op, "numba", 1, long_t, k, (0, CHUNK))
        add("C", "fb", "numba", 1, long_t, 64, (128, 256, 4096, 16_384))
        add("C", "em", "numba", 1, long_t, 64, (128, 256, 4096, 16_384))
    for t in (1000, 10_000):
        for op in ("fb", "grad"):
            add("torch", op, "torch", 1, t, 64, (0, CHUNK))
    for t in ((4000,) if quick else (4000, 8000)):
        for op in OPS:
            add("roadmap", op, "numba", 64, t, 64, (0, 256, CHUNK))
    for op in OPS:
        add("roadmap", op, "torch", 64, 4000, 64, (0, CHUNK))
    return rows


def measure(cfg: dict, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", cfg["op"], cfg["backend"], str(cfg["batch"]),
           str(cfg["frames"]), str(cfg["states"]), str(cfg["chunk"]), "--repeats", str(args.repeats), "--budget", str(args.budget)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    try:
        return {**cfg, **json.loads(proc.stdout.strip().splitlines()[-1])}
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**cfg, "error": tail[:200]}


def array_mb(r: dict) -> float:
    """One ``(B, T, K)`` float32 array, in MB (the unit the memory is best read in)."""
    return r["batch"] * r["frames"] * r["states"] * 4 / 2**20


def key(r: dict) -> tuple:
    return (r["op"], r["backend"], r["batch"], r["frames"], r["states"])


def pair_table(rows: list[dict], chunks: tuple) -> list[str]:
    """Plain against checkpointed rows of the same configuration: memory, time, log Z agreement."""
    plain = {key(r): r for r in rows if r["chunk"] == 0}
    out = ["| op | backend | B | T | K | (B,T,K) f32 MB | C | plain MB | checkpointed MB | memory ratio | plain ms | "
           "checkpointed ms | time ratio | rel. diff. log Z |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["chunk"] == 0 or r["chunk"] not in chunks:
            continue
        p = plain.get(key(r))
        if p is None or "error" in p or "error" in r:
            out.append(f"| {r['op']} | {r['backend']} | {r['batch']} | {r['frames']} | {r['states']} | | {r['chunk']} | "
                       f"error: {(p or {}).get('error', '')} {r.get('error', '')} |||||||")
            continue
        diff = abs(r["log_z"] - p["log_z"]) / max(abs(p["log_z"]), 1e-300)
        out.append(f"| {r['op']} | {r['backend']} | {r['batch']} | {r['frames']} | {r['states']} | {array_mb(r):.1f} | "
                   f"{r['chunk']} | {p['extra_mb']:.1f} | {r['extra_mb']:.1f} | {r['extra_mb'] / max(p['extra_mb'], 1e-9):.2f} | "
                   f"{p['ms']:.0f} | {r['ms']:.0f} | {r['ms'] / p['ms']:.2f} | {diff:.1e} |")
    return out


def roadmap_lines(rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if r["group"] != "roadmap" or "error" in r:
            continue
        mode = f"checkpoint={r['chunk']}" if r["chunk"] else "plain"
        out.append(f"- B={r['batch']}, T={r['frames']}, K={r['states']}, {r['op']}, {r['backend']}, {mode}: "
                   f"{'finite' if r['finite'] else 'NOT FINITE'}, peak extra {r['extra_mb']:.1f} MB "
                   f"({r['extra_mb'] / array_mb(r):.2f} x one (B,T,K) array), {r['ms']:.0f} ms")
    failed = [r for r in rows if r["group"] == "roadmap" and ("error" in r or not r.get("finite"))]
    out.append(f"- roadmap target (4000+ frames at batch 64 run, finite): **{'met' if not failed else 'missed'}**")
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    styles = {"fb": ("tab:blue", "o"), "grad": ("tab:orange", "x"), "em": ("tab:green", "s")}  # fb and grad overlap
    for ax, group, xname, xlabel in ((axes[0], "T", "frames", "frames T (B = 1, K = 64)"),
                                     (axes[1], "K", "states", "states K (B = 1, T = 100 000)")):
        for op, (color, marker) in styles.items():
            for chunk, style, label in ((0, marker + "-", "plain"), (CHUNK, marker + "--", f"checkpoint={CHUNK}")):
                sel = [r for r in rows if r["op"] == op and r["chunk"] == chunk and r["backend"] == "numba"
                       and r["batch"] == 1 and "error" not in r
                       and (r["group"] == "T" if group == "T" else (r["frames"] == 100_000 and r["group"] in ("T", "K")))]
                sel.sort(key=lambda r: r[xname])
                if sel:
                    ax.plot([r[xname] for r in sel], [max(r["extra_mb"], 0.1) for r in sel], style, color=color,
                            label=f"{op}, {label}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("peak extra memory (MB)")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.suptitle("chain kernel, float32, compiled loops: plain vs checkpointed forward-backward")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


def build_report(args, rows: list[dict], runtime: float, load: tuple) -> str:
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    out = [f"## Memory and very long sequences ({'quick' if args.quick else 'full'})", "",
           f"Command: `{command}`  ", f"Total runtime: {runtime:.0f} s", "", "### Machine", ""]
    out += [f"- {k}: {v}" for k, v in machine_info().items()]
    out.append(f"- share of all cores used by other processes: {load[0]:.0%} in the 1 s before the run, {load[1]:.0%} during it")
    out += ["", f"Peak extra memory (MB, fresh process per row, outputs included) and median time (ms, up to "
            f"{args.repeats} calls). `em` checkpointed never makes a (B, T, K) tensor; `fb` and `grad` return one.", ""]
    for title, groups, chunks in (("Over T (K = 64, B = 1, compiled loops)", ("T",), (CHUNK,)),
                                  ("Over K (T = 100 000, B = 1, compiled loops)", ("K",), (CHUNK,)),
                                  ("Over the chunk length C (T = 100 000, K = 64)", ("C", "T"), (128, 256, CHUNK, 4096, 16_384)),
                                  ("PyTorch loops (K = 64, B = 1)", ("torch",), (CHUNK,)),
                                  ("Roadmap: B = 64, T = 4000+, K = 64", ("roadmap",), (256, CHUNK))):
        sel = [r for r in rows if r["group"] in groups]
        if title.startswith("Over the chunk"):
            sel = [r for r in sel if r["frames"] == 100_000 and r["states"] == 64 and r["op"] in ("fb", "em")]
            sel.sort(key=lambda r: (r["op"], r["chunk"]))
        lines = pair_table(sel, chunks)
        if len(lines) > 2:
            out += ["", f"### {title}", ""] + lines
    out += ["", "### Roadmap targets", ""] + roadmap_lines(rows)
    return "\n".join(out) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", type=Path, default=None, help="write the memory plot (PNG) here")
    parser.add_argument("--child", nargs=6, default=None, help=argparse.SUPPRESS)
    args = parse_run_args(parser, argv, repeats=(3, 2), budget=(3.0, 1.0))
    if args.child:
        op, backend, b, t, k, c = args.child
        child(op, backend, int(b), int(t), int(k), int(c), args.repeats, args.budget)
        return
    start = time.perf_counter()
    load_before = other_cpu_load()
    snap = cpu_snapshot()
    rows = []
    for cfg in configurations(args.quick):
        row = measure(cfg, args)
        rows.append(row)
        shown = {k: row[k] for k in ("extra_mb", "ms", "error") if k in row}
        print(f"{cfg['group']:>7} {cfg['op']:>4} {cfg['backend']:>5} B={cfg['batch']} T={cfg['frames']} K={cfg['states']} "
              f"C={cfg['chunk']}: {shown}", flush=True)
    report = build_report(args, rows, time.perf_counter() - start, (load_before, other_cpu_share(snap, cpu_snapshot())))
    emit_report(report, args.markdown)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
