"""Export a model's Viterbi decoder with ``torch.export``: one file that runs with plain ``torch``.

:func:`export_viterbi` writes a ``torch.export`` program (``.pt2``) that maps features
``x`` ``(B, T, D)`` and ``lengths`` ``(B,)`` to ``(paths (B, T) int64, -1 past each length;
scores (B,))``, as ``model.viterbi(x, lengths)`` does. Load and run it anywhere ``torch``
is installed, without ``pytorch_hmm`` or numba::

    decoder = torch.export.load("decoder.pt2").module()
    paths, scores = decoder(x, lengths)

Why ``torch.export`` and not TorchScript: the library is plain Python (dataclasses, step tables,
validation) that ``torch.jit.script`` cannot compile, ``torch.jit.trace`` would fix ``T`` at the
example's length, and TorchScript is in maintenance only. The export traces the same code the
eager model runs (the emission's densities, the kernel's Viterbi frames), with the loop over
time expressed as ``torch``'s ``scan`` (:class:`~pytorch_hmm.kernel.ViterbiDecoder`), so both
``B`` and ``T`` stay dynamic.

Limits: the program does no input checks (``x`` finite at valid frames, ``lengths`` in
``[1, T]``); it runs on the device and with the dtype the model had at export time; float32
models compute the emission densities in float64 in the program (the eager model does so only
where float32 could lose precision: a data-dependent branch a program cannot hold), so scores
agree to float32 rounding, not bit for bit. ``scan`` is a prototype in torch 2.x.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Tuple, Union

import torch
from torch import nn

from ..emissions.gaussian import Gaussian
from ..emissions.mixture import GaussianMixture
from ..errors import HMMTypeError, HMMValueError
from ..kernel.decoder import ViterbiDecoder
from ..semiring import logsumexp_
from .hmm import HMM

__all__ = ["export_viterbi", "ViterbiProgram"]


class ViterbiProgram(nn.Module):
    """``(x (B, T, D), lengths (B,)) -> (paths (B, T), scores (B,))``: a model's emission densities
    and a :class:`~pytorch_hmm.kernel.ViterbiDecoder` over its potentials, frozen (no gradients), in
    the traceable form :func:`export_viterbi` exports. Run eagerly it gives the program's results."""

    def __init__(self, model: HMM) -> None:
        super().__init__()
        check_exportable(model)
        with torch.no_grad():
            self.emission = copy.deepcopy(model.emission).double().requires_grad_(False)
            self.decoder = ViterbiDecoder(model._chain(), model.log_init.detach(),
                                          None if model.log_final is None else model.log_final.detach())
        self.num_states, self.dim = model.num_states, model.emission.dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        valid = torch.arange(t, device=x.device) < lengths[:, None]
        flat = torch.where(valid[:, :, None], x, torch.zeros((), dtype=x.dtype, device=x.device)).reshape(-1, d).double()
        if isinstance(self.emission, GaussianMixture):
            dens = logsumexp_(self.emission._joint(flat, mixture_major=True), 1)
        else:
            dens = self.emission._log_density(flat)
        return self.decoder(dens.reshape(b, t, self.num_states).to(x.dtype), lengths)


def check_exportable(model: nn.Module) -> None:
    """Raise :class:`~pytorch_hmm.errors.HMMTypeError` unless :func:`export_viterbi` supports ``model``."""
    if not isinstance(model, HMM):
        raise HMMTypeError(f"model must be a pytorch_hmm HMM or MixtureGaussianHMM (with Gaussian or GaussianMixture "
                           f"emissions) to export its Viterbi decoder; got {type(model).__name__}")
    emission = model.emission
    if not isinstance(emission, (Gaussian, GaussianMixture)):
        raise HMMTypeError(f"model.emission must be a Gaussian or GaussianMixture emission to export the model's Viterbi "
                           f"decoder; got {type(emission).__name__}")
    if getattr(emission, "missing", "error") != "error":
        raise HMMValueError(f"model.emission must have missing='error' to export the model's Viterbi decoder (the "
                            f"program does not marginalise NaN features); got missing={emission.missing!r}")


def export_viterbi(model: HMM, path: Union[str, os.PathLike, None] = None) -> torch.export.ExportedProgram:
    """Export ``model.viterbi`` as a ``torch.export`` program, written to ``path`` (a ``.pt2`` file) if given.

    The program takes ``x`` ``(B, T, D)`` (the model's dtype and device) and ``lengths`` ``(B,)``
    int64 (every item's length, ``torch.full((B,), T)`` for full batches), any ``B >= 1`` and
    ``T >= 1``, and returns ``(paths (B, T) int64, scores (B,))`` as ``model.viterbi(x, lengths)``
    (see the module docstring for the limits). Load it with ``torch.export.load(path).module()``.

    Args:
        model: an :class:`~pytorch_hmm.HMM` (or :class:`~pytorch_hmm.MixtureGaussianHMM`) with
            ``Gaussian`` (any covariance type) or ``GaussianMixture`` emissions and static transitions.
        path: where to write the program; ``None`` only returns it.
    """
    program = ViterbiProgram(model).eval()
    ref = model.emission.loc
    x = torch.zeros((2, 4, program.dim), dtype=ref.dtype, device=ref.device)  # sizes 0 and 1 would be specialised
    lengths = torch.tensor([4, 3], device=ref.device)
    batch, frames = torch.export.Dim("batch", min=1), torch.export.Dim("frames", min=1)
    with torch.no_grad():
        exported = torch.export.export(program, (x, lengths), dynamic_shapes=({0: batch, 1: frames}, {0: batch}))
    if path is not None:
        torch.export.save(exported, Path(path))
    return exported
