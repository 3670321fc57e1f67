"""Korean without an external G2P: Hangul syllables, jamo and a rule-based pronunciation.

A precomposed Hangul syllable (U+AC00..U+D7A3, 11 172 of them) is arithmetic on three
indices: ``code = 0xAC00 + (onset * 21 + nucleus) * 28 + coda`` with 19 onsets, 21 nuclei
and 28 codas (index 0 = no coda). :func:`decompose` / :func:`compose` work on the letters
(compatibility jamo such as ``"ㄱ"``); :func:`to_jamo` / :func:`from_jamo` convert text to and
from *conjoining* jamo (U+1100..), the form of KSS's "decomposed" column and of Unicode NFD.

:func:`pronounce` applies the basic rules of the standard pronunciation (표준 발음법) inside
one word (어절) and returns the pronunciation in Hangul (``"국물"`` -> ``"궁물"``);
:func:`g2p` turns it into phones of :data:`PHONES`. Rules, in the order they are tried at
each syllable boundary (the coda of one syllable, the onset of the next):

- ㅎ deletion: ㅎ (and the ㅎ of ㄶ, ㅀ) before a vowel is silent: 좋아 [조아], 많아 [마나].
- liaison: a coda moves to a following vowel-initial syllable (ㅇ coda stays); a double
  coda splits, its ㅅ tensed: 음악 [으막], 읽어 [일거], 없어 [업써], 넋이 [넉씨].
- palatalisation: ㄷ, ㅌ (ㄾ) before 이 become ㅈ, ㅊ; ㄷ + 히 becomes 치: 굳이 [구지],
  같이 [가치], 굳히다 [구치다].
- ㅎ aspiration: ㅎ + ㄱ ㄷ ㅈ -> ㅋ ㅌ ㅊ and ㅎ + ㅅ -> ㅆ (놓고 [노코], 많다 [만타],
  닿소 [다쏘]); ㄱ ㄷ ㅂ ㅈ + ㅎ -> ㅋ ㅌ ㅍ ㅊ (각하 [가카], 밝히다 [발키다], 앉히다 [안치다]).
- ㅎ before ㄴ: ㅎ -> ㄴ, ㄶ ㅀ drop the ㅎ: 놓는 [논는], 않네 [안네], 뚫는 [뚤른].
- coda neutralisation: codas reduce to ㄱ ㄴ ㄷ ㄹ ㅁ ㅂ ㅇ; a double coda keeps one
  consonant (ㄺ ㄻ ㄿ the second, the others the first; ㄺ before ㄱ keeps ㄹ, as verb stems
  do, except in the nouns 닭 흙 칡 삵): 부엌 [부억], 꽃 [꼳], 닭 [닥], 값 [갑], 삶 [삼],
  여덟 [여덜], 맑게 [말께], 닭고기 [닥꼬기].
- ㄹ nasalisation: ㄹ -> ㄴ after ㅁ ㅇ ㄱ ㅂ: 종로 [종노], 담력 [담녁], 백로 [뱅노].
- lateralisation: ㄴ + ㄹ and ㄹ + ㄴ -> ㄹ + ㄹ: 신라 [실라], 칼날 [칼랄].
- nasalisation: ㄱ ㄷ ㅂ before ㄴ ㅁ -> ㅇ ㄴ ㅁ: 국물 [궁물], 있는 [인는], 앞마당 [암마당].
- tensification: ㄱ ㄷ ㅂ ㅅ ㅈ -> ㄲ ㄸ ㅃ ㅆ ㅉ after a ㄱ ㄷ ㅂ coda and after the
  verb-stem codas ㄵ ㄻ ㄺ ㄼ ㄾ: 국밥 [국빱], 학교 [학꾜], 읽다 [익따], 넓게 [널께].
- vowels: ㅢ after a consonant -> ㅣ (희망 [히망]); 져 쪄 쳐 -> 저 쩌 처 (가져 [가저]).

Not handled (they need morphology or a word list): liaison across a morpheme boundary,
where the coda is neutralised first (맛없다 [마덥따], 겉옷 [거돋], 값어치 [가버치]; we give
[마섭따], [거톧], [갑써치]), ㄴ insertion (솜이불 [솜니불]),
tensification after ㄴ/ㅁ verb stems and in Sino-Korean words (신고 [신꼬], 갈등 [갈뜽]),
exceptions such as 밟다 [밥따], 의견란 [의견난] and nouns with ㄻ ㄼ (삶과 [삼과]),
rules across word boundaries. Put such words in the lexicon: its entries win over the G2P.

Phones (ASCII, after the Revised Romanization; onset and coda stops differ):

- onsets: ㄱ g, ㄲ kk, ㄴ n, ㄷ d, ㄸ tt, ㄹ r (l after a ㄹ coda), ㅁ m, ㅂ b, ㅃ pp,
  ㅅ s, ㅆ ss, ㅈ j, ㅉ jj, ㅊ ch, ㅋ kh, ㅌ th, ㅍ ph, ㅎ h; ㅇ is silent.
- codas: ㄱ k, ㄴ n, ㄷ t, ㄹ l, ㅁ m, ㅂ p, ㅇ ng.
- vowels: ㅏ a, ㅐ ae, ㅑ ya, ㅒ yae, ㅓ eo, ㅔ e, ㅕ yeo, ㅖ ye, ㅗ o, ㅘ wa, ㅙ wae,
  ㅚ oe, ㅛ yo, ㅜ u, ㅝ wo, ㅞ we, ㅟ wi, ㅠ yu, ㅡ eu, ㅢ ui, ㅣ i.
"""

from __future__ import annotations

import unicodedata
from typing import Optional

from ..errors import HMMTypeError, HMMValueError

ONSETS = tuple("ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ")
NUCLEI = tuple("ㅏㅐㅑㅒㅓㅔㅕㅖㅗㅘㅙㅚㅛㅜㅝㅞㅟㅠㅡㅢㅣ")
CODAS = ("",) + tuple("ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ")

FIRST_SYLLABLE = 0xAC00
NUM_SYLLABLES = len(ONSETS) * len(NUCLEI) * len(CODAS)  # 11 172
_L0, _V0, _T0 = 0x1100, 0x1161, 0x11A7  # conjoining onset, nucleus, coda (coda index 0 = none)

_ONSET_INDEX = {c: i for i, c in enumerate(ONSETS)}
_NUCLEUS_INDEX = {c: i for i, c in enumerate(NUCLEI)}
_CODA_INDEX = {c: i for i, c in enumerate(CODAS)}

ONSET_PHONES = dict(zip(ONSETS, "g kk n d tt r m b pp s ss - j jj ch kh th ph h".split()))
del ONSET_PHONES["ㅇ"]
CODA_PHONES = dict(zip("ㄱㄴㄷㄹㅁㅂㅇ", "k n t l m p ng".split()))
VOWEL_PHONES = dict(zip(NUCLEI, "a ae ya yae eo e yeo ye o wa wae oe yo u wo we wi yu eu ui i".split()))
PHONES = tuple(sorted(set(ONSET_PHONES.values()) | set(CODA_PHONES.values()) | set(VOWEL_PHONES.values())))


def is_syllable(ch: str) -> bool:
    """True for a precomposed Hangul syllable (one character, U+AC00..U+D7A3)."""
    return len(ch) == 1 and 0 <= ord(ch) - FIRST_SYLLABLE < NUM_SYLLABLES


def decompose(syllable: str) -> tuple[str, str, str]:
    """``"각"`` -> ``("ㄱ", "ㅏ", "ㄱ")``; the coda is ``""`` when there is none."""
    if not isinstance(syllable, str) or not is_syllable(syllable):
        raise HMMValueError(f"syllable must be one Hangul syllable (U+AC00..U+D7A3); got {syllable!r}")
    c = ord(syllable) - FIRST_SYLLABLE
    return ONSETS[c // 588], NUCLEI[(c % 588) // 28], CODAS[c % 28]


def compose(onset: str, nucleus: str, coda: str = "") -> str:
    """``("ㄱ", "ㅏ", "ㄱ")`` -> ``"각"`` (letters as in :data:`ONSETS`, :data:`NUCLEI`, :data:`CODAS`)."""
    for name, letter, table in (("onset", onset, _ONSET_INDEX), ("nucleus", nucleus, _NUCLEUS_INDEX),
                                ("coda", coda, _CODA_INDEX)):
        if letter not in table:
            raise HMMValueError(f"{name} must be one of {''.join(table)!r}; got {letter!r}")
    code = (_ONSET_INDEX[onset] * 21 + _NUCLEUS_INDEX[nucleus]) * 28 + _CODA_INDEX[coda]
    return chr(FIRST_SYLLABLE + code)


def to_jamo(text: str) -> str:
    """Each Hangul syllable as 2 or 3 conjoining jamo (U+1100..); other characters unchanged.

    The same as ``unicodedata.normalize("NFD", text)`` for Hangul.
    """
    out = []
    for ch in text:
        c = ord(ch) - FIRST_SYLLABLE
        if 0 <= c < NUM_SYLLABLES:
            out.append(chr(_L0 + c // 588) + chr(_V0 + (c % 588) // 28) + (chr(_T0 + c % 28) if c % 28 else ""))
        else:
            out.append(ch)
    return "".join(out)


def from_jamo(text: str) -> str:
    """Conjoining jamo sequences (onset, nucleus, optional coda) back to syllables; the rest unchanged."""
    out: list[str] = []
    for ch in text:
        code = ord(ch)
        prev = ord(out[-1]) if out else -1
        if 0 <= code - _V0 < 21 and 0 <= prev - _L0 < 19:  # onset + nucleus
            out[-1] = chr(FIRST_SYLLABLE + ((prev - _L0) * 21 + code - _V0) * 28)
        elif 0 < code - _T0 < 28 and 0 <= prev - FIRST_SYLLABLE < NUM_SYLLABLES and (prev - FIRST_SYLLABLE) % 28 == 0:
            out[-1] = chr(prev + code - _T0)  # syllable without coda + coda
        else:
            out.append(ch)
    return "".join(out)


# ----------------------------------------------------------------------------- pronunciation
_NEUTRAL = {c: r for r, cs in (("ㄱ", "ㄱㄲㅋㄳㄺ"), ("ㄴ", "ㄴㄵㄶ"), ("ㄷ", "ㄷㅅㅆㅈㅊㅌㅎ"), ("ㄹ", "ㄹㄼㄽㄾㅀ"),
                               ("ㅁ", "ㅁㄻ"), ("ㅂ", "ㅂㅍㅄㄿ"), ("ㅇ", "ㅇ")) for c in cs}
_NEUTRAL[""] = ""
_SPLIT = {c: (c1, c2) for c, c1, c2 in ("ㄳㄱㅅ", "ㄵㄴㅈ", "ㄶㄴㅎ", "ㄺㄹㄱ", "ㄻㄹㅁ", "ㄼㄹㅂ", "ㄽㄹㅅ",
                                        "ㄾㄹㅌ", "ㄿㄹㅍ", "ㅀㄹㅎ", "ㅄㅂㅅ")}
_TENSE = dict(zip("ㄱㄷㅂㅅㅈ", "ㄲㄸㅃㅆㅉ"))
_ASPIRATE = dict(zip("ㄱㄷㅈ", "ㅋㅌㅊ"))  # after a ㅎ coda
_WITH_H = dict(zip("ㄱㄲㅋㄷㅅㅆㅌㅈㅊㅂㅍ", "ㅋㅋㅋㅌㅌㅌㅌㅊㅊㅍㅍ"))  # stop coda + ㅎ onset
_NASAL = dict(zip("ㄱㄷㅂ", "ㅇㄴㅁ"))
_STEM_CODAS = "ㄵㄻㄺㄼㄾ"  # double codas of verb stems: they tense the next lax consonant
_RG_NOUNS = "닭흙칡삵"  # nouns ending in ㄺ: it stays ㄱ before ㄱ (닭고기 [닥꼬기]), unlike verb stems


def _boundary(coda: str, onset: str, vowel: str, noun: bool = False) -> tuple[str, str]:
    """The pronounced (coda, onset) at one syllable boundary inside a word (``noun``: the
    syllable is one of :data:`_RG_NOUNS`)."""
    if not coda:
        return coda, onset
    first, second = _SPLIT.get(coda, ("", coda))
    if onset == "ㅇ":  # next syllable starts with a vowel
        if coda == "ㅇ":
            return coda, onset
        if second == "ㅎ":  # 좋아 [조아], 많아 [마나]
            return "", first or "ㅇ"
        if vowel == "ㅣ" and second in "ㄷㅌ":  # 굳이 [구지], 같이 [가치]
            second = "ㅈ" if second == "ㄷ" else "ㅊ"
        if first and second == "ㅅ":  # 넋이 [넉씨], 없어 [업써]
            second = "ㅆ"
        return first, second  # liaison: 음악 [으막], 읽어 [일거]
    if second == "ㅎ":
        if onset in _ASPIRATE:  # 놓고 [노코], 많다 [만타]
            return first, _ASPIRATE[onset]
        if onset == "ㅅ":  # 닿소 [다쏘]
            return first, "ㅆ"
        if onset == "ㄴ":  # 놓는 [논는], 않네 [안네]
            coda = first or "ㄴ"
    if coda in ("ㄳ", "ㅄ"):
        first, second = "", _NEUTRAL[coda]
    if onset == "ㅎ" and second in _WITH_H:  # 각하 [가카], 밝히다 [발키다]
        merged = _WITH_H[second]
        return first, ("ㅊ" if merged == "ㅌ" and vowel == "ㅣ" else merged)  # 굳히다 [구치다]
    tensing = coda in _STEM_CODAS
    c = "ㄹ" if coda == "ㄺ" and onset == "ㄱ" and not noun else _NEUTRAL[coda]  # 맑게 [말께]
    if onset == "ㄹ":
        if c == "ㄴ":  # 신라 [실라]
            c = "ㄹ"
        elif c != "ㄹ":  # 종로 [종노], 백로 [뱅노]
            onset = "ㄴ"
    elif onset == "ㄴ" and c == "ㄹ":  # 칼날 [칼랄]
        onset = "ㄹ"
    if onset in "ㄴㅁ" and c in _NASAL:  # 국물 [궁물]
        return _NASAL[c], onset
    if (tensing or c in _NASAL) and onset in _TENSE:  # 국밥 [국빱]
        onset = _TENSE[onset]
    return c, onset


def is_hangul_word(word: str) -> bool:
    """True when ``word`` (after NFC) is one or more Hangul syllables and nothing else."""
    word = unicodedata.normalize("NFC", word)
    return bool(word) and all(is_syllable(ch) for ch in word)


def pronounce(word: str) -> str:
    """The standard pronunciation of one word, in Hangul: ``"국물"`` -> ``"궁물"``.

    ``word`` is precomposed syllables or conjoining jamo; anything else is an error.
    """
    if not isinstance(word, str):
        raise HMMTypeError(f"word must be a str of Hangul syllables; got {type(word).__name__}")
    word = unicodedata.normalize("NFC", word)
    bad = [ch for ch in word if not is_syllable(ch)]
    if not word or bad:
        raise HMMValueError(f"word must be Hangul syllables only; got {word!r} (non-Hangul: {''.join(bad)!r})")
    syl = [list(decompose(ch)) for ch in word]
    for ch, a, b in zip(word, syl, syl[1:]):
        a[2], b[0] = _boundary(a[2], b[0], b[1], noun=ch in _RG_NOUNS)
    syl[-1][2] = _NEUTRAL[syl[-1][2]]
    for s in syl:
        if s[1] == "ㅢ" and s[0] != "ㅇ":  # 희망 [히망]
            s[1] = "ㅣ"
        elif s[1] == "ㅕ" and s[0] in "ㅈㅉㅊ":  # 가져 [가저]
            s[1] = "ㅓ"
    return "".join(compose(*s) for s in syl)


def g2p(word: str) -> Optional[tuple[str, ...]]:
    """Phones (:data:`PHONES`) of one word, or ``None`` when it is not all Hangul (an OOV).

    ``g2p("신라")`` -> ``("s", "i", "l", "l", "a")``.
    """
    if not isinstance(word, str) or not is_hangul_word(word):
        return None
    phones: list[str] = []
    coda = ""
    for ch in pronounce(word):
        onset, nucleus, coda_next = decompose(ch)
        if onset != "ㅇ":
            phones.append("l" if onset == "ㄹ" and coda == "ㄹ" else ONSET_PHONES[onset])
        phones.append(VOWEL_PHONES[nucleus])
        if coda_next:
            phones.append(CODA_PHONES[coda_next])
        coda = coda_next
    return tuple(phones)
