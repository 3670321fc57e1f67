"""One rank of the torch.distributed tests (tests/test_distributed.py runs it under torchrun).

``python -m torch.distributed.run --standalone --nproc-per-node N tests/distributed_worker.py SCENARIO OUT``

* ``fit``: every model of :func:`models` is fitted on this rank's contiguous shard of
  :func:`dataset`; the parameters and histories go to ``OUT/fit-rank<r>.pt``.
* ``fail``: rank 1's shard holds a sequence no path can explain; every rank must stop with
  :class:`~pytorch_hmm.distributed.RankFailure`, whose message goes to ``OUT/fail-rank<r>.txt``;
  then rank 1's shard is empty (``OUT/empty-rank<r>.txt``).
* ``hang``: rank 1 never reaches the first collective; rank 0 must give up after the process
  group's timeout (5 s here) and write its error to ``OUT/hang-rank0.txt``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
import torch.distributed as dist

import pytorch_hmm as ph
from pytorch_hmm.distributed import RankFailure, init_from_environment, rank_and_size
from pytorch_hmm.emissions import Gaussian

D = 2


def dataset() -> List[torch.Tensor]:
    """11 sequences of 20..47 frames (float64) from a 3-state Gaussian HMM; the same on every rank."""
    g = torch.Generator().manual_seed(7)
    means = torch.tensor([[0.0, 0.0], [3.0, 1.0], [-2.0, 4.0]], dtype=torch.float64)
    out = []
    for i in range(11):
        t = 20 + (13 * i) % 28
        states = torch.div(torch.arange(t) * 3, t, rounding_mode="floor")
        out.append(means[states] + torch.randn(t, D, generator=g, dtype=torch.float64))
    return out


def contiguous_shard(items: list, rank: int, size: int) -> list:
    """Rank ``rank``'s contiguous block (the ranks' blocks, in order, are ``items``)."""
    bounds = [len(items) * r // size for r in range(size + 1)]
    return items[bounds[rank]:bounds[rank + 1]]


def models() -> Dict[str, Tuple[Callable[[], torch.nn.Module], dict]]:
    """name -> (constructor, fit keywords): k-means and segment initialisation, a mixture with a split, an HSMM."""
    return {
        "ergodic_kmeans": (lambda: ph.HMM(Gaussian(3, D, dtype=torch.float64)),
                           dict(max_iter=8, initialize="kmeans")),
        "left_to_right_segments": (lambda: ph.HMM(Gaussian(3, D, dtype=torch.float64), "left_to_right"),
                                   dict(max_iter=8, initialize="segments")),
        "mixture_split": (lambda: ph.MixtureGaussianHMM(3, 1, D, dtype=torch.float64),
                          dict(max_iter=5, initialize=True, splits=1)),
        "hsmm_poisson": (lambda: ph.HSMM(Gaussian(3, D, dtype=torch.float64), "poisson", max_duration=30),
                         dict(max_iter=4, initialize=True)),
    }


def fit_all(data: List[torch.Tensor]) -> Dict[str, dict]:
    """Fit every model of :func:`models` on ``data``: ``{name: {"state": ..., "history": ...}}``."""
    out = {}
    for name, (make, kwargs) in models().items():
        torch.manual_seed(0)
        model = make()
        history = model.fit(data, verbose=False, generator=torch.Generator().manual_seed(1), **kwargs)
        out[name] = {"state": {k: v.clone() for k, v in model.state_dict().items()}, "history": history}
    return out


def main(scenario: str, out: Path) -> int:
    assert init_from_environment(timeout=5 if scenario == "hang" else 60), "run under torchrun with --nproc-per-node 2+"
    try:
        return run(scenario, out)
    finally:
        dist.destroy_process_group()


def run(scenario: str, out: Path) -> int:
    rank, size = rank_and_size()
    data = contiguous_shard(dataset(), rank, size)
    if scenario == "fit":
        torch.save(fit_all(data), out / f"fit-rank{rank}.pt")
        return 0
    if scenario == "fail":
        if rank == 1:
            data = data + [torch.zeros(1, D, dtype=torch.float64)]  # one frame cannot reach the last state
        model = ph.HMM(Gaussian(3, D, dtype=torch.float64), "left_to_right", final="last")
        try:
            model.fit(data, max_iter=3, verbose=False, generator=torch.Generator().manual_seed(1))
        except RankFailure as err:
            (out / f"fail-rank{rank}.txt").write_text(str(err))
        try:  # a rank with an empty shard stops every rank at once, with its reason
            model.fit([] if rank == 1 else data, max_iter=3, verbose=False)
        except RankFailure as err:
            (out / f"empty-rank{rank}.txt").write_text(str(err))
            return 3
        return 0
    if scenario == "hang":
        if rank == 1:
            time.sleep(120)  # stuck: torchrun ends it once rank 0 has failed
            return 0
        try:
            ph.HMM(Gaussian(3, D, dtype=torch.float64)).fit(data, max_iter=2, verbose=False)
        except RuntimeError as err:  # the process group's timeout
            (out / "hang-rank0.txt").write_text(f"{type(err).__name__}: {err}")
            return 4
        return 0
    raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], Path(sys.argv[2])))
