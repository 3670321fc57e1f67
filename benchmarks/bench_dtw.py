"""Benchmark pytorch_hmm's DTW and soft-DTW against librosa, dtaidistance and tslearn.

Workload (from the issue): random N(0, 1) features with D = 13, float64; one pair of
1000 × 1000 frames and a batch of 32 pairs of 500 × 500 frames (``--quick``: 300 × 300 and
8 pairs of 200 × 200). Every timed call starts from the features, so each library pays for
its own frame distances. What each row computes:

* ours:          ``pytorch_hmm.alignment.dtw(x, y)``: Euclidean local cost (librosa's
                 convention: the cost is the sum of Euclidean distances along the path), the
                 cost AND the warping path; a batch is one call. Backends numba and torch.
* librosa:       ``librosa.sequence.dtw(X, Y)``: scipy ``cdist`` + accumulated-cost matrix +
                 path; a batch is a Python loop.
* dtaidistance:  ``dtw_ndim.distance(x, y, use_c=True)``: C, squared-Euclidean local cost,
                 returns sqrt of the path sum, distance only (no path); a batch is a Python loop.
* tslearn:       ``tslearn.metrics.dtw``: numba, same convention as dtaidistance, distance
                 only; a batch is a Python loop.
* soft-DTW (gamma = 1, squared Euclidean): ours ``soft_dtw`` forward, and forward + backward
  to the features; tslearn ``soft_dtw`` (forward) and ``SoftDTWLossPyTorch`` (forward +
  backward, its own custom autograd).

Times are medians over repeated calls after one untimed warm-up (numba compilation).
Targets (the issue): ours (numba) single pair ≤ 1.3 × dtaidistance; batch ≤ 0.6 × the
dtaidistance loop.

Usage::

    python benchmarks/bench_dtw.py [--quick] [--repeats 15] [--budget 5] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import datetime
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Timing, cpu_snapshot, emit_report, machine_info, other_cpu_load, other_cpu_share, parse_run_args, time_call,
)

try:
    import pytorch_hmm  # noqa: F401
except ImportError:  # not installed: fall back to the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pytorch_hmm.alignment import dtw, soft_dtw  # noqa: E402

N_FEATURES = 13
REFERENCE = "dtaidistance"
TARGETS = {"DTW, one pair": 1.3, "DTW, batch": 0.6}  # ours (numba) / dtaidistance
CPU_LOAD_WARN = 0.10


@dataclass
class Workload:
    x1: np.ndarray  # (N, D)
    y1: np.ndarray
    xb: np.ndarray  # (B, N, D)
    yb: np.ndarray

    def torch(self, dtype=torch.float64, requires_grad: bool = False):
        t = [torch.from_numpy(a).to(dtype) for a in (self.x1[None], self.y1[None], self.xb, self.yb)]
        if requires_grad:
            t[0].requires_grad_(True)
            t[2].requires_grad_(True)
        return t


def make_workload(single: int, batch: int, length: int, seed: int) -> Workload:
    rng = np.random.default_rng(seed)
    return Workload(
        rng.standard_normal((single, N_FEATURES)), rng.standard_normal((single, N_FEATURES)),
        rng.standard_normal((batch, length, N_FEATURES)), rng.standard_normal((batch, length, N_FEATURES)),
    )


@dataclass
class Case:
    task: str
    impl: str
    make: Callable[[Workload], Callable[[], Any]]  # returns the timed call
    value: Optional[Callable[[Any], float]] = None  # the first pair's value from the call's result


@dataclass
class Row:
    case: Case
    timing: Optional[Timing] = None
    value: Optional[float] = None
    error: str = ""
    ratio: Optional[float] = None


def ours_dtw(task: str, backend: str, dtype=torch.float64, one_thread: bool = False) -> Case:
    name = f"ours ({backend}{', float32' if dtype == torch.float32 else ''}{', 1 thread' if one_thread else ''})"

    def make(w: Workload):
        x1, y1, xb, yb = w.torch(dtype)
        x, y = (xb, yb) if "batch" in task else (x1, y1)
        if not one_thread:
            return lambda: dtw(x, y, backend=backend)

        def call():
            import numba

            before = numba.get_num_threads()
            numba.set_num_threads(1)
            try:
                return dtw(x, y, backend=backend)
            finally:
                numba.set_num_threads(before)

        return call

    return Case(task, name, make, lambda r: float(r.cost[0]))


def library_cases() -> list[Case]:
    cases: list[Case] = []
    try:
        import librosa

        def lib(x, y):
            return librosa.sequence.dtw(x.T, y.T, metric="euclidean")[0][-1, -1]

        cases += [
            Case("DTW, one pair", "librosa", lambda w: lambda: lib(w.x1, w.y1), float),
            Case("DTW, batch", "librosa", lambda w: lambda: [lib(a, b) for a, b in zip(w.xb, w.yb)], lambda r: float(r[0])),
        ]
    except ImportError:
        pass
    try:
        from dtaidistance import dtw_ndim

        def dtai(x, y):
            return dtw_ndim.distance(x, y, use_c=True)

        cases += [
            Case("DTW, one pair", REFERENCE, lambda w: lambda: dtai(w.x1, w.y1), float),
            Case("DTW, batch", REFERENCE, lambda w: lambda: [dtai(a, b) for a, b in zip(w.xb, w.yb)], lambda r: float(r[0])),
        ]
    except ImportError:
        pass
    try:
        import tslearn.metrics as tm

        cases += [
            Case("DTW, one pair", "tslearn", lambda w: lambda: tm.dtw(w.x1, w.y1), float),
            Case("DTW, batch", "tslearn", lambda w: lambda: [tm.dtw(a, b) for a, b in zip(w.xb, w.yb)],
                 lambda r: float(r[0])),
            Case("soft-DTW forward, one pair", "tslearn", lambda w: lambda: tm.soft_dtw(w.x1, w.y1, gamma=1.0), float),
            Case("soft-DTW forward, batch", "tslearn",
                 lambda w: lambda: [tm.soft_dtw(a, b, gamma=1.0) for a, b in zip(w.xb, w.yb)], lambda r: float(r[0])),
        ]

        def tslearn_loss(w: Workload):
            loss = tm.SoftDTWLossPyTorch(gamma=1.0)
            x1, y1, xb, yb = w.torch(requires_grad=True)
            return lambda: loss(xb, yb).sum().backward()

        cases.append(Case("soft-DTW forward + backward, batch", "tslearn (SoftDTWLossPyTorch)", tslearn_loss))
    except ImportError:
        pass
    return cases


def ours_soft(task: str, backend: str) -> Case:
    def make(w: Workload):
        x1, y1, xb, yb = w.torch(requires_grad="backward" in task)
        x, y = (xb, yb) if "batch" in task else (x1, y1)
        if "backward" in task:
            return lambda: soft_dtw(x, y, 1.0, backend=backend).sum().backward()
        return lambda: soft_dtw(x.detach(), y, 1.0, backend=backend)

    return Case(task, f"ours ({backend})", make, None if "backward" in task else (lambda r: float(r[0])))


def all_cases(backends: list[str]) -> list[Case]:
    cases = []
    for task in ("DTW, one pair", "DTW, batch"):
        cases += [ours_dtw(task, b) for b in backends]
        cases.append(ours_dtw(task, "numba", torch.float32))
    cases.append(ours_dtw("DTW, batch", "numba", one_thread=True))
    for task in ("soft-DTW forward, one pair", "soft-DTW forward, batch", "soft-DTW forward + backward, batch"):
        cases += [ours_soft(task, b) for b in backends]
    cases += library_cases()
    order = ["DTW, one pair", "DTW, batch", "soft-DTW forward, one pair", "soft-DTW forward, batch",
             "soft-DTW forward + backward, batch"]
    return sorted(cases, key=lambda c: order.index(c.task))


def run_case(case: Case, w: Workload, args: argparse.Namespace) -> Row:
    row = Row(case)
    try:
        fn = case.make(w)
        row.timing = time_call(fn, args.repeats, args.budget, slow_s=args.slow, min_repeats=3 if not args.quick else 1)
        if case.value is not None:
            row.value = case.value(row.timing.result)
    except Exception as exc:  # a library failing must not lose the other rows
        row.error = f"{type(exc).__name__}: {exc}"
    status = f"{row.timing.median_ms:9.1f} ms" if row.timing else f"error {row.error}"
    print(f"  {case.task:<36} {case.impl:<30} {status}", flush=True)
    return row


def add_ratios(rows: list[Row]) -> None:
    for r in rows:
        ref_impl = REFERENCE if r.case.task.startswith("DTW") else "tslearn"
        if "backward" in r.case.task:
            ref_impl = "tslearn (SoftDTWLossPyTorch)"
        ref = next((q for q in rows if q.case.task == r.case.task and q.case.impl == ref_impl and q.timing), None)
        if ref is not None and r.timing is not None:
            r.ratio = r.timing.median_ms / ref.timing.median_ms


def results_table(rows: list[Row]) -> list[str]:
    lines = ["| task | implementation | median ms | runs | ratio | reference | target | status |",
             "|---|---|---:|---:|---:|---|---:|---|"]
    for r in rows:
        bound = TARGETS.get(r.case.task) if r.case.impl == "ours (numba)" else None
        target = f"≤ {bound}×" if bound else ""
        status = ("PASS" if r.ratio is not None and r.ratio <= bound else "MISS") if bound else ""
        ref = REFERENCE if r.case.task.startswith("DTW") else ("tslearn" + (" loss" if "backward" in r.case.task else ""))
        if r.timing is None:
            lines.append(f"| {r.case.task} | {r.case.impl} | error: {r.error} | | | | {target} | {status} |")
            continue
        ratio = f"{r.ratio:.3f}" if r.ratio is not None else ""
        lines.append(f"| {r.case.task} | {r.case.impl} | {r.timing.median_ms:.1f} | {len(r.timing.times_ms)} "
                     f"| {ratio} | {ref} | {target} | {status} |")
    return lines


def agreement_lines(rows: list[Row], w: Workload) -> list[str]:
    """Each implementation's first-pair value against ours in that library's convention."""
    x, y = w.torch()[:2]
    euclid = float(dtw(x, y).cost[0])
    root_sq = math.sqrt(float(dtw(x, y, distance="sqeuclidean").cost[0]))  # dtaidistance / tslearn
    soft = float(soft_dtw(x, y, 1.0)[0])
    lines = ["| task | implementation | value | ours in that convention | rel. diff |", "|---|---|---:|---:|---:|"]
    for r in rows:
        if r.value is None or r.case.task not in ("DTW, one pair", "soft-DTW forward, one pair"):
            continue
        if r.case.task.startswith("soft"):
            mine = soft
        else:
            mine = root_sq if r.case.impl in (REFERENCE, "tslearn") else euclid
        diff = abs(r.value - mine) / abs(mine)
        lines.append(f"| {r.case.task} | {r.case.impl} | {r.value:.12g} | {mine:.12g} | {diff:.1e} |")
    return lines


def build_report(args, rows, w, runtime_s: float, load: tuple[float, float], sizes: str) -> str:
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    out = [f"## DTW benchmark: D={N_FEATURES}, {sizes}", "",
           f"Command: `{command}`  ", f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}  ",
           f"Total runtime: {runtime_s:.1f} s", "", "### Machine", ""]
    out += [f"- {k}: {v}" for k, v in machine_info().items()]
    for mod in ("librosa", "dtaidistance", "tslearn"):
        try:
            out.append(f"- {mod}: {__import__(mod).__version__}")
        except ImportError:
            out.append(f"- {mod}: not installed")
    out.append(f"- share of all cores used by other processes: {load[0]:.0%} before the run, {load[1]:.0%} during it")
    if max(load) > CPU_LOAD_WARN:
        out += ["", "**WARNING: other processes were using the CPU; timings are inflated. Re-run on an idle machine.**"]
    out += ["", "### Timings", "",
            "Median wall time after one warm-up call; every call starts from the features (float64 unless "
            "marked). ours = cost + path (Euclidean); dtaidistance / tslearn = distance only (sqrt of summed "
            "squared Euclidean); librosa = cost matrix + path. ratio = time / the reference's time for the same task.",
            ""]
    out += results_table(rows)
    out += ["", "### Values (first pair, one-pair task)", ""] + agreement_lines(rows, w)
    return "\n".join(out) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slow", type=float, default=20.0, help="a row whose warm-up takes this long is not repeated")
    p.add_argument("--backends", nargs="+", default=["numba", "torch"], choices=["numba", "torch"])
    return parse_run_args(p, argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    load_before = other_cpu_load()
    snap = cpu_snapshot()
    single, batch, length = (300, 8, 200) if args.quick else (1000, 32, 500)
    sizes = f"one pair {single}×{single}, batch of {batch} pairs {length}×{length}"
    w = make_workload(single, batch, length, args.seed)
    print(f"{sizes}; torch threads {torch.get_num_threads()}; other processes' CPU use {load_before:.0%}", flush=True)
    rows = [run_case(c, w, args) for c in all_cases(args.backends)]
    add_ratios(rows)
    load = (load_before, other_cpu_share(snap, cpu_snapshot()))
    report = build_report(args, rows, w, time.perf_counter() - start, load, sizes)
    emit_report(report, args.markdown)


if __name__ == "__main__":
    main()
