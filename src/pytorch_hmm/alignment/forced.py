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

import torch

from ..errors import HMMValueError
from ..validation import check_count, check_number
from .graph import StateGraph
from .segments import Segment

__all__ = ["Topology", "PhoneSet", "UtteranceGraph", "compile_utterance"]


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


@dataclass
class UtteranceGraph:
    """One utterance's graph and what its positions mean.

    Attributes:
        graph: the :class:`StateGraph` (``B = 1``), states grouped into positions (one per phone
            occurrence, silences included).
        phones: the phone of each position.
        words: the word index of each position (``-1`` for the optional silences).
        word_names: the transcription's words.
    """

    graph: StateGraph
    phones: List[str]
    words: List[int]
    word_names: Tuple[str, ...]

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
    """Edges of one utterance graph, state by state."""

    def __init__(self, phone_set: PhoneSet, log_self: List[float], log_exit: List[float]) -> None:
        self.phone_set, self.log_self, self.log_exit = phone_set, log_self, log_exit
        self.units: List[int] = []
        self.positions: List[int] = []
        self.src: List[int] = []
        self.dst: List[int] = []
        self.lp: List[float] = []
        self.ids: List[int] = []
        self.phones: List[str] = []
        self.words: List[int] = []

    def chain(self, phone_names: Sequence[str], word: int) -> Tuple[int, int]:
        """States of ``phone_names`` in sequence (self-loops, then each state into the next);
        returns (first state, last state)."""
        first_pos, k0 = len(self.phones), len(self.units)
        units, positions = [], []
        for i, phone in enumerate(phone_names):
            states = self.phone_set.units(phone)
            units.extend(states)
            positions.extend([first_pos + i] * len(states))
        self.phones.extend(phone_names)
        self.words.extend([word] * len(phone_names))
        self.units.extend(units)
        self.positions.extend(positions)
        n = len(units)
        self.src.extend(range(k0, k0 + n))
        self.dst.extend(range(k0, k0 + n))
        self.lp.extend([self.log_self[u] for u in units])
        self.ids.extend([2 * u for u in units])
        self.src.extend(range(k0, k0 + n - 1))
        self.dst.extend(range(k0 + 1, k0 + n))
        self.lp.extend([self.log_exit[u] for u in units[:-1]])
        self.ids.extend([2 * u + 1 for u in units[:-1]])
        return k0, k0 + n - 1

    def exit(self, src: int, dst: int, log_choice: float) -> None:
        """Leave state ``src`` for ``dst``: the unit's exit probability times the choice's."""
        u = self.units[src]
        self.src.append(src)
        self.dst.append(dst)
        self.lp.append(self.log_exit[u] + log_choice)
        self.ids.append(2 * u + 1)


def compile_utterance(
    transcription,
    phone_set: PhoneSet,
    *,
    log_self: Optional[torch.Tensor] = None,
    log_exit: Optional[torch.Tensor] = None,
    silence_probability: float = 0.5,
    dtype: torch.dtype = torch.float32,
) -> UtteranceGraph:
    """The forced-alignment graph of one utterance (see the module docstring).

    Args:
        transcription: a :class:`~pytorch_hmm.speech.lexicon.Transcription` (``words`` and
            their ``pronunciations``); OOV words carry the OOV phone.
        phone_set: units of the acoustic model.
        log_self, log_exit: ``(U,)`` log self-loop / exit probability of each unit (default
            ``log 0.5`` both).
        silence_probability: of the optional silence at each word boundary and at both ends;
            0 leaves the silences out, 1 forces them.
    """
    p_sil = check_number(silence_probability, "silence_probability", minimum=0.0)
    if p_sil > 1:
        raise HMMValueError(f"silence_probability must be in [0, 1]; got {silence_probability!r}")
    half = [math.log(0.5)] * phone_set.num_units
    log_self = half if log_self is None else log_self.detach().double().cpu().tolist()
    log_exit = half if log_exit is None else log_exit.detach().double().cpu().tolist()
    words = tuple(transcription.words)
    prons = tuple(transcription.pronunciations)
    if not words:
        raise HMMValueError(f"transcription of {transcription.utterance_id or 'the utterance'} has no words")
    log_sil = math.log(p_sil) if p_sil > 0 else -math.inf
    log_no_sil = math.log1p(-p_sil) if p_sil < 1 else -math.inf
    b = _Builder(phone_set, log_self, log_exit)
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
    log_init = torch.full((k,), -math.inf, dtype=dtype)
    log_final = torch.full((k,), -math.inf, dtype=dtype)
    for state, weight in starts:
        log_init[state] = weight
    for state, weight in finals:
        log_final[state] = weight
    graph = StateGraph.from_edges(
        torch.tensor(b.units), torch.tensor(b.src), torch.tensor(b.dst), torch.tensor(b.lp, dtype=dtype),
        log_init, log_final, torch.tensor(b.ids), torch.tensor(b.positions),
    )
    return UtteranceGraph(graph, b.phones, b.words, words)
