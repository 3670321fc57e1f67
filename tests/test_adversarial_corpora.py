"""Malformed corpora drawn by hypothesis, written in each real layout in a temp dir.

DESIGN §5: every bad item is skipped and reported with its reason, every good item is kept,
nothing hangs. Each drawn corpus mixes good utterances with defects (corrupt, truncated,
empty or missing audio; empty, punctuation-only or non-UTF-8 transcripts; named pipes;
duplicate ids); the test knows which ids are good and which items each defect must be
reported under, and checks the loader against exactly that.
"""

from __future__ import annotations

import os
import signal
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from pytorch_hmm.speech import KSS, AudioTextFolder, LibriSpeech

RATE = 16000
DEFECTS = {
    "librispeech": ["ok", "garbage_audio", "empty_audio", "missing_audio", "empty_text", "punct_text", "bad_utf8", "duplicate"],
    "kss": ["ok", "garbage_audio", "truncated_wav", "empty_audio", "missing_audio", "empty_text", "punct_text",
            "bad_utf8", "duplicate", "few_columns"],
    "folder": ["ok", "garbage_audio", "truncated_wav", "empty_audio", "missing_audio", "no_text", "empty_text",
               "punct_text", "bad_utf8", "duplicate", "fifo"],
}
WORDS = ["HELLO WORLD", "GO DO YOU HEAR", "안녕 하세요", "세 시", "café au lait"]


@dataclass
class Planted:
    """What a drawn corpus must give: the good ids, and per defect the problem items expected."""

    good: set = field(default_factory=set)
    expected: list = field(default_factory=list)  # (defect, set of acceptable problem items)


def _wav_bytes(seconds: float = 0.1) -> bytes:
    path = Path(tempfile.mkstemp(suffix=".wav")[1])
    t = np.arange(int(seconds * RATE)) / RATE
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), RATE)
    data = path.read_bytes()
    path.unlink()
    return data


WAV = _wav_bytes()


def _flac_bytes() -> bytes:
    path = Path(tempfile.mkstemp(suffix=".flac")[1])
    sf.write(path, np.zeros(1600, dtype=np.float32) + 0.1, RATE)
    data = path.read_bytes()
    path.unlink()
    return data


FLAC = _flac_bytes()


def _audio(path: Path, defect: str, good: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if defect == "missing_audio":
        return
    data = {"garbage_audio": b"RIFF not really audio" * 4, "empty_audio": b"", "truncated_wav": good[: len(good) // 2]}
    path.write_bytes(data.get(defect, good))


def _text(defect: str, words: str) -> bytes:
    if defect == "empty_text":
        return b""
    if defect == "punct_text":
        return "... ?! --".encode()
    if defect == "bad_utf8":
        return words.encode() + b" \xff\xfe"
    return words.encode()


def build_librispeech(root: Path, defects: list) -> tuple:
    chapter = root / "LibriSpeech" / "dev-clean" / "84" / "121123"
    chapter.mkdir(parents=True)
    trans = chapter / "84-121123.trans.txt"
    plan, lines = Planted(), []
    for n, (defect, words) in enumerate(defects):
        uid = f"84-121123-{n:04d}"
        _audio(chapter / f"{uid}.flac", defect, FLAC)
        lines.append(uid.encode() + b" " + _text(defect, words))
        if defect in ("ok", "duplicate"):
            plan.good.add(uid)
        if defect == "bad_utf8":  # the line is lost, the audio then has no line
            plan.expected.append((defect, {f"{trans.name}:{len(lines)}"}))
            plan.expected.append((defect, {uid}))
        elif defect == "duplicate":
            lines.append(uid.encode() + b" " + words.encode())
            plan.expected.append((defect, {uid}))
        elif defect != "ok":
            plan.expected.append((defect, {uid}))
    trans.write_bytes(b"\n".join(lines) + b"\n")
    return LibriSpeech(root, "dev-clean"), plan


def build_kss(root: Path, defects: list) -> tuple:
    plan, lines = Planted(), []
    for n, (defect, words) in enumerate(defects):
        uid = f"1_{n:04d}"
        _audio(root / "kss" / "1" / f"{uid}.wav", defect, WAV)
        text = _text(defect, words)
        decomposed = unicodedata.normalize("NFD", text.decode("utf-8", "replace")).encode()
        line = b"|".join([f"1/{uid}.wav".encode(), text, text, decomposed, b"0.1", b""])
        if defect == "few_columns":
            line = f"1/{uid}.wav|{words}".encode()
        lines.append(line)
        if defect in ("ok", "duplicate"):
            plan.good.add(uid)
        if defect in ("bad_utf8", "few_columns"):  # KSS walks its transcript: the line is the item
            plan.expected.append((defect, {f"transcript.v.1.4.txt:{len(lines)}"}))
        elif defect == "duplicate":
            lines.append(line)
            plan.expected.append((defect, {uid}))
        elif defect != "ok":
            plan.expected.append((defect, {uid}))
    (root / "transcript.v.1.4.txt").write_bytes(b"\n".join(lines) + b"\n")
    return KSS(root), plan


def build_folder(root: Path, defects: list) -> tuple:
    plan = Planted()
    for n, (defect, words) in enumerate(defects):
        speaker = root / ("alice" if n % 2 else "bob")
        uid = f"u{n}"
        _audio(speaker / f"{uid}.wav", defect, WAV)
        lab = speaker / f"{uid}.lab"
        if defect == "fifo":
            speaker.mkdir(parents=True, exist_ok=True)
            os.mkfifo(lab)
        elif defect != "no_text":
            lab.write_bytes(_text(defect, words))
        if defect in ("ok", "duplicate"):
            plan.good.add(uid)
        if defect == "missing_audio":  # the folder walks audio files: the lone transcript is the item
            plan.expected.append((defect, {str(lab)}))
        elif defect == "duplicate":
            other = root / "carol" / f"{uid}.wav"
            _audio(other, "ok", WAV)
            other.with_suffix(".lab").write_bytes(words.encode())
            plan.expected.append((defect, {uid}))
        elif defect != "ok":
            plan.expected.append((defect, {uid}))
    return AudioTextFolder(root), plan


BUILDERS = {"librispeech": build_librispeech, "kss": build_kss, "folder": build_folder}


class _Hang(Exception):
    pass


def _alarm(*_):
    raise _Hang()


@pytest.mark.parametrize("layout", sorted(BUILDERS))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_good_utterance_is_kept_and_every_bad_one_reported(layout, data):
    defects = data.draw(st.lists(st.tuples(st.sampled_from(DEFECTS[layout]), st.sampled_from(WORDS)), min_size=1, max_size=6))
    with tempfile.TemporaryDirectory() as tmp:
        corpus, plan = BUILDERS[layout](Path(tmp) / "corpus", defects)
        previous = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(30)
        try:
            ids = [u.id for u in corpus]
        except _Hang:
            pytest.fail(f"the {layout} loader hung on {defects}")
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
        items = [p.item for p in corpus.problems]
        assert sorted(ids) == sorted(plan.good), f"kept {ids}, expected {sorted(plan.good)}; problems {corpus.problems}"
        assert len(ids) == len(set(ids)), f"an id was yielded twice: {ids}"
        for defect, acceptable in plan.expected:
            assert acceptable & set(items), f"{defect} not reported under {acceptable}; problems {corpus.problems}"
        wanted = set().union(*[a for _, a in plan.expected]) if plan.expected else set()
        stray = [p for p in corpus.problems if p.item not in wanted]
        assert not stray, f"problems nobody planted: {stray}"
        assert all(p.reason for p in corpus.problems)
