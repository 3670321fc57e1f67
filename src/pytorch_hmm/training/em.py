"""Baum-Welch EM over batches: statistics are summed over all batches, then one M-step."""

from __future__ import annotations

import inspect
import math
from typing import Iterable, List, Optional, Tuple, Union

import torch
from tqdm.auto import tqdm

from ..distributed import Stage, all_gather_objects, broadcast_module, is_distributed, rank_and_size, sum_across_ranks
from ..errors import HMMTypeError, HMMValueError
from ..threads import torch_threads_for
from ..validation import check_count, frame_mask
from .data import as_batches, check_weights
from .monitor import ConvergenceMonitor

INIT_METHODS = ("auto", "kmeans", "segments")


def fit_em(model, data, lengths=None, *, max_iter: int = 100, tol: float = 1e-4, verbose: bool = True,
           frozen: Union[str, Iterable[str]] = (), initialize: Union[bool, str, None] = None,
           generator: Optional[torch.Generator] = None, weights=None) -> List[float]:
    """Run EM on ``model``; returns the log-likelihood history.

    ``weights`` (optional, one per sequence of a padded tensor or list): each sequence's
    statistics and log-likelihood are scaled by its weight (weight 2 counts a sequence twice,
    weight 0 leaves it out); the history is the weighted total. The data-driven
    initialisation uses every sequence of weight > 0 once.

    Inside a ``torch.distributed`` process group each rank passes its own shard of the data:
    statistics and log-likelihoods are summed over the ranks before every M-step, the
    initialisation sees every rank's frames, and every rank ends with the same parameters as one
    process on all the data (:mod:`pytorch_hmm.distributed`; a rank that fails stops them all).
    The data-driven initialisation gathers every rank's frames on every rank: for data too large
    for that, initialise on a sample first and fit the shards with ``initialize=False``.

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
    if not (initialize is None or isinstance(initialize, bool) or initialize in INIT_METHODS):
        raise HMMValueError(f"initialize must be None, a bool or one of {INIT_METHODS}; got {initialize!r}")
    with Stage("EM data") as stage:  # a rank whose shard is empty or invalid stops every rank, with its message
        batches = as_batches(data, lengths)
        if weights is not None:
            batches, weights = _weighted_batches(model, batches, weights)
    stage.sync()
    k = int(getattr(model, "num_states", 1))
    # emission + chain operations of an iteration; a DataLoader is not read an extra time for it
    work = sum(x.numel() * k + x.shape[0] * x.shape[1] * k * k for x, _ in batches) if isinstance(batches, list) else math.inf
    with torch_threads_for(work):  # small problems: one thread, torch ops included (threads.py)
        return _run(model, batches, frozen, max_iter, tol, verbose, initialize, generator, weights)


def _run(model, batches, frozen, max_iter, tol, verbose, initialize, generator, weights=None) -> List[float]:
    if initialize is None:
        initialize = bool(getattr(model.emission, "needs_init", False)) and "emission" not in frozen
    if initialize is not False:
        initialize_emission(model, batches, "auto" if initialize is True else initialize, generator, across_ranks=True)
    broadcast_module(model)  # every rank starts alike (e.g. after a mixture split with its own generator)
    monitor = ConvergenceMonitor(tol, max_iter)
    bar = tqdm(total=max_iter, desc="EM", disable=not verbose or rank_and_size()[0] != 0, leave=False)
    try:
        while not monitor.converged:
            log_prior = _log_prior(model)  # of the parameters the E-step below scores
            total = _iteration(model, batches, frozen, weights)
            monitor.report(total, log_prior)
            bar.update(1)
            bar.set_postfix(log_likelihood=f"{total:.4f}", gain=f"{monitor.gain:.2e}")
    finally:
        bar.close()
    broadcast_module(model)  # bit-identical on every rank, whatever each rank's arithmetic
    return monitor.history


def _log_prior(model) -> float:
    """Sum of the components' Dirichlet log-priors (0 without priors): with them EM raises the
    log posterior, not the log-likelihood, so the monitor checks the sum."""
    parts = model.em_parts().values() if hasattr(model, "em_parts") else ()
    return sum(part.log_prior() for part in parts if hasattr(part, "log_prior"))


def _iteration(model, batches, frozen, weights=None) -> float:
    """One EM iteration: statistics of every batch, one M-step; returns the total log-likelihood
    (``weights``: one ``(B,)`` tensor per batch, or None)."""
    stats = model.init_stats(frozen)
    total = 0.0
    with Stage("EM iteration (E-step)") as stage:
        for i, (x, lens) in enumerate(batches):
            w = None if weights is None else weights[i]
            log_z, _ = model.accumulate(stats, x, lens) if w is None else model.accumulate(stats, x, lens, weights=w)
            if not torch.isfinite(log_z).all():
                bad = torch.nonzero(~torch.isfinite(log_z)).flatten().tolist()
                raise HMMValueError(f"sequences {bad} of a batch have zero likelihood under the model; EM cannot use them")
            total += float((log_z.double() if w is None else log_z.double() * w.double()).sum())
    stage.sync()
    summed = sum_across_ranks({"stats": stats, "total": torch.tensor(total, dtype=torch.float64)})
    model.m_step(stats)
    return float(summed["total"])


def _weighted_batches(model, batches, weights) -> Tuple[list, list]:
    """The one batch of a tensor or list with its sequences of weight 0 left out, and its weights."""
    if not isinstance(batches, list) or len(batches) != 1:
        raise HMMValueError("weights are one per sequence of a padded tensor or a list of sequences; batches from an "
                            "iterable (a DataLoader) cannot take them: repeat or drop sequences there instead")
    if "weights" not in inspect.signature(model.accumulate).parameters:
        raise HMMTypeError(f"weights need a model whose accumulate takes weights (HMM, MixtureGaussianHMM); "
                           f"{type(model).__name__} does not")
    (x, lens), = batches
    w = check_weights(weights, x.shape[0], model._dtype, x.device)
    keep = w > 0
    if not bool(keep.all()):  # weight 0: as if absent (not even scored)
        x, w = x[keep], w[keep]
        lens = None if lens is None else lens[keep.to(lens.device)]
    return [(x, lens)], [w]


def initialize_emission(model, batches, method: str = "auto", generator: Optional[torch.Generator] = None,
                        across_ranks: bool = False) -> str:
    """Data-driven start of ``model.emission`` from ``batches``; returns the method used.

    ``"kmeans"``: the emission's own :meth:`initialize` (k-means over all valid frames).
    ``"segments"``: that, then one emission M-step on the equal segmentation of every sequence
    (frame ``t`` of a sequence of ``T`` frames in state ``floor(t K / T)``), the flat start of
    left-to-right phone models (HTK's uniform segmentation): each state starts from its own
    stretch of every sequence instead of the cluster that k-means gave it.
    ``"auto"``: ``"segments"`` for left-to-right models (:func:`is_left_to_right`), else ``"kmeans"``.
    ``across_ranks`` (``fit``, inside a ``torch.distributed`` group): every rank's frames and
    statistics, collectives every rank must reach; otherwise this process's batches alone.
    """
    if method not in INIT_METHODS:
        raise HMMValueError(f"initialize must be None, a bool or one of {INIT_METHODS}; got {method!r}")
    if method == "auto":
        method = "segments" if is_left_to_right(model) else "kmeans"
    emission = model.emission
    across_ranks = across_ranks and is_distributed()
    with Stage("EM initialisation", collective=across_ranks) as stage:
        x, mask = _first_frames(batches)
    stage.sync()
    if across_ranks:  # every rank's frames: k-means orders them itself, so one process on all the data starts the same
        x = torch.cat([part.to(x.device) for part in all_gather_objects(x.cpu())], dim=1)
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    emission.initialize(x, mask, generator=generator)
    if across_ranks:
        broadcast_module(emission)  # ranks whose random generators differ still start alike
    if method == "segments":
        stats = emission.init_stats()
        with Stage("EM initialisation (segments)", collective=across_ranks) as stage:
            for x, lens in batches:
                lens = torch.full((x.shape[0],), x.shape[1], device=x.device) if lens is None else lens
                mask = frame_mask(lens, x.shape[1], x.device)
                emission.accumulate(stats, x, equal_segments(lens, x.shape[1], model.num_states, model._dtype), mask)
        stage.sync()
        emission.m_step(sum_across_ranks(stats) if across_ranks else stats)
    return method


def is_left_to_right(model) -> bool:
    """True where every path visits the states in order: the model starts in state 0 and its
    ``(K, K)`` transition probabilities are 0 below the diagonal (phone chains, with or without skips)."""
    probs, init = getattr(model, "transmat", None), model.init_probs
    if not isinstance(probs, torch.Tensor) or probs.ndim != 2 or model.num_states < 2:
        return False
    return bool((torch.tril(probs, -1) == 0).all()) and bool((init[1:] == 0).all())


def equal_segments(lengths: torch.Tensor, num_frames: int, num_states: int, dtype: torch.dtype) -> torch.Tensor:
    """``(B, T, K)`` one-hot posteriors of the equal segmentation (0 at padded frames)."""
    t = torch.arange(num_frames, device=lengths.device)
    states = torch.div(t[None, :] * num_states, lengths.clamp(min=1)[:, None], rounding_mode="floor").clamp(max=num_states - 1)
    return torch.nn.functional.one_hot(states, num_states).to(dtype) * (t[None, :] < lengths[:, None]).unsqueeze(-1)


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
