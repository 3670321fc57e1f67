"""Regenerate the speech corpora committed under ``tests/fixtures/`` (about 1 MB in all).

    python scripts/make_fixtures.py [--out tests/fixtures] [--librivox DIR]

Three small corpora, one per layout the loaders read (sources and licences: LICENSES.md there):

- ``LibriSpeech/test-clean/9001/1/``: the five LibriVox utterances of Debian's
  ``pocketsphinx-testdata`` (``apt-get install pocketsphinx-testdata``; the same files are in
  the ``pocketsphinx`` 5.1.1 source archive on PyPI), re-encoded as 16 kHz FLAC with an
  upper-case ``9001-1.trans.txt``. Speaker 9001 and chapter 1 are invented: no LibriSpeech
  speaker has that number.
- ``KSS/``: four Korean sentences written for this project, spoken by espeak-ng (``ko``) at
  22.05 kHz, in KSS's layout (``kss/1/1_0000.wav``, ``transcript.v.1.4.txt``). One sentence has
  a digit in its ``original`` column and the spelled-out number in ``expanded``, like KSS.
- ``folder/``: two flite voices (``slt``, ``awb``) reading two English sentences each, in the
  Montreal Forced Aligner layout (``<speaker>/<id>.wav`` + ``.lab``).

``KSS/alignments/`` and ``folder/alignments/`` hold each utterance's true phone intervals
(``start<TAB>end<TAB>phone`` seconds) from the synthesiser. Needs flite, libespeak-ng
(``pip install espeakng-loader`` or ``apt-get install espeak-ng``) and the LibriVox wavs; any
corpus whose source is missing is skipped with a message, the others are still written.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import soundfile as sf

from pytorch_hmm.speech import build_corpus
from pytorch_hmm.speech.synthetic import espeak_available, flite_available

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
LIBRI_SPEAKER, LIBRI_CHAPTER = "9001", "1"

# (original, expanded): KSS spells numbers out in its "expanded" column
KOREAN = [
    ("안녕하세요.", "안녕하세요."),
    ("학교에 갑니다.", "학교에 갑니다."),
    ("사과 3개를 샀어요.", "사과 세 개를 샀어요."),
    ("꽃이 예쁘게 피었습니다.", "꽃이 예쁘게 피었습니다."),
]
ENGLISH = {
    "slt": ["The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background."],
    "awb": ["It is easy to tell the depth of a well.", "These days a chicken leg is a rare dish."],
}


def librispeech(out: Path, librivox: Path) -> None:
    """The LibriVox test utterances as LibriSpeech ``test-clean`` FLAC plus ``trans.txt``."""
    transcription = librivox / "transcription"
    if not transcription.is_file():
        print(f"skipped LibriSpeech: no {transcription} (apt-get install pocketsphinx-testdata)", file=sys.stderr)
        return
    folder = out / "LibriSpeech" / "test-clean" / LIBRI_SPEAKER / LIBRI_CHAPTER
    shutil.rmtree(out / "LibriSpeech", ignore_errors=True)
    folder.mkdir(parents=True)
    lines = []
    for n, line in enumerate(transcription.read_text().splitlines()):
        match = re.fullmatch(r"<s> (.*) </s> \((\S+)\)", line.strip())
        if match is None:
            raise SystemExit(f"{transcription}: unexpected line {line!r}")
        text, name = match.groups()
        audio, rate = sf.read(str(librivox / f"{name}.wav"), dtype="int16")
        utt_id = f"{LIBRI_SPEAKER}-{LIBRI_CHAPTER}-{n:04d}"
        sf.write(str(folder / f"{utt_id}.flac"), audio, rate, format="FLAC", subtype="PCM_16")
        lines.append(f"{utt_id} {text.upper()}\n")
    (folder / f"{LIBRI_SPEAKER}-{LIBRI_CHAPTER}.trans.txt").write_text("".join(lines))
    print(f"wrote {len(lines)} LibriSpeech utterances under {folder}")


def kss(out: Path) -> None:
    """Korean espeak-ng speech in the KSS layout; the ``original`` column keeps the digits."""
    if not espeak_available():
        print("skipped KSS: libespeak-ng cannot be loaded (pip install espeakng-loader)", file=sys.stderr)
        return
    root = out / "KSS"
    shutil.rmtree(root, ignore_errors=True)
    corpus = build_corpus(root, [expanded for _, expanded in KOREAN], layout="kss", engine="espeak")
    transcript = root / "transcript.v.1.4.txt"
    lines = transcript.read_text(encoding="utf-8").splitlines()
    for i, (original, _) in enumerate(KOREAN):
        columns = lines[i].split("|")
        columns[1] = original
        lines[i] = "|".join(columns)
    transcript.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    print(f"wrote {len(corpus)} KSS utterances under {root}")


def folder(out: Path) -> None:
    """Two flite voices in the MFA folder layout, with true phone intervals."""
    if not flite_available():
        print("skipped folder: flite is not installed (apt-get install flite)", file=sys.stderr)
        return
    root = out / "folder"
    shutil.rmtree(root, ignore_errors=True)
    total = 0
    for voice, texts in ENGLISH.items():
        total += len(build_corpus(root, texts, layout="folder", engine="flite", voice=voice, speaker=voice))
    print(f"wrote {total} folder utterances under {root}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "fixtures")
    parser.add_argument("--librivox", type=Path, default=LIBRIVOX, help="folder of the LibriVox wavs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    librispeech(args.out, args.librivox)
    kss(args.out)
    folder(args.out)


if __name__ == "__main__":
    main()
