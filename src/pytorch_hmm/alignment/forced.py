"""Utterance graphs for forced alignment: words -> pronunciations -> phone states, on :class:`StateGraph`.

:func:`compile_utterance` turns a :class:`~pytorch_hmm.speech.lexicon.Transcription` into one
graph of phone states (a :class:`~pytorch_hmm.transitions.Sparse` storage):

* every phone is a left-to-right chain of :attr:`Topology.states_per_phone` states (default 3)
  with self-loops; silence and the OOV phone (``spn``) get :attr:`Topology.silence_states`;
* every pronunciation of a word is a parallel branch (weights: the lexicon's pronunciation
  probabilities, normalised per word), so Viterbi picks one;
* an optional silence before the first word, between words and after the last one (probability
  ``silence_probability`` each); a path may start and end in the silences or the words.

Units are phone states shared by every utterance (:class:`PhoneSet`: unit ``offset[p] + s`` is
state ``s`` of phone ``p``), so one ``(B, T, U)`` tensor of acoustic scores serves a batch of
graphs. Every transition is tied to its unit's self-loop (edge id ``2 u``) or exit (``2 u + 1``):
an exit that fans out to several next states (a silence or a word, one branch or another) splits
the unit's exit probability by those choices, so :meth:`StateGraph.scatter_edges` of the expected
counts gives each unit's self-loop and exit counts for the M-step.

:meth:`UtteranceGraph.segments` turns a Viterbi path into phone and word segments in frames
(convert with :func:`~pytorch_hmm.alignment.segments.frames_to_seconds`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import HMMDimensionError, HMMTypeError, HMMValueError
from ..transitions import Sparse
from ..validation import check_count, check_number, check_tensor
from .graph import StateGraph
from .segments import Segment

__all__ = ["Topology", "PhoneSet", "UtteranceGraph", "compile_utterance", "batch_graph"]


@dataclass(frozen=True)
class Topology:
    """HMM states per phone: ``states_per_phone`` for speech phones, ``silence_states`` for the
    silence and OOV phones (HTK/Kaldi: 3 and 3 to 5)."""

    states_per_phone: int = 3
    silence_states: int = 3

    def __post_init__(self) -> None:
        check_count(self.states_per_phone, "states_per_phone")
        check_count(self.silence_states, "silence_states")


class PhoneSet:
    """The phones of an acoustic model and their states as shared unit ids.

    Args:
        phones: the speech phones (e.g. a lexicon's :attr:`~pytorch_hmm.speech.Lexicon.phones`);
            ``silence_phone`` and ``oov_phone`` are added if missing.
        topology: states per phone.
    """

    def __init__(self, phones: Sequence[str], topology: Topology = Topology(), *,
                 silence_phone: str = "sil", oov_phone: str = "spn") -> None:
        names = [silence_phone] + [p for p in dict.fromkeys(phones) if p != silence_phone]
        if oov_phone not in names:
            names.append(oov_phone)
        self.phones: Tuple[str, ...] = tuple(names)
        self.topology = topology
        self.silence_phone, self.oov_phone = silence_phone, oov_phone
        self.index = {p: i for i, p in enumerate(self.phones)}
        self.num_states = [self._states(p) for p in self.phones]
        offsets = [0]
        for n in self.num_states:
            offsets.append(offsets[-1] + n)
        self.offset, self.num_units = offsets[:-1], offsets[-1]
        self.unit_phone = [p for p, n in zip(self.phones, self.num_states) for _ in range(n)]

    def _states(self, phone: str) -> int:
        special = phone in (self.silence_phone, self.oov_phone)
        return self.topology.silence_states if special else self.topology.states_per_phone

    def units(self, phone: str) -> range:
        """The unit ids of ``phone``'s states, first to last."""
        if phone not in self.index:
            raise HMMValueError(f"phone {phone!r} is not in the phone set ({len(self.phones)} phones: "
                                f"{', '.join(self.phones[:12])}{', ...' if len(self.phones) > 12 else ''})")
        i = self.index[phone]
        return range(self.offset[i], self.offset[i] + self.num_states[i])

    def __len__(self) -> int:
        return len(self.phones)

    def __repr__(self) -> str:
        return f"PhoneSet({len(self.phones)} phones, {self.num_units} units, {self.topology})"


@dataclass(frozen=True)
class UtteranceGraph:
    """One utterance's graph: its structure over the units and what its positions mean.

    The structure does not depend on the transition probabilities, so one compiled graph
    serves every training pass: :meth:`state_graph` (or :func:`batch_graph` for several)
    puts the current ``log_self`` / ``log_exit`` on its edges.

    Attributes:
        phones: the phone of each position (one per phone occurrence, silences included).
        words: the word index of each position (``-1`` for the optional silences).
        word_names: the transcription's words.
        units, positions: ``(K,)`` int64 unit and position of each state.
        predecessors: ``(K, P)`` int64 source state of each edge into a state (slot 0: its
            self-loop), ``-1`` = unused slot.
        edge_ids: ``(K, P)`` int64 tied transition of each slot: ``2 u`` the self-loop of unit
            ``u``, ``2 u + 1`` its exit.
        log_choice: ``(K, P)`` float64 log weight of the choice the edge makes (a pronunciation,
            a silence or none), added to the tied transition's log-probability.
        log_init, log_final: ``(K,)`` float64 log weight of starting / ending in each state.
        num_units: ``U``, the phone set's units.
    """

    phones: List[str]
    words: List[int]
    word_names: Tuple[str, ...]
    units: np.ndarray
    positions: np.ndarray
    predecessors: np.ndarray
    edge_ids: np.ndarray
    log_choice: np.ndarray
    log_init: np.ndarray
    log_final: np.ndarray
    num_units: int

    @property
    def num_states(self) -> int:
        return int(self.units.shape[0])

    def state_graph(self, log_self: Optional[torch.Tensor] = None, log_exit: Optional[torch.Tensor] = None, *,
                    dtype: torch.dtype = torch.float32, device=None) -> StateGraph:
        """The :class:`StateGraph` (``B = 1``) under ``(U,)`` log self-loop / exit probabilities
        (default ``log 0.5`` both); :func:`batch_graph` of this graph alone."""
        return batch_graph([self], log_self, log_exit, dtype=dtype, device=device)

    def segments(self, path_segments: Sequence[Segment]) -> Tuple[List[Segment], List[Segment]]:
        """``(phones, words)`` frame segments from the graph's position segments (units = position ids).

        Silences become ``sil`` phone segments and no word; a word spans its phones.
        """
        phones, words = [], []
        for seg in path_segments:
            pos = int(seg.unit)
            phones.append(Segment(self.phones[pos], seg.start, seg.end, seg.score))
            w = self.words[pos]
            if w < 0:
                continue
            if words and words[-1][0] == w and words[-1][2] == seg.start:
                words[-1][2] = seg.end
                words[-1][3].append((seg.score, seg.end - seg.start))
            else:
                words.append([w, seg.start, seg.end, [(seg.score, seg.end - seg.start)]])
        word_segments = []
        for w, start, end, scores in words:
            score = None if any(s is None for s, _ in scores) else sum(s * n for s, n in scores) / max(1, end - start)
            word_segments.append(Segment(self.word_names[w], start, end, score))
        return phones, word_segments


class _Builder:
    """States and choice edges of one utterance graph, chain by chain (a chain's own edges,
    self-loops and each state into the next, are implied by its states)."""

    def __init__(self, phone_set: PhoneSet) -> None:
        self.phone_set = phone_set
        self.units: List[int] = []
        self.positions: List[int] = []
        self.chain_starts: List[int] = []
        self.choices: List[Tuple[int, int, float]] = []  # (src, dst, log weight) between chains
        self.phones: List[str] = []
        self.words: List[int] = []

    def chain(self, phone_names: Sequence[str], word: int) -> Tuple[int, int]:
        """States of ``phone_names`` in sequence; returns (first state, last state)."""
        k0, pos = len(self.units), len(self.phones)
        for i, phone in enumerate(phone_names):
            states = self.phone_set.units(phone)
            self.units.extend(states)
            self.positions.extend([pos + i] * len(states))
        self.phones.extend(phone_names)
        self.words.extend([word] * len(phone_names))
        self.chain_starts.append(k0)
        return k0, len(self.units) - 1

    def exit(self, src: int, dst: int, log_choice: float) -> None:
        """Leave state ``src`` (the last of a chain) for ``dst`` (the first of a later one)."""
        self.choices.append((src, dst, log_choice))

    def edges(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(predecessors, edge_ids, log_choice)`` ``(K, P)``: slot 0 the self-loop, then the
        previous state of the chain or, into a chain's first state, the choices in the order made."""
        k = len(self.units)
        units = np.asarray(self.units, dtype=np.int64)
        is_inner = np.ones(k, dtype=bool)  # entered from the previous state of its chain
        is_inner[:1] = False
        is_inner[self.chain_starts] = False
        fan_in = is_inner.astype(np.int64)
        slots = []
        for _, dst, _ in self.choices:
            fan_in[dst] += 1
            slots.append(fan_in[dst])
        width = 1 + int(fan_in.max(initial=0))
        pred = np.full((k, width), -1, dtype=np.int64)
        choice = np.full((k, width), -math.inf)
        pred[:, 0], choice[:, 0] = np.arange(k), 0.0
        inner = np.flatnonzero(is_inner)
        pred[inner, 1], choice[inner, 1] = inner - 1, 0.0
        if self.choices:
            src, dst, log_w = zip(*self.choices)
            pred[dst, slots], choice[dst, slots] = src, log_w
        ids = np.where(pred >= 0, 2 * units[pred.clip(min=0)] + (pred != np.arange(k)[:, None]), -1)
        return pred, ids, choice


def compile_utterance(transcription, phone_set: PhoneSet, *, silence_probability: float = 0.5) -> UtteranceGraph:
    """The forced-alignment graph of one utterance (see the module docstring).

    Args:
        transcription: a :class:`~pytorch_hmm.speech.lexicon.Transcription` (``words`` and
            their ``pronunciations``); OOV words carry the OOV phone.
        phone_set: units of the acoustic model.
        silence_probability: of the optional silence at each word boundary and at both ends;
            0 leaves the silences out, 1 forces them.
    """
    p_sil = check_number(silence_probability, "silence_probability", minimum=0.0)
    if p_sil > 1:
        raise HMMValueError(f"silence_probability must be in [0, 1]; got {silence_probability!r}")
    words = tuple(transcription.words)
    prons = tuple(transcription.pronunciations)
    if not words:
        raise HMMValueError(f"transcription of {transcription.utterance_id or 'the utterance'} has no words")
    log_sil = math.log(p_sil) if p_sil > 0 else -math.inf
    log_no_sil = math.log1p(-p_sil) if p_sil < 1 else -math.inf
    b = _Builder(phone_set)
    starts: List[Tuple[int, float]] = []  # (state, log weight) where a path may begin
    if p_sil > 0:
        first, last = b.chain([phone_set.silence_phone], -1)
        starts.append((first, log_sil))
        ends_before = [(last, 0.0)]  # states that lead into the first word, with the choice weight
    else:
        ends_before = []
    for w, word_prons in enumerate(prons):
        total = sum(p.probability for p in word_prons)
        branches = [(b.chain(p.phones, w), math.log(p.probability / total)) for p in word_prons]
        for (first, _), log_branch in branches:
            if w == 0:
                starts.append((first, log_no_sil + log_branch))
            for state, log_choice in ends_before:
                b.exit(state, first, log_choice + log_branch)
        exits = [last for (_, last), _ in branches]
        if p_sil > 0:
            first, last = b.chain([phone_set.silence_phone], -1)
            for state in exits:
                b.exit(state, first, log_sil)
            ends_before = [(state, log_no_sil) for state in exits] + [(last, 0.0)]
        else:
            ends_before = [(state, 0.0) for state in exits]
    finals = ends_before  # what would lead into a next word ends the utterance after the last one
    k = len(b.units)
    log_init, log_final = np.full(k, -math.inf), np.full(k, -math.inf)
    for state, weight in starts:
        log_init[state] = weight
    for state, weight in finals:
        log_final[state] = weight
    pred, ids, choice = b.edges()
    return UtteranceGraph(b.phones, b.words, words, np.asarray(b.units, dtype=np.int64),
                          np.asarray(b.positions, dtype=np.int64), pred, ids, choice, log_init, log_final,
                          phone_set.num_units)


def batch_graph(
    graphs: Sequence[UtteranceGraph],
    log_self: Optional[torch.Tensor] = None,
    log_exit: Optional[torch.Tensor] = None,
    *,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> StateGraph:
    """One batched :class:`StateGraph` (:class:`~pytorch_hmm.transitions.Sparse` storage) of
    utterance graphs, each padded to the largest ``K`` and ``P``, under ``(U,)`` log self-loop /
    exit probabilities per unit (default ``log 0.5`` both; on ``device``)."""
    if not graphs or not all(isinstance(g, UtteranceGraph) for g in graphs):
        raise HMMTypeError("graphs must be a non-empty sequence of UtteranceGraph (from compile_utterance)")
    n_units = graphs[0].num_units
    if any(g.num_units != n_units for g in graphs):
        raise HMMValueError(f"graphs must come from one phone set; got U = {sorted({g.num_units for g in graphs})} units")
    table = torch.full((2 * n_units,), math.log(0.5), dtype=torch.float64)
    for name, part, offset in (("log_self", log_self, 0), ("log_exit", log_exit, 1)):
        if part is not None:
            check_tensor(part, name, "(U,)")
            if part.shape != (n_units,):
                raise HMMDimensionError(f"{name} must be (U,) with U == {n_units} (the phone set's units); got shape "
                                        f"{tuple(part.shape)}", expected_shape=(n_units,), actual_shape=part.shape)
            table[offset::2] = part.detach().double().cpu()
    bsz = len(graphs)
    k = max(g.num_states for g in graphs)
    width = max(g.predecessors.shape[1] for g in graphs)
    units, positions = np.full((bsz, k), -1, dtype=np.int64), np.full((bsz, k), -1, dtype=np.int64)
    pred, ids = np.full((bsz, k, width), -1, dtype=np.int64), np.full((bsz, k, width), -1, dtype=np.int64)
    choice = np.full((bsz, k, width), -math.inf)
    init, final = np.full((bsz, k), -math.inf), np.full((bsz, k), -math.inf)
    for row, g in enumerate(graphs):
        n, p = g.predecessors.shape
        units[row, :n], positions[row, :n], init[row, :n], final[row, :n] = g.units, g.positions, g.log_init, g.log_final
        pred[row, :n, :p], ids[row, :n, :p], choice[row, :n, :p] = g.predecessors, g.edge_ids, g.log_choice
    ids_t = torch.from_numpy(ids)
    log_probs = (table[ids_t.clamp(min=0)] + torch.from_numpy(choice)).masked_fill_(ids_t < 0, -math.inf)
    to = lambda a, float_=True: torch.from_numpy(a).to(device=device, dtype=dtype if float_ else None)  # noqa: E731
    return StateGraph(to(units, False), Sparse(to(pred, False), log_probs.to(device=device, dtype=dtype)),
                      to(init), to(final), ids_t.to(device), to(positions, False))
