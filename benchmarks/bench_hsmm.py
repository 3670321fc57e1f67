"""Semi-Markov (segment) kernel against the same model as an expanded-state HMM on the chain kernel.

An HSMM with ``K`` states and durations up to ``D`` is an HMM over ``K * D`` states ``(k, e)``
("state k, e frames so far"). For a left-to-right HSMM (a phone chain) the expansion is
*banded*: ``(k, e)`` moves to ``(k, e + 1)`` (offset 1) or to ``(k + 1, 1)`` (offset ``D - e + 1``),
so the band has ``W = D + 1`` moves per state. For an ergodic HSMM the expansion is dense
(``(k, 1)`` in the count-down form may jump to any ``(j, d)``); it is timed at a shorter ``T``
because a ``(K D)^2`` step is slow. Both expansions give the same log Z as the segment kernel
(printed as a check).

Run: ``python benchmarks/bench_hsmm.py`` (``--quick`` for a smoke run, ``--markdown`` for
PERFORMANCE.md, ``--plot PATH`` for the scaling figure).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Dict, List

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import machine_info, other_cpu_load, time_call  # noqa: E402

from pytorch_hmm.kernel import marginals, semi_markov_marginals, semi_markov_viterbi, viterbi  # noqa: E402
from pytorch_hmm.transitions import Banded, Dense  # noqa: E402

NEG = -math.inf


def make_problem(b: int, t: int, k: int, d: int, topology: str, seed: int = 0, dtype=torch.float32) -> dict:
    """Random emissions (scaled like acoustic log-likelihoods), Poisson-shaped durations."""
    g = torch.Generator().manual_seed(seed)
    em = (torch.randn(b, t, k, generator=g) * 3 - 10).to(dtype)
    steps = torch.arange(1, d + 1, dtype=torch.float64)
    rate = torch.rand(k, generator=g, dtype=torch.float64) * (t / k) * 0.8 + 1  # mean durations fit T
    dur = steps * torch.log(rate)[:, None] - rate[:, None] - torch.lgamma(steps + 1)
    dur = torch.log_softmax(dur, -1).to(dtype)
    if topology == "left_to_right":
        trans = torch.full((k, k), NEG, dtype=dtype)
        trans[torch.arange(k - 1), torch.arange(1, k)] = 0.0
        init = torch.full((k,), NEG, dtype=dtype)
        init[0] = 0.0
        final = torch.full((k,), NEG, dtype=dtype)
        final[-1] = 0.0
    else:
        trans = torch.log_softmax(torch.randn(k, k, generator=g).fill_diagonal_(NEG), -1).to(dtype)
        init = torch.full((k,), -math.log(k), dtype=dtype)
        final = torch.zeros(k, dtype=dtype)
    return dict(em=em, trans=trans, dur=dur, init=init, final=final)


def expand_left_to_right(p: dict) -> dict:
    """Banded ``(K D, D + 1)`` chain over states ``(k, e)`` ("e frames so far"), index ``k D + e - 1``.

    ``(k, e) -> (k, e + 1)`` with ``P(dur > e | dur >= e)`` (offset 1) and ``(k, e) -> (k + 1, 1)``
    with the hazard ``P(dur = e | dur >= e)`` (offset ``D - e + 1``); moves past the last state do
    not exist in a band, and the sequence ends with the last phone's hazard.
    """
    dur = p["dur"].double()
    k, d = dur.shape
    survival = torch.logcumsumexp(dur.flip(-1), -1).flip(-1)  # log P(dur >= e), (K, D)
    hazard = torch.nan_to_num(dur - survival, nan=NEG)
    stay = torch.nan_to_num(survival[:, 1:] - survival[:, :-1], nan=NEG)
    band = torch.full((k, d, d + 1), NEG, dtype=torch.float64)
    band[:, :-1, 1] = stay
    e = torch.arange(1, d + 1)
    band[:, e - 1, d - e + 1] = hazard
    dtype = p["em"].dtype
    init = torch.full((k * d,), NEG, dtype=dtype)
    init[0] = 0.0
    final = torch.full((k, d), NEG, dtype=torch.float64)
    final[-1] = hazard[-1]
    return dict(em=p["em"].repeat_interleave(d, -1), trans=Banded(band.reshape(k * d, d + 1).to(dtype)),
                init=init, final=final.reshape(-1).to(dtype))


def expand_ergodic(p: dict) -> dict:
    """Dense ``(K D, K D)`` chain over states ``(k, r)`` ("r frames left"), index ``k D + r - 1``.

    ``(k, r) -> (k, r - 1)`` with probability 1 for ``r >= 2``; ``(k, 1) -> (j, r)`` with
    ``A[k, j] p_j(r)``; the sequence ends at ``r = 1``.
    """
    dur, trans = p["dur"].double(), p["trans"].double()
    k, d = dur.shape
    big = torch.full((k, d, k, d), NEG, dtype=torch.float64)
    kk, rr = torch.meshgrid(torch.arange(k), torch.arange(1, d), indexing="ij")
    big[kk, rr, kk, rr - 1] = 0.0
    big[:, 0] = trans[:, :, None] + dur[None]
    dtype = p["em"].dtype
    init = (p["init"].double()[:, None] + dur).reshape(-1).to(dtype)
    final = torch.full((k, d), NEG, dtype=torch.float64)
    final[:, 0] = p["final"].double()
    return dict(em=p["em"].repeat_interleave(d, -1), trans=Dense(big.reshape(k * d, k * d).to(dtype)),
                init=init, final=final.reshape(-1).to(dtype))


def time_segment(p: dict, repeats: int) -> Dict[str, float]:
    args = (p["em"], p["trans"], p["dur"], p["init"], None, p["final"])
    fb = time_call(lambda: semi_markov_marginals(*args), repeats, budget_s=20)
    vit = time_call(lambda: semi_markov_viterbi(*args), repeats, budget_s=20)
    return {"fb_ms": fb.median_ms, "viterbi_ms": vit.median_ms, "log_z": fb.result.log_z}


def time_chain(q: dict, repeats: int) -> Dict[str, float]:
    args = (q["em"], q["trans"], q["init"], None, q["final"])
    fb = time_call(lambda: marginals(*args), repeats, budget_s=30, slow_s=30)
    vit = time_call(lambda: viterbi(*args), repeats, budget_s=30, slow_s=30)
    return {"fb_ms": fb.median_ms, "viterbi_ms": vit.median_ms, "log_z": fb.result[0]}


def compare(b: int, t: int, k: int, d: int, topology: str, repeats: int) -> dict:
    p = make_problem(b, t, k, d, topology)
    seg = time_segment(p, repeats)
    q = expand_left_to_right(p) if topology == "left_to_right" else expand_ergodic(p)
    chain = time_chain(q, repeats)
    gap = (seg["log_z"].double() - chain["log_z"].double()).abs().max().item()
    return dict(topology=topology, b=b, t=t, k=k, d=d, seg=seg, chain=chain, log_z_gap=gap,
                rel_gap=gap / seg["log_z"].double().abs().max().item())


def scaling(b: int, t: int, ks: List[int], ds: List[int], k_fixed: int, d_fixed: int, repeats: int) -> dict:
    out = {"D": [], "K": []}
    for d in ds:
        out["D"].append((d, time_segment(make_problem(b, t, k_fixed, d, "ergodic"), repeats)))
    for k in ks:
        out["K"].append((k, time_segment(make_problem(b, t, k, d_fixed, "ergodic"), repeats)))
    return out


def plot(result: dict, path: str, b: int, t: int, k_fixed: int, d_fixed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, fixed in ((axes[0], "D", f"K = {k_fixed}"), (axes[1], "K", f"D = {d_fixed}")):
        xs = [x for x, _ in result[key]]
        ax.plot(xs, [r["fb_ms"] for _, r in result[key]], "o-", label="forward-backward + counts")
        ax.plot(xs, [r["viterbi_ms"] for _, r in result[key]], "s-", label="Viterbi + segments")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel("ms per batch")
        ax.set_title(f"{fixed}, B = {b}, T = {t} (ergodic)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat (smoke test)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ergodic-t", type=int, default=200, help="T for the dense expanded ergodic comparison")
    ap.add_argument("--plot", default=None, help="write the scaling figure (PNG) here")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    b, t, k, d = (4, 100, 8, 20) if args.quick else (16, 1000, 32, 50)
    repeats = 1 if args.quick else args.repeats
    print(f"other processes' CPU load before the run: {other_cpu_load():.0%}")
    rows = [compare(b, t, k, d, "left_to_right", repeats),
            compare(b, min(args.ergodic_t, t), k, d, "ergodic", repeats)]
    ks, ds = ([4, 8, 16], [5, 10, 20]) if args.quick else ([8, 16, 32, 64, 128], [10, 25, 50, 100, 200])
    sweep = scaling(b, t, ks, ds, k, d, repeats)
    if args.plot:
        plot(sweep, args.plot, b, t, k, d)

    def row(cells: List[str]) -> None:
        print("| " + " | ".join(cells) + " |" if args.markdown else " ".join(cells))

    print("\nSegment kernel vs the expanded-state HMM on the chain kernel (ms per batch, median):")
    head = ["model", "B", "T", "K", "D", "expanded states", "segment fb", "expanded fb", "ratio", "segment Viterbi",
            "expanded Viterbi", "ratio", "log Z rel. gap"]
    row(head)
    if args.markdown:
        row(["---"] * len(head))
    for r in rows:
        s, c = r["seg"], r["chain"]
        kind = "left-to-right (banded W = D+1)" if r["topology"] == "left_to_right" else "ergodic (dense)"
        row([kind, str(r["b"]), str(r["t"]), str(r["k"]), str(r["d"]), str(r["k"] * r["d"]),
                        f"{s['fb_ms']:.0f}", f"{c['fb_ms']:.0f}", f"{s['fb_ms'] / c['fb_ms']:.3f}x",
                        f"{s['viterbi_ms']:.0f}", f"{c['viterbi_ms']:.0f}", f"{s['viterbi_ms'] / c['viterbi_ms']:.3f}x",
                        f"{r['rel_gap']:.1e}"])
    print("\nTarget: segment kernel no slower than the expanded HMM (ratio <= 1).")
    print(f"\nScaling of the segment kernel (ergodic, B = {b}, T = {t}), ms per batch:")
    row(["sweep", "value", "fb", "Viterbi"])
    if args.markdown:
        row(["---"] * 4)
    for key, fixed in (("D", f"K = {k}"), ("K", f"D = {d}")):
        for x, res in sweep[key]:
            row([f"{key} ({fixed})", str(x), f"{res['fb_ms']:.0f}", f"{res['viterbi_ms']:.0f}"])
    print("\nmachine:", ", ".join(f"{a}={v}" for a, v in machine_info().items()))


if __name__ == "__main__":
    main()
