"""Shared helpers for the pytorch_hmm benchmarks.

Everything here is independent of ``pytorch_hmm`` itself: the workload
(random but seeded Gaussian-diagonal HMM parameters and data sampled from
hmmlearn), baseline model construction (hmmlearn, pomegranate), timing,
peak-memory probes and machine description.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

LOG_2PI = math.log(2.0 * math.pi)


# --------------------------------------------------------------------------
# Workload
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class GaussianHMMParams:
    """Parameters of a diagonal-covariance Gaussian HMM (float64 numpy)."""

    startprob: np.ndarray  # (K,)
    transmat: np.ndarray  # (K, K), rows sum to one
    means: np.ndarray  # (K, D)
    covars: np.ndarray  # (K, D), diagonal variances

    @property
    def n_states(self) -> int:
        return self.startprob.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]


def make_params(n_states: int, n_features: int, seed: int) -> GaussianHMMParams:
    """Draw fixed-seed HMM parameters.

    startprob and each transmat row ~ Dirichlet(1); means ~ N(0, 3^2);
    diagonal variances ~ U(0.5, 2).
    """
    rng = np.random.default_rng(seed)
    startprob = rng.dirichlet(np.ones(n_states))
    transmat = rng.dirichlet(np.ones(n_states), size=n_states)
    means = rng.normal(0.0, 3.0, size=(n_states, n_features))
    covars = rng.uniform(0.5, 2.0, size=(n_states, n_features))
    return GaussianHMMParams(startprob, transmat, means, covars)


def make_hmmlearn(params: GaussianHMMParams, implementation: str):
    """Build an hmmlearn ``GaussianHMM`` (diag) with the given parameters set."""
    from hmmlearn.hmm import GaussianHMM

    model = GaussianHMM(
        n_components=params.n_states,
        covariance_type="diag",
        implementation=implementation,
        init_params="",
        params="",
    )
    model.startprob_ = params.startprob
    model.transmat_ = params.transmat
    model.means_ = params.means
    model.covars_ = params.covars
    return model


def sample_sequences(
    params: GaussianHMMParams, n_seqs: int, length: int, seed: int
) -> np.ndarray:
    """Sample ``n_seqs`` sequences of ``length`` frames with hmmlearn.

    Returns a float64 array of shape (n_seqs, length, D).
    """
    model = make_hmmlearn(params, "log")
    rng = np.random.RandomState(seed)
    seqs = [model.sample(length, random_state=rng)[0] for _ in range(n_seqs)]
    return np.stack(seqs)


def make_pomegranate(params: GaussianHMMParams):
    """Build a pomegranate v1 ``DenseHMM`` of diag ``Normal``s, float32.

    ``ends`` is all ones (log 0), i.e. no end-state term, to match hmmlearn
    (pomegranate would otherwise default to uniform 1/K end probabilities).
    """
    from pomegranate.distributions import Normal
    from pomegranate.hmm import DenseHMM

    f32 = torch.float32
    dists = [
        Normal(
            means=torch.as_tensor(params.means[k], dtype=f32),
            covs=torch.as_tensor(params.covars[k], dtype=f32),
            covariance_type="diag",
        )
        for k in range(params.n_states)
    ]
    # pomegranate checks that starts sum to one in float32; renormalise there.
    starts = torch.as_tensor(params.startprob, dtype=f32)
    starts = starts / starts.sum()
    return DenseHMM(
        dists,
        edges=torch.as_tensor(params.transmat, dtype=f32),
        starts=starts,
        ends=torch.ones(params.n_states, dtype=f32),
    )


def diag_gaussian_log_emissions(
    x: torch.Tensor, means: torch.Tensor, covars: torch.Tensor
) -> torch.Tensor:
    """Log N(x_t | mu_k, diag(var_k)) for all frames and states.

    Uses the quadratic expansion so that the only intermediate is (B, T, K)
    (a broadcast (B, T, K, D) difference would be 13x bigger):

        log N = [x^2, x] @ [-1/(2 var); mu/var]^T
                - 0.5 * (D log 2pi + sum log var + sum mu^2/var)

    Args:
        x: (B, T, D) observations.
        means: (K, D) state means.
        covars: (K, D) diagonal variances.

    Returns:
        (B, T, K) log emission densities in the dtype of ``x``.
    """
    prec = covars.reciprocal()
    weights = torch.cat([-0.5 * prec, means * prec], dim=1)  # (K, 2D)
    bias = -0.5 * (
        means.shape[1] * LOG_2PI
        + covars.log().sum(dim=1)
        + (means * means * prec).sum(dim=1)
    )  # (K,)
    feats = torch.cat([x * x, x], dim=-1).reshape(-1, 2 * x.shape[-1])  # (B*T, 2D)
    return torch.addmm(bias, feats, weights.T).reshape(*x.shape[:-1], -1)


# --------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------


@dataclass
class Timing:
    """Result of :func:`time_call`."""

    median_ms: float
    times_ms: list[float]
    result: Any  # return value of the warm-up call
    warmup_only: bool = False  # True: the warm-up call was too slow to repeat


def time_call(
    fn: Callable[[], Any],
    repeats: int,
    budget_s: float,
    slow_s: float = float("inf"),
    min_repeats: int = 1,
    *,
    setup: Optional[Callable[[], Any]] = None,
    warmup: bool = True,
) -> Timing:
    """Median wall time of ``fn()`` after one untimed warm-up call.

    Runs at most ``repeats`` timed calls, stopping early (but after at least
    ``min_repeats``) once the timed calls have used ``budget_s`` seconds.
    If the warm-up call alone took ``slow_s`` seconds or more, it is not
    repeated and its own time is reported (``warmup_only``). Both limits keep
    the slow baselines at large K from dominating the runtime.

    ``setup()``, if given, runs untimed before every call (warm-up included),
    e.g. to rebuild or reset a model that ``fn`` trains in place. With
    ``warmup=False`` there is no warm-up call and ``result`` is the return
    value of the first timed call (for long calls whose code paths an earlier
    measurement has already warmed up).
    """
    result: Any = None
    if warmup:
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        result = fn()  # warm-up: JIT compilation, allocator and cache warm-up
        warmup_s = time.perf_counter() - t0
        if warmup_s >= slow_s:
            return Timing(warmup_s * 1e3, [warmup_s * 1e3], result, warmup_only=True)
    times: list[float] = []
    spent = 0.0
    while len(times) < repeats and (len(times) < min_repeats or spent < budget_s):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        if not warmup and not times:
            result = out
        del out
        times.append(dt * 1e3)
        spent += dt
    return Timing(statistics.median(times), times, result)


def emit_report(text: str, markdown: Optional[Path]) -> None:
    """Print the finished report and, if a path was given (``--markdown``), write it there."""
    print()
    print(text)
    if markdown:
        markdown.write_text(text)
        print(f"wrote {markdown}")


def parse_run_args(
    parser: argparse.ArgumentParser,
    argv: Optional[list[str]] = None,
    *,
    repeats: tuple[int, int] = (15, 3),
    budget: tuple[float, float] = (5.0, 1.0),
) -> argparse.Namespace:
    """Add the options every benchmark shares and parse ``argv``.

    The options are ``--quick``, ``--repeats``, ``--budget``, ``--markdown`` and ``--seed``.
    ``repeats`` and ``budget`` are the (full, ``--quick``) defaults, used when the option is
    not given.
    """
    parser.add_argument("--quick", action="store_true", help="smaller problems, fewer repeats (smoke test)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"max timed calls per row (default {repeats[0]}; {repeats[1]} with --quick)")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"seconds of timed calls per row (default {budget[0]:g}; {budget[1]:g} with --quick)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the report (markdown) to this file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = repeats[args.quick]
    if args.budget is None:
        args.budget = budget[args.quick]
    return args


# --------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------
# Peak-memory method: Linux keeps a per-process RSS high-water mark (VmHWM in
# /proc/self/status). Writing "5" to /proc/self/clear_refs (Linux >= 4.0)
# resets VmHWM to the current RSS, so "VmHWM after the call minus VmRSS
# right before it" is the peak extra resident memory of that call. psutil is
# not needed, and ru_maxrss cannot be reset.


def proc_status_mb(key: str) -> float:
    """A ``kB`` field (e.g. "VmRSS", "VmHWM") of /proc/self/status, in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            name, _, value = line.partition(":")
            if name == key:
                return int(value.split()[0]) / 1024.0
    raise KeyError(key)


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS; returns False if that is unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return proc_status_mb("VmHWM") <= proc_status_mb("VmRSS") + 1.0


def peak_extra_rss_mb(fn: Callable[[], Any]) -> float:
    """Peak RSS during ``fn()`` minus RSS just before it, in MB.

    The return value of ``fn`` is kept alive until after the measurement, so
    outputs count as extra memory.
    """
    if not reset_peak_rss():
        raise RuntimeError("cannot reset VmHWM via /proc/self/clear_refs")
    before = proc_status_mb("VmRSS")
    out = fn()
    peak = proc_status_mb("VmHWM")
    del out
    return peak - before


# --------------------------------------------------------------------------
# Machine description
# --------------------------------------------------------------------------


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (falls back to platform)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, str]:
    """Versions and thread counts relevant to the benchmark."""
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "os.cpu_count()": str(os.cpu_count()),
        "usable cores (sched_getaffinity)": str(len(os.sched_getaffinity(0))),
        "torch": torch.__version__,
        "torch.get_num_threads()": str(torch.get_num_threads()),
        "numpy": np.__version__,
    }
    for mod in ("numba", "hmmlearn", "pomegranate"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - optional dependency
            info[mod] = "not installed"
    try:
        import numba

        info["numba.get_num_threads()"] = str(numba.get_num_threads())
        info["numba threading layer"] = _numba_threading_layer()
    except Exception:  # pragma: no cover
        pass
    return info


@dataclass(frozen=True)
class CpuSnapshot:
    """Machine-wide CPU time (from /proc/stat) and this process's own, in seconds."""

    busy_s: float  # all cores, non-idle
    total_s: float  # all cores
    own_s: float  # this process + waited-for children, user + system


def cpu_snapshot() -> CpuSnapshot:
    """Take a :class:`CpuSnapshot` now."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return CpuSnapshot((sum(fields) - idle) / tick, sum(fields) / tick, own)


def other_cpu_share(start: CpuSnapshot, end: CpuSnapshot) -> float:
    """Share of all cores used by *other* processes between two snapshots.

    Anything well above 0 means other processes competed for the cores and
    the timings are inflated.
    """
    busy = (end.busy_s - start.busy_s) - (end.own_s - start.own_s)
    return max(busy, 0.0) / max(end.total_s - start.total_s, 1e-9)


def other_cpu_load(interval_s: float = 1.0) -> float:
    """:func:`other_cpu_share` over ``interval_s`` seconds of sleeping."""
    start = cpu_snapshot()
    time.sleep(interval_s)
    return other_cpu_share(start, cpu_snapshot())


def _numba_threading_layer() -> str:
    """Numba's threading layer; only known after a parallel function ran."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return f"not yet initialised (config: {numba.config.THREADING_LAYER})"


BUSY = "while True: pass"


def report_header(title: str, started: float, omit: tuple = ()) -> list[str]:
    """A report's first lines: ``title``, the command that ran, the date, the runtime since
    ``started`` (``time.perf_counter()``) and the machine (without the ``omit`` entries)."""
    lines = [title, "", f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`  ",
             f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}  ",
             f"Total runtime: {time.perf_counter() - started:.1f} s", "", "### Machine", ""]
    return lines + [f"- {key}: {value}" for key, value in machine_info().items() if key not in omit]


def one_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` with ``torch.set_num_threads(1)`` (the caller's count put back)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


def with_busy(n: int, fn: Callable[[], Any]) -> Any:
    """``fn()`` while ``n`` other processes each keep a CPU busy (a pure-Python loop)."""
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(n)]
    try:
        time.sleep(0.5)  # let them reach the CPU
        return fn()
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
