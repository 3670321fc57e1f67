"""Benchmark EM training (``HMM.fit``) of pytorch_hmm against hmmlearn and pomegranate.

Workloads (from the issue), D = 13 features, N = 16 sequences of T = 1000 frames:

* ``gauss``: Gaussian HMM, diagonal covariances, K = 64 states -- the same seeded
  parameters and sampled data as the K = 64 workload of ``bench_kernel.py``;
* ``gmm``:   GMM-HMM, K = 32 states of M = 4 diagonal Gaussians each. Parameters:
  startprob and transmat rows ~ Dirichlet(1), mixture weights ~ Dirichlet(2),
  means ~ N(0, 3^2), variances ~ U(0.5, 2); data sampled with hmmlearn's
  ``GMMHMM.sample``.

Tasks: one EM iteration (an E-step over all N x T frames plus one M-step, i.e.
``fit`` with one iteration) and a 20-iteration fit (``--fit-iters``), every call
starting from the same initial parameters (the true ones) and never stopping early:

* ours:        ``HMM.fit(x (N, T, D), max_iter=n, tol=-inf)`` in float32 and float64
               (``Gaussian`` / ``MixtureGaussianHMM`` emissions; default kernel backend);
* hmmlearn:    ``GaussianHMM`` / ``GMMHMM`` (diag), ``init_params=""``,
               ``params="stmc"`` / ``"stmcw"``, ``n_iter=n``, ``tol=-inf`` (its monitor
               stops when the gain is ``< tol``, so never), ``implementation="scaling"``
               (the reference of the ratios) and ``"log"`` (EM iteration only; its
               20-iteration fit would take minutes). hmmlearn's ``GMMHMM._init`` runs
               k-means (K + 1 ``KMeans(n_init=10)`` fits, tens of seconds here) on every
               ``fit`` even with ``init_params=""`` and then discards the result; the GMM
               rows use a subclass that skips that dead work so that EM itself is timed;
* pomegranate: v1 ``DenseHMM`` (float32) with diag ``Normal`` states, or for the GMM-HMM
               ``GeneralMixtureModel`` states of diag ``Normal`` components; ``max_iter=n``
               and ``tol=-inf`` (set after construction: its constructor wants tol >= 0).
               Not quite the same model in training: pomegranate also learns end-state
               probabilities (ends start at 1, i.e. no end term, like hmmlearn), which
               renormalises the transition rows after the first M-step, and its diag
               ``Normal`` M-step has no variance prior (hmmlearn: covars_prior = 1e-2).

Model construction is untimed (``setup`` of ``common.time_call``). EM-iteration rows:
median of ``--repeats`` (default 5) timed calls after one warm-up call; fit rows: median
of ``--fit-repeats`` (default 2) timed calls without a warm-up (code paths are warm from
the EM-iteration rows).

Agreement: parameters after one EM iteration and the log-likelihood history of the fit
against hmmlearn (scaling, float64).

Usage::

    python benchmarks/bench_models.py [--workloads gauss gmm] [--repeats 5]
        [--fit-repeats 2] [--fit-iters 20] [--quick] [--markdown PATH]
        [--no-pomegranate] [--no-profile]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import logging
import math
import os
import pstats
import shlex
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    GaussianHMMParams,
    Timing,
    cpu_snapshot,
    emit_report,
    machine_info,
    make_hmmlearn,
    make_params,
    make_pomegranate,
    other_cpu_load,
    other_cpu_share,
    sample_sequences,
    time_call,
)

try:
    import pytorch_hmm  # noqa: F401
except ImportError:  # not installed: fall back to the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

N_FEATURES = 13
N_SEQS = 16
SEQ_LEN = 1000
GAUSS_K = 64
GMM_K, GMM_M = 32, 4

TASK_ITER = "EM iteration"
REF = "hmmlearn (scaling)"
REF_LOG = "hmmlearn (log)"
OURS_F32, OURS_F64 = "ours (float32)", "ours (float64)"
POM = "pomegranate DenseHMM"

# Target (from the issue): our EM iteration / hmmlearn (scaling) EM iteration, Gaussian K=64.
TARGET_RATIO = 0.35
CPU_LOAD_WARN = 0.10

logging.getLogger("hmmlearn").setLevel(logging.ERROR)  # "Model is not converging" on float noise


# --------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class GMMHMMParams:
    """Parameters of a diagonal GMM-HMM (float64 numpy, hmmlearn ``GMMHMM`` shapes)."""

    startprob: np.ndarray  # (K,)
    transmat: np.ndarray  # (K, K)
    weights: np.ndarray  # (K, M)
    means: np.ndarray  # (K, M, D)
    covars: np.ndarray  # (K, M, D)

    @property
    def n_states(self) -> int:
        return self.startprob.shape[0]


Params = Union[GaussianHMMParams, GMMHMMParams]


def make_gmm_params(n_states: int, n_mix: int, n_features: int, seed: int) -> GMMHMMParams:
    """Fixed-seed GMM-HMM parameters (see the module docstring)."""
    rng = np.random.default_rng(seed)
    return GMMHMMParams(
        startprob=rng.dirichlet(np.ones(n_states)),
        transmat=rng.dirichlet(np.ones(n_states), size=n_states),
        weights=rng.dirichlet(np.full(n_mix, 2.0), size=n_states),
        means=rng.normal(0.0, 3.0, size=(n_states, n_mix, n_features)),
        covars=rng.uniform(0.5, 2.0, size=(n_states, n_mix, n_features)),
    )


def _copy_params(p: Params) -> Params:
    """Deep copy, so that no implementation can alter the shared starting point."""
    return replace(p, **{f: getattr(p, f).copy() for f in p.__dataclass_fields__})


@dataclass
class Workload:
    key: str  # "gauss" | "gmm"
    label: str
    params: Params
    x: np.ndarray  # (N, T, D) float64
    x_flat: np.ndarray = field(init=False)
    lengths: list[int] = field(init=False)
    _torch: dict = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        n, t, d = self.x.shape
        self.x_flat = self.x.reshape(n * t, d)
        self.lengths = [t] * n

    @property
    def is_gmm(self) -> bool:
        return isinstance(self.params, GMMHMMParams)

    def x_torch(self, dtype: torch.dtype) -> torch.Tensor:
        if dtype not in self._torch:
            self._torch[dtype] = torch.as_tensor(self.x, dtype=dtype).contiguous()
        return self._torch[dtype]


def build_workload(key: str, seed: int) -> Workload:
    if key == "gauss":
        params = make_params(GAUSS_K, N_FEATURES, seed=seed + GAUSS_K)  # = bench_kernel K=64
        x = sample_sequences(params, N_SEQS, SEQ_LEN, seed=seed)
        label = f"Gaussian diag HMM, K={GAUSS_K}"
    else:
        params = make_gmm_params(GMM_K, GMM_M, N_FEATURES, seed=seed + 1000 + GMM_K)
        model = make_hmmlearn_gmm(params, "log", n_iter=1)
        rng = np.random.RandomState(seed)
        x = np.stack([model.sample(SEQ_LEN, random_state=rng)[0] for _ in range(N_SEQS)])
        label = f"GMM-HMM diag, K={GMM_K}, M={GMM_M}"
    return Workload(key, label, params, x)


# --------------------------------------------------------------------------
# Implementations
# --------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a fit produced (numpy float64), for the agreement checks."""

    history: Optional[list[float]]  # total log-likelihood per iteration (None: not exposed)
    params: dict[str, np.ndarray]  # after the fit: means, covars, transmat, startprob (+ weights)
    n_warnings: int = 0  # our ConvergenceWarnings (likelihood decreased) during the fit


@dataclass
class Runner:
    """``setup()`` (untimed) builds a fresh model at the initial parameters, ``run()`` fits it,
    ``outcome(result)`` reads what the last fit produced."""

    setup: Callable[[], None]
    run: Callable[[], Any]
    outcome: Callable[[Any], Outcome]


class _Holder:
    model: Any = None


def ours_model(w: Workload, dtype: torch.dtype):
    """Our model at the workload's initial parameters."""
    from pytorch_hmm import HMM

    p = w.params

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype)

    common = dict(transitions=t(p.transmat), init_probs=t(p.startprob))
    if not w.is_gmm:
        from pytorch_hmm.emissions import Gaussian

        em = Gaussian(p.n_states, N_FEATURES, covariance_type="diag", means=t(p.means),
                      covars=t(p.covars), dtype=dtype)
        return HMM(em, **common)
    k, m, d = p.means.shape
    try:
        from pytorch_hmm import MixtureGaussianHMM
    except ImportError:
        from pytorch_hmm.emissions import GaussianMixture

        em = GaussianMixture(k, m, d, covariance_type="diag", weights=t(p.weights),
                             means=t(p.means), covars=t(p.covars), dtype=dtype)
        return HMM(em, **common)
    return MixtureGaussianHMM(k, m, d, covariance_type="diag", weights=t(p.weights),
                              means=t(p.means), covars=t(p.covars), dtype=dtype, **common)


def ours_runner(w: Workload, dtype: torch.dtype, n_iter: int) -> Runner:
    from pytorch_hmm.errors import ConvergenceWarning

    h = _Holder()
    x = w.x_torch(dtype)

    def setup() -> None:
        h.model = ours_model(w, dtype)

    def run() -> tuple[list[float], int]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            hist = h.model.fit(x, max_iter=n_iter, tol=-math.inf, verbose=False, initialize=False)
        return hist, sum(issubclass(c.category, ConvergenceWarning) for c in caught)

    def outcome(res: tuple[list[float], int]) -> Outcome:
        hist, n_warn = res
        model = h.model
        em = model.emission

        def np64(tensor: torch.Tensor) -> np.ndarray:
            return tensor.detach().double().numpy().copy()

        params = {"means": np64(em.means), "covars": np64(em.covars),
                  "transmat": np64(model.transmat), "startprob": np64(model.init_probs)}
        if w.is_gmm:
            params["weights"] = np64(em.weights)
        return Outcome(list(hist), params, n_warn)

    return Runner(setup, run, outcome)


def make_hmmlearn_gmm(params: GMMHMMParams, implementation: str, n_iter: int):
    """hmmlearn ``GMMHMM`` (diag) at ``params`` that skips the unconditional k-means of ``_init``."""
    from hmmlearn.base import ConvergenceMonitor
    from hmmlearn.hmm import GMMHMM

    class GMMHMMNoKMeans(GMMHMM):
        """``GMMHMM._init`` minus its k-means (whose result init_params="" discards anyway)."""

        def _init(self, X, lengths=None):
            super(GMMHMM, self)._init(X, lengths=None)  # BaseHMM._init: n_features, checks
            self._init_covar_priors()
            self._fix_priors_shape()

    k, m, _ = params.means.shape
    model = GMMHMMNoKMeans(n_components=k, n_mix=m, covariance_type="diag",
                           implementation=implementation, init_params="", params="stmcw",
                           n_iter=n_iter, tol=-math.inf)
    model.monitor_ = ConvergenceMonitor(-math.inf, n_iter, False)
    model.startprob_ = params.startprob
    model.transmat_ = params.transmat
    model.weights_ = params.weights
    model.means_ = params.means
    model.covars_ = params.covars
    return model


def hmmlearn_runner(w: Workload, implementation: str, n_iter: int) -> Runner:
    from hmmlearn.base import ConvergenceMonitor

    h = _Holder()

    def setup() -> None:
        p = _copy_params(w.params)
        if w.is_gmm:
            h.model = make_hmmlearn_gmm(p, implementation, n_iter)
        else:
            model = make_hmmlearn(p, implementation)
            model.params, model.n_iter, model.tol = "stmc", n_iter, -math.inf
            model.monitor_ = ConvergenceMonitor(-math.inf, n_iter, False)  # built in __init__
            h.model = model

    def run() -> list[float]:
        h.model.fit(w.x_flat, w.lengths)
        return list(h.model.monitor_.history)

    def outcome(hist: list[float]) -> Outcome:
        m = h.model
        covars = m.covars_ if w.is_gmm else np.diagonal(m.covars_, axis1=-2, axis2=-1)
        params = {"means": np.array(m.means_), "covars": np.array(covars),
                  "transmat": np.array(m.transmat_), "startprob": np.array(m.startprob_)}
        if w.is_gmm:
            params["weights"] = np.array(m.weights_)
        return Outcome(list(hist), params)

    return Runner(setup, run, outcome)


def make_pomegranate_gmm(params: GMMHMMParams):
    """pomegranate v1 ``DenseHMM`` of ``GeneralMixtureModel``s of diag ``Normal``s, float32."""
    from pomegranate.distributions import Normal
    from pomegranate.gmm import GeneralMixtureModel
    from pomegranate.hmm import DenseHMM

    f32 = torch.float32
    k, m, _ = params.means.shape
    dists = []
    for s in range(k):
        comps = [Normal(means=torch.as_tensor(params.means[s, j], dtype=f32),
                        covs=torch.as_tensor(params.covars[s, j], dtype=f32),
                        covariance_type="diag") for j in range(m)]
        prior = torch.as_tensor(params.weights[s], dtype=f32)
        dists.append(GeneralMixtureModel(comps, priors=prior / prior.sum()))
    starts = torch.as_tensor(params.startprob, dtype=f32)
    return DenseHMM(dists, edges=torch.as_tensor(params.transmat, dtype=f32),
                    starts=starts / starts.sum(), ends=torch.ones(k, dtype=f32))


def pomegranate_runner(w: Workload, n_iter: int) -> Runner:
    h = _Holder()
    x = w.x_torch(torch.float32)

    def setup() -> None:
        p = _copy_params(w.params)
        model = make_pomegranate_gmm(p) if w.is_gmm else make_pomegranate(p)
        model.max_iter = n_iter
        model.tol = -math.inf  # the constructor rejects tol < 0; fit only compares with it
        model.verbose = False
        h.model = model

    def run() -> None:
        h.model.fit(x)

    def outcome(_: Any) -> Outcome:
        model = h.model

        def np64(t: torch.Tensor) -> np.ndarray:
            return t.detach().double().numpy().copy()

        if w.is_gmm:
            means = np.stack([[np64(c.means) for c in d.distributions] for d in model.distributions])
            covars = np.stack([[np64(c.covs) for c in d.distributions] for d in model.distributions])
        else:
            means = np.stack([np64(d.means) for d in model.distributions])
            covars = np.stack([np64(d.covs) for d in model.distributions])
        params = {"means": means, "covars": covars, "transmat": np.exp(np64(model.edges)),
                  "startprob": np.exp(np64(model.starts))}
        if w.is_gmm:
            params["weights"] = np.stack([np64(d.priors) for d in model.distributions])
        return Outcome(None, params)

    return Runner(setup, run, outcome)


@dataclass(frozen=True)
class Case:
    impl: str
    task: str  # TASK_ITER or the fit task name
    n_iter: int
    make: Callable[[Workload, int], Runner]


def cases(args: argparse.Namespace) -> list[Case]:
    fit_task = f"{args.fit_iters}-iteration fit"
    out = []
    for task, n in ((TASK_ITER, 1), (fit_task, args.fit_iters)):
        out += [
            Case(OURS_F32, task, n, lambda w, n: ours_runner(w, torch.float32, n)),
            Case(OURS_F64, task, n, lambda w, n: ours_runner(w, torch.float64, n)),
            Case(REF, task, n, lambda w, n: hmmlearn_runner(w, "scaling", n)),
        ]
        if task == TASK_ITER:
            out.append(Case(REF_LOG, task, n, lambda w, n: hmmlearn_runner(w, "log", n)))
        if not args.no_pomegranate:
            out.append(Case(POM, task, n, lambda w, n: pomegranate_runner(w, n)))
    return out


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------


@dataclass
class Row:
    workload: str
    impl: str
    task: str
    timing: Optional[Timing] = None
    outcome: Optional[Outcome] = None
    error: Optional[str] = None
    other_cpu: Optional[float] = None  # share of all cores used by other processes during the row
    ratio: Optional[float] = None  # median / hmmlearn (scaling) median, same workload and task
    ratio_log: Optional[float] = None  # median / hmmlearn (log) median (EM iteration only)


def run_case(case: Case, w: Workload, args: argparse.Namespace) -> Row:
    row = Row(w.key, case.impl, case.task)
    gc.collect()
    snap = cpu_snapshot()
    try:
        runner = case.make(w, case.n_iter)
        if case.task == TASK_ITER:
            reps = args.repeats
            timing = time_call(runner.run, reps, 0.0, min_repeats=reps, setup=runner.setup)
        else:
            reps = args.fit_repeats
            timing = time_call(runner.run, reps, 0.0, min_repeats=reps, setup=runner.setup,
                               warmup=False)
        row.timing = timing
        row.outcome = runner.outcome(timing.result)
        timing.result = None
    except Exception as exc:  # recorded in the report, not raised
        row.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    row.other_cpu = other_cpu_share(snap, cpu_snapshot())
    status = (f"{row.timing.median_ms:10.1f} ms  (runs={len(row.timing.times_ms)}, "
              f"other CPU {row.other_cpu:.0%})" if row.timing else f"ERROR {row.error}")
    print(f"  {w.key:<6} {case.impl:<22} {case.task:<22} {status}", flush=True)
    return row


def add_ratios(rows: list[Row]) -> None:
    med = {(r.workload, r.impl, r.task): r.timing.median_ms for r in rows if r.timing}
    for r in rows:
        if r.timing is None:
            continue
        base = med.get((r.workload, REF, r.task))
        base_log = med.get((r.workload, REF_LOG, r.task))
        r.ratio = r.timing.median_ms / base if base else None
        r.ratio_log = r.timing.median_ms / base_log if base_log else None


# --------------------------------------------------------------------------
# Agreement
# --------------------------------------------------------------------------


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    """max_i |a_i - b_i| / |b_i| (elementwise relative difference)."""
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)))


def _fmt(v: Optional[float], spec: str = ".2e") -> str:
    return "n/a" if v is None else format(v, spec)


def agreement_iter_lines(rows: list[Row]) -> list[str]:
    """Parameters after one EM iteration vs hmmlearn (scaling)."""
    ref = {r.workload: r.outcome for r in rows if r.impl == REF and r.task == TASK_ITER and r.outcome}
    lines = ["| workload | implementation | log-lik rel. diff | means: max rel. diff | means: max abs diff "
             "| covars: max rel. diff | transmat: max abs diff | weights: max abs diff |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        base = ref.get(r.workload)
        if r.task != TASK_ITER or r.impl == REF or r.outcome is None or base is None:
            continue
        o = r.outcome
        ll = (abs(o.history[0] - base.history[0]) / abs(base.history[0])) if o.history else None
        p, q = o.params, base.params
        wts = max_abs(p["weights"], q["weights"]) if "weights" in p else None
        lines.append(
            f"| {r.workload} | {r.impl} | {_fmt(ll)} | {max_rel(p['means'], q['means']):.2e} | "
            f"{max_abs(p['means'], q['means']):.2e} | {max_rel(p['covars'], q['covars']):.2e} | "
            f"{max_abs(p['transmat'], q['transmat']):.2e} | {_fmt(wts)} |")
    return lines


def agreement_fit_lines(rows: list[Row], fit_task: str) -> list[str]:
    """Log-likelihood history of the fit vs hmmlearn (scaling)."""
    ref = {r.workload: r.outcome for r in rows if r.impl == REF and r.task == fit_task and r.outcome}
    lines = ["| workload | implementation | iterations | final log-lik | max abs Δ log-lik (nats) "
             "| max rel. Δ log-lik | means after fit: max rel. diff | our ConvergenceWarnings |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.task != fit_task or r.outcome is None:
            continue
        o, base = r.outcome, ref.get(r.workload)
        if o.history is None:
            lines.append(f"| {r.workload} | {r.impl} | n/a | n/a (not exposed) | n/a | n/a | "
                         f"{max_rel(o.params['means'], base.params['means']):.2e} | |"
                         if base else f"| {r.workload} | {r.impl} | | | | | | |")
            continue
        h = np.asarray(o.history)
        if r.impl == REF:
            lines.append(f"| {r.workload} | {r.impl} | {len(h)} | {h[-1]:.4f} | (reference) | | | |")
            continue
        if base is not None and base.history is not None and len(base.history) == len(h):
            hb = np.asarray(base.history)
            d_abs, d_rel = float(np.max(np.abs(h - hb))), float(np.max(np.abs(h - hb) / np.abs(hb)))
            means = max_rel(o.params["means"], base.params["means"])
        else:
            d_abs = d_rel = means = None
        warn = str(o.n_warnings) if r.impl.startswith("ours") else ""
        lines.append(f"| {r.workload} | {r.impl} | {len(h)} | {h[-1]:.4f} | {_fmt(d_abs)} | {_fmt(d_rel)} | "
                     f"{_fmt(means)} | {warn} |")
    return lines


def history_lines(rows: list[Row], fit_task: str, workload: str) -> list[str]:
    """Per-iteration log-likelihood: hmmlearn's value and the others' difference from it."""
    fit_rows = [r for r in rows if r.workload == workload and r.task == fit_task
                and r.outcome is not None and r.outcome.history]
    ref = next((r for r in fit_rows if r.impl == REF), None)
    if ref is None:
        return []
    others = [r for r in fit_rows if r is not ref]
    n = len(ref.outcome.history)
    its = sorted({i for i in (1, 2, 3, 5, 10, 15, n) if 1 <= i <= n})
    lines = ["| iteration | hmmlearn (scaling) log-lik | " + " | ".join(f"{r.impl} − hmmlearn" for r in others) + " |",
             "|---:|---:|" + "---:|" * len(others)]
    for i in its:
        base = ref.outcome.history[i - 1]
        cells = [f"{r.outcome.history[i - 1] - base:+.3e}" if len(r.outcome.history) >= i else "n/a"
                 for r in others]
        lines.append(f"| {i} | {base:.4f} | " + " | ".join(cells) + " |")
    return lines


# --------------------------------------------------------------------------
# Profile of our EM iteration
# --------------------------------------------------------------------------

# (label, file suffix, function name); cumulative times per EM iteration.
PROFILE_STAGES = [
    ("EM iteration (fit_em, total)", "training/em.py", "fit_em"),
    ("HMM.accumulate (E-step)", "models/hmm.py", "accumulate"),
    ("  emission log_prob (log_emissions)", "models/base.py", "log_emissions"),
    ("  kernel.marginals", "kernel/chain.py", "marginals"),
    ("    prepare (input checks)", "kernel/inputs.py", "prepare"),
    ("    forward + backward loops", "kernel/chain.py", "_forward_backward"),
    ("    edge marginals (xi sums)", "kernel/chain.py", "_edge_marginals"),
    ("    state marginals (gamma, frame totals)", "kernel/chain.py", "_state_marginals"),
    ("  emission.accumulate (stats)", "emissions/", "accumulate"),
    ("    of which component_log_prob (recomputed)", "emissions/mixture.py", "component_log_prob"),
    ("M-step (every component)", "models/base.py", "m_step"),
    ("  emission.m_step", "emissions/", "m_step"),
]


def _cum_ms(stats: pstats.Stats, suffix: str, name: str, exclude: str = "") -> float:
    total = 0.0
    for (fname, _, func), (_, _, _, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        fname = fname.replace("\\", "/")
        if func == name and suffix in fname and "pytorch_hmm" in fname and (not exclude or exclude not in fname):
            total += ct
    return total * 1e3


def profile_ours(w: Workload, dtype: torch.dtype, reps: int) -> tuple[dict[str, float], list[str]]:
    """cProfile ``reps`` EM iterations; (stage -> ms per iteration, top self-time functions)."""
    runner = ours_runner(w, dtype, 1)
    runner.setup()
    runner.run()  # warm
    prof = cProfile.Profile()
    for _ in range(reps):
        runner.setup()
        prof.enable()
        runner.run()
        prof.disable()
    stats = pstats.Stats(prof)
    ms = {}
    for label, suffix, name in PROFILE_STAGES:
        if "component_log_prob" in name and not w.is_gmm:
            continue
        ms[label] = _cum_ms(stats, suffix, name) / reps
    # component_log_prob is called by both log_prob and accumulate: attribute only accumulate's share
    if w.is_gmm:
        ms["    of which component_log_prob (recomputed)"] /= 2.0
    acc = ms["HMM.accumulate (E-step)"]
    # the model hands the emission its posteriors inside accumulate (models/base.py _accumulate_parts)
    ms["  rest of HMM.accumulate (init/trans counts)"] = (
        acc - ms["  emission log_prob (log_emissions)"] - ms["  kernel.marginals"] - ms["  emission.accumulate (stats)"])
    ms["fit_em other (checks, log Z sum, init_stats, tqdm)"] = (
        ms["EM iteration (fit_em, total)"] - acc - ms["M-step (every component)"])
    top = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:6]  # type: ignore[attr-defined]
    top_lines = []
    for (fname, line, func), (_, nc, tt, _, _) in top:
        short = fname.split("site-packages/")[-1].split("src/")[-1]
        top_lines.append(f"{func} ({short}:{line}) {tt * 1e3 / reps:.1f} ms, {nc // reps} calls")
    return ms, top_lines


STAGE_ORDER = [
    "EM iteration (fit_em, total)",
    "HMM.accumulate (E-step)",
    "  emission log_prob (log_emissions)",
    "  kernel.marginals",
    "    prepare (input checks)",
    "    forward + backward loops",
    "    edge marginals (xi sums)",
    "    state marginals (gamma, frame totals)",
    "  emission.accumulate (stats)",
    "    of which component_log_prob (recomputed)",
    "  rest of HMM.accumulate (init/trans counts)",
    "M-step (every component)",
    "  emission.m_step",
    "fit_em other (checks, log Z sum, init_stats, tqdm)",
]


def profile_lines(profiles: dict[tuple[str, str], tuple[dict[str, float], list[str]]], reps: int) -> list[str]:
    cols = list(profiles)
    out = [f"cProfile of {reps} EM iterations per column (after a warm-up), cumulative ms per "
           "iteration (indented rows are parts of the row above). cProfile adds little here "
           "(~1.5k Python calls per iteration).", "",
           "| stage | " + " | ".join(f"{wk} {dt}" for wk, dt in cols) + " |",
           "|---|" + "---:|" * len(cols)]
    for stage in STAGE_ORDER:
        cells = []
        for c in cols:
            ms = profiles[c][0]
            if stage not in ms:
                cells.append("")
                continue
            total = ms["EM iteration (fit_em, total)"]
            cells.append(f"{ms[stage]:.1f} ({ms[stage] / total:.0%})" if total else f"{ms[stage]:.1f}")
        out.append(f"| {stage.replace('  ', '&nbsp;&nbsp;')} | " + " | ".join(cells) + " |")
    out += ["", "Top self-time functions (ms per iteration):", ""]
    for c in cols:
        out.append(f"- {c[0]} {c[1]}: " + "; ".join(profiles[c][1]))
    return out


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def results_table(rows: list[Row], workloads: dict[str, Workload]) -> list[str]:
    lines = ["| workload | implementation | task | median ms | runs | × hmmlearn (scaling) "
             "| × hmmlearn (log) | other CPU |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        wl = workloads[r.workload].label
        cpu = f"{r.other_cpu:.0%}" if r.other_cpu is not None else ""
        if r.timing is None:
            lines.append(f"| {wl} | {r.impl} | {r.task} | error: {r.error} | | | | {cpu} |")
            continue
        lines.append(f"| {wl} | {r.impl} | {r.task} | {r.timing.median_ms:.1f} | {len(r.timing.times_ms)} | "
                     f"{_fmt(r.ratio, '.3f')} | {_fmt(r.ratio_log, '.3f')} | {cpu} |")
    return lines


def target_lines(rows: list[Row]) -> list[str]:
    def get(wk: str, impl: str) -> Optional[Row]:
        return next((r for r in rows if r.workload == wk and r.impl == impl and r.task == TASK_ITER), None)

    out = []
    for impl in (OURS_F32, OURS_F64):
        r = get("gauss", impl)
        if r is None:
            continue
        if r.ratio is None:
            out.append(f"- Gaussian K={GAUSS_K}, EM iteration, {impl}: not measured → **MISS (not measured)**")
            continue
        verdict = "PASS" if r.ratio <= TARGET_RATIO else "MISS"
        extra = f" (× hmmlearn log: {r.ratio_log:.3f})" if r.ratio_log is not None else ""
        out.append(f"- Gaussian K={GAUSS_K}, EM iteration, {impl}: {r.ratio:.3f}× hmmlearn (scaling) "
                   f"vs target ≤ {TARGET_RATIO}× → **{verdict}**{extra}")
    for impl in (OURS_F32, OURS_F64):
        r = get("gmm", impl)
        if r is not None and r.ratio is not None:
            extra = f", {r.ratio_log:.3f}× hmmlearn (log)" if r.ratio_log is not None else ""
            out.append(f"- GMM-HMM K={GMM_K} M={GMM_M}, EM iteration, {impl}: {r.ratio:.3f}× hmmlearn "
                       f"(scaling){extra} (no target)")
    return out


def build_report(args, rows, workloads, profiles, runtime_s, cpu_load) -> str:
    fit_task = f"{args.fit_iters}-iteration fit"
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    out = [
        f"## EM training benchmark: D={N_FEATURES}, N={N_SEQS} sequences × T={SEQ_LEN} frames",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}  ",
        f"Total runtime: {runtime_s:.1f} s",
        "",
        "### Machine",
        "",
    ]
    out += [f"- {k}: {v}" for k, v in machine_info().items()]
    malloc_env = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_") or k == "LD_PRELOAD"}
    out.append(f"- allocator settings (glibc MALLOC_* / LD_PRELOAD; they change our timings markedly): "
               f"{malloc_env or 'none'}")
    out.append(f"- share of all cores used by other processes: {cpu_load[0]:.0%} in the 1 s before "
               f"the run, {cpu_load[1]:.0%} during it (per row: column `other CPU`)")
    if max(cpu_load) > CPU_LOAD_WARN:
        out += ["", "**WARNING: other processes were using the CPU; timings are inflated and noisy "
                "(rows with a high `other CPU` most). Re-run on an idle machine for final numbers.**"]
    out += [
        "",
        "### Timings",
        "",
        f"EM iteration = `fit` with one iteration (E-step over all {N_SEQS}×{SEQ_LEN} frames + "
        f"M-step): median of {args.repeats} timed calls after one warm-up. {fit_task}: median of "
        f"{args.fit_repeats} timed calls, no warm-up, never stopping early. Every call starts from "
        "a freshly built model at the same initial parameters (building is not timed). "
        "hmmlearn GMM-HMM rows skip the k-means that `GMMHMM._init` runs on every `fit` "
        "(see the module docstring); hmmlearn (log) is timed for the EM iteration only.",
        "",
    ]
    out += results_table(rows, workloads)
    out += ["", f"### Target: our EM iteration ≤ {TARGET_RATIO}× hmmlearn's (Gaussian K={GAUSS_K})", ""]
    out += target_lines(rows) or ["- (no rows for ours)"]
    out += ["", "### Agreement after one EM iteration (vs hmmlearn scaling, float64)", "",
            "Relative differences are elementwise, max over all entries. pomegranate: no "
            "log-likelihood exposed; float32; covars differ by design (no variance prior; for "
            "the GMM, hmmlearn centres the variance statistics on the E-step means, pomegranate on "
            "the new means); transmat differs by the learnt end probabilities.", ""]
    out += agreement_iter_lines(rows)
    out += ["", f"### Agreement of the {fit_task} (vs hmmlearn scaling)", ""]
    out += agreement_fit_lines(rows, fit_task)
    for wk in workloads:
        lines = history_lines(rows, fit_task, wk)
        if lines:
            out += ["", f"Log-likelihood per iteration, {workloads[wk].label}:", ""] + lines
    if profiles:
        out += ["", "### Where our EM iteration spends its time", ""]
        out += profile_lines(profiles, args.profile_reps)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", nargs="+", choices=("gauss", "gmm"), default=["gauss", "gmm"])
    p.add_argument("--repeats", type=int, default=None,
                   help="timed EM-iteration calls per row (default 5; 2 with --quick)")
    p.add_argument("--fit-repeats", type=int, default=None,
                   help="timed fit calls per row (default 2; 1 with --quick)")
    p.add_argument("--fit-iters", type=int, default=None,
                   help="EM iterations of the fit task (default 20; 5 with --quick)")
    p.add_argument("--quick", action="store_true", help="fewer repeats and iterations (smoke test)")
    p.add_argument("--markdown", type=Path, default=None, help="also write the report to this file")
    p.add_argument("--no-pomegranate", action="store_true", help="skip the pomegranate rows")
    p.add_argument("--no-profile", action="store_true", help="skip the cProfile breakdown of our EM iteration")
    p.add_argument("--profile-reps", type=int, default=3, help="EM iterations per profile (default 3)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.fit_repeats is None:
        args.fit_repeats = 1 if args.quick else 2
    if args.fit_iters is None:
        args.fit_iters = 5 if args.quick else 20
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    load_before = other_cpu_load()
    cpu_start = cpu_snapshot()
    import numba

    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, numba threads "
          f"{numba.get_num_threads()}, cpu_count {os.cpu_count()}; other processes' CPU use "
          f"{load_before:.0%}", flush=True)
    if load_before > CPU_LOAD_WARN:
        print("WARNING: the CPU is busy with other processes; timings will be inflated", flush=True)

    rows: list[Row] = []
    workloads: dict[str, Workload] = {}
    profiles: dict[tuple[str, str], tuple[dict[str, float], list[str]]] = {}
    for key in args.workloads:
        t0 = time.perf_counter()
        w = build_workload(key, args.seed)
        workloads[key] = w
        snapshot = _copy_params(w.params)
        print(f"{w.label}: sampled {N_SEQS}×{SEQ_LEN} frames in {time.perf_counter() - t0:.1f} s", flush=True)
        rows += [run_case(c, w, args) for c in cases(args)]
        for f in w.params.__dataclass_fields__:  # nobody trained the shared arrays in place
            assert np.array_equal(getattr(w.params, f), getattr(snapshot, f)), f"{key}: {f} was modified"
        if not args.no_profile:
            for dtype in (torch.float32, torch.float64):
                try:
                    profiles[(key, str(dtype).replace("torch.", ""))] = profile_ours(w, dtype, args.profile_reps)
                except Exception as exc:  # pragma: no cover - reported, not fatal
                    print(f"  profile {key} {dtype} failed: {type(exc).__name__}: {exc}", flush=True)
    add_ratios(rows)
    runtime = time.perf_counter() - start
    load_during = other_cpu_share(cpu_start, cpu_snapshot())
    report = build_report(args, rows, workloads, profiles, runtime, (load_before, load_during))
    emit_report(report, args.markdown)


if __name__ == "__main__":
    main()
