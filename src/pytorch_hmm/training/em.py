"""Baum-Welch EM over batches: statistics are summed over all batches, then one M-step."""

from __future__ import annotations

from typing import Iterable, List, Optional

import torch
from tqdm.auto import tqdm

from ..errors import HMMValueError
from ..kernel.inputs import frame_mask
from .data import as_batches
from .monitor import ConvergenceMonitor

COMPONENTS = ("init_probs", "transitions", "emission")


def fit_em(model, data, lengths=None, *, max_iter: int = 100, tol: float = 1e-4, verbose: bool = True,
           frozen: Iterable[str] = (), initialize: Optional[bool] = None,
           generator: Optional[torch.Generator] = None) -> List[float]:
    """Run EM on ``model`` (an ``HMM``-like module with ``init_stats`` / ``accumulate`` / ``m_step``
    and an ``emission`` following the emission protocol). Returns the log-likelihood history."""
    frozen = tuple(frozen)
    components = getattr(model, "em_components", COMPONENTS)
    unknown = [f for f in frozen if f not in components]
    if unknown:
        raise HMMValueError(f"frozen must name components among {components}; got {unknown}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise HMMValueError(f"max_iter must be a positive int; got {max_iter!r}")
    batches = as_batches(data, lengths)
    emission = model.emission
    if initialize is None:
        initialize = bool(getattr(emission, "needs_init", False)) and "emission" not in frozen
    if initialize:
        x, mask = _first_frames(batches)
        emission.initialize(x, mask, generator=generator)

    monitor = ConvergenceMonitor(tol, max_iter)
    bar = tqdm(total=max_iter, desc="EM", disable=not verbose, leave=False)
    try:
        while not monitor.converged:
            stats = model.init_stats()
            emission_stats = emission.init_stats() if "emission" not in frozen else None
            total = 0.0
            for x, lens in batches:
                log_z, gamma = model.accumulate(stats, x, lens)
                if not torch.isfinite(log_z).all():
                    bad = torch.nonzero(~torch.isfinite(log_z)).flatten().tolist()
                    raise HMMValueError(f"sequences {bad} of a batch have zero likelihood under the model; EM cannot use them")
                total += float(log_z.double().sum())
                if emission_stats is not None:
                    emission.accumulate(emission_stats, x, gamma, _mask(gamma, lens))
            monitor.report(total)
            model.m_step(stats, frozen)
            if emission_stats is not None:
                emission.m_step(emission_stats)
            bar.update(1)
            bar.set_postfix(log_likelihood=f"{total:.4f}", gain=f"{monitor.gain:.2e}")
    finally:
        bar.close()
    return monitor.history


def _mask(gamma: torch.Tensor, lengths: Optional[torch.Tensor]) -> torch.Tensor:
    if lengths is None:
        return torch.ones(gamma.shape[:2], dtype=torch.bool, device=gamma.device)
    return frame_mask(lengths, gamma.shape[1], gamma.device)


def _first_frames(batches) -> tuple:
    """All valid frames of all batches, for data-driven initialisation: ``(x (1, N, ...), mask)``."""
    frames = []
    for x, lens in batches:
        if lens is None:
            frames.append(x.reshape((-1,) + tuple(x.shape[2:])))
        else:
            frames.append(x[frame_mask(lens, x.shape[1], x.device)])
    flat = torch.cat(frames)
    return flat.unsqueeze(0), torch.ones((1, flat.shape[0]), dtype=torch.bool, device=flat.device)
