"""Regenerate the sample corpus bundled with the package (``src/pytorch_hmm/data/sample/``).

    python scripts/make_sample_corpus.py [--out src/pytorch_hmm/data/sample]

``pytorch-hmm demo`` trains an aligner on this corpus from a flat start, aligns it and scores
the result against the true timings. Three flite voices (``slt``, ``rms``, ``awb``; ``apt-get
install flite``) read eight sentences each, written for this sample (not the IEEE "Harvard"
sentences, not the texts of the tests or of ``benchmarks/bench_alignment.py``):

- ``<voice>/<voice>_<n>.flac`` (16 kHz, 16-bit FLAC) and ``.lab`` (the text): the Montreal
  Forced Aligner's layout;
- ``reference/<voice>/<voice>_<n>.TextGrid``: the synthesiser's phone timings as a ``phones``
  tier (flite's ``pau`` written as ``sil``).

flite's voices and their output are free to use and redistribute (flite's COPYING: "free
software ... without restriction"); see ``LICENSE.md`` beside the data.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import soundfile as sf

from pytorch_hmm.alignment import Segment, write_textgrid
from pytorch_hmm.speech import build_corpus

VOICES = ("slt", "rms", "awb")
TEXTS = [
    "The old lighthouse keeper counted every ship that passed the rocks.",
    "Fresh bread and warm soup waited for us after the long walk.",
    "She painted the garden fence a bright shade of yellow.",
    "A sudden gust of wind carried the letters across the square.",
    "The children built a tall tower out of wooden blocks.",
    "We missed the last train and slept at a small station.",
    "His grandfather kept bees behind the stone barn.",
    "Thunder rolled over the valley long before the rain arrived.",
]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "src" / "pytorch_hmm" / "data" / "sample")
    args = parser.parse_args(argv)
    out: Path = args.out
    for voice in VOICES:
        shutil.rmtree(out / voice, ignore_errors=True)
    shutil.rmtree(out / "reference", ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        for voice in VOICES:
            corpus = build_corpus(Path(tmp) / voice, TEXTS, engine="flite", voice=voice, speaker=voice, progress=False)
            for utt in corpus:
                folder = out / voice
                folder.mkdir(parents=True, exist_ok=True)
                audio, rate = sf.read(utt.audio_path, dtype="int16")
                sf.write(folder / f"{utt.id}.flac", audio, rate, subtype="PCM_16")
                (folder / f"{utt.id}.lab").write_text(utt.text + "\n", encoding="utf-8")
                phones = [Segment("sil" if i.phone in ("pau", "sil") else i.phone, i.start, i.end) for i in utt.intervals]
                ref = out / "reference" / voice
                ref.mkdir(parents=True, exist_ok=True)
                write_textgrid(ref / f"{utt.id}.TextGrid", {"phones": phones}, utt.duration)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
