"""Benchmark the pytorch_hmm chain kernel against hmmlearn and pomegranate.

Workload (from the issue): a Gaussian HMM with diagonal covariances, D = 13
features, N = 16 sequences of T = 1000 frames, K states for K in {8, 64, 256}.
Parameters are random with a fixed seed; the data are sampled from the model
with hmmlearn's ``GaussianHMM.sample``.

Every timed call starts from the raw observations, so each implementation
pays for its own Gaussian log-emission computation:

* ours, fb:       torch float32 diag-Gaussian log emissions + log Z + posteriors
                  (``pytorch_hmm.kernel.forward_backward`` if it exists, else
                  ``log_partition`` followed by ``posteriors``), per backend;
* ours, viterbi:  the same emissions + ``pytorch_hmm.kernel.viterbi``;
* hmmlearn:       ``GaussianHMM(covariance_type="diag")`` with
                  ``implementation="scaling"`` and ``"log"``, timing
                  ``score_samples`` (fb) and ``decode(algorithm="viterbi")``;
* pomegranate v1: ``DenseHMM`` of diag ``Normal`` (float32). fb times the
                  emission matrix + ``forward`` + ``backward`` + posterior
                  normalisation, i.e. ``DenseHMM.forward_backward`` without its
                  expected-transition tensor, which is (N, T-1, K*K) -- 4.2 GB
                  at K = 256 -- and that neither hmmlearn's ``score_samples``
                  nor our fb computes. viterbi times ``DenseHMM.viterbi``.

Times are medians over repeated calls after one untimed warm-up call. Peak
extra memory of our fb is measured in a fresh subprocess per (K, backend);
see ``common.peak_extra_rss_mb`` for the method.

Usage::

    PYTHONPATH=src python benchmarks/bench_kernel.py [--ks 8 64 256]
        [--repeats 15] [--budget 5] [--quick] [--markdown PATH] [--no-memory]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    GaussianHMMParams,
    Timing,
    diag_gaussian_log_emissions,
    emit_report,
    machine_info,
    make_hmmlearn,
    make_params,
    make_pomegranate,
    cpu_snapshot,
    other_cpu_load,
    other_cpu_share,
    parse_run_args,
    peak_extra_rss_mb,
    sample_sequences,
    time_call,
)

try:
    import pytorch_hmm  # noqa: F401
except ImportError:  # not installed yet: fall back to the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

N_FEATURES = 13
N_SEQS = 16
SEQ_LEN = 1000
BACKENDS = ("numba", "torch")

TASK_FB = "fb (logL + posteriors)"
TASK_VIT = "viterbi"
REFERENCE = "hmmlearn (scaling)"

# Targets: our time / hmmlearn-scaling time for the same task and K.
TIME_TARGETS: dict[tuple[str, int], float] = {
    (TASK_FB, 8): 0.5,
    (TASK_FB, 64): 0.25,
    (TASK_FB, 256): 0.07,
    (TASK_VIT, 64): 0.7,
}
MEMORY_TARGETS_MB: dict[int, float] = {256: 100.0}
CPU_LOAD_WARN = 0.10  # warn when other processes use more than this share of the cores


# --------------------------------------------------------------------------
# Kernel access
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Kernel:
    """The pytorch_hmm entry points this benchmark uses."""

    fb: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    viterbi: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    dense: Callable[[torch.Tensor], Any]
    fb_description: str


def load_kernel() -> tuple[Optional[Kernel], str]:
    """Import the kernel; returns (kernel or None, human-readable note)."""
    try:
        from pytorch_hmm import kernel as mod
        from pytorch_hmm.transitions import Dense
    except Exception as exc:  # kernel not landed yet, or broken
        return None, f"pytorch_hmm.kernel unavailable: {type(exc).__name__}: {exc}"

    one_pass = getattr(mod, "forward_backward", None)
    if one_pass is not None:
        fb, how = one_pass, "pytorch_hmm.kernel.forward_backward (log Z + posteriors in one call)"
    else:

        def fb(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            return mod.log_partition(*args, **kwargs), mod.posteriors(*args, **kwargs)

        how = ("log_partition + posteriors (two calls: no forward_backward "
               "in pytorch_hmm.kernel)")
    return Kernel(fb, mod.viterbi, Dense, how), how


# --------------------------------------------------------------------------
# Workload
# --------------------------------------------------------------------------


@dataclass
class Workload:
    """One K's parameters and data in every format the implementations need."""

    params: GaussianHMMParams
    x: np.ndarray  # (N, T, D) float64, as sampled
    x32: torch.Tensor = field(init=False)  # (N, T, D) float32
    x_flat: np.ndarray = field(init=False)  # (N*T, D) float64 for hmmlearn
    lengths: list[int] = field(init=False)
    means32: torch.Tensor = field(init=False)
    covars32: torch.Tensor = field(init=False)
    log_init32: torch.Tensor = field(init=False)
    log_trans32: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        f32 = torch.float32
        n, t, d = self.x.shape
        self.x32 = torch.as_tensor(self.x, dtype=f32).contiguous()
        self.x_flat = self.x.reshape(n * t, d)
        self.lengths = [t] * n
        self.means32 = torch.as_tensor(self.params.means, dtype=f32)
        self.covars32 = torch.as_tensor(self.params.covars, dtype=f32)
        self.log_init32 = torch.as_tensor(np.log(self.params.startprob), dtype=f32)
        self.log_trans32 = torch.as_tensor(np.log(self.params.transmat), dtype=f32)

    @property
    def n_states(self) -> int:
        return self.params.n_states

    def log_emissions(self) -> torch.Tensor:
        """(N, T, K) float32 diag-Gaussian log emissions."""
        return diag_gaussian_log_emissions(self.x32, self.means32, self.covars32)


def build_workload(n_states: int, seed: int) -> Workload:
    """Seeded parameters for ``n_states`` and N x T frames sampled from them."""
    params = make_params(n_states, N_FEATURES, seed=seed + n_states)
    x = sample_sequences(params, N_SEQS, SEQ_LEN, seed=seed)
    return Workload(params, x)


# --------------------------------------------------------------------------
# Benchmark cases
# --------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a case computed, for the agreement checks (numpy, float64)."""

    loglik: Optional[float]  # total over sequences (Viterbi: best-path score)
    posteriors: Optional[np.ndarray] = None  # (N*T, K)
    path: Optional[np.ndarray] = None  # (N*T,)


@dataclass(frozen=True)
class Case:
    """One implementation x task: ``make(w)`` returns the zero-arg timed call,
    ``outcome(result)`` converts its return value (outside the timing)."""

    impl: str
    task: str
    make: Callable[[Workload], Callable[[], Any]]
    outcome: Callable[[Any], Outcome]


def ours_cases(kernel: Kernel) -> list[Case]:
    """fb and Viterbi for each of our backends."""
    cases = []
    for backend in BACKENDS:

        def make_fb(w: Workload, backend: str = backend) -> Callable[[], Any]:
            trans = kernel.dense(w.log_trans32)
            return lambda: kernel.fb(w.log_emissions(), trans, w.log_init32, backend=backend)

        def make_vit(w: Workload, backend: str = backend) -> Callable[[], Any]:
            trans = kernel.dense(w.log_trans32)
            return lambda: kernel.viterbi(w.log_emissions(), trans, w.log_init32, backend=backend)

        cases.append(Case(f"ours ({backend})", TASK_FB, make_fb, _torch_fb_outcome))
        cases.append(Case(f"ours ({backend})", TASK_VIT, make_vit, _ours_vit_outcome))
    return cases


def _torch_fb_outcome(res: tuple[torch.Tensor, torch.Tensor]) -> Outcome:
    log_z, post = res
    return Outcome(float(log_z.double().sum()), post.reshape(-1, post.shape[-1]).double().numpy())


def _ours_vit_outcome(res: tuple[torch.Tensor, torch.Tensor]) -> Outcome:
    paths, scores = res
    return Outcome(float(scores.double().sum()), path=paths.reshape(-1).numpy())


def hmmlearn_cases() -> list[Case]:
    """score_samples and decode for both hmmlearn implementations."""
    cases = []
    for impl in ("scaling", "log"):

        def make_fb(w: Workload, impl: str = impl) -> Callable[[], Any]:
            model = make_hmmlearn(w.params, impl)
            return lambda: model.score_samples(w.x_flat, w.lengths)

        def make_vit(w: Workload, impl: str = impl) -> Callable[[], Any]:
            model = make_hmmlearn(w.params, impl)
            return lambda: model.decode(w.x_flat, w.lengths, algorithm="viterbi")

        cases.append(Case(f"hmmlearn ({impl})", TASK_FB, make_fb,
                          lambda r: Outcome(float(r[0]), posteriors=r[1])))
        cases.append(Case(f"hmmlearn ({impl})", TASK_VIT, make_vit,
                          lambda r: Outcome(float(r[0]), path=r[1])))
    return cases


def pomegranate_fb(model: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x) per sequence and posteriors with pomegranate's own pieces.

    Same steps as ``DenseHMM.forward_backward`` minus the expected transition
    counts (see the module docstring).
    """
    emissions = model._emission_matrix(x)
    f = model.forward(emissions=emissions)
    b = model.backward(emissions=emissions)
    logp = torch.logsumexp(f[:, -1] + model.ends, dim=1)
    r = f + b
    r = r - torch.logsumexp(r, dim=2, keepdim=True)
    return logp, torch.exp(r)


def pomegranate_cases() -> list[Case]:
    """Forward-backward and Viterbi with pomegranate's DenseHMM."""

    def make_fb(w: Workload) -> Callable[[], Any]:
        model = make_pomegranate(w.params)
        return lambda: pomegranate_fb(model, w.x32)

    def make_vit(w: Workload) -> Callable[[], Any]:
        model = make_pomegranate(w.params)
        return lambda: model.viterbi(w.x32)

    def vit_outcome(paths: torch.Tensor) -> Outcome:  # no score returned
        return Outcome(None, path=paths.reshape(-1).numpy())

    name = "pomegranate DenseHMM"
    return [Case(name, TASK_FB, make_fb, _torch_fb_outcome),
            Case(name, TASK_VIT, make_vit, vit_outcome)]


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------


@dataclass
class Row:
    """One measured (K, implementation, task)."""

    k: int
    impl: str
    task: str
    timing: Optional[Timing] = None
    outcome: Optional[Outcome] = None
    error: Optional[str] = None
    ratio: Optional[float] = None  # median / hmmlearn-scaling median


def run_case(case: Case, w: Workload, args: argparse.Namespace) -> Row:
    """Time one case; errors are recorded in the row, not raised."""
    row = Row(w.n_states, case.impl, case.task)
    try:
        with torch.inference_mode():
            row.timing = time_call(case.make(w), args.repeats, args.budget, args.slow)
            row.outcome = case.outcome(row.timing.result)
        row.timing.result = None  # free posteriors etc.
    except Exception as exc:
        row.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
    status = (f"{row.timing.median_ms:10.1f} ms  (runs={runs_label(row.timing)})"
              if row.timing else f"ERROR {row.error}")
    print(f"  K={w.n_states:<4} {case.impl:<22} {case.task:<24} {status}", flush=True)
    return row


def runs_label(timing: Timing) -> str:
    """Number of timed calls, or a note that only the warm-up was timed."""
    return "1 (warm-up)" if timing.warmup_only else str(len(timing.times_ms))


def add_ratios(rows: list[Row]) -> None:
    """Fill ``Row.ratio`` relative to hmmlearn-scaling, same K and task."""
    ref = {(r.k, r.task): r.timing.median_ms for r in rows
           if r.impl == REFERENCE and r.timing}
    for r in rows:
        base = ref.get((r.k, r.task))
        if r.timing and base:
            r.ratio = r.timing.median_ms / base


# --------------------------------------------------------------------------
# Peak memory (subprocess per K and backend)
# --------------------------------------------------------------------------


def memory_child(npz_path: str, backend: str) -> None:
    """Entry point of the memory subprocess: prints one JSON line.

    Setup builds the kernel inputs (log emissions included) and compiles/warms
    the kernel on a tiny problem of the same dtypes, so that neither JIT
    memory nor large freed-but-retained allocator blocks pollute the number.
    The measured call is the fb kernel call (outputs included).
    """
    kernel, note = load_kernel()
    if kernel is None:
        print(json.dumps({"error": note}))
        return
    data = np.load(npz_path)
    params = GaussianHMMParams(data["startprob"], data["transmat"], data["means"], data["covars"])
    w = Workload(params, data["x"])
    trans = kernel.dense(w.log_trans32)
    with torch.inference_mode():
        emissions = w.log_emissions()
        kernel.fb(emissions[:1, :8].clone(), trans, w.log_init32, backend=backend)
        extra = peak_extra_rss_mb(
            lambda: kernel.fb(emissions, trans, w.log_init32, backend=backend))
    print(json.dumps({"extra_mb": extra}))


def measure_memory(w: Workload, backend: str, tmpdir: str) -> tuple[Optional[float], str]:
    """Run :func:`memory_child` in a fresh interpreter; (MB or None, error)."""
    npz = os.path.join(tmpdir, f"k{w.n_states}.npz")
    if not os.path.exists(npz):
        p = w.params
        np.savez(npz, x=w.x, startprob=p.startprob, transmat=p.transmat,
                 means=p.means, covars=p.covars)
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", npz, backend]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    try:
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return None, tail[:160]
    return res.get("extra_mb"), res.get("error", "")


# --------------------------------------------------------------------------
# Agreement checks
# --------------------------------------------------------------------------


def rel_diff(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def agreement_lines(rows: list[Row]) -> tuple[list[str], float]:
    """Markdown table comparing every outcome with hmmlearn-scaling's.

    Returns (lines, max relative difference of the fb total log-likelihood).
    """
    ref = {(r.k, r.task): r.outcome for r in rows if r.impl == REFERENCE and r.outcome}
    lines = ["| K | implementation | task | total log-lik | rel. diff vs hmmlearn (scaling) "
             "| fb: max abs posterior diff · viterbi: path agreement | fb: max abs(sum_k posterior - 1) |",
             "|---:|---|---|---:|---:|---:|---:|"]
    worst_fb = 0.0
    for r in rows:
        base = ref.get((r.k, r.task))
        if r.outcome is None or base is None:
            continue
        o = r.outcome
        ll = "n/a" if o.loglik is None else f"{o.loglik:.6f}"
        rd = "n/a" if o.loglik is None else f"{rel_diff(o.loglik, base.loglik):.2e}"
        if o.loglik is not None and r.task == TASK_FB:
            worst_fb = max(worst_fb, rel_diff(o.loglik, base.loglik))
        if o.posteriors is not None:
            extra = f"{np.abs(o.posteriors - base.posteriors).max():.2e}"
            norm = f"{np.abs(o.posteriors.sum(axis=1) - 1.0).max():.2e}"
        else:
            extra, norm = f"{np.mean(o.path == base.path):.4%}", ""
        lines.append(f"| {r.k} | {r.impl} | {r.task} | {ll} | {rd} | {extra} | {norm} |")
    return lines, worst_fb


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def verdict(value: Optional[float], bound: float) -> str:
    if value is None:
        return "MISS (not measured)"
    return "PASS" if value <= bound else "MISS"


def results_table(rows: list[Row]) -> list[str]:
    """The main markdown table, with targets next to our ratios."""
    lines = ["| K | implementation | task | median ms | runs | × hmmlearn (scaling) | target | status |",
             "|---:|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        bound = TIME_TARGETS.get((r.task, r.k)) if r.impl.startswith("ours") else None
        target = f"≤ {bound:.2f}×" if bound is not None else ""
        status = verdict(r.ratio, bound) if bound is not None else ""
        if r.timing is None:
            lines.append(f"| {r.k} | {r.impl} | {r.task} | error: {r.error} | | | {target} | {status} |")
            continue
        ratio = f"{r.ratio:.3f}" if r.ratio is not None else "n/a"
        lines.append(f"| {r.k} | {r.impl} | {r.task} | {r.timing.median_ms:.1f} | "
                     f"{runs_label(r.timing)} | {ratio} | {target} | {status} |")
    return lines


def targets_lines(rows: list[Row], memory: dict[tuple[int, str], tuple[Optional[float], str]]) -> list[str]:
    """PASS/MISS per target and backend."""
    lines = []
    for (task, k), bound in TIME_TARGETS.items():
        for backend in BACKENDS:
            row = next((r for r in rows if r.k == k and r.task == task
                        and r.impl == f"ours ({backend})"), None)
            if row is None:
                continue
            got = f"{row.ratio:.3f}×" if row.ratio is not None else "n/a"
            lines.append(f"- {task}, K={k}, ours ({backend}): {got} vs ≤ {bound}× "
                         f"→ **{verdict(row.ratio, bound)}**")
    for k, bound in MEMORY_TARGETS_MB.items():
        for backend in BACKENDS:
            if (k, backend) not in memory:
                continue
            mb = memory[(k, backend)][0]
            got = f"{mb:.1f} MB" if mb is not None else "n/a"
            lines.append(f"- extra peak memory of fb, K={k}, ours ({backend}): {got} vs ≤ {bound:.0f} MB "
                         f"→ **{verdict(mb, bound)}**")
    return lines


def memory_lines(memory: dict[tuple[int, str], tuple[Optional[float], str]]) -> list[str]:
    """Markdown table of the per-(K, backend) memory measurements."""
    lines = ["| K | backend | extra peak RSS (MB) | posteriors output alone (MB) |",
             "|---:|---|---:|---:|"]
    for (k, backend), (mb, err) in sorted(memory.items()):
        out_mb = N_SEQS * SEQ_LEN * k * 4 / 2**20
        val = f"{mb:.1f}" if mb is not None else f"error: {err}"
        lines.append(f"| {k} | {backend} | {val} | {out_mb:.1f} |")
    return lines


def build_report(args: argparse.Namespace, rows: list[Row], fb_note: str,
                 memory: dict[tuple[int, str], tuple[Optional[float], str]],
                 runtime_s: float, cpu_load: tuple[float, float]) -> str:
    """The whole report as markdown (printed, and written by --markdown)."""
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    out = [
        "## Kernel benchmark: Gaussian diag HMM, "
        f"D={N_FEATURES}, N={N_SEQS} sequences × T={SEQ_LEN} frames",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}  ",
        f"Total runtime: {runtime_s:.1f} s",
        "",
        "### Machine",
        "",
    ]
    out += [f"- {k}: {v}" for k, v in machine_info().items()]
    out.append(f"- share of all cores used by other processes: {cpu_load[0]:.0%} in the "
               f"1 s before the run, {cpu_load[1]:.0%} during it")
    if max(cpu_load) > CPU_LOAD_WARN:
        out += ["", "**WARNING: other processes were using the CPU; timings are inflated "
                "(most for the torch-backend and pomegranate rows, whose many small "
                "multi-threaded ops per time step stall when a thread is descheduled). "
                "Re-run on an idle machine.**"]
    out += [
        "",
        "### Timings",
        "",
        f"Median of up to {args.repeats} timed calls after one warm-up call "
        f"(fewer once a row has used {args.budget:g} s; `runs` = timed calls; a row whose "
        f"warm-up took ≥ {args.slow:g} s reports that call alone). "
        "Every call starts from the raw (N, T, D) observations, so each "
        "implementation includes its own log-emission computation.",
        f"Our fb = torch float32 emissions + {fb_note}. "
        "pomegranate fb = emission matrix + forward + backward + posteriors "
        "(its forward_backward minus the (N, T-1, K·K) expected-transition tensor).",
        "",
    ]
    out += results_table(rows)
    lines, worst = agreement_lines(rows)
    out += ["", "### Agreement with hmmlearn (scaling, float64)", "",
            f"Max relative difference of the total fb log-likelihood over all "
            f"implementations and K: **{worst:.2e}**", ""]
    out += lines
    if memory:
        out += ["", "### Peak extra memory of our fb", "",
                "Fresh subprocess per (K, backend): inputs (incl. the (N, T, K) float32 log "
                "emissions) are built and the kernel is warmed up on a tiny problem, then "
                "VmHWM is reset via `/proc/self/clear_refs` and the fb call's peak "
                "(VmHWM) minus the RSS before it is reported; the returned posteriors count.",
                ""]
        out += memory_lines(memory)
    out += ["", "### Targets (ratio to hmmlearn scaling)", ""]
    out += targets_lines(rows, memory) or ["- (no rows for ours: kernel unavailable)"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ks", type=int, nargs="+", default=None,
                   help="numbers of states (default 8 64 256; 8 64 with --quick)")
    p.add_argument("--slow", type=float, default=10.0,
                   help="a row whose warm-up call takes this many seconds is not repeated: "
                        "the warm-up time is reported (default 10)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--memory-child", nargs=2, metavar=("NPZ", "BACKEND"), help=argparse.SUPPRESS)
    args = parse_run_args(p, argv)
    if args.ks is None:
        args.ks = [8, 64] if args.quick else [8, 64, 256]
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return

    start = time.perf_counter()
    load_before = other_cpu_load()
    cpu_start = cpu_snapshot()
    kernel, fb_note = load_kernel()
    import numba

    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, "
          f"numba threads {numba.get_num_threads()}, "
          f"cpu_count {os.cpu_count()}; other processes' CPU use {load_before:.0%}; "
          f"our fb: {fb_note}", flush=True)
    if load_before > CPU_LOAD_WARN:
        print("WARNING: the CPU is busy with other processes; timings will be inflated",
              flush=True)
    cases = (ours_cases(kernel) if kernel else []) + hmmlearn_cases() + pomegranate_cases()

    rows: list[Row] = []
    memory: dict[tuple[int, str], tuple[Optional[float], str]] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        for k in args.ks:
            t0 = time.perf_counter()
            w = build_workload(k, args.seed)
            print(f"K={k}: sampled {N_SEQS}×{SEQ_LEN} frames in {time.perf_counter() - t0:.1f} s",
                  flush=True)
            rows += [run_case(c, w, args) for c in cases]
            if kernel and not args.no_memory:
                for backend in BACKENDS:
                    memory[(k, backend)] = measure_memory(w, backend, tmpdir)
                    print(f"  K={k:<4} memory ours ({backend}): {memory[(k, backend)]}", flush=True)
    add_ratios(rows)
    runtime = time.perf_counter() - start
    load_during = other_cpu_share(cpu_start, cpu_snapshot())

    report = build_report(args, rows, fb_note, memory, runtime, (load_before, load_during))
    emit_report(report, args.markdown)


if __name__ == "__main__":
    main()
