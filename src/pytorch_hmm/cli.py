"""The ``pytorch-hmm`` command: forced alignment of speech corpora, as MFA users run it.

::

    pytorch-hmm demo OUT_DIR                                   # align the bundled sample corpus, plot, score
    pytorch-hmm align CORPUS OUT_DIR --train [--lexicon FILE]  # train on CORPUS, then align it
    pytorch-hmm align CORPUS OUT_DIR --model MODEL             # align with a trained model
    pytorch-hmm train CORPUS MODEL                             # train and save a model
    pytorch-hmm validate CORPUS                                # what would be skipped, OOVs, durations
    pytorch-hmm evaluate REF_DIR HYP_DIR [--json]              # boundary accuracy against references
    pytorch-hmm g2p WORD ... | --file TEXT                     # pronunciations, MFA dictionary format

``CORPUS`` is read as ``--corpus-format`` says (default ``auto``): an MFA folder
(``<speaker>/<id>.wav`` + ``.lab`` / ``.txt``, or a flat folder of them), a LibriSpeech subset,
KSS, or a Kaldi data directory (``wav.scp``, ``text``, ``utt2spk``, ``segments``). The lexicon is
an MFA dictionary (``--lexicon``) or, by ``--language``, CMUdict with stress folded (``en``) or
the Korean G2P (``ko``). Every run ends with a summary (aligned, skipped with reasons, speed as
times real time), as text or, with ``--log-format json``, one JSON object on stdout (warnings
then go to stderr as JSON lines). ``--jobs N`` sets the threads of this process's torch and
numba work.

``align`` and ``train`` run on several processes, and machines, under ``torchrun``::

    torchrun --nproc-per-node 4 -m pytorch_hmm.cli align CORPUS OUT_DIR --train
    torchrun --nnodes 2 --node-rank R --rdzv-endpoint HOST:PORT --nproc-per-node 12 -m pytorch_hmm.cli train CORPUS MODEL

Each rank takes every N-th utterance; EM statistics are summed over the ranks (gloo: the
aligner works on the CPU), so the model is the one a single process would train; each rank writes the
TextGrids of its utterances, rank 0 the CTM files, the model and the one merged summary. A rank
that fails stops every rank with a message naming it; ``--timeout`` bounds how long a rank waits
for a stuck or dead peer. ``--plot N`` draws rank 0's first N utterances.

Exit status: 0 when the job was done (at least one utterance aligned, the model saved, the
corpus usable), 1 when nothing could be (the summary says why) or an input is wrong (one line
on stderr), 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

from . import __version__
from .distributed import RankFailure
from .errors import HMMValueError

__all__ = ["main"]

def _parser() -> argparse.ArgumentParser:
    from .aligner import CORPUS_FORMATS, LANGUAGES

    parser = argparse.ArgumentParser(prog="pytorch-hmm", description="HMM forced alignment of speech corpora.")
    parser.add_argument("--version", action="version", version=f"pytorch-hmm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = argparse.ArgumentParser(add_help=False)
    run.add_argument("--jobs", type=_positive_int, default=None, metavar="N",
                     help="threads for torch and numba in this process (default: torch's own count)")
    run.add_argument("--log-format", choices=("text", "json"), default="text",
                     help="summary as text, or as one JSON object on stdout (default text)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    words = argparse.ArgumentParser(add_help=False)
    words.add_argument("--language", choices=LANGUAGES, default="en",
                       help="en: CMUdict with stress folded; ko: Korean G2P (default en)")
    words.add_argument("--lexicon", type=Path, default=None, help="an MFA-format dictionary (wins over --language's)")
    corpus = argparse.ArgumentParser(add_help=False, parents=[words])
    corpus.add_argument("--corpus-format", choices=CORPUS_FORMATS, default="auto",
                        help="layout of CORPUS (default auto: kaldi, kss, librispeech if their files are there, else folder)")
    corpus.add_argument("--subset", default=None, help="LibriSpeech subset when CORPUS holds several (e.g. dev-clean)")

    ranks = argparse.ArgumentParser(add_help=False)
    ranks.add_argument("--timeout", type=_positive_float, default=1800.0, metavar="SECONDS",
                       help="under torchrun: how long a rank waits for the others before the job fails (default 1800)")

    demo = sub.add_parser("demo", parents=[run], help="align the bundled sample corpus: TextGrids, a plot, accuracy")
    demo.add_argument("out_dir", type=Path, help="where TextGrids, alignment.png and the scores are written")

    align = sub.add_parser("align", parents=[corpus, run, ranks], help="align a corpus (training on it first with --train)")
    align.add_argument("corpus", type=Path)
    align.add_argument("out_dir", type=Path, help="where <speaker>/<id>.TextGrid files are written")
    how = align.add_mutually_exclusive_group(required=True)
    how.add_argument("--train", action="store_true", help="train a model on the corpus, then align it")
    how.add_argument("--model", type=Path, help="a model saved by 'pytorch-hmm train'")
    align.add_argument("--format", "--output-format", dest="formats", default="textgrid",
                       help="comma-separated: textgrid, json, ctm (default textgrid)")
    align.add_argument("--save-model", type=Path, default=None, help="with --train: also save the model here")
    align.add_argument("--plot", type=int, default=0, metavar="N",
                       help="also write <id>.png (waveform, spectrogram, boundaries) for the first N utterances")

    train = sub.add_parser("train", parents=[corpus, run, ranks], help="train a model on a corpus and save it")
    train.add_argument("corpus", type=Path)
    train.add_argument("model", type=Path, help="the model file to write")

    validate = sub.add_parser("validate", parents=[corpus, run],
                              help="report what alignment would skip: unreadable audio, empty text, OOVs, durations")
    validate.add_argument("corpus", type=Path)

    evaluate = sub.add_parser("evaluate", parents=[run], help="score alignments against reference alignments")
    evaluate.add_argument("reference", type=Path, help="folder of reference TextGrids (or MFA JSON)")
    evaluate.add_argument("hypothesis", type=Path, help="folder of the alignments to score, same file names")
    evaluate.add_argument("--tier", default="phones", help="tier to score (default phones)")
    evaluate.add_argument("--json", action="store_true", help="the scores as JSON (same as --log-format json)")

    g2p = sub.add_parser("g2p", aliases=["transcribe"], parents=[words, run],
                         help="print pronunciations of words (MFA dictionary format)")
    g2p.add_argument("words", nargs="*", help="words or sentences")
    g2p.add_argument("--file", type=Path, default=None, help="a text file whose words to look up")
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}")
    return value


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    json_logs = args.log_format == "json" or getattr(args, "json", False)
    _setup_logging(json_logs)
    if args.jobs is not None:
        _set_threads(args.jobs)
    joined = False
    try:
        if hasattr(args, "timeout"):  # align, train: one rank of several under torchrun
            joined = _join_ranks(args)
        return _COMMANDS[args.command](args, json_logs)
    except HMMValueError as err:
        _error(str(err), json_logs)
        return 1
    except RankFailure as err:  # raised on every rank: said once
        if _is_rank0():
            _error(str(err), json_logs)
        return 1
    except _dist_errors() as err:  # a rank died or stopped answering (the --timeout)
        _error(f"rank {_rank()}: lost the other ranks ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
               "see the failed rank's output above", json_logs)
        return 1
    finally:
        if joined:
            import torch.distributed as dist

            dist.destroy_process_group()


def _dist_errors() -> tuple:
    """The exception types of a failed collective (torch.distributed's), or none."""
    import torch.distributed as dist

    return (dist.DistError,) if hasattr(dist, "DistError") else ()


def _rank() -> int:
    from .distributed import rank_and_size

    return rank_and_size()[0]


def _join_ranks(args) -> bool:
    """Join torchrun's process group (gloo: the aligner works on the CPU); ranks other than 0 show
    no progress bars and log errors only."""
    from .distributed import init_from_environment, rank_and_size

    if not init_from_environment(timeout=args.timeout, backend="gloo"):
        return False
    if rank_and_size()[0] != 0:
        args.quiet = True
        logging.getLogger("pytorch_hmm").setLevel(logging.ERROR)
    return True


def _summary(report, command: str, json_logs: bool, text: str = "", **extra) -> "object":
    """The report of all ranks merged, printed once (by rank 0); returns the merged report."""
    from .aligner import RunReport
    from .distributed import all_gather_objects

    merged = RunReport.merged(all_gather_objects(report))
    if _is_rank0():
        _emit(merged.summary() + text, {"command": command, **merged.to_dict(), **extra}, json_logs)
    return merged


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover - numba is a dependency
        pass


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()})


def _setup_logging(json_logs: bool) -> None:
    """Library warnings (skipped corpus entries) to stderr, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines() if json_logs else logging.Formatter("pytorch-hmm: %(levelname)s: %(message)s"))
    root = logging.getLogger("pytorch_hmm")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    root.propagate = False


def _error(message: str, json_logs: bool) -> None:
    if json_logs:
        print(json.dumps({"level": "error", "message": message}), file=sys.stderr)
    else:
        print(f"pytorch-hmm: error: {message}", file=sys.stderr)


def _emit(text: str, data: dict, json_logs: bool) -> None:
    print(json.dumps(data, ensure_ascii=False) if json_logs else text)


# ----------------------------------------------------------------------------- commands


def _prepared(args, extractor):
    from . import aligner

    lexicon = aligner.lexicon_from(args.lexicon, args.language)
    report = aligner.RunReport()
    corpus = aligner.open_corpus(args.corpus, args.corpus_format, subset=args.subset)
    prepared = aligner.prepare(corpus, lexicon, extractor, report, progress=not args.quiet)
    return lexicon, report, prepared


def _no_utterances(report, command: str, json_logs: bool) -> int:
    _summary(report, command, json_logs)
    if _is_rank0():
        _error("no usable utterance in the corpus", json_logs)
    return 1


def _is_rank0() -> bool:
    return _rank() == 0


def _on_rank0(stage: str, work) -> None:
    """``work()`` on rank 0 only; every rank stops if it fails (a collective: all ranks call this)."""
    from .distributed import Stage

    with Stage(stage) as s:
        if _is_rank0():
            work()
    s.sync()


def _align(args, json_logs: bool) -> int:
    from . import aligner
    from .alignment import AcousticModel

    formats = [f.strip().lower() for f in args.formats.split(",") if f.strip()]
    for name in formats:
        if name not in aligner.OUTPUT_FORMATS:
            raise HMMValueError(f"--format must be a comma-separated list of {', '.join(aligner.OUTPUT_FORMATS)}; "
                                f"got {name!r}")
    if args.plot < 0:
        raise HMMValueError(f"--plot must be a number of utterances >= 0; got {args.plot}")
    if args.model is not None:
        model, settings = AcousticModel.load(args.model)
        extractor = aligner.default_extractor(settings)
    else:
        model, extractor = None, aligner.default_extractor()
    lexicon, report, prepared = _prepared(args, extractor)
    if aligner.usable_count(prepared) == 0:
        return _no_utterances(report, "align", json_logs)
    if model is None:
        model = aligner.train(prepared, lexicon, report, progress=not args.quiet)
        if args.save_model is not None:
            _on_rank0("saving the model", lambda: model.save(args.save_model, features=aligner.extractor_settings(extractor)))
    tiers = aligner.align(model, prepared, args.out_dir, report, formats=formats, progress=not args.quiet)
    plots: List[Path] = []
    _on_rank0("plotting", lambda: plots.extend(_plots(prepared, tiers, args.out_dir, args.plot, extractor.sample_rate)))
    merged = _summary(report, "align", json_logs, "".join(f"\n  plot: {p}" for p in plots), plots=[str(p) for p in plots])
    return 0 if merged.aligned else 1


def _plots(prepared, tiers, out_dir: Path, count: int, sample_rate: int) -> List[Path]:
    """``<speaker>/<id>.png`` for the first ``count`` aligned utterances."""
    if count == 0:
        return []
    paths = []
    for p in prepared:
        if len(paths) == count:
            break
        if p.utterance.id in tiers:
            paths.append(Path(out_dir) / p.utterance.speaker / f"{p.utterance.id}.png")
            _plot(p, tiers, paths[-1], sample_rate)
    return paths


def _plot(prepared, tiers, path: Path, sample_rate: int) -> None:
    from .plotting import plot_utterance

    plot_utterance(prepared.utterance, tiers[prepared.utterance.id], path, sample_rate=sample_rate)


def _train(args, json_logs: bool) -> int:
    from . import aligner

    extractor = aligner.default_extractor()
    lexicon, report, prepared = _prepared(args, extractor)
    if aligner.usable_count(prepared) == 0:
        return _no_utterances(report, "train", json_logs)
    model = aligner.train(prepared, lexicon, report, progress=not args.quiet)
    _on_rank0("saving the model", lambda: model.save(args.model, features=aligner.extractor_settings(extractor)))
    _summary(report, "train", json_logs, f"\nmodel written to {args.model}", model=str(args.model))
    return 0


def _validate(args, json_logs: bool) -> int:
    from . import aligner

    lexicon = aligner.lexicon_from(args.lexicon, args.language)
    corpus = aligner.open_corpus(args.corpus, args.corpus_format, subset=args.subset)
    result = aligner.validate(corpus, lexicon, progress=not args.quiet)
    _emit(result.summary(), {"command": "validate", **result.to_dict()}, json_logs)
    return 0 if result.utterances else 1


def _evaluate(args, json_logs: bool) -> int:
    from .evaluation import evaluate_directories

    result = evaluate_directories(args.reference, args.hypothesis, tier=args.tier)
    _emit(result.format_table(), {"command": "evaluate", **result.to_dict()}, json_logs)
    return 0


def _g2p(args, json_logs: bool) -> int:
    from . import aligner

    lexicon = aligner.lexicon_from(args.lexicon, args.language)
    texts = list(args.words)
    if args.file is not None:
        try:
            texts.append(args.file.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError) as err:
            raise HMMValueError(f"--file {str(args.file)!r} cannot be read as UTF-8 text: {err}") from None
    if not texts:
        raise HMMValueError("g2p needs words to look up: give them as arguments or with --file")
    entries = {}
    for text in texts:
        t = lexicon.transcribe(text)
        for word, prons in zip(t.words, t.pronunciations):
            entries.setdefault(word, [" ".join(p.phones) for p in prons])
    oov = lexicon.oov_report.counts
    lines = [f"{word}\t{pron}" for word, prons in entries.items() for pron in prons]
    if oov:
        lines.append(f"# {len(oov)} words without a pronunciation (aligned as {lexicon.oov_phone}): {', '.join(oov)}")
    _emit("\n".join(lines), {"command": "g2p", "pronunciations": entries, "oov": sorted(oov)}, json_logs)
    return 0


def _demo(args, json_logs: bool) -> int:
    """Train on the bundled sample corpus, align it, plot one utterance, score against the truth."""
    from . import aligner
    from .data import sample_corpus
    from .evaluation import evaluate_directories

    root = sample_corpus()
    progress = not args.quiet
    lexicon, extractor, report = aligner.lexicon_from(None), aligner.default_extractor(), aligner.RunReport()
    prepared = aligner.prepare(aligner.open_corpus(root, "folder"), lexicon, extractor, report, progress=progress)
    model = aligner.train(prepared, lexicon, report, progress=progress)
    tiers = aligner.align(model, prepared, args.out_dir, report, progress=progress)
    first = next(p for p in prepared if p.utterance.id in tiers)
    plot = Path(args.out_dir) / "alignment.png"
    _plot(first, tiers, plot, extractor.sample_rate)
    scores = evaluate_directories(root / "reference", args.out_dir, tier="phones")
    text = "\n".join([report.summary(), f"TextGrids in {args.out_dir}", f"plot: {plot}",
                      "phone boundaries against the synthesiser's true timings:", scores.format_table()])
    _emit(text, {"command": "demo", **report.to_dict(), "plots": [str(plot)], "scores": scores.to_dict()},
          json_logs)
    return 0 if report.aligned else 1


_COMMANDS = {"align": _align, "train": _train, "validate": _validate, "evaluate": _evaluate, "g2p": _g2p,
             "transcribe": _g2p, "demo": _demo}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
