"""How many threads a call may use: the caller's torch count, fewer for small work or a busy machine.

Two rules, shared by the compiled loops (:mod:`pytorch_hmm.kernel.parallel`) and EM:

* work below :data:`SERIAL_BELOW` operations runs on one thread. A parallel region wakes a
  worker and waits for it at a barrier; that costs more than such a problem takes, and with
  GNU OpenMP (torch's and numba's) the waiting thread spins, so on a loaded machine each region
  can cost a scheduler time slice (EM beside two busy processes: 30x slower with two threads).
* a second thread is only used when a CPU is idle (:func:`idle_cpus`).

The kernel's entry points (:func:`sized_by_scores`) and each EM iteration apply both rules to
their torch ops too. Where a call drops to one thread it sets ``torch.set_num_threads(1)`` for its own duration and
puts the caller's count back; the count the caller sees is never changed. (OpenMP thread counts
belong to the calling thread, so other threads of the program are not affected.)
"""

from __future__ import annotations

import functools
import math
import os
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

__all__ = ["SERIAL_BELOW", "idle_cpus", "torch_threads_for", "sized_by_scores"]

# inner-loop operations (about one multiply-add or exp each) below which a call runs on one
# thread. Dense forward, 2 cores, median ms on 1 / 2 threads (quiet; beside two busy processes):
#   1.5e5 ops: 0.26 / 0.13 (0.26 / 12.3)    2.6e5: 0.61 / 0.31 (0.42 / 1.14)
#   1.0e6 ops: 2.50 / 1.22 (1.69 / 4.85)    1.6e7: 4.83 / 2.45 (8.82 / 4.93)
SERIAL_BELOW = 1_000_000


def _usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _running(path: str) -> int:
    """``procs_running`` of ``/proc/stat`` (system-wide runnable tasks)."""
    with open(path, "rb") as stat:
        for line in stat:
            if line.startswith(b"procs_running"):
                return int(line.split()[1])
    raise ValueError("no procs_running line")


def _own_running() -> int:
    """Threads of this process running or runnable now (a spinning OpenMP worker counts)."""
    count = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as f:
                data = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        count += data[data.rindex(b")") + 2:][:1] == b"R"
    return count


_IDLE_CACHE = [-1.0, 0]  # (monotonic time, value): the load is read at most every 50 ms


def idle_cpus() -> int:
    """CPUs this process may use that no other process is running on right now (at least 1).

    Linux: the usable CPUs minus the runnable tasks of other processes (``procs_running`` of
    ``/proc/stat`` less this process's own running threads, so its spinning OpenMP workers do
    not count); read at most every 50 ms. Elsewhere: all usable CPUs.
    """
    now = time.monotonic()
    if now - _IDLE_CACHE[0] < 0.05:
        return _IDLE_CACHE[1]
    cpus = _usable_cpus()
    try:
        others = max(0, _running("/proc/stat") - _own_running())
        value = max(1, cpus - others)
    except (OSError, ValueError, IndexError):
        value = cpus
    _IDLE_CACHE[:] = [now, value]
    return value


@contextmanager
def torch_threads_for(work: float) -> Iterator[None]:
    """Torch ops inside run on one thread when ``work`` is below :data:`SERIAL_BELOW` or no
    second CPU is idle; the caller's ``torch.get_num_threads()`` is restored on exit."""
    before = torch.get_num_threads()
    if before == 1 or (work >= SERIAL_BELOW and idle_cpus() >= 2):
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sized_by_scores(fn: Callable) -> Callable:
    """Decorator for kernel entry points whose first argument is ``(B, T, K)`` scores: their
    torch ops run under :func:`torch_threads_for` of ``B T K^2`` (a dense chain's operations).

    Under ``torch.compile`` the entry point runs eagerly (``torch.compiler.disable``): its time
    loop, host synchronisations and numba calls would only break the graph into pieces (and a
    Python loop over ``T`` would be unrolled and recompiled for every length), so the caller's
    network around it is compiled and the kernel runs as it does without compiling (its custom
    autograd included). Benchmark: ``benchmarks/bench_compile.py``.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        shape = getattr(args[0] if args else kwargs.get("log_emissions"), "shape", ())
        work = math.prod(shape) * shape[-1] if len(shape) == 3 else math.inf
        with torch_threads_for(work):
            return fn(*args, **kwargs)

    return torch.compiler.disable(wrapper, reason="pytorch_hmm kernel: runs eagerly under torch.compile")
