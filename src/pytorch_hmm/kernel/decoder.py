"""A Viterbi decoder over fixed potentials, as an ``nn.Module`` that ``torch.export`` can trace.

:class:`ViterbiDecoder` checks its transitions, initial and final log weights once (as every
kernel routine does, :func:`~.inputs.prepare`), keeps their canonical form as buffers and runs
:func:`~.torch_loops.viterbi_scan`: the PyTorch reference Viterbi frames driven by ``torch``'s
``scan``, so an exported program keeps the batch size ``B`` and the number of frames ``T``
symbolic and runs with plain ``torch`` (no ``pytorch_hmm``, no numba). Its forward does no
host synchronisation and so no input checks: inputs must be finite at valid frames and
``lengths`` in ``[1, T]``.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import nn

from ..errors import HMMValueError
from ..transitions import TransitionStructure
from . import torch_loops
from .inputs import ChainProblem, as_structure, prepare
from .storages import ops_for

__all__ = ["ViterbiDecoder"]

# torch.export specialises sizes 0 and 1, and scan needs T - 1 >= 2 steps: every input gets
# this many all-zero frames appended (past every length, so they change nothing), cut off after
_PAD_FRAMES = 2


class ViterbiDecoder(nn.Module):
    """``(log_emissions (B, T, K), lengths (B,)) -> (paths (B, T) int64, -1 past each length; scores (B,))``.

    Same results as :func:`~pytorch_hmm.kernel.viterbi` with these potentials (the same frames
    of the PyTorch loops), for any ``B`` and ``T``, traceable by ``torch.export`` with both
    dynamic.

    Args:
        transitions: a static ``Dense``, ``Banded`` or ``Sparse`` structure (or a ``(K, K)``
            log-probability tensor), shared by the batch.
        log_init: ``(K,)`` initial log-probabilities.
        log_final: optional ``(K,)`` end log weights.
    """

    def __init__(self, transitions: Union[TransitionStructure, torch.Tensor], log_init: torch.Tensor,
                 log_final: Optional[torch.Tensor] = None) -> None:
        super().__init__()
        structure = as_structure(transitions)
        if structure.time_varying or structure.batch_size is not None:
            raise HMMValueError(f"transitions must be static and shared by the batch ({type(structure).__name__} "
                                f"log_probs (K, X)) for a ViterbiDecoder; got shape {tuple(structure.log_probs.shape)}")
        for name, v in (("log_init", log_init), ("log_final", log_final)):
            if isinstance(v, torch.Tensor) and v.ndim != 1:
                raise HMMValueError(f"{name} must be (K,) for a ViterbiDecoder (shared by the batch); got shape {tuple(v.shape)}")
        k = structure.num_states
        probe = torch.zeros((1, 1, k), dtype=structure.dtype, device=structure.device)
        p = prepare(probe, structure, log_init, None, log_final)  # every check of the kernel's inputs, once
        self.ops = ops_for(structure)
        self.register_buffer("trans", p.trans.detach().clone())  # (1, 1, K, X)
        self.register_buffer("index", None if p.index is None else p.index.clone())
        self.register_buffer("log_init", p.init[0].detach().clone())
        self.register_buffer("log_final", p.final[0].detach().clone())

    @property
    def num_states(self) -> int:
        return self.log_init.shape[0]

    def forward(self, log_emissions: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Best paths ``(B, T)`` (``-1`` past each length, and for infeasible items) and scores ``(B,)``."""
        b, t, k = log_emissions.shape
        e = torch.cat([log_emissions, log_emissions.new_zeros((b, _PAD_FRAMES, k))], 1)
        valid = torch.arange(t + _PAD_FRAMES, device=e.device) < lengths[:, None]
        e = torch.where(valid[:, :, None], e, torch.zeros((), dtype=e.dtype, device=e.device))
        problem = ChainProblem(e, self.trans, self.ops, self.log_init.expand(b, k), self.log_final.expand(b, k),
                               lengths.long(), False, self.index)
        paths, scores = torch_loops.viterbi_scan(problem)
        return paths[:, :t], scores
