"""Baum-Welch EM over batches: statistics are summed over all batches, then one M-step."""

from __future__ import annotations

import math
from typing import Iterable, List, Optional, Tuple, Union

import torch
from tqdm.auto import tqdm

from ..errors import HMMValueError
from ..threads import torch_threads_for
from ..validation import check_count, frame_mask
from .data import as_batches
from .monitor import ConvergenceMonitor


def fit_em(model, data, lengths=None, *, max_iter: int = 100, tol: float = 1e-4, verbose: bool = True,
           frozen: Union[str, Iterable[str]] = (), initialize: Optional[bool] = None,
           generator: Optional[torch.Generator] = None) -> List[float]:
    """Run EM on ``model``; returns the log-likelihood history.

    ``model`` names its components in ``em_parts()`` (``{"init_probs": ..., "transitions": ...,
    "emission": ...}``, the names ``frozen`` takes) and follows the statistics protocol:
    ``init_stats(frozen)`` (zero statistics per updated component), ``accumulate(stats, x,
    lengths) -> (log_z, posteriors)`` (one kernel pass, counts handed to each component) and
    ``m_step(stats)``. Components without a closed-form M-step (``has_m_step = False``: fixed
    or neural transitions) are left unchanged, as if frozen.
    """
    frozen = frozen_names(frozen)
    components = tuple(model.em_parts())
    unknown = [f for f in frozen if f not in components]
    if unknown:
        raise HMMValueError(f"frozen must name components among {components}; got {unknown}")
    check_count(max_iter, "max_iter")
    batches = as_batches(data, lengths)
    k = int(getattr(model, "num_states", 1))
    # emission + chain operations of an iteration; a DataLoader is not read an extra time for it
    work = sum(x.numel() * k + x.shape[0] * x.shape[1] * k * k for x, _ in batches) if isinstance(batches, list) else math.inf
    with torch_threads_for(work):  # small problems: one thread, torch ops included (threads.py)
        return _run(model, batches, frozen, max_iter, tol, verbose, initialize, generator)


def _run(model, batches, frozen, max_iter, tol, verbose, initialize, generator) -> List[float]:
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
            total = _iteration(model, batches, frozen)
            monitor.report(total)
            bar.update(1)
            bar.set_postfix(log_likelihood=f"{total:.4f}", gain=f"{monitor.gain:.2e}")
    finally:
        bar.close()
    return monitor.history


def _iteration(model, batches, frozen) -> float:
    """One EM iteration: statistics of every batch, one M-step; returns the total log-likelihood."""
    stats = model.init_stats(frozen)
    total = 0.0
    for x, lens in batches:
        log_z, _ = model.accumulate(stats, x, lens)
        if not torch.isfinite(log_z).all():
            bad = torch.nonzero(~torch.isfinite(log_z)).flatten().tolist()
            raise HMMValueError(f"sequences {bad} of a batch have zero likelihood under the model; EM cannot use them")
        total += float(log_z.double().sum())
    model.m_step(stats)
    return total


def frozen_names(frozen: Union[str, Iterable[str]]) -> Tuple[str, ...]:
    """``frozen`` as a tuple of component names; a single string is one name (not its letters)."""
    return (frozen,) if isinstance(frozen, str) else tuple(frozen)


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
