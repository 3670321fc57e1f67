"""Korean forced alignment of KSS, phone-duration models fitted on the alignments, and a check
of the alignment against reference timings.

Run on the four synthetic Korean utterances bundled as a test fixture (a few seconds)::

    python examples/korean_kss_demo.py

and on the real Korean Single Speaker speech dataset (KSS, CC BY-NC-SA 4.0, from
https://www.kaggle.com/datasets/bryanpark/korean-single-speaker-speech-dataset; ROOT is the
folder holding ``transcript.v.1.4.txt`` and ``kss/``)::

    python examples/korean_kss_demo.py /data/kss --out kss_aligned

Steps, all with the library's parts:

1. alignment: the rule-based Korean G2P lexicon (``aligner.lexicon_from(None, "ko")``), the
   :class:`~pytorch_hmm.speech.KSS` reader (the ``expanded`` text column), a monophone GMM-HMM
   trained from a flat start, one TextGrid per utterance under ``OUT/kss/<id>.TextGrid``;
2. per-phone duration statistics, in frames of 10 ms and in ms;
3. duration models: per phone a :mod:`pytorch_hmm.durations` distribution (``Poisson``,
   ``Gamma``, ``Gaussian``: the explicit-duration families of :class:`~pytorch_hmm.HSMM`)
   fitted by its own maximum-likelihood M-step on the phone durations of the training
   utterances, then scored on held-out utterances (k-fold cross-validation over utterances,
   leave-one-out on the fixture): held-out log-likelihood, and the mean absolute error and
   :func:`~pytorch_hmm.metrics.duration_accuracy` of each phone's predicted (median) duration,
   against predicting every phone's duration as the global mean (or median);
4. where ``ROOT/alignments/<id>.tsv`` reference phone timings exist (the fixture's, from the
   synthesiser), boundary accuracy of the alignment against them, matched by time alone (the
   synthesiser's phone symbols are not the G2P's);
5. plots: ``OUT/<id>.png`` (waveform, spectrogram, word and phone tiers of one utterance) and
   ``OUT/duration_models.png`` (duration histograms of the commonest phones with the fitted
   distributions).
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from pytorch_hmm import aligner, durations
from pytorch_hmm.alignment import Segment, Topology, seconds_to_frames
from pytorch_hmm.errors import HMMValueError
from pytorch_hmm.metrics import boundary_accuracy, duration_accuracy
from pytorch_hmm.plotting import plot_utterance
from pytorch_hmm.speech import KSS, read_phone_intervals

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "KSS"
FAMILIES = {"Poisson": durations.Poisson, "Gamma": durations.Gamma, "Gaussian": durations.Gaussian}
MIN_FRAMES = Topology().states_per_phone  # the aligner gives every state of a phone one frame at least
PRIOR_COUNTS = 2.0  # pseudo-counts from the pooled histogram: a rare phone backs off towards all phones
MAX_FOLDS = 10
TOLERANCES = (0.01, 0.02, 0.05)

PhoneFrames = List[Tuple[str, int]]  # (phone, duration in frames) of one utterance


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", type=Path, default=FIXTURES,
                        help="KSS folder with transcript.v.1.x.txt (default: the bundled test fixture)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a new temporary folder)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- 1. alignment
def align_corpus(corpus: KSS, out: Path, progress: bool) -> Tuple[Dict[str, dict], list, aligner.RunReport]:
    lexicon = aligner.lexicon_from(None, "ko")
    report = aligner.RunReport()
    prepared = aligner.prepare(corpus, lexicon, aligner.default_extractor(), report, progress=progress)
    if not prepared:
        return {}, [], report
    model = aligner.train(prepared, lexicon, report, progress=progress)
    tiers = aligner.align(model, prepared, out, report, progress=progress)
    return tiers, prepared, report


# ----------------------------------------------------------------------------- 2. duration statistics
def phone_frames(tiers: Dict[str, dict]) -> Dict[str, PhoneFrames]:
    """Utterance id -> (phone, frames) of its speech phones (silence and OOV phones left out)."""
    out = {}
    for utt_id, utterance in tiers.items():
        frames = seconds_to_frames(utterance["phones"], aligner.FRAME_SHIFT, offset=aligner.FRAME_OFFSET)
        out[utt_id] = [(s.unit, s.end - s.start) for s in frames if s.unit not in ("sil", "spn")]
    return out


def print_duration_table(frames: Dict[str, PhoneFrames]) -> None:
    by_phone: Dict[str, List[int]] = defaultdict(list)
    for phone, d in (item for utterance in frames.values() for item in utterance):
        by_phone[phone].append(d)
    ms = 1000 * aligner.FRAME_SHIFT
    print(f"phone durations ({sum(map(len, by_phone.values()))} phones, {len(by_phone)} phone types):")
    print("  phone  count  mean frames  mean ms  min-max ms")
    for phone, ds in sorted(by_phone.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        mean = sum(ds) / len(ds)
        print(f"  {phone:<5} {len(ds):6d} {mean:12.1f} {mean * ms:8.0f}  {min(ds) * ms:.0f}-{max(ds) * ms:.0f}")


# ----------------------------------------------------------------------------- 3. duration models
class PhoneDurations:
    """One duration distribution per phone (states ``0..K-1``) plus a pooled one (state ``K``)
    for phones the training data never showed."""

    def __init__(self, family: type, data: PhoneFrames, max_frames: int) -> None:
        self.index = {p: k for k, p in enumerate(sorted({p for p, _ in data}))}
        self.model = family(len(self.index) + 1, max_frames, min_duration=MIN_FRAMES, dtype=torch.float64)
        counts = torch.zeros(len(self.index) + 1, max_frames, dtype=torch.float64)
        for phone, d in data:
            counts[self.index[phone], d - 1] += 1
        counts[-1] = counts[:-1].sum(0)
        stats = self.model.init_stats()
        self.model.accumulate(stats, counts + PRIOR_COUNTS * counts[-1] / counts[-1].sum())
        self.model.m_step(stats)

    def states(self, phones: Sequence[str]) -> torch.Tensor:
        return torch.tensor([self.index.get(p, len(self.index)) for p in phones])

    @torch.no_grad()
    def predict(self, phones: Sequence[str]) -> torch.Tensor:
        """The median duration (frames) of each phone: the prediction with the least absolute error.
        (The means of the three families agree: a maximum-likelihood exponential family matches the
        sample mean of its sufficient statistics, and ``d`` is one of them in each.)"""
        cdf = self.model.probs().cumsum(-1)
        return (cdf < 0.5).sum(-1).double()[self.states(phones)] + 1

    @torch.no_grad()
    def log_likelihood(self, data: PhoneFrames) -> torch.Tensor:
        """log p(d | phone) of each (phone, d)."""
        log_p = self.model.log_probs()
        return log_p[self.states([p for p, _ in data]), torch.tensor([d for _, d in data]) - 1]


def as_segments(phones: Sequence[str], frames: Sequence[float]) -> List[Segment]:
    """Back-to-back segments in seconds with these durations in frames."""
    bounds = [0.0]
    for d in frames:
        bounds.append(bounds[-1] + float(d) * aligner.FRAME_SHIFT)
    return [Segment(p, a, b) for p, a, b in zip(phones, bounds, bounds[1:])]


def cross_validate(frames: Dict[str, PhoneFrames]) -> Dict[str, Dict[str, float]]:
    """Model name -> MAE (ms), duration accuracy and mean log-likelihood on held-out utterances."""
    ids = sorted(frames)
    folds = min(MAX_FOLDS, len(ids))
    max_frames = 2 * max(d for utterance in frames.values() for _, d in utterance)
    errors: Dict[str, List[float]] = defaultdict(list)
    loglik: Dict[str, List[float]] = defaultdict(list)
    refs, hyps = [], defaultdict(list)
    for fold in range(folds):
        held_out = [u for i, u in enumerate(ids) if i % folds == fold]
        train = [item for i, u in enumerate(ids) if i % folds != fold for item in frames[u]]
        pooled = torch.tensor([float(d) for _, d in train])
        models = {name: PhoneDurations(family, train, max_frames) for name, family in FAMILIES.items()}
        for utt_id in held_out:
            phones, truth = [p for p, _ in frames[utt_id]], torch.tensor([float(d) for _, d in frames[utt_id]])
            predictions = {"global mean (baseline)": torch.full_like(truth, pooled.mean().item()),
                           "global median (baseline)": torch.full_like(truth, pooled.median().item())}
            predictions.update({name: m.predict(phones) for name, m in models.items()})
            refs.append(as_segments(phones, truth))
            for name, predicted in predictions.items():
                errors[name] += (predicted - truth).abs().tolist()
                hyps[name].append(as_segments(phones, predicted))
            for name, m in models.items():
                loglik[name] += m.log_likelihood(frames[utt_id]).tolist()
    ms = 1000 * aligner.FRAME_SHIFT
    return {name: {"mae_ms": ms * sum(e) / len(e), "accuracy": duration_accuracy(refs, hyps[name]),
                   "loglik": sum(loglik[name]) / len(loglik[name]) if name in loglik else math.nan}
            for name, e in errors.items()}


def print_duration_models(frames: Dict[str, PhoneFrames]) -> None:
    results = cross_validate(frames)
    folds = min(MAX_FOLDS, len(frames))
    phones = sum(map(len, frames.values()))
    print(f"duration prediction, {folds}-fold cross-validation over utterances ({phones} held-out phones):")
    print(f"  {'model':<25} MAE (ms)  duration accuracy  log-likelihood/phone")
    for name, r in results.items():
        loglik = "-" if math.isnan(r["loglik"]) else f"{r['loglik']:.2f}"
        print(f"  {name:<25} {r['mae_ms']:8.1f} {r['accuracy']:18.3f}  {loglik:>20}")


# ----------------------------------------------------------------------------- 4. reference timings
def print_reference_accuracy(root: Path, tiers: Dict[str, dict]) -> None:
    found = {u: root / "alignments" / f"{u}.tsv" for u in tiers}
    found = {u: path for u, path in found.items() if path.is_file()}
    if not found:
        print(f"boundary accuracy: no reference timings under {root / 'alignments'} (the real KSS has none)")
        return
    refs = [read_phone_intervals(path) for path in found.values()]
    hyps = [tiers[u]["phones"] for u in found]
    accuracy = boundary_accuracy(refs, hyps, TOLERANCES, label_aware=False)
    print(f"boundary accuracy vs reference timings ({len(found)} utterances, matched by time):")
    for tol, value in accuracy.items():
        print(f"  within {1000 * tol:.0f} ms: {value:.3f}")


# ----------------------------------------------------------------------------- 5. plots
def plot_duration_models(frames: Dict[str, PhoneFrames], path: Path, commonest: int = 6) -> None:
    """Histograms (frames) of the commonest phones with each family fitted on all utterances."""
    from matplotlib.figure import Figure

    data = [item for utterance in frames.values() for item in utterance]
    max_frames = 2 * max(d for _, d in data)
    counts: Dict[str, int] = defaultdict(int)
    for phone, _ in data:
        counts[phone] += 1
    shown = sorted(counts, key=lambda p: (-counts[p], p))[:commonest]
    models = {name: PhoneDurations(family, data, max_frames) for name, family in FAMILIES.items()}
    fig = Figure(figsize=(11, 6), layout="constrained")
    axes = fig.subplots(2, math.ceil(len(shown) / 2), squeeze=False).ravel()
    grid = torch.arange(1, max_frames + 1)
    ms = 1000 * aligner.FRAME_SHIFT
    for ax, phone in zip(axes, shown):
        ds = [d for p, d in data if p == phone]
        ax.hist([d * ms for d in ds], bins=[(i - 0.5) * ms for i in range(max_frames + 2)], density=True,
                color="0.75", label=f"aligned ({len(ds)})")
        for name, m in models.items():
            pmf = m.model.probs()[m.index[phone]] / ms  # per ms, comparable with the density
            ax.plot((grid * ms).tolist(), pmf.tolist(), label=name)
        ax.set_title(f"/{phone}/")
        ax.set_xlabel("duration (ms)")
        ax.set_xlim(0, max(ds) * ms * 1.8)
    axes[0].legend(fontsize=8)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    fig.suptitle("phone durations and fitted duration distributions")
    fig.savefig(path, dpi=100)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    corpus = KSS(args.root)
    out = args.out or Path(tempfile.mkdtemp(prefix="korean_kss_demo_"))
    tiers, prepared, report = align_corpus(corpus, out, progress=not args.quiet)
    print(f"output: {out}")
    print(report.summary())
    if not tiers:
        print("no utterance was aligned")
        return 1
    frames = phone_frames(tiers)
    print_duration_table(frames)
    if len(frames) > 1:
        print_duration_models(frames)
    print_reference_accuracy(args.root, tiers)

    utt = max((p for p in prepared if p.utterance.id in tiers), key=lambda p: p.duration).utterance
    plot_path = out / f"{utt.id}.png"
    plot_utterance(utt, tiers[utt.id], plot_path, sample_rate=aligner.default_extractor().sample_rate, max_seconds=20.0)
    plot_duration_models(frames, out / "duration_models.png")
    textgrids = sorted(out.glob("*/*.TextGrid"))
    print(f"wrote {len(textgrids)} TextGrids, {plot_path.name} and duration_models.png to {out}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except HMMValueError as err:  # not a KSS folder: the message says what was expected
        raise SystemExit(f"error: {err}")
