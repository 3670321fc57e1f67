"""Forward-backward and Viterbi on forced-alignment-sized graphs: banded and sparse chains.

Forced alignment runs the chain kernel on a left-to-right graph of an utterance's phone states:
about K = 150 states over T = 500 frames, each state entered from itself, the previous state
and (optional silences, skipped states) one or two states further back. Two storages of that
graph are timed, B = 16 utterances, float32, random acoustic-like log-likelihoods
(``N(-10, 3^2)`` per frame and state), first state in, last state out:

* ``Banded`` ``(K, 3)``: stay, next, skip one;
* ``Sparse`` ``(K, 4)`` predecessor lists: ``j``, ``j - 1``, ``j - 2``, ``j - 3`` (unused below 0).

Rows: ours on the compiled CPU loops (``backend="numba"``, what ``"auto"`` picks on CPU) and on
the PyTorch loops (``backend="torch"``, the CUDA path), and hmmlearn 0.3's C++ loops on the same
chain as a dense ``(K, K)`` matrix, one utterance at a time (``_hmmc.forward_scaling`` +
``backward_scaling`` + the posteriors for "fb"; ``_hmmc.viterbi``). "fb" is log Z and the state
posteriors (``kernel.forward_backward``); hmmlearn gets ``exp`` of the emissions shifted by each
frame's maximum (its scaling form), outside the timed call. hmmlearn has no end weights, so its
posteriors leave out the "last state out" constraint: its rows are a timing reference for the same
loops, not compared.

Usage::

    python benchmarks/bench_banded.py [--quick] [--markdown PATH]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_snapshot, emit_report, other_cpu_load, other_cpu_share, parse_run_args, report_header, time_call  # noqa: E402

from pytorch_hmm import kernel  # noqa: E402
from pytorch_hmm.transitions import Banded, Sparse  # noqa: E402

NEG = -math.inf


def build(b: int, t: int, k: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    em = torch.randn(b, t, k, generator=g) * 3 - 10
    band = torch.randn(k, 3, generator=g).log_softmax(-1)
    band[-1] = torch.tensor([0.0, NEG, NEG])
    band[-2, 2] = NEG
    band[-2] = band[-2].log_softmax(-1)
    preds = torch.arange(k)[:, None] - torch.arange(4)[None]
    sparse_lp = torch.randn(k, 4, generator=g).masked_fill(preds < 0, NEG)
    init = torch.full((k,), NEG)
    init[0] = 0.0
    final = torch.full((k,), NEG)
    final[-1] = 0.0
    return dict(em=em, banded=Banded(band), sparse=Sparse(preds.masked_fill(preds < 0, -1), sparse_lp),
                init=init, final=final)


def dense_of(structure, k: int) -> torch.Tensor:
    """The ``(K, K)`` log-probability matrix of a banded or sparse chain (``-inf`` = no edge)."""
    dense = torch.full((k, k), NEG, dtype=torch.float64)
    if isinstance(structure, Banded):
        for w in range(structure.log_probs.shape[-1]):
            i = torch.arange(k - w)
            dense[i, i + w] = structure.log_probs[: k - w, w].double()
    else:
        pred, lp = structure.predecessors, structure.log_probs.double()
        for j in range(k):
            for x in range(pred.shape[1]):
                if pred[j, x] >= 0:
                    dense[pred[j, x], j] = torch.logaddexp(dense[pred[j, x], j], lp[j, x])
    return dense


def hmmlearn_calls(w: dict, structure) -> Optional[dict[str, Callable]]:
    try:
        from hmmlearn import _hmmc
    except ImportError:
        return None
    em = w["em"].double()
    k = em.shape[2]
    trans = dense_of(structure, k)
    # hmmlearn's scaling form wants row-stochastic probabilities: the sparse chain's rows are not
    # normalised, so its (unnormalised) potentials are passed as they are, which the loops accept.
    transmat = np.ascontiguousarray(trans.exp().numpy())
    log_transmat = np.ascontiguousarray(trans.numpy())
    start = np.ascontiguousarray(w["init"].double().exp().numpy())
    log_start = np.ascontiguousarray(w["init"].double().numpy())
    frameprob = [np.ascontiguousarray((e - e.amax(-1, keepdim=True)).exp().numpy()) for e in em]
    log_frameprob = [np.ascontiguousarray(e.numpy()) for e in em]

    def fb():
        out = []
        for fp in frameprob:
            log_prob, fwd, scaling = _hmmc.forward_scaling(start, transmat, fp)
            bwd = _hmmc.backward_scaling(start, transmat, fp, scaling)
            post = fwd * bwd  # hmmlearn has no end weights: a timing reference, not compared
            out.append(post / post.sum(1, keepdims=True))
        return out

    def vit():
        return [_hmmc.viterbi(log_start, log_transmat, lf) for lf in log_frameprob]

    return {"fb": fb, "viterbi": vit}


def run(args, w: dict) -> list[tuple[str, str, str, object]]:
    rows = []
    for storage in ("banded", "sparse"):
        s = w[storage]
        for backend in ("numba", "torch"):
            fb = time_call(lambda: kernel.forward_backward(w["em"], s, w["init"], None, w["final"], backend=backend),
                           args.repeats, args.budget)
            vit = time_call(lambda: kernel.viterbi(w["em"], s, w["init"], None, w["final"], backend=backend),
                            args.repeats, args.budget)
            rows += [(storage, f"ours ({backend})", "fb", fb), (storage, f"ours ({backend})", "viterbi", vit)]
            print(f"  {storage:<7} ours ({backend})  fb {fb.median_ms:8.1f} ms  viterbi {vit.median_ms:8.1f} ms", flush=True)
        calls = hmmlearn_calls(w, s)
        if calls is None:
            rows.append((storage, "hmmlearn (dense, scaling)", "fb", None))
            continue
        fb = time_call(calls["fb"], args.repeats, args.budget)
        vit = time_call(calls["viterbi"], args.repeats, args.budget)
        rows += [(storage, "hmmlearn (dense, scaling)", "fb", fb), (storage, "hmmlearn (dense)", "viterbi", vit)]
        print(f"  {storage:<7} hmmlearn  fb {fb.median_ms:8.1f} ms  viterbi {vit.median_ms:8.1f} ms", flush=True)
    return rows


def agreement(w: dict) -> list[str]:
    lines = []
    for storage in ("banded", "sparse"):
        s = w[storage]
        ref = kernel.log_partition(w["em"].double(), type(s)(*_fields(s, torch.float64)), w["init"].double(), None,
                                   w["final"].double(), backend="torch")
        for backend in ("numba", "torch"):
            z = kernel.log_partition(w["em"], s, w["init"], None, w["final"], backend=backend)
            rel = ((z.double() - ref).abs() / ref.abs()).max().item()
            lines.append(f"- {storage}, ours ({backend}, float32) vs ours (torch, float64): max rel. diff of log Z {rel:.1e}")
        paths = [kernel.viterbi(w["em"], s, w["init"], None, w["final"], backend=b)[0] for b in ("numba", "torch")]
        lines.append(f"- {storage}: Viterbi paths numba vs torch {(paths[0] == paths[1]).double().mean().item():.2%} equal")
    return lines


def _fields(s, dtype):
    return (s.log_probs.to(dtype),) if isinstance(s, Banded) else (s.predecessors, s.log_probs.to(dtype))


def table(rows, batch: int) -> list[str]:
    ref = {(st, task): t.median_ms for st, impl, task, t in rows if impl == "ours (numba)" and t is not None}
    lines = ["| graph | implementation | task | ms per batch | ms per utterance | runs | × ours (numba) |",
             "|---|---|---|---:|---:|---:|---:|"]
    for storage, impl, task, t in rows:
        if t is None:
            lines.append(f"| {storage} | {impl} | {task} | not installed | | | |")
            continue
        lines.append(f"| {storage} | {impl} | {task} | {t.median_ms:.1f} | {t.median_ms / batch:.2f} | {len(t.times_ms)} | "
                     f"{t.median_ms / ref[(storage, task)]:.2f}× |")
    return lines


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="B (default 16; 4 with --quick)")
    parser.add_argument("--frames", type=int, default=None, help="T (default 500; 100 with --quick)")
    parser.add_argument("--states", type=int, default=None, help="K (default 150; 30 with --quick)")
    args = parse_run_args(parser, argv, repeats=(15, 3), budget=(5.0, 1.0))
    b = args.batch or (4 if args.quick else 16)
    t = args.frames or (100 if args.quick else 500)
    k = args.states or (30 if args.quick else 150)
    start = time.perf_counter()
    load_before, cpu_start = other_cpu_load(), cpu_snapshot()
    w = build(b, t, k, args.seed)
    print(f"B={b}, T={t}, K={k}; torch threads {torch.get_num_threads()}; other processes' CPU use {load_before:.0%}",
          flush=True)
    rows = run(args, w)
    load = (load_before, other_cpu_share(cpu_start, cpu_snapshot()))
    out = report_header(f"## Banded and sparse chains: B={b}, T={t}, K={k} (float32)", start, omit=("pomegranate",))
    out += [f"- share of all cores used by other processes: {load[0]:.0%} in the 1 s before the run, {load[1]:.0%} during it",
            "", "### Timings", "",
            f"Median of up to {args.repeats} timed calls after one warm-up call (fewer once a row used {args.budget:g} s).", ""]
    out += table(rows, b)
    out += ["", "### Agreement", ""] + agreement(w)
    emit_report("\n".join(out) + "\n", args.markdown)


if __name__ == "__main__":
    main()
