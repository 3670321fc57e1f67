"""Corpora for the command-line and distributed tests: the fixture speakers plus bad items."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

FIXTURES = Path(__file__).parent / "fixtures" / "folder"
BAD_KINDS = ("corrupt", "silent", "empty", "short")


def corpus_with_bad_items(root: Path, kinds: Sequence[str] = BAD_KINDS) -> Path:
    """``root`` holding the fixture speakers ``slt`` and ``awb`` (2 utterances each) and, under
    ``root/bad``, one item of each of ``kinds``: ``corrupt`` (not audio), ``silent`` (digital
    silence), ``empty`` (a blank transcript), ``short`` (25 ms of noise for a long sentence)."""
    shutil.copytree(FIXTURES / "slt", root / "slt")
    shutil.copytree(FIXTURES / "awb", root / "awb")
    bad = root / "bad"
    bad.mkdir()
    noise = lambda seed, n: 0.1 * np.random.default_rng(seed).standard_normal(n).astype(np.float32)  # noqa: E731
    writers = {
        "corrupt": lambda: ((bad / "corrupt.wav").write_bytes(b"RIFF this is not audio at all" * 3),
                            (bad / "corrupt.lab").write_text("hello world")),
        "silent": lambda: (sf.write(bad / "silent.wav", np.zeros(16000, dtype=np.float32), 16000),
                           (bad / "silent.lab").write_text("hello world")),
        "empty": lambda: (sf.write(bad / "empty.wav", noise(0, 16000), 16000), (bad / "empty.lab").write_text("   ")),
        "short": lambda: (sf.write(bad / "short.wav", noise(1, 400), 16000),
                          (bad / "short.lab").write_text("this transcript is far too long for a few milliseconds of audio")),
    }
    for kind in kinds:
        writers[kind]()
    return root
