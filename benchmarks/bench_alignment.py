"""Forced alignment accuracy and speed: pytorch_hmm's flat-start aligner against pocketsphinx.

A flite corpus (``--voices`` × ``--sentences``, texts written for this benchmark: not the IEEE
"Harvard" sentences, which stay reserved for outside evaluation, and not the texts the tests
or the calibration used) is built with exact phone timings. Then, in this one process:

* ours: ``pytorch_hmm.aligner`` (MFCC + deltas, speaker CMVN, CMUdict with stress folded,
  monophone GMM-HMM from a flat start, default schedule), every stage timed;
* the same model aligning the corpus again (alignment only, and features + alignment), for the
  "aligning with a trained model" speed, and alignment only beside one busy process;
* pocketsphinx 5 (its bundled US English model; ``set_align_text`` then phone alignment).

Both are scored against the true timings with ``pytorch_hmm.metrics``: label-aware boundary
accuracy within 10/20/50 ms and the mean absolute boundary error, pooled over the corpus.

Run: ``python benchmarks/bench_alignment.py [--quick] [--markdown PATH] [--no-pocketsphinx]``
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit_report, machine_info, other_cpu_load, with_busy  # noqa: E402

from pytorch_hmm import aligner  # noqa: E402
from pytorch_hmm.alignment import Segment  # noqa: E402
from pytorch_hmm.metrics import boundary_accuracy, boundary_mae  # noqa: E402
from pytorch_hmm.speech import Utterance  # noqa: E402
from pytorch_hmm.speech.synthetic import build_corpus  # noqa: E402

# written for this benchmark only (see the module docstring)
TEXTS = [
    "The baker opened his shop before the sun came up.",
    "A gentle breeze moved the curtains in the guest room.",
    "Most of the students finished the exam in an hour.",
    "The old car made a strange noise on the hill.",
    "We found a quiet table near the back of the cafe.",
    "Her sister plays the violin in the city orchestra.",
    "The farmer counted his sheep twice before dinner.",
    "Snow covered the mountains for most of the year.",
    "He carried the wooden chair up to the attic.",
    "The train stopped briefly at a tiny station.",
    "Our neighbors are building a fence around the yard.",
    "The letter arrived three days after the party.",
    "A loud knock on the door woke the whole family.",
    "She spent the afternoon reading in the garden.",
    "The engineer checked every bolt on the bridge.",
    "They shared a large pizza after the football match.",
    "The lamp on the desk flickered and then went out.",
    "My friend told me a funny story about his cat.",
    "The shop sells fresh fish every Friday morning.",
    "A thin layer of dust covered the piano keys.",
    "The nurse smiled and handed him a glass of water.",
    "We watched the boats sail slowly out of the bay.",
    "The painter mixed yellow and blue to make green.",
    "His phone rang twice during the long meeting.",
    "The forest path was muddy after the storm.",
    "She wrapped the present in bright red paper.",
    "The clock in the hall struck midnight at last.",
    "Two young deer crossed the road in front of us.",
    "The chef tasted the sauce and added some garlic.",
    "Every window in the old school was open today.",
]


def _pocketsphinx_align(utts, text_of):
    """Phone segments (seconds) per utterance from pocketsphinx's forced alignment, and the time."""
    import soundfile as sf
    from pocketsphinx import Decoder

    decoder = Decoder(lm=None, loglevel="FATAL", bestpath=False)
    out, failed = {}, []
    started = time.perf_counter()
    for u in utts:
        audio, rate = sf.read(str(u.audio_path), dtype="int16")
        raw = audio.tobytes()
        try:
            decoder.set_align_text(text_of(u))
            decoder.start_utt()
            decoder.process_raw(raw, no_search=False, full_utt=True)
            decoder.end_utt()
            decoder.set_alignment()
            decoder.start_utt()
            decoder.process_raw(raw, no_search=False, full_utt=True)
            decoder.end_utt()
        except RuntimeError:  # no alignment found: counted, left out of the scores
            failed.append(u.id)
            continue
        frame = 0.01
        phones = []
        for word in decoder.get_alignment():
            for phone in word:
                name = "sil" if phone.name in ("SIL", "+SPN+", "+NSN+") else phone.name
                phones.append(Segment(name, phone.start * frame, (phone.start + phone.duration) * frame))
        out[u.id] = phones
    return out, time.perf_counter() - started, failed


def _pocketsphinx_words(utts):
    """Word segments (seconds) from pocketsphinx's forced alignment of real speech (16 kHz)."""
    import soundfile as sf
    from pocketsphinx import Decoder

    decoder = Decoder(lm=None, loglevel="FATAL", bestpath=False)
    out = {}
    for u in utts:
        audio, rate = sf.read(str(u.audio_path), dtype="int16")
        raw = audio.tobytes()
        decoder.set_align_text(u.text.lower())
        decoder.start_utt()
        decoder.process_raw(raw, no_search=False, full_utt=True)
        decoder.end_utt()
        out[u.id] = [Segment(s.word.split("(")[0], s.start_frame * 0.01, (s.end_frame + 1) * 0.01) for s in decoder.seg()
                     if not s.word.startswith(("<", "["))]
    return out


def _real_speech(prepared_synthetic, lexicon, extractor):
    """The five LibriVox utterances of the LibriSpeech fixture: our words against pocketsphinx's."""
    from pytorch_hmm.speech import LibriSpeech

    root = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
    utts = LibriSpeech(root, "test-clean").utterances()
    report = aligner.RunReport()
    real = aligner.prepare(utts, lexicon, extractor, report, progress=False)
    model = aligner.train(list(prepared_synthetic) + real, lexicon, report, progress=False)
    ours = aligner.align(model, real, None, report, progress=False)
    ps = _pocketsphinx_words(utts)
    ids = [u.id for u in utts if u.id in ours and ps.get(u.id)]
    ref, hyp = [ps[i] for i in ids], [ours[i]["words"] for i in ids]
    return boundary_accuracy(ref, hyp, (0.02, 0.05, 0.1)), boundary_mae(ref, hyp), len(ids), sum(p.duration for p in real)


def _score(reference, hypothesis):
    ids = [i for i in reference if i in hypothesis]
    ref = [reference[i] for i in ids]
    hyp = [hypothesis[i] for i in ids]
    acc = boundary_accuracy(ref, hyp, (0.01, 0.02, 0.05))
    return acc, boundary_mae(ref, hyp), len(ids)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", default="slt,awb,rms,kal16")
    parser.add_argument("--sentences", type=int, default=len(TEXTS))
    parser.add_argument("--quick", action="store_true", help="2 voices x 10 sentences (smoke test)")
    parser.add_argument("--no-pocketsphinx", action="store_true")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    voices = args.voices.split(",")[: 2 if args.quick else None]
    texts = TEXTS[: 10 if args.quick else args.sentences]
    load = other_cpu_load()
    with tempfile.TemporaryDirectory(prefix="bench_alignment_") as tmp:
        root = Path(tmp)
        synth = []
        for voice in voices:
            synth += list(build_corpus(root / voice, texts, engine="flite", voice=voice, speaker=voice, progress=False))
        utts = [Utterance(u.id, u.speaker, u.audio_path, u.text, u.duration) for u in synth]
        reference = {u.id: [Segment(i.phone, i.start, i.end) for i in u.intervals] for u in synth}
        audio_seconds = sum(u.duration for u in synth)

        report = aligner.RunReport()
        lexicon = aligner.lexicon_from(None)
        extractor = aligner.default_extractor()
        prepared = aligner.prepare(utts, lexicon, extractor, report, progress=False)
        model = aligner.train(prepared, lexicon, report, progress=False)
        ours = aligner.align(model, prepared, None, report, progress=False)
        stages = dict(report.seconds)

        # aligning with the trained model: alignment alone, and features + alignment (medians of 5)
        totals, onlys = [], []
        for _ in range(5):
            again = aligner.RunReport()
            t0 = time.perf_counter()
            prepared2 = aligner.prepare(utts, lexicon, extractor, again, progress=False)
            aligner.align(model, prepared2, None, again, progress=False)
            totals.append(time.perf_counter() - t0)
            onlys.append(again.seconds["align"])
        align_total, align_only = float(np.median(totals)), float(np.median(onlys))

        def align_seconds():
            again = aligner.RunReport()
            aligner.align(model, prepared, None, again, progress=False)
            return again.seconds["align"]

        # the same beside one busy process (the machine's other core taken), median of 5
        align_loaded = with_busy(1, lambda: float(np.median([align_seconds() for _ in range(5)])))

        rows = [("pytorch_hmm (flat start, trained on the corpus)", *_score(reference, {i: t["phones"] for i, t in ours.items()}))]
        ps_seconds = None
        if not args.no_pocketsphinx:
            def text_of(u):
                return " ".join(re.findall(r"[a-z']+", u.text.lower()))

            ps, ps_seconds, ps_failed = _pocketsphinx_align(synth, text_of)
            rows.append(("pocketsphinx 5 (bundled en-us model)", *_score(reference, ps)))

    real = None if args.no_pocketsphinx else _real_speech(prepared, lexicon, extractor)
    lines = [f"# bench_alignment ({'quick' if args.quick else 'full'})", "",
             f"Corpus: flite, {len(voices)} voices ({', '.join(voices)}) x {len(texts)} sentences = {len(utts)} utterances, "
             f"{audio_seconds:.1f} s of audio; other processes' CPU use {load:.0%}.", "", "### Machine", ""]
    lines += [f"- {k}: {v}" for k, v in machine_info().items()]
    lines += ["", "| aligner | utterances | within 10 ms | within 20 ms | within 50 ms | MAE (ms) |", "|---|---:|---:|---:|---:|---:|"]
    for name, acc, mae, n in rows:
        lines.append(f"| {name} | {n} | {acc[0.01]:.1%} | {acc[0.02]:.1%} | {acc[0.05]:.1%} | {mae * 1e3:.1f} |")
    total = sum(stages.values())
    lines += ["", "| stage | seconds | x real time |", "|---|---:|---:|"]
    for stage, sec in stages.items():
        lines.append(f"| ours: {stage} | {sec:.2f} | {audio_seconds / sec:.0f} |")
    lines.append(f"| ours: train and align, in all | {total:.2f} | {audio_seconds / total:.0f} |")
    lines.append(f"| ours, trained model: align only (median of 5) | {align_only:.3f} | {audio_seconds / align_only:.0f} |")
    lines.append(f"| ours, trained model: features + align (median of 5) | {align_total:.2f} | {audio_seconds / align_total:.0f} |")
    lines.append(f"| ours, trained model: align only, one busy process beside it (median of 5) | {align_loaded:.3f} | "
                 f"{audio_seconds / align_loaded:.0f} |")
    if ps_seconds is not None:
        lines.append(f"| pocketsphinx: align | {ps_seconds:.2f} | {audio_seconds / ps_seconds:.0f} |")
    if real is not None:
        acc, mae, n, seconds = real
        lines += ["", f"Real speech (LibriVox, {n} utterances, {seconds:.1f} s; the model trained on the flite corpus plus "
                  "these): our word boundaries against pocketsphinx's, which is no ground truth: "
                  f"{acc[0.02]:.0%} within 20 ms, {acc[0.05]:.0%} within 50 ms, {acc[0.1]:.0%} within 100 ms, "
                  f"mean difference {mae * 1e3:.0f} ms."]
    skipped = report.skipped
    lines += ["", f"Skipped by ours: {len(skipped)}" + (": " + "; ".join(f"{i} ({r})" for i, r in skipped) if skipped else "")]
    if ps_seconds is not None:
        lines.append(f"pocketsphinx found no alignment for {len(ps_failed)}" + (f": {', '.join(ps_failed)}" if ps_failed else ""))
    emit_report("\n".join(lines), args.markdown)


if __name__ == "__main__":
    torch.manual_seed(0)
    np.random.seed(0)
    main()
