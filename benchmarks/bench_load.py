"""Speed under load: the kernel and EM timed on a quiet machine and beside busy processes.

A library that spins threads against the user's other work is fast only on an idle machine.
This script times two workloads, each in a fresh subprocess so that every condition starts
from the same interpreter state:

* ``kernel``: ``pytorch_hmm.kernel.marginals`` (dense, B = 4, T = 600, K = 8, float32);
* ``em``: 30 EM iterations (``tol=0``) of a 3-state 1-D Gaussian HMM on 600 frames, float64;

under three conditions:

* ``single``: quiet machine, one thread everywhere (``torch.set_num_threads(1)``,
  ``NUMBA_NUM_THREADS=1``, ``OMP_NUM_THREADS=1``): the reference time;
* ``quiet``: quiet machine, default threads;
* ``loaded``: default threads, with ``--busy`` (default 2) other processes spinning on the CPU.

It prints the medians and the ratios ``loaded / single`` and ``quiet / single`` (the target is
``loaded / single <= 2`` with two busy processes on this 2-core machine), and checks that a
user's ``torch.set_num_threads(1)`` is still 1 after the library has run.

Run: ``python benchmarks/bench_load.py [--quick] [--busy 2] [--repeats 7] [--markdown PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import emit_report, machine_info, parse_run_args  # noqa: E402

# the timed child: prints one JSON line {"median_ms": ..., "threads_after": ...}
CHILD = r"""
import json, statistics, sys, time
import torch
workload, repeats, single, quick = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1"
if single:
    torch.set_num_threads(1)
threads_before = torch.get_num_threads()
import pytorch_hmm
from pytorch_hmm import HMM, kernel
from pytorch_hmm.emissions import Gaussian
from pytorch_hmm.transitions import Dense

g = torch.Generator().manual_seed(0)
frames = 300 if quick else 600
if workload == "kernel":
    e = torch.randn(4, frames, 8, generator=g)
    trans = Dense(torch.log_softmax(torch.randn(8, 8, generator=g), -1))
    init = torch.log_softmax(torch.randn(8, generator=g), -1)
    run = lambda: kernel.marginals(e, trans, init)
else:
    truth = HMM(Gaussian(3, 1, means=torch.tensor([[-2.0], [0.0], [2.0]], dtype=torch.float64),
                         covars=torch.ones(3, 1, dtype=torch.float64)))
    x, _ = truth.sample(1, frames, generator=g)
    def run():
        model = HMM(Gaussian(3, 1, means=torch.tensor([[-1.0], [0.1], [1.0]], dtype=torch.float64),
                             covars=torch.ones(3, 1, dtype=torch.float64)))
        model.fit(x, max_iter=30, tol=0.0, verbose=False)
run()  # warm-up: numba compilation (cached on disk), allocator
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    run()
    times.append((time.perf_counter() - t0) * 1e3)
import numba
print(json.dumps({"median_ms": statistics.median(times), "threads_before": threads_before,
                  "threads_after": torch.get_num_threads(), "layer": numba.threading_layer()}))
"""

BUSY = "while True: pass"


def _child(workload: str, repeats: int, single: bool, quick: bool) -> dict:
    env = dict(os.environ)
    if single:
        env.update(NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", CHILD, workload, str(repeats), "1" if single else "0", "1" if quick else "0"],
        env=env, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{workload} child failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _with_busy(n: int, fn):
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(n)]
    try:
        time.sleep(0.5)  # let them reach the CPU
        return fn()
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=2, help="busy processes beside the timed one (default 2)")
    args = parse_run_args(parser, argv, repeats=(7, 3), budget=(0.0, 0.0))
    rows = []
    for workload in ("kernel", "em"):
        single = _child(workload, args.repeats, True, args.quick)
        quiet = _child(workload, args.repeats, False, args.quick)
        loaded = _with_busy(args.busy, lambda: _child(workload, args.repeats, False, args.quick))
        loaded_single = _with_busy(args.busy, lambda: _child(workload, args.repeats, True, args.quick))
        rows.append((workload, single, quiet, loaded, loaded_single))
        print(f"{workload}: single {single['median_ms']:.1f} ms, quiet {quiet['median_ms']:.1f} ms, "
              f"loaded {loaded['median_ms']:.1f} ms", flush=True)

    lines = [
        f"# bench_load ({'quick' if args.quick else 'full'}; {args.busy} busy processes)",
        "",
        "### Machine",
        "",
        *[f"- {k}: {v}" for k, v in machine_info().items()],
        "",
        "| workload | single, quiet (ms) | default threads, quiet (ms) | default threads, loaded (ms) "
        "| single, loaded (ms) | loaded / single | quiet / single | torch threads 1 -> after |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for workload, single, quiet, loaded, loaded_single in rows:
        s = single["median_ms"]
        lines.append(
            f"| {workload} | {s:.1f} | {quiet['median_ms']:.1f} | {loaded['median_ms']:.1f} | "
            f"{loaded_single['median_ms']:.1f} | {loaded['median_ms'] / s:.2f} | {quiet['median_ms'] / s:.2f} | "
            f"{single['threads_before']} -> {single['threads_after']} |"
        )
    emit_report("\n".join(lines), args.markdown)


if __name__ == "__main__":
    main()
