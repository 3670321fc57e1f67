"""EM and corpus work over ``torch.distributed`` ranks: shard, sum statistics, gather, fail together.

pytorch_hmm never starts processes itself: run the same script (or ``pytorch-hmm``) under
``torchrun --nproc-per-node N`` (add ``--nnodes`` and a rendezvous for several machines) and
call :func:`init_from_environment` (the command line does), or ``torch.distributed.init_process_group``
yourself. With a process group of more than one rank:

- ``fit`` (EM) sums every component's statistics and the log-likelihood across ranks before each
  M-step (:func:`sum_across_ranks`, one ``all_reduce`` of one float64 buffer), so every rank takes
  the same M-step and ends with the same parameters as one process on all the data; each rank
  passes its own non-empty shard (:func:`shard`; a ``DistributedSampler`` pads the shards by
  repeating sequences unless ``drop_last=True``, and repeated sequences count twice);
- a rank whose local work raises does not leave the others waiting in a collective: the work
  runs inside a :class:`Stage`, whose :meth:`Stage.sync` tells every rank, and every rank raises
  :class:`RankFailure` naming the failed ranks and their errors. A rank that dies or hangs is
  caught by the process group's ``timeout`` (:func:`init_from_environment` sets it).

Without a process group (or with one rank) every function here is the identity and costs nothing.
gloo serves CPU tensors, nccl CUDA tensors (:func:`init_from_environment` picks by device).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any, Dict, List, Optional, Sequence, Tuple, TypeVar

import torch

from .errors import HMMValueError

__all__ = [
    "RankFailure", "Stage", "is_distributed", "rank_and_size", "init_from_environment", "shard",
    "sum_across_ranks", "sum_by_key", "all_gather_objects", "gather_objects", "broadcast_module", "reduced_bytes",
]

_LOG = logging.getLogger("pytorch_hmm.distributed")
T = TypeVar("T")
DEFAULT_TIMEOUT = 1800.0  # seconds a collective waits for the other ranks (init_from_environment)


class RankFailure(RuntimeError):
    """A rank's local work failed, so every rank stops (raised on all ranks by :meth:`Stage.sync`).

    Attributes:
        stage: what the ranks were doing.
        failures: ``{rank: "ErrorType: message"}`` of the ranks that failed.
    """

    def __init__(self, stage: str, failures: Dict[int, str]) -> None:
        self.stage, self.failures = stage, dict(failures)
        detail = "; ".join(f"rank {r}: {m}" for r, m in sorted(self.failures.items()))
        super().__init__(f"{stage} failed on rank{'s' if len(failures) > 1 else ''} "
                         f"{', '.join(map(str, sorted(self.failures)))} ({detail}); every rank stopped")


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_size() -> Tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` without a process group."""
    if not is_distributed():
        return 0, 1
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size()


def init_from_environment(timeout: float = DEFAULT_TIMEOUT, backend: Optional[str] = None) -> bool:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR``, ...).

    Returns True when this call initialised a group of several ranks (the caller then ends it with
    ``torch.distributed.destroy_process_group()``); False when the process runs alone (no
    ``WORLD_SIZE`` above 1) or the caller had initialised a group already, which is then used as
    it is (:func:`is_distributed` says whether ranks are in play). ``backend``: ``"nccl"`` when
    CUDA is available, else ``"gloo"`` (pass ``"gloo"`` where the work is on the CPU anyway);
    ``timeout``: seconds any collective waits for the others before failing.
    """
    import torch.distributed as dist

    if not dist.is_available():
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise HMMValueError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
        return False
    if dist.is_initialized():
        return False
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise HMMValueError(f"WORLD_SIZE must be an integer (set by torchrun); got {os.environ['WORLD_SIZE']!r}") from None
    if world <= 1:
        return False
    if not (timeout > 0):
        raise HMMValueError(f"timeout must be a positive number of seconds; got {timeout!r}")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout))
    return True


def shard(items: Sequence[T], rank: Optional[int] = None, size: Optional[int] = None) -> List[T]:
    """Rank ``rank``'s share of ``items``: every ``size``-th item from ``rank`` on (all of them
    without a process group). Shares are disjoint, cover ``items`` and differ in size by at most 1."""
    if rank is None or size is None:
        rank, size = rank_and_size()
    if not (0 <= rank < size):
        raise HMMValueError(f"rank must be in [0, {size}); got {rank}")
    return list(items[rank::size])


def _device() -> torch.device:
    """Where collective tensors live: the current CUDA device under nccl, else the CPU."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


class Stage:
    """Local work of one rank that the others will wait for in a collective.

    ::

        with Stage("EM iteration") as stage:
            ...                     # this rank's E-step; may raise
        stage.sync()                # every rank learns whether any failed
        sum_across_ranks(stats)

    Inside a process group an exception in the block is logged and held, and :meth:`sync` (a
    collective) raises :class:`RankFailure` on every rank when any rank failed, chained to the
    local exception where there is one. Without a process group, or with ``collective=False``
    (work this rank does alone), the exception propagates at once and :meth:`sync` does nothing.
    """

    def __init__(self, name: str, collective: bool = True) -> None:
        self.name, self.collective = name, collective
        self.error: Optional[BaseException] = None

    def __enter__(self) -> "Stage":
        return self

    def __exit__(self, kind, error, tb) -> bool:
        if error is None or not isinstance(error, Exception) or not self.collective or not is_distributed():
            return False
        self.error = error
        _LOG.error("rank %d: %s failed: %s: %s", rank_and_size()[0], self.name, type(error).__name__, error)
        return True

    def sync(self) -> None:
        """Collective: raise :class:`RankFailure` on every rank if any rank's block raised."""
        if not self.collective or not is_distributed():
            return
        import torch.distributed as dist

        flag = torch.tensor([0.0 if self.error is None else 1.0], device=_device())
        dist.all_reduce(flag)
        if float(flag) == 0:
            return
        messages = all_gather_objects(None if self.error is None else f"{type(self.error).__name__}: {self.error}")
        failure = RankFailure(self.name, {r: m for r, m in enumerate(messages) if m is not None})
        raise failure from self.error


def _tensors(tree: Any) -> List[torch.Tensor]:
    """The tensors of a nested dict / list / tuple, in a fixed order (dicts by sorted key)."""
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for key in sorted(tree, key=str) for t in _tensors(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in _tensors(item)]
    raise HMMValueError(f"statistics must be tensors in nested dicts, lists or tuples; got {type(tree).__name__}")


def reduced_bytes(tree: Any) -> int:
    """Bytes :func:`sum_across_ranks` sends per rank for ``tree`` (its float64 buffer)."""
    return 8 * sum(t.numel() for t in _tensors(tree))


def sum_across_ranks(tree: Any) -> Any:
    """Replace every tensor of ``tree`` (nested dicts / lists of tensors, e.g. EM statistics) by
    its sum over all ranks, in place; returns ``tree``. One ``all_reduce`` of one float64 buffer
    (exact for float32 inputs, float64 sums). Every rank must pass a tree of the same structure."""
    if not is_distributed():
        return tree
    import torch.distributed as dist

    tensors = _tensors(tree)
    if not tensors:
        return tree
    device = _device()
    buffer = torch.cat([t.detach().reshape(-1).to(device=device, dtype=torch.float64) for t in tensors])
    dist.all_reduce(buffer)
    offset = 0
    for t in tensors:
        n = t.numel()
        with torch.no_grad():
            t.copy_(buffer[offset:offset + n].view(t.shape))
        offset += n
    return tree


def all_gather_objects(obj: T) -> List[T]:
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects); ``[obj]`` without a process group."""
    if not is_distributed():
        return [obj]
    import torch.distributed as dist

    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_objects(obj: T, dst: int = 0) -> Optional[List[T]]:
    """``[obj of rank 0, obj of rank 1, ...]`` on rank ``dst``, ``None`` on the others (``[obj]``
    without a process group): for results only one rank writes."""
    if not is_distributed():
        return [obj]
    import torch.distributed as dist

    out: Optional[List[Any]] = [None] * dist.get_world_size() if dist.get_rank() == dst else None
    dist.gather_object(obj, out, dst=dst)
    return out


def sum_by_key(values: Dict[Any, torch.Tensor]) -> Dict[Any, torch.Tensor]:
    """``{key: sum over ranks of values[key]}`` over the union of all ranks' keys (a key missing on
    a rank counts as zeros); tensors of one key have the same shape on every rank. Sorted keys."""
    if not is_distributed():
        return dict(values)
    shapes: Dict[Any, tuple] = {}
    for part in all_gather_objects({k: (tuple(v.shape), v.dtype) for k, v in values.items()}):
        shapes.update(part)
    keys = sorted(shapes, key=str)
    tree = [values[k].double().clone() if k in values else torch.zeros(shapes[k][0], dtype=torch.float64)
            for k in keys]
    sum_across_ranks(tree)
    return {k: t.to(shapes[k][1]) for k, t in zip(keys, tree)}


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (bit-identical models even where
    ranks' arithmetic differs in the last bit, e.g. different CPUs)."""
    if not is_distributed():
        return
    import torch.distributed as dist

    device = _device()
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.device == device:
                dist.broadcast(t.data, src)
            else:
                moved = t.data.to(device)
                dist.broadcast(moved, src)
                t.data.copy_(moved)
