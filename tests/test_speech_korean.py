"""Korean: Hangul syllable arithmetic against Unicode's own data, G2P rules, OOV handling."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytorch_hmm.errors import HMMValueError
from pytorch_hmm.speech import korean
from pytorch_hmm.speech.korean import (
    CODAS, NUCLEI, ONSETS, PHONES, compose, decompose, from_jamo, g2p, pronounce, to_jamo,
)
from pytorch_hmm.speech.lexicon import Lexicon, Pronunciation

ALL = "".join(chr(c) for c in range(0xAC00, 0xD7A4))


# ----------------------------------------------------------------------------- syllables and jamo
def test_all_syllables_decompose_and_recompose():
    assert len(ALL) == 11172 == korean.NUM_SYLLABLES
    seen = set()
    for ch in ALL:
        parts = decompose(ch)
        assert compose(*parts) == ch
        seen.add(parts)
    assert len(seen) == 11172 == len(ONSETS) * len(NUCLEI) * len(CODAS)


def test_jamo_matches_unicode_nfd_and_nfc():
    decomposed = to_jamo(ALL)
    assert decomposed == unicodedata.normalize("NFD", ALL)
    assert from_jamo(decomposed) == ALL
    assert unicodedata.normalize("NFC", decomposed) == ALL


def test_letters_match_unicode_names():
    # the letters of a syllable are the compatibility jamo named like its conjoining jamo
    for ch in ALL[::97]:
        letters = [x for x in decompose(ch) if x]
        conjoining = to_jamo(ch)
        assert [unicodedata.name(x).split()[-1] for x in letters] == [
            unicodedata.name(x).split()[-1] for x in conjoining
        ]
    assert unicodedata.name(compose("ㄷ", "ㅏ", "ㄺ")) == "HANGUL SYLLABLE DALG"
    assert decompose("각") == ("ㄱ", "ㅏ", "ㄱ") and decompose("아") == ("ㅇ", "ㅏ", "")


_PIECES = st.sampled_from(
    ["\u1100", "\u1112", "\u1113", "\u1161", "\u1175", "\u1176", "\u11a8", "\u11c2", "\u11c3",
     "가", "각", "힣", "a", " ", "3", "ㄱ", "ㅏ"]
)


@settings(max_examples=200)
@given(st.lists(_PIECES, max_size=12))
def test_from_jamo_equals_nfc_on_mixed_text(pieces):
    text = "".join(pieces)
    assert from_jamo(text) == unicodedata.normalize("NFC", text)
    assert to_jamo(from_jamo(text)) == unicodedata.normalize("NFD", text)


def test_decompose_error():
    with pytest.raises(HMMValueError, match=r"syllable must be one Hangul syllable \(U\+AC00..U\+D7A3\); got 'ㄱ'"):
        decompose("ㄱ")


def test_compose_error():
    with pytest.raises(HMMValueError, match="coda must be one of .*; got 'ㄸ'"):
        compose("ㄱ", "ㅏ", "ㄸ")


# ----------------------------------------------------------------------------- pronunciation rules
# (word, standard pronunciation) as given in the standard pronunciation rules (표준 발음법)
RULES = {
    "silent onset and liaison": [("음악", "으막"), ("옷이", "오시"), ("있어", "이써"), ("밖에", "바께"), ("강아지", "강아지")],
    "double coda liaison": [("읽어", "일거"), ("앉아", "안자"), ("닭을", "달글"), ("젊어", "절머"), ("핥아", "할타"),
                            ("읊어", "을퍼"), ("넋이", "넉씨"), ("없어", "업써"), ("값을", "갑쓸")],
    "h deletion": [("좋아", "조아"), ("놓아", "노아"), ("많아", "마나"), ("싫어", "시러")],
    "coda neutralisation": [("닭", "닥"), ("부엌", "부억"), ("꽃", "꼳"), ("밖", "박"), ("앞", "압"), ("값", "갑"),
                            ("삶", "삼"), ("여덟", "여덜"), ("넋", "넉"), ("흙", "흑"), ("맑게", "말께"),
                            ("닭고기", "닥꼬기"), ("흙과", "흑꽈"), ("읽고", "일꼬"), ("닭이", "달기")],
    "palatalisation": [("굳이", "구지"), ("같이", "가치"), ("밭이", "바치"), ("핥이다", "할치다"), ("굳히다", "구치다")],
    "aspiration": [("놓고", "노코"), ("좋던", "조턴"), ("많고", "만코"), ("싫다", "실타"), ("각하", "가카"),
                   ("맏형", "마텽"), ("좁히다", "조피다"), ("앉히다", "안치다"), ("밝히다", "발키다"),
                   ("넓히다", "널피다"), ("꽂히다", "꼬치다"), ("닿소", "다쏘"), ("많소", "만쏘")],
    "h before n": [("놓는", "논는"), ("않네", "안네"), ("뚫는", "뚤른")],
    "nasalisation": [("국물", "궁물"), ("닫는", "단는"), ("있는", "인는"), ("밥물", "밤물"), ("앞마당", "암마당"),
                     ("흙만", "흥만"), ("없는", "엄는"), ("감사합니다", "감사함니다")],
    "l nasalisation": [("담력", "담녁"), ("종로", "종노"), ("백로", "뱅노"), ("협력", "혐녁")],
    "lateralisation": [("신라", "실라"), ("난로", "날로"), ("칼날", "칼랄"), ("설날", "설랄")],
    "tensification": [("국밥", "국빱"), ("학교", "학꾜"), ("옷고름", "옫꼬름"), ("있던", "읻떤"), ("덮개", "덥깨"),
                      ("닭장", "닥짱"), ("읽다", "익따"), ("없다", "업따"), ("넓다", "널따"), ("앉다", "안따"),
                      ("젊다", "점따"), ("있습니다", "읻씀니다")],
    "vowels": [("희망", "히망"), ("무늬", "무니"), ("띄어", "띠어"), ("의사", "의사"), ("가져", "가저")],
}
CASES = [pytest.param(w, p, id=f"{rule}:{w}") for rule, pairs in RULES.items() for w, p in pairs]


@pytest.mark.parametrize("word, expected", CASES)
def test_standard_pronunciation(word, expected):
    assert pronounce(word) == expected
    assert pronounce(to_jamo(word)) == expected  # KSS's decomposed form gives the same


@pytest.mark.parametrize(
    "word, phones",
    [
        ("국물", "g u ng m u l"),
        ("신라", "s i l l a"),  # onset ㄹ after a ㄹ coda is lateral
        ("알아", "a r a"),
        ("음악", "eu m a k"),
        ("좋아", "j o a"),
        ("닭", "d a k"),
        ("읽어", "i l g eo"),
        ("꽃", "kk o t"),
        ("값", "g a p"),
        ("있어", "i ss eo"),
        ("차카타파", "ch a kh a th a ph a"),
        ("빵떡", "pp a ng tt eo k"),
        ("의사", "ui s a"),
        ("희망", "h i m a ng"),
        ("왜죄쥐", "wae j oe j wi"),
        ("얘예요유", "yae ye yo yu"),
    ],
)
def test_g2p_phones(word, phones):
    assert g2p(word) == tuple(phones.split())


def test_phone_inventory():
    assert len(PHONES) == len(set(PHONES)) == 44
    assert all(p.isascii() and p.isalpha() and p.islower() for p in PHONES)
    assert set(korean.VOWEL_PHONES) == set(NUCLEI) and len(set(korean.VOWEL_PHONES.values())) == 21


_WORDS = st.text(st.sampled_from(ALL[::13] + "각닭값앉많읽없좋놓신칼국밥의희져"), min_size=1, max_size=5)


@settings(max_examples=150)
@given(_WORDS)
def test_pronunciation_is_a_fixed_point(word):
    surface = pronounce(word)
    assert len(surface) == len(word)
    # every coda is one of the 7 representative sounds, and the rules leave a pronunciation as it is
    assert all(decompose(ch)[2] in ("", "ㄱ", "ㄴ", "ㄷ", "ㄹ", "ㅁ", "ㅂ", "ㅇ") for ch in surface)
    assert pronounce(surface) == surface
    assert set(g2p(word)) <= set(PHONES)


# ----------------------------------------------------------------------------- non-Hangul words
@pytest.mark.parametrize("word", ["3시", "TV를", "ㅋㅋ", "abc", "", "가-나"])
def test_g2p_non_hangul_is_none(word):
    assert g2p(word) is None


def test_pronounce_non_hangul():
    with pytest.raises(HMMValueError, match=r"word must be Hangul syllables only; got '3시' \(non-Hangul: '3'\)"):
        pronounce("3시")


def test_pronounce_not_a_string():
    with pytest.raises(HMMValueError, match="word must be a str of Hangul syllables; got int"):
        pronounce(3)


def test_korean_lexicon_transcribes_and_reports_oov():
    lex = Lexicon.korean()
    tr = lex.transcribe("국물이 좋아요. 3시에 TV를 봤어요!", utterance_id="1_0001")
    assert tr.words == ("국물이", "좋아요", "3시에", "tv를", "봤어요")
    assert tr.oov == ("3시에", "tv를")
    assert tr.pronunciations[2] == (Pronunciation(("spn",)),)
    assert tr.phones[:11] == ("g", "u", "ng", "m", "u", "r", "i", "j", "o", "a", "yo")
    assert tr.phones[11:] == ("spn", "spn", "b", "wa", "ss", "eo", "yo")
    assert lex.oov_report.counts == {"3시에": 1, "tv를": 1}
    assert lex.oov_report["tv를"].utterance_ids == ("1_0001",)
    # the decomposed (conjoining jamo) transcript of KSS gives the same words
    assert Lexicon.korean().transcribe(to_jamo("국물이 좋아요")).words == ("국물이", "좋아요")
    assert set(lex.phones) == set(PHONES) | {"spn"}
    assert "국물" in lex and "TV" not in lex


def test_korean_lexicon_entries_win_over_g2p():
    lex = Lexicon.korean({"밟다": [["b", "a", "p", "tt", "a"]]})
    assert pronounce("밟다") == "발따"  # the rule gives the regular form; the exception comes from the entry
    assert lex["밟다"] == (Pronunciation(("b", "a", "p", "tt", "a")),)
    assert lex["신라"] == (Pronunciation(("s", "i", "l", "l", "a")),)
