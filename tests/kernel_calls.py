"""Turning an oracle :class:`~oracle.Problem` into kernel arguments, and calling the kernel with them."""

from __future__ import annotations

import torch

from oracle import Problem
from pytorch_hmm import kernel
from pytorch_hmm.transitions import Banded, Dense, Sparse


def structure(storage: str, lp: torch.Tensor, pred=None):
    """The kernel structure of an oracle storage name (``pred``: sparse predecessor lists)."""
    if storage == "sparse":
        return Sparse(torch.as_tensor(pred, dtype=torch.int64, device=lp.device), lp)
    return Dense(lp) if storage == "dense" else Banded(lp)


def rebuild(structure_, lp: torch.Tensor):
    """A structure of the same storage (and predecessor lists) around new log-probs ``lp``."""
    if isinstance(structure_, Sparse):
        return Sparse(structure_.predecessors, lp)
    return type(structure_)(lp)


def torch_inputs(p: Problem, dtype=torch.float64, requires_grad: bool = False, device="cpu") -> dict:
    """Kernel arguments (as a dict) for a numpy :class:`Problem`."""

    def t(x):
        if x is None:
            return None
        return torch.tensor(x, dtype=dtype, device=device, requires_grad=requires_grad)

    lengths = None if p.lengths is None else torch.tensor(p.lengths, dtype=torch.int64, device=device)
    return dict(
        log_emissions=t(p.em),
        transitions=structure(p.storage, t(p.trans), p.pred),
        log_init=t(p.init),
        lengths=lengths,
        log_final=t(p.final),
    )


def run(name: str, inputs: dict, backend: str):
    """Call ``pytorch_hmm.kernel.<name>`` on ``inputs`` (a :func:`torch_inputs` dict)."""
    return getattr(kernel, name)(
        inputs["log_emissions"],
        inputs["transitions"],
        inputs["log_init"],
        lengths=inputs["lengths"],
        log_final=inputs["log_final"],
        backend=backend,
    )
