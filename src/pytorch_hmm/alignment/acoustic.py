"""Monophone GMM-HMM acoustic model for forced alignment, trained from a flat start.

:class:`AcousticModel` holds one diagonal Gaussian mixture per phone state (the units of a
:class:`~pytorch_hmm.alignment.forced.PhoneSet`) and each unit's self-loop / exit probability.
:func:`train_flat_start` trains it on feature sequences and their transcriptions as HTK
(``HCompV`` then ``HERest``) and Kaldi's monophone recipe do:

1. flat start: every state gets the global mean and variance of all frames;
2. Baum-Welch re-estimation on each utterance's graph (:func:`compile_utterance`), statistics
   summed over the corpus, one M-step per iteration (emissions and transition probabilities);
   with identical states the first pass spreads each utterance evenly over its phones;
3. mixture splitting (each Gaussian into two) followed by more iterations, as many times as asked.

:meth:`AcousticModel.align` runs batched Viterbi on the same graphs and returns phone and word
segments in frames. Every recursion is the shared kernel's (through :class:`StateGraph`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..distributed import Stage, broadcast_module, sum_across_ranks
from ..emissions import GaussianMixture
from ..emissions.covariance import variance_floor
from ..errors import HMMValueError
from ..threads import torch_threads_for
from ..validation import check_count, frame_mask
from .forced import PhoneSet, Topology, UtteranceGraph, batch_graph, compile_utterance
from .graph import StateGraph
from .segments import Segment

__all__ = ["AcousticModel", "Alignment", "TrainingSchedule", "train_flat_start"]

_FORMAT = "pytorch_hmm.alignment.AcousticModel"
_FORMAT_VERSION = 1


def _library_version() -> str:
    from .. import __version__

    return __version__


@dataclass(frozen=True)
class Alignment:
    """One aligned utterance, in frames: phone and word segments and the path's log-likelihood."""

    phones: List[Segment]
    words: List[Segment]
    log_likelihood: float


@dataclass(frozen=True)
class TrainingSchedule:
    """Baum-Welch iterations at one Gaussian per state, then ``splits`` rounds of (split, more iterations).

    Defaults follow what mattered in calibration (issue "Forced alignment I"): about 20
    iterations at one Gaussian and 8 after each split.
    """

    iterations: int = 20
    splits: int = 2
    iterations_per_split: int = 8

    def __post_init__(self) -> None:
        check_count(self.iterations, "iterations")
        check_count(self.splits, "splits", minimum=0)
        check_count(self.iterations_per_split, "iterations_per_split")


class AcousticModel(nn.Module):
    """Monophone GMM-HMM: a diagonal :class:`~pytorch_hmm.emissions.GaussianMixture` over the
    ``U`` phone-state units and per-unit transition probabilities (buffers ``log_self``,
    ``log_exit`` ``(U,)``).

    Args:
        phone_set: phones and their states.
        dim: feature dimension ``D``.
        silence_probability: of the optional silences in every utterance graph.
    """

    def __init__(self, phone_set: PhoneSet, dim: int, *, silence_probability: float = 0.5,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.phone_set = phone_set
        self.silence_probability = silence_probability
        u = phone_set.num_units
        self.emission = GaussianMixture(u, 1, check_count(dim, "dim"), "diag", dtype=dtype)
        half = torch.full((u,), math.log(0.5), dtype=dtype)
        self.register_buffer("log_self", half.clone())
        self.register_buffer("log_exit", half.clone())

    @property
    def num_units(self) -> int:
        return self.phone_set.num_units

    # --- one file: parameters, phone set, topology, front end, library version ---

    def save(self, path, *, features: Optional[dict] = None) -> None:
        """Write the model to one file (``torch.save`` of plain data): parameters, phone set,
        topology, ``features`` (the front end's settings, e.g. ``FeatureExtractor`` fields) and
        the library version. :meth:`load` reads it back."""
        ps = self.phone_set
        torch.save({
            "format": _FORMAT, "format_version": _FORMAT_VERSION, "library_version": _library_version(),
            "phones": list(ps.phones), "silence_phone": ps.silence_phone, "oov_phone": ps.oov_phone,
            "topology": {"states_per_phone": ps.topology.states_per_phone, "silence_states": ps.topology.silence_states},
            "dim": self.emission.dim, "num_mixtures": self.emission.num_mixtures,
            "silence_probability": self.silence_probability, "features": dict(features or {}),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }, path)

    @classmethod
    def load(cls, path) -> Tuple["AcousticModel", dict]:
        """``(model, features)`` from a file written by :meth:`save`; a file of another kind or
        of a newer format is rejected with a message saying which."""
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise HMMValueError(f"model file {str(path)!r} does not exist") from None
        except Exception as err:  # pickle / zip errors of a file that is not a saved model
            raise HMMValueError(f"{str(path)!r} is not a pytorch_hmm acoustic model file ({type(err).__name__}: {err})") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise HMMValueError(f"{str(path)!r} is not a pytorch_hmm acoustic model file (no {_FORMAT!r} header)")
        version = data.get("format_version")
        if not isinstance(version, int) or version > _FORMAT_VERSION:
            raise HMMValueError(
                f"{str(path)!r} was written by pytorch_hmm {data.get('library_version')} in model format {version}; "
                f"this version ({_library_version()}) reads formats up to {_FORMAT_VERSION}: upgrade pytorch_hmm"
            )
        topo = Topology(**data["topology"])
        phone_set = PhoneSet(data["phones"], topo, silence_phone=data["silence_phone"], oov_phone=data["oov_phone"])
        state = data["state_dict"]
        model = cls(phone_set, data["dim"], silence_probability=data["silence_probability"], dtype=state["log_self"].dtype)
        while model.emission.num_mixtures < data["num_mixtures"]:
            model.emission.split()
        model.load_state_dict(state)
        return model, data["features"]

    def graph(self, transcription) -> UtteranceGraph:
        """The utterance graph of ``transcription`` (its structure; :meth:`state_graph` adds the
        transition probabilities)."""
        return compile_utterance(transcription, self.phone_set, silence_probability=self.silence_probability)

    def state_graph(self, graphs: Sequence[UtteranceGraph]) -> StateGraph:
        """One batched :class:`StateGraph` of ``graphs`` under the current transition probabilities."""
        return batch_graph(graphs, self.log_self, self.log_exit, dtype=self.log_self.dtype, device=self.log_self.device)

    def unit_scores(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T, U)`` log-likelihood of every frame under every unit (0 at padded frames).

        Its torch ops use a second thread only while a CPU is idle (:func:`~pytorch_hmm.threads.torch_threads_for`).
        """
        em = self.emission
        with torch_threads_for(x.shape[0] * x.shape[1] * em.num_states * em.num_mixtures * em.dim):
            return em.log_prob(x, frame_mask(lengths, x.shape[1], x.device))

    @torch.no_grad()
    def align(self, features: Sequence[torch.Tensor], transcriptions: Sequence, *, batch_size: int = 8) -> List[Optional[Alignment]]:
        """Viterbi alignment of each ``(T_i, D)`` feature sequence to its transcription.

        Returns one :class:`Alignment` per utterance, in frames; ``None`` where no path exists
        (an utterance too short for its transcription).
        """
        out: List[Optional[Alignment]] = [None] * len(features)
        for idx, x, lengths in _batches(features, transcriptions, batch_size):
            graphs = [self.graph(transcriptions[i]) for i in idx]
            g = self.state_graph(graphs)
            scores = self.unit_scores(x, lengths)
            paths, best = g.viterbi(scores, lengths)
            segs = g.segments(paths, g.path_scores(scores, paths), [list(range(len(u.phones))) for u in graphs])
            for row, (i, u) in enumerate(zip(idx, graphs)):
                if math.isfinite(float(best[row])):
                    # GMM scores are densities, not probabilities: no per-segment confidence
                    phones, words = u.segments([Segment(s.unit, s.start, s.end) for s in segs[row]])
                    out[i] = Alignment(phones, words, float(best[row]))
        return out


def _batches(features, transcriptions, batch_size: int) -> List[Tuple[List[int], torch.Tensor, torch.Tensor]]:
    """Utterances sorted by length in batches: ``(indices, padded x, lengths)`` each."""
    if len(features) != len(transcriptions):
        raise HMMValueError(f"features and transcriptions must have one entry per utterance; got {len(features)} and "
                            f"{len(transcriptions)}")
    check_count(batch_size, "batch_size")
    order = sorted(range(len(features)), key=lambda i: features[i].shape[0])
    out = []
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        items = [features[i] for i in idx]
        lengths = torch.tensor([f.shape[0] for f in items], dtype=torch.long)
        out.append((idx, torch.nn.utils.rnn.pad_sequence(items, batch_first=True), lengths))
    return out


def train_flat_start(
    model: AcousticModel,
    features: Sequence[torch.Tensor],
    transcriptions: Sequence,
    schedule: TrainingSchedule = TrainingSchedule(),
    *,
    batch_size: int = 8,
    generator: Optional[torch.Generator] = None,
    progress: Optional[Callable[[str, int, float], None]] = None,
) -> List[float]:
    """Train ``model`` from a flat start on ``(T_i, D)`` features and their transcriptions.

    Utterances with no path through their graph (too short for the transcription) are left out
    of the statistics of that iteration. ``progress(stage, iteration, log_likelihood)`` is called
    after every iteration. Returns the total log-likelihood per iteration.

    Under ``torch.distributed`` each rank passes its share of the corpus (possibly none): the
    flat start's moments and every iteration's statistics are summed over the ranks, so every
    rank trains the model one process would train on all of it (``generator`` seeded alike).
    """
    with Stage("flat start") as stage:
        batches = _batches(features, transcriptions, batch_size)  # padded and compiled once
        graphs = [[model.graph(transcriptions[i]) for i in idx] for idx, _, _ in batches]
    stage.sync()
    if int(sum_across_ranks(torch.tensor(float(len(features))))) == 0:
        raise HMMValueError("train_flat_start needs at least one utterance; got none")
    _flat_start(model.emission, [f.reshape(-1, f.shape[-1]).to(model.emission.loc.dtype) for f in features])
    history: List[float] = []
    stages = [("1 gaussian", schedule.iterations)] + [
        (f"{2 ** (s + 1)} gaussians", schedule.iterations_per_split) for s in range(schedule.splits)
    ]
    for n, (stage, iterations) in enumerate(stages):
        if n:
            model.emission.split(generator)
            broadcast_module(model.emission)  # ranks whose generators differ still split alike
        for it in range(iterations):
            total = _baum_welch_step(model, batches, graphs)
            history.append(total)
            if progress is not None:
                progress(stage, it, total)
    return history


def _flat_start(emission: GaussianMixture, frames: List[torch.Tensor]) -> None:
    """Every unit (and component) gets the global mean and variance of the training frames
    (``(N_i, D)`` blocks; float64 sums over all ranks, in two passes: the mean, then the deviations)."""
    dtype, d = emission.loc.dtype, emission.dim
    first = sum_across_ranks(torch.cat([torch.tensor([float(sum(f.shape[0] for f in frames))], dtype=torch.float64),
                                        sum((f.double().sum(0) for f in frames), torch.zeros(d, dtype=torch.float64))]))
    mean = first[1:] / first[0]
    second = sum_across_ranks(sum(((f.double() - mean).square().sum(0) for f in frames), torch.zeros(d, dtype=torch.float64)))
    mean, var = mean.to(dtype), (second / first[0]).to(dtype)
    var = torch.maximum(var, variance_floor(emission.min_covar, emission.var_floor, mean, var))
    k, m = emission.num_states, emission.num_mixtures
    emission.weights = torch.full((k, m), 1.0 / m, dtype=dtype)
    emission.means = mean.expand(k, m, -1)
    emission.covars = var.expand(k, m, -1)


@torch.no_grad()
def _baum_welch_step(model: AcousticModel, batches, graphs) -> float:
    """One EM iteration over the corpus; returns the total log-likelihood of the usable utterances."""
    u = model.num_units
    stats = model.emission.init_stats()
    edges = torch.zeros(2 * u, dtype=torch.float64)
    total = torch.zeros((), dtype=torch.float64)
    with Stage("Baum-Welch iteration (E-step)") as stage:
        for (_, x, lengths), batch_graphs in zip(batches, graphs):
            g = model.state_graph(batch_graphs)
            scores = model.unit_scores(x, lengths)
            log_z, post, counts = g.marginals(scores, lengths)
            usable = torch.isfinite(log_z)
            if not bool(usable.all()):  # no path: leave the utterance out of this iteration (its frames are masked)
                counts = torch.where(usable.view(-1, *([1] * (counts.ndim - 1))), counts, 0.0)
            total += log_z[usable].double().sum().cpu()
            mask = frame_mask(lengths, x.shape[1], x.device) & usable[:, None]
            model.emission.accumulate(stats, x, g.scatter(post, u), mask)
            edges += g.scatter_edges(counts, 2 * u).double()
    stage.sync()
    sum_across_ranks([stats, edges, total])  # every rank: the statistics of the whole corpus
    model.emission.m_step(stats)
    self_counts, exit_counts = edges[0::2], edges[1::2]
    seen = self_counts + exit_counts > 0
    # a unit stays (or leaves) with probability in [1e-3, 1 - 1e-3]; units without counts keep theirs
    p_self = (self_counts / (self_counts + exit_counts).clamp_min(1e-300)).clamp(1e-3, 1 - 1e-3)
    model.log_self.copy_(torch.where(seen, p_self.log(), model.log_self.double()).to(model.log_self.dtype))
    model.log_exit.copy_(torch.where(seen, torch.log1p(-p_self), model.log_exit.double()).to(model.log_exit.dtype))
    return float(total)
