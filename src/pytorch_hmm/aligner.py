"""Forced alignment of a speech corpus: features, transcriptions, flat-start training, TextGrids.

What the Montreal Forced Aligner's ``train`` / ``align`` do, on the library's parts:
:class:`~pytorch_hmm.speech.FeatureExtractor` (MFCC + deltas, 25 ms / 10 ms), per-speaker CMVN,
a :class:`~pytorch_hmm.speech.Lexicon` (CMUdict by default; OOV words become ``spn``), and
:class:`~pytorch_hmm.alignment.AcousticModel` trained by
:func:`~pytorch_hmm.alignment.train_flat_start`. Output per utterance: a Praat TextGrid with
``words`` and ``phones`` tiers (MFA's layout: ``OUT/<speaker>/<id>.TextGrid``), optionally JSON
and CTM.

Frame convention: the extractor centres its 25 ms window ``t`` on ``t x 10 ms`` (``center=True``),
so frame ``t`` stands for ``[t - 1/2, t + 1/2) x 10 ms``: a boundary between frames ``t - 1`` and
``t`` lies midway between their centres. A segment of frames ``[s, e)`` is the interval
``[s x 0.01 - 0.005, e x 0.01 - 0.005)`` seconds, the first start clipped to 0 and the last end
to the audio's duration. (On the benchmark corpus this gives 73 % of phone boundaries within
10 ms and an MAE of 8.4 ms, against 67 % and 9.2 ms for ``[t, t + 1) x 10 ms``; within 20 ms
91.1 % against 91.9 %.)

Under ``torchrun`` (a ``torch.distributed`` process group, :mod:`pytorch_hmm.distributed`) every
function here works on this rank's share of the corpus: :func:`prepare` shards the utterances
(every ``N``-th one) and pools each speaker's CMVN statistics over all ranks, :func:`train` sums
the EM statistics of all ranks (every rank gets the model one process would train on the whole
corpus), :func:`align` writes this rank's files and rank 0 the merged CTM, and
:meth:`RunReport.merged` joins the ranks' reports (each utterance reported by the one rank that had it).

Bad input never stops a run: an unreadable, empty or silent file, an empty transcript, an
utterance too short for its transcription are each reported with the reason and left out;
every other utterance is aligned (:class:`RunReport`).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from .alignment import (
    AcousticModel,
    PhoneSet,
    TrainingSchedule,
    Topology,
    frames_to_seconds,
    train_flat_start,
    write_ctm,
    write_json,
    write_textgrid,
)
from .distributed import Stage, all_gather_objects, gather_objects, rank_and_size, shard, sum_across_ranks, sum_by_key
from .errors import AudioError, HMMValueError
from .speech import AudioTextFolder, FeatureExtractor, Lexicon, speaker_cmvn
from .speech.corpus import Corpus, Utterance

__all__ = [
    "PreparedUtterance", "RunReport", "CorpusValidation", "open_corpus", "validate", "prepare", "train", "align",
    "default_extractor", "CORPUS_FORMATS", "usable_count",
    "extractor_settings", "lexicon_from", "LANGUAGES", "OUTPUT_FORMATS", "FRAME_SHIFT", "FRAME_OFFSET",
]

PathLike = Union[str, Path]
OUTPUT_FORMATS = ("textgrid", "json", "ctm")
FRAME_SHIFT = 0.01
FRAME_OFFSET = -FRAME_SHIFT / 2  # frame t is centred at t x FRAME_SHIFT (see the module docstring)
SILENT_RMS = 1e-5  # below this RMS a file holds no speech to align (digital silence)


@dataclass
class PreparedUtterance:
    """An utterance ready to train on or align: features ``(T, D)`` (speaker-normalised) and words."""

    utterance: Utterance
    features: torch.Tensor
    transcription: object
    duration: float


@dataclass
class RunReport:
    """What a run did: aligned and skipped utterances (with reasons), audio seconds, stage times."""

    aligned: List[str] = field(default_factory=list)
    skipped: List[tuple] = field(default_factory=list)  # (utterance id or file, reason)
    audio_seconds: float = 0.0
    seconds: Dict[str, float] = field(default_factory=dict)
    oov: Optional[object] = None

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append((item, reason))

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the wall time of the block to ``seconds[stage]``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started

    def to_dict(self) -> dict:
        """The report as JSON-ready data (``--log-format json``)."""
        total = sum(self.seconds.values())
        return {
            "aligned": len(self.aligned), "skipped": [{"item": i, "reason": r} for i, r in self.skipped],
            "audio_seconds": round(self.audio_seconds, 3), "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "x_real_time": round(self.audio_seconds / total, 1) if total > 0 else None,
            "oov": {} if self.oov is None else self.oov.counts,
        }

    @classmethod
    def merged(cls, reports: Sequence["RunReport"]) -> "RunReport":
        """One report of several ranks' (disjoint shares of a corpus): utterances and skips
        joined, audio summed, each stage's time the longest rank's (the ranks ran side by side)."""
        out = cls()
        for r in reports:
            out.aligned += r.aligned
            out.skipped += r.skipped
            out.audio_seconds += r.audio_seconds
            for stage, sec in r.seconds.items():
                out.seconds[stage] = max(out.seconds.get(stage, 0.0), sec)
            if r.oov is not None:
                if out.oov is None:
                    out.oov = type(r.oov)()
                out.oov.update(r.oov)
        return out

    def summary(self) -> str:
        """A few lines: counts, reasons, speed as times real time."""
        total = sum(self.seconds.values())
        lines = [f"aligned {len(self.aligned)} utterances, skipped {len(self.skipped)}; "
                 f"{self.audio_seconds:.1f} s of audio in {total:.1f} s "
                 f"({self.audio_seconds / total if total > 0 else math.inf:.0f}x real time)"]
        lines += [f"  {stage}: {sec:.2f} s" for stage, sec in self.seconds.items()]
        lines += [f"  skipped {item}: {reason}" for item, reason in self.skipped]
        if self.oov is not None and self.oov.total:
            lines.append(f"  {self.oov.total} OOV word tokens aligned as the OOV phone: "
                         + ", ".join(f"{w.word} ({w.count})" for w in list(self.oov)[:10]))
        return "\n".join(lines)


CORPUS_FORMATS = ("auto", "folder", "librispeech", "kss", "kaldi")


def open_corpus(path: PathLike, corpus_format: str = "auto", *, subset: Optional[str] = None) -> Corpus:
    """The corpus at ``path`` in one of :data:`CORPUS_FORMATS`:

    - ``"folder"``: MFA-style ``<speaker>/<id>.wav`` + ``.lab`` / ``.txt``, or a flat folder of them;
    - ``"librispeech"``: a LibriSpeech subset folder (``.../dev-clean``), or the folder holding
      the subsets with ``subset``;
    - ``"kss"``: the folder with KSS's ``transcript.v.1.x.txt`` (the ``expanded`` text column);
    - ``"kaldi"``: a Kaldi data directory (``wav.scp``, ``text``, ``utt2spk``, ``segments``);
    - ``"auto"``: the first of kaldi, kss, librispeech whose files are there, else folder.
    """
    from .speech import KSS, LibriSpeech

    path = Path(path)
    if corpus_format not in CORPUS_FORMATS:
        raise HMMValueError(f"corpus_format must be one of {CORPUS_FORMATS}; got {corpus_format!r}")
    if not path.is_dir():
        raise HMMValueError(f"corpus must be an existing folder; got {str(path)!r}")
    if corpus_format == "auto":
        corpus_format = _detect_format(path, subset)
    if corpus_format == "kaldi":
        from .speech.kaldi import KaldiDataDir

        return KaldiDataDir(path)
    if corpus_format == "kss":
        return KSS(path)
    if corpus_format == "librispeech":
        if subset is not None:
            return LibriSpeech(path, subset)
        subsets = sorted(p.name for p in path.iterdir() if p.is_dir() and any(p.glob("*/*/*.trans.txt")))
        if any(path.glob("*/*/*.trans.txt")) or not subsets:
            return LibriSpeech(path.parent, path.name)
        if len(subsets) > 1:
            raise HMMValueError(f"corpus {str(path)!r} holds several LibriSpeech subsets ({', '.join(subsets)}): "
                                "name one with subset (--subset)")
        return LibriSpeech(path, subsets[0])
    return AudioTextFolder(path)


def _detect_format(path: Path, subset: Optional[str]) -> str:
    if (path / "wav.scp").is_file() and (path / "text").is_file():
        return "kaldi"
    if any(path.glob("transcript.v.*.txt")):
        return "kss"
    if subset is not None or any(path.glob("*/*/*.trans.txt")) or any(path.glob("*/*/*/*.trans.txt")) \
            or any(path.glob("LibriSpeech/*/*/*/*.trans.txt")):
        return "librispeech"
    return "folder"


@dataclass
class CorpusValidation:
    """What :func:`validate` found: usable utterances, skipped entries with reasons, durations,
    sample rates, OOV words, utterances too short for their transcription."""

    utterances: int = 0
    audio_seconds: float = 0.0
    durations: List[float] = field(default_factory=list)
    sample_rates: Dict[int, int] = field(default_factory=dict)
    problems: List[tuple] = field(default_factory=list)  # (utterance id or file, reason)
    too_short: List[tuple] = field(default_factory=list)  # (utterance id, seconds, seconds needed)
    oov: Optional[object] = None

    def to_dict(self) -> dict:
        d = self.durations
        return {
            "utterances": self.utterances, "audio_seconds": round(self.audio_seconds, 3),
            "duration_seconds": {"min": min(d), "median": float(np.median(d)), "max": max(d)} if d else None,
            "sample_rates": {str(k): v for k, v in sorted(self.sample_rates.items())},
            "problems": [{"item": i, "reason": r} for i, r in self.problems],
            "too_short": [{"item": i, "seconds": s, "needed": n} for i, s, n in self.too_short],
            "oov": {} if self.oov is None else self.oov.counts,
        }

    def summary(self) -> str:
        d = self.durations
        lines = [f"{self.utterances} usable utterances, {self.audio_seconds:.1f} s of audio; "
                 f"{len(self.problems)} skipped, {len(self.too_short)} too short for their transcription"]
        if d:
            lines.append(f"  durations: min {min(d):.2f} s, median {float(np.median(d)):.2f} s, max {max(d):.2f} s")
        if self.sample_rates:
            lines.append("  sample rates: " + ", ".join(f"{k} Hz ({v})" for k, v in sorted(self.sample_rates.items())))
        lines += [f"  skipped {item}: {reason}" for item, reason in self.problems]
        lines += [f"  too short {item}: {sec:.2f} s of audio, its transcription needs at least {need:.2f} s"
                  for item, sec, need in self.too_short]
        if self.oov is not None and self.oov.total:
            lines.append(f"  {len(self.oov)} OOV words ({self.oov.total} tokens; aligned as the OOV phone): "
                         + ", ".join(f"{w.word} ({w.count})" for w in list(self.oov)[:20]))
        return "\n".join(lines)


def validate(corpus: Union[Corpus, Sequence[Utterance]], lexicon: Lexicon, *, topology: Topology = Topology(),
             progress: bool = True) -> CorpusValidation:
    """Check a corpus without aligning it, as MFA's ``validate`` does: unreadable, missing or
    empty entries (the corpus's own checks), OOV words, durations and sample rates from the
    audio headers, and utterances shorter than their transcription's fewest frames (every phone
    state lasts at least one 10 ms frame)."""
    from .speech import audio_info

    out = CorpusValidation()
    phone_set = _phone_set(lexicon, topology)
    utterances = list(tqdm(corpus, desc="validate", disable=not progress, leave=False))
    out.problems += [(p.item, p.reason) for p in getattr(corpus, "problems", [])]
    lexicon.oov_report.clear()
    for utt in utterances:
        try:
            info = audio_info(utt.audio_path)
        except AudioError as err:
            out.problems.append((utt.id, f"unreadable audio: {err.reason}"))
            continue
        seconds = info.duration if utt.segment is None else min(utt.segment[1], info.duration) - utt.segment[0]
        transcription = lexicon.transcribe(utt.text, utt.id)
        if not transcription.words:
            out.problems.append((utt.id, "transcript has no words"))
            continue
        out.utterances += 1
        out.audio_seconds += seconds
        out.durations.append(seconds)
        out.sample_rates[info.sample_rate] = out.sample_rates.get(info.sample_rate, 0) + 1
        frames = sum(min(sum(len(phone_set.units(p)) for p in pron.phones) for pron in prons)
                     for prons in transcription.pronunciations)
        if seconds < frames * FRAME_SHIFT:
            out.too_short.append((utt.id, seconds, frames * FRAME_SHIFT))
    out.oov = lexicon.oov_report
    return out


def _phone_set(lexicon: Lexicon, topology: Topology) -> PhoneSet:
    """The acoustic model's phones for ``lexicon`` (its silence phone, or ``sil``, and its OOV phone)."""
    return PhoneSet(lexicon.phones, topology, silence_phone=lexicon.silence_phone or "sil", oov_phone=lexicon.oov_phone)


def prepare(
    corpus: Union[Corpus, Sequence[Utterance]],
    lexicon: Lexicon,
    extractor: FeatureExtractor,
    report: RunReport,
    *,
    progress: bool = True,
) -> List[PreparedUtterance]:
    """Features and transcriptions of every usable utterance; the others go to ``report``.

    CMVN is pooled per speaker (:func:`~pytorch_hmm.speech.speaker_cmvn`), as Kaldi and MFA do.
    Under ``torch.distributed`` this rank takes every ``N``-th utterance (:func:`~pytorch_hmm.distributed.shard`),
    reports the corpus's own problems only on rank 0, and pools CMVN statistics over all ranks:
    every rank passes the whole corpus (a shard passed in would be sharded again).
    """
    with report.timed("features"), Stage("feature extraction") as stage:
        utterances = shard(list(corpus))
        if rank_and_size()[0] == 0:
            for problem in getattr(corpus, "problems", []):
                report.skip(problem.item, problem.reason)
        raw, kept = [], []
        for utt in tqdm(utterances, desc="features", disable=not progress, leave=False):
            try:
                audio, rate = utt.read_audio(extractor.sample_rate)
            except AudioError as err:
                report.skip(utt.id, f"unreadable audio: {err.reason}")
                continue
            if audio.size == 0 or float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) < SILENT_RMS:
                report.skip(utt.id, "silent audio (no signal to align)")
                continue
            transcription = lexicon.transcribe(utt.text, utt.id)
            if not transcription.words:
                report.skip(utt.id, "transcript has no words")
                continue
            raw.append(extractor(audio, rate))
            kept.append((utt, transcription, audio.shape[0] / rate))
    stage.sync()
    feats = speaker_cmvn(raw, [u.speaker for u, _, _ in kept], reduce=sum_by_key)
    out = [PreparedUtterance(u, f, t, d) for (u, t, d), f in zip(kept, feats)]
    report.audio_seconds += sum(p.duration for p in out)
    report.oov = lexicon.oov_report
    return out


def train(
    prepared: Sequence[PreparedUtterance],
    lexicon: Lexicon,
    report: RunReport,
    *,
    schedule: TrainingSchedule = TrainingSchedule(),
    topology: Topology = Topology(),
    progress: bool = True,
    seed: int = 0,
) -> AcousticModel:
    """A monophone GMM-HMM trained from a flat start on ``prepared`` utterances (under
    ``torch.distributed``: this rank's share; the statistics of all ranks are summed)."""
    dims = [d for d in all_gather_objects(prepared[0].features.shape[1] if prepared else None) if d is not None]
    if not dims:
        raise HMMValueError("no usable utterance to train on (every one was skipped: see the report)")
    model = AcousticModel(_phone_set(lexicon, topology), dims[0])
    total = schedule.iterations + schedule.splits * schedule.iterations_per_split
    bar = tqdm(total=total, desc="train", disable=not progress, leave=False)

    def step(stage: str, iteration: int, log_likelihood: float) -> None:
        bar.update(1)
        bar.set_postfix(stage=stage, log_likelihood=f"{log_likelihood:.4g}")

    try:
        with report.timed("train"):
            train_flat_start(model, [p.features for p in prepared], [p.transcription for p in prepared], schedule,
                             generator=torch.Generator().manual_seed(seed), progress=step)
    finally:
        bar.close()
    return model


def align(
    model: AcousticModel,
    prepared: Sequence[PreparedUtterance],
    out_dir: Optional[PathLike],
    report: RunReport,
    *,
    formats: Sequence[str] = ("textgrid",),
    progress: bool = True,
) -> Dict[str, dict]:
    """Align ``prepared`` utterances; write ``formats`` under ``out_dir`` (``None``: write nothing).

    Returns utterance id -> ``{"words": [...], "phones": [...]}`` segments in seconds.
    """
    for name in formats:
        if name not in OUTPUT_FORMATS:
            raise HMMValueError(f"formats must be among {OUTPUT_FORMATS}; got {name!r}")
    tiers: Dict[str, dict] = {}
    with report.timed("align"), Stage("alignment") as stage:
        results = model.align([p.features for p in prepared], [p.transcription for p in prepared])
        for p, result in zip(prepared, results):
            utt = p.utterance
            if result is None:
                report.skip(utt.id, f"no alignment: {p.features.shape[0]} frames are too few for its "
                            f"{len(p.transcription.words)} words (audio too short, or the wrong transcript)")
                continue
            tiers[utt.id] = {name: frames_to_seconds(segs, FRAME_SHIFT, offset=FRAME_OFFSET, duration=p.duration)
                             for name, segs in (("words", result.words), ("phones", result.phones))}
            report.aligned.append(utt.id)
        if out_dir is not None:
            with report.timed("write"):
                _write(tiers, prepared, Path(out_dir), formats, progress)
    stage.sync()
    if out_dir is not None and "ctm" in formats:  # one file per corpus (rank 0 writes every rank's), sorted by id
        parts = gather_objects(tiers)
        with Stage("writing the CTM files") as stage:
            if parts is not None:
                everything = dict(sorted(((u, t) for part in parts for u, t in part.items()), key=lambda ut: ut[0]))
                Path(out_dir).mkdir(parents=True, exist_ok=True)
                write_ctm(Path(out_dir) / "phones.ctm", {u: t["phones"] for u, t in everything.items()})
                write_ctm(Path(out_dir) / "words.ctm", {u: t["words"] for u, t in everything.items()})
        stage.sync()
    return tiers


def usable_count(prepared: Sequence[PreparedUtterance]) -> int:
    """Prepared utterances on all ranks together (``len(prepared)`` without a process group)."""
    return int(sum_across_ranks(torch.tensor(float(len(prepared)))))


def _write(tiers: Dict[str, dict], prepared, out_dir: Path, formats, progress: bool) -> None:
    by_id = {p.utterance.id: p for p in prepared}
    for utt_id in tqdm(tiers, desc="write", disable=not progress, leave=False):
        p = by_id[utt_id]
        folder = out_dir / p.utterance.speaker
        folder.mkdir(parents=True, exist_ok=True)
        if "textgrid" in formats:
            write_textgrid(folder / f"{utt_id}.TextGrid", tiers[utt_id], p.duration)
        if "json" in formats:
            write_json(folder / f"{utt_id}.json", tiers[utt_id], p.duration)


def extractor_settings(extractor: FeatureExtractor) -> dict:
    """The extractor's fields as plain data (stored in a model file)."""
    return {f.name: getattr(extractor, f.name) for f in fields(extractor) if f.name != "dtype"}


def default_extractor(settings: Optional[dict] = None) -> FeatureExtractor:
    """MFCC + deltas at 25 ms / 10 ms (CMVN is applied per speaker afterwards), or ``settings``."""
    return FeatureExtractor(**(settings or {"kind": "mfcc", "cmvn": "none"}))


LANGUAGES = ("en", "ko")


def lexicon_from(path: Optional[PathLike], language: str = "en") -> Lexicon:
    """The lexicon for ``language``: ``"en"`` CMUdict with stress folded (flite's and most
    corpora's phones), ``"ko"`` the rule-based Korean G2P (:mod:`pytorch_hmm.speech.korean`).
    An MFA dictionary file at ``path`` takes precedence; for Korean its words win over the G2P,
    which still covers the rest."""
    if language not in LANGUAGES:
        raise HMMValueError(f"language must be one of {LANGUAGES}; got {language!r}")
    if language == "ko":
        from .speech import korean

        if path is None:
            return Lexicon.korean()
        return Lexicon.read(path, g2p=korean.g2p, g2p_phones=korean.PHONES)
    return Lexicon.read(path) if path is not None else Lexicon.from_cmudict(stress="fold")
