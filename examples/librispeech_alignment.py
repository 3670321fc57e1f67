"""Forced alignment of LibriSpeech: flat-start training, TextGrids, phone-duration statistics, plots.

Run on the five LibriVox utterances bundled as a test fixture (about 10 s)::

    python examples/librispeech_alignment.py

and on a real LibriSpeech subset (download and unpack ``dev-clean.tar.gz`` from
https://www.openslr.org/12 first; ROOT is the folder holding ``LibriSpeech/`` or the subset folders)::

    python examples/librispeech_alignment.py /data/LibriSpeech --subset dev-clean --out dev-clean_aligned

What it does, with the library's corpus aligner (:mod:`pytorch_hmm.aligner`, the same steps as
``pytorch-hmm align --train``): MFCC features with per-speaker CMVN, CMUdict transcriptions, a
monophone GMM-HMM trained from a flat start, Viterbi alignment, one Praat TextGrid per utterance
under ``OUT/<speaker>/<id>.TextGrid`` (MFA's layout). Then it prints the speaking rate and the
mean phone duration per phone class, and saves ``OUT/<id>.png`` (waveform, spectrogram, word
and phone tiers of the first utterance) and ``OUT/phone_durations.png`` (a histogram).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from pytorch_hmm import aligner
from pytorch_hmm.alignment import Segment, TrainingSchedule
from pytorch_hmm.errors import HMMValueError
from pytorch_hmm.plotting import plot_utterance

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "LibriSpeech"
SILENCES = ("sil", "spn")  # the lexicon's silence and OOV phones: not speech sounds

# ARPAbet (CMUdict, stress folded) by manner of articulation
PHONE_CLASSES = {
    "vowel": "AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW",
    "stop": "B D G K P T",
    "affricate": "CH JH",
    "fricative": "DH F HH S SH TH V Z ZH",
    "nasal": "M N NG",
    "liquid": "L R",
    "glide": "W Y",
    "silence": "sil",
    "spoken noise (OOV)": "spn",
}
CLASS_OF = {phone: name for name, phones in PHONE_CLASSES.items() for phone in phones.split()}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", type=Path, default=None,
                        help="LibriSpeech folder (default: the bundled test fixture)")
    parser.add_argument("--subset", default=None,
                        help="subset folder, e.g. dev-clean (default: test-clean for the fixture, else the only one under ROOT)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary folder)")
    parser.add_argument("--iterations", type=int, default=TrainingSchedule.iterations,
                        help="Baum-Welch iterations at one Gaussian per state (default %(default)s)")
    parser.add_argument("--splits", type=int, default=TrainingSchedule.splits,
                        help="mixture splits, each followed by more iterations (default %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.splits < 0:
        parser.error("--iterations must be at least 1 and --splits at least 0")
    if args.root is None:
        args.root, args.subset = FIXTURES, args.subset or "test-clean"
    return args


def phone_durations(tiers: Dict[str, dict]) -> Dict[str, List[float]]:
    """Phone -> its durations in seconds over every aligned utterance."""
    out: Dict[str, List[float]] = defaultdict(list)
    for utterance in tiers.values():
        for seg in utterance["phones"]:
            out[seg.unit].append(seg.end - seg.start)
    return out


def speaking_rate(tiers: Dict[str, dict]) -> tuple:
    """(phones, seconds of speech, phones per second), silences and OOV phones left out."""
    speech: List[Segment] = [s for t in tiers.values() for s in t["phones"] if s.unit not in SILENCES]
    seconds = sum(s.end - s.start for s in speech)
    return len(speech), seconds, len(speech) / seconds if seconds else 0.0


def print_statistics(report: aligner.RunReport, tiers: Dict[str, dict]) -> None:
    phones, seconds, rate = speaking_rate(tiers)
    print(f"utterances: {len(report.aligned)} aligned, {len(report.skipped)} skipped")
    print(f"speaking rate: {rate:.1f} phones/s ({phones} phones in {seconds:.1f} s of speech, silences excluded)")
    by_class: Dict[str, List[float]] = defaultdict(list)
    for phone, durations in phone_durations(tiers).items():
        by_class[CLASS_OF.get(phone, "other")] += durations
    print("mean phone duration by class:")
    for name in [*PHONE_CLASSES, "other"]:
        d = by_class.get(name)
        if d:
            sd = statistics.stdev(d) if len(d) > 1 else 0.0
            print(f"  {name:<20} {len(d):5d} phones  mean {1000 * statistics.mean(d):6.1f} ms  sd {1000 * sd:6.1f} ms")
    print(report.summary())


def plot_durations(tiers: Dict[str, dict], path: Path) -> None:
    """Histogram of phone durations (10 ms bins: one frame each), vowels and consonants apart."""
    from matplotlib.figure import Figure

    durations = phone_durations(tiers)
    vowels = [1000 * d for p, ds in durations.items() if CLASS_OF.get(p) == "vowel" for d in ds]
    consonants = [1000 * d for p, ds in durations.items() if CLASS_OF.get(p) not in ("vowel", "silence", "spoken noise (OOV)")
                  for d in ds]
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    top = max(vowels + consonants, default=100)
    bins = [10 * i - 5 for i in range(int(top // 10) + 2)]  # centred on whole frames
    ax.hist([vowels, consonants], bins=bins, stacked=True, label=["vowels", "consonants"])
    ax.set_xlabel("phone duration (ms)")
    ax.set_ylabel("phones")
    ax.set_title(f"phone durations of {len(tiers)} aligned utterances")
    ax.legend()
    fig.savefig(path, dpi=100)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    progress = not args.quiet
    corpus = aligner.open_corpus(args.root, "librispeech", subset=args.subset)
    lexicon = aligner.lexicon_from(None, "en")
    extractor = aligner.default_extractor()
    report = aligner.RunReport()
    prepared = aligner.prepare(corpus, lexicon, extractor, report, progress=progress)
    if not prepared:
        print(report.summary())
        print("no usable utterance to align")
        return 1
    out = args.out or Path(tempfile.mkdtemp(prefix="librispeech_alignment_"))
    schedule = TrainingSchedule(args.iterations, args.splits)
    model = aligner.train(prepared, lexicon, report, schedule=schedule, progress=progress)
    tiers = aligner.align(model, prepared, out, report, progress=progress)
    print(f"output: {out}")
    print_statistics(report, tiers)
    if not tiers:
        print("no utterance was aligned")
        return 1

    first = next(p for p in prepared if p.utterance.id in tiers)
    utt = first.utterance
    plot_path = out / f"{utt.id}.png"
    plot_utterance(utt, tiers[utt.id], plot_path, sample_rate=extractor.sample_rate, max_seconds=20.0)
    plot_durations(tiers, out / "phone_durations.png")
    textgrids = sorted(out.glob("*/*.TextGrid"))
    print(f"wrote {len(textgrids)} TextGrids, {plot_path.name} and phone_durations.png to {out}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except HMMValueError as err:  # a wrong folder or subset: the message says what was expected
        raise SystemExit(f"error: {err}")
